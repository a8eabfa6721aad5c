//! Building a snapshot from signed statements: verify, deduplicate, key each CPI by its OPRF
//! output, balance the groups over their candidate buckets (the layout's choice table), seal
//! each record into its bucket, encode.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use rand::RngCore;
use rayon::prelude::*;
use sha2::{Digest, Sha256};

use super::{Payload, Snapshot, header::SnapshotHeader};
use crate::{
    error::{CoreError, LayoutError, Overflow, Result},
    identity::{Cpi, IssuerId, Mapping, TrustStore, VerifiedMapping, VerifiedOptOut},
    keyword::{
        CANDIDATES, GroupIndex, KeywordLayout, MAX_GROUPS, MAX_ITEM_BYTES, RECORD_OVERHEAD,
        ShardPosition,
        bucket::{BUCKET_HEADER_BYTES, Bucket},
        candidate,
        entry::{self, Dictionaries, Item},
        group_of, shard_of,
    },
    oprf::{OprfKey, OprfOutput},
    pir::{Database, Engine, Scheme},
};

/// Different salts tried at one size before growing the database.
const SALT_ATTEMPTS: u32 = 4;

/// CPIs per group, on average, at build time: about 4 keeps the choice table at half a bit a
/// CPI while groups stay small enough to balance buckets to within about 1% of one another.
pub const GROUP_SIZE: usize = 4;

/// How full a bucket may be at build time when [`BuildOptions::fill_percent`] does not say:
/// percent of its item's bytes beyond the bucket header.
pub const DEFAULT_FILL_PERCENT: u8 = 98;

/// Options for [`Snapshot::build`].
#[derive(Clone, Debug, Default)]
pub struct BuildOptions {
    /// Epoch of the new snapshot.
    pub epoch: u64,
    /// Unix time used for expiry and as creation time.
    pub now: u64,
    /// Fixed salt (reproducible builds); random when `None`.
    pub salt: Option<[u8; 32]>,
    /// Fixed scheme; when `None`, the smallest of `engine`'s presets that fits.
    pub scheme: Option<Scheme>,
    /// The engine whose presets a build picks from when `scheme` is `None`.
    pub engine: Engine,
    /// How full a bucket may be, percent of its item (1 to 100): below 100 leaves every bucket
    /// room for updates, at the cost of a larger shape sooner. [`DEFAULT_FILL_PERCENT`] when
    /// `None`.
    pub fill_percent: Option<u8>,
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
    /// Groups of the layout (its choice table holds 2 bits each).
    pub groups: u32,
    /// Bytes the fullest bucket fills, of its item.
    pub fullest_bucket_bytes: usize,
    /// Salts tried (over all sizes).
    pub layout_attempts: u32,
    /// Record bytes over database capacity.
    pub packing_efficiency: f64,
}

/// A CPI's statements before keying: its mappings, and its opt-outs by issuer.
type Statements = (Vec<Mapping>, Vec<(IssuerId, Item)>);

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
/// Every shard gets the same scheme parameters (one client key set fits them all) and the same
/// dictionaries: the smallest vetted shape in which every shard lays out, chosen from the whole input.
/// Planning is deterministic for a given input, epoch and shard count (each shard's salt is
/// derived from them when no salt is given), so shard `i` built alone from the full input is
/// the same file as shard `i` of a build of all shards.
pub struct ShardedBuild {
    keyed: Vec<Keyed>,
    shards: Vec<PlannedShard>,
    scheme: Scheme,
    epoch: u64,
    now: u64,
    counts: InputCounts,
}

/// One shard's place in a plan: its layout and its CPIs (indices into the plan's records).
struct PlannedShard {
    layout: KeywordLayout,
    members: Vec<usize>,
    attempts: u32,
    fullest: usize,
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
        let fill = opts.fill_percent.unwrap_or(DEFAULT_FILL_PERCENT);
        if !(1..=100).contains(&fill) {
            return Err(CoreError::Internal("a fill percentage outside 1 to 100"));
        }
        let (keyed, counts, dictionaries) = prepare(input, oprf, opts)?;
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

        let candidates: Vec<Scheme> = match opts.scheme {
            Some(s) => vec![s],
            None => Scheme::presets(opts.engine),
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
        let (msps, issuers) = dictionaries;
        let mut last_overflow = None;
        let mut attempts = 0;
        'schemes: for scheme in candidates {
            scheme.validate()?;
            let item_bytes = scheme.item_bytes();
            if item_bytes > MAX_ITEM_BYTES as usize {
                if opts.scheme.is_some() {
                    return Err(CoreError::Layout(LayoutError::ItemBytes {
                        item_bytes: u32::try_from(item_bytes).unwrap_or(u32::MAX),
                    }));
                }
                continue;
            }
            let cost = |k: &Keyed| RECORD_OVERHEAD + k.record.len();
            if let Some(k) = keyed
                .iter()
                .find(|k| BUCKET_HEADER_BYTES + cost(k) > item_bytes)
            {
                return Err(CoreError::BucketOverflow(Overflow::OneCpi {
                    cpi: k.cpi.clone(),
                    mappings: k.mappings + k.opt_outs,
                    item_bytes,
                }));
            }
            // What a bucket may hold beyond its header at this fill.
            let limit = (item_bytes - BUCKET_HEADER_BYTES) * fill as usize / 100;
            let fits = |m: &Vec<usize>| {
                let total: usize = m.iter().map(|&i| cost(&keyed[i])).sum();
                total <= limit * scheme.num_items()
            };
            if !members.iter().all(fits) {
                continue;
            }
            let mut shards = Vec::with_capacity(count as usize);
            for (index, m) in members.iter().enumerate() {
                let position = ShardPosition::new(index as u32, count)?;
                let salt = shard_salt(&base_salt, position);
                let groups = scheme
                    .num_items()
                    .max(m.len().div_ceil(GROUP_SIZE))
                    .min(MAX_GROUPS as usize) as u32;
                let mut laid_out = None;
                for attempt in 0..SALT_ATTEMPTS {
                    attempts += 1;
                    let mut layout = KeywordLayout::new(
                        derive_salt(&salt, attempt),
                        scheme.num_items() as u32,
                        groups,
                        oprf.public(),
                    )?
                    .in_shard(position)
                    .with_dictionaries(msps.clone(), issuers.clone())?;
                    let fullest = balance(&mut layout, &keyed, m);
                    if fullest <= limit {
                        laid_out = Some(PlannedShard {
                            layout,
                            members: m.clone(),
                            attempts: attempt + 1,
                            fullest: BUCKET_HEADER_BYTES + fullest,
                        });
                        break;
                    }
                    let needs = BUCKET_HEADER_BYTES + fullest;
                    tracing::debug!(
                        shard = index,
                        attempt,
                        needs,
                        item_bytes,
                        fill,
                        "layout refused, retrying"
                    );
                    last_overflow = Some((needs, item_bytes, scheme.num_items()));
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
                item_bytes: u32::try_from(s.item_bytes()).unwrap_or(u32::MAX),
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
    pub fn scheme(&self) -> Scheme {
        self.scheme
    }

    /// CPIs stored in shard `index`.
    pub fn cpis_in(&self, index: u32) -> Option<usize> {
        self.shards.get(index as usize).map(|s| s.members.len())
    }

    /// The layout of shard `index`: its choice table and dictionaries.
    pub fn layout(&self, index: u32) -> Option<&KeywordLayout> {
        self.shards.get(index as usize).map(|s| &s.layout)
    }

    /// Salts tried for shard `index` at the shape chosen (1: the first fitted).
    pub fn attempts_in(&self, index: u32) -> Option<u32> {
        self.shards.get(index as usize).map(|s| s.attempts)
    }

    /// The bytes each bucket of shard `index` fills (headers, locators, sealed records), by
    /// bucket: what room the build leaves for updates.
    pub fn bucket_loads(&self, index: u32) -> Option<Vec<usize>> {
        let shard = self.shards.get(index as usize)?;
        let mut loads = vec![BUCKET_HEADER_BYTES; self.scheme.num_items()];
        for &i in &shard.members {
            let k = &self.keyed[i];
            loads[shard.layout.locate(&k.y).location().bucket.0 as usize] +=
                RECORD_OVERHEAD + k.record.len();
        }
        Some(loads)
    }

    /// Bytes the fullest bucket of shard `index` fills, of its item.
    pub fn fullest_bucket_bytes(&self, index: u32) -> Option<usize> {
        self.shards.get(index as usize).map(|s| s.fullest)
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
        let layout = &shard.layout;
        let scheme = self.scheme;
        let sealed: Vec<(usize, [u8; 6], Vec<u8>)> = shard
            .members
            .par_iter()
            .map(|&i| {
                let secrets = layout.locate(&self.keyed[i].y);
                let sealed = secrets.seal(&self.keyed[i].record)?;
                Ok((secrets.location().bucket.0 as usize, secrets.mask(), sealed))
            })
            .collect::<Result<_>>()?;
        let mut records: Vec<Vec<([u8; 6], Vec<u8>)>> =
            (0..scheme.num_items()).map(|_| Vec::new()).collect();
        for (b, mask, sealed) in sealed {
            records[b].push((mask, sealed));
        }
        let buckets: Vec<Bucket> = records
            .into_par_iter()
            .map(Bucket::of_records)
            .collect::<Result<_>>()?;
        let members = || shard.members.iter().map(|&i| &self.keyed[i]);
        let stored_mappings: usize = members().map(|k| k.mappings).sum();
        let stored_opt_outs: usize = members().map(|k| k.opt_outs).sum();
        let header = SnapshotHeader {
            scheme,
            layout: layout.clone(),
            epoch: self.epoch,
            created_at: self.now,
            mapping_count: stored_mappings as u64,
            opt_out_count: stored_opt_outs as u64,
            cpi_count: shard.members.len() as u64,
            bucket_bytes: buckets.iter().map(|b| b.encoded_len() as u64).sum(),
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
            groups: shard.layout.num_groups,
            fullest_bucket_bytes: shard.fullest,
            layout_attempts: shard.attempts,
            packing_efficiency: snapshot.header.packing_efficiency(),
        };
        Ok((snapshot, report))
    }
}

/// Fills `layout`'s choice table for the CPIs `members` of `keyed`: groups, largest first,
/// each to the least loaded of its candidate buckets (greedy multiple choice, which balances
/// buckets to within about one group of each other). Returns the fullest bucket's bytes beyond
/// its header.
fn balance(layout: &mut KeywordLayout, keyed: &[Keyed], members: &[usize]) -> usize {
    let groups = layout.num_groups as usize;
    let salt = layout.salt;
    let placed: Vec<(u32, usize)> = members
        .par_iter()
        .map(|&i| {
            let k = &keyed[i];
            let group = group_of(&k.y, &salt, layout.num_groups);
            (group.0, RECORD_OVERHEAD + k.record.len())
        })
        .collect();
    let mut load = vec![0usize; groups];
    for (g, cost) in placed {
        load[g as usize] += cost;
    }
    let mut order: Vec<(usize, u32)> = load
        .iter()
        .enumerate()
        .filter(|(_, l)| **l > 0)
        .map(|(g, l)| (*l, g as u32))
        .collect();
    order.par_sort_unstable_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
    let buckets = layout.num_buckets;
    let candidates: Vec<[u32; CANDIDATES as usize]> = order
        .par_iter()
        .map(|&(_, g)| {
            std::array::from_fn(|c| candidate(&salt, GroupIndex(g), c as u32, buckets).0)
        })
        .collect();
    let mut filled = vec![0usize; buckets as usize];
    for (&(cost, g), cands) in order.iter().zip(&candidates) {
        let mut best = 0;
        for c in 1..cands.len() {
            if filled[cands[c] as usize] < filled[cands[best] as usize] {
                best = c;
            }
        }
        filled[cands[best] as usize] += cost;
        layout.set_choice(GroupIndex(g), best as u32);
    }
    filled.into_iter().max().unwrap_or(0)
}

/// Drops expired statements, keeps the latest per CPI and MSP (issuer), withholds the mappings
/// of opted-out CPIs, evaluates the OPRF on every CPI and encodes its record.
/// Also gives the dictionaries the records refer to: every MSP and issuer stored, sorted.
#[allow(clippy::type_complexity)]
fn prepare(
    input: BuildInput,
    oprf: &OprfKey,
    opts: &BuildOptions,
) -> Result<(Vec<Keyed>, InputCounts, (Vec<String>, Vec<IssuerId>))> {
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
    let mut msps = BTreeSet::new();
    let mut issuers = BTreeSet::new();
    for (_, items, _) in &groups {
        for item in items {
            if let Item::Mapping(m) = item {
                msps.insert(m.fields.msp.clone());
            }
            issuers.insert(item.issuer());
        }
    }
    let msps: Vec<String> = msps.into_iter().collect();
    let issuers: Vec<IssuerId> = issuers.into_iter().collect();
    let raw_issuers: Vec<[u8; 8]> = issuers.iter().map(|i| i.0).collect();
    let dict = Dictionaries::new(&msps, &raw_issuers);
    let keyed: Vec<Keyed> = groups
        .into_par_iter()
        .map(|(cpi, items, mappings)| {
            Ok(Keyed {
                y: oprf.evaluate(&cpi)?,
                record: entry::encode_record(&items, &dict)?,
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
    Ok((keyed, counts, (msps, issuers)))
}

impl Snapshot {
    fn encode(
        header: SnapshotHeader,
        buckets: &[Bucket],
        progress: &(dyn Fn(usize, usize) + Sync),
    ) -> Result<Self> {
        let scheme = header.scheme;
        let item_bytes = scheme.item_bytes();
        let mut plaintext = vec![0u8; scheme.num_items() * item_bytes];
        plaintext
            .par_chunks_mut(item_bytes)
            .zip(buckets)
            .try_for_each(|(item, bucket)| bucket.encode(item))?;
        let db = match scheme {
            Scheme::Spiral(params) => {
                let mut db = Database::zeroed(params);
                let all: Vec<usize> = (0..scheme.num_items()).collect();
                db.encode_items(&plaintext, &all, progress)?;
                Payload::Spiral(db)
            }
            // Nothing to encode: a YPIR+SP database derives from the buckets where it is served.
            Scheme::YpirSp(params) => Payload::ypir(params),
        };
        let mut snapshot = Self::from_parts(header, plaintext, db);
        snapshot.seal()?;
        Ok(snapshot)
    }
}
