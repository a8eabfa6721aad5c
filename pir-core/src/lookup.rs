//! The client side of a private lookup.
//!
//! ```text
//! LookupClient::query(cpi)  -> PendingLookup { query bytes }      (one PIR query, always)
//!       server: Snapshot::answer(keys, query bytes) -> response bytes
//! LookupClient::decode(pending, response) -> LookupResult           (verified mappings)
//! ```
//!
//! Nothing sent depends on the CPI except the encrypted query itself: absent CPIs cost exactly
//! the same query as present ones.

use sha2::{Digest, Sha256};

use crate::{
    error::{CoreError, Result},
    identity::{Cpi, IssuerId, Mapping, TrustStore},
    keyword::{Location, LookupConfig, bucket},
    pir::{self, ClientSecret, SchemeParams},
};

/// Identifies a client's public keys: `SHA-256("pir-discovery/eval-keys/v1\0" || keys)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct KeyId(pub [u8; 32]);

impl KeyId {
    /// The id of serialised public keys.
    pub fn of(public_keys: &[u8]) -> Self {
        Self(
            Sha256::new()
                .chain_update(b"pir-discovery/eval-keys/v1\0")
                .chain_update(public_keys)
                .finalize()
                .into(),
        )
    }
}

impl std::fmt::Display for KeyId {
    /// The first 8 bytes in base64url, the one spelling of every key id (as [`IssuerId`]'s).
    ///
    /// [`IssuerId`]: crate::identity::IssuerId
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&crate::identity::b64_encode(&self.0[..8]))
    }
}

/// A client's key pair for one parameter set.
#[derive(Clone, Debug)]
pub struct ClientKeys {
    params: SchemeParams,
    secret: ClientSecret,
    public: Vec<u8>,
    id: KeyId,
}

impl ClientKeys {
    /// Generates fresh keys (tens to hundreds of milliseconds).
    pub fn generate(params: &SchemeParams) -> Result<Self> {
        let (secret, public) = pir::keygen(params)?;
        Ok(Self::from_parts(*params, secret, public))
    }

    /// Reassembles stored keys.
    pub fn from_parts(params: SchemeParams, secret: ClientSecret, public: Vec<u8>) -> Self {
        let id = KeyId::of(&public);
        Self {
            params,
            secret,
            public,
            id,
        }
    }

    /// The parameters the keys are for.
    pub fn params(&self) -> &SchemeParams {
        &self.params
    }

    /// The secret (keep it on the client).
    pub fn secret(&self) -> &ClientSecret {
        &self.secret
    }

    /// The public keys to upload.
    pub fn public_bytes(&self) -> &[u8] {
        &self.public
    }

    /// The public keys' id.
    pub fn id(&self) -> KeyId {
        self.id
    }

    /// The key this client's query requests are authenticated with, derived from the secret
    /// (see [`crate::query_auth`]); registered with the public keys.
    pub fn query_mac_key(&self) -> crate::query_auth::QueryMacKey {
        crate::query_auth::QueryMacKey::derive(&self.secret)
    }
}

/// A query waiting for its response: made only by [`LookupClient::query`], used up by
/// [`LookupClient::decode`], so a response is always decoded for the CPI and location its query
/// was made for.
#[derive(Debug)]
pub struct PendingLookup {
    cpi: Cpi,
    location: Location,
    query: Vec<u8>,
}

impl PendingLookup {
    /// The encrypted query to send.
    pub fn query(&self) -> &[u8] {
        &self.query
    }

    /// The CPI looked up.
    pub fn cpi(&self) -> &Cpi {
        &self.cpi
    }
}

/// The verified outcome of a lookup.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LookupResult {
    /// The CPI looked up.
    pub cpi: Cpi,
    /// Its verified, currently valid mappings; empty when not found.
    pub mappings: Vec<Mapping>,
    /// Genuine mappings left out because they are outside their validity window at `now`.
    pub outside_validity: usize,
    /// Mappings left out because their issuer is not in the trust store, by issuer (one entry
    /// per mapping): trusting that issuer would show them.
    pub untrusted: Vec<IssuerId>,
}

impl LookupResult {
    /// True when at least one valid mapping was found.
    pub fn found(&self) -> bool {
        !self.mappings.is_empty()
    }

    /// The MSP of each found mapping, in the order of `mappings`.
    pub fn msps(&self) -> Vec<&str> {
        self.mappings
            .iter()
            .map(|m| m.fields.msp.as_str())
            .collect()
    }
}

/// Makes queries for one snapshot configuration and verifies what comes back.
#[derive(Clone, Debug)]
pub struct LookupClient {
    config: LookupConfig,
    keys: ClientKeys,
    trust: TrustStore,
}

impl LookupClient {
    /// A client with fresh keys.
    pub fn new(config: LookupConfig, trust: TrustStore) -> Result<Self> {
        let keys = ClientKeys::generate(config.scheme())?;
        Self::with_keys(config, keys, trust)
    }

    /// A client with existing keys (which must match the configuration's parameters).
    pub fn with_keys(config: LookupConfig, keys: ClientKeys, trust: TrustStore) -> Result<Self> {
        if keys.params != *config.scheme() {
            return Err(CoreError::KeysForOtherParams);
        }
        Ok(Self {
            config,
            keys,
            trust,
        })
    }

    /// The configuration queried.
    pub fn config(&self) -> &LookupConfig {
        &self.config
    }

    /// The keys.
    pub fn keys(&self) -> &ClientKeys {
        &self.keys
    }

    /// Moves to a new configuration with the same parameters (a new epoch), keeping the keys.
    pub fn set_config(&mut self, config: LookupConfig) -> Result<()> {
        *self = Self::with_keys(config, self.keys.clone(), self.trust.clone())?;
        Ok(())
    }

    /// Encrypts the query for a CPI.
    pub fn query(&self, cpi: &Cpi) -> Result<PendingLookup> {
        let location = self.config.layout().locate(cpi);
        let query = pir::query(
            self.config.scheme(),
            &self.keys.secret,
            location.bucket.0 as usize,
        )?;
        Ok(PendingLookup {
            cpi: cpi.clone(),
            location,
            query,
        })
    }

    /// Decrypts a response and verifies the CPI's entries at time `now` (unix seconds).
    ///
    /// An entry for this CPI whose signatures do not verify makes the whole lookup fail: the
    /// server or the snapshot is lying, and the caller must know.
    pub fn decode(
        &self,
        pending: PendingLookup,
        response: &[u8],
        now: u64,
    ) -> Result<LookupResult> {
        let item = pir::decode(self.config.scheme(), &self.keys.secret, response)?;
        let mut mappings = Vec::new();
        let mut outside_validity = 0;
        let mut untrusted = Vec::new();
        for (tag, compact) in bucket::decode_bucket(&item)? {
            if tag != pending.location.tag {
                continue;
            }
            let m = bucket::decode_compact(&pending.cpi, compact)?;
            // An issuer the caller does not trust is the caller's choice, not a lie: skip and
            // count its mappings. Any other failure means the server or snapshot is lying.
            match m.verify_signatures(&self.trust) {
                Err(CoreError::UnknownIssuer(issuer)) => {
                    untrusted.push(issuer);
                    continue;
                }
                other => other?,
            }
            match m.check_window(now) {
                Ok(()) => mappings.push(m),
                Err(_) => outside_validity += 1,
            }
        }
        Ok(LookupResult {
            cpi: pending.cpi,
            mappings,
            outside_validity,
            untrusted,
        })
    }
}
