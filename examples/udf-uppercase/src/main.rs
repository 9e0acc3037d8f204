//! A map UDF for Numaflow, written with Riffle's SDK.
//!
//! It upper-cases every message's value, keeps its keys, tags it `upper`, and drops
//! empty messages. Inside a Numaflow pod it listens where the platform expects a map
//! UDF (`/var/run/numaflow/map.sock`, server info in
//! `/var/run/numaflow/mapper-server-info`) and stops gracefully on SIGTERM.
//!
//! ```text
//! udf-uppercase [--socket PATH] [--sync THREADS | --processes N]
//! ```
//!
//! `--socket` serves somewhere else (the server info goes beside the socket), for a
//! local try with `riffle udf call --socket PATH --kind map`. `--sync` runs the
//! handler on a thread pool; `--processes` starts N server processes on
//! `multiproc0.sock` ... and announces them to the platform.

use std::process::ExitCode;

use riffle_numaflow::server::{MapServer, ServerMode};
use riffle_numaflow::udf::map_fn;
use riffle_numaflow::{Datum, Message};

fn upper(datum: Datum) -> riffle_numaflow::HandlerResult<Vec<Message>> {
    if datum.value.is_empty() {
        return Ok(vec![Message::to_drop()]);
    }
    Ok(vec![
        Message::new(datum.value.to_ascii_uppercase())
            .with_keys(datum.keys)
            .with_tags(["upper"]),
    ])
}

fn usage(problem: &str) -> ExitCode {
    eprintln!("udf-uppercase: {problem}");
    eprintln!("usage: udf-uppercase [--socket PATH] [--sync THREADS | --processes N]");
    ExitCode::from(2)
}

fn main() -> ExitCode {
    let mut server = MapServer::new(map_fn(upper));
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut number = |name: &str| -> Result<usize, ExitCode> {
            args.next()
                .and_then(|v| v.parse::<usize>().ok())
                .filter(|n| *n > 0)
                .ok_or_else(|| usage(&format!("{name} needs a positive number")))
        };
        server = match arg.as_str() {
            "--socket" => match args.next() {
                Some(path) => server.with_socket(path),
                None => return usage("--socket needs a path"),
            },
            "--sync" => match number("--sync") {
                Ok(threads) => server.with_mode(ServerMode::Sync { threads }),
                Err(code) => return code,
            },
            "--processes" => match number("--processes") {
                Ok(processes) => server.with_mode(ServerMode::MultiProcess { processes }),
                Err(code) => return code,
            },
            "-h" | "--help" => {
                println!("usage: udf-uppercase [--socket PATH] [--sync THREADS | --processes N]");
                return ExitCode::SUCCESS;
            }
            other => return usage(&format!("unknown argument {other:?}")),
        };
    }
    match server.start() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("udf-uppercase: {e}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upper_cases_and_drops_empty() {
        let out = upper(Datum::new("abc").with_keys(["k"])).unwrap();
        assert_eq!(
            out,
            vec![Message::new("ABC").with_keys(["k"]).with_tags(["upper"])]
        );
        assert!(upper(Datum::new("")).unwrap()[0].is_drop());
    }
}
