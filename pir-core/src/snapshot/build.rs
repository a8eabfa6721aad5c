//! Building a snapshot from signed mappings: verify, deduplicate, lay out, encode.

use std::collections::{BTreeMap, HashMap};

use rand::RngCore;
use rayon::prelude::*;
use sha2::{Digest, Sha256};

use super::{Snapshot, header::SnapshotHeader};
use crate::{
    error::{CoreError, Overflow, Result},
    identity::{Cpi, Mapping, TrustStore, VerifiedMapping},
    keyword::{
        KeywordLayout, Tag,
        bucket::{self, BUCKET_HEADER_BYTES},
    },
    pir::{Database, SchemeParams},
};

/// Different salts tried at one size before growing the database.
const SALT_ATTEMPTS: u32 = 4;

/// Options for [`Snapshot::build`].
#[derive(Clone, Debug, Default)]
pub struct BuildOptions {
    /// Epoch of the new snapshot.
    pub epoch: u64,
    /// Unix time used for expiry and as creation time.
    pub now: u64,
    /// Fixed salt (reproducible builds); random when `None`.
    pub salt: Option<[u8; 32]>,
    /// Fixed scheme parameters; the smallest fitting vetted preset when `None`.
    pub scheme: Option<SchemeParams>,
}

/// What a build did.
#[derive(Clone, Debug, PartialEq)]
pub struct BuildReport {
    /// Mappings in the input.
    pub input_mappings: usize,
    /// Mappings dropped because `not_after` had passed.
    pub expired_dropped: usize,
    /// Mappings that replaced an earlier one for the same CPI and MSP.
    pub duplicates_replaced: usize,
    /// Mappings stored.
    pub stored_mappings: usize,
    /// Salts tried before one fitted.
    pub layout_attempts: u32,
    /// Record bytes over database capacity.
    pub packing_efficiency: f64,
}

struct Entry {
    tag: Tag,
    compact: Vec<u8>,
}

fn derive_salt(base: &[u8; 32], attempt: u32) -> [u8; 32] {
    if attempt == 0 {
        return *base;
    }
    Sha256::new()
        .chain_update(b"pir-discovery/salt-retry/v1\0")
        .chain_update(base)
        .chain_update(attempt.to_le_bytes())
        .finalize()
        .into()
}

impl Snapshot {
    /// Builds a snapshot: verifies every mapping, drops expired ones, keeps the last mapping for
    /// each (CPI, MSP), lays buckets out and preprocesses the database.
    pub fn build(
        mappings: Vec<Mapping>,
        trust: &TrustStore,
        opts: &BuildOptions,
    ) -> Result<(Self, BuildReport)> {
        Self::build_with_progress(mappings, trust, opts, &|_, _| {})
    }

    /// [`Snapshot::build`], reporting `(items encoded, items in all)` to `progress`.
    pub fn build_with_progress(
        mappings: Vec<Mapping>,
        trust: &TrustStore,
        opts: &BuildOptions,
        progress: &(dyn Fn(usize, usize) + Sync),
    ) -> Result<(Self, BuildReport)> {
        let verified = mappings
            .into_par_iter()
            .enumerate()
            .map(|(index, m)| {
                VerifiedMapping::new(m, trust).map_err(|e| CoreError::InvalidMapping {
                    index,
                    source: Box::new(e),
                })
            })
            .collect::<Result<Vec<_>>>()?;
        Self::build_verified(verified, opts, progress)
    }

    /// Builds from mappings already verified (see [`Snapshot::build`] for what happens).
    pub fn build_verified(
        mappings: Vec<VerifiedMapping>,
        opts: &BuildOptions,
        progress: &(dyn Fn(usize, usize) + Sync),
    ) -> Result<(Self, BuildReport)> {
        let input_mappings = mappings.len();
        // Last mapping wins for each (CPI, MSP); expired ones go.
        let mut expired_dropped = 0;
        let mut by_key: HashMap<(Cpi, String), Mapping> = HashMap::new();
        for m in mappings.into_iter().map(VerifiedMapping::into_inner) {
            if m.fields.not_after < opts.now {
                expired_dropped += 1;
                continue;
            }
            by_key.insert((m.fields.cpi.clone(), m.fields.msp.clone()), m);
        }
        let kept = input_mappings - expired_dropped;
        let duplicates_replaced = kept - by_key.len();
        let mut by_cpi: BTreeMap<Cpi, Vec<Mapping>> = BTreeMap::new();
        for ((cpi, _), m) in by_key {
            by_cpi.entry(cpi).or_default().push(m);
        }
        let stored_mappings = kept - duplicates_replaced;
        let groups: Vec<(Cpi, Vec<Vec<u8>>)> = by_cpi
            .into_iter()
            .map(|(cpi, mut ms)| {
                ms.sort_by(|a, b| a.fields.msp.cmp(&b.fields.msp));
                (cpi, ms.iter().map(bucket::encode_compact).collect())
            })
            .collect();
        let record_bytes: u64 = groups
            .iter()
            .flat_map(|(_, es)| es.iter().map(|c| bucket::entry_len(c.len()) as u64))
            .sum();

        let candidates: Vec<SchemeParams> = match opts.scheme {
            Some(s) => vec![s],
            None => SchemeParams::vetted_presets().map(|p| p.params).collect(),
        };
        let base_salt = opts.salt.unwrap_or_else(|| {
            let mut s = [0u8; 32];
            rand::rngs::OsRng.fill_bytes(&mut s);
            s
        });
        let mut attempts = 0;
        let mut last_overflow = None;
        for scheme in candidates {
            scheme.validate()?;
            let item_bytes = scheme.item_bytes as usize;
            if let Some((cpi, es)) = groups.iter().find(|(_, es)| {
                BUCKET_HEADER_BYTES + es.iter().map(|c| bucket::entry_len(c.len())).sum::<usize>()
                    > item_bytes
            }) {
                return Err(CoreError::BucketOverflow(Overflow::OneCpi {
                    cpi: cpi.clone(),
                    mappings: es.len(),
                    item_bytes,
                }));
            }
            if record_bytes + (scheme.num_items() * BUCKET_HEADER_BYTES) as u64
                > scheme.capacity_bytes()
            {
                continue;
            }
            for attempt in 0..SALT_ATTEMPTS {
                attempts += 1;
                let layout = KeywordLayout::new(
                    derive_salt(&base_salt, attempt),
                    scheme.num_items() as u32,
                )?;
                let located: Vec<(usize, Tag)> = groups
                    .par_iter()
                    .map(|(cpi, _)| {
                        let l = layout.locate(cpi);
                        (l.bucket.0 as usize, l.tag)
                    })
                    .collect();
                let mut load = vec![BUCKET_HEADER_BYTES; scheme.num_items()];
                for ((b, _), (_, es)) in located.iter().zip(&groups) {
                    load[*b] += es.iter().map(|c| bucket::entry_len(c.len())).sum::<usize>();
                }
                let max = load.iter().copied().max().unwrap_or(0);
                if max > item_bytes {
                    tracing::debug!(attempt, max, item_bytes, "bucket overflow, retrying");
                    last_overflow = Some((max, item_bytes, scheme.num_items()));
                    continue;
                }
                let mut buckets: Vec<Vec<Entry>> =
                    (0..scheme.num_items()).map(|_| Vec::new()).collect();
                for ((b, tag), (_, es)) in located.into_iter().zip(groups) {
                    buckets[b].extend(es.into_iter().map(|compact| Entry { tag, compact }));
                }
                buckets.par_iter_mut().for_each(|b| {
                    b.sort_unstable_by(|x, y| (x.tag, &x.compact).cmp(&(y.tag, &y.compact)))
                });
                let header = SnapshotHeader {
                    scheme,
                    layout,
                    epoch: opts.epoch,
                    created_at: opts.now,
                    mapping_count: 0,
                    cpi_count: 0,
                    record_bytes: 0,
                    base: None,
                    plaintext_checksum: [0; 32],
                    db_checksum: [0; 32],
                    signature: None,
                };
                let snapshot = Self::encode(header, &buckets, progress)?;
                let report = BuildReport {
                    input_mappings,
                    expired_dropped,
                    duplicates_replaced,
                    stored_mappings,
                    layout_attempts: attempts,
                    packing_efficiency: snapshot.header.packing_efficiency(),
                };
                return Ok((snapshot, report));
            }
        }
        match (opts.scheme, last_overflow) {
            (Some(_), Some((needs, item_bytes, items))) => {
                Err(CoreError::BucketOverflow(Overflow::Fullest {
                    needs,
                    item_bytes,
                    items,
                    salts: attempts,
                }))
            }
            (Some(s), None) => Err(CoreError::TooLargeForShape {
                record_bytes,
                items: s.num_items(),
                item_bytes: s.item_bytes,
            }),
            (None, _) => Err(CoreError::TooLargeForPresets { record_bytes }),
        }
    }

    fn encode(
        header: SnapshotHeader,
        buckets: &[Vec<Entry>],
        progress: &(dyn Fn(usize, usize) + Sync),
    ) -> Result<Self> {
        let scheme = header.scheme;
        let item_bytes = scheme.item_bytes as usize;
        let mut plaintext = vec![0u8; scheme.num_items() * item_bytes];
        plaintext
            .par_chunks_mut(item_bytes)
            .zip(buckets)
            .try_for_each(|(item, entries)| {
                bucket::encode_bucket(entries.iter().map(|e| (e.tag, e.compact.as_slice())), item)
            })?;
        let mut db = Database::zeroed(scheme);
        let all: Vec<usize> = (0..scheme.num_items()).collect();
        db.encode_items(&plaintext, &all, progress)?;
        let mut snapshot = Self::from_parts(header, plaintext, db);
        snapshot.seal()?;
        Ok(snapshot)
    }
}
