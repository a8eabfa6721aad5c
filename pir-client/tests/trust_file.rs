//! `pir-client --trust` takes public key files only: a secret key, the old one-line form or a
//! non-canonical key is refused by name before anything is sent.

use std::process::Command;

use pir_core::testing::issuer;

/// `pir-client lookup --trust FILE` against a port nothing listens on: the trust file is read
/// first, so its error is the one reported.
fn lookup_with_trust(text: &str) -> String {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("trust.file"), text).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_pir-client"))
        .args([
            "lookup",
            "--server",
            "http://127.0.0.1:9",
            "--trust",
            "trust.file",
        ])
        .arg("tel:+14155550100")
        .current_dir(dir.path())
        .env_remove("RUST_LOG")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    String::from_utf8(out.stderr).unwrap()
}

#[test]
fn trust_must_be_a_public_key_file() {
    assert_eq!(
        lookup_with_trust(&issuer().to_secret_text()),
        "error: --trust trust.file: line 2: this is a secret key (PKCS#8 PEM), which must never \
         be handed out; give the public key file (.pub) that pir-server issuer-keygen wrote \
         beside it\n"
    );
    let stderr = lookup_with_trust("AwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwM\n");
    assert!(
        stderr.starts_with(
            "error: --trust trust.file: line 1: this is a key file of the old one-line form"
        ),
        "{stderr}"
    );
    let non_canonical = "-----BEGIN PUBLIC KEY-----\n\
                         MCowBQYDK2VwAyEA8P///////////////////////////////////////38=\n\
                         -----END PUBLIC KEY-----\n";
    assert_eq!(
        lookup_with_trust(non_canonical),
        "error: --trust trust.file: line 1: non-canonical Ed25519 public key encoding (RFC 8032 \
         section 5.1.3 refuses it)\n"
    );
}
