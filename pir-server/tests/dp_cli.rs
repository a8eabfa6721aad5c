//! The DP's subcommands as scripts run them: the built `pir-server` binary with stdout and
//! stderr piped. `--json` output, exit codes, their `--help`, the sentences errors are, and no
//! escape codes off a terminal.

mod common;

use std::{path::Path, process::Output};

use common::{OPRF_KEY_FILE, build_args, run_in as run, synth_args, update_args};

fn stdout(o: &Output) -> String {
    String::from_utf8(o.stdout.clone()).unwrap()
}

fn stderr(o: &Output) -> String {
    String::from_utf8(o.stderr.clone()).unwrap()
}

/// Runs and expects exit code `code`.
fn expect(dir: &Path, args: &[&str], code: i32) -> Output {
    let o = run(dir, args);
    assert_eq!(
        o.status.code(),
        Some(code),
        "pir-server {args:?}\nstdout: {}\nstderr: {}",
        stdout(&o),
        stderr(&o)
    );
    o
}

/// A directory with keys (issuer, DP, another DP, the OPRF key), 300 synthetic mappings, a
/// 3-line delta and `db.pirsnap` built from them and signed by the DP key.
fn setup() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    expect(d, &["issuer-keygen", "--out", "issuer.key"], 0);
    expect(d, &["oprf-keygen", "--out", OPRF_KEY_FILE], 0);
    expect(d, &["dp-keygen", "--out", "dp.key"], 0);
    expect(d, &["dp-keygen", "--out", "other.key"], 0);
    expect(d, &synth_args("300", "issuer.key", "m.jsonl"), 0);
    let text = std::fs::read_to_string(d.join("m.jsonl")).unwrap();
    let delta: Vec<&str> = text.lines().take(3).collect();
    std::fs::write(d.join("delta.jsonl"), delta.join("\n")).unwrap();
    expect(d, &build_args("db.pirsnap", &["--dp-key", "dp.key"]), 0);
    dir
}

/// Exactly one JSON object on one line of stdout, nothing on stderr.
fn one_json_object(o: &Output) -> serde_json::Value {
    let out = stdout(o);
    assert_eq!(out.lines().count(), 1, "{out}");
    assert!(o.stderr.is_empty(), "{}", stderr(o));
    let value: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert!(value.is_object(), "{out}");
    value
}

#[test]
fn json_reports_are_one_object_on_stdout() {
    let dir = setup();
    let d = dir.path();
    let built = one_json_object(&expect(d, &build_args("b.pirsnap", &["--json"]), 0));
    assert_eq!(built["out"], "b.pirsnap");
    assert_eq!(built["report"]["input_mappings"], 300);
    assert!(
        built["header"]["created_at"].is_u64(),
        "machines get unix seconds"
    );

    let updated = one_json_object(&expect(
        d,
        &update_args(
            "db.pirsnap",
            "new.pirsnap",
            &["--json", "--dp-pub", "dp.pub"],
        ),
        0,
    ));
    assert_eq!(updated["operations"], 3);
    assert_eq!(updated["header"]["base"]["file"], "db.pirsnap");
    assert!(updated["header"]["epoch"].as_u64() > updated["old_epoch"].as_u64());

    let verified = one_json_object(&expect(
        d,
        &["verify", "db.pirsnap", "--dp-pub", "dp.pub", "--json"],
        0,
    ));
    assert_eq!(verified["dp_signature"], "trusted");
    let unchecked = one_json_object(&expect(d, &["verify", "new.pirsnap", "--json"], 0));
    assert_eq!(unchecked["dp_signature"], "not_checked");
    assert_eq!(unchecked["header"]["base"]["file"], "db.pirsnap");

    let inspected = one_json_object(&expect(d, &["inspect", "--json", "db.pirsnap"], 0));
    assert_eq!(inspected["header"]["items"], 256);
    assert!(inspected["message_sizes"]["query"].as_u64().unwrap() > 0);

    // An error is text on stderr, stdout stays empty.
    let o = expect(d, &["inspect", "--json", "missing.pirsnap"], 1);
    assert!(o.stdout.is_empty());
    assert!(stderr(&o).starts_with("error: "), "{}", stderr(&o));
}

#[test]
fn exit_codes_tell_success_error_usage_and_refusal_apart() {
    let dir = setup();
    let d = dir.path();
    expect(d, &["verify", "db.pirsnap", "--dp-pub", "dp.pub"], 0);
    expect(d, &["verify", "db.pirsnap"], 0);
    // 1: the command could not do its job.
    expect(d, &["verify", "missing.pirsnap"], 1);
    expect(d, &["verify", "db.pirsnap", "--dp-pub", "missing.pub"], 1);
    expect(d, &["issuer-keygen", "--out", "issuer.key"], 1);
    // 2: the command line is wrong.
    expect(d, &["verify", "db.pirsnap", "--no-such-flag"], 2);
    expect(d, &["build", "--mappings", "m.jsonl"], 2);
    // 3: a snapshot failed verification: another DP's key, an unsigned one, a damaged one.
    expect(d, &["verify", "db.pirsnap", "--dp-pub", "other.pub"], 3);
    expect(
        d,
        &update_args("db.pirsnap", "new.pirsnap", &["--dp-pub", "other.pub"]),
        3,
    );
    expect(d, &build_args("unsigned.pirsnap", &[]), 0);
    expect(d, &["verify", "unsigned.pirsnap", "--dp-pub", "dp.pub"], 3);
    let path = d.join("db.pirsnap");
    let mut bytes = std::fs::read(&path).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 1;
    std::fs::write(&path, bytes).unwrap();
    expect(d, &["verify", "db.pirsnap"], 3);
    std::fs::write(&path, b"PIRSNAP\0garbage").unwrap();
    expect(d, &["inspect", "db.pirsnap"], 3);
}

#[test]
fn help_lists_the_exit_codes() {
    let dir = tempfile::tempdir().unwrap();
    for args in [
        &["--help"][..],
        &["build", "--help"],
        &["update", "--help"],
        &["verify", "--help"],
        &["inspect", "--help"],
    ] {
        let help = stdout(&expect(dir.path(), args, 0));
        for needle in [
            "Exit codes:\n  0  success\n  1  error: ",
            "\n  2  usage: ",
            "\n  3  refused: a snapshot that update, verify or inspect read failed verification",
        ] {
            assert!(
                help.contains(needle),
                "{args:?}: {needle:?} missing from\n{help}"
            );
        }
    }
    let help = stdout(&expect(dir.path(), &["verify", "--help"], 0));
    assert!(help.contains("--json"), "{help}");
    assert!(help.contains("Without it the signature"), "{help}");
}

#[test]
fn output_off_a_terminal_has_no_escape_codes() {
    // Every step that shows progress on a terminal, its output piped as journald and
    // `docker logs` would take it.
    let dir = setup();
    let d = dir.path();
    let runs = [
        expect(d, &build_args("b.pirsnap", &[]), 0),
        expect(d, &update_args("db.pirsnap", "u.pirsnap", &[]), 0),
        expect(d, &update_args("db.pirsnap", "f.pirsnap", &["--full"]), 0),
        expect(d, &["verify", "db.pirsnap", "--dp-pub", "dp.pub"], 0),
        expect(d, &["verify", "u.pirsnap"], 0),
        expect(d, &["inspect", "u.pirsnap"], 0),
        expect(d, &synth_args("50", "issuer.key", "s.jsonl"), 0),
    ];
    for o in &runs {
        for text in [stdout(o), stderr(o)] {
            assert!(!text.contains('\x1b'), "escape codes in {text:?}");
            assert!(!text.contains('\r'), "carriage returns in {text:?}");
        }
        assert!(o.stderr.is_empty(), "{}", stderr(o));
    }
    assert_eq!(stdout(&runs[6]), "50 mappings written to s.jsonl\n");
}

#[test]
fn errors_are_sentences_naming_the_file_and_the_remedy() {
    let dir = setup();
    let d = dir.path();
    let error = |args: &[&str], code| stderr(&expect(d, args, code));
    for keygen in ["issuer-keygen", "dp-keygen"] {
        assert_eq!(
            error(&[keygen, "--out", "issuer.key"], 1),
            "error: issuer.key already exists: pass --force to overwrite it (the key in it is \
             then lost)\n"
        );
    }
    expect(d, &["dp-keygen", "--out", "spare.key"], 0);
    expect(d, &["dp-keygen", "--out", "spare.key", "--force"], 0);

    assert_eq!(
        error(&build_args("missing-dir/x", &[]), 1),
        "error: cannot write missing-dir/x: the directory missing-dir does not exist (create it \
         first)\n"
    );
    let wrong_key = error(&["verify", "db.pirsnap", "--dp-pub", "other.pub"], 3);
    assert!(
        wrong_key.starts_with("error: refused: db.pirsnap: snapshot signed by unknown DP key "),
        "{wrong_key}"
    );
    assert!(
        wrong_key.ends_with(
            "; other.pub does not hold that key: pass the DP's public key with --dp-pub\n"
        ),
        "{wrong_key}"
    );
    assert!(!wrong_key.contains("issuer"), "{wrong_key}");

    // An update never writes over what it reads; the base survives.
    let before = std::fs::read(d.join("db.pirsnap")).unwrap();
    let over = error(&update_args("db.pirsnap", "db.pirsnap", &[]), 1);
    assert!(
        over.starts_with("error: refusing to write db.pirsnap, which this update reads: "),
        "{over}"
    );
    expect(d, &update_args("db.pirsnap", "new.pirsnap", &[]), 0);
    let over = error(&update_args("new.pirsnap", "./db.pirsnap", &[]), 1);
    assert!(
        over.starts_with(
            "error: refusing to write ./db.pirsnap (the same file as db.pirsnap), which this \
             update reads: "
        ),
        "{over}"
    );
    assert_eq!(std::fs::read(d.join("db.pirsnap")).unwrap(), before);

    // A delta copied over its base: both files say what probably happened.
    std::fs::copy(d.join("new.pirsnap"), d.join("db.pirsnap")).unwrap();
    for file in ["db.pirsnap", "new.pirsnap"] {
        let text = error(&["verify", file], 3);
        assert!(
            text.starts_with(&format!(
                "error: invalid snapshot: {file}: its base db.pirsnap is itself a delta, not a \
                 full snapshot: that file was probably overwritten by a delta"
            )),
            "{text}"
        );
    }
}

#[test]
fn human_output_writes_times_in_rfc3339() {
    let dir = setup();
    let d = dir.path();
    let text = stdout(&expect(d, &["inspect", "db.pirsnap"], 0));
    let line = text
        .lines()
        .find(|l| l.starts_with("created at"))
        .unwrap()
        .to_owned();
    let stamp = line.rsplit(' ').next().unwrap();
    let shape: String = stamp
        .chars()
        .map(|c| if c.is_ascii_digit() { 'd' } else { c })
        .collect();
    assert_eq!(shape, "dddd-dd-ddTdd:dd:ddZ", "{line}");
    assert!(!text.contains("unix"), "{text}");
    let built = stdout(&expect(d, &build_args("b.pirsnap", &[]), 0));
    assert!(
        built.contains("packing efficiency ") && built.contains("%, "),
        "{built}"
    );
}
