//! TLS for `stratum+ssl://` pools: rustls with the webpki root certificates.

use std::sync::{Arc, OnceLock};

use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_rustls::rustls;

use crate::Error;

fn config() -> Result<Arc<rustls::ClientConfig>, Error> {
    static CONFIG: OnceLock<Arc<rustls::ClientConfig>> = OnceLock::new();
    if let Some(c) = CONFIG.get() {
        return Ok(c.clone());
    }
    let roots = rustls::RootCertStore { roots: webpki_roots::TLS_SERVER_ROOTS.to_vec() };
    let cfg = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .map_err(|source| Error::Tls { host: String::new(), source })?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(CONFIG.get_or_init(|| Arc::new(cfg)).clone())
}

/// Wrap a connected socket in TLS, checking the certificate against `host`.
pub(crate) async fn connect(host: &str, tcp: TcpStream) -> Result<TlsStream<TcpStream>, Error> {
    let name = rustls::pki_types::ServerName::try_from(host.to_owned())
        .map_err(|_| Error::PoolUrl { url: host.to_owned(), why: "host is not a valid TLS server name" })?;
    let connector = tokio_rustls::TlsConnector::from(config()?);
    connector
        .connect(name, tcp)
        .await
        .map_err(|source| Error::TlsHandshake { host: host.to_owned(), source })
}
