//! `pir-server tls-selfsigned`: a TLS identity for test deployments, made with rcgen. Either a
//! self-signed leaf (clients trust the certificate itself), or a fresh CA and a leaf it issues
//! (clients trust the CA; the CA's key is not kept, so it can issue nothing else).
//!
//! The leaf is what TLS clients accept from a server, unlike a plain `openssl req -x509`
//! certificate: CA:FALSE, extendedKeyUsage serverAuth, the names as subjectAltName.

use std::{
    io::Write,
    net::IpAddr,
    path::{Path, PathBuf},
};

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose, SanType,
};

/// What to make.
#[derive(Clone, Debug)]
pub struct SelfSignedRequest {
    /// DNS names and IP addresses the certificate is valid for (at least one).
    pub hosts: Vec<String>,
    /// Days from now until it expires.
    pub days: u32,
    /// Also make a CA that issues the leaf, and write its certificate here.
    pub ca_out: Option<PathBuf>,
    /// Where the leaf certificate goes (PEM).
    pub cert_out: PathBuf,
    /// Where the leaf's private key goes (PEM, owner-only).
    pub key_out: PathBuf,
    /// Overwrite existing files.
    pub force: bool,
}

/// Why no identity was made.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SelfSignedError {
    /// No `--host`.
    #[error("give at least one --host (a DNS name or an IP address clients connect to)")]
    NoHosts,
    /// A host that is neither an IP address nor a DNS name.
    #[error("--host {0:?} is neither an IP address nor a valid DNS name")]
    BadHost(String),
    /// An output file exists and `--force` was not given.
    #[error("{flag} {}: the file exists; give --force to overwrite it", path.display())]
    Exists {
        /// The flag that named it.
        flag: &'static str,
        /// The file.
        path: PathBuf,
    },
    /// Writing a file failed.
    #[error("{flag} {}: {source}", path.display())]
    Write {
        /// The flag that named it.
        flag: &'static str,
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// rcgen failed (a bug here, or an unusable parameter).
    #[error("making the certificate failed: {0}")]
    Generate(#[from] rcgen::Error),
}

/// What was written, for the command to report.
#[derive(Clone, Debug)]
pub struct SelfSigned {
    /// The file clients should trust: the CA's certificate, or the leaf itself.
    pub trust: PathBuf,
    /// The hosts the leaf is valid for.
    pub hosts: Vec<String>,
}

impl std::fmt::Display for SelfSigned {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "certificate for {} written; clients trust {} (e.g. pir-client --ca {})",
            self.hosts.join(", "),
            self.trust.display(),
            self.trust.display()
        )
    }
}

/// Makes the identity `request` asks for and writes its files.
pub fn tls_selfsigned(request: &SelfSignedRequest) -> Result<SelfSigned, SelfSignedError> {
    if request.hosts.is_empty() {
        return Err(SelfSignedError::NoHosts);
    }
    let mut outputs = vec![
        ("--cert-out", &request.cert_out),
        ("--key-out", &request.key_out),
    ];
    if let Some(ca) = &request.ca_out {
        outputs.push(("--ca-out", ca));
    }
    if !request.force
        && let Some((flag, path)) = outputs.iter().find(|(_, p)| p.exists())
    {
        return Err(SelfSignedError::Exists {
            flag,
            path: path.to_path_buf(),
        });
    }

    let now = time::OffsetDateTime::now_utc();
    let window = |params: &mut CertificateParams| {
        // An hour back, for clocks a little behind this one.
        params.not_before = now - time::Duration::hours(1);
        params.not_after = now + time::Duration::days(i64::from(request.days.max(1)));
    };
    let mut leaf = CertificateParams::default();
    for host in &request.hosts {
        // The names a client may connect with, as rustls itself checks them.
        if rustls::pki_types::ServerName::try_from(host.as_str()).is_err() {
            return Err(SelfSignedError::BadHost(host.clone()));
        }
        leaf.subject_alt_names.push(match host.parse::<IpAddr>() {
            Ok(ip) => SanType::IpAddress(ip),
            Err(_) => SanType::DnsName(
                host.clone()
                    .try_into()
                    .map_err(|_| SelfSignedError::BadHost(host.clone()))?,
            ),
        });
    }
    leaf.distinguished_name = rcgen::DistinguishedName::new();
    leaf.distinguished_name
        .push(DnType::CommonName, request.hosts[0].as_str());
    leaf.is_ca = IsCa::ExplicitNoCa;
    leaf.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    leaf.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    leaf.use_authority_key_identifier_extension = request.ca_out.is_some();
    window(&mut leaf);
    let leaf_key = KeyPair::generate()?;

    let (leaf_pem, ca_pem) = match &request.ca_out {
        Some(_) => {
            let mut ca = CertificateParams::default();
            ca.distinguished_name = rcgen::DistinguishedName::new();
            ca.distinguished_name
                .push(DnType::CommonName, "pir-server tls-selfsigned test CA");
            ca.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
            ca.key_usages = vec![
                KeyUsagePurpose::KeyCertSign,
                KeyUsagePurpose::CrlSign,
                KeyUsagePurpose::DigitalSignature,
            ];
            window(&mut ca);
            let ca = CertifiedIssuer::self_signed(ca, KeyPair::generate()?)?;
            (leaf.signed_by(&leaf_key, &ca)?.pem(), Some(ca.pem()))
        }
        None => (leaf.self_signed(&leaf_key)?.pem(), None),
    };

    write(
        &request.key_out,
        "--key-out",
        0o600,
        &leaf_key.serialize_pem(),
    )?;
    write(&request.cert_out, "--cert-out", 0o644, &leaf_pem)?;
    if let (Some(path), Some(pem)) = (&request.ca_out, ca_pem) {
        write(path, "--ca-out", 0o644, &pem)?;
    }
    Ok(SelfSigned {
        trust: request
            .ca_out
            .clone()
            .unwrap_or_else(|| request.cert_out.clone()),
        hosts: request.hosts.clone(),
    })
}

fn write(path: &Path, flag: &'static str, mode: u32, text: &str) -> Result<(), SelfSignedError> {
    let error = |path: &Path, source| SelfSignedError::Write {
        flag,
        path: path.to_path_buf(),
        source,
    };
    pir_core::fs::write_atomic(path, mode, error, |w| {
        w.write_all(text.as_bytes()).map_err(|e| error(path, e))
    })
}
