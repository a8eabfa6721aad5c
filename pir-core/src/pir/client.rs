//! The client's side of the scheme: key generation, query encryption, response decryption.

use rand::RngCore;
use spiral_rs::{client::Client, params::Params};

use super::{
    params::SchemeParams,
    ring::{pack_key_words, response_bytes, spiral_params},
};
use crate::error::{CoreError, PirBytesError, PirMessage, Result};

/// A client's secret: the seed its secret keys are derived from. Never leaves the client.
#[derive(Clone, PartialEq, Eq)]
pub struct ClientSecret(pub(crate) [u8; 32]);

impl std::fmt::Debug for ClientSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ClientSecret(..)")
    }
}

impl ClientSecret {
    /// From stored bytes.
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }

    /// The bytes to store (owner-only file!).
    pub fn to_bytes(&self) -> [u8; 32] {
        self.0
    }
}

pub(super) fn client_for(sp: &'static Params, secret: &ClientSecret) -> Client<'static> {
    let mut client = Client::init(sp);
    client.generate_secret_keys_from_seed(secret.0);
    client
}

/// Generates a fresh secret and its public keys in their wire form.
pub(crate) fn keygen(params: &SchemeParams) -> Result<(ClientSecret, Vec<u8>)> {
    let sp = spiral_params(params)?;
    let (secret, spiral) = keygen_spiral(sp)?;
    Ok((secret, pack_key_words(sp, &spiral)))
}

/// Generates a fresh secret and its public keys as spiral-rs serialises them (every word, 8
/// bytes each).
pub(super) fn keygen_spiral(sp: &'static Params) -> Result<(ClientSecret, Vec<u8>)> {
    let mut seed = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut seed);
    let mut client = Client::init(sp);
    // Only the secret comes from the seed; spiral-rs draws the public randomness itself.
    let spiral = client.generate_keys_from_seed(seed).serialize();
    if spiral.len() != sp.setup_bytes() {
        return Err(CoreError::Internal(
            "public key size differs from setup_bytes",
        ));
    }
    Ok((ClientSecret(seed), spiral))
}

/// Encrypts a query for item `index`.
pub(crate) fn query(params: &SchemeParams, secret: &ClientSecret, index: usize) -> Result<Vec<u8>> {
    let sp = spiral_params(params)?;
    if index >= params.num_items() {
        return Err(CoreError::Internal("query for an item out of range"));
    }
    let bytes = client_for(sp, secret).generate_query(index).serialize();
    if bytes.len() != sp.query_bytes() {
        return Err(CoreError::Internal("query size differs from query_bytes"));
    }
    Ok(bytes)
}

/// Decrypts a response into the item's `item_bytes` plaintext bytes.
pub(crate) fn decode(
    params: &SchemeParams,
    secret: &ClientSecret,
    response: &[u8],
) -> Result<Vec<u8>> {
    let sp = spiral_params(params)?;
    let expected = response_bytes(sp);
    if response.len() != expected {
        return Err(CoreError::pir_bytes(
            PirMessage::Response,
            PirBytesError::Length {
                expected,
                got: response.len(),
            },
        ));
    }
    let raw = client_for(sp, secret).decode_response(response);
    // Output is one run of `bytes_per_chunk` bytes per plaintext chunk, then padding.
    let needed = sp.bytes_per_chunk() * sp.instances * sp.n * sp.n;
    if raw.len() < needed {
        return Err(CoreError::Internal("decoded response shorter than an item"));
    }
    let mut item = raw;
    item.truncate(params.item_bytes as usize);
    Ok(item)
}
