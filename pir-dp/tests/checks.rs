//! What the DP's tooling refuses, and how it says so: verifying without DP keys, a wrong DP key,
//! an update over the file it reads, a delta copied over its base, key files that exist, output
//! directories that do not.

mod common;

use std::path::Path;

use pir_core::{CoreError, Snapshot, error::SnapshotError};
use pir_dp::{self as tools, DpError, DpSignature};

use common::Setup;

/// The shared directory with 300 mappings and `db.pirsnap` built from them at epoch 7 (signed by
/// the DP key when `signed`).
fn setup(signed: bool) -> Setup {
    let s = Setup::new(300);
    tools::build(&tools::BuildArgs {
        dp_key: signed.then(|| s.path("dp.key")),
        ..s.build_args("db.pirsnap", Some(7))
    })
    .unwrap();
    s
}

#[test]
fn verify_without_dp_keys_checks_structure_and_says_the_signature_was_not() {
    for signed in [false, true] {
        let s = setup(signed);
        let db = s.path("db.pirsnap");
        let v = tools::verify(&db, None, false).unwrap();
        assert_eq!(v.dp_signature, DpSignature::NotChecked);
        let shown = v.to_string();
        assert!(
            shown.starts_with(&format!(
                "{}: intact (structure and checksums), epoch 7, ",
                db.display()
            )),
            "{shown}"
        );
        let expected = if signed {
            "; the signature was NOT checked (pass --dp-pub to check it)"
        } else {
            "not signed by a DP key; no signature was checked (sign with build --dp-key)"
        };
        assert!(shown.ends_with(expected), "{shown}");
        let json = serde_json::to_value(&v).unwrap();
        assert_eq!(json["dp_signature"], "not_checked");
        assert_eq!(json["header"]["signed_by"].is_null(), !signed);

        // The checksums are checked all the same: one flipped byte of the database is refused.
        let mut bytes = std::fs::read(&db).unwrap();
        let last = bytes.len() - 1;
        bytes[last] ^= 1;
        std::fs::write(&db, &bytes).unwrap();
        let err = tools::verify(&db, None, false).unwrap_err();
        assert!(
            matches!(
                &err,
                DpError::Core(CoreError::Snapshot {
                    path: Some(p),
                    reason: SnapshotError::DatabaseChecksum,
                }) if p == &db
            ),
            "{err}"
        );
        assert!(err.is_refusal());
    }
    // With the DP's keys, as before.
    let s = setup(true);
    let v = tools::verify(&s.path("db.pirsnap"), Some(&s.path("dp.pub")), false).unwrap();
    assert_eq!(v.dp_signature, DpSignature::Trusted);
    assert_eq!(serde_json::to_value(&v).unwrap()["dp_signature"], "trusted");
}

#[test]
fn a_wrong_dp_key_is_a_dp_signature_failure() {
    let s = setup(true);
    let db = s.path("db.pirsnap");
    let other = s.path("other.pub");
    let expect_refused = |err: DpError| {
        assert!(
            matches!(&err, DpError::Refused { reason, path, dp_pub }
                if matches!(**reason, CoreError::UnknownDpKey(_)) && path == &db && dp_pub == &other),
            "{err}"
        );
        assert!(err.is_refusal());
        let text = err.to_string();
        assert!(
            text.starts_with(&format!(
                "refused: {}: snapshot signed by unknown DP key ",
                db.display()
            )),
            "{text}"
        );
        assert!(
            text.ends_with(&format!(
                "; {} does not hold that key: pass the DP's public key with --dp-pub",
                other.display()
            )),
            "{text}"
        );
        assert!(!text.contains("issuer"), "{text}");
    };
    expect_refused(tools::verify(&db, Some(&other), false).unwrap_err());
    let run = |dp_pub: &Path| tools::UpdateRun {
        dp_pub: Some(dp_pub.to_path_buf()),
        progress: false,
    };
    let args = s.update_args("db.pirsnap", "new.pirsnap", None);
    expect_refused(tools::update_with(&args, &run(&other)).unwrap_err());
    assert!(!s.path("new.pirsnap").exists(), "nothing written");
    // The right key lets the update through; an unsigned snapshot is refused with the remedy.
    tools::update_with(&args, &run(&s.path("dp.pub"))).unwrap();
    let unsigned = setup(false);
    let err = tools::verify(
        &unsigned.path("db.pirsnap"),
        Some(&unsigned.path("dp.pub")),
        false,
    )
    .unwrap_err();
    assert!(
        err.to_string().ends_with(
            ": snapshot is not signed by a DP key; sign it with --dp-key when building, or leave \
             out --dp-pub to check only its structure and checksums"
        ),
        "{err}"
    );
}

#[test]
fn update_refuses_to_write_over_a_file_it_reads() {
    let s = setup(false);
    let before = std::fs::read(s.path("db.pirsnap")).unwrap();
    for full in [false, true] {
        let err = tools::update(&tools::UpdateArgs {
            full,
            ..s.update_args("db.pirsnap", "db.pirsnap", None)
        })
        .unwrap_err();
        assert!(
            matches!(&err, DpError::OutputIsInput { out, input }
                if out == &s.path("db.pirsnap") && input == &s.path("db.pirsnap")),
            "{err}"
        );
        assert_eq!(
            err.to_string(),
            format!(
                "refusing to write {}, which this update reads: write to a new name and rename \
                 it into place once written (a delta needs the file it applies to, so a delta \
                 written over it destroys both)",
                s.path("db.pirsnap").display()
            )
        );
    }
    // A delta's base is read too, under whatever spelling.
    tools::update(&s.update_args("db.pirsnap", "new.pirsnap", None)).unwrap();
    let mut args = s.update_args("new.pirsnap", "x", None);
    std::fs::create_dir(s.path("sub")).unwrap();
    args.out = s.path("sub").join("..").join("db.pirsnap");
    let err = tools::update(&args).unwrap_err();
    assert!(
        err.to_string().starts_with(&format!(
            "refusing to write {} (the same file as {}), which this update reads",
            args.out.display(),
            s.path("db.pirsnap").display()
        )),
        "{err}"
    );
    assert_eq!(std::fs::read(s.path("db.pirsnap")).unwrap(), before);
    Snapshot::load(&s.path("new.pirsnap")).unwrap();
}

#[test]
fn a_delta_copied_over_its_base_says_the_base_was_overwritten() {
    let s = setup(false);
    tools::update(&s.update_args("db.pirsnap", "new.pirsnap", None)).unwrap();
    // What the old README's flow did: the delta copied over the name it refers to.
    std::fs::copy(s.path("new.pirsnap"), s.path("db.pirsnap")).unwrap();
    for file in ["db.pirsnap", "new.pirsnap"] {
        let err = tools::verify(&s.path(file), None, false).unwrap_err();
        assert!(
            matches!(&err, DpError::Core(CoreError::Snapshot {
                reason: SnapshotError::BaseIsDelta { base }, ..
            }) if base == &s.path("db.pirsnap")),
            "{err}"
        );
        assert!(err.is_refusal());
        let text = err.to_string();
        let own = format!(
            "its base {} is itself a delta",
            s.path("db.pirsnap").display()
        );
        for needle in [
            own.as_str(),
            "was probably overwritten by a delta",
            "rebuild it with `pir-server build`",
            "`update --full`",
        ] {
            assert!(text.contains(needle), "{needle} missing from {text}");
        }
    }
}

#[test]
fn key_files_are_not_overwritten_without_force() {
    let s = setup(false);
    let key = s.path("issuer.key");
    let before = std::fs::read(&key).unwrap();
    for err in [
        tools::issuer_keygen(&key, false).unwrap_err(),
        tools::dp_keygen(&key, false).unwrap_err(),
    ] {
        assert!(
            matches!(&err, DpError::KeyFileExists { path } if path == &key),
            "{err}"
        );
        assert_eq!(
            err.to_string(),
            format!(
                "{} already exists: pass --force to overwrite it (the key in it is then lost)",
                key.display()
            )
        );
    }
    assert_eq!(std::fs::read(&key).unwrap(), before);
    tools::issuer_keygen(&key, true).unwrap();
    assert_ne!(std::fs::read(&key).unwrap(), before);
}

#[test]
fn outputs_in_a_missing_directory_name_it() {
    let s = setup(false);
    let missing = s.path("missing-dir");
    let out = missing.join("x");
    let expect = |err: DpError| {
        assert!(
            matches!(&err, DpError::NoSuchDirectory { out: o, dir } if o == &out && dir == &missing),
            "{err}"
        );
        assert_eq!(
            err.to_string(),
            format!(
                "cannot write {}: the directory {} does not exist (create it first)",
                out.display(),
                missing.display()
            )
        );
    };
    let mut build = s.build_args("unused", Some(7));
    build.out = out.clone();
    expect(tools::build(&build).unwrap_err());
    let mut update = s.update_args("db.pirsnap", "unused", None);
    update.out = out.clone();
    update.full = true;
    expect(tools::update(&update).unwrap_err());
    expect(tools::issuer_keygen(&out, false).unwrap_err());
    expect(
        tools::synth_to_file(&tools::SynthArgs {
            count: 3,
            issuer_key: s.path("issuer.key"),
            out: out.clone(),
            seed: 1,
            progress: false,
        })
        .unwrap_err(),
    );
    // A bare file name is in the working directory, which exists.
    assert!(!missing.exists());
}

#[test]
fn human_reports_write_times_in_rfc3339_and_sizes_in_one_format() {
    let s = setup(false);
    let text = tools::inspect(&s.path("db.pirsnap")).unwrap().to_string();
    let created = text
        .lines()
        .find_map(|l| l.strip_prefix("created at"))
        .unwrap()
        .trim();
    // 2026-12-01T21:35:00Z
    let b = created.as_bytes();
    assert_eq!(created.len(), 20, "{created}");
    assert!(
        b[4] == b'-' && b[7] == b'-' && b[10] == b'T' && b[13] == b':' && b[19] == b'Z',
        "{created}"
    );
    assert!(!text.contains("(unix)"), "{text}");
    for needle in [
        "packing efficiency     ",
        "%\n",
        "file                   18.0 MiB",
        "query 16.0 KiB, response 20.0 KiB",
    ] {
        assert!(text.contains(needle), "{needle} missing from\n{text}");
    }
    let built = tools::build(&s.build_args("again.pirsnap", Some(7)))
        .unwrap()
        .to_string();
    assert!(
        built.contains(" s: 300 mappings and 0 opt-outs stored"),
        "{built}"
    );
    assert!(built.ends_with("%, 18.0 MiB"), "{built}");
}

/// Opt-out lines are read from mapping and delta files; `update` refuses an OPRF key the
/// snapshot was not built with, and the key file is refused when others may read it.
#[test]
fn opt_outs_and_the_oprf_key_file() {
    let s = Setup::new(40);
    let issuer = pir_core::IssuerKey::from_file(&s.path("issuer.key")).unwrap();
    let now = pir_core::unix_now();
    let opt_out = |cpi: &str| {
        pir_core::identity::OptOut::sign(pir_core::Cpi::parse(cpi).unwrap(), 0, now + 1000, &issuer)
            .unwrap()
            .to_json_line()
    };
    let mut text = std::fs::read_to_string(s.path("m.jsonl")).unwrap();
    text.push_str(&opt_out("tel:+14155550199"));
    text.push('\n');
    std::fs::write(s.path("m.jsonl"), text).unwrap();
    let built = s.build("db.pirsnap", Some(3)).unwrap();
    assert_eq!(built.report.input_opt_outs, 1);
    assert_eq!(built.report.stored_opt_outs, 1);
    assert_eq!(built.header.opt_out_count, 1);
    assert_eq!(built.header.mapping_count, 40);

    // A delta's opt-out line is applied.
    std::fs::write(s.path("delta.jsonl"), opt_out("tel:+14155550198") + "\n").unwrap();
    let updated = tools::update(&s.update_args("db.pirsnap", "d1.pirsnap", Some(4))).unwrap();
    assert_eq!(updated.report.opt_outs, 1);
    assert_eq!(updated.header.opt_out_count, 2);

    // Another OPRF key: every CPI would land elsewhere, so the update is refused.
    let other = s.path("other-oprf.key");
    tools::oprf_keygen(&other, false).unwrap();
    let err = tools::update(&tools::UpdateArgs {
        oprf_key: other,
        ..s.update_args("db.pirsnap", "d2.pirsnap", Some(5))
    })
    .unwrap_err();
    assert!(
        matches!(err, DpError::Core(CoreError::OprfKeyMismatch { .. })),
        "{err}"
    );
    assert!(!s.path("d2.pirsnap").exists());

    // A key file others may read is refused, naming the flag.
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(s.path("oprf.key"), std::fs::Permissions::from_mode(0o644)).unwrap();
    let err = s.build("again.pirsnap", Some(9)).unwrap_err().to_string();
    assert!(err.contains("--oprf-key"), "{err}");
    assert!(err.contains("chmod 600"), "{err}");
}
