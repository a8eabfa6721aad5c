//! Sharded directories: every CPI in exactly the shard its OPRF output names, one scheme for
//! all shards, shard builds that agree across machines, the DP-signed manifest (round trip,
//! signature, consistency checks, hostile bytes) and updates that stay in their shard.

use std::collections::BTreeSet;

use pir_core::{
    CoreError, Cpi, Snapshot,
    error::ManifestError,
    keyword::{ShardPosition, shard_of},
    snapshot::{
        DeltaOp, MANIFEST_FORMAT_VERSION, Manifest, ShardedBuild, UpdateOptions, shard_file_name,
        split_by_shard,
    },
    testing::{
        NOW, build_options, build_shards, bulk_mappings, dp_key, dp_keys_of, evaluate, file_bytes,
        lookup_result, mapping_valid, msps, oprf_key, tiny_scheme, trust, verified_input,
    },
};

const SHARDS: u32 = 4;
const COUNT: usize = 120;

fn cpi(i: usize) -> Cpi {
    Cpi::parse(&format!("mailto:u{i}@example.org")).unwrap()
}

fn shard_of_cpi(i: usize, count: u32) -> u32 {
    shard_of(evaluate(&cpi(i)).output(), count)
}

/// Sharded builds use a derived salt, not the fixture's fixed one.
fn sharded_options(epoch: u64) -> pir_core::BuildOptions {
    pir_core::BuildOptions {
        salt: None,
        ..build_options(tiny_scheme(), epoch)
    }
}

fn manifest_of(shards: &[Snapshot]) -> Manifest {
    let files = shards
        .iter()
        .enumerate()
        .map(|(i, s)| (shard_file_name(i as u32), s.header().clone()))
        .collect();
    Manifest::of_shards(files, None, NOW).unwrap()
}

#[test]
fn every_cpi_is_found_in_its_own_shard_and_only_there() {
    let shards = build_shards(bulk_mappings(COUNT), &sharded_options(7), SHARDS);
    let scheme = shards[0].header().scheme;
    let mut stored = 0;
    for (i, s) in shards.iter().enumerate() {
        let h = s.header();
        assert_eq!(
            h.layout.shard,
            ShardPosition::new(i as u32, SHARDS).unwrap()
        );
        assert_eq!(h.scheme, scheme, "one scheme for every shard");
        assert_eq!(h.epoch, 7);
        stored += h.mapping_count;
    }
    assert_eq!(stored, COUNT as u64, "each mapping in exactly one shard");
    let mut seen_shards = BTreeSet::new();
    for i in (0..COUNT).step_by(7) {
        let home = shard_of_cpi(i, SHARDS);
        seen_shards.insert(home);
        for (s, snapshot) in shards.iter().enumerate() {
            let found = msps(snapshot, &cpi(i).to_string(), NOW);
            if s as u32 == home {
                assert_eq!(found, ["chat.example"], "{} in its shard {home}", cpi(i));
            } else {
                assert!(found.is_empty(), "{} also in shard {s}", cpi(i));
            }
        }
    }
    assert!(seen_shards.len() > 1, "the sample spans shards");
}

#[test]
fn a_shard_built_alone_is_the_same_file_as_in_a_whole_build() {
    let opts = sharded_options(9);
    let all = build_shards(bulk_mappings(COUNT), &opts, SHARDS);
    // Another machine, the same input in another order: shard 2 alone.
    let mut input = bulk_mappings(COUNT);
    input.reverse();
    let plan = ShardedBuild::plan(
        verified_input(input, Vec::new()),
        &oprf_key(),
        &opts,
        SHARDS,
    )
    .unwrap();
    let (alone, report) = plan.encode(2, &|_, _| {}).unwrap();
    assert_eq!(file_bytes(&alone), file_bytes(&all[2]));
    assert_eq!(report.input_mappings, COUNT);
    assert_eq!(report.stored_mappings as u64, all[2].header().mapping_count);
    // Shards have their own salts, and another epoch moves every CPI.
    let salts: BTreeSet<_> = all.iter().map(|s| s.header().layout.salt).collect();
    assert_eq!(salts.len(), SHARDS as usize);
    let later = build_shards(bulk_mappings(COUNT), &sharded_options(10), SHARDS);
    assert_ne!(later[2].header().layout.salt, all[2].header().layout.salt);
    assert!(
        plan.encode(SHARDS, &|_, _| {}).is_err(),
        "no shard {SHARDS}"
    );
}

#[test]
fn an_unsharded_build_is_shard_0_of_1() {
    let s = pir_core::testing::tiny_snapshot();
    assert_eq!(s.header().layout.shard, ShardPosition::SINGLE);
    assert!(
        ShardedBuild::plan(
            verified_input(bulk_mappings(3), Vec::new()),
            &oprf_key(),
            &sharded_options(1),
            0
        )
        .is_err()
    );
    for (index, count) in [(0, 0), (4, 4), (0, ShardPosition::MAX_COUNT + 1)] {
        assert!(
            ShardPosition::new(index, count).is_err(),
            "{index} of {count}"
        );
    }
}

#[test]
fn the_manifest_round_trips_is_signed_and_names_each_shard() {
    let shards = build_shards(bulk_mappings(COUNT), &sharded_options(7), SHARDS);
    let mut manifest = manifest_of(&shards);
    assert_eq!(manifest.count(), SHARDS);
    assert_eq!(manifest.epoch, 7);
    assert_eq!(manifest.mapping_count(), COUNT as u64);
    assert_eq!(manifest.scheme, shards[0].header().scheme);
    assert_eq!(manifest.oprf_key, oprf_key().public());
    for i in 0..COUNT {
        let y = evaluate(&cpi(i));
        assert_eq!(manifest.shard_of(y.output()), shard_of_cpi(i, SHARDS));
    }
    let keys = dp_keys_of(&dp_key());
    assert!(matches!(
        manifest.verify_signature(&keys),
        Err(CoreError::UnsignedSnapshot)
    ));
    manifest.sign(&dp_key()).unwrap();
    manifest.verify_signature(&keys).unwrap();
    let bytes = manifest.to_bytes().unwrap();
    assert_eq!(&bytes[..8], b"PIRSHRD\0");
    let back = Manifest::from_bytes(&bytes).unwrap();
    assert_eq!(back, manifest);
    back.verify_signature(&keys).unwrap();
    // Another key, or a changed field, does not verify.
    let other = dp_keys_of(&pir_core::identity::DpKey::from_seed(&[51; 32]));
    assert!(matches!(
        back.verify_signature(&other),
        Err(CoreError::UnknownDpKey(_))
    ));
    let mut forged = back.clone();
    forged.shards[1].header_hash = forged.shards[0].header_hash;
    assert!(matches!(
        forged.verify_signature(&keys),
        Err(CoreError::BadSnapshotSignature)
    ));
    // Each shard's header is the one named; another shard's, or another build's, is not.
    for (i, s) in shards.iter().enumerate() {
        manifest.check_shard(i as u32, s.header()).unwrap();
    }
    let err = manifest.check_shard(1, shards[0].header()).unwrap_err();
    assert!(err.to_string().contains("shard-00001.pirsnap"), "{err}");
    // Another build: more mappings (enough that shard 0 gains some: one more could land in
    // another shard and leave shard 0 as it was).
    let rebuilt = build_shards(bulk_mappings(COUNT + 40), &sharded_options(7), SHARDS);
    assert!(manifest.check_shard(0, rebuilt[0].header()).is_err());
    assert!(matches!(
        manifest.check_shard(SHARDS, shards[0].header()),
        Err(CoreError::Manifest {
            reason: ManifestError::NoSuchShard { .. },
            ..
        })
    ));
}

#[test]
fn a_manifest_needs_every_shard_of_one_directory_exactly_once() {
    let shards = build_shards(bulk_mappings(40), &sharded_options(7), SHARDS);
    let files = |picks: &[usize]| -> Vec<_> {
        picks
            .iter()
            .map(|&i| (format!("f{i}.pirsnap"), shards[i].header().clone()))
            .collect()
    };
    let reason = |r: pir_core::Result<Manifest>| match r {
        Err(CoreError::Manifest { reason, .. }) => reason,
        other => panic!("expected a manifest error, got {other:?}"),
    };
    assert!(matches!(
        reason(Manifest::of_shards(files(&[0, 1, 3]), None, NOW)),
        ManifestError::MissingShards { count: 4, ref missing } if missing == &[2]
    ));
    assert!(matches!(
        reason(Manifest::of_shards(files(&[0, 1, 1, 2, 3]), None, NOW)),
        ManifestError::DuplicateShard { index: 1, .. }
    ));
    assert!(matches!(
        reason(Manifest::of_shards(Vec::new(), None, NOW)),
        ManifestError::NoShards
    ));
    let two = build_shards(bulk_mappings(40), &sharded_options(7), 2);
    let mut mixed = files(&[0, 1, 2, 3]);
    mixed.push(("two.pirsnap".into(), two[1].header().clone()));
    assert!(matches!(
        reason(Manifest::of_shards(mixed, None, NOW)),
        ManifestError::ShardCounts {
            found: 2,
            expected: 4,
            ..
        }
    ));
    let mut escaping = files(&[0, 1, 2, 3]);
    escaping[0].0 = "../etc/shard.pirsnap".into();
    assert!(matches!(
        reason(Manifest::of_shards(escaping, None, NOW)),
        ManifestError::FileName { .. }
    ));
    // Given an epoch below a shard's, the manifest is refused.
    assert!(matches!(
        reason(Manifest::of_shards(files(&[0, 1, 2, 3]), Some(6), NOW)),
        ManifestError::ShardEpoch { .. }
    ));
}

#[test]
fn hostile_manifest_bytes_are_refused_without_panicking() {
    let shards = build_shards(bulk_mappings(40), &sharded_options(7), SHARDS);
    let mut manifest = manifest_of(&shards);
    manifest.sign(&dp_key()).unwrap();
    let good = manifest.to_bytes().unwrap();
    for len in 0..good.len() {
        assert!(Manifest::from_bytes(&good[..len]).is_err(), "prefix {len}");
    }
    let mut long = good.clone();
    long.push(0);
    assert!(matches!(
        Manifest::from_bytes(&long),
        Err(CoreError::Manifest {
            reason: ManifestError::TrailingBytes,
            ..
        })
    ));
    let mut magic = good.clone();
    magic[0] ^= 1;
    assert!(matches!(
        Manifest::from_bytes(&magic),
        Err(CoreError::Manifest {
            reason: ManifestError::BadMagic,
            ..
        })
    ));
    let mut version = good.clone();
    version[8..12].copy_from_slice(&(MANIFEST_FORMAT_VERSION + 1).to_le_bytes());
    assert!(matches!(
        Manifest::from_bytes(&version),
        Err(CoreError::Manifest {
            reason: ManifestError::Version { .. },
            ..
        })
    ));
    let mut huge = good.clone();
    huge[12..16].copy_from_slice(&u32::MAX.to_le_bytes());
    assert!(Manifest::from_bytes(&huge).is_err());
    // Every single-bit flip is refused or changes the signed content (never a panic).
    let keys = dp_keys_of(&dp_key());
    for i in 16..good.len() {
        let mut flipped = good.clone();
        flipped[i] ^= 0x10;
        if let Ok(m) = Manifest::from_bytes(&flipped) {
            assert!(m.verify_signature(&keys).is_err(), "flip at {i} verifies");
        }
    }
}

#[test]
fn a_manifest_file_round_trips_and_assembles_from_a_directory() {
    let dir = tempfile::tempdir().unwrap();
    let shards = build_shards(bulk_mappings(40), &sharded_options(7), SHARDS);
    for (i, s) in shards.iter().enumerate() {
        s.write(&dir.path().join(shard_file_name(i as u32)))
            .unwrap();
    }
    // Files that are not a fresh build's shards are ignored.
    std::fs::write(dir.path().join("notes.txt"), "x").unwrap();
    let assembled = Manifest::assemble(dir.path(), None, NOW).unwrap();
    assert_eq!(assembled, manifest_of(&shards));
    let path = dir.path().join("manifest.pirman");
    assembled.write(&path).unwrap();
    assert_eq!(Manifest::load(&path).unwrap(), assembled);
    assert_eq!(
        assembled.shard_path(&path, 3).unwrap(),
        dir.path().join("shard-00003.pirsnap")
    );
    std::fs::remove_file(dir.path().join(shard_file_name(1))).unwrap();
    let err = Manifest::assemble(dir.path(), None, NOW).unwrap_err();
    assert!(err.to_string().contains("--shard-index"), "{err}");
    let err = Manifest::load(&dir.path().join("notes.txt")).unwrap_err();
    assert!(err.to_string().contains("notes.txt"), "{err}");
}

#[test]
fn updates_are_split_by_shard_and_refused_in_the_wrong_one() {
    let shards = build_shards(bulk_mappings(COUNT), &sharded_options(7), SHARDS);
    let new = |i: usize| {
        DeltaOp::Upsert(Box::new(
            pir_core::VerifiedMapping::new(
                mapping_valid(
                    &cpi(i).to_string(),
                    "talk.example",
                    None,
                    None,
                    (0, u64::MAX),
                    None,
                ),
                &trust(),
            )
            .unwrap(),
        ))
    };
    let fresh: Vec<usize> = (COUNT..COUNT + 6).collect();
    let ops: Vec<DeltaOp> = fresh.iter().map(|&i| new(i)).collect();
    let split = split_by_shard(ops, &oprf_key(), SHARDS).unwrap();
    assert_eq!(split.iter().map(Vec::len).sum::<usize>(), fresh.len());
    let opts = UpdateOptions { epoch: 8, now: NOW };
    let mut touched = 0;
    for (s, ops) in split.into_iter().enumerate() {
        if ops.is_empty() {
            continue;
        }
        touched += 1;
        for op in &ops {
            assert_eq!(shard_of(evaluate(op.cpi()).output(), SHARDS), s as u32);
        }
        let base = Snapshot::read_from(
            &file_bytes(&shards[s])[..],
            file_bytes(&shards[s]).len() as u64,
        )
        .unwrap();
        let (updated, report) = base.update(ops, &oprf_key(), &opts).unwrap();
        assert!(report.upserts > 0);
        for &i in &fresh {
            if shard_of_cpi(i, SHARDS) == s as u32 {
                let found = lookup_result(&updated, trust(), &cpi(i).to_string(), NOW).unwrap();
                assert!(found.found(), "{} after the update", cpi(i));
            }
        }
    }
    assert!(touched >= 1);
    // A CPI of shard 0 sent to another shard is refused, naming where it belongs.
    let home = shard_of_cpi(COUNT, SHARDS);
    let wrong = (home + 1) % SHARDS;
    let base = Snapshot::read_from(
        &file_bytes(&shards[wrong as usize])[..],
        file_bytes(&shards[wrong as usize]).len() as u64,
    )
    .unwrap();
    match base.update(vec![new(COUNT)], &oprf_key(), &opts) {
        Err(CoreError::WrongShard { belongs, shard, .. }) => {
            assert_eq!(belongs, home);
            assert_eq!(shard.index, wrong);
        }
        other => panic!("expected WrongShard, got {:?}", other.map(|r| r.1)),
    }
}
