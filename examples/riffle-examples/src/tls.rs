//! The TLS options the broker examples share: `-P tls_ca=PEM` (the CAs that sign
//! the server's certificate; without it a TLS URL is checked against the
//! system's roots) and `-P tls_cert=PEM -P tls_key=PEM` (a client certificate,
//! for servers that verify clients). They name files, never secrets, and map
//! one to one onto the connectors' settings fields of the same names.

use std::path::PathBuf;

use riffle::context::DataflowContext;

/// The TLS files one example run was given.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct TlsOptions {
    /// `-P tls_ca=`: a PEM file of CA certificates.
    pub ca: Option<PathBuf>,
    /// `-P tls_cert=` with `-P tls_key=`: a client certificate and its key.
    pub identity: Option<(PathBuf, PathBuf)>,
}

impl TlsOptions {
    /// Reads the options of `example` from `ctx`; a certificate without its key
    /// (or a key without its certificate) is an error saying which is missing.
    ///
    /// ```
    /// use riffle::context::DataflowContext;
    /// use riffle_examples::tls::TlsOptions;
    /// let ctx = DataflowContext::new([("tls_ca".into(), "ca.pem".into())].into());
    /// let tls = TlsOptions::from_params(&ctx, "nats-wordcount").unwrap();
    /// assert_eq!(tls.ca.unwrap().to_str(), Some("ca.pem"));
    /// let half = DataflowContext::new([("tls_cert".into(), "me.pem".into())].into());
    /// let err = TlsOptions::from_params(&half, "nats-wordcount").unwrap_err().to_string();
    /// assert!(err.contains("-P tls_key="), "{err}");
    /// ```
    pub fn from_params(ctx: &DataflowContext, example: &str) -> anyhow::Result<Self> {
        let file = |name: &str| ctx.param(name).filter(|p| !p.is_empty()).map(PathBuf::from);
        let identity = match (file("tls_cert"), file("tls_key")) {
            (Some(cert), Some(key)) => Some((cert, key)),
            (None, None) => None,
            (Some(_), None) => {
                anyhow::bail!("{example}: -P tls_cert= needs -P tls_key= (the certificate's key)")
            }
            (None, Some(_)) => {
                anyhow::bail!("{example}: -P tls_key= needs -P tls_cert= (its certificate)")
            }
        };
        Ok(Self {
            ca: file("tls_ca"),
            identity,
        })
    }
}
