//! The Discovery Provider's oblivious PRF: RFC 9497 in verifiable mode (VOPRF) with the
//! ristretto255-SHA512 suite, through the `voprf` crate.
//!
//! The DP holds the secret key `k`. A client blinds its normalised CPI, the evaluator answers with
//! `k` times the blinded element and a proof that it used the key whose public part the client
//! knows, and the client unblinds to `y = OPRF(k, cpi)`: 64 bytes from which everything
//! keyword-derived comes ([`crate::keyword`]). The evaluator learns nothing about the CPI; without
//! `k`, nobody can compute `y` for a CPI of their choosing, so nobody can find a CPI's entries in a
//! snapshot or recognise them, except through one rate-limited evaluation per guess.
//!
//! Why ristretto255-SHA512 rather than P-256-SHA256: a prime-order group (no cofactor to clear, no
//! invalid-curve checks to forget), about three times faster per scalar multiplication in the
//! `curve25519-dalek` code the project already depends on for Ed25519, and 32-byte elements.
//! P-256 would be the choice for a DP whose key must live in a FIPS HSM; the seam here is one
//! type alias.
//!
//! The input is the CPI's canonical text (`tel:+14155550100`), exactly the bytes the mapping
//! format signs; RFC 9497's context string already separates this use from any other.

mod key_file;

pub use key_file::SECRET_KEY_LABEL;

use rand::{CryptoRng, RngCore};
use voprf::{BlindedElement, EvaluationElement, Group, Proof, VoprfClient, VoprfServer};

use crate::{
    error::{CoreError, OprfError, Result},
    identity::Cpi,
};

/// The ciphersuite (RFC 9497 section 4.1).
pub type Suite = voprf::Ristretto255;

/// The suite's name as RFC 9497 spells it, as the snapshot header and `GetConfig` report it.
pub const SUITE_NAME: &str = "ristretto255-SHA512";

/// Bytes of a serialised group element (a blinded or an evaluated element, a public key).
pub const ELEMENT_BYTES: usize = 32;
/// Bytes of a serialised scalar (a secret key).
pub const SCALAR_BYTES: usize = 32;
/// Bytes of a proof (two scalars).
pub const PROOF_BYTES: usize = 64;
/// Bytes of an OPRF output.
pub const OUTPUT_BYTES: usize = 64;

/// `y = OPRF(k, cpi)`, the secret from which a CPI's bucket, tag and entry key are derived.
#[derive(Clone, PartialEq, Eq)]
pub struct OprfOutput(pub(crate) [u8; OUTPUT_BYTES]);

impl OprfOutput {
    /// The raw 64 bytes.
    pub fn as_bytes(&self) -> &[u8; OUTPUT_BYTES] {
        &self.0
    }
}

impl std::fmt::Debug for OprfOutput {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("OprfOutput(..)")
    }
}

/// A CPI with its OPRF output, as a client obtains it: only [`finalize`] makes one, after
/// checking the evaluator's proof, so a lookup cannot pair a CPI with another CPI's output.
#[derive(Clone, PartialEq, Eq)]
pub struct Evaluated {
    cpi: Cpi,
    output: OprfOutput,
    key: OprfPublicKey,
}

impl Evaluated {
    /// The CPI.
    pub fn cpi(&self) -> &Cpi {
        &self.cpi
    }

    /// Its OPRF output.
    pub fn output(&self) -> &OprfOutput {
        &self.output
    }

    /// The public key the evaluation was proven under: the output locates the CPI only in
    /// snapshots keyed by it.
    pub fn key(&self) -> &OprfPublicKey {
        &self.key
    }
}

impl std::fmt::Debug for Evaluated {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Evaluated")
            .field("cpi", &self.cpi)
            .finish_non_exhaustive()
    }
}

/// The DP's OPRF public key, a ristretto255 element (checked: canonical, not the identity).
/// Its bincode form (in the snapshot header's layout) is the 32 bytes, checked on decoding.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct OprfPublicKey([u8; ELEMENT_BYTES]);

impl bincode::Encode for OprfPublicKey {
    fn encode<E: bincode::enc::Encoder>(
        &self,
        encoder: &mut E,
    ) -> std::result::Result<(), bincode::error::EncodeError> {
        self.0.encode(encoder)
    }
}

impl<Context> bincode::Decode<Context> for OprfPublicKey {
    fn decode<D: bincode::de::Decoder<Context = Context>>(
        decoder: &mut D,
    ) -> std::result::Result<Self, bincode::error::DecodeError> {
        let bytes = <[u8; ELEMENT_BYTES]>::decode(decoder)?;
        Self::from_bytes(&bytes).map_err(|_| {
            bincode::error::DecodeError::Other("OPRF public key is not a canonical element")
        })
    }
}

bincode::impl_borrow_decode!(OprfPublicKey);

impl OprfPublicKey {
    /// Parses a serialised public key.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self> {
        let elem = Suite::deserialize_elem(bytes).map_err(|_| OprfError::PublicKey)?;
        let mut out = [0u8; ELEMENT_BYTES];
        out.copy_from_slice(&Suite::serialize_elem(elem));
        // A canonical encoding decodes and re-encodes to itself.
        if out[..] != *bytes {
            return Err(OprfError::PublicKey.into());
        }
        Ok(Self(out))
    }

    /// The serialised key.
    pub fn to_bytes(&self) -> [u8; ELEMENT_BYTES] {
        self.0
    }

    fn element(&self) -> Result<<Suite as Group>::Elem> {
        Suite::deserialize_elem(&self.0).map_err(|_| OprfError::PublicKey.into())
    }
}

impl std::fmt::Debug for OprfPublicKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "OprfPublicKey({})", hex_prefix(&self.0))
    }
}

impl std::fmt::Display for OprfPublicKey {
    /// Lower-case hex of the 32 bytes.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.iter().try_for_each(|b| write!(f, "{b:02x}"))
    }
}

fn hex_prefix(bytes: &[u8]) -> String {
    bytes[..8].iter().map(|b| format!("{b:02x}")).collect()
}

/// The DP's OPRF secret key. `Debug` shows only the public key.
#[derive(Clone)]
pub struct OprfKey {
    server: VoprfServer<Suite>,
}

impl OprfKey {
    /// A fresh random key.
    pub fn generate<R: RngCore + CryptoRng>(rng: &mut R) -> Result<Self> {
        let server = VoprfServer::new(rng).map_err(|_| OprfError::SecretKey)?;
        Ok(Self { server })
    }

    /// RFC 9497's `DeriveKeyPair(seed, info)`: the same seed and info always give the same key.
    pub fn derive(seed: &[u8; 32], info: &[u8]) -> Result<Self> {
        let server = VoprfServer::new_from_seed(seed, info).map_err(|_| OprfError::SecretKey)?;
        Ok(Self { server })
    }

    /// A key from its serialised secret scalar (canonical and non-zero).
    pub fn from_bytes(bytes: &[u8]) -> Result<Self> {
        if bytes.len() != SCALAR_BYTES {
            return Err(OprfError::SecretKey.into());
        }
        let server = VoprfServer::new_with_key(bytes).map_err(|_| OprfError::SecretKey)?;
        Ok(Self { server })
    }

    /// The serialised secret scalar. Secret: write it only to an owner-only file.
    pub fn to_bytes(&self) -> [u8; SCALAR_BYTES] {
        let mut out = [0u8; SCALAR_BYTES];
        // The server's serialisation is the scalar, then the public element.
        out.copy_from_slice(&self.server.serialize()[..SCALAR_BYTES]);
        out
    }

    /// The public key clients verify evaluations against.
    pub fn public(&self) -> OprfPublicKey {
        let mut out = [0u8; ELEMENT_BYTES];
        out.copy_from_slice(&Suite::serialize_elem(self.server.get_public_key()));
        OprfPublicKey(out)
    }

    /// `OPRF(k, cpi)` computed directly, as the DP does when it builds a snapshot.
    pub fn evaluate(&self, cpi: &Cpi) -> Result<OprfOutput> {
        let out = self
            .server
            .evaluate(cpi.as_str().as_bytes())
            .map_err(|_| OprfError::Input)?;
        Ok(output(&out))
    }

    /// Evaluates blinded elements from a client, with one proof for the whole batch. Fails,
    /// naming the element, if one is not a valid encoding; an empty batch is refused.
    pub fn evaluate_blinded<R: RngCore + CryptoRng>(
        &self,
        rng: &mut R,
        blinded: &[[u8; ELEMENT_BYTES]],
    ) -> Result<Evaluation> {
        if blinded.is_empty() {
            return Err(OprfError::EmptyBatch.into());
        }
        let elements = blinded
            .iter()
            .enumerate()
            .map(|(index, b)| {
                BlindedElement::<Suite>::deserialize(b).map_err(|_| OprfError::Element { index })
            })
            .collect::<std::result::Result<Vec<_>, _>>()?;
        let result = self
            .server
            .batch_blind_evaluate(rng, &elements)
            .map_err(|_| OprfError::BatchSize)?;
        Ok(Evaluation {
            elements: result.messages.iter().map(element_bytes).collect(),
            proof: proof_bytes(&result.proof),
        })
    }
}

/// Checks that every blinded element is a valid encoding (canonical, not the identity),
/// naming the first that is not: what [`OprfKey::evaluate_blinded`] would refuse, checked
/// without the key, so an evaluator can refuse bad input before charging anything.
pub fn check_blinded(blinded: &[[u8; ELEMENT_BYTES]]) -> Result<()> {
    if blinded.is_empty() {
        return Err(OprfError::EmptyBatch.into());
    }
    for (index, b) in blinded.iter().enumerate() {
        BlindedElement::<Suite>::deserialize(b).map_err(|_| OprfError::Element { index })?;
    }
    Ok(())
}

impl std::fmt::Debug for OprfKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OprfKey")
            .field("public", &self.public())
            .finish_non_exhaustive()
    }
}

/// The evaluator's answer to a batch: one evaluated element per blinded one, and one proof.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Evaluation {
    /// `k` times each blinded element, in order.
    pub elements: Vec<[u8; ELEMENT_BYTES]>,
    /// The batched DLEQ proof (RFC 9497 section 2.2).
    pub proof: [u8; PROOF_BYTES],
}

/// A client's blinded CPI: the element to send, and the secret state to unblind the answer.
/// Consumed by [`finalize`].
pub struct Blinded {
    cpi: Cpi,
    state: VoprfClient<Suite>,
    element: [u8; ELEMENT_BYTES],
}

impl Blinded {
    /// Blinds `cpi` with a fresh random blind.
    pub fn new<R: RngCore + CryptoRng>(cpi: &Cpi, rng: &mut R) -> Result<Self> {
        let result = VoprfClient::<Suite>::blind(cpi.as_str().as_bytes(), rng)
            .map_err(|_| OprfError::Input)?;
        Ok(Self {
            cpi: cpi.clone(),
            element: element_bytes(&result.message),
            state: result.state,
        })
    }

    /// The blinded element to send to the evaluator (uniformly random to it).
    pub fn element(&self) -> &[u8; ELEMENT_BYTES] {
        &self.element
    }

    /// The CPI it blinds.
    pub fn cpi(&self) -> &Cpi {
        &self.cpi
    }

    #[cfg(test)]
    fn with_blind(cpi: &Cpi, blind: &[u8]) -> Self {
        let blind = Suite::deserialize_scalar(blind).expect("a test blind");
        let result =
            VoprfClient::<Suite>::deterministic_blind_unchecked(cpi.as_str().as_bytes(), blind)
                .expect("a test input");
        Self {
            cpi: cpi.clone(),
            element: element_bytes(&result.message),
            state: result.state,
        }
    }
}

impl std::fmt::Debug for Blinded {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Blinded").finish_non_exhaustive()
    }
}

/// Checks the evaluator's proof against `public` and unblinds every element: the blinded CPIs
/// with their OPRF outputs, in order. Any mismatch (count, encoding, proof) refuses the whole
/// batch.
pub fn finalize(
    blinded: &[Blinded],
    evaluation: &Evaluation,
    public: &OprfPublicKey,
) -> Result<Vec<Evaluated>> {
    if evaluation.elements.len() != blinded.len() {
        return Err(OprfError::Count {
            expected: blinded.len(),
            got: evaluation.elements.len(),
        }
        .into());
    }
    let messages = evaluation
        .elements
        .iter()
        .enumerate()
        .map(|(index, e)| {
            EvaluationElement::<Suite>::deserialize(e).map_err(|_| OprfError::Element { index })
        })
        .collect::<std::result::Result<Vec<_>, _>>()?;
    let proof = Proof::<Suite>::deserialize(&evaluation.proof).map_err(|_| OprfError::Proof)?;
    let inputs: Vec<&[u8]> = blinded.iter().map(|b| b.cpi.as_str().as_bytes()).collect();
    let clients: Vec<VoprfClient<Suite>> = blinded.iter().map(|b| b.state.clone()).collect();
    let outputs =
        VoprfClient::batch_finalize(&inputs, &clients, &messages, &proof, public.element()?)
            .map_err(|e| match e {
                voprf::Error::ProofVerification => OprfError::Proof,
                _ => OprfError::BatchSize,
            })?;
    outputs
        .zip(blinded)
        .map(|(o, b)| {
            o.map(|o| Evaluated {
                cpi: b.cpi.clone(),
                output: output(&o),
                key: *public,
            })
            .map_err(|_| OprfError::Input.into())
        })
        .collect()
}

fn output(bytes: &[u8]) -> OprfOutput {
    let mut out = [0u8; OUTPUT_BYTES];
    out.copy_from_slice(bytes);
    OprfOutput(out)
}

fn element_bytes<T: Serialised>(e: &T) -> [u8; ELEMENT_BYTES] {
    let mut out = [0u8; ELEMENT_BYTES];
    out.copy_from_slice(&e.bytes());
    out
}

fn proof_bytes(p: &Proof<Suite>) -> [u8; PROOF_BYTES] {
    let mut out = [0u8; PROOF_BYTES];
    out.copy_from_slice(&p.serialize());
    out
}

/// The crate's element types, serialised.
trait Serialised {
    fn bytes(&self) -> Vec<u8>;
}

impl Serialised for BlindedElement<Suite> {
    fn bytes(&self) -> Vec<u8> {
        self.serialize().to_vec()
    }
}

impl Serialised for EvaluationElement<Suite> {
    fn bytes(&self) -> Vec<u8> {
        self.serialize().to_vec()
    }
}

impl From<OprfError> for CoreError {
    fn from(e: OprfError) -> Self {
        CoreError::Oprf(e)
    }
}

#[cfg(test)]
mod tests {
    //! RFC 9497 appendix A.1.2 (ristretto255-SHA512, VOPRF mode). The inputs there are raw bytes
    //! (`00`, `5a` x 17), not CPIs, so these tests drive the `voprf` calls this module makes with
    //! the RFC's inputs, and the CPI-level functions with a round trip.
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    fn h(s: &str) -> Vec<u8> {
        hex::decode(s).unwrap()
    }

    const SEED: &str = "a3a3a3a3a3a3a3a3a3a3a3a3a3a3a3a3a3a3a3a3a3a3a3a3a3a3a3a3a3a3a3a3";
    const KEY_INFO: &str = "74657374206b6579";
    const SK: &str = "e6f73f344b79b379f1a0dd37e07ff62e38d9f71345ce62ae3a9bc60b04ccd909";
    const PK: &str = "c803e2cc6b05fc15064549b5920659ca4a77b2cca6f04f6b357009335476ad4e";
    const BLIND: &str = "64d37aed22a27f5191de1c1d69fadb899d8862b58eb4220029e036ec4c1f6706";

    /// (input, blinded element, evaluation element, proof, output) of test vectors 1 and 2.
    const VECTORS: [(&str, &str, &str, &str, &str); 2] = [
        (
            "00",
            "863f330cc1a1259ed5a5998a23acfd37fb4351a793a5b3c090b642ddc439b945",
            "aa8fa048764d5623868679402ff6108d2521884fa138cd7f9c7669a9a014267e",
            "ddef93772692e535d1a53903db24367355cc2cc78de93b3be5a8ffcc6985dd066d4346421d17bf5117a2a1ff0fcb2a759f58a539dfbe857a40bce4cf49ec600d",
            "b58cfbe118e0cb94d79b5fd6a6dafb98764dff49c14e1770b566e42402da1a7da4d8527693914139caee5bd03903af43a491351d23b430948dd50cde10d32b3c",
        ),
        (
            "5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a",
            "cc0b2a350101881d8a4cba4c80241d74fb7dcbfde4a61fde2f91443c2bf9ef0c",
            "60a59a57208d48aca71e9e850d22674b611f752bed48b36f7a91b372bd7ad468",
            "401a0da6264f8cf45bb2f5264bc31e109155600babb3cd4e5af7d181a2c9dc0a67154fabf031fd936051dec80b0b6ae29c9503493dde7393b722eafdf5a50b02",
            "8a9a2f3c7f085b65933594309041fc1898d42d0858e59f90814ae90571a6df60356f4610bf816f27afdd84f47719e480906d27ecd994985890e5f539e7ea74b6",
        ),
    ];

    #[test]
    fn rfc9497_key_derivation() {
        let seed: [u8; 32] = h(SEED).try_into().unwrap();
        let key = OprfKey::derive(&seed, &h(KEY_INFO)).unwrap();
        assert_eq!(key.to_bytes().to_vec(), h(SK));
        assert_eq!(key.public().to_bytes().to_vec(), h(PK));
        let again = OprfKey::from_bytes(&h(SK)).unwrap();
        assert_eq!(again.public(), key.public());
    }

    #[test]
    fn rfc9497_blind_evaluate_and_finalize() {
        let key = OprfKey::from_bytes(&h(SK)).unwrap();
        let pk = key.public().element().unwrap();
        let blind = Suite::deserialize_scalar(&h(BLIND)).unwrap();
        for (input, blinded, evaluated, proof, out) in VECTORS {
            let input = h(input);
            // The DP's direct evaluation.
            assert_eq!(key.server.evaluate(&input).unwrap().to_vec(), h(out));
            // The client's blinding.
            let b = VoprfClient::<Suite>::deterministic_blind_unchecked(&input, blind).unwrap();
            assert_eq!(b.message.serialize().to_vec(), h(blinded));
            // The evaluator's element (its proof is randomised; the RFC's one is checked below).
            let mut rng = rand::thread_rng();
            let ours = key.server.blind_evaluate(&mut rng, &b.message);
            assert_eq!(ours.message.serialize().to_vec(), h(evaluated));
            // The client's proof check and unblinding, on the RFC's own evaluation and proof.
            let e = EvaluationElement::<Suite>::deserialize(&h(evaluated)).unwrap();
            let p = Proof::<Suite>::deserialize(&h(proof)).unwrap();
            let y = b.state.finalize(&input, &e, &p, pk).unwrap();
            assert_eq!(y.to_vec(), h(out));
            // A proof from another key is refused.
            let other = OprfKey::generate(&mut rng)
                .unwrap()
                .public()
                .element()
                .unwrap();
            assert!(b.state.finalize(&input, &e, &p, other).is_err());
        }
    }

    fn cpis() -> Vec<Cpi> {
        [
            "tel:+14155550100",
            "mailto:bob@example.org",
            "tel:+442079460000",
        ]
        .iter()
        .map(|c| Cpi::parse(c).unwrap())
        .collect()
    }

    #[test]
    fn blinded_batches_give_the_direct_outputs() {
        let mut rng = rand::thread_rng();
        let key = OprfKey::generate(&mut rng).unwrap();
        let blinded: Vec<Blinded> = cpis()
            .iter()
            .map(|c| Blinded::new(c, &mut rng).unwrap())
            .collect();
        let elements: Vec<_> = blinded.iter().map(|b| *b.element()).collect();
        let evaluation = key.evaluate_blinded(&mut rng, &elements).unwrap();
        let outputs = finalize(&blinded, &evaluation, &key.public()).unwrap();
        for (cpi, y) in cpis().iter().zip(&outputs) {
            assert_eq!(y.cpi(), cpi);
            assert_eq!(*y.output(), key.evaluate(cpi).unwrap());
        }
        // Blinding is randomised: the same CPI blinds differently each time.
        let again = Blinded::new(&cpis()[0], &mut rng).unwrap();
        assert_ne!(again.element(), blinded[0].element());
        // Deterministic blinding (tests only) reproduces its element.
        let fixed = Blinded::with_blind(&cpis()[0], &h(BLIND));
        assert_eq!(
            fixed.element(),
            Blinded::with_blind(&cpis()[0], &h(BLIND)).element()
        );
    }

    #[test]
    fn wrong_keys_counts_and_encodings_are_refused() {
        let mut rng = rand::thread_rng();
        let key = OprfKey::generate(&mut rng).unwrap();
        let other = OprfKey::generate(&mut rng).unwrap();
        let blinded: Vec<Blinded> = cpis()
            .iter()
            .map(|c| Blinded::new(c, &mut rng).unwrap())
            .collect();
        let elements: Vec<_> = blinded.iter().map(|b| *b.element()).collect();
        let evaluation = other.evaluate_blinded(&mut rng, &elements).unwrap();
        let err = finalize(&blinded, &evaluation, &key.public()).unwrap_err();
        assert!(matches!(err, CoreError::Oprf(OprfError::Proof)), "{err}");

        let mut short = key.evaluate_blinded(&mut rng, &elements).unwrap();
        short.elements.pop();
        let err = finalize(&blinded, &short, &key.public()).unwrap_err();
        assert!(
            matches!(
                err,
                CoreError::Oprf(OprfError::Count {
                    expected: 3,
                    got: 2
                })
            ),
            "{err}"
        );

        let mut swapped = key.evaluate_blinded(&mut rng, &elements).unwrap();
        swapped.elements.swap(0, 1);
        let err = finalize(&blinded, &swapped, &key.public()).unwrap_err();
        assert!(matches!(err, CoreError::Oprf(OprfError::Proof)), "{err}");

        let mut bad = elements.clone();
        bad[1] = [0u8; 32]; // the identity: not a valid element
        let err = key.evaluate_blinded(&mut rng, &bad).unwrap_err();
        assert!(
            matches!(err, CoreError::Oprf(OprfError::Element { index: 1 })),
            "{err}"
        );
        let err = key.evaluate_blinded(&mut rng, &[]).unwrap_err();
        assert!(
            matches!(err, CoreError::Oprf(OprfError::EmptyBatch)),
            "{err}"
        );

        // Non-canonical and identity public keys, zero and out-of-range secret keys.
        let mut pk = key.public().to_bytes();
        assert!(OprfPublicKey::from_bytes(&[0u8; 32]).is_err());
        pk[31] |= 0x80;
        assert!(OprfPublicKey::from_bytes(&pk).is_err());
        assert!(OprfKey::from_bytes(&[0u8; 32]).is_err());
        assert!(OprfKey::from_bytes(&[0xff; 32]).is_err());
        assert!(OprfKey::from_bytes(&[1u8; 31]).is_err());
        // Debug output never shows the secret.
        let shown = format!("{key:?}");
        let secret: String = key.to_bytes().iter().map(|b| format!("{b:02x}")).collect();
        assert!(!shown.contains(&secret[..16]), "{shown}");
    }
}
