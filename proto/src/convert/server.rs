//! The server's side: what it takes from the wire, each checked into a type that carries the
//! result ([`QueryIn`], [`RegisterKeysIn`]), and the responses it builds (a snapshot's
//! configuration, answers named by its header).

use pir_core::{
    CoreError, KeyId, QueryMacKey, Snapshot, SnapshotHeader, query_auth::QUERY_MAC_BYTES,
};

use crate::v1;

/// Why a `QueryRequest` is refused by its shape, before any key or snapshot is looked at.
///
/// Not `#[non_exhaustive]`: the server maps every variant to a status, and a new one should make
/// it decide.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum QueryError {
    /// The request holds no query.
    #[error("no queries")]
    NoQueries,
    /// More queries than the server takes in one request.
    #[error("{got} queries in one request; at most {max}")]
    TooMany {
        /// Queries sent.
        got: usize,
        /// The server's limit.
        max: u32,
    },
    /// A key id that is not a SHA-256 digest.
    #[error("key id must be 32 bytes")]
    KeyIdLength {
        /// Its length in bytes.
        got: usize,
    },
    /// A MAC that is not an HMAC-SHA256 (an absent one is for the server to refuse, once it
    /// knows the key id: a client too old to send one hears that, not this).
    #[error("mac must be 32 bytes (HMAC-SHA256), got {got}")]
    MacLength {
        /// Its length in bytes.
        got: usize,
    },
}

/// A `QueryRequest` from the wire: a key id, an epoch, between 1 and the server's limit of
/// queries (their bytes are checked by the engine, which knows the parameters) and, unless the
/// client is too old to send one, a MAC of the right length (checked by the server against the
/// registered mac key).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QueryIn {
    /// `None` for a request without keys (YPIR+SP: no key id, no MAC).
    key_id: Option<KeyId>,
    epoch: u64,
    shard: u32,
    queries: Vec<Vec<u8>>,
    mac: Option<[u8; QUERY_MAC_BYTES]>,
}

impl QueryIn {
    /// Checks a request's shape for a server that takes at most `max_queries` queries per
    /// request, in the order the server has always refused them: no queries, too many, then
    /// the key id's length.
    ///
    /// The limit is a parameter rather than a second check in the server so that those three
    /// stay in that order in one place (a request both too large and with a bad key id is
    /// RESOURCE_EXHAUSTED, not INVALID_ARGUMENT). The epoch is not checked here: whether it is
    /// the served one depends on the snapshot, and the server checks it before this.
    pub fn parse(req: v1::QueryRequest, max_queries: u32) -> Result<Self, QueryError> {
        if req.queries.is_empty() {
            return Err(QueryError::NoQueries);
        }
        if req.queries.len() > max_queries as usize {
            return Err(QueryError::TooMany {
                got: req.queries.len(),
                max: max_queries,
            });
        }
        let got = req.key_id.len();
        let key_id = match got {
            0 => None,
            _ => Some(
                <[u8; 32]>::try_from(req.key_id)
                    .map(KeyId)
                    .map_err(|_| QueryError::KeyIdLength { got })?,
            ),
        };
        let mac = match req.mac.len() {
            0 => None,
            got => Some(
                <[u8; QUERY_MAC_BYTES]>::try_from(req.mac)
                    .map_err(|_| QueryError::MacLength { got })?,
            ),
        };
        Ok(Self {
            key_id,
            epoch: req.epoch,
            shard: req.shard,
            queries: req.queries,
            mac,
        })
    }

    /// The shard queried (0 unsharded).
    pub fn shard(&self) -> u32 {
        self.shard
    }

    /// The request's MAC; `None` from a client too old to send one.
    pub fn mac(&self) -> Option<&[u8; QUERY_MAC_BYTES]> {
        self.mac.as_ref()
    }

    /// The id of the keys the queries were made with; `None` for queries without keys (a
    /// YPIR+SP client's).
    pub fn key_id(&self) -> Option<KeyId> {
        self.key_id
    }

    /// The epoch the client believes is served.
    pub fn epoch(&self) -> u64 {
        self.epoch
    }

    /// The queries, at least one.
    pub fn queries(&self) -> &[Vec<u8>] {
        &self.queries
    }

    /// The queries, to hand to the answering engine.
    pub fn into_queries(self) -> Vec<Vec<u8>> {
        self.queries
    }
}

/// Why a `RegisterKeysRequest` is refused before its keys are parsed.
///
/// Not `#[non_exhaustive]`, for the reason [`QueryError`] is not.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RegisterKeysError {
    /// Keys of another size than the served parameters' public keys.
    #[error("public keys are {got} bytes; this snapshot's parameters need {expected}")]
    KeysLength {
        /// Bytes sent.
        got: usize,
        /// Bytes the parameters' public keys take.
        expected: usize,
    },
    /// No mac key: a client from before queries were authenticated.
    #[error(
        "no query_mac_key: this server authenticates every query (a MAC under a key registered \
         with the public keys); upgrade the client"
    )]
    MacKeyMissing,
    /// A mac key of another length than HMAC-SHA256's.
    #[error("query_mac_key must be 32 bytes, got {got}")]
    MacKeyLength {
        /// Its length in bytes.
        got: usize,
    },
}

/// A `RegisterKeysRequest` from the wire: public keys of the size the served parameters need,
/// their [`KeyId`], and the mac key their queries are authenticated with. Whether the bytes are
/// keys is for the engine (`EvalKeys::parse`).
#[derive(Clone, PartialEq, Eq)]
pub struct RegisterKeysIn {
    key_id: KeyId,
    public_keys: Vec<u8>,
    query_mac_key: QueryMacKey,
}

impl RegisterKeysIn {
    /// Checks that the keys are of one of the `accepted_lens` (the public-key sizes of the
    /// parameters served: the first is the current form's, named in the error) and that a mac
    /// key comes with them, then computes their id (hashing megabytes:
    /// a server calls this off its async runtime).
    ///
    /// The size is a parameter, not a check left to the server, so that the id is only ever
    /// computed for keys of the right size: hashing up to a message's worth of bytes that will
    /// be refused anyway is work a client could make the server do for nothing.
    pub fn parse(
        req: v1::RegisterKeysRequest,
        accepted_lens: &[usize],
    ) -> Result<Self, RegisterKeysError> {
        let public_keys = req.public_keys;
        if !accepted_lens.contains(&public_keys.len()) {
            return Err(RegisterKeysError::KeysLength {
                got: public_keys.len(),
                expected: accepted_lens.first().copied().unwrap_or(0),
            });
        }
        let query_mac_key = match req.query_mac_key.len() {
            0 => return Err(RegisterKeysError::MacKeyMissing),
            got => <[u8; QUERY_MAC_BYTES]>::try_from(req.query_mac_key)
                .map(QueryMacKey::from_bytes)
                .map_err(|_| RegisterKeysError::MacKeyLength { got })?,
        };
        Ok(Self {
            key_id: KeyId::of(&public_keys),
            public_keys,
            query_mac_key,
        })
    }

    /// The key the queries under these keys are authenticated with.
    pub fn query_mac_key(&self) -> &QueryMacKey {
        &self.query_mac_key
    }

    /// The keys' id, as [`KeyId::of`] computes it.
    pub fn key_id(&self) -> KeyId {
        self.key_id
    }

    /// The serialised public keys.
    pub fn public_keys(&self) -> &[u8] {
        &self.public_keys
    }

    /// The serialised public keys, to hand to the engine.
    pub fn into_public_keys(self) -> Vec<u8> {
        self.public_keys
    }
}

/// Megabytes of key bytes are not worth printing: the id and the length say which keys.
impl std::fmt::Debug for RegisterKeysIn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RegisterKeysIn")
            .field("key_id", &self.key_id)
            .field(
                "public_keys",
                &format_args!("{} bytes", self.public_keys.len()),
            )
            .finish()
    }
}

impl v1::GetConfigResponse {
    /// The configuration of a snapshot served with these limits.
    pub fn for_snapshot(snapshot: &Snapshot, limits: v1::Limits) -> Result<Self, CoreError> {
        Self::for_header(snapshot.header(), limits)
    }

    /// [`Self::for_snapshot`] from a snapshot's header alone.
    pub fn for_header(h: &SnapshotHeader, limits: v1::Limits) -> Result<Self, CoreError> {
        let sizes = h.scheme.message_sizes()?;
        let (scheme, ypir) = super::params::scheme_fields(&h.scheme);
        Ok(Self {
            epoch: h.epoch,
            scheme,
            ypir,
            layout: Some((&h.layout).into()),
            limits: Some(limits),
            sizes: Some(v1::MessageSizes {
                public_keys: sizes.public_keys as u64,
                query: sizes.query as u64,
                response: sizes.response as u64,
            }),
            mapping_count: h.mapping_count,
            cpi_count: h.cpi_count,
            created_at: h.created_at,
            packing_efficiency: h.packing_efficiency(),
            snapshot_header: h.to_bytes()?,
            manifest: Vec::new(),
            served_shards: vec![h.layout.shard.index],
        })
    }

    /// This configuration as one shard of a sharded directory: with the manifest's bytes and
    /// the shards the endpoint serves.
    pub fn in_directory(self, manifest: Vec<u8>, served_shards: Vec<u32>) -> Self {
        Self {
            manifest,
            served_shards,
            ..self
        }
    }
}

impl v1::QueryResponse {
    /// The answers to a request, by the snapshot whose configuration is `config` (as
    /// [`v1::GetConfigResponse::for_snapshot`] made it): its epoch and header hash.
    pub fn for_config(config: &v1::GetConfigResponse, answers: Vec<Vec<u8>>) -> Self {
        Self {
            epoch: config.epoch,
            answers,
            snapshot_hash: if config.snapshot_header.is_empty() {
                Vec::new()
            } else {
                SnapshotHeader::hash_bytes(&config.snapshot_header).to_vec()
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use pir_core::{ClientKeys, SchemeParams};

    use super::*;

    fn query(key_id: usize, queries: usize) -> v1::QueryRequest {
        v1::QueryRequest {
            key_id: vec![5; key_id],
            epoch: 3,
            queries: vec![vec![1, 2, 3]; queries],
            mac: vec![6; 32],
            shard: 2,
        }
    }

    /// A request without keys (a YPIR+SP client's): no key id, no MAC; its queries as sent.
    #[test]
    fn keyless_queries_parse_without_a_key_id() {
        let q = QueryIn::parse(v1::QueryRequest::keyless(7, vec![vec![1]; 2]), 4).unwrap();
        assert_eq!((q.key_id(), q.mac(), q.epoch()), (None, None, 7));
        assert_eq!(q.queries().len(), 2);
    }

    #[test]
    fn query_carries_its_mac_or_none_and_refuses_a_mac_of_another_length() {
        assert_eq!(
            QueryIn::parse(query(32, 1), 2).unwrap().mac(),
            Some(&[6; 32])
        );
        let old = v1::QueryRequest {
            mac: Vec::new(),
            ..query(32, 1)
        };
        assert_eq!(QueryIn::parse(old, 2).unwrap().mac(), None);
        for got in [1, 31, 33] {
            let bad = v1::QueryRequest {
                mac: vec![6; got],
                ..query(32, 1)
            };
            assert_eq!(QueryIn::parse(bad, 2), Err(QueryError::MacLength { got }));
        }
    }

    #[test]
    fn an_authenticated_request_verifies_under_the_registered_mac_key() {
        let keys = ClientKeys::generate(&SchemeParams::danger_test_only_small()).unwrap();
        let mut req = query(0, 2);
        req.authenticate(&keys);
        let reg = RegisterKeysIn::parse(
            v1::RegisterKeysRequest::for_keys(&keys),
            &[keys.public_bytes().len()],
        )
        .unwrap();
        assert_eq!(reg.key_id(), keys.id());
        let q = QueryIn::parse(req, 2).unwrap();
        assert_eq!(q.key_id().unwrap(), keys.id());
        let mac = q.mac().unwrap();
        assert!(
            reg.query_mac_key()
                .verify(&q.key_id().unwrap(), q.epoch(), q.queries(), mac)
        );
        assert!(
            !reg.query_mac_key()
                .verify(&q.key_id().unwrap(), q.epoch() + 1, q.queries(), mac)
        );
    }

    #[test]
    fn query_carries_key_id_epoch_shard_and_queries() {
        let q = QueryIn::parse(query(32, 2), 2).unwrap();
        assert_eq!(q.key_id().unwrap(), KeyId([5; 32]));
        assert_eq!(q.epoch(), 3);
        assert_eq!(q.shard(), 2);
        assert_eq!(q.queries().len(), 2);
        assert_eq!(q.into_queries(), vec![vec![1, 2, 3]; 2]);
    }

    #[test]
    fn query_refuses_an_empty_batch() {
        assert_eq!(QueryIn::parse(query(32, 0), 2), Err(QueryError::NoQueries));
    }

    #[test]
    fn query_refuses_more_than_the_limit() {
        assert_eq!(
            QueryIn::parse(query(32, 3), 2),
            Err(QueryError::TooMany { got: 3, max: 2 })
        );
    }

    #[test]
    fn query_refuses_a_key_id_of_another_length() {
        // (None at all is a query without keys: `keyless_queries_parse_without_a_key_id`.)
        for len in [31, 33] {
            assert_eq!(
                QueryIn::parse(query(len, 1), 2),
                Err(QueryError::KeyIdLength { got: len })
            );
        }
    }

    #[test]
    fn query_refusals_come_in_the_servers_order() {
        assert_eq!(QueryIn::parse(query(5, 0), 2), Err(QueryError::NoQueries));
        assert_eq!(
            QueryIn::parse(query(5, 3), 2),
            Err(QueryError::TooMany { got: 3, max: 2 })
        );
    }

    fn keys(len: usize) -> v1::RegisterKeysRequest {
        v1::RegisterKeysRequest {
            public_keys: vec![9; len],
            query_mac_key: vec![8; 32],
        }
    }

    #[test]
    fn register_keys_needs_a_mac_key_of_32_bytes() {
        let old = v1::RegisterKeysRequest {
            query_mac_key: Vec::new(),
            ..keys(100)
        };
        assert_eq!(
            RegisterKeysIn::parse(old, &[100]),
            Err(RegisterKeysError::MacKeyMissing)
        );
        let bad = v1::RegisterKeysRequest {
            query_mac_key: vec![8; 16],
            ..keys(100)
        };
        assert_eq!(
            RegisterKeysIn::parse(bad, &[100]),
            Err(RegisterKeysError::MacKeyLength { got: 16 })
        );
        // The size of the keys is checked first: it says more about what is wrong.
        let both = v1::RegisterKeysRequest {
            query_mac_key: Vec::new(),
            ..keys(99)
        };
        assert!(matches!(
            RegisterKeysIn::parse(both, &[100]),
            Err(RegisterKeysError::KeysLength { .. })
        ));
    }

    #[test]
    fn register_keys_carries_the_keys_and_their_id() {
        let r = RegisterKeysIn::parse(keys(100), &[100]).unwrap();
        assert_eq!(r.key_id(), KeyId::of(&[9; 100]));
        assert_eq!(r.query_mac_key(), &QueryMacKey::from_bytes([8; 32]));
        assert_eq!(r.public_keys(), &[9; 100]);
        assert_eq!(r.into_public_keys(), vec![9; 100]);
    }

    #[test]
    fn register_keys_refuses_keys_of_another_size() {
        for len in [0, 99, 101, 119, 121] {
            assert_eq!(
                RegisterKeysIn::parse(keys(len), &[100, 120]),
                Err(RegisterKeysError::KeysLength {
                    got: len,
                    expected: 100
                })
            );
        }
        // Either accepted size (the current form, the legacy one) passes.
        for len in [100, 120] {
            let r = RegisterKeysIn::parse(keys(len), &[100, 120]).unwrap();
            assert_eq!(r.public_keys().len(), len);
        }
    }
}
