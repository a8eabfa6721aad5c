//! A TLS identity as PEM text, and the rustls server configuration the listeners serve it with
//! (HTTP/2 only, by ALPN; TLS 1.2 and 1.3 with rustls's safe defaults, on ring).

use std::sync::Arc;

use rustls::pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject};

use crate::error::ServerError;

/// TLS identity: a PEM certificate chain (leaf first) and its PEM private key.
#[derive(Clone)]
pub struct Identity {
    cert: Vec<u8>,
    key: Vec<u8>,
}

/// Never shows the key.
impl std::fmt::Debug for Identity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Identity(..)")
    }
}

impl Identity {
    /// The identity of a PEM certificate chain and private key (checked when served).
    pub fn from_pem(cert: impl AsRef<[u8]>, key: impl AsRef<[u8]>) -> Self {
        Self {
            cert: cert.as_ref().to_vec(),
            key: key.as_ref().to_vec(),
        }
    }

    /// The rustls configuration serving this identity over HTTP/2.
    pub(crate) fn server_config(&self) -> Result<Arc<rustls::ServerConfig>, ServerError> {
        let bad = |what: &str, e: &dyn std::fmt::Display| {
            ServerError::Internal(format!("TLS identity: {what}: {e}"))
        };
        let certs = CertificateDer::pem_slice_iter(&self.cert)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| bad("certificate chain", &e))?;
        let key = PrivateKeyDer::from_pem_slice(&self.key).map_err(|e| bad("private key", &e))?;
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| bad("protocol versions", &e))?
            .with_no_client_auth()
            .with_single_cert(certs, key)
            .map_err(|e| bad("certificate and key", &e))?;
        config.alpn_protocols = vec![b"h2".to_vec()];
        Ok(Arc::new(config))
    }
}
