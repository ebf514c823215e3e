//! TLS for `carrot serve` (clients connect with amqps://): rustls, as carrot's client side
//! uses, with a certificate chain and its private key read from PEM files.

use std::path::PathBuf;
use std::sync::Arc;

use tokio_rustls::rustls;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};

use crate::error::{Error, Result};

/// The server's certificate and key, in PEM files.
#[derive(Clone, Debug)]
pub struct Tls {
    /// The certificate chain, the server's own certificate first (PEM).
    pub cert: PathBuf,
    /// Its private key (PEM: PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
}

impl Tls {
    /// The rustls configuration of these files; [`Error::InvalidArgument`] naming the file that cannot be
    /// read or holds no certificate or key, or a key that does not match the certificate.
    pub(super) fn config(&self) -> Result<Arc<rustls::ServerConfig>> {
        let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&self.cert)
            .and_then(|certs| certs.collect::<std::result::Result<_, _>>())
            .map_err(|e| {
                Error::InvalidArgument(format!(
                    "cannot read the TLS certificate {}: {e}",
                    self.cert.display()
                ))
            })?;
        if certs.is_empty() {
            return Err(Error::InvalidArgument(format!(
                "{} holds no PEM certificate (-----BEGIN CERTIFICATE-----)",
                self.cert.display()
            )));
        }
        let key = PrivateKeyDer::from_pem_file(&self.key).map_err(|e| {
            Error::InvalidArgument(format!(
                "cannot read a PEM private key from {}: {e}",
                self.key.display()
            ))
        })?;
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .and_then(|builder| builder.with_no_client_auth().with_single_cert(certs, key))
            .map_err(|e| {
                Error::InvalidArgument(format!(
                    "the TLS certificate {} and key {} cannot be used: {e}",
                    self.cert.display(),
                    self.key.display()
                ))
            })?;
        Ok(Arc::new(config))
    }
}
