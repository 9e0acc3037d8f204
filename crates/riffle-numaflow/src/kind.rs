//! The UDF kinds and where each one listens by default.
//!
//! A Numaflow pod runs the platform's container next to the user's container; the two
//! meet on a Unix socket under `/var/run/numaflow/` and on a server-info file next to
//! it. The paths are fixed by the platform, so each kind knows its own.

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

/// The directory where Numaflow's containers share sockets and server-info files.
pub const SOCKET_DIR: &str = "/var/run/numaflow";

/// One kind of user-defined function of Numaflow's protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum UdfKind {
    Map,
    MapStream,
    BatchMap,
    Reduce,
    ReduceStream,
    Accumulator,
    SourceTransform,
    Source,
    Sink,
    FallbackSink,
    OnSuccessSink,
    SideInput,
}

impl UdfKind {
    /// Every kind, in a stable order.
    pub const ALL: [UdfKind; 12] = [
        UdfKind::Map,
        UdfKind::MapStream,
        UdfKind::BatchMap,
        UdfKind::Reduce,
        UdfKind::ReduceStream,
        UdfKind::Accumulator,
        UdfKind::SourceTransform,
        UdfKind::Source,
        UdfKind::Sink,
        UdfKind::FallbackSink,
        UdfKind::OnSuccessSink,
        UdfKind::SideInput,
    ];

    /// The short name used on the command line and in errors (`map`, `batch-map`, ...).
    pub fn name(self) -> &'static str {
        match self {
            UdfKind::Map => "map",
            UdfKind::MapStream => "map-stream",
            UdfKind::BatchMap => "batch-map",
            UdfKind::Reduce => "reduce",
            UdfKind::ReduceStream => "reduce-stream",
            UdfKind::Accumulator => "accumulator",
            UdfKind::SourceTransform => "source-transform",
            UdfKind::Source => "source",
            UdfKind::Sink => "sink",
            UdfKind::FallbackSink => "fallback-sink",
            UdfKind::OnSuccessSink => "on-success-sink",
            UdfKind::SideInput => "side-input",
        }
    }

    fn socket_file(self) -> &'static str {
        match self {
            UdfKind::Map => "map.sock",
            UdfKind::MapStream => "mapstream.sock",
            UdfKind::BatchMap => "batchmap.sock",
            UdfKind::Reduce => "reduce.sock",
            UdfKind::ReduceStream => "reducestream.sock",
            UdfKind::Accumulator => "accumulator.sock",
            UdfKind::SourceTransform => "sourcetransform.sock",
            UdfKind::Source => "source.sock",
            UdfKind::Sink => "sink.sock",
            UdfKind::FallbackSink => "fb-sink.sock",
            UdfKind::OnSuccessSink => "ons-sink.sock",
            UdfKind::SideInput => "sideinput.sock",
        }
    }

    /// The container type of the server-info file name (`mapper`, `sinker`, ...).
    pub fn container_type(self) -> &'static str {
        match self {
            UdfKind::Map | UdfKind::MapStream | UdfKind::BatchMap => "mapper",
            UdfKind::Reduce => "reducer",
            UdfKind::ReduceStream => "reducestreamer",
            UdfKind::Accumulator => "accumulator",
            UdfKind::SourceTransform => "sourcetransformer",
            UdfKind::Source => "sourcer",
            UdfKind::Sink => "sinker",
            UdfKind::FallbackSink => "fb-sinker",
            UdfKind::OnSuccessSink => "ons-sinker",
            UdfKind::SideInput => "sideinput",
        }
    }

    /// The socket a server of this kind listens on inside a Numaflow pod.
    ///
    /// ```
    /// use riffle_numaflow::UdfKind;
    /// assert_eq!(UdfKind::Map.default_socket().to_str(), Some("/var/run/numaflow/map.sock"));
    /// assert_eq!(UdfKind::Sink.default_socket().to_str(), Some("/var/run/numaflow/sink.sock"));
    /// ```
    pub fn default_socket(self) -> PathBuf {
        PathBuf::from(SOCKET_DIR).join(self.socket_file())
    }

    /// The server-info file a server of this kind writes inside a Numaflow pod.
    ///
    /// ```
    /// use riffle_numaflow::UdfKind;
    /// assert_eq!(
    ///     UdfKind::BatchMap.default_server_info().to_str(),
    ///     Some("/var/run/numaflow/mapper-server-info"),
    /// );
    /// ```
    pub fn default_server_info(self) -> PathBuf {
        PathBuf::from(SOCKET_DIR).join(format!("{}-server-info", self.container_type()))
    }

    /// The lowest Numaflow version that speaks this kind's protocol.
    pub fn minimum_numaflow_version(self) -> &'static str {
        match self {
            UdfKind::Accumulator => "1.5.0-z",
            _ => "1.4.0-z",
        }
    }

    /// The `MAP_MODE` a map-family server announces in its server info.
    pub fn map_mode(self) -> Option<&'static str> {
        match self {
            UdfKind::Map => Some("unary-map"),
            UdfKind::MapStream => Some("stream-map"),
            UdfKind::BatchMap => Some("batch-map"),
            _ => None,
        }
    }
}

impl fmt::Display for UdfKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The error of parsing a [`UdfKind`] from its name.
#[derive(Debug, Clone, thiserror::Error)]
#[error(
    "unknown UDF kind {0:?}; the kinds are: map, map-stream, batch-map, reduce, reduce-stream, accumulator, source-transform, source, sink, fallback-sink, on-success-sink, side-input"
)]
pub struct UnknownKind(pub String);

impl FromStr for UdfKind {
    type Err = UnknownKind;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let wanted = s.trim().to_ascii_lowercase().replace('_', "-");
        let wanted = match wanted.as_str() {
            "mapstream" => "map-stream",
            "batchmap" => "batch-map",
            "reducestream" => "reduce-stream",
            "sourcetransform" | "transform" => "source-transform",
            "sideinput" => "side-input",
            "fb-sink" => "fallback-sink",
            other => other,
        }
        .to_string();
        UdfKind::ALL
            .into_iter()
            .find(|kind| kind.name() == wanted)
            .ok_or_else(|| UnknownKind(s.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for kind in UdfKind::ALL {
            assert_eq!(kind.name().parse::<UdfKind>().unwrap(), kind);
        }
        assert_eq!("batchmap".parse::<UdfKind>().unwrap(), UdfKind::BatchMap);
        assert!("mapp".parse::<UdfKind>().is_err());
    }

    #[test]
    fn paths_are_numaflows() {
        assert_eq!(
            UdfKind::SourceTransform.default_server_info().to_str(),
            Some("/var/run/numaflow/sourcetransformer-server-info")
        );
        assert_eq!(
            UdfKind::FallbackSink.default_socket().to_str(),
            Some("/var/run/numaflow/fb-sink.sock")
        );
    }
}
