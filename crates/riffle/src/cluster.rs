//! Connecting the processes of a cluster: one TCP connection between every pair,
//! made here and handed to timely.
//!
//! Process `i` of `n` listens at its own address, connects to every process with
//! a smaller id and accepts a connection from every process with a larger one. The
//! connecting side writes its process id (a big-endian `u64`) as the first bytes of
//! the connection, so the accepting side knows who called: the handshake timely's
//! own cluster start uses, so a Riffle process can join peers started either way.
//!
//! Processes start at different moments, so a process often connects to a peer that
//! is not listening yet. Timely's own start sleeps a whole second before each retry
//! (and polls for incoming connections once a second), which made a cluster of
//! processes started together spend about a second connecting. Here a refused
//! connection is retried after a few milliseconds, up to an overall deadline; giving
//! up names the peer's address and both process ids.
//!
//! ```no_run
//! use std::time::Duration;
//! use riffle::cluster::connect;
//!
//! // In process 1 of two (process 0 runs the same with 0).
//! let addresses = vec!["127.0.0.1:2101".to_string(), "127.0.0.1:2102".to_string()];
//! let sockets = connect(&addresses, 1, Duration::from_secs(30))?;
//! assert!(sockets[0].is_some() && sockets[1].is_none());
//! # Ok::<(), riffle::RiffleError>(())
//! ```

use std::io::{ErrorKind, Read, Write};
use std::net::{TcpListener, TcpStream, ToSocketAddrs};
use std::time::{Duration, Instant};

use timely::communication::allocator::zero_copy::initialize::{
    CommsGuard, initialize_networking_from_sockets,
};
use timely::communication::allocator::{AllocatorBuilder, ProcessBuilder};

use crate::error::{Result, RiffleError};

/// How long a cluster's processes wait for each other to connect, unless
/// [`crate::Execution::connect_timeout`] says otherwise.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(120);

/// The first pause before a connection refused by a peer is tried again; each
/// further try waits twice as long, up to [`RETRY_MAX`].
const RETRY_FIRST: Duration = Duration::from_millis(5);

/// The longest pause between two tries while peers are starting.
const RETRY_MAX: Duration = Duration::from_millis(20);

/// After this long without reaching a peer, tries are spaced by [`RETRY_SLOW`]:
/// the peer is not starting alongside this process but later (by hand, in
/// another container), and a few milliseconds no longer matter.
const FAST_FOR: Duration = Duration::from_secs(2);

/// The pause between tries once a peer has been missing for [`FAST_FOR`].
const RETRY_SLOW: Duration = Duration::from_millis(200);

/// The first pause of the accepting side, which polls its listeners (and again
/// after each connection it accepts).
const ACCEPT_FIRST: Duration = Duration::from_millis(1);

/// The pauses between tries, of connecting and of accepting alike: doubling
/// from the first up to [`RETRY_MAX`] for [`FAST_FOR`], then [`RETRY_SLOW`].
struct Backoff {
    started: Instant,
    pause: Duration,
}

impl Backoff {
    fn new(first: Duration) -> Self {
        Self {
            started: Instant::now(),
            pause: first,
        }
    }

    /// Sleeps before the next try (never past `deadline`).
    fn sleep(&mut self, now: Instant, deadline: Instant) {
        let wait = if now - self.started < FAST_FOR {
            self.pause
        } else {
            RETRY_SLOW
        };
        std::thread::sleep(wait.min(deadline.saturating_duration_since(now)));
        self.pause = (self.pause * 2).min(RETRY_MAX);
    }
}

/// The longest a single connection attempt may take (a peer on another machine
/// that does not answer at all).
const ATTEMPT_MAX: Duration = Duration::from_secs(2);

/// How long an accepted connection has to send its process id: a peer sends it
/// at once, so a connection that sends nothing is not a peer.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);

/// Connects process `process_id` to every other process of the cluster whose
/// processes listen at `addresses` (`host:port`, in process order), waiting at most
/// `timeout` for all of them.
///
/// Returns one entry per process: the connection to it, and `None` at
/// `process_id` itself. An address may list several `host:port`s separated by
/// whitespace: the process listens at each, and peers connect to the first.
pub fn connect(
    addresses: &[String],
    process_id: usize,
    timeout: Duration,
) -> Result<Vec<Option<TcpStream>>> {
    let count = addresses.len();
    if process_id >= count {
        return Err(RiffleError::Execution(format!(
            "process id {process_id} is out of range: the cluster has {count} address(es)"
        )));
    }
    let deadline = Instant::now() + timeout;
    // Listen first, so that peers with larger ids find this process as soon as
    // possible; their connections wait in the listen queue until accepted below.
    let own = &addresses[process_id];
    let listeners = own
        .split_whitespace()
        .map(|address| {
            let listener = TcpListener::bind(address).map_err(|e| {
                RiffleError::Execution(format!(
                    "process {process_id} cannot listen at {address}: {e}"
                ))
            })?;
            listener.set_nonblocking(true).map_err(|e| {
                RiffleError::Execution(format!(
                    "process {process_id} cannot poll its listener at {address}: {e}"
                ))
            })?;
            Ok(listener)
        })
        .collect::<Result<Vec<_>>>()?;
    if listeners.is_empty() {
        return Err(RiffleError::Execution(format!(
            "process {process_id} has an empty address"
        )));
    }
    let mut sockets: Vec<Option<TcpStream>> = (0..count).map(|_| None).collect();
    for (peer, address) in addresses.iter().enumerate().take(process_id) {
        sockets[peer] = Some(call(address, peer, process_id, deadline, timeout)?);
    }
    accept(&listeners, own, process_id, &mut sockets, deadline, timeout)?;
    Ok(sockets)
}

/// Timely's allocators for `workers` worker threads in process `process_id`,
/// exchanging with the other processes over `sockets` (as [`connect`] made them),
/// and the guard that owns the send and receive threads.
pub(crate) fn allocators(
    sockets: Vec<Option<TcpStream>>,
    process_id: usize,
    workers: usize,
) -> Result<(Vec<AllocatorBuilder>, CommsGuard)> {
    let hooks = timely::communication::Hooks::default();
    let local =
        ProcessBuilder::new_typed_vector(workers, hooks.refill.clone(), hooks.spill.clone());
    let (builders, guard) = initialize_networking_from_sockets(
        local, sockets, process_id, workers, hooks,
    )
    .map_err(|e| {
        RiffleError::Execution(format!(
            "process {process_id} cannot start its network threads: {e}"
        ))
    })?;
    Ok((
        builders.into_iter().map(AllocatorBuilder::Tcp).collect(),
        guard,
    ))
}

/// Connects to process `peer` at `address` and says who is calling, trying again
/// while the peer is not listening yet.
fn call(
    address: &str,
    peer: usize,
    process_id: usize,
    deadline: Instant,
    timeout: Duration,
) -> Result<TcpStream> {
    let target = address.split_whitespace().next().unwrap_or(address);
    let mut backoff = Backoff::new(RETRY_FIRST);
    loop {
        let last_error = match attempt(target, deadline) {
            Ok(mut stream) => {
                let greeted = stream
                    .set_nodelay(true)
                    .and_then(|()| stream.write_all(&(process_id as u64).to_be_bytes()));
                match greeted {
                    Ok(()) => return Ok(stream),
                    Err(e) => e,
                }
            }
            Err(e) => e,
        };
        let now = Instant::now();
        if now >= deadline {
            return Err(RiffleError::Execution(format!(
                "process {process_id} could not connect to process {peer} at {target} \
                 within {timeout:?}: {last_error}"
            )));
        }
        backoff.sleep(now, deadline);
    }
}

/// One try at connecting to `target`, at each of the addresses it resolves to.
fn attempt(target: &str, deadline: Instant) -> std::io::Result<TcpStream> {
    let mut last = std::io::Error::new(
        ErrorKind::NotFound,
        format!("{target} resolves to no address"),
    );
    for address in target.to_socket_addrs()? {
        let left = deadline.saturating_duration_since(Instant::now());
        let limit = left.min(ATTEMPT_MAX).max(Duration::from_millis(1));
        match TcpStream::connect_timeout(&address, limit) {
            Ok(stream) => return Ok(stream),
            Err(e) => last = e,
        }
    }
    Err(last)
}

/// Accepts the connections of every process with a larger id than `process_id`,
/// placing each in `sockets` by the id it sends.
fn accept(
    listeners: &[TcpListener],
    own: &str,
    process_id: usize,
    sockets: &mut [Option<TcpStream>],
    deadline: Instant,
    timeout: Duration,
) -> Result<()> {
    let count = sockets.len();
    let mut backoff = Backoff::new(ACCEPT_FIRST);
    let missing = |sockets: &[Option<TcpStream>]| -> Vec<usize> {
        (process_id + 1..count)
            .filter(|&peer| sockets[peer].is_none())
            .collect()
    };
    while !missing(sockets).is_empty() {
        let mut accepted = false;
        for listener in listeners {
            match listener.accept() {
                Ok((stream, from)) => {
                    accepted = true;
                    match greeting(&stream) {
                        Ok(peer)
                            if peer > process_id && peer < count && sockets[peer].is_none() =>
                        {
                            sockets[peer] = Some(stream);
                        }
                        Ok(peer) => tracing::warn!(
                            "process {process_id}: ignored a connection from {from} that \
                             says it is process {peer} (expected one of {:?})",
                            missing(sockets)
                        ),
                        Err(e) => tracing::warn!(
                            "process {process_id}: ignored a connection from {from} that \
                             did not say which process it is: {e}"
                        ),
                    }
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => {}
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => {
                    return Err(RiffleError::Execution(format!(
                        "process {process_id} cannot accept connections at {own}: {e}"
                    )));
                }
            }
        }
        if accepted {
            backoff.pause = ACCEPT_FIRST;
            continue;
        }
        let now = Instant::now();
        if now >= deadline {
            let missing = missing(sockets)
                .iter()
                .map(|p| p.to_string())
                .collect::<Vec<_>>()
                .join(", ");
            return Err(RiffleError::Execution(format!(
                "process {process_id} (listening at {own}) waited {timeout:?} for process(es) \
                 {missing} to connect"
            )));
        }
        backoff.sleep(now, deadline);
    }
    Ok(())
}

/// Reads the process id an accepted connection starts with, and leaves the
/// connection as timely expects it: blocking, without a read timeout.
fn greeting(stream: &TcpStream) -> std::io::Result<usize> {
    stream.set_nonblocking(false)?;
    stream.set_nodelay(true)?;
    stream.set_read_timeout(Some(HANDSHAKE_TIMEOUT))?;
    let mut id = [0u8; 8];
    (&*stream).read_exact(&mut id)?;
    stream.set_read_timeout(None)?;
    Ok(usize::try_from(u64::from_be_bytes(id)).unwrap_or(usize::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addresses(n: usize) -> Vec<String> {
        crate::run::free_loopback_addresses(n).expect("free ports")
    }

    /// Every process of a cluster started at once, in threads: each ends with a
    /// connection to every other, and the bytes written on one arrive on the other.
    #[test]
    fn every_pair_of_processes_is_connected_quickly() {
        let addresses = addresses(3);
        let started = Instant::now();
        // The last process first: it waits for the others to listen.
        let handles: Vec<_> = (0..3)
            .rev()
            .map(|id| {
                let addresses = addresses.clone();
                std::thread::spawn(move || connect(&addresses, id, Duration::from_secs(10)))
            })
            .collect();
        let mut all: Vec<Vec<Option<TcpStream>>> = handles
            .into_iter()
            .map(|h| h.join().expect("no panic").expect("connected"))
            .collect();
        all.reverse();
        assert!(
            started.elapsed() < Duration::from_millis(900),
            "{:?}",
            started.elapsed()
        );
        for (id, sockets) in all.iter().enumerate() {
            assert_eq!(sockets.len(), 3);
            for (peer, socket) in sockets.iter().enumerate() {
                assert_eq!(socket.is_some(), peer != id, "process {id}, peer {peer}");
            }
        }
        // Process 2 writes to process 0, which reads it on its socket for 2.
        let mut to_zero = all[2][0].take().unwrap();
        to_zero.write_all(b"hello").unwrap();
        let mut got = [0u8; 5];
        all[0][2].as_ref().unwrap().read_exact(&mut got).unwrap();
        assert_eq!(&got, b"hello");
    }

    #[test]
    fn a_peer_that_never_listens_is_named_when_the_deadline_passes() {
        let addresses = addresses(2);
        let started = Instant::now();
        let err = connect(&addresses, 1, Duration::from_millis(200)).unwrap_err();
        assert!(started.elapsed() < Duration::from_secs(3));
        let text = err.to_string();
        assert!(
            text.contains("process 1 could not connect to process 0")
                && text.contains(&addresses[0]),
            "{text}"
        );
    }

    #[test]
    fn a_peer_that_never_calls_is_named_when_the_deadline_passes() {
        let addresses = addresses(3);
        let err = connect(&addresses, 0, Duration::from_millis(100)).unwrap_err();
        let text = err.to_string();
        assert!(
            text.contains("process 0 (listening at")
                && text.contains("process(es) 1, 2 to connect"),
            "{text}"
        );
    }

    #[test]
    fn a_stranger_is_ignored_and_the_peer_still_joins() {
        let addresses = addresses(2);
        let zero = {
            let addresses = addresses.clone();
            std::thread::spawn(move || connect(&addresses, 0, Duration::from_secs(10)))
        };
        // A stranger that claims an id out of range, then the real process 1.
        let stranger = loop {
            match TcpStream::connect(&addresses[0]) {
                Ok(s) => break s,
                Err(_) => std::thread::sleep(Duration::from_millis(2)),
            }
        };
        (&stranger).write_all(&99u64.to_be_bytes()).unwrap();
        let one = connect(&addresses, 1, Duration::from_secs(10)).expect("process 1");
        let zero = zero.join().unwrap().expect("process 0");
        assert!(zero[1].is_some() && one[0].is_some());
    }

    #[test]
    fn an_address_that_cannot_be_bound_is_named() {
        let taken = TcpListener::bind("127.0.0.1:0").unwrap();
        let address = taken.local_addr().unwrap().to_string();
        let err = connect(std::slice::from_ref(&address), 0, Duration::from_secs(1)).unwrap_err();
        assert!(
            err.to_string()
                .contains(&format!("process 0 cannot listen at {address}")),
            "{err}"
        );
    }
}
