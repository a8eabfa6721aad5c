//! The client's side: what it takes from the wire, each checked into a type that carries the
//! result ([`ConfigIn`] from a `GetConfigResponse`, [`AnswerIn`] from a `QueryResponse`), and
//! the requests it builds (a key registration, an authenticated query).

use pir_core::{
    ClientKeys, CoreError, KeywordLayout, LookupConfig, SnapshotHeader, pir::Scheme,
    snapshot::Manifest,
};

use crate::v1;

/// Why a wire message does not convert.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConvertError {
    /// A required field is absent.
    #[error("config lacks {field}")]
    Missing {
        /// The field's name.
        field: &'static str,
    },
    /// Both engines' shapes (`scheme` and `ypir`): a configuration has one.
    #[error("config has both a Spiral scheme and a YPIR+SP shape")]
    TwoEngines,
    /// A field that does not validate.
    #[error(transparent)]
    Invalid(#[from] CoreError),
    /// The snapshot header does not decode.
    #[error("snapshot header: {0}")]
    Header(#[source] CoreError),
    /// A field that says something else than the snapshot header it comes with.
    #[error("config's {field} differs from its snapshot header's")]
    HeaderMismatch {
        /// The field's name.
        field: &'static str,
    },
    /// The shard manifest does not decode, or the shard described is not the one it names.
    #[error("shard manifest: {0}")]
    Manifest(#[source] CoreError),
    /// A sharded snapshot's configuration without its manifest or header, or served shards
    /// that the manifest does not have.
    #[error("sharded configuration: {0}")]
    Shards(&'static str),
}

/// A `GetConfigResponse` from the wire, validated into what a client needs.
///
/// Made only by `TryFrom<v1::GetConfigResponse>`, which checks the scheme, the layout and that
/// they agree; the fields are private so that a `ConfigIn` is always one that checked out.
#[derive(Clone, Debug)]
pub struct ConfigIn {
    lookup: LookupConfig,
    /// The snapshot header the fields were checked against, and its hash; `None` from a server
    /// that sends none.
    header: Option<(SnapshotHeader, [u8; 32])>,
    /// The DP's manifest of a sharded directory, which names the header above.
    manifest: Option<Manifest>,
    served_shards: Vec<u32>,
    max_queries_per_request: u32,
    max_message_bytes: u64,
    sizes: ReportedSizes,
    mapping_count: u64,
    cpi_count: u64,
    created_at: u64,
    packing_efficiency: f64,
}

/// Message sizes as the server reports them, bytes: informational (a client computes its own
/// from the scheme), and all zero when the server sends none.
///
/// Kept as the wire's `u64`s rather than `pir_core::MessageSizes` (`usize`), so that a value a
/// 32-bit client cannot hold is still shown, not refused.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ReportedSizes {
    /// The client's public (evaluation) keys.
    pub public_keys: u64,
    /// One query.
    pub query: u64,
    /// One response.
    pub response: u64,
}

impl ConfigIn {
    /// Scheme, layout and epoch: what a client needs to query the snapshot.
    pub fn lookup(&self) -> &LookupConfig {
        &self.lookup
    }

    /// Largest batch the server takes (at least 1).
    pub fn max_queries_per_request(&self) -> u32 {
        self.max_queries_per_request
    }

    /// Largest message the server takes, bytes; 0 when it states no limit.
    pub fn max_message_bytes(&self) -> u64 {
        self.max_message_bytes
    }

    /// The message sizes the server reports.
    pub fn sizes(&self) -> ReportedSizes {
        self.sizes
    }

    /// Mappings in the snapshot (informational).
    pub fn mapping_count(&self) -> u64 {
        self.mapping_count
    }

    /// Distinct CPIs in the snapshot (informational).
    pub fn cpi_count(&self) -> u64 {
        self.cpi_count
    }

    /// When the snapshot was built, unix seconds (informational).
    pub fn created_at(&self) -> u64 {
        self.created_at
    }

    /// Record bytes over database capacity (informational).
    pub fn packing_efficiency(&self) -> f64 {
        self.packing_efficiency
    }

    /// The snapshot header the server sent, which every other field was checked against
    /// (its DP signature is for the receiver to check against the DP keys it trusts). `None`
    /// from a server that sends no header.
    pub fn header(&self) -> Option<&SnapshotHeader> {
        self.header.as_ref().map(|(h, _)| h)
    }

    /// blake3 of the snapshot header's bytes: which snapshot this is, beyond its epoch.
    pub fn header_hash(&self) -> Option<[u8; 32]> {
        self.header.as_ref().map(|(_, hash)| *hash)
    }

    /// The manifest of the sharded directory this shard belongs to (checked to name this
    /// shard's header; its DP signature is for the receiver to check). `None` unsharded.
    pub fn manifest(&self) -> Option<&Manifest> {
        self.manifest.as_ref()
    }

    /// The shards the endpoint answers queries for (`[0]` for an unsharded snapshot; none for
    /// a process of a sharded directory that only answers evaluations).
    pub fn served_shards(&self) -> &[u32] {
        &self.served_shards
    }
}

impl From<v1::MessageSizes> for ReportedSizes {
    fn from(s: v1::MessageSizes) -> Self {
        Self {
            public_keys: s.public_keys,
            query: s.query,
            response: s.response,
        }
    }
}

impl TryFrom<v1::GetConfigResponse> for ConfigIn {
    type Error = ConvertError;
    fn try_from(raw: v1::GetConfigResponse) -> Result<Self, ConvertError> {
        let missing = |field| ConvertError::Missing { field };
        // Exactly one engine's shape.
        let scheme = match (raw.scheme.as_ref(), raw.ypir.as_ref()) {
            (Some(p), None) => Scheme::Spiral(p.try_into()?),
            (None, Some(p)) => Scheme::YpirSp(p.try_into()?),
            (None, None) => return Err(missing("scheme")),
            (Some(_), Some(_)) => return Err(ConvertError::TwoEngines),
        };
        let layout =
            KeywordLayout::try_from(raw.layout.as_ref().ok_or_else(|| missing("layout"))?)?;
        let limits = raw.limits.unwrap_or_default();
        // The fields on their own first, then what the header says about them.
        let lookup = LookupConfig::new(scheme, layout.clone(), raw.epoch)?;
        let header = if raw.snapshot_header.is_empty() {
            None
        } else {
            let header =
                SnapshotHeader::from_bytes(&raw.snapshot_header).map_err(ConvertError::Header)?;
            let mismatch = |field| Err(ConvertError::HeaderMismatch { field });
            if header.scheme != scheme {
                return mismatch("scheme");
            }
            if header.layout != layout {
                return mismatch("layout");
            }
            if header.epoch != raw.epoch {
                return mismatch("epoch");
            }
            if (header.mapping_count, header.cpi_count, header.created_at)
                != (raw.mapping_count, raw.cpi_count, raw.created_at)
            {
                return mismatch("counts");
            }
            let hash = SnapshotHeader::hash_bytes(&raw.snapshot_header);
            Some((header, hash))
        };
        let manifest = if raw.manifest.is_empty() {
            if layout.shard.is_sharded() {
                return Err(ConvertError::Shards(
                    "a shard's configuration without its manifest",
                ));
            }
            None
        } else {
            let manifest = Manifest::from_bytes(&raw.manifest).map_err(ConvertError::Manifest)?;
            let Some((header, _)) = &header else {
                return Err(ConvertError::Shards(
                    "a manifest without the shard's header",
                ));
            };
            manifest
                .check_shard(layout.shard.index, header)
                .map_err(ConvertError::Manifest)?;
            Some(manifest)
        };
        let count = layout.shard.count;
        let mut served_shards = raw.served_shards;
        // An unsharded server that names no shard serves its one; a shard server that names
        // none answers evaluations only.
        if served_shards.is_empty() && manifest.is_none() {
            served_shards.push(layout.shard.index);
        }
        if served_shards.iter().any(|&s| s >= count)
            || !served_shards.is_sorted_by(|a, b| a < b)
            || !(served_shards.is_empty() || served_shards.contains(&layout.shard.index))
        {
            return Err(ConvertError::Shards(
                "served shards not ascending below the count, or without the one described",
            ));
        }
        Ok(Self {
            lookup,
            header,
            manifest,
            served_shards,
            max_queries_per_request: limits.max_queries_per_request.max(1),
            max_message_bytes: limits.max_message_bytes,
            sizes: raw.sizes.map(ReportedSizes::from).unwrap_or_default(),
            mapping_count: raw.mapping_count,
            cpi_count: raw.cpi_count,
            created_at: raw.created_at,
            packing_efficiency: raw.packing_efficiency,
        })
    }
}

/// Why a `QueryResponse` does not answer the request it came back for.
///
/// Not `#[non_exhaustive]`: the client decides per variant whether to heal or give up.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum AnswerError {
    /// Answers for another epoch than the one the queries were made for.
    #[error("answer for epoch {got}, asked for epoch {asked}")]
    Epoch {
        /// The response's epoch.
        got: u64,
        /// The epoch in the request.
        asked: u64,
    },
    /// Answers from another snapshot of the epoch asked for (another header hash): the same
    /// epoch was built twice, and the client's layout may not be the served one.
    #[error("answer from another snapshot of epoch {epoch} than the configuration's")]
    Snapshot {
        /// The epoch of both.
        epoch: u64,
    },
    /// Not one answer per query.
    #[error(
        "{got} {} to {sent} {}",
        noun(*.got, "answer", "answers"),
        noun(*.sent, "query", "queries")
    )]
    Count {
        /// Answers received.
        got: usize,
        /// Queries sent.
        sent: usize,
    },
}

fn noun(n: usize, one: &'static str, many: &'static str) -> &'static str {
    if n == 1 { one } else { many }
}

/// A `QueryResponse` from the wire that answers a request of `N` queries made for one epoch:
/// exactly `N` answers, in the order of the queries, for that epoch. The answers' bytes are for
/// the engine to check (`LookupClient::decode`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AnswerIn<const N: usize> {
    epoch: u64,
    answers: [Vec<u8>; N],
}

impl<const N: usize> AnswerIn<N> {
    /// Checks `resp` against a request of `N` queries made for `asked`: the epoch first, then
    /// the snapshot's header hash (a client that sees another epoch or another snapshot
    /// refreshes its configuration), then the count. The hash is compared only when both sides
    /// have one (a server or configuration without a header has none).
    pub fn parse(resp: v1::QueryResponse, asked: &ConfigIn) -> Result<Self, AnswerError> {
        let epoch = asked.lookup().epoch();
        if resp.epoch != epoch {
            return Err(AnswerError::Epoch {
                got: resp.epoch,
                asked: epoch,
            });
        }
        if let Some(hash) = asked.header_hash()
            && !resp.snapshot_hash.is_empty()
            && resp.snapshot_hash != hash
        {
            return Err(AnswerError::Snapshot { epoch });
        }
        let answers = <[Vec<u8>; N]>::try_from(resp.answers).map_err(|a| AnswerError::Count {
            got: a.len(),
            sent: N,
        })?;
        Ok(Self {
            epoch: resp.epoch,
            answers,
        })
    }

    /// The epoch answered, the one asked for.
    pub fn epoch(&self) -> u64 {
        self.epoch
    }

    /// The answers, one per query, in the queries' order.
    pub fn into_answers(self) -> [Vec<u8>; N] {
        self.answers
    }
}

impl v1::RegisterKeysRequest {
    /// The registration of `keys`: the public keys and the mac key their queries carry.
    pub fn for_keys(keys: &ClientKeys) -> Self {
        Self {
            public_keys: keys.public_bytes().to_vec(),
            query_mac_key: keys.query_mac_key().to_bytes().to_vec(),
        }
    }
}

impl v1::QueryRequest {
    /// A request without keys, for a server whose engine registers none (YPIR+SP: every
    /// query carries its own packing keys).
    pub fn keyless(epoch: u64, queries: Vec<Vec<u8>>) -> Self {
        Self {
            epoch,
            queries,
            ..Self::default()
        }
    }

    /// A request of `keys`'s owner for `queries` at `epoch`, authenticated.
    pub fn authenticated(keys: &ClientKeys, epoch: u64, queries: Vec<Vec<u8>>) -> Self {
        let mut request = Self {
            epoch,
            queries,
            ..Self::default()
        };
        request.authenticate(keys);
        request
    }

    /// Makes this a request of `keys`'s owner: sets the key id, and the MAC over the key id,
    /// the epoch and the queries (so call it last, once those are final).
    pub fn authenticate(&mut self, keys: &ClientKeys) {
        let id = keys.id();
        self.key_id = id.0.to_vec();
        self.mac = keys
            .query_mac_key()
            .tag(&id, self.epoch, &self.queries)
            .to_vec();
    }
}

#[cfg(test)]
mod tests {
    use pir_core::{
        SchemeFields, SchemeParams,
        error::{LayoutError, ParamsError},
    };

    use super::*;

    use crate::testing::config_response as config;

    #[test]
    fn config_carries_every_field() {
        let c = ConfigIn::try_from(config()).unwrap();
        assert_eq!(c.lookup().epoch(), 9);
        assert_eq!(
            *c.lookup().scheme(),
            Scheme::Spiral(SchemeParams::danger_test_only_small())
        );
        assert_eq!(c.lookup().layout().salt, [7; 32]);
        assert_eq!(c.max_queries_per_request(), 4);
        assert_eq!(c.max_message_bytes(), 64 << 20);
        let sizes = ReportedSizes {
            public_keys: 1 << 20,
            query: 30_000,
            response: 20_000,
        };
        assert_eq!(c.sizes(), sizes);
        assert_eq!(c.mapping_count(), 205);
        assert_eq!(c.cpi_count(), 203);
        assert_eq!(c.created_at(), 1_700_000_000);
        assert_eq!(c.packing_efficiency(), 0.0123);
    }

    #[test]
    fn config_without_limits_or_sizes_takes_defaults() {
        let c = ConfigIn::try_from(v1::GetConfigResponse {
            limits: None,
            sizes: None,
            ..config()
        })
        .unwrap();
        assert_eq!(c.max_queries_per_request(), 1);
        assert_eq!(c.max_message_bytes(), 0);
        assert_eq!(c.sizes(), ReportedSizes::default());
    }

    #[test]
    fn config_refuses_missing_scheme_or_layout() {
        let no_scheme = v1::GetConfigResponse {
            scheme: None,
            ..config()
        };
        assert!(matches!(
            ConfigIn::try_from(no_scheme),
            Err(ConvertError::Missing { field: "scheme" })
        ));
        let no_layout = v1::GetConfigResponse {
            layout: None,
            ..config()
        };
        assert!(matches!(
            ConfigIn::try_from(no_layout),
            Err(ConvertError::Missing { field: "layout" })
        ));
    }

    #[test]
    fn config_refuses_invalid_scheme() {
        let mut c = config();
        if let Some(s) = c.scheme.as_mut() {
            s.n = 0;
        }
        assert!(matches!(
            ConfigIn::try_from(c),
            Err(ConvertError::Invalid(CoreError::Params(ParamsError::N {
                n: 0
            })))
        ));
    }

    #[test]
    fn config_refuses_short_salt() {
        let mut c = config();
        if let Some(l) = c.layout.as_mut() {
            l.salt.truncate(31);
        }
        assert!(matches!(
            ConfigIn::try_from(c),
            Err(ConvertError::Invalid(CoreError::Layout(
                LayoutError::SaltLength { got: 31 }
            )))
        ));
    }

    #[test]
    fn config_refuses_layout_for_another_shape() {
        let mut c = config();
        if let Some(l) = c.layout.as_mut() {
            l.num_buckets /= 2;
        }
        assert!(matches!(
            ConfigIn::try_from(c),
            Err(ConvertError::Invalid(CoreError::BucketCount {
                buckets: 128,
                items: 256
            }))
        ));
    }

    fn answer(epoch: u64, answers: usize) -> v1::QueryResponse {
        v1::QueryResponse {
            epoch,
            answers: vec![vec![4; 8]; answers],
            snapshot_hash: Vec::new(),
        }
    }

    /// The fixture's configuration, moved to `epoch` and without its header.
    fn asked(epoch: u64) -> ConfigIn {
        ConfigIn::try_from(v1::GetConfigResponse {
            epoch,
            snapshot_header: Vec::new(),
            ..config()
        })
        .unwrap()
    }

    #[test]
    fn answer_carries_one_answer_per_query() {
        let a = AnswerIn::<2>::parse(answer(7, 2), &asked(7)).unwrap();
        assert_eq!(a.epoch(), 7);
        assert_eq!(a.into_answers(), [vec![4; 8], vec![4; 8]]);
    }

    #[test]
    fn answer_refuses_another_epoch() {
        assert_eq!(
            AnswerIn::<1>::parse(answer(8, 1), &asked(7)),
            Err(AnswerError::Epoch { got: 8, asked: 7 })
        );
    }

    #[test]
    fn answer_refuses_another_count() {
        for got in [0, 2] {
            assert_eq!(
                AnswerIn::<1>::parse(answer(7, got), &asked(7)),
                Err(AnswerError::Count { got, sent: 1 })
            );
        }
    }

    #[test]
    fn answer_checks_the_epoch_before_the_count() {
        assert_eq!(
            AnswerIn::<1>::parse(answer(8, 0), &asked(7)),
            Err(AnswerError::Epoch { got: 8, asked: 7 })
        );
    }

    /// A response names the snapshot that answered; one of the same epoch but another header
    /// is refused, so the client refreshes rather than decoding with another layout.
    #[test]
    fn answer_refuses_another_snapshot_of_the_same_epoch() {
        let config = ConfigIn::try_from(config()).unwrap();
        let hash = config.header_hash().unwrap();
        let with = |snapshot_hash: Vec<u8>| v1::QueryResponse {
            snapshot_hash,
            ..answer(9, 1)
        };
        AnswerIn::<1>::parse(with(hash.to_vec()), &config).unwrap();
        // A server that names no snapshot is taken at its epoch.
        AnswerIn::<1>::parse(with(Vec::new()), &config).unwrap();
        assert_eq!(
            AnswerIn::<1>::parse(with(vec![0; 32]), &config),
            Err(AnswerError::Snapshot { epoch: 9 })
        );
        // The server's side: a response names its configuration's header.
        let response = v1::QueryResponse::for_config(&crate::testing::config_response(), vec![]);
        assert_eq!(response.snapshot_hash, hash);
        assert_eq!(response.epoch, 9);
    }

    #[test]
    fn config_carries_its_header_and_its_hash() {
        let c = ConfigIn::try_from(config()).unwrap();
        assert_eq!(c.header(), Some(&crate::testing::config_header()));
        assert_eq!(
            c.header_hash(),
            Some(crate::testing::config_header().hash().unwrap())
        );
        let bare = ConfigIn::try_from(v1::GetConfigResponse {
            snapshot_header: Vec::new(),
            ..config()
        })
        .unwrap();
        assert_eq!((bare.header(), bare.header_hash()), (None, None));
    }

    /// Every field a header also states must say what the header says.
    #[test]
    fn config_refuses_fields_its_header_contradicts() {
        let other_layout =
            KeywordLayout::new([8; 32], 256, 144, pir_core::testing::oprf_key().public()).unwrap();
        let tiny = SchemeParams::try_from(SchemeFields {
            nu_1: 2,
            nu_2: 1,
            ..*SchemeParams::danger_test_only_small()
        })
        .unwrap();
        let cases: [(v1::GetConfigResponse, &str); 5] = [
            (
                v1::GetConfigResponse {
                    epoch: 10,
                    ..config()
                },
                "epoch",
            ),
            (
                v1::GetConfigResponse {
                    layout: Some((&other_layout).into()),
                    ..config()
                },
                "layout",
            ),
            (
                v1::GetConfigResponse {
                    scheme: Some((&tiny).into()),
                    layout: Some(
                        (&KeywordLayout::new(
                            [7; 32],
                            8,
                            144,
                            pir_core::testing::oprf_key().public(),
                        )
                        .unwrap())
                            .into(),
                    ),
                    ..config()
                },
                "scheme",
            ),
            (
                v1::GetConfigResponse {
                    mapping_count: 1,
                    ..config()
                },
                "counts",
            ),
            (
                v1::GetConfigResponse {
                    created_at: 1,
                    ..config()
                },
                "counts",
            ),
        ];
        for (raw, field) in cases {
            match ConfigIn::try_from(raw) {
                Err(ConvertError::HeaderMismatch { field: got }) => assert_eq!(got, field),
                other => panic!("{field}: {other:?}"),
            }
        }
        let mut bad = config();
        bad.snapshot_header.push(0);
        assert!(matches!(
            ConfigIn::try_from(bad),
            Err(ConvertError::Header(_))
        ));
        let mut bad = config();
        bad.snapshot_header.truncate(20);
        assert!(matches!(
            ConfigIn::try_from(bad),
            Err(ConvertError::Header(_))
        ));
    }
}
