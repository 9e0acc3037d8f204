//! The server-info file: how a UDF server tells its client who it is.
//!
//! Before it accepts connections, a server writes a small JSON object next to its
//! socket, followed by the end marker `U+005C__END__` so that a reader never mistakes a
//! half-written file for a whole one:
//!
//! ```text
//! {"protocol":"uds","language":"rust","minimum_numaflow_version":"1.4.0-z","version":"0.1.0","metadata":{"MAP_MODE":"unary-map"}}U+005C__END__
//! ```
//!
//! A client waits for the marker, then checks that the server speaks Unix sockets and
//! does not require a newer platform than the one this crate implements
//! ([`PLATFORM_VERSION`]). Metadata carries `MAP_MODE` for map servers and
//! `MULTIPROC` (the number of server processes) for multi-process servers.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// The end marker written after the JSON object.
pub const END_MARKER: &str = "U+005C__END__";
/// The metadata key announcing the map mode (`unary-map`, `stream-map`, `batch-map`).
pub const MAP_MODE_KEY: &str = "MAP_MODE";
/// The metadata key announcing how many server processes serve (multi-process servers).
pub const MULTIPROC_KEY: &str = "MULTIPROC";
/// The Numaflow platform version whose protocol this crate implements.
pub const PLATFORM_VERSION: &str = "1.5.0";
/// The language this crate's servers announce.
pub const LANGUAGE: &str = "rust";

/// The JSON object of a server-info file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServerInfo {
    /// `uds` or `tcp`.
    pub protocol: String,
    /// The SDK's language (`python`, `go`, `java`, `rust`).
    pub language: String,
    /// The oldest Numaflow that can talk to this server (`1.4.0-z`).
    pub minimum_numaflow_version: String,
    /// The SDK's own version.
    pub version: String,
    /// Extra facts: `MAP_MODE`, `MULTIPROC`, `CPU_LIMIT`.
    #[serde(default)]
    pub metadata: BTreeMap<String, String>,
}

impl ServerInfo {
    /// The server info a Riffle server of this crate's version writes.
    pub fn riffle(minimum_numaflow_version: &str) -> Self {
        Self {
            protocol: "uds".into(),
            language: LANGUAGE.into(),
            minimum_numaflow_version: minimum_numaflow_version.into(),
            version: env!("CARGO_PKG_VERSION").into(),
            metadata: BTreeMap::new(),
        }
    }

    /// The number of server processes announced with `MULTIPROC`, if any.
    pub fn multiproc(&self) -> Option<usize> {
        self.metadata
            .get(MULTIPROC_KEY)
            .and_then(|n| n.trim().parse().ok())
    }

    /// The file's text: the JSON object and the end marker.
    pub fn to_file_text(&self) -> String {
        let json = serde_json::to_string(self).unwrap_or_else(|_| "{}".to_string());
        format!("{json}{END_MARKER}")
    }

    /// Parses a file's text; `Ok(None)` while the end marker has not been written yet.
    ///
    /// ```
    /// use riffle_numaflow::info::ServerInfo;
    /// let text = r#"{"protocol":"uds","language":"python","minimum_numaflow_version":"1.4.0-z","version":"0.14.0","metadata":{}}U+005C__END__"#;
    /// let info = ServerInfo::parse(text).unwrap().unwrap();
    /// assert_eq!(info.language, "python");
    /// assert!(ServerInfo::parse(r#"{"protocol":"#).unwrap().is_none());
    /// ```
    pub fn parse(text: &str) -> std::result::Result<Option<Self>, String> {
        let Some(json) = text
            .strip_suffix(END_MARKER)
            .or_else(|| text.trim_end().strip_suffix(END_MARKER))
        else {
            return Ok(None);
        };
        serde_json::from_str(json)
            .map(Some)
            .map_err(|e| format!("invalid JSON: {e}"))
    }

    /// Writes the file (atomically: to a temporary name, then renamed).
    pub fn write(&self, path: &Path) -> Result<()> {
        let fail = |reason: String| Error::ServerInfo {
            path: path.to_path_buf(),
            reason,
        };
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)
                .map_err(|e| fail(format!("cannot create its folder: {e}")))?;
        }
        let tmp = path.with_extension("tmp-riffle");
        std::fs::write(&tmp, self.to_file_text())
            .map_err(|e| fail(format!("cannot write: {e}")))?;
        std::fs::rename(&tmp, path).map_err(|e| fail(format!("cannot rename into place: {e}")))
    }

    /// Waits until the file exists and carries its end marker, polling every 10 ms.
    pub async fn wait_for(path: &Path, timeout: Duration) -> Result<Self> {
        let start = Instant::now();
        let mut notice = crate::client::WaitNotice::new(timeout);
        loop {
            match tokio::fs::read_to_string(path).await {
                Ok(text) => match Self::parse(&text) {
                    Ok(Some(info)) => return Ok(info),
                    Ok(None) => {}
                    Err(reason) => {
                        return Err(Error::ServerInfo {
                            path: path.to_path_buf(),
                            reason,
                        });
                    }
                },
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => {
                    return Err(Error::ServerInfo {
                        path: path.to_path_buf(),
                        reason: format!("cannot read: {e}"),
                    });
                }
            }
            if start.elapsed() >= timeout {
                return Err(Error::ServerInfo {
                    path: path.to_path_buf(),
                    reason: format!(
                        "no complete server info after {timeout:?} (is the server running?)"
                    ),
                });
            }
            notice.tell(|| format!("the server-info file {}", path.display()));
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Checks that a client implementing [`PLATFORM_VERSION`] can talk to this server.
    ///
    /// ```
    /// use riffle_numaflow::info::ServerInfo;
    /// let mut info = ServerInfo::riffle("1.4.0-z");
    /// assert!(info.check_compatible().is_ok());
    /// info.minimum_numaflow_version = "9.0.0".into();
    /// assert!(info.check_compatible().unwrap_err().contains("9.0.0"));
    /// ```
    pub fn check_compatible(&self) -> std::result::Result<(), String> {
        if !self.protocol.is_empty() && self.protocol != "uds" {
            return Err(format!(
                "the server speaks protocol {:?}; this client speaks \"uds\"",
                self.protocol
            ));
        }
        if !self.minimum_numaflow_version.is_empty() {
            let needed = parse_version(&self.minimum_numaflow_version).ok_or_else(|| {
                format!(
                    "unreadable minimum_numaflow_version {:?}",
                    self.minimum_numaflow_version
                )
            })?;
            let ours = parse_version(PLATFORM_VERSION).unwrap_or((0, 0, 0));
            if needed > ours {
                return Err(format!(
                    "the server needs Numaflow >= {}, this client implements {PLATFORM_VERSION}",
                    self.minimum_numaflow_version
                ));
            }
        }
        let oldest_sdk = match self.language.as_str() {
            "python" => Some((0, 9, 0)),
            "go" => Some((0, 9, 0)),
            "java" => Some((0, 9, 0)),
            _ => None,
        };
        if let (Some(oldest), Some(theirs)) = (oldest_sdk, parse_version(&self.version))
            && theirs < oldest
        {
            {
                return Err(format!(
                    "{} SDK {} speaks an older protocol; {}.{}.{} or newer is needed",
                    self.language, self.version, oldest.0, oldest.1, oldest.2
                ));
            }
        }
        Ok(())
    }
}

/// `1.4.0-z`, `v0.14.0rc1`, `1.5` → (major, minor, patch), ignoring pre-release tails.
pub fn parse_version(text: &str) -> Option<(u64, u64, u64)> {
    let text = text.trim().trim_start_matches('v');
    let mut parts = text.split('.').map(|part| {
        let digits: String = part.chars().take_while(|c| c.is_ascii_digit()).collect();
        digits.parse::<u64>().ok()
    });
    let major = parts.next()??;
    let minor = parts.next().flatten().unwrap_or(0);
    let patch = parts.next().flatten().unwrap_or(0);
    Some((major, minor, patch))
}

/// The server-info path beside a socket, for servers started on a custom socket:
/// `/tmp/x/map.sock` → `/tmp/x/mapper-server-info`.
pub fn server_info_beside(socket: &Path, container_type: &str) -> PathBuf {
    let dir = socket.parent().unwrap_or(Path::new("."));
    dir.join(format!("{container_type}-server-info"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_through_a_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("mapper-server-info");
        let mut info = ServerInfo::riffle("1.4.0-z");
        info.metadata.insert(MULTIPROC_KEY.into(), "3".into());
        info.write(&path).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.ends_with(END_MARKER));
        let back = ServerInfo::parse(&text).unwrap().unwrap();
        assert_eq!(back, info);
        assert_eq!(back.multiproc(), Some(3));
    }

    #[test]
    fn versions_compare_numerically() {
        assert_eq!(parse_version("1.4.0-z"), Some((1, 4, 0)));
        assert_eq!(parse_version("v0.14.0rc1"), Some((0, 14, 0)));
        assert!(parse_version("x").is_none());
        let mut old = ServerInfo::riffle("");
        old.language = "python".into();
        old.version = "0.5.0".into();
        assert!(old.check_compatible().unwrap_err().contains("0.5.0"));
        old.protocol = "tcp".into();
        assert!(old.check_compatible().unwrap_err().contains("tcp"));
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        assert!(ServerInfo::parse("{nope U+005C__END__").is_err());
    }
}
