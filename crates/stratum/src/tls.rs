//! TLS for `stratum+ssl://` pools: rustls with the webpki root certificates, plus optional
//! extra trust anchors ([`PoolCa`]) for pools whose certificate comes from a private CA.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_rustls::rustls;
use tokio_rustls::rustls::pki_types::CertificateDer;
use tokio_rustls::rustls::pki_types::pem::PemObject;

use crate::Error;

fn build(roots: rustls::RootCertStore) -> Result<Arc<rustls::ClientConfig>, Error> {
    let cfg = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .map_err(|source| Error::Tls { host: String::new(), source })?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(cfg))
}

fn webpki_roots() -> rustls::RootCertStore {
    rustls::RootCertStore { roots: webpki_roots::TLS_SERVER_ROOTS.to_vec() }
}

fn default_config() -> Result<Arc<rustls::ClientConfig>, Error> {
    static CONFIG: OnceLock<Arc<rustls::ClientConfig>> = OnceLock::new();
    if let Some(c) = CONFIG.get() {
        return Ok(c.clone());
    }
    let cfg = build(webpki_roots())?;
    Ok(CONFIG.get_or_init(|| cfg).clone())
}

/// Extra CA certificates trusted for `stratum+ssl://` pools, on top of the webpki roots: for
/// pools (or a proxy of one's own) whose certificate is issued by a private CA.
#[derive(Clone)]
pub struct PoolCa {
    origin: PathBuf,
    certs: usize,
    config: Arc<rustls::ClientConfig>,
}

impl fmt::Debug for PoolCa {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PoolCa").field("origin", &self.origin).field("certs", &self.certs).finish_non_exhaustive()
    }
}

impl PoolCa {
    /// Read every `CERTIFICATE` block of a PEM file.
    pub fn from_pem_file(path: &Path) -> Result<PoolCa, Error> {
        let pem = std::fs::read(path).map_err(|source| Error::CaRead { path: path.to_owned(), source })?;
        PoolCa::from_pem(&pem, path)
    }

    /// Parse PEM text; `origin` names it in errors.
    pub fn from_pem(pem: &[u8], origin: &Path) -> Result<PoolCa, Error> {
        let mut roots = webpki_roots();
        let mut certs = 0;
        for cert in CertificateDer::pem_slice_iter(pem) {
            let cert = cert.map_err(|source| Error::CaPem { path: origin.to_owned(), source })?;
            roots.add(cert).map_err(|source| Error::CaCert { path: origin.to_owned(), source })?;
            certs += 1;
        }
        if certs == 0 {
            return Err(Error::CaEmpty { path: origin.to_owned() });
        }
        Ok(PoolCa { origin: origin.to_owned(), certs, config: build(roots)? })
    }

    /// How many certificates were added.
    pub fn len(&self) -> usize {
        self.certs
    }

    /// Never true: a `PoolCa` holds at least one certificate.
    pub fn is_empty(&self) -> bool {
        self.certs == 0
    }
}

/// Wrap a connected socket in TLS, checking the certificate against `host` with the webpki
/// roots and, if given, the extra CA certificates.
pub(crate) async fn connect(host: &str, tcp: TcpStream, ca: Option<&PoolCa>) -> Result<TlsStream<TcpStream>, Error> {
    let name = rustls::pki_types::ServerName::try_from(host.to_owned())
        .map_err(|_| Error::PoolUrl { url: host.to_owned(), why: "host is not a valid TLS server name" })?;
    let config = match ca {
        Some(ca) => ca.config.clone(),
        None => default_config()?,
    };
    let connector = tokio_rustls::TlsConnector::from(config);
    connector
        .connect(name, tcp)
        .await
        .map_err(|source| Error::TlsHandshake { host: host.to_owned(), source })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_without_certificates_is_refused_by_name() {
        let e = PoolCa::from_pem(b"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n", Path::new("ca.pem")).unwrap_err();
        assert!(matches!(e, Error::CaEmpty { .. }), "{e:?}");
        assert_eq!(e.to_string(), "no CERTIFICATE in CA file ca.pem");
        let e = PoolCa::from_pem(b"just text\n", Path::new("x.pem")).unwrap_err();
        assert!(matches!(e, Error::CaEmpty { .. }), "{e:?}");
    }

    #[test]
    fn broken_pem_and_non_certificates_are_refused() {
        let e = PoolCa::from_pem(b"-----BEGIN CERTIFICATE-----\n!!not base64!!\n-----END CERTIFICATE-----\n", Path::new("b.pem")).unwrap_err();
        assert!(matches!(e, Error::CaPem { .. }), "{e:?}");
        // Valid base64, but not DER of a certificate: webpki refuses it as a trust anchor.
        let e = PoolCa::from_pem(b"-----BEGIN CERTIFICATE-----\nAAECAwQ=\n-----END CERTIFICATE-----\n", Path::new("c.pem")).unwrap_err();
        assert!(matches!(e, Error::CaCert { .. }), "{e:?}");
        assert!(e.to_string().contains("c.pem"), "{e}");
    }

    #[test]
    fn a_missing_file_names_the_path() {
        let e = PoolCa::from_pem_file(Path::new("/nonexistent/hashrig-ca.pem")).unwrap_err();
        assert!(matches!(e, Error::CaRead { .. }), "{e:?}");
        assert!(e.to_string().contains("/nonexistent/hashrig-ca.pem"), "{e}");
    }
}
