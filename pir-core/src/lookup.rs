//! The client side of a private lookup.
//!
//! ```text
//! LookupClient::blind(cpis)           -> [Blinded] { element }        (one element per CPI)
//!       evaluator: OprfKey::evaluate_blinded(elements) -> Evaluation  (elements + one proof)
//! LookupClient::finalize(blinded, evaluation) -> [Evaluated]          (proof checked against
//!                                                                       the layout's OPRF key)
//! LookupClient::query(evaluated)      -> PendingLookup { query bytes } (one PIR query, always)
//!       server: Database::answer(keys, query bytes) -> response bytes   (Spiral)
//!               YpirDatabase::answer(query bytes) -> response bytes     (YPIR+SP: no keys)
//! pending.decode(client, response)    -> LookupResult                  (opened and verified)
//! ```
//!
//! Nothing sent depends on the CPI except the blinded element (uniformly random to the
//! evaluator) and the encrypted query: absent and opted-out CPIs cost exactly the same messages
//! as present ones.

use sha2::{Digest, Sha256};

use rand::{CryptoRng, RngCore};

use crate::{
    error::{CoreError, Result},
    identity::{Cpi, IssuerId, Mapping, OptOut, TrustStore},
    keyword::{
        EntrySecrets, LookupConfig,
        bucket::Bucket,
        entry::{self, Item},
    },
    oprf::{self, Blinded, Evaluated, Evaluation},
    pir::{
        self, ClientSecret, Engine, Scheme, SchemeParams,
        ypir::{self, YpirSecret},
    },
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

    /// These keys with their public half in the legacy form, as a client made them before the
    /// words no answer reads were left out (those words zero): for tests that such keys still
    /// register and answer.
    #[doc(hidden)]
    pub fn danger_in_legacy_form(&self) -> Result<Self> {
        let public = pir::legacy_form(&self.params, &self.public)?;
        Ok(Self::from_parts(self.params, self.secret.clone(), public))
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
/// [`PendingLookup::decode`], so a response is always opened with the keys of the CPI its
/// query was made for.
#[derive(Debug)]
pub struct PendingLookup {
    cpi: Cpi,
    secrets: EntrySecrets,
    query: Vec<u8>,
    /// YPIR+SP's secret of this one query (Spiral's is the client's keys).
    ypir: Option<YpirSecret>,
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

    /// Decrypts `response`, opens this CPI's sealed record in the bucket and verifies every
    /// statement in it against `client`'s trust store at time `now`.
    pub fn decode(self, client: &LookupClient, response: &[u8], now: u64) -> Result<LookupResult> {
        client.decode(self, response, now)
    }
}

/// The verified outcome of a lookup.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LookupResult {
    /// The CPI looked up.
    pub cpi: Cpi,
    /// Its verified, currently valid mappings; empty when not found or opted out.
    pub mappings: Vec<Mapping>,
    /// A verified, currently valid opt-out: the CPI is not discoverable (its mappings, if a
    /// server sent any beside it, are not reported).
    pub opt_out: Option<OptOut>,
    /// Genuine statements left out because they are outside their validity window at `now`.
    pub outside_validity: usize,
    /// Statements left out because their issuer is not in the trust store, by issuer (one
    /// entry per statement): trusting that issuer would show them.
    pub untrusted: Vec<IssuerId>,
}

impl LookupResult {
    /// True when at least one valid mapping was found.
    pub fn found(&self) -> bool {
        !self.mappings.is_empty()
    }

    /// True when the CPI opted out of discovery.
    pub fn opted_out(&self) -> bool {
        self.opt_out.is_some()
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
    /// Spiral's keys; `None` for YPIR+SP, whose every query carries its own.
    keys: Option<ClientKeys>,
    trust: TrustStore,
}

impl LookupClient {
    /// A client for the configuration's engine: with fresh keys for Spiral, none for YPIR+SP.
    pub fn new(config: LookupConfig, trust: TrustStore) -> Result<Self> {
        match config.scheme() {
            Scheme::Spiral(params) => {
                let keys = ClientKeys::generate(params)?;
                Self::with_keys(config, keys, trust)
            }
            Scheme::YpirSp(_) => Ok(Self {
                config,
                keys: None,
                trust,
            }),
        }
    }

    /// A Spiral client with existing keys (which must match the configuration's parameters).
    pub fn with_keys(config: LookupConfig, keys: ClientKeys, trust: TrustStore) -> Result<Self> {
        match config.scheme() {
            Scheme::Spiral(params) if keys.params == *params => Ok(Self {
                config,
                keys: Some(keys),
                trust,
            }),
            Scheme::Spiral(_) => Err(CoreError::KeysForOtherParams),
            Scheme::YpirSp(_) => Err(CoreError::WrongEngine {
                expected: Engine::Spiral,
                found: Engine::YpirSp,
            }),
        }
    }

    /// Spiral's keys, or for YPIR+SP an error: it has none.
    fn spiral_keys(&self) -> Result<(&SchemeParams, &ClientKeys)> {
        match (self.config.scheme(), &self.keys) {
            (Scheme::Spiral(params), Some(keys)) => Ok((params, keys)),
            (scheme, _) => Err(CoreError::WrongEngine {
                expected: Engine::Spiral,
                found: scheme.engine(),
            }),
        }
    }

    /// The configuration queried.
    pub fn config(&self) -> &LookupConfig {
        &self.config
    }

    /// The keys to register: Spiral's; `None` for YPIR+SP.
    pub fn keys(&self) -> Option<&ClientKeys> {
        self.keys.as_ref()
    }

    /// Moves to a new configuration with the same parameters (a new epoch), keeping the keys.
    pub fn set_config(&mut self, config: LookupConfig) -> Result<()> {
        *self = match self.keys.clone() {
            Some(keys) => Self::with_keys(config, keys, self.trust.clone())?,
            None if config.scheme() == self.config.scheme() => Self {
                config,
                keys: None,
                trust: self.trust.clone(),
            },
            None => return Err(CoreError::KeysForOtherParams),
        };
        Ok(())
    }

    /// Blinds each CPI for the evaluator (`Discovery/Evaluate`): one element per CPI, uniformly
    /// random to whoever sees it.
    pub fn blind<R: RngCore + CryptoRng>(&self, cpis: &[Cpi], rng: &mut R) -> Result<Vec<Blinded>> {
        cpis.iter().map(|c| Blinded::new(c, rng)).collect()
    }

    /// Checks the evaluator's proof against the snapshot's OPRF public key and unblinds: the
    /// CPIs with their OPRF outputs, ready for [`LookupClient::query`].
    pub fn finalize(&self, blinded: &[Blinded], evaluation: &Evaluation) -> Result<Vec<Evaluated>> {
        oprf::finalize(blinded, evaluation, &self.config.layout().oprf_key)
    }

    /// The PIR query for an evaluated CPI's bucket. Refused if the evaluation was proven under
    /// another OPRF key than this configuration's (the DP rotated its key since): evaluate
    /// again.
    pub fn query(&self, evaluated: &Evaluated) -> Result<PendingLookup> {
        let layout_key = self.config.layout().oprf_key;
        if *evaluated.key() != layout_key {
            return Err(CoreError::OprfKeyMismatch {
                expected: layout_key.to_string(),
            });
        }
        let secrets = self.config.layout().locate(evaluated.output());
        let (query, ypir) = self.encrypt(secrets.location().bucket.0 as usize)?;
        Ok(PendingLookup {
            cpi: evaluated.cpi().clone(),
            secrets,
            query,
            ypir,
        })
    }

    /// A query for bucket `index`, with YPIR+SP's secret of it.
    fn encrypt(&self, index: usize) -> Result<(Vec<u8>, Option<YpirSecret>)> {
        match self.config.scheme() {
            Scheme::YpirSp(params) => {
                let (secret, query) = ypir::query(params, index)?;
                Ok((query, Some(secret)))
            }
            Scheme::Spiral(_) => {
                let (params, keys) = self.spiral_keys()?;
                Ok((pir::query(params, &keys.secret, index)?, None))
            }
        }
    }

    /// A cover query: a fresh encryption of a uniformly random bucket's index, of the same
    /// size and made with the same keys as [`LookupClient::query`]'s, so that nobody without
    /// the secret key tells the two apart. For a sharded client that pads a shard's share of a
    /// batch, or queries the shards a CPI is not in; its answer is never decoded.
    pub fn cover_query<R: RngCore + CryptoRng>(&self, rng: &mut R) -> Result<Vec<u8>> {
        let buckets = self.config.layout().num_buckets.max(1);
        let bucket = (rng.next_u64() % u64::from(buckets)) as usize;
        Ok(self.encrypt(bucket)?.0)
    }

    /// Decrypts `response` to the CPI's bucket, opens the CPI's sealed record in it and
    /// verifies every statement at time `now`. A record that opens but does not decode, or a
    /// statement whose signature fails under a trusted issuer, is an error: the server or the
    /// snapshot is lying. No record that opens is "not found" (as a server that drops a
    /// record could make it anyway).
    pub fn decode(
        &self,
        pending: PendingLookup,
        response: &[u8],
        now: u64,
    ) -> Result<LookupResult> {
        let item = match &pending.ypir {
            Some(secret) => ypir::decode(secret, response)?,
            None => {
                let (params, keys) = self.spiral_keys()?;
                pir::decode(params, &keys.secret, response)?
            }
        };
        let bucket = Bucket::decode(&item)?;
        let items = match bucket.find(&pending.secrets) {
            Some((_, record)) => entry::decode_record(&pending.cpi, &record, self.config.layout())?,
            None => Vec::new(),
        };
        let mut result = LookupResult {
            cpi: pending.cpi,
            mappings: Vec::new(),
            opt_out: None,
            outside_validity: 0,
            untrusted: Vec::new(),
        };
        for item in items {
            // An issuer the caller does not trust is the caller's choice, not a lie: skip and
            // count its statements. Any other failure means the server or snapshot is lying.
            let (verified, in_window) = match &item {
                Item::Mapping(m) => (
                    m.verify_signatures(&self.trust),
                    m.check_window(now).is_ok(),
                ),
                Item::OptOut(o) => (o.verify_signature(&self.trust), o.in_window(now)),
            };
            match verified {
                Err(CoreError::UnknownIssuer(issuer)) => {
                    result.untrusted.push(issuer);
                    continue;
                }
                other => other?,
            }
            match (item, in_window) {
                (_, false) => result.outside_validity += 1,
                (Item::Mapping(m), true) => result.mappings.push(m),
                (Item::OptOut(o), true) => result.opt_out = result.opt_out.or(Some(o)),
            }
        }
        if result.opt_out.is_some() {
            result.mappings.clear();
        }
        Ok(result)
    }
}
