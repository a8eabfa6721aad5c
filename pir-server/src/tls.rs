//! The server's TLS identity, checked when the process starts, before it binds or loads: the
//! PEM files parse, the key is one rustls can sign with and belongs to the certificate, and the
//! certificate is one a TLS client accepts from a server. Every refusal is a [`TlsError`] that
//! names the flag and the file and says what to do, never a TLS library's Debug output.
//!
//! ```text
//! --tls-cert ─ PEM CERTIFICATE blocks ─┬─ webpki: a server (leaf) certificate, in its validity
//!                                      │  window, its chain signed in order
//! --tls-key ── PEM private key ────────┴─ rustls: a key type it signs with, matching the leaf
//! ```

use std::{
    fmt,
    path::{Path, PathBuf},
    time::{Duration, SystemTime},
};

use crate::identity::Identity;
use rustls::pki_types::{
    CertificateDer, PrivateKeyDer, UnixTime,
    pem::{self, PemObject, SectionKind},
};

/// The TLS identity named by `--tls-cert` and `--tls-key`, checked.
#[derive(Clone)]
pub struct TlsIdentity {
    identity: Identity,
    not_after: Option<SystemTime>,
}

impl fmt::Debug for TlsIdentity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsIdentity")
            .field("not_after", &self.not_after)
            .finish_non_exhaustive()
    }
}

impl TlsIdentity {
    /// Reads and checks the certificate chain file `cert` and the private key file `key`.
    /// The key file is refused when its group or others may access it.
    pub fn from_files(cert: &Path, key: &Path) -> Result<Self, TlsError> {
        fn error(flag: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> TlsError {
            let path = path.to_path_buf();
            move |source| TlsError::Read { flag, path, source }
        }
        let cert_pem = std::fs::read(cert).map_err(error("--tls-cert", cert))?;
        let key_pem = pir_core::fs::read_secret(key).map_err(error("--tls-key", key))?;
        let files = Files { cert, key };
        let not_after = check(&cert_pem, &key_pem, &files)?;
        Ok(Self {
            identity: Identity::from_pem(cert_pem, key_pem),
            not_after,
        })
    }

    /// The identity, for tonic.
    pub fn identity(&self) -> Identity {
        self.identity.clone()
    }

    /// When the certificate expires, if that could be read.
    pub fn not_after(&self) -> Option<SystemTime> {
        self.not_after
    }
}

/// Why a TLS identity was refused; each displays as a sentence naming the flag and the file.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TlsError {
    /// A file could not be read.
    #[error("{flag} {}: {source}", path.display())]
    Read {
        /// `--tls-cert` or `--tls-key`.
        flag: &'static str,
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The certificate file holds no certificate.
    #[error(
        "--tls-cert {}: no PEM certificate found (expected -----BEGIN CERTIFICATE-----){}",
        path.display(),
        if *holds_key { "; it holds a private key: are --tls-cert and --tls-key swapped?" } else { "" }
    )]
    NoCertificate {
        /// The file.
        path: PathBuf,
        /// It holds a private key instead.
        holds_key: bool,
    },
    /// The key file holds no private key.
    #[error(
        "--tls-key {}: no PEM private key found (expected -----BEGIN PRIVATE KEY-----, or an EC or \
         RSA PRIVATE KEY block){}",
        path.display(),
        if *holds_certificate { "; it holds a certificate: are --tls-cert and --tls-key swapped?" } else { "" }
    )]
    NoKey {
        /// The file.
        path: PathBuf,
        /// It holds a certificate instead.
        holds_certificate: bool,
    },
    /// A PEM block does not decode.
    #[error("{flag} {}: not valid PEM: {problem}", path.display())]
    Pem {
        /// `--tls-cert` or `--tls-key`.
        flag: &'static str,
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        problem: PemProblem,
    },
    /// rustls cannot sign with this kind of key.
    #[error(
        "--tls-key {}: this kind of private key cannot be used for TLS here; use an ECDSA P-256 or \
         P-384, Ed25519, or RSA (2048 bits or more) key",
        path.display()
    )]
    UnsupportedKey {
        /// The file.
        path: PathBuf,
    },
    /// The key is not the certificate's.
    #[error(
        "--tls-key {} is not the private key of the certificate in --tls-cert {} (their public \
         keys differ); give the key the certificate was issued for",
        key.display(),
        cert.display()
    )]
    KeyMismatch {
        /// The certificate file.
        cert: PathBuf,
        /// The key file.
        key: PathBuf,
    },
    /// The certificate is not one a TLS client accepts from a server.
    #[error("--tls-cert {}: {problem}", path.display())]
    Certificate {
        /// The file.
        path: PathBuf,
        /// Why clients would refuse it.
        problem: CertProblem,
    },
}

/// What is wrong with a PEM file's text.
#[derive(Debug)]
#[non_exhaustive]
pub enum PemProblem {
    /// A `-----BEGIN` line without its `-----END` line.
    MissingEnd,
    /// A `-----BEGIN` line that is not well formed.
    BadBegin,
    /// The text between the lines is not base64.
    Base64,
    /// A block larger than any certificate or key.
    TooLarge,
}

impl fmt::Display for PemProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::MissingEnd => "a -----BEGIN line has no matching -----END line",
            Self::BadBegin => "a -----BEGIN line is malformed",
            Self::Base64 => "the text of a block is not valid base64",
            Self::TooLarge => "a block is far too large to be a certificate or a key",
        })
    }
}

/// Why a TLS client would refuse the certificate chain as a server's.
#[derive(Debug)]
#[non_exhaustive]
pub enum CertProblem {
    /// The first certificate is a CA certificate (what `openssl req -x509` makes by default).
    CaUsedAsEndEntity,
    /// The certificate has expired.
    Expired {
        /// Its notAfter.
        not_after: SystemTime,
    },
    /// The certificate is not valid yet.
    NotValidYet {
        /// Its notBefore.
        not_before: SystemTime,
    },
    /// Its extended key usage does not allow a TLS server.
    NotForServers,
    /// A certificate after the first is not a CA, so it cannot have issued the one before.
    IssuerNotCa,
    /// No certificate after the first issued it.
    ChainOutOfOrder,
    /// A signature in the chain does not verify.
    BadSignature,
    /// A signature algorithm clients do not accept.
    UnsupportedAlgorithm,
    /// The DER inside the PEM is not an X.509 v3 certificate.
    Malformed,
    /// Anything else webpki refuses: the reason's name.
    Other(String),
}

impl fmt::Display for CertProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::CaUsedAsEndEntity => f.write_str(
                "the first certificate is a CA certificate (basicConstraints CA:TRUE), which TLS \
                 clients refuse as a server's certificate; a plain `openssl req -x509` makes one. \
                 Serve a leaf certificate instead (CA:FALSE, extendedKeyUsage serverAuth, the \
                 server's names as subjectAltName), e.g. `pir-server tls-selfsigned --host NAME \
                 --cert-out cert.pem --key-out key.pem`, or one issued by your CA",
            ),
            Self::Expired { not_after } => write!(
                f,
                "the certificate expired at {}; renew it",
                humantime::format_rfc3339_seconds(*not_after)
            ),
            Self::NotValidYet { not_before } => write!(
                f,
                "the certificate is not valid until {}; check this machine's clock",
                humantime::format_rfc3339_seconds(*not_before)
            ),
            Self::NotForServers => f.write_str(
                "the certificate's extended key usage does not include serverAuth, so clients \
                 refuse it for a server; issue one with extendedKeyUsage serverAuth",
            ),
            Self::IssuerNotCa => f.write_str(
                "a certificate after the first is not a CA certificate, so it cannot have issued \
                 the one before it; list the leaf first, then its issuers in order",
            ),
            Self::ChainOutOfOrder => f.write_str(
                "none of the certificates after the first issued it; list the leaf first, then \
                 its issuers in order (or give the leaf alone)",
            ),
            Self::BadSignature => f.write_str(
                "a certificate's signature does not verify with its issuer's key; list the leaf \
                 first, then its issuers in order",
            ),
            Self::UnsupportedAlgorithm => f.write_str(
                "a certificate is signed with an algorithm TLS clients do not accept; use ECDSA, \
                 Ed25519, or RSA with SHA-256 or better",
            ),
            Self::Malformed => {
                f.write_str("the PEM block does not hold a well-formed X.509 v3 certificate")
            }
            Self::Other(name) => write!(
                f,
                "TLS clients would refuse this certificate chain (webpki: {name})"
            ),
        }
    }
}

impl CertProblem {
    fn from_webpki(e: &webpki::Error) -> Self {
        use webpki::Error as E;
        let time = |t: &UnixTime| SystemTime::UNIX_EPOCH + Duration::from_secs(t.as_secs());
        match e {
            E::CaUsedAsEndEntity => Self::CaUsedAsEndEntity,
            E::CertExpired { not_after, .. } => Self::Expired {
                not_after: time(not_after),
            },
            E::CertNotValidYet { not_before, .. } => Self::NotValidYet {
                not_before: time(not_before),
            },
            #[allow(deprecated)] // webpki 0.103 still returns the unit variants in some paths
            E::RequiredEkuNotFound | E::RequiredEkuNotFoundContext(_) => Self::NotForServers,
            E::EndEntityUsedAsCa => Self::IssuerNotCa,
            E::UnknownIssuer => Self::ChainOutOfOrder,
            E::InvalidSignatureForPublicKey => Self::BadSignature,
            #[allow(deprecated)]
            E::UnsupportedSignatureAlgorithm
            | E::UnsupportedSignatureAlgorithmContext(_)
            | E::UnsupportedSignatureAlgorithmForPublicKey
            | E::UnsupportedSignatureAlgorithmForPublicKeyContext(_)
            | E::SignatureAlgorithmMismatch => Self::UnsupportedAlgorithm,
            E::BadDer
            | E::BadDerTime
            | E::TrailingData(_)
            | E::UnsupportedCertVersion
            | E::MalformedExtensions
            | E::ExtensionValueInvalid
            | E::InvalidCertValidity
            | E::InvalidSerialNumber => Self::Malformed,
            other => Self::Other(variant_name(other)),
        }
    }
}

/// `Name` of `Name(..)` or `Name { .. }`: what webpki calls a reason, without its data.
fn variant_name(e: &webpki::Error) -> String {
    format!("{e:?}")
        .split(|c: char| !c.is_alphanumeric())
        .next()
        .unwrap_or_default()
        .to_owned()
}

impl PemProblem {
    fn from_pem(e: &pem::Error) -> Option<Self> {
        match e {
            pem::Error::MissingSectionEnd { .. } => Some(Self::MissingEnd),
            pem::Error::IllegalSectionStart { .. } => Some(Self::BadBegin),
            pem::Error::Base64Decode(_) => Some(Self::Base64),
            pem::Error::SectionTooLarge => Some(Self::TooLarge),
            _ => None,
        }
    }
}

struct Files<'a> {
    cert: &'a Path,
    key: &'a Path,
}

/// The kinds of PEM block in `text`, or what is wrong with its PEM.
fn sections(text: &[u8]) -> Result<Vec<(SectionKind, Vec<u8>)>, Option<PemProblem>> {
    <(SectionKind, Vec<u8>)>::pem_slice_iter(text)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| PemProblem::from_pem(&e))
}

fn is_key(kind: &SectionKind) -> bool {
    matches!(
        kind,
        SectionKind::PrivateKey | SectionKind::RsaPrivateKey | SectionKind::EcPrivateKey
    )
}

/// Checks the PEM texts of a certificate chain and its key; returns the leaf's notAfter.
fn check(
    cert_pem: &[u8],
    key_pem: &[u8],
    files: &Files<'_>,
) -> Result<Option<SystemTime>, TlsError> {
    let pem_error = |flag: &'static str, path: &Path, problem| TlsError::Pem {
        flag,
        path: path.to_path_buf(),
        problem,
    };
    let cert_sections = match sections(cert_pem) {
        Ok(s) => s,
        Err(Some(problem)) => return Err(pem_error("--tls-cert", files.cert, problem)),
        Err(None) => Vec::new(),
    };
    let chain: Vec<CertificateDer<'static>> = cert_sections
        .iter()
        .filter(|(kind, _)| *kind == SectionKind::Certificate)
        .map(|(_, der)| CertificateDer::from(der.clone()))
        .collect();
    if chain.is_empty() {
        return Err(TlsError::NoCertificate {
            path: files.cert.to_path_buf(),
            holds_key: cert_sections.iter().any(|(kind, _)| is_key(kind)),
        });
    }
    let certificate_error = |problem| TlsError::Certificate {
        path: files.cert.to_path_buf(),
        problem,
    };
    let not_after = check_chain(&chain).map_err(certificate_error)?;

    let key = match PrivateKeyDer::from_pem_slice(key_pem) {
        Ok(key) => key,
        Err(e) => {
            if let Some(problem) = PemProblem::from_pem(&e) {
                return Err(pem_error("--tls-key", files.key, problem));
            }
            let holds_certificate = sections(key_pem)
                .unwrap_or_default()
                .iter()
                .any(|(kind, _)| *kind == SectionKind::Certificate);
            return Err(TlsError::NoKey {
                path: files.key.to_path_buf(),
                holds_certificate,
            });
        }
    };
    let signer = rustls::crypto::ring::sign::any_supported_type(&key).map_err(|_| {
        TlsError::UnsupportedKey {
            path: files.key.to_path_buf(),
        }
    })?;
    match rustls::sign::CertifiedKey::new(chain, signer).keys_match() {
        Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::KeyMismatch)) => {
            Err(TlsError::KeyMismatch {
                cert: files.cert.to_path_buf(),
                key: files.key.to_path_buf(),
            })
        }
        // `Unknown`: the key cannot say its public key, so there is nothing to compare; the
        // leaf itself was checked above.
        _ => Ok(not_after),
    }
}

/// Verifies `chain` as a TLS client would a server's, as far as the file allows: the leaf's
/// own properties always, the signatures up to the last certificate when the file holds its
/// issuers. A lone leaf issued by a CA the file does not hold is fine: the clients hold the CA.
fn check_chain(chain: &[CertificateDer<'static>]) -> Result<Option<SystemTime>, CertProblem> {
    let leaf =
        webpki::EndEntityCert::try_from(&chain[0]).map_err(|e| CertProblem::from_webpki(&e))?;
    let last = &chain[chain.len() - 1];
    let anchor =
        webpki::anchor_from_trusted_cert(last).map_err(|e| CertProblem::from_webpki(&e))?;
    let intermediates = if chain.len() > 2 {
        &chain[1..chain.len() - 1]
    } else {
        &[]
    };
    let anchors = [anchor];
    let result = leaf.verify_for_usage(
        webpki::ALL_VERIFICATION_ALGS,
        &anchors,
        intermediates,
        UnixTime::now(),
        webpki::KeyUsage::server_auth(),
        None,
        None,
    );
    match result {
        Ok(_) => Ok(not_after(&chain[0])),
        // A lone certificate verified against itself: if it is not self-signed, its issuer is
        // not here, and only its own properties (checked before any issuer) count.
        Err(webpki::Error::UnknownIssuer | webpki::Error::InvalidSignatureForPublicKey)
            if chain.len() == 1 =>
        {
            Ok(not_after(&chain[0]))
        }
        Err(e) => Err(CertProblem::from_webpki(&e)),
    }
}

/// The leaf's notAfter (for the start-up log). webpki parses it but does not expose it, and a
/// second X.509 parser is not worth a log line: verify at a far-future time and read it from
/// the expiry error.
fn not_after(leaf: &CertificateDer<'_>) -> Option<SystemTime> {
    let cert = webpki::EndEntityCert::try_from(leaf).ok()?;
    let anchor = webpki::anchor_from_trusted_cert(leaf).ok()?;
    let far = UnixTime::since_unix_epoch(Duration::from_secs(253_402_300_799)); // 9999-12-31
    let anchors = [anchor];
    match cert.verify_for_usage(
        webpki::ALL_VERIFICATION_ALGS,
        &anchors,
        &[],
        far,
        webpki::KeyUsage::server_auth(),
        None,
        None,
    ) {
        Err(webpki::Error::CertExpired { not_after, .. }) => {
            Some(SystemTime::UNIX_EPOCH + Duration::from_secs(not_after.as_secs()))
        }
        _ => None,
    }
}
