//! TLS identities: each kind of bad certificate or key is refused at start with a sentence that
//! names the flag and the file; `tls-selfsigned` makes identities a client accepts.

mod common;

use std::{
    net::SocketAddr,
    os::unix::fs::PermissionsExt,
    path::{Path, PathBuf},
    time::Duration,
};

use pir_client::{ClientOptions, PirClient};
use pir_core::{Cpi, testing::trust};
use pir_server::{
    CertProblem, SelfSignedError, SelfSignedRequest, ServeOptions, TlsError, TlsIdentity,
    process::{Process, ProcessError, ServeConfig, Signals, TlsFiles},
    tls_selfsigned,
};
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, ExtendedKeyUsagePurpose, IsCa, KeyPair,
};

struct Dir(tempfile::TempDir);

impl Dir {
    fn new() -> Self {
        Self(tempfile::tempdir().unwrap())
    }

    /// Writes a file owner-only (a private key must be, to be read).
    fn file(&self, name: &str, text: &str) -> PathBuf {
        let path = self.0.path().join(name);
        pir_core::testing::write_secret(&path, text);
        path
    }
}

fn leaf_params() -> CertificateParams {
    let mut params = CertificateParams::new(vec!["localhost".to_string()]).unwrap();
    params.is_ca = IsCa::ExplicitNoCa;
    params
}

fn ca() -> CertifiedIssuer<'static, KeyPair> {
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap()
}

/// The refusal of `cert` and `key` (PEM texts).
fn refusal(cert: &str, key: &str) -> (TlsError, PathBuf, PathBuf) {
    let dir = Dir::new();
    let (c, k) = (dir.file("cert.pem", cert), dir.file("key.pem", key));
    let err = TlsIdentity::from_files(&c, &k).expect_err("refused");
    // The paths live in a directory dropped here; only their text is compared.
    (err, c, k)
}

#[test]
fn pem_mistakes_name_the_flag_and_the_file() {
    let key = KeyPair::generate().unwrap();
    let cert = leaf_params().self_signed(&key).unwrap();
    let (cert, key) = (cert.pem(), key.serialize_pem());

    let (err, c, _) = refusal("this is not a certificate\n", &key);
    assert!(
        matches!(
            err,
            TlsError::NoCertificate {
                holds_key: false,
                ..
            }
        ),
        "{err:?}"
    );
    assert_eq!(
        err.to_string(),
        format!(
            "--tls-cert {}: no PEM certificate found (expected -----BEGIN CERTIFICATE-----)",
            c.display()
        )
    );

    let (err, c, _) = refusal(&key, &cert);
    assert!(
        matches!(
            err,
            TlsError::NoCertificate {
                holds_key: true,
                ..
            }
        ),
        "{err:?}"
    );
    assert!(
        err.to_string()
            .starts_with(&format!("--tls-cert {}: ", c.display()))
            && err
                .to_string()
                .ends_with("are --tls-cert and --tls-key swapped?"),
        "{err}"
    );

    let (err, _, k) = refusal(&cert, "garbage\n");
    assert!(
        matches!(
            err,
            TlsError::NoKey {
                holds_certificate: false,
                ..
            }
        ),
        "{err:?}"
    );
    assert!(
        err.to_string().starts_with(&format!(
            "--tls-key {}: no PEM private key found (expected -----BEGIN PRIVATE KEY-----",
            k.display()
        )),
        "{err}"
    );

    let (err, _, _) = refusal(&cert, &cert);
    assert!(
        matches!(
            err,
            TlsError::NoKey {
                holds_certificate: true,
                ..
            }
        ),
        "{err:?}"
    );

    let truncated = &cert[..cert.len() / 2];
    let (err, _, _) = refusal(truncated, &key);
    assert!(
        matches!(
            err,
            TlsError::Pem {
                flag: "--tls-cert",
                ..
            }
        ),
        "{err:?}"
    );
    assert!(
        err.to_string().contains("no matching -----END line"),
        "{err}"
    );

    let other = KeyPair::generate().unwrap().serialize_pem();
    let (err, c, k) = refusal(&cert, &other);
    assert!(matches!(err, TlsError::KeyMismatch { .. }), "{err:?}");
    assert_eq!(
        err.to_string(),
        format!(
            "--tls-key {} is not the private key of the certificate in --tls-cert {} (their \
             public keys differ); give the key the certificate was issued for",
            k.display(),
            c.display()
        )
    );

    let dir = Dir::new();
    let missing = dir.0.path().join("missing.pem");
    let err = TlsIdentity::from_files(&missing, &dir.file("key.pem", &key))
        .err()
        .unwrap();
    assert!(
        matches!(
            err,
            TlsError::Read {
                flag: "--tls-cert",
                ..
            }
        ),
        "{err:?}"
    );
}

#[test]
fn certificates_clients_would_refuse_are_refused_with_a_reason() {
    // What `openssl req -x509` makes: a CA certificate, served as the server's own.
    let ca_key = KeyPair::generate().unwrap();
    let mut params = leaf_params();
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca_cert = params.self_signed(&ca_key).unwrap();
    let (err, c, _) = refusal(&ca_cert.pem(), &ca_key.serialize_pem());
    assert!(
        matches!(&err, TlsError::Certificate { problem: CertProblem::CaUsedAsEndEntity, path } if *path == c),
        "{err:?}"
    );
    let text = err.to_string();
    assert!(
        text.starts_with(&format!(
            "--tls-cert {}: the first certificate is a CA certificate",
            c.display()
        )) && text.contains("pir-server tls-selfsigned")
            && !text.contains("CaUsedAsEndEntity"),
        "{text}"
    );

    let key = KeyPair::generate().unwrap();
    let mut params = leaf_params();
    params.not_before = rcgen::date_time_ymd(2000, 1, 1);
    params.not_after = rcgen::date_time_ymd(2001, 1, 1);
    let expired = params.self_signed(&key).unwrap();
    let (err, _, _) = refusal(&expired.pem(), &key.serialize_pem());
    assert!(
        matches!(
            &err,
            TlsError::Certificate {
                problem: CertProblem::Expired { .. },
                ..
            }
        ),
        "{err:?}"
    );
    assert!(
        err.to_string()
            .ends_with("the certificate expired at 2001-01-01T00:00:00Z; renew it"),
        "{err}"
    );

    let mut params = leaf_params();
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    let client_only = params.self_signed(&key).unwrap();
    let (err, _, _) = refusal(&client_only.pem(), &key.serialize_pem());
    assert!(
        matches!(
            &err,
            TlsError::Certificate {
                problem: CertProblem::NotForServers,
                ..
            }
        ),
        "{err:?}"
    );

    // A leaf followed by a certificate that did not issue it: another name, or the same name
    // and another key.
    let issuer = ca();
    let leaf = leaf_params().signed_by(&key, &issuer).unwrap();
    let mut other_name = CertificateParams::new(Vec::<String>::new()).unwrap();
    other_name.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    other_name
        .distinguished_name
        .push(rcgen::DnType::CommonName, "another CA");
    let other_name =
        CertifiedIssuer::self_signed(other_name, KeyPair::generate().unwrap()).unwrap();
    for (unrelated, problem) in [
        (other_name.pem(), "ChainOutOfOrder"),
        (ca().pem(), "BadSignature"),
    ] {
        let (err, _, _) = refusal(&format!("{}{unrelated}", leaf.pem()), &key.serialize_pem());
        let TlsError::Certificate { problem: got, .. } = &err else {
            panic!("{err:?}");
        };
        assert_eq!(format!("{got:?}"), problem, "{err}");
        assert!(err.to_string().contains("list the leaf first"), "{err}");
    }

    // Accepted: the leaf alone (its CA is the clients' business), or followed by its CA.
    let dir = Dir::new();
    let k = dir.file("key.pem", &key.serialize_pem());
    for chain in [leaf.pem(), format!("{}{}", leaf.pem(), issuer.pem())] {
        let c = dir.file("cert.pem", &chain);
        let identity = TlsIdentity::from_files(&c, &k).unwrap();
        assert!(identity.not_after().is_some());
    }
}

#[test]
fn the_process_refuses_a_bad_identity_before_binding() {
    let dir = Dir::new();
    let snapshot = dir.0.path().join("db.pirsnap");
    common::bob_snapshot(&pir_core::testing::issuer(), 1, 1)
        .write(&snapshot)
        .unwrap();
    // A port in use: the TLS refusal comes first, since nothing is bound before it.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let err = Process::prepare(ServeConfig {
        tls: Some(TlsFiles {
            cert: dir.file("cert.pem", "garbage"),
            key: dir.file("key.pem", "garbage"),
        }),
        ..config(snapshot, taken.local_addr().unwrap())
    })
    .err()
    .unwrap();
    assert!(
        matches!(err, ProcessError::Tls(TlsError::NoCertificate { .. })),
        "{err:?}"
    );
}

/// Serves `snapshot` on `listen`, answering evaluations with the fixture OPRF key (written
/// beside the snapshot).
fn config(snapshot: PathBuf, listen: SocketAddr) -> ServeConfig {
    let oprf_key = snapshot.with_file_name(common::OPRF_KEY_FILE);
    common::write_oprf_key(&oprf_key);
    ServeConfig {
        snapshot,
        shards: None,
        listen,
        options: ServeOptions::default(),
        dp_pub: None,
        oprf_key: Some(oprf_key),
        admin_listen: "127.0.0.1:0".parse().unwrap(),
        admin_token_file: None,
        metrics_listen: None,
        tls: None,
        plaintext: false,
        pid_file: None,
        shutdown_delay: Duration::ZERO,
    }
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

/// Serves over TLS with `cert` and `key` and looks Bob up through a client trusting `trust`.
async fn serve_and_look_up(dir: &Path, cert: &Path, key: &Path, trust_file: &Path) {
    let snapshot = dir.join("db.pirsnap");
    common::bob_snapshot(&pir_core::testing::issuer(), 1, 1)
        .write(&snapshot)
        .unwrap();
    let listening = Process::prepare(ServeConfig {
        tls: Some(TlsFiles {
            cert: cert.to_path_buf(),
            key: key.to_path_buf(),
        }),
        ..config(snapshot, "127.0.0.1:0".parse().unwrap())
    })
    .unwrap()
    .bind()
    .await
    .unwrap();
    let url = format!("https://localhost:{}", listening.addr().port());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let (_reload, reloads) = tokio::sync::mpsc::channel(1);
    let process = tokio::spawn(listening.run(Signals::new(
        async {
            let _ = stopped.await;
        },
        reloads,
    )));
    let options = ClientOptions {
        tls_ca: Some(trust_file.to_path_buf()),
        ..ClientOptions::new(trust()).allowing_custom_params()
    };
    let mut client = None;
    for _ in 0..200 {
        if let Ok(c) = PirClient::connect(&url, options.clone()).await {
            client = Some(c);
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    let outcome = client
        .expect("the client connects over TLS")
        .lookup(&Cpi::parse("mailto:bob@example.org").unwrap())
        .await
        .unwrap();
    assert_eq!(outcome.result.mappings[0].fields.msp, "chat.example");
    stop.send(()).unwrap();
    common::stopped(process).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_selfsigned_identities_serve_clients() {
    let dir = Dir::new();
    let path = |name: &str| dir.0.path().join(name);

    // A self-signed leaf: clients trust the certificate itself.
    let request = SelfSignedRequest {
        hosts: vec!["localhost".into(), "127.0.0.1".into()],
        days: 30,
        ca_out: None,
        cert_out: path("leaf.pem"),
        key_out: path("leaf.key"),
        force: false,
    };
    let made = tls_selfsigned(&request).unwrap();
    assert_eq!(made.trust, path("leaf.pem"));
    assert_eq!(mode(&path("leaf.key")), 0o600, "the key is owner-only");
    let err = tls_selfsigned(&request).err().unwrap();
    assert!(
        matches!(
            &err,
            SelfSignedError::Exists {
                flag: "--cert-out",
                ..
            }
        ),
        "{err:?}"
    );
    assert!(
        err.to_string().ends_with("give --force to overwrite it"),
        "{err}"
    );
    tls_selfsigned(&SelfSignedRequest {
        force: true,
        ..request.clone()
    })
    .unwrap();
    serve_and_look_up(
        dir.0.path(),
        &path("leaf.pem"),
        &path("leaf.key"),
        &made.trust,
    )
    .await;

    // A CA and a leaf it issues: clients trust the CA.
    let made = tls_selfsigned(&SelfSignedRequest {
        ca_out: Some(path("ca.pem")),
        cert_out: path("issued.pem"),
        key_out: path("issued.key"),
        ..request
    })
    .unwrap();
    assert_eq!(made.trust, path("ca.pem"));
    serve_and_look_up(
        dir.0.path(),
        &path("issued.pem"),
        &path("issued.key"),
        &path("ca.pem"),
    )
    .await;

    let err = tls_selfsigned(&SelfSignedRequest {
        hosts: vec!["not a host name!".into()],
        days: 1,
        ca_out: None,
        cert_out: path("x.pem"),
        key_out: path("x.key"),
        force: false,
    })
    .err()
    .unwrap();
    assert!(matches!(err, SelfSignedError::BadHost(_)), "{err:?}");
}
