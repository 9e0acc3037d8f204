//! `riffle udf ...`: talk to a UDF server over Numaflow's protocol, for debugging a
//! UDF container by hand.
//!
//! `riffle udf call --socket PATH --kind map < inputs.jsonl` reads one datum per line
//! (`{"value": "...", "keys": [...], "event_time_ms": ..., "headers": {...}}`), calls
//! the server once with all of them, and prints one JSON line per answer.
//! `riffle udf info --socket PATH --kind map` prints the server's server-info file.

use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, UNIX_EPOCH};

use anyhow::Context;
use riffle_numaflow::call::{CallParams, call};
use riffle_numaflow::client::ClientOptions;
use riffle_numaflow::info::ServerInfo;
use riffle_numaflow::runtime::block_on;
use riffle_numaflow::{UdfKind, Window};

/// `riffle udf call --socket PATH --kind KIND < inputs.jsonl`
#[derive(Debug, clap::Args)]
pub struct UdfArgs {
    #[command(subcommand)]
    pub command: UdfCommand,
}

/// What to do with the UDF server.
#[derive(Debug, clap::Subcommand)]
pub enum UdfCommand {
    /// Send the datums of standard input (JSON lines) and print the answers.
    Call(CallArgs),
    /// Print the server's server-info file once it is complete.
    Info(TargetArgs),
}

/// Which server to talk to.
#[derive(Debug, clap::Args)]
pub struct TargetArgs {
    /// The server's Unix socket (default: Numaflow's path for the kind).
    #[arg(long)]
    pub socket: Option<PathBuf>,
    /// The UDF kind: map, map-stream, batch-map, reduce, reduce-stream, accumulator,
    /// source-transform, source, sink, fallback-sink, on-success-sink, side-input.
    #[arg(long, default_value = "map")]
    pub kind: UdfKind,
    /// The server-info file (default: beside the socket).
    #[arg(long)]
    pub server_info: Option<PathBuf>,
    /// Do not wait for or check the server-info file.
    #[arg(long)]
    pub no_server_info: bool,
    /// Seconds to wait for the server (server info, connection, answer).
    #[arg(long, default_value_t = 30.0)]
    pub timeout: f64,
}

/// `riffle udf call` options.
#[derive(Debug, clap::Args)]
pub struct CallArgs {
    #[command(flatten)]
    pub target: TargetArgs,
    /// Reduce: the window's start and end, in milliseconds since the epoch.
    #[arg(long, num_args = 2, value_names = ["START_MS", "END_MS"], default_values_t = [0, 60_000])]
    pub window_ms: Vec<u64>,
    /// Source: how many messages to read.
    #[arg(long, default_value_t = 10)]
    pub count: u64,
    /// Source: acknowledge the messages read.
    #[arg(long)]
    pub ack: bool,
}

impl TargetArgs {
    fn options(&self) -> anyhow::Result<ClientOptions> {
        if !(self.timeout.is_finite() && self.timeout > 0.0) {
            anyhow::bail!(
                "--timeout must be a positive number of seconds, not {}",
                self.timeout
            );
        }
        let timeout = Duration::from_secs_f64(self.timeout);
        let socket = self
            .socket
            .clone()
            .unwrap_or_else(|| self.kind.default_socket());
        let mut options = ClientOptions::new(socket)
            .with_info_timeout(timeout)
            .with_connect_timeout(timeout)
            .with_request_timeout(timeout)
            .with_retries(0);
        if self.socket.is_none() {
            options.server_info = Some(self.kind.default_server_info());
        }
        if let Some(info) = &self.server_info {
            options = options.with_server_info_file(info);
        }
        if self.no_server_info {
            options = options.without_server_info();
        }
        Ok(options)
    }
}

pub fn udf(args: &UdfArgs) -> anyhow::Result<ExitCode> {
    match &args.command {
        UdfCommand::Call(call_args) => block_on(call_udf(call_args)),
        UdfCommand::Info(target) => block_on(async {
            let options = target.options()?;
            let path = options.server_info_path(target.kind);
            let info = ServerInfo::wait_for(&path, options.info_timeout).await?;
            println!("{}", serde_json::to_string_pretty(&info)?);
            match info.check_compatible() {
                Ok(()) => Ok(ExitCode::SUCCESS),
                Err(reason) => {
                    eprintln!("incompatible: {reason}");
                    Ok(ExitCode::FAILURE)
                }
            }
        }),
    }
}

async fn call_udf(args: &CallArgs) -> anyhow::Result<ExitCode> {
    let kind = args.target.kind;
    let options = args.target.options()?;
    let reads_input = !matches!(kind, UdfKind::Source | UdfKind::SideInput);
    let datums = if reads_input {
        let mut text = String::new();
        std::io::stdin()
            .read_to_string(&mut text)
            .context("cannot read datums from standard input")?;
        riffle_numaflow::jsonl::parse_datums(&text).context("standard input")?
    } else {
        Vec::new()
    };
    let (start, end) = match args.window_ms.as_slice() {
        [s, e] if s < e => (*s, *e),
        _ => anyhow::bail!("--window-ms needs START_MS < END_MS"),
    };
    let params = CallParams {
        window: Window::new(
            UNIX_EPOCH + Duration::from_millis(start),
            UNIX_EPOCH + Duration::from_millis(end),
        ),
        read_count: args.count,
        ack: args.ack,
        ..CallParams::default()
    };
    let lines = call(kind, options, datums, &params).await?;
    let mut stdout = std::io::stdout().lock();
    for line in &lines {
        writeln!(stdout, "{line}")?;
    }
    // A sink that refused datums failed the call, though it answered.
    let failed = lines
        .iter()
        .filter(|l| l.get("status").and_then(|s| s.as_str()) == Some("failure"))
        .count();
    if failed > 0 {
        anyhow::bail!(
            "the {kind} UDF answered failure for {failed} of {} datum(s)",
            lines.len()
        );
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Args;

    #[test]
    fn the_kind_help_lists_every_kind() {
        let command = TargetArgs::augment_args(clap::Command::new("udf"));
        let help = command
            .get_arguments()
            .find(|a| a.get_id() == "kind")
            .and_then(|a| a.get_help())
            .map(|h| h.to_string())
            .unwrap_or_default();
        let listed: Vec<&str> = help
            .split(|c: char| !(c.is_ascii_lowercase() || c == '-'))
            .collect();
        for kind in UdfKind::ALL {
            assert!(
                listed.contains(&kind.name()),
                "--kind help misses {kind}: {help}"
            );
        }
    }
}
