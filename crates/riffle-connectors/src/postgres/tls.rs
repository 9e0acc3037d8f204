//! TLS to PostgreSQL the way libpq reads it from a connection string.
//!
//! tokio-postgres knows `sslmode` `disable`, `prefer` and `require`, and refuses
//! the options it does not know. This module takes the TLS options out of the
//! URL (or `key=value` string) first ([`split`]), then turns them into the mode
//! tokio-postgres negotiates and a rustls configuration that checks what the
//! mode promises ([`TlsParams::plan`]):
//!
//! | `sslmode` | TLS | server certificate checked |
//! |---|---|---|
//! | `disable` | never | no |
//! | `prefer` (the default) | if the server offers it | only against `sslrootcert` when given (chain) |
//! | `require` | always | only against `sslrootcert` when given (chain) |
//! | `verify-ca` | always | chain to `sslrootcert` |
//! | `verify-full` | always | chain to `sslrootcert` and the host name |
//!
//! `sslrootcert` is a PEM file of CA certificates, or `system` for the system's
//! trusted roots (which asks for `verify-full`, as in libpq 16). Without it,
//! `~/.postgresql/root.crt` is used when it exists. `sslcert` and `sslkey` name
//! a client certificate and its key, for servers that verify clients.
//!
//! [`PostgresTls`] is the connector tokio-postgres calls: a TLS session on
//! tokio-rustls over the TCP socket. It offers ALPN `postgresql`, so
//! `sslnegotiation=direct` works with servers that want it (PostgreSQL 17+).
//! Channel binding is not offered: SCRAM authenticates without it.

use std::fmt;
use std::future::Future;
use std::io;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use rustls::ClientConfig;
use rustls::pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio_postgres::Socket;
use tokio_postgres::config::SslMode as Wire;
use tokio_postgres::tls::{ChannelBinding, MakeTlsConnect, TlsConnect, TlsStream};

use crate::tls::{self, Identity, Roots, Verify};

/// libpq's `sslmode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum SslMode {
    Disable,
    Prefer,
    Require,
    VerifyCa,
    VerifyFull,
}

impl SslMode {
    fn parse(value: &str) -> Result<Self, String> {
        Ok(match value {
            "disable" => Self::Disable,
            "prefer" => Self::Prefer,
            "require" => Self::Require,
            "verify-ca" => Self::VerifyCa,
            "verify-full" => Self::VerifyFull,
            other => {
                return Err(format!(
                    "sslmode={other:?} is not one of disable, prefer, require, verify-ca, \
                     verify-full"
                ));
            }
        })
    }

    /// Whether a connection without TLS is refused.
    pub(crate) fn requires_tls(self) -> bool {
        self >= Self::Require
    }
}

impl fmt::Display for SslMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Disable => "disable",
            Self::Prefer => "prefer",
            Self::Require => "require",
            Self::VerifyCa => "verify-ca",
            Self::VerifyFull => "verify-full",
        })
    }
}

/// The TLS options of a connection string.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct TlsParams {
    mode: Option<SslMode>,
    root_cert: Option<String>,
    cert: Option<PathBuf>,
    key: Option<PathBuf>,
}

/// The options this module reads; tokio-postgres never sees them.
const KEYS: [&str; 4] = ["sslmode", "sslrootcert", "sslcert", "sslkey"];

impl TlsParams {
    fn set(&mut self, key: &str, value: String) -> Result<(), String> {
        match key {
            "sslmode" => self.mode = Some(SslMode::parse(&value)?),
            "sslrootcert" => self.root_cert = Some(value),
            "sslcert" => self.cert = Some(PathBuf::from(value)),
            _ => self.key = Some(PathBuf::from(value)),
        }
        Ok(())
    }

    /// What to negotiate and how to check the server; `home` is where
    /// `.postgresql/root.crt` is looked for.
    pub(crate) fn plan(&self, home: Option<&Path>) -> Result<Plan, String> {
        let roots = match self.root_cert.as_deref() {
            Some("system") => Some(Roots::System),
            Some(path) => Some(Roots::File(PathBuf::from(path))),
            None => home
                .map(|h| h.join(".postgresql").join("root.crt"))
                .filter(|p| p.is_file())
                .map(Roots::File),
        };
        let mode = match (self.mode, &roots) {
            (None, Some(Roots::System)) => SslMode::VerifyFull,
            (Some(mode), Some(Roots::System)) if mode < SslMode::VerifyFull => {
                return Err(format!(
                    "sslrootcert=system trusts any certificate the system trusts, so it needs \
                     sslmode=verify-full, not sslmode={mode}"
                ));
            }
            (mode, _) => mode.unwrap_or(SslMode::Prefer),
        };
        let verify = match (mode, &roots) {
            (SslMode::VerifyFull, _) => Verify::Full,
            (SslMode::VerifyCa, _) => Verify::Chain,
            (SslMode::Disable, _) | (_, None) => Verify::Nothing,
            (_, Some(_)) => Verify::Chain,
        };
        if verify != Verify::Nothing && roots.is_none() {
            return Err(format!(
                "sslmode={mode} checks the server's certificate, but no CA was given: set \
                 sslrootcert to a PEM file of the CA certificates (or to \"system\" for the \
                 system's trusted roots)"
            ));
        }
        let identity = match (&self.cert, &self.key) {
            (Some(cert), Some(key)) => Some(Identity {
                cert: cert.clone(),
                key: key.clone(),
            }),
            (None, None) => None,
            _ => return Err("sslcert and sslkey go together: give both or neither".to_string()),
        };
        let config = if mode == SslMode::Disable {
            tls::client_config(Verify::Nothing, None, None)?
        } else {
            tls::client_config(verify, roots.as_ref(), identity.as_ref())?
        };
        Ok(Plan {
            mode,
            tls: PostgresTls::new(config),
        })
    }
}

/// What a connection negotiates: the mode, and the connector that makes the
/// TLS session.
#[derive(Debug)]
pub(crate) struct Plan {
    pub mode: SslMode,
    pub tls: PostgresTls,
}

impl Plan {
    /// The mode as tokio-postgres negotiates it (the checks live in the connector).
    pub(crate) fn wire(&self) -> Wire {
        match self.mode {
            SslMode::Disable => Wire::Disable,
            SslMode::Prefer => Wire::Prefer,
            _ => Wire::Require,
        }
    }
}

/// `url` without its TLS options, and those options.
pub(crate) fn split(url: &str) -> Result<(String, TlsParams), String> {
    let mut params = TlsParams::default();
    if ["postgres://", "postgresql://"]
        .iter()
        .any(|scheme| url.starts_with(scheme))
    {
        let Some((base, query)) = url.split_once('?') else {
            return Ok((url.to_string(), params));
        };
        let mut kept = Vec::new();
        for pair in query.split('&') {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            if KEYS.contains(&key) {
                params.set(key, percent_decode(value)?)?;
            } else {
                kept.push(pair);
            }
        }
        let url = if kept.is_empty() {
            base.to_string()
        } else {
            format!("{base}?{}", kept.join("&"))
        };
        return Ok((url, params));
    }
    // key=value form: drop our pairs, keep the rest as written. A string this
    // cannot read is left whole for tokio-postgres to refuse with its reason.
    let Some(pairs) = pairs(url) else {
        return Ok((url.to_string(), params));
    };
    let mut kept = Vec::new();
    for pair in pairs {
        if KEYS.contains(&pair.key.as_str()) {
            params.set(&pair.key, pair.value)?;
        } else {
            kept.push(&url[pair.start..pair.end]);
        }
    }
    Ok((kept.join(" "), params))
}

/// Whether `e` says that the server answered a TLS request with "no".
pub(crate) fn offers_no_tls(e: &tokio_postgres::Error) -> bool {
    // tokio-postgres says so only in words, in the error's cause.
    std::error::Error::source(e).is_some_and(|c| c.to_string() == "server does not support TLS")
}

fn percent_decode(value: &str) -> Result<String, String> {
    let bytes = value.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let byte = value
                .get(i + 1..i + 3)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or_else(|| format!("{value:?} holds a bad %-escape"))?;
            out.push(byte);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| format!("{value:?} is not UTF-8 once decoded"))
}

/// One `key=value` of a connection string, with its byte span.
struct Pair {
    key: String,
    value: String,
    start: usize,
    end: usize,
}

/// The pairs of a `key=value` string (values bare or in single quotes, `\`
/// escaping), or `None` when it is not one.
fn pairs(s: &str) -> Option<Vec<Pair>> {
    let chars: Vec<(usize, char)> = s.char_indices().collect();
    let at = |i: usize| chars.get(i).map(|&(_, c)| c);
    let offset = |i: usize| chars.get(i).map_or(s.len(), |&(o, _)| o);
    let mut out = Vec::new();
    let mut i = 0;
    loop {
        while at(i).is_some_and(char::is_whitespace) {
            i += 1;
        }
        if at(i).is_none() {
            return Some(out);
        }
        let start = i;
        while at(i).is_some_and(|c| c.is_alphanumeric() || c == '_') {
            i += 1;
        }
        let key = s[offset(start)..offset(i)].to_string();
        while at(i).is_some_and(char::is_whitespace) {
            i += 1;
        }
        if key.is_empty() || at(i) != Some('=') {
            return None;
        }
        i += 1;
        while at(i).is_some_and(char::is_whitespace) {
            i += 1;
        }
        let mut value = String::new();
        if at(i) == Some('\'') {
            i += 1;
            loop {
                match at(i)? {
                    '\'' => break,
                    '\\' => {
                        value.push(at(i + 1)?);
                        i += 2;
                    }
                    c => {
                        value.push(c);
                        i += 1;
                    }
                }
            }
            i += 1;
        } else {
            while let Some(c) = at(i).filter(|c| !c.is_whitespace()) {
                if c == '\\' {
                    value.push(at(i + 1)?);
                    i += 2;
                } else {
                    value.push(c);
                    i += 1;
                }
            }
        }
        out.push(Pair {
            key,
            value,
            start: offset(start),
            end: offset(i),
        });
    }
}

/// tokio-postgres's TLS connector over tokio-rustls.
#[derive(Debug, Clone)]
pub(crate) struct PostgresTls {
    config: Arc<ClientConfig>,
}

impl PostgresTls {
    fn new(mut config: ClientConfig) -> Self {
        config.alpn_protocols = vec![b"postgresql".to_vec()];
        Self {
            config: Arc::new(config),
        }
    }
}

impl MakeTlsConnect<Socket> for PostgresTls {
    type Stream = PostgresTlsStream;
    type TlsConnect = Handshake;
    type Error = io::Error;

    fn make_tls_connect(&mut self, host: &str) -> Result<Handshake, io::Error> {
        // A bad host name fails the handshake, not the plan: a Unix socket or a
        // non-TLS connection never gets that far.
        Ok(Handshake {
            config: self.config.clone(),
            host: host.to_string(),
        })
    }
}

/// One TLS handshake with the server named `host`.
pub(crate) struct Handshake {
    config: Arc<ClientConfig>,
    host: String,
}

impl TlsConnect<Socket> for Handshake {
    type Stream = PostgresTlsStream;
    type Error = io::Error;
    type Future = Pin<Box<dyn Future<Output = io::Result<PostgresTlsStream>> + Send>>;

    fn connect(self, socket: Socket) -> Self::Future {
        Box::pin(async move {
            let name = ServerName::try_from(self.host.clone()).map_err(|_| {
                io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!("{:?} is not a host name a certificate can name", self.host),
                )
            })?;
            let stream = tokio_rustls::TlsConnector::from(self.config)
                .connect(name, socket)
                .await?;
            Ok(PostgresTlsStream(stream))
        })
    }
}

/// A TLS session with the server.
pub(crate) struct PostgresTlsStream(tokio_rustls::client::TlsStream<Socket>);

impl AsyncRead for PostgresTlsStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_read(cx, buf)
    }
}

impl AsyncWrite for PostgresTlsStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.0).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_shutdown(cx)
    }
}

impl TlsStream for PostgresTlsStream {
    fn channel_binding(&self) -> ChannelBinding {
        ChannelBinding::none()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tls_options_leave_a_url_and_the_rest_stays() {
        let (url, p) = split(
            "postgres://u@db:5432/shop?application_name=a&sslmode=verify-full&sslrootcert=%2Ftmp%2Fca.pem",
        )
        .unwrap();
        assert_eq!(url, "postgres://u@db:5432/shop?application_name=a");
        assert_eq!(p.mode, Some(SslMode::VerifyFull));
        assert_eq!(p.root_cert.as_deref(), Some("/tmp/ca.pem"));
        let (url, p) = split("postgresql://db/shop?sslmode=require").unwrap();
        assert_eq!(url, "postgresql://db/shop");
        assert_eq!(p.mode, Some(SslMode::Require));
        let (url, p) = split("postgres://db/shop").unwrap();
        assert_eq!(
            (url.as_str(), p),
            ("postgres://db/shop", TlsParams::default())
        );
    }

    #[test]
    fn tls_options_leave_a_key_value_string() {
        let (rest, p) = split(
            "host=db sslmode = verify-ca sslrootcert='/my certs/ca.pem' user=u sslcert=c sslkey=k",
        )
        .unwrap();
        assert_eq!(rest, "host=db user=u");
        assert_eq!(p.mode, Some(SslMode::VerifyCa));
        assert_eq!(p.root_cert.as_deref(), Some("/my certs/ca.pem"));
        assert_eq!(p.cert, Some(PathBuf::from("c")));
        assert_eq!(p.key, Some(PathBuf::from("k")));
        let (rest, p) = split(r"options='-c a=\'b c\'' sslmode=disable dbname=x").unwrap();
        assert_eq!(rest, r"options='-c a=\'b c\'' dbname=x");
        assert_eq!(p.mode, Some(SslMode::Disable));
    }

    #[test]
    fn bad_modes_and_half_options_are_named() {
        let err = split("postgres://db/x?sslmode=allow-ish").unwrap_err();
        assert!(err.contains("allow-ish"), "{err}");
        let (_, p) = split("postgres://db/x?sslmode=verify-full").unwrap();
        let err = p.plan(None).err().unwrap();
        assert!(err.contains("sslrootcert"), "{err}");
        let (_, p) = split("postgres://db/x?sslmode=require&sslrootcert=system").unwrap();
        let err = p.plan(None).err().unwrap();
        assert!(err.contains("verify-full"), "{err}");
        let (_, p) = split("postgres://db/x?sslcert=/c.pem").unwrap();
        let err = p.plan(None).err().unwrap();
        assert!(err.contains("sslkey"), "{err}");
    }

    #[test]
    fn modes_choose_what_is_negotiated() {
        let plan = |url: &str| split(url).unwrap().1.plan(None).ok().unwrap();
        assert_eq!(plan("postgres://db/x").mode, SslMode::Prefer);
        assert_eq!(plan("postgres://db/x").wire(), Wire::Prefer);
        assert_eq!(
            plan("postgres://db/x?sslmode=disable").wire(),
            Wire::Disable
        );
        assert_eq!(
            plan("postgres://db/x?sslmode=require").wire(),
            Wire::Require
        );
        let system = plan("postgres://db/x?sslrootcert=system");
        assert_eq!(system.mode, SslMode::VerifyFull);
        assert_eq!(system.wire(), Wire::Require);
    }
}
