//! Building a snapshot from signed statements: verify, deduplicate, key each CPI by its OPRF
//! output, seal its record into slots, lay the slots out in buckets, encode.

use std::collections::{BTreeMap, HashMap};

use rand::RngCore;
use rayon::prelude::*;
use sha2::{Digest, Sha256};

use super::{Snapshot, header::SnapshotHeader};
use crate::{
    error::{CoreError, LayoutError, Overflow, Result},
    identity::{Cpi, IssuerId, Mapping, TrustStore, VerifiedMapping, VerifiedOptOut},
    keyword::{
        KeywordLayout, SLOT_BYTES_RANGE, SLOT_OVERHEAD, Tag,
        bucket::{self, BUCKET_HEADER_BYTES},
        entry::{self, Item},
    },
    oprf::{OprfKey, OprfOutput},
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
    /// Fixed scheme; the smallest vetted preset that fits when `None`.
    pub scheme: Option<SchemeParams>,
    /// Fixed slot size (bytes of a record per slot); the size that wastes least when `None`.
    pub slot_bytes: Option<u32>,
}

/// Signed statements to build from, each checked against a trust store.
#[derive(Clone, Debug, Default)]
pub struct BuildInput {
    /// Mappings, in file order (a later one replaces an earlier one for the same CPI and MSP).
    pub mappings: Vec<VerifiedMapping>,
    /// Opt-outs, in file order. A CPI with an opt-out is stored with its opt-outs only.
    pub opt_outs: Vec<VerifiedOptOut>,
}

/// What a build did.
#[derive(Clone, Debug, PartialEq)]
pub struct BuildReport {
    /// Mappings given.
    pub input_mappings: usize,
    /// Opt-outs given.
    pub input_opt_outs: usize,
    /// Mappings and opt-outs dropped because they had expired.
    pub expired_dropped: usize,
    /// Mappings and opt-outs replaced by a later one for the same CPI and MSP (issuer).
    pub duplicates_replaced: usize,
    /// Mappings not stored because their CPI opted out.
    pub suppressed_by_opt_out: usize,
    /// Mappings stored.
    pub stored_mappings: usize,
    /// Opt-outs stored.
    pub stored_opt_outs: usize,
    /// Bytes of a record each slot holds.
    pub slot_bytes: u32,
    /// Salts tried (over all sizes).
    pub layout_attempts: u32,
    /// Record bytes over database capacity.
    pub packing_efficiency: f64,
}

/// A CPI's statements before keying: its mappings, and its opt-outs by issuer.
type Statements = (Vec<Mapping>, Vec<(IssuerId, Item)>);
/// A record's sealed slots, (tag, sealed chunk) each.
type Slots = Vec<(Tag, Vec<u8>)>;

/// One CPI ready to lay out: its OPRF output and its record.
struct Keyed {
    cpi: Cpi,
    y: OprfOutput,
    record: Vec<u8>,
    mappings: usize,
    opt_outs: usize,
}

/// The salt of attempt `attempt` (0 is the base salt).
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

/// The slot size, a multiple of 16 up to `max`, that stores `records` in the fewest bytes
/// (ties go to the larger slot: fewer slots to search).
fn choose_slot_bytes(records: &[Keyed], max: u32) -> u32 {
    let lens: Vec<usize> = records.iter().map(|k| k.record.len()).collect();
    (SLOT_BYTES_RANGE.start().div_ceil(16)..=max.min(512) / 16)
        .map(|m| m * 16)
        .min_by_key(|&p| {
            let p = p as usize;
            let total: usize = lens
                .iter()
                .map(|&l| entry::slots_for(l, p) * (p + SLOT_OVERHEAD))
                .sum();
            (total, usize::MAX - p)
        })
        .unwrap_or(*SLOT_BYTES_RANGE.start())
}

impl Snapshot {
    /// Verifies every mapping against `trust`, then builds as [`Snapshot::build_verified`].
    pub fn build(
        mappings: Vec<Mapping>,
        trust: &TrustStore,
        oprf: &OprfKey,
        opts: &BuildOptions,
    ) -> Result<(Self, BuildReport)> {
        let mappings = mappings
            .into_par_iter()
            .enumerate()
            .map(|(index, m)| {
                VerifiedMapping::new(m, trust).map_err(|e| CoreError::InvalidMapping {
                    index,
                    source: Box::new(e),
                })
            })
            .collect::<Result<Vec<_>>>()?;
        let input = BuildInput {
            mappings,
            opt_outs: Vec::new(),
        };
        Self::build_verified(input, oprf, opts, &|_, _| {})
    }

    /// Builds a snapshot keyed by `oprf` (the DP's OPRF key): expired statements are dropped,
    /// later ones replace earlier ones, a CPI with an opt-out keeps only its opt-outs; each
    /// CPI's record is sealed under keys from its OPRF output; the smallest shape that fits is
    /// chosen unless `opts.scheme` fixes it; if a bucket overflows, other salts are tried.
    /// `progress(done, total)` reports the NTT's progress.
    pub fn build_verified(
        input: BuildInput,
        oprf: &OprfKey,
        opts: &BuildOptions,
        progress: &(dyn Fn(usize, usize) + Sync),
    ) -> Result<(Self, BuildReport)> {
        // Checked before any use: a size of 0 would divide by zero when counting slots, and one
        // too large would be reported as a CPI overflowing its bucket.
        if let Some(got) = opts.slot_bytes
            && !SLOT_BYTES_RANGE.contains(&got)
        {
            return Err(CoreError::Layout(LayoutError::SlotBytes { got }));
        }
        let input_mappings = input.mappings.len();
        let input_opt_outs = input.opt_outs.len();
        let mut expired_dropped = 0;
        let mut by_msp: HashMap<(Cpi, String), Mapping> = HashMap::new();
        for m in input.mappings.into_iter().map(VerifiedMapping::into_inner) {
            if m.fields.not_after < opts.now {
                expired_dropped += 1;
                continue;
            }
            by_msp.insert((m.fields.cpi.clone(), m.fields.msp.clone()), m);
        }
        let mut by_issuer = HashMap::new();
        for o in input.opt_outs.into_iter().map(VerifiedOptOut::into_inner) {
            if o.not_after < opts.now {
                expired_dropped += 1;
                continue;
            }
            by_issuer.insert((o.cpi.clone(), o.issuer), o);
        }
        let duplicates_replaced =
            input_mappings + input_opt_outs - expired_dropped - by_msp.len() - by_issuer.len();

        let mut by_cpi: BTreeMap<Cpi, Statements> = BTreeMap::new();
        for ((cpi, _), m) in by_msp {
            by_cpi.entry(cpi).or_default().0.push(m);
        }
        for ((cpi, issuer), o) in by_issuer {
            by_cpi
                .entry(cpi)
                .or_default()
                .1
                .push((issuer, Item::OptOut(o)));
        }
        let mut suppressed_by_opt_out = 0;
        let groups: Vec<(Cpi, Vec<Item>, usize)> = by_cpi
            .into_iter()
            .map(|(cpi, (mut ms, mut os))| {
                if os.is_empty() {
                    ms.sort_by(|a, b| a.fields.msp.cmp(&b.fields.msp));
                    let n = ms.len();
                    (cpi, ms.into_iter().map(Item::Mapping).collect(), n)
                } else {
                    suppressed_by_opt_out += ms.len();
                    os.sort_by_key(|(issuer, _)| *issuer);
                    (cpi, os.into_iter().map(|(_, o)| o).collect(), 0)
                }
            })
            .collect();
        let keyed: Vec<Keyed> = groups
            .into_par_iter()
            .map(|(cpi, items, mappings)| {
                Ok(Keyed {
                    y: oprf.evaluate(&cpi)?,
                    record: entry::encode_record(&items)?,
                    opt_outs: items.len() - mappings,
                    mappings,
                    cpi,
                })
            })
            .collect::<Result<_>>()?;
        let stored_mappings: usize = keyed.iter().map(|k| k.mappings).sum();
        let stored_opt_outs: usize = keyed.iter().map(|k| k.opt_outs).sum();
        let record_bytes: u64 = keyed.iter().map(|k| k.record.len() as u64).sum();

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
            let max_slot = (item_bytes.saturating_sub(BUCKET_HEADER_BYTES + SLOT_OVERHEAD)) as u32;
            let slot_bytes = match opts.slot_bytes {
                Some(p) => p,
                None => choose_slot_bytes(&keyed, max_slot),
            };
            let slot_len = slot_bytes as usize + SLOT_OVERHEAD;
            let slots_of = |k: &Keyed| entry::slots_for(k.record.len(), slot_bytes as usize);
            if let Some(k) = keyed
                .iter()
                .find(|k| BUCKET_HEADER_BYTES + slots_of(k) * slot_len > item_bytes)
            {
                return Err(CoreError::BucketOverflow(Overflow::OneCpi {
                    cpi: k.cpi.clone(),
                    mappings: k.mappings + k.opt_outs,
                    item_bytes,
                }));
            }
            let slot_count: usize = keyed.iter().map(slots_of).sum();
            if (slot_count * slot_len + scheme.num_items() * BUCKET_HEADER_BYTES) as u64
                > scheme.capacity_bytes()
            {
                continue;
            }
            for attempt in 0..SALT_ATTEMPTS {
                attempts += 1;
                let layout = KeywordLayout::new(
                    derive_salt(&base_salt, attempt),
                    scheme.num_items() as u32,
                    slot_bytes,
                    oprf.public(),
                )?;
                let sealed: Vec<(usize, Slots)> = keyed
                    .par_iter()
                    .map(|k| {
                        let secrets = layout.locate(&k.y);
                        let slots = entry::seal_record(&secrets, &k.record, slot_bytes as usize)?;
                        Ok((secrets.location().bucket.0 as usize, slots))
                    })
                    .collect::<Result<_>>()?;
                let mut buckets: Vec<Slots> = (0..scheme.num_items()).map(|_| Vec::new()).collect();
                for (b, slots) in sealed {
                    buckets[b].extend(slots);
                }
                let fullest = buckets.iter().map(Vec::len).max().unwrap_or(0);
                let needs = BUCKET_HEADER_BYTES + fullest * slot_len;
                // Slot order within a bucket is by tag: it says nothing about which CPI a slot
                // belongs to. Two equal tags in one bucket (about 2^-64 a pair) need a new salt.
                buckets.par_iter_mut().for_each(|b| b.sort_unstable());
                let clash = buckets
                    .iter()
                    .any(|b| b.windows(2).any(|w| w[0].0 == w[1].0));
                if needs > item_bytes || clash {
                    tracing::debug!(
                        attempt,
                        needs,
                        item_bytes,
                        clash,
                        "layout refused, retrying"
                    );
                    last_overflow = Some((needs, item_bytes, scheme.num_items()));
                    continue;
                }
                let header = SnapshotHeader {
                    scheme,
                    layout,
                    epoch: opts.epoch,
                    created_at: opts.now,
                    mapping_count: stored_mappings as u64,
                    opt_out_count: stored_opt_outs as u64,
                    cpi_count: keyed.len() as u64,
                    slot_count: slot_count as u64,
                    record_bytes,
                    base: None,
                    plaintext_checksum: [0; 32],
                    db_checksum: [0; 32],
                    signature: None,
                };
                let snapshot = Self::encode(header, &buckets, progress)?;
                let report = BuildReport {
                    input_mappings,
                    input_opt_outs,
                    expired_dropped,
                    duplicates_replaced,
                    suppressed_by_opt_out,
                    stored_mappings,
                    stored_opt_outs,
                    slot_bytes,
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
        buckets: &[Slots],
        progress: &(dyn Fn(usize, usize) + Sync),
    ) -> Result<Self> {
        let scheme = header.scheme;
        let slot_len = header.layout.slot_len();
        let item_bytes = scheme.item_bytes as usize;
        let mut plaintext = vec![0u8; scheme.num_items() * item_bytes];
        plaintext
            .par_chunks_mut(item_bytes)
            .zip(buckets)
            .try_for_each(|(item, slots)| {
                bucket::encode_bucket(
                    slots.iter().map(|(t, s)| (*t, s.as_slice())),
                    slot_len,
                    item,
                )
            })?;
        let mut db = Database::zeroed(scheme);
        let all: Vec<usize> = (0..scheme.num_items()).collect();
        db.encode_items(&plaintext, &all, progress)?;
        let mut snapshot = Self::from_parts(header, plaintext, db);
        snapshot.seal()?;
        Ok(snapshot)
    }
}
