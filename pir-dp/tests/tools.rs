//! The DP's tooling: keys, synthetic mappings, line-numbered validation, build, update, verify,
//! inspect.

mod common;

use std::{collections::BTreeMap, os::unix::fs::PermissionsExt};

use pir_core::{CoreError, Cpi, Mapping, SchemeParams, Snapshot, TrustStore};
use pir_dp::{self as tools, DpError};

#[test]
fn keygen_synth_build_inspect() {
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("issuer.key");
    let issuer = tools::issuer_keygen(&key, false).unwrap();
    let mode = std::fs::metadata(&key).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    assert!(
        tools::issuer_keygen(&key, false).is_err(),
        "never overwrites by default"
    );
    let trust = TrustStore::from_file(&tools::public_key_path(&key)).unwrap();
    assert!(trust.get(&issuer.id()).is_some());

    let mappings = tools::synth(600, &issuer, 5, 1_800_000_000).unwrap();
    assert_eq!(mappings.len(), 600);
    assert_eq!(
        tools::synth(600, &issuer, 5, 1_800_000_000).unwrap(),
        mappings,
        "same seed, same output"
    );
    let mut by_cpi: BTreeMap<&Cpi, usize> = BTreeMap::new();
    for m in &mappings {
        m.verify(&trust, 1_800_000_000).unwrap();
        *by_cpi.entry(&m.fields.cpi).or_default() += 1;
    }
    let multi = by_cpi.values().filter(|&&n| n > 1).count();
    assert!(multi > 20, "some CPIs have several MSPs ({multi})");
    assert!(by_cpi.keys().any(|c| c.as_str().starts_with("mailto:")));
    for cc in [
        "tel:+1", "tel:+44", "tel:+49", "tel:+33", "tel:+91", "tel:+55",
    ] {
        assert!(by_cpi.keys().any(|c| c.as_str().starts_with(cc)), "{cc}");
    }
    assert!(mappings.iter().any(|m| m.fields.psi.is_some()));
    assert!(mappings.iter().any(|m| m.fields.context.is_some()));
    assert!(mappings.iter().any(|m| m.user.is_some()));

    // A file with three bad lines among good ones.
    let jsonl = dir.path().join("m.jsonl");
    tools::write_jsonl(&jsonl, &mappings).unwrap();
    let mut text = std::fs::read_to_string(&jsonl).unwrap();
    let mut lines: Vec<String> = text.lines().map(str::to_owned).collect();
    lines[4] = "{not json".into();
    lines[9] = lines[9].replace("\"msp\":\"", "\"msp\":\"x");
    lines[19] = lines[19].replace("tel:+", "tel:");
    lines[19] = lines[19].replace("mailto:", "mail:");
    lines.insert(30, String::new());
    text = lines.join("\n");
    std::fs::write(&jsonl, &text).unwrap();

    let out = dir.path().join("db.pirsnap");
    let args = tools::BuildArgs {
        mappings: jsonl.clone(),
        trust: tools::public_key_path(&key),
        out: out.clone(),
        skip_invalid: false,
        epoch: Some(9),
        replaces: None,
        scheme: Some(SchemeParams::danger_test_only_small().into()),
        engine: pir_core::Engine::Spiral,
        progress: false,
        dp_key: None,
        oprf_key: common::oprf_key(dir.path()),
        fill_percent: None,
    };
    let err = tools::build(&args).unwrap_err();
    let DpError::InvalidLines { file, lines } = &err else {
        panic!("wrong error {err}");
    };
    assert_eq!(file, &jsonl);
    let numbers: Vec<usize> = lines.iter().map(|l| l.line).collect();
    assert_eq!(numbers, [5, 10, 20], "{err}");
    assert!(matches!(lines[0].reason, CoreError::MalformedJson(_)));
    assert!(matches!(lines[1].reason, CoreError::BadIssuerSignature));
    assert!(matches!(lines[2].reason, CoreError::InvalidCpi { .. }));
    // The message the command line prints.
    let details = err.to_string();
    assert!(details.starts_with("3 invalid line(s) in "), "{details}");
    assert!(
        details.contains("\n  line 5: malformed mapping JSON"),
        "{details}"
    );
    assert!(
        details.contains("\n  line 10: issuer signature does not verify"),
        "{details}"
    );
    assert!(details.contains("\n  line 20: invalid CPI"), "{details}");
    assert!(
        details.ends_with("\n  (use --skip-invalid to build without them)"),
        "{details}"
    );
    assert!(!out.exists(), "nothing written on failure");

    let summary = tools::build(&tools::BuildArgs {
        skip_invalid: true,
        ..args
    })
    .unwrap();
    assert_eq!(summary.skipped_invalid, 3);
    assert_eq!(summary.report.input_mappings, 597);
    // The report prints as the command line prints it, and serialises for machines.
    let shown = summary.to_string();
    assert!(
        shown.starts_with(&format!(
            "skipped 3 invalid line(s)\nbuilt {} in ",
            out.display()
        )),
        "{shown}"
    );
    assert!(
        shown.contains(": 597 mappings and 0 opt-outs stored (597 + 0 read, "),
        "{shown}"
    );
    let json = serde_json::to_value(&summary).unwrap();
    assert_eq!(json["skipped_invalid"], 3);
    assert_eq!(json["report"]["input_mappings"], 597);
    assert_eq!(json["header"]["epoch"], 9);
    assert_eq!(json["header"]["items"], 256);
    let snapshot = Snapshot::load(&out).unwrap();
    assert_eq!(snapshot.header().epoch, 9);

    let text = tools::inspect(&out).unwrap().to_string();
    for needle in [
        "epoch                  9",
        "256 items x 8192 B",
        "NOT a vetted preset",
        "packing efficiency",
        "public keys",
        "v3, 256 buckets, 256 groups (64 B choice table), 8 MSP names, 1 issuer ids",
        "OPRF key               ristretto255-SHA512 ",
    ] {
        assert!(text.contains(needle), "{needle} missing from\n{text}");
    }
    let json = serde_json::to_value(tools::inspect(&out).unwrap()).unwrap();
    assert_eq!(json["header"]["epoch"], 9);
    assert!(json["vetted"].is_null());
    assert!(json["message_sizes"]["query"].as_u64().unwrap() > 0);
    let oprf = pir_core::oprf::OprfKey::from_file(&common::oprf_key(dir.path())).unwrap();
    assert_eq!(
        json["header"]["oprf_public_key"],
        oprf.public().to_string(),
        "the snapshot names the key it was built with"
    );
    // A damaged file is refused by inspect too.
    std::fs::write(&out, b"PIRSNAP\0garbage").unwrap();
    assert!(tools::inspect(&out).is_err());
}

#[test]
fn synthetic_cpis_are_normalised() {
    let issuer = pir_core::IssuerKey::from_seed(&[1; 32]);
    for m in tools::synth(50, &issuer, 11, 1_800_000_000).unwrap() {
        let again: Mapping = Mapping::from_json_line(&m.to_json_line()).unwrap();
        assert_eq!(Cpi::parse(m.fields.cpi.as_str()).unwrap(), m.fields.cpi);
        assert_eq!(again, m);
    }
}

#[test]
fn update_from_files_with_line_numbers_and_dp_signature() {
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("issuer.key");
    let issuer = tools::issuer_keygen(&key, false).unwrap();
    let dp_key = dir.path().join("dp.key");
    let dp_id = tools::dp_keygen(&dp_key, false).unwrap().id();
    let mappings = tools::synth(200, &issuer, 3, pir_core::unix_now()).unwrap();
    let jsonl = dir.path().join("m.jsonl");
    tools::write_jsonl(&jsonl, &mappings).unwrap();
    let old = dir.path().join("old.pirsnap");
    tools::build(&tools::BuildArgs {
        mappings: jsonl,
        trust: tools::public_key_path(&key),
        out: old.clone(),
        skip_invalid: false,
        epoch: Some(5),
        replaces: None,
        scheme: Some(SchemeParams::danger_test_only_small().into()),
        engine: pir_core::Engine::Spiral,
        progress: false,
        dp_key: Some(dp_key.clone()),
        oprf_key: common::oprf_key(dir.path()),
        fill_percent: None,
    })
    .unwrap();
    tools::verify(&old, Some(&tools::public_key_path(&dp_key)), false).unwrap();

    let fresh = tools::synth(3, &issuer, 99, pir_core::unix_now()).unwrap();
    let delta = dir.path().join("delta.jsonl");
    let lines = [
        fresh[0].to_json_line(),
        format!(r#"{{"remove":{{"cpi":"{}"}}}}"#, mappings[0].fields.cpi),
        r#"{"remove":{"cpi":"sms:123"}}"#.to_string(),
        String::new(),
        fresh[1].to_json_line().replace("\"sig\":\"", "\"sig\":\"A"),
    ];
    std::fs::write(&delta, lines.join("\n")).unwrap();
    let new = dir.path().join("new.pirsnap");
    let args = tools::UpdateArgs {
        oprf_key: common::oprf_key(dir.path()),
        snapshot: old.clone(),
        delta,
        trust: tools::public_key_path(&key),
        out: new.clone(),
        skip_invalid: false,
        epoch: None,
        dp_key: Some(dp_key.clone()),
        full: false,
    };
    // Signing again needs the old snapshot verified first.
    let verified_first = tools::UpdateRun {
        dp_pub: Some(tools::public_key_path(&dp_key)),
        progress: false,
    };
    let err = tools::update_with(&args, &verified_first).unwrap_err();
    let DpError::InvalidLines { lines, .. } = &err else {
        panic!("wrong error {err}");
    };
    let numbers: Vec<usize> = lines.iter().map(|l| l.line).collect();
    assert_eq!(numbers, [3, 5], "{err}");
    assert!(matches!(lines[0].reason, CoreError::InvalidCpi { .. }));
    let err = err.to_string();
    assert!(err.contains("2 invalid line(s)"), "{err}");
    assert!(err.contains("line 3: invalid CPI"), "{err}");
    assert!(err.contains("line 5:"), "{err}");

    let s = tools::update_with(
        &tools::UpdateArgs {
            skip_invalid: true,
            ..args
        },
        &verified_first,
    )
    .unwrap();
    assert_eq!(s.skipped_invalid, 2);
    let shown = s.to_string();
    assert!(
        shown.starts_with("skipped 2 invalid line(s)\nupdated epoch 5 -> "),
        "{shown}"
    );
    assert!(
        shown.contains("(a delta of the old snapshot): 2 operations"),
        "{shown}"
    );
    assert_eq!(serde_json::to_value(&s).unwrap()["report"]["upserts"], 1);
    assert_eq!(s.report.upserts, 1);
    assert!(s.report.removed >= 1);
    assert!(s.header.epoch > 5);
    let verified = tools::verify(&new, Some(&tools::public_key_path(&dp_key)), false).unwrap();
    assert_eq!(
        verified.to_string(),
        format!(
            "{}: intact (structure and checksums), epoch {}, signed by trusted DP key {dp_id}",
            new.display(),
            s.header.epoch
        )
    );
    // Key ids are spelt one way in every output: as `dp-keygen` prints them.
    assert_eq!(
        serde_json::to_value(&verified).unwrap()["header"]["signed_by"].as_str(),
        Some(dp_id.to_string().as_str())
    );
    let h = verified.header;
    assert_eq!(h.epoch, s.header.epoch);
    assert_eq!(h.layout, Snapshot::read_header(&old).unwrap().layout);
    let described = tools::inspect(&new).unwrap().to_string();
    assert!(
        described.contains("delta of") && described.contains("old.pirsnap (epoch 5)"),
        "{described}"
    );
    // A full rewrite is self-contained.
    let full_args = tools::UpdateArgs {
        oprf_key: common::oprf_key(dir.path()),
        snapshot: new.clone(),
        delta: dir.path().join("empty.jsonl"),
        trust: tools::public_key_path(&key),
        out: dir.path().join("full.pirsnap"),
        skip_invalid: false,
        epoch: None,
        dp_key: None,
        full: true,
    };
    let err = tools::update(&full_args).unwrap_err();
    assert!(
        matches!(
            &err,
            DpError::Io {
                op: tools::IoOp::Opening,
                ..
            }
        ),
        "the delta file does not exist yet: {err}"
    );
    std::fs::write(dir.path().join("empty.jsonl"), "").unwrap();
    let f = tools::update(&full_args).unwrap();
    assert!(f.header.base.is_none());
    assert_eq!(f.header.mapping_count, h.mapping_count);
    // Another DP key does not verify it.
    let other = dir.path().join("other.key");
    tools::dp_keygen(&other, false).unwrap();
    let err = tools::verify(&new, Some(&tools::public_key_path(&other)), false).unwrap_err();
    assert!(
        matches!(
            &err,
            DpError::Refused { reason, .. } if matches!(**reason, CoreError::UnknownDpKey(_))
        ),
        "{err}"
    );
    // A delta is written beside the snapshot it applies to.
    let elsewhere = tempfile::tempdir().unwrap();
    let err = tools::update(&tools::UpdateArgs {
        out: elsewhere.path().join("delta.pirsnap"),
        full: false,
        ..full_args
    })
    .unwrap_err();
    assert!(matches!(err, DpError::DeltaNotBeside { .. }), "{err}");
    assert!(
        err.to_string()
            .starts_with("a delta is written beside the snapshot it applies to: put "),
        "{err}"
    );
}

/// A well-formed number the phone metadata does not know is built in, and the build report
/// counts it and names the first ones (text and JSON), so the DP can check it for a typo.
#[test]
fn build_reports_cpis_with_a_warning() {
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("issuer.key");
    let issuer = tools::issuer_keygen(&key, false).unwrap();
    let now = pir_core::unix_now();
    let line = |cpi: &str, msp: &str| {
        pir_core::MappingFields::new(Cpi::parse(cpi).unwrap(), msp, None, None, 0, now + 3600)
            .unwrap()
            .sign(&issuer, None)
            .unwrap()
    };
    let mappings = [
        line("tel:+14155550100", "chat.example"),
        line("tel:+44 7700 900123", "chat.example"),
        line("tel:+447700900123", "talk.example"),
        line("tel:+1 415 555", "chat.example"),
        line("mailto:jo@Bücher.example", "mail.example"),
    ];
    let jsonl = dir.path().join("m.jsonl");
    tools::write_jsonl(&jsonl, &mappings).unwrap();
    // Each build replaces the last at --out, so each gets a higher epoch.
    let build = |jsonl: &std::path::Path, epoch: u64| {
        tools::build(&tools::BuildArgs {
            mappings: jsonl.to_path_buf(),
            trust: tools::public_key_path(&key),
            out: dir.path().join("db.pirsnap"),
            skip_invalid: false,
            epoch: Some(epoch),
            replaces: None,
            scheme: Some(SchemeParams::danger_test_only_small().into()),
            engine: pir_core::Engine::Spiral,
            progress: false,
            dp_key: None,
            oprf_key: common::oprf_key(dir.path()),
            fill_percent: None,
        })
        .unwrap()
    };
    let summary = build(&jsonl, 1);
    assert_eq!(summary.report.stored_mappings, 5);
    assert_eq!(summary.cpi_warnings.count, 3);
    let shown = summary.to_string();
    assert!(
        shown.ends_with(
            "\nwarning: 3 mapping(s) kept with a CPI warning, first: tel:+447700900123 (not a \
             valid number for its country code per the phone metadata: check it for a typo); \
             tel:+1415555 (not a valid number for its country code per the phone metadata: \
             check it for a typo)"
        ),
        "{shown}"
    );
    let json = serde_json::to_value(&summary).unwrap();
    assert_eq!(json["cpi_warnings"]["count"], 3);
    assert_eq!(
        json["cpi_warnings"]["examples"][0],
        serde_json::json!({"cpi": "tel:+447700900123", "warning": "not_valid_per_metadata"})
    );

    // Without such CPIs, no warning line.
    tools::write_jsonl(&jsonl, &mappings[..1]).unwrap();
    let clean = build(&jsonl, 2);
    assert_eq!(clean.cpi_warnings.count, 0);
    assert!(!clean.to_string().contains("warning"), "{clean}");
}
