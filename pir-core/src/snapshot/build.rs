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
        KeywordLayout, SLOT_BYTES_RANGE, SLOT_OVERHEAD, ShardPosition, Tag,
        bucket::{self, BUCKET_HEADER_BYTES},
        entry::{self, Item},
        shard_of,
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
        ShardedBuild::plan(input, oprf, opts, 1)?.encode(0, progress)
    }
}

/// A directory split into shards by [`shard_of`] of each CPI's OPRF output, laid out and ready
/// to encode shard by shard (each shard's database is built only when asked for, so a machine
/// can build one shard, or all of them one after the other, in the memory of one).
///
/// Every shard gets the same scheme parameters (one client key set fits them all) and slot
/// size: the smallest vetted shape in which every shard lays out, chosen from the whole input.
/// Planning is deterministic for a given input, epoch and shard count (each shard's salt is
/// derived from them when no salt is given), so shard `i` built alone from the full input is
/// the same file as shard `i` of a build of all shards.
pub struct ShardedBuild {
    keyed: Vec<Keyed>,
    shards: Vec<PlannedShard>,
    scheme: SchemeParams,
    slot_bytes: u32,
    epoch: u64,
    now: u64,
    counts: InputCounts,
}

/// One shard's place in a plan: its layout and its CPIs (indices into the plan's records).
struct PlannedShard {
    layout: KeywordLayout,
    members: Vec<usize>,
    attempts: u32,
}

/// What the input held before anything was stored.
#[derive(Clone, Copy)]
struct InputCounts {
    mappings: usize,
    opt_outs: usize,
    expired_dropped: usize,
    duplicates_replaced: usize,
    suppressed_by_opt_out: usize,
}

impl std::fmt::Debug for ShardedBuild {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ShardedBuild")
            .field("shards", &self.shards.len())
            .field("scheme", &self.scheme)
            .field("slot_bytes", &self.slot_bytes)
            .finish_non_exhaustive()
    }
}

/// The base salt of shard `index` of `count`: the build's own when there is one shard (so an
/// unsharded build keeps its salt), else derived from it and the index.
fn shard_salt(base: &[u8; 32], shard: ShardPosition) -> [u8; 32] {
    if !shard.is_sharded() {
        return *base;
    }
    Sha256::new()
        .chain_update(b"pir-discovery/shard-salt/v1\0")
        .chain_update(base)
        .chain_update(shard.index.to_le_bytes())
        .finalize()
        .into()
}

impl ShardedBuild {
    /// Verifies nothing (the input is verified), drops, deduplicates, evaluates the OPRF on
    /// every CPI, splits the CPIs into `count` shards and lays every shard out. Fails as
    /// [`Snapshot::build_verified`] does, for the fullest shard.
    pub fn plan(
        input: BuildInput,
        oprf: &OprfKey,
        opts: &BuildOptions,
        count: u32,
    ) -> Result<Self> {
        ShardPosition::new(0, count)?;
        // Checked before any use: a size of 0 would divide by zero when counting slots, and one
        // too large would be reported as a CPI overflowing its bucket.
        if let Some(got) = opts.slot_bytes
            && !SLOT_BYTES_RANGE.contains(&got)
        {
            return Err(CoreError::Layout(LayoutError::SlotBytes { got }));
        }
        let (keyed, counts) = prepare(input, oprf, opts)?;
        let mut members: Vec<Vec<usize>> = vec![Vec::new(); count as usize];
        for (i, k) in keyed.iter().enumerate() {
            members[shard_of(&k.y, count) as usize].push(i);
        }
        let record_bytes: u64 = keyed.iter().map(|k| k.record.len() as u64).sum();
        let largest_record_bytes = members
            .iter()
            .map(|m| m.iter().map(|&i| keyed[i].record.len() as u64).sum::<u64>())
            .max()
            .unwrap_or(0);

        let candidates: Vec<SchemeParams> = match opts.scheme {
            Some(s) => vec![s],
            None => SchemeParams::vetted_presets().map(|p| p.params).collect(),
        };
        let base_salt = match (opts.salt, count) {
            (Some(s), _) => s,
            (None, 1) => {
                let mut s = [0u8; 32];
                rand::rngs::OsRng.fill_bytes(&mut s);
                s
            }
            // Every machine building a shard of this directory must find the same layout.
            (None, _) => Sha256::new()
                .chain_update(b"pir-discovery/sharded-build-salt/v1\0")
                .chain_update(opts.epoch.to_le_bytes())
                .chain_update(count.to_le_bytes())
                .chain_update(oprf.public().to_bytes())
                .finalize()
                .into(),
        };
        let mut last_overflow = None;
        let mut attempts = 0;
        'schemes: for scheme in candidates {
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
            let fits = |m: &Vec<usize>| {
                let slot_count: usize = m.iter().map(|&i| slots_of(&keyed[i])).sum();
                (slot_count * slot_len + scheme.num_items() * BUCKET_HEADER_BYTES) as u64
                    <= scheme.capacity_bytes()
            };
            if !members.iter().all(fits) {
                continue;
            }
            let mut shards = Vec::with_capacity(count as usize);
            for (index, m) in members.iter().enumerate() {
                let position = ShardPosition::new(index as u32, count)?;
                let salt = shard_salt(&base_salt, position);
                let mut laid_out = None;
                for attempt in 0..SALT_ATTEMPTS {
                    attempts += 1;
                    let layout = KeywordLayout::new(
                        derive_salt(&salt, attempt),
                        scheme.num_items() as u32,
                        slot_bytes,
                        oprf.public(),
                    )?
                    .in_shard(position);
                    match check_layout(&layout, &keyed, m, item_bytes) {
                        Ok(()) => {
                            laid_out = Some(PlannedShard {
                                layout,
                                members: m.clone(),
                                attempts: attempt + 1,
                            });
                            break;
                        }
                        Err((fullest, clash)) => {
                            let needs = BUCKET_HEADER_BYTES + fullest * slot_len;
                            tracing::debug!(
                                shard = index,
                                attempt,
                                needs,
                                item_bytes,
                                clash,
                                "layout refused, retrying"
                            );
                            last_overflow = Some((needs, item_bytes, scheme.num_items()));
                        }
                    }
                }
                match laid_out {
                    Some(shard) => shards.push(shard),
                    None => continue 'schemes,
                }
            }
            return Ok(Self {
                keyed,
                shards,
                scheme,
                slot_bytes,
                epoch: opts.epoch,
                now: opts.now,
                counts,
            });
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
                record_bytes: largest_record_bytes,
                items: s.num_items(),
                item_bytes: s.item_bytes,
            }),
            (None, _) if count == 1 => Err(CoreError::TooLargeForPresets { record_bytes }),
            (None, _) => Err(CoreError::TooLargeForPresets {
                record_bytes: largest_record_bytes,
            }),
        }
    }

    /// Shards in the plan.
    pub fn count(&self) -> u32 {
        self.shards.len() as u32
    }

    /// The scheme every shard uses.
    pub fn scheme(&self) -> SchemeParams {
        self.scheme
    }

    /// CPIs stored in shard `index`.
    pub fn cpis_in(&self, index: u32) -> Option<usize> {
        self.shards.get(index as usize).map(|s| s.members.len())
    }

    /// Record bytes stored in shard `index` (the numerator of its packing efficiency), known
    /// before the shard is encoded.
    pub fn record_bytes_in(&self, index: u32) -> Option<u64> {
        self.shards.get(index as usize).map(|s| {
            s.members
                .iter()
                .map(|&i| self.keyed[i].record.len() as u64)
                .sum()
        })
    }

    /// Seals shard `index`'s records into its buckets and encodes its database (the long
    /// part: `progress(done, total)` reports the NTT's progress).
    pub fn encode(
        &self,
        index: u32,
        progress: &(dyn Fn(usize, usize) + Sync),
    ) -> Result<(Snapshot, BuildReport)> {
        let shard =
            self.shards
                .get(index as usize)
                .ok_or(CoreError::Layout(LayoutError::Shard {
                    index,
                    count: self.count(),
                }))?;
        let layout = shard.layout;
        let scheme = self.scheme;
        let slot_bytes = self.slot_bytes as usize;
        let sealed: Vec<(usize, Slots)> = shard
            .members
            .par_iter()
            .map(|&i| {
                let secrets = layout.locate(&self.keyed[i].y);
                let slots = entry::seal_record(&secrets, &self.keyed[i].record, slot_bytes)?;
                Ok((secrets.location().bucket.0 as usize, slots))
            })
            .collect::<Result<_>>()?;
        let mut buckets: Vec<Slots> = (0..scheme.num_items()).map(|_| Vec::new()).collect();
        for (b, slots) in sealed {
            buckets[b].extend(slots);
        }
        // Slot order within a bucket is by tag: it says nothing about which CPI a slot
        // belongs to.
        buckets.par_iter_mut().for_each(|b| b.sort_unstable());
        let members = || shard.members.iter().map(|&i| &self.keyed[i]);
        let stored_mappings: usize = members().map(|k| k.mappings).sum();
        let stored_opt_outs: usize = members().map(|k| k.opt_outs).sum();
        let header = SnapshotHeader {
            scheme,
            layout,
            epoch: self.epoch,
            created_at: self.now,
            mapping_count: stored_mappings as u64,
            opt_out_count: stored_opt_outs as u64,
            cpi_count: shard.members.len() as u64,
            slot_count: buckets.iter().map(Vec::len).sum::<usize>() as u64,
            record_bytes: members().map(|k| k.record.len() as u64).sum(),
            base: None,
            plaintext_checksum: [0; 32],
            db_checksum: [0; 32],
            signature: None,
        };
        let snapshot = Snapshot::encode(header, &buckets, progress)?;
        let c = self.counts;
        let report = BuildReport {
            input_mappings: c.mappings,
            input_opt_outs: c.opt_outs,
            expired_dropped: c.expired_dropped,
            duplicates_replaced: c.duplicates_replaced,
            suppressed_by_opt_out: c.suppressed_by_opt_out,
            stored_mappings,
            stored_opt_outs,
            slot_bytes: self.slot_bytes,
            layout_attempts: shard.attempts,
            packing_efficiency: snapshot.header.packing_efficiency(),
        };
        Ok((snapshot, report))
    }
}

/// Whether the CPIs `members` of `keyed` fit `layout`'s buckets of `item_bytes` with no two
/// equal tags in one bucket (about 2^-64 a pair); if not, the fullest bucket's slot count and
/// whether tags clashed.
fn check_layout(
    layout: &KeywordLayout,
    keyed: &[Keyed],
    members: &[usize],
    item_bytes: usize,
) -> std::result::Result<(), (usize, bool)> {
    let slot_bytes = layout.slot_bytes as usize;
    let mut placed: Vec<(u32, Tag)> = members
        .par_iter()
        .flat_map_iter(|&i| {
            let k = &keyed[i];
            let secrets = layout.locate(&k.y);
            let bucket = secrets.location().bucket.0;
            let n = entry::slots_for(k.record.len(), slot_bytes);
            entry::slot_tags(&secrets, n)
                .map(|t| (bucket, t))
                .collect::<Vec<_>>()
        })
        .collect();
    placed.par_sort_unstable();
    let mut fullest = 0;
    let mut clash = false;
    for run in placed.chunk_by(|a, b| a.0 == b.0) {
        fullest = fullest.max(run.len());
        clash |= run.windows(2).any(|w| w[0].1 == w[1].1);
    }
    if clash || BUCKET_HEADER_BYTES + fullest * layout.slot_len() > item_bytes {
        return Err((fullest, clash));
    }
    Ok(())
}

/// Drops expired statements, keeps the latest per CPI and MSP (issuer), withholds the mappings
/// of opted-out CPIs, evaluates the OPRF on every CPI and encodes its record.
fn prepare(
    input: BuildInput,
    oprf: &OprfKey,
    opts: &BuildOptions,
) -> Result<(Vec<Keyed>, InputCounts)> {
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
    let counts = InputCounts {
        mappings: input_mappings,
        opt_outs: input_opt_outs,
        expired_dropped,
        duplicates_replaced,
        suppressed_by_opt_out,
    };
    Ok((keyed, counts))
}

impl Snapshot {
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
