//! `pir-client msp-keygen`, `user-keygen` and `enroll`, where no ID prover is needed: key files
//! and their modes, and the refusals that come before anything is sent (a public key given as a
//! secret one, a key others may read, plaintext to a network address, a damaged enrollment
//! file), each naming its flag. The enrollments themselves are tested against a real prover in
//! pir-issuer's tests.

use std::{
    fs,
    os::unix::fs::PermissionsExt,
    path::Path,
    process::{Command, Output},
};

fn pir_client(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_pir-client"))
        .args(args)
        .current_dir(dir)
        .env_remove("RUST_LOG")
        .output()
        .unwrap()
}

fn mode(path: &Path) -> u32 {
    fs::metadata(path).unwrap().permissions().mode() & 0o777
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8(bytes.to_vec()).unwrap()
}

/// `msp-keygen` in a fresh directory: its key files.
fn msp_key(dir: &Path) {
    let out = pir_client(dir, &["msp-keygen", "--out", "msp.key"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
}

#[test]
fn keygen_writes_an_owner_only_secret_and_a_public_key_beside_it() {
    let dir = tempfile::tempdir().unwrap();
    let out = pir_client(dir.path(), &["msp-keygen", "--out", "msp.key"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert!(
        stdout.contains("msp.pub")
            && stdout.contains("<msp-domain>.pub")
            && stdout.contains("--msp-keys"),
        "{stdout}"
    );
    let (secret, public) = (dir.path().join("msp.key"), dir.path().join("msp.pub"));
    assert_eq!(mode(&secret), 0o600);
    assert_eq!(mode(&public), 0o644);
    let secret_text = fs::read_to_string(&secret).unwrap();
    assert!(secret_text.contains("MSP secret key"), "{secret_text}");
    let key = pir_core::identity::MspKey::from_file(&secret).unwrap();
    assert_eq!(
        pir_core::identity::MspKey::read_public(&public).unwrap(),
        key.verifying_key()
    );

    // Not over an existing key without --force; with it, a new key.
    let again = pir_client(dir.path(), &["msp-keygen", "--out", "msp.key"]);
    assert_eq!(again.status.code(), Some(1));
    assert_eq!(
        text(&again.stderr),
        "error: --out msp.key: already exists: pass --force to overwrite it (the key in it is \
         then lost)\n"
    );
    let forced = pir_client(dir.path(), &["msp-keygen", "--out", "msp.key", "--force"]);
    assert!(forced.status.success(), "{}", text(&forced.stderr));
    assert_ne!(
        pir_core::identity::MspKey::from_file(&secret).unwrap().id(),
        key.id()
    );

    let out = pir_client(dir.path(), &["user-keygen", "--out", "user.key"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(mode(&dir.path().join("user.key")), 0o600);
    assert_eq!(mode(&dir.path().join("user.pub")), 0o644);
    pir_core::identity::UserKey::from_file(&dir.path().join("user.key")).unwrap();

    // The secret must not take the public key's name, nor go where there is no directory.
    let out = pir_client(dir.path(), &["user-keygen", "--out", "user.pub", "--force"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).starts_with("error: --out user.pub: "),
        "{}",
        text(&out.stderr)
    );
    let out = pir_client(dir.path(), &["msp-keygen", "--out", "nowhere/msp.key"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("the directory nowhere does not exist"),
        "{}",
        text(&out.stderr)
    );
}

/// `enroll start` at a port nothing listens on, with these extra flags: the keys and the
/// address are checked first, so their errors are the ones reported.
fn start(dir: &Path, issuer: &str, msp_key: &str, extra: &[&str]) -> String {
    let mut args = vec![
        "enroll",
        "start",
        "--issuer",
        issuer,
        "--msp",
        "chat.example",
        "--msp-key",
        msp_key,
        "--cpi",
        "tel:+14155550100",
        "--save",
        "enrollment.json",
    ];
    args.extend(extra);
    let out = pir_client(dir, &args);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stdout));
    assert!(!dir.join("enrollment.json").exists());
    text(&out.stderr)
}

#[test]
fn a_public_key_given_as_msp_key_is_refused_by_its_flag() {
    let dir = tempfile::tempdir().unwrap();
    msp_key(dir.path());
    assert_eq!(
        start(dir.path(), "http://127.0.0.1:9", "msp.pub", &[]),
        "error: --msp-key msp.pub: line 2: this is a public key (SPKI PEM); give the secret key \
         file written by pir-client msp-keygen\n"
    );
    let out = pir_client(dir.path(), &["user-keygen", "--out", "user.key"]);
    assert!(out.status.success());
    let stderr = start(
        dir.path(),
        "http://127.0.0.1:9",
        "msp.key",
        &["--user-key", "user.pub"],
    );
    assert!(
        stderr.starts_with("error: --user-key user.pub: line 2: this is a public key"),
        "{stderr}"
    );
}

#[test]
fn a_secret_key_others_may_read_is_refused_with_the_remedy() {
    let dir = tempfile::tempdir().unwrap();
    msp_key(dir.path());
    let path = dir.path().join("msp.key");
    fs::set_permissions(&path, fs::Permissions::from_mode(0o640)).unwrap();
    let stderr = start(dir.path(), "http://127.0.0.1:9", "msp.key", &[]);
    assert!(stderr.starts_with("error: --msp-key msp.key: "), "{stderr}");
    assert!(stderr.contains("chmod 600 msp.key"), "{stderr}");
}

#[test]
fn plaintext_to_a_network_address_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    msp_key(dir.path());
    for issuer in ["http://10.0.0.1:50061", "http://prover.example:50061"] {
        let stderr = start(dir.path(), issuer, "msp.key", &[]);
        assert!(
            stderr.starts_with(&format!(
                "error: {issuer}: plaintext http:// is only used to a loopback address"
            )),
            "{stderr}"
        );
        assert!(stderr.contains("--insecure-plaintext"), "{stderr}");
    }
    let stderr = start(dir.path(), "ftp://prover.example:1", "msp.key", &[]);
    assert!(
        stderr.starts_with("error: invalid ID prover address"),
        "{stderr}"
    );
    // The same checks guard revoke.
    let out = pir_client(
        dir.path(),
        &[
            "enroll",
            "revoke",
            "--issuer",
            "http://10.0.0.1:50061",
            "--msp",
            "chat.example",
            "--msp-key",
            "msp.key",
            "--cpi",
            "tel:+14155550100",
        ],
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("--insecure-plaintext"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn a_bad_request_or_save_path_is_refused_before_anything_is_sent() {
    let dir = tempfile::tempdir().unwrap();
    msp_key(dir.path());
    // No prover listens at port 9: these must fail before connecting.
    let out = pir_client(
        dir.path(),
        &[
            "enroll",
            "start",
            "--issuer",
            "http://127.0.0.1:9",
            "--msp",
            "chat.example",
            "--msp-key",
            "msp.key",
            "--cpi",
            "tel:+14155550100",
            "--save",
            "nowhere/e.json",
        ],
    );
    assert_eq!(out.status.code(), Some(1));
    let stderr = text(&out.stderr);
    assert!(
        stderr.starts_with("error: --save nowhere/e.json: the directory nowhere"),
        "{stderr}"
    );
    let out = pir_client(
        dir.path(),
        &[
            "enroll",
            "start",
            "--issuer",
            "http://127.0.0.1:9",
            "--msp",
            "chat.example",
            "--msp-key",
            "msp.key",
            "--cpi",
            "4155550100",
            "--save",
            "e.json",
        ],
    );
    assert_eq!(
        out.status.code(),
        Some(2),
        "a CPI that does not parse is a usage error"
    );
    assert!(
        text(&out.stderr).contains("invalid CPI"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn a_damaged_enrollment_file_is_refused_by_its_flag() {
    let dir = tempfile::tempdir().unwrap();
    msp_key(dir.path());
    fs::write(dir.path().join("enrollment.json"), "{\"version\":1}").unwrap();
    let complete = |file: &str| {
        pir_client(
            dir.path(),
            &[
                "enroll",
                "complete",
                "--issuer",
                "http://127.0.0.1:9",
                "--msp",
                "chat.example",
                "--msp-key",
                "msp.key",
                "--enrollment",
                file,
                "--code",
                "123456",
            ],
        )
    };
    let out = complete("enrollment.json");
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).starts_with(
            "error: --enrollment enrollment.json: not an enrollment file written by pir-client \
             enroll start"
        ),
        "{}",
        text(&out.stderr)
    );
    let out = complete("missing.json");
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).starts_with("error: --enrollment missing.json: "),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn every_enroll_subcommand_documents_its_flags() {
    for sub in ["start", "complete", "run", "revoke"] {
        let out = pir_client(Path::new("."), &["enroll", sub, "--help"]);
        assert!(out.status.success());
        let help = text(&out.stdout);
        for flag in [
            "--issuer",
            "--ca",
            "--insecure-plaintext",
            "--timeout",
            "--msp",
            "--msp-key",
        ] {
            assert!(help.contains(flag), "{sub}: {flag}\n{help}");
        }
    }
}
