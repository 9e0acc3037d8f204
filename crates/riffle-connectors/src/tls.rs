//! TLS for the connectors whose clients take a rustls configuration (PostgreSQL,
//! NATS, RabbitMQ): the configuration built from the user's options, and the words that
//! say why a handshake failed.
//!
//! What is checked of the server's certificate is one of three [`Verify`] levels:
//! everything (it chains to a trusted root *and* names the host the client dialled:
//! what a browser checks), the chain only (a certificate issued for another name
//! passes), or nothing (the bytes are encrypted, but a machine in the middle
//! could answer). Trusted roots ([`Roots`]) are the CA certificates of a PEM file
//! or the system's store. A client certificate ([`Identity`]) answers servers that
//! verify their clients.
//!
//! The crypto provider is aws-lc-rs, the one the rest of the tree uses, named
//! explicitly: with a second provider compiled in elsewhere, rustls would refuse
//! to choose for a caller that does not say.

// Redis builds its own configuration and takes only the provider and `refusal`.
#![cfg_attr(
    not(any(feature = "nats", feature = "postgres", feature = "rabbitmq")),
    allow(dead_code)
)]

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{
    CertificateError, ClientConfig, DigitallySignedStruct, Error as TlsError, RootCertStore,
    SignatureScheme,
};

/// How much of the server's certificate is checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
// NATS checks in full; the weaker levels are PostgreSQL's `sslmode`s.
#[cfg_attr(not(feature = "postgres"), allow(dead_code))]
pub(crate) enum Verify {
    /// Its chain to a trusted root and the host name.
    Full,
    /// Its chain to a trusted root only.
    Chain,
    /// Nothing: encrypted, not authenticated.
    Nothing,
}

/// Where the trusted CA certificates come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Roots {
    /// The certificates of a PEM file.
    File(PathBuf),
    /// The system's trusted roots.
    System,
}

/// A client certificate chain and its private key, both PEM files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Identity {
    /// The certificate (chain), leaf first.
    pub cert: PathBuf,
    /// Its private key.
    pub key: PathBuf,
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

/// Makes aws-lc-rs the process's default provider, for clients that build
/// their own configuration from the default (redis-rs), unless the
/// application chose one before.
#[cfg(feature = "redis")]
pub(crate) fn install_provider() {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
}

/// A rustls client configuration checking the server as `verify` says against
/// `roots` (required unless `verify` is [`Verify::Nothing`]), presenting
/// `identity` when given. The error says which file or option was wrong.
pub(crate) fn client_config(
    verify: Verify,
    roots: Option<&Roots>,
    identity: Option<&Identity>,
) -> Result<ClientConfig, String> {
    let provider = provider();
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("no TLS protocol version to offer: {e}"))?;
    let store = match (verify, roots) {
        (Verify::Nothing, _) => None,
        (_, Some(roots)) => Some(Arc::new(root_store(roots)?)),
        (_, None) => return Err("no trusted CA certificates were given".to_string()),
    };
    let builder = match (verify, store) {
        (Verify::Full, Some(store)) => builder.with_root_certificates(store),
        (Verify::Chain, Some(store)) => {
            let inner = WebPkiServerVerifier::builder_with_provider(store, provider)
                .build()
                .map_err(|e| format!("cannot check certificates against the CAs: {e}"))?;
            builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(ChainOnly(inner)))
        }
        _ => builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(Unverified(provider))),
    };
    match identity {
        None => Ok(builder.with_no_client_auth()),
        Some(identity) => {
            let certs = certificates(&identity.cert)?;
            let key = read(&identity.key).and_then(|pem| {
                PrivateKeyDer::from_pem_slice(&pem).map_err(|e| {
                    format!(
                        "the key file {} holds no PEM private key: {e}",
                        identity.key.display()
                    )
                })
            })?;
            builder.with_client_auth_cert(certs, key).map_err(|e| {
                format!(
                    "the client certificate {} and key {} do not go together: {e}",
                    identity.cert.display(),
                    identity.key.display()
                )
            })
        }
    }
}

fn read(path: &Path) -> Result<Vec<u8>, String> {
    std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))
}

/// Every certificate of the PEM file at `path`; none is an error.
fn certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let pem = read(path)?;
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("{} is not a PEM file of certificates: {e}", path.display()))?;
    if certs.is_empty() {
        return Err(format!("{} holds no PEM certificate", path.display()));
    }
    Ok(certs)
}

fn root_store(roots: &Roots) -> Result<RootCertStore, String> {
    let mut store = RootCertStore::empty();
    match roots {
        Roots::File(path) => {
            for cert in certificates(path)? {
                store.add(cert).map_err(|e| {
                    format!(
                        "{} holds a certificate that is not a CA: {e}",
                        path.display()
                    )
                })?;
            }
        }
        Roots::System => {
            store.add_parsable_certificates(rustls_native_certs::load_native_certs().certs);
            if store.is_empty() {
                return Err("the system has no trusted CA certificates".to_string());
            }
        }
    }
    Ok(store)
}

/// Checks the chain as webpki does, but accepts a certificate issued for
/// another name (PostgreSQL's `sslmode=verify-ca`).
#[derive(Debug)]
struct ChainOnly(Arc<WebPkiServerVerifier>);

impl ServerCertVerifier for ChainOnly {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, TlsError> {
        // webpki checks the name after the chain: a name error means the chain passed.
        match self
            .0
            .verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
        {
            Err(TlsError::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, TlsError> {
        self.0.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, TlsError> {
        self.0.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_verify_schemes()
    }
}

/// Accepts any certificate (PostgreSQL's `sslmode=require` without a root
/// certificate), still checking that the server holds its key.
#[derive(Debug)]
struct Unverified(Arc<CryptoProvider>);

impl ServerCertVerifier for Unverified {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> Result<ServerCertVerified, TlsError> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, TlsError> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, TlsError> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// Why a TLS handshake somewhere in `err`'s chain failed, in words (`None` when
/// the chain holds no rustls error).
pub(crate) fn refusal(err: &(dyn std::error::Error + 'static)) -> Option<String> {
    let mut next = Some(err);
    while let Some(e) = next {
        if let Some(tls) = e.downcast_ref::<TlsError>() {
            return Some(describe(tls));
        }
        // An io::Error's `source` skips the error it wraps: look inside.
        let inner = e
            .downcast_ref::<std::io::Error>()
            .and_then(|io| io.get_ref())
            .and_then(|inner| inner.downcast_ref::<TlsError>());
        if let Some(tls) = inner {
            return Some(describe(tls));
        }
        next = e.source();
    }
    None
}

/// [`refusal`], or, for clients that keep rustls's error where no downcast
/// reaches it (redis-rs), the same read from the words of `err`'s chain.
#[cfg(feature = "redis")]
pub(crate) fn refusal_in_words(err: &(dyn std::error::Error + 'static)) -> Option<String> {
    if let Some(why) = refusal(err) {
        return Some(why);
    }
    let mut next = Some(err);
    while let Some(e) = next {
        let text = e.to_string();
        if let Some((_, detail)) = text.split_once("invalid peer certificate: ") {
            return Some(if detail.starts_with("UnknownIssuer") {
                describe(&TlsError::InvalidCertificate(
                    CertificateError::UnknownIssuer,
                ))
            } else if detail.starts_with("certificate not valid for name") {
                format!("the server's certificate is not trusted for this host: {detail}")
            } else {
                format!("the server's certificate is not trusted: {detail}")
            });
        }
        if let Some((_, alert)) = text.split_once("received fatal alert: ") {
            return Some(format!(
                "the server ended the TLS handshake ({alert}): does it want a client certificate?"
            ));
        }
        next = e.source();
    }
    None
}

fn describe(e: &TlsError) -> String {
    match e {
        TlsError::InvalidCertificate(CertificateError::UnknownIssuer) => {
            "the server's certificate is not trusted: no trusted CA issued it (give the CA \
             certificate that signed it)"
                .to_string()
        }
        TlsError::InvalidCertificate(CertificateError::NotValidForNameContext {
            expected,
            presented,
        }) => format!(
            "the server's certificate is not trusted for this host: it names {}, not {}",
            presented
                .iter()
                .map(|name| unwrap_name(name))
                .collect::<Vec<_>>()
                .join(", "),
            expected.to_str()
        ),
        TlsError::InvalidCertificate(CertificateError::NotValidForName) => {
            "the server's certificate is not trusted for this host: it names another host"
                .to_string()
        }
        TlsError::InvalidCertificate(
            CertificateError::Expired | CertificateError::ExpiredContext { .. },
        ) => "the server's certificate is not trusted: it has expired".to_string(),
        TlsError::InvalidCertificate(other) => {
            format!("the server's certificate is not trusted: {other:?}")
        }
        TlsError::AlertReceived(alert) => {
            format!(
                "the server ended the TLS handshake ({alert:?}): does it want a client certificate?"
            )
        }
        other => format!("the TLS handshake failed: {other}"),
    }
}

/// `localhost` of rustls's `DnsName("localhost")`.
fn unwrap_name(name: &str) -> &str {
    name.split_once("(\"")
        .and_then(|(_, rest)| rest.strip_suffix("\")"))
        .unwrap_or(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_or_wrong_files_are_named() {
        let err = client_config(Verify::Full, None, None).unwrap_err();
        assert!(err.contains("no trusted CA"), "{err}");
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("ca.pem");
        let err =
            client_config(Verify::Full, Some(&Roots::File(missing.clone())), None).unwrap_err();
        assert!(err.contains(&missing.display().to_string()), "{err}");
        std::fs::write(&missing, "not pem").unwrap();
        let err =
            client_config(Verify::Chain, Some(&Roots::File(missing.clone())), None).unwrap_err();
        assert!(err.contains("no PEM certificate"), "{err}");
        // Nothing to check needs no roots.
        assert!(client_config(Verify::Nothing, None, None).is_ok());
    }

    #[test]
    fn a_refusal_is_found_inside_an_io_error() {
        let io = std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            TlsError::InvalidCertificate(CertificateError::UnknownIssuer),
        );
        let why = refusal(&io).unwrap();
        assert!(why.contains("not trusted"), "{why}");
        assert_eq!(refusal(&std::io::Error::other("plain")), None);
    }
}
