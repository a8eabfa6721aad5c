//! Key files and other secrets as the built `pir-server` binary handles them: the forms
//! (PKCS#8 PEM secrets, SPKI PEM public keys), their modes when written (0600 from creation,
//! never through a symlink, whatever was there before), secrets others may read refused with
//! the `chmod 600` remedy, each flag refusing the other kind of file by name, old one-line
//! files refused with the way out, and non-canonical public keys refused.

mod common;

use std::{
    fs,
    os::unix::fs::{PermissionsExt, symlink},
    path::Path,
    process::Command,
};

use common::run_in as run;

/// `build` of the directory's mappings into `db.pirsnap`, with `extra` arguments.
fn build<'a>(extra: &[&'a str]) -> Vec<&'a str> {
    common::build_args("db.pirsnap", extra)
}

/// Runs, expects success, returns stdout.
fn ok(dir: &Path, args: &[&str]) -> String {
    let o = run(dir, args);
    assert!(
        o.status.success(),
        "pir-server {args:?}\nstderr: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8(o.stdout).unwrap()
}

/// Runs, expects exit code 1, returns stderr.
fn fails(dir: &Path, args: &[&str]) -> String {
    let o = run(dir, args);
    let stderr = String::from_utf8(o.stderr).unwrap();
    assert_eq!(
        o.status.code(),
        Some(1),
        "pir-server {args:?}\nstderr: {stderr}"
    );
    stderr
}

fn mode(path: &Path) -> u32 {
    fs::symlink_metadata(path).unwrap().permissions().mode() & 0o777
}

fn chmod(path: &Path, mode: u32) {
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).unwrap();
}

/// Issuer, DP and OPRF keys, 20 synthetic mappings and a signed snapshot of them.
fn setup() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    ok(d, &["issuer-keygen", "--out", "issuer.key"]);
    ok(d, &["dp-keygen", "--out", "dp.key"]);
    ok(d, &["oprf-keygen", "--out", common::OPRF_KEY_FILE]);
    ok(d, &common::synth_args("20", "issuer.key", "m.jsonl"));
    ok(d, &build(&["--dp-key", "dp.key"]));
    dir
}

/// `args` with the value after `flag` replaced by `file`.
fn with<'a>(args: &[&'a str], flag: &str, file: &'a str) -> Vec<&'a str> {
    let mut args = args.to_vec();
    let at = args.iter().position(|a| *a == flag).unwrap();
    args[at + 1] = file;
    args
}

#[test]
fn key_files_are_pem_and_their_secrets_owner_only() {
    let dir = setup();
    let d = dir.path();
    for (secret, public) in [("issuer.key", "issuer.pub"), ("dp.key", "dp.pub")] {
        let text = fs::read_to_string(d.join(secret)).unwrap();
        assert!(text.contains("\n-----BEGIN PRIVATE KEY-----\n"), "{text}");
        assert_eq!(mode(&d.join(secret)), 0o600);
        let text = fs::read_to_string(d.join(public)).unwrap();
        assert!(text.contains("\n-----BEGIN PUBLIC KEY-----\n"), "{text}");
        assert_eq!(mode(&d.join(public)), 0o644);
    }
    // The OPRF key: a secret, in its own PEM block, and no public file beside it (its public
    // key goes into every snapshot instead).
    let text = fs::read_to_string(d.join("oprf.key")).unwrap();
    assert!(
        text.contains("\n-----BEGIN PIR DISCOVERY OPRF SECRET KEY-----\n"),
        "{text}"
    );
    assert_eq!(mode(&d.join("oprf.key")), 0o600);
    assert!(!d.join("oprf.pub").exists());
    // Mapping files and snapshots are not for everyone either.
    assert_eq!(mode(&d.join("m.jsonl")), 0o640);
    assert_eq!(mode(&d.join("db.pirsnap")), 0o640);
    // The standard forms: OpenSSL reads both files, and derives the same public key.
    if let Ok(o) = Command::new("openssl")
        .args(["pkey", "-in", "issuer.key", "-pubout"])
        .current_dir(d)
        .output()
    {
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        let derived = String::from_utf8(o.stdout).unwrap();
        let public = fs::read_to_string(d.join("issuer.pub")).unwrap();
        assert!(public.ends_with(&derived), "{derived} vs {public}");
    }
}

#[test]
fn force_writes_a_fresh_owner_only_file_and_never_through_a_symlink() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    for (keygen, label) in [
        ("issuer-keygen", "PRIVATE KEY"),
        ("dp-keygen", "PRIVATE KEY"),
        ("oprf-keygen", "OPRF SECRET KEY"),
    ] {
        // Over a world-writable file: the new secret is 0600, not the old file's 0666.
        fs::write(d.join("open.key"), "old").unwrap();
        chmod(&d.join("open.key"), 0o666);
        ok(d, &[keygen, "--out", "open.key", "--force"]);
        assert_eq!(mode(&d.join("open.key")), 0o600, "{keygen}");
        assert!(
            fs::read_to_string(d.join("open.key"))
                .unwrap()
                .contains(label),
            "{keygen}"
        );

        // Onto a symlink: the link is replaced by the key; its target is left alone.
        fs::write(d.join("target"), "precious").unwrap();
        chmod(&d.join("target"), 0o644);
        let _ = fs::remove_file(d.join("link.key"));
        symlink(d.join("target"), d.join("link.key")).unwrap();
        let stderr = fails(d, &[keygen, "--out", "link.key"]);
        assert!(
            stderr.contains("link.key already exists: pass --force"),
            "{stderr}"
        );
        ok(d, &[keygen, "--out", "link.key", "--force"]);
        assert_eq!(fs::read_to_string(d.join("target")).unwrap(), "precious");
        assert_eq!(mode(&d.join("target")), 0o644);
        assert!(fs::symlink_metadata(d.join("link.key")).unwrap().is_file());
        assert_eq!(mode(&d.join("link.key")), 0o600);

        // A dangling symlink is not created through either.
        let _ = fs::remove_file(d.join("dangling.key"));
        symlink(d.join("nowhere"), d.join("dangling.key")).unwrap();
        fails(d, &[keygen, "--out", "dangling.key"]);
        assert!(!d.join("nowhere").exists(), "{keygen}");
    }
    // No temporary file is left behind.
    let names: Vec<_> = fs::read_dir(d)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.ends_with(".tmp"))
        .collect();
    assert!(names.is_empty(), "{names:?}");
}

#[test]
fn secrets_that_others_may_read_are_refused_with_the_remedy() {
    let dir = setup();
    let d = dir.path();
    let hint = |file: &str, m: u32| {
        format!(
            "a secret file that group or others may access (mode 0{m:o}) is refused: run chmod \
             600 {file}\n"
        )
    };
    for m in [0o644, 0o640] {
        chmod(&d.join("issuer.key"), m);
        let stderr = fails(d, &common::synth_args("1", "issuer.key", "x.jsonl"));
        assert_eq!(
            stderr,
            format!("error: --issuer-key issuer.key: {}", hint("issuer.key", m))
        );
        chmod(&d.join("issuer.key"), 0o600);

        chmod(&d.join("dp.key"), m);
        let stderr = fails(d, &build(&["--dp-key", "dp.key"]));
        assert_eq!(
            stderr,
            format!("error: --dp-key dp.key: {}", hint("dp.key", m))
        );
        chmod(&d.join("dp.key"), 0o600);

        // The OPRF key: refused by build, and by serve at start (issue 12).
        chmod(&d.join("oprf.key"), m);
        let refused = format!("error: --oprf-key oprf.key: {}", hint("oprf.key", m));
        assert_eq!(fails(d, &build(&[])), refused);
        let stderr = fails(d, &serve_with("--oprf-key", "oprf.key"));
        assert!(stderr.ends_with(&refused), "{stderr}");
        chmod(&d.join("oprf.key"), 0o600);
    }

    // The server's secrets: the TLS private key and the admin token.
    ok(d, &common::SELFSIGNED_ARGS);
    fs::write(d.join("token"), "0123456789abcdef0123\n").unwrap();
    chmod(&d.join("token"), 0o600);
    let serve = [
        "serve",
        "--snapshot",
        "db.pirsnap",
        "--listen",
        "127.0.0.1:0",
        "--tls-cert",
        "c.pem",
        "--tls-key",
        "k.pem",
        "--admin-listen",
        "127.0.0.1:0",
        "--admin-token-file",
        "token",
    ];
    chmod(&d.join("k.pem"), 0o644);
    let stderr = fails(d, &serve);
    assert!(
        stderr.ends_with(&format!("error: --tls-key k.pem: {}", hint("k.pem", 0o644))),
        "{stderr}"
    );
    chmod(&d.join("k.pem"), 0o600);
    chmod(&d.join("token"), 0o604);
    let stderr = fails(d, &serve);
    assert!(
        stderr.ends_with(&format!(
            "error: --admin-token-file token: {}",
            hint("token", 0o604)
        )),
        "{stderr}"
    );
}

#[test]
fn each_flag_refuses_the_other_kind_of_key_file_by_name() {
    let dir = setup();
    let d = dir.path();
    let public_for_secret = |flag: &str, file: &str, keygen: &str| {
        format!(
            "error: {flag} {file}: line 2: this is a public key (SPKI PEM); give the secret key \
             file written by {keygen}\n"
        )
    };
    let secret_for_public = |flag: &str, file: &str, keygen: &str| {
        format!(
            "error: {flag} {file}: line 2: this is a secret key (PKCS#8 PEM), which must never \
             be handed out; give the public key file (.pub) that {keygen} wrote beside it\n"
        )
    };
    let synth = common::synth_args("1", "issuer.key", "x.jsonl");
    assert_eq!(
        fails(d, &with(&synth, "--issuer-key", "issuer.pub")),
        public_for_secret("--issuer-key", "issuer.pub", "pir-server issuer-keygen")
    );
    assert!(
        !d.join("x.jsonl").exists(),
        "nothing signed with a public key"
    );
    let signed = build(&["--dp-key", "dp.key"]);
    assert_eq!(
        fails(d, &with(&signed, "--dp-key", "dp.pub")),
        public_for_secret("--dp-key", "dp.pub", "pir-server dp-keygen")
    );
    assert_eq!(
        fails(d, &with(&signed, "--trust", "issuer.key")),
        secret_for_public("--trust", "issuer.key", "pir-server issuer-keygen")
    );
    let update = [
        "update",
        "--snapshot",
        "db.pirsnap",
        "--delta",
        "m.jsonl",
        "--trust",
        "issuer.pub",
        "--oprf-key",
        common::OPRF_KEY_FILE,
        "--out",
        "new.pirsnap",
        "--full",
        "--dp-pub",
        "dp.pub",
        "--dp-key",
        "dp.key",
    ];
    assert_eq!(
        fails(d, &with(&update, "--trust", "issuer.key")),
        secret_for_public("--trust", "issuer.key", "pir-server issuer-keygen")
    );
    assert_eq!(
        fails(d, &with(&update, "--dp-pub", "dp.key")),
        secret_for_public("--dp-pub", "dp.key", "pir-server dp-keygen")
    );
    assert_eq!(
        fails(d, &with(&update, "--dp-key", "dp.pub")),
        public_for_secret("--dp-key", "dp.pub", "pir-server dp-keygen")
    );
    assert_eq!(
        fails(d, &["verify", "db.pirsnap", "--dp-pub", "dp.key"]),
        secret_for_public("--dp-pub", "dp.key", "pir-server dp-keygen")
    );
    let stderr = fails(d, &serve_with("--dp-pub", "dp.key"));
    assert!(
        stderr.ends_with(&secret_for_public(
            "--dp-pub",
            "dp.key",
            "pir-server dp-keygen"
        )),
        "{stderr}"
    );
    // The OPRF key flag takes neither a signing key nor a public key.
    for file in ["dp.key", "issuer.pub"] {
        let stderr = fails(d, &with(&build(&[]), "--oprf-key", file));
        assert!(
            stderr.starts_with(&format!(
                "error: --oprf-key {file}: not an OPRF secret key file"
            )) && stderr.contains("`pir-server oprf-keygen`"),
            "{stderr}"
        );
    }
    // The right files still work.
    ok(d, &["verify", "db.pirsnap", "--dp-pub", "dp.pub"]);
}

#[test]
fn old_one_line_key_files_are_refused_with_the_way_out() {
    let dir = setup();
    let d = dir.path();
    // The earlier form: a base64url seed (secret) or public key (trust file) on a line.
    fs::write(
        d.join("old.key"),
        "AwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwM\n",
    )
    .unwrap();
    chmod(&d.join("old.key"), 0o600);
    fs::write(
        d.join("old.pub"),
        "# pir-discovery issuer key 8nbv3nJMd6w\nirLpY2VCF6Qb9iAoQ9uGCZvHrPtNFlLdrFI6fPf-eX0\n",
    )
    .unwrap();
    let stderr = fails(d, &common::synth_args("1", "old.key", "x.jsonl"));
    assert!(
        stderr.starts_with(
            "error: --issuer-key old.key: line 1: this is a key file of the old one-line form"
        ),
        "{stderr}"
    );
    assert!(
        stderr.contains("`pir-server issuer-keygen --out FILE`"),
        "{stderr}"
    );
    let stderr = fails(d, &with(&build(&[]), "--trust", "old.pub"));
    assert!(
        stderr.starts_with(
            "error: --trust old.pub: line 2: this is a key file of the old one-line form"
        ),
        "{stderr}"
    );
}

#[test]
fn a_non_canonical_issuer_key_is_refused() {
    let dir = setup();
    let d = dir.path();
    // SPKI around 8P_______________________________________38: y = p + 3, which an unchecked
    // decoder silently reduces to 3.
    let spki = "MCowBQYDK2VwAyEA8P///////////////////////////////////////38=";
    let mut trust = fs::read_to_string(d.join("issuer.pub")).unwrap();
    trust.push_str(&format!(
        "-----BEGIN PUBLIC KEY-----\n{spki}\n-----END PUBLIC KEY-----\n"
    ));
    fs::write(d.join("bad.pub"), &trust).unwrap();
    let stderr = fails(d, &with(&build(&[]), "--trust", "bad.pub"));
    assert_eq!(
        stderr,
        "error: --trust bad.pub: line 5: non-canonical Ed25519 public key encoding (RFC 8032 \
         section 5.1.3 refuses it)\n"
    );
    fs::write(d.join("bad-dp.pub"), &trust).unwrap();
    let stderr = fails(d, &["verify", "db.pirsnap", "--dp-pub", "bad-dp.pub"]);
    assert!(
        stderr.contains("non-canonical Ed25519 public key"),
        "{stderr}"
    );
}

/// `serve` of `db.pirsnap` on a free loopback port, with `flag file`: what the start-up
/// checks of a key file are run with.
fn serve_with<'a>(flag: &'a str, file: &'a str) -> [&'a str; 7] {
    [
        "serve",
        "--snapshot",
        "db.pirsnap",
        "--listen",
        "127.0.0.1:0",
        flag,
        file,
    ]
}
