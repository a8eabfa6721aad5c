//! Sharded directories through the DP's tooling: `build --shards` (all shards, or one per
//! machine with `--shard-index`), `manifest`, `update --manifest` and `inspect`.

mod common;

use common::Setup;
use pir_core::{
    Snapshot,
    identity::DpKeys,
    snapshot::{MANIFEST_FILE_NAME, Manifest, shard_file_name},
};
use pir_dp::{self as tools, DpError};

const SHARDS: u32 = 3;

fn sharded(
    setup: &Setup,
    out: &str,
    epoch: Option<u64>,
    index: Option<u32>,
) -> tools::ShardedBuildArgs {
    tools::ShardedBuildArgs {
        build: tools::BuildArgs {
            dp_key: Some(setup.path("dp.key")),
            ..setup.build_args(out, epoch)
        },
        shards: SHARDS,
        shard_index: index,
    }
}

fn dp_keys(setup: &Setup) -> DpKeys {
    tools::read_dp_pub(&tools::public_key_path(&setup.path("dp.key"))).unwrap()
}

#[test]
fn a_sharded_build_writes_every_shard_and_a_signed_manifest() {
    let setup = Setup::new(300);
    let summary = tools::build_sharded(&sharded(&setup, "dir", Some(40), None)).unwrap();
    assert_eq!(summary.shards.len(), SHARDS as usize);
    assert_eq!(summary.epoch, 40);
    assert!(summary.signed);
    let text = summary.to_string();
    assert!(text.contains("manifest (signed)"), "{text}");
    let path = setup.path("dir").join(MANIFEST_FILE_NAME);
    let manifest = Manifest::load(&path).unwrap();
    manifest.verify_signature(&dp_keys(&setup)).unwrap();
    assert_eq!(manifest.epoch, 40);
    assert_eq!(manifest.count(), SHARDS);
    assert_eq!(
        manifest.mapping_count() as usize,
        summary.input_mappings,
        "every mapping in one shard"
    );
    for i in 0..SHARDS {
        let file = manifest.shard_path(&path, i).unwrap();
        assert_eq!(file, setup.path("dir").join(shard_file_name(i)));
        let snapshot = Snapshot::load(&file).unwrap();
        manifest.check_shard(i, snapshot.header()).unwrap();
        assert!(
            snapshot.header().mapping_count > 0,
            "300 mappings spread over 3 shards"
        );
    }
    // inspect reads it as a manifest.
    assert!(tools::is_manifest(&path));
    assert!(!tools::is_manifest(
        &setup.path("dir").join(shard_file_name(0))
    ));
    let described = tools::inspect_manifest(&path).unwrap().to_string();
    assert!(described.contains("3 shards"), "{described}");
    assert!(
        described.contains("shard 2: shard-00002.pirsnap"),
        "{described}"
    );
    // verify checks the signature, then every shard completely.
    let dp_pub = tools::public_key_path(&setup.path("dp.key"));
    let verified = tools::verify_manifest(&path, Some(&dp_pub), false).unwrap();
    assert_eq!(verified.shard_count, SHARDS);
    assert!(
        verified.to_string().contains("signed by a trusted DP key"),
        "{verified}"
    );
    let other = tools::public_key_path(&setup.path("other.key"));
    assert!(
        tools::verify_manifest(&path, Some(&other), false)
            .unwrap_err()
            .is_refusal()
    );
    let shard = setup.path("dir").join(shard_file_name(1));
    let mut bytes = std::fs::read(&shard).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 1;
    std::fs::write(&shard, &bytes).unwrap();
    let err = tools::verify_manifest(&path, Some(&dp_pub), false).unwrap_err();
    assert!(err.is_refusal(), "{err}");
    assert!(err.to_string().contains("shard-00001.pirsnap"), "{err}");
    bytes[last] ^= 1;
    std::fs::write(&shard, &bytes).unwrap();
    // A second build under the same epoch is refused: epochs only rise.
    let err = tools::build_sharded(&sharded(&setup, "dir", Some(40), None)).unwrap_err();
    assert!(matches!(err, DpError::EpochNotRising { .. }), "{err}");
}

#[test]
fn shards_built_apart_assemble_into_the_same_directory() {
    let setup = Setup::new(300);
    let whole = tools::build_sharded(&sharded(&setup, "whole", Some(50), None)).unwrap();
    // One machine per shard, each from the whole input, the same epoch.
    for i in 0..SHARDS {
        let one = tools::build_sharded(&sharded(&setup, "apart", Some(50), Some(i))).unwrap();
        assert_eq!(one.shards.len(), 1);
        assert!(one.manifest.is_none());
        assert!(
            one.to_string().contains("pir-server manifest --dir"),
            "{one}"
        );
        let (a, w) = (&one.shards[0], &whole.shards[i as usize]);
        assert_eq!((a.mappings, a.cpis), (w.mappings, w.cpis), "shard {i}");
    }
    // Before the last shard is there, assembling names what is missing.
    let apart = setup.path("apart");
    std::fs::rename(apart.join(shard_file_name(1)), setup.path("held-back")).unwrap();
    let err = tools::assemble_manifest(&tools::ManifestArgs {
        dir: apart.clone(),
        dp_key: Some(setup.path("dp.key")),
        out: None,
    })
    .unwrap_err();
    assert!(err.to_string().contains("--shard-index"), "{err}");
    std::fs::rename(setup.path("held-back"), apart.join(shard_file_name(1))).unwrap();
    let made = tools::assemble_manifest(&tools::ManifestArgs {
        dir: apart.clone(),
        dp_key: Some(setup.path("dp.key")),
        out: None,
    })
    .unwrap();
    assert_eq!((made.epoch, made.shard_count), (50, SHARDS));
    assert!(made.signed);
    let manifest = Manifest::load(&made.out).unwrap();
    manifest.verify_signature(&dp_keys(&setup)).unwrap();
    let whole_manifest = Manifest::load(&setup.path("whole").join(MANIFEST_FILE_NAME)).unwrap();
    for (a, w) in manifest.shards.iter().zip(&whole_manifest.shards) {
        assert_eq!(
            (a.mapping_count, a.cpi_count),
            (w.mapping_count, w.cpi_count)
        );
    }
    // --shard-index without --epoch is refused before any work.
    let err = tools::build_sharded(&sharded(&setup, "x", None, Some(0))).unwrap_err();
    assert!(matches!(err, DpError::ShardIndexNeedsEpoch), "{err}");
    assert!(!setup.path("x").exists());
}

#[test]
fn an_update_rewrites_only_the_shards_it_names() {
    let setup = Setup::new(300);
    tools::build_sharded(&sharded(&setup, "dir", Some(60), None)).unwrap();
    let path = setup.path("dir").join(MANIFEST_FILE_NAME);
    let before = Manifest::load(&path).unwrap();
    // One new CPI: exactly one shard changes.
    let issuer = tools::read_issuer_key(&setup.path("issuer.key")).unwrap();
    let fresh = tools::synth(1, &issuer, 77, pir_core::unix_now()).unwrap();
    tools::write_jsonl(&setup.path("one.jsonl"), &fresh).unwrap();
    let args = tools::ShardedUpdateArgs {
        manifest: path.clone(),
        delta: setup.path("one.jsonl"),
        trust: setup.path("issuer.pub"),
        oprf_key: setup.path("oprf.key"),
        out: None,
        epoch: Some(61),
        dp_key: Some(setup.path("dp.key")),
        dp_pub: Some(tools::public_key_path(&setup.path("dp.key"))),
        skip_invalid: false,
        full: false,
        progress: false,
    };
    let summary = tools::update_sharded(&args).unwrap();
    assert_eq!(summary.changed.len(), 1, "{summary}");
    let changed = summary.changed[0].index as usize;
    let after = Manifest::load(&path).unwrap();
    after.verify_signature(&dp_keys(&setup)).unwrap();
    assert_eq!(after.epoch, 61);
    for (i, (b, a)) in before.shards.iter().zip(&after.shards).enumerate() {
        if i == changed {
            assert_eq!(a.file, format!("shard-{i:05}.e61.pirsnap"));
            assert_eq!(a.epoch, 61);
            assert_eq!(a.mapping_count, b.mapping_count + 1);
        } else {
            assert_eq!(a, b, "shard {i} untouched");
        }
    }
    let new_shard = Snapshot::load(&after.shard_path(&path, changed as u32).unwrap()).unwrap();
    after
        .check_shard(changed as u32, new_shard.header())
        .unwrap();
    assert!(new_shard.is_delta(), "a delta of the old shard by default");
    // The old manifest's files are still there for servers that serve it.
    assert!(before.shard_path(&path, changed as u32).unwrap().exists());
    // The same epoch again is refused; signing without checking first is refused.
    let err = tools::update_sharded(&args).unwrap_err();
    assert!(matches!(err, DpError::EpochNotRising { .. }), "{err}");
    let err = tools::update_sharded(&tools::ShardedUpdateArgs {
        dp_pub: None,
        epoch: Some(62),
        ..args.clone()
    })
    .unwrap_err();
    assert!(matches!(err, DpError::SigningUnverified { .. }), "{err}");
    // A manifest signed by another DP is refused.
    let err = tools::update_sharded(&tools::ShardedUpdateArgs {
        dp_pub: Some(tools::public_key_path(&setup.path("other.key"))),
        epoch: Some(62),
        ..args
    })
    .unwrap_err();
    assert!(err.is_refusal(), "{err}");
}
