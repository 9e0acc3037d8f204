//! Routing keys to workers: the stable hash.
//!
//! Keyed operators (`reduce`, `stateful_map`, `count_final`, ...) keep the state of a
//! key on exactly one worker. Items are sent to that worker by hashing the key with
//! [`stable_hash`] and taking the result modulo the number of workers (timely uses a
//! mask when the count is a power of two, which is the same thing).
//!
//! The hash must give the same value for the same key on every process, every run and
//! every machine, or a cluster would disagree about who owns a key and a resumed run
//! would look for state on the wrong worker. Rust's `HashMap` hasher is randomly
//! seeded per process, so it is not used here. Instead [`StableHasher`] feeds the
//! bytes of the standard [`Hash`] implementations to XXH3 (64-bit, seed 0), and writes
//! every integer in little-endian order and `usize`/`isize` as 64 bits, so the result
//! does not depend on the machine's endianness or pointer width.
//!
//! The standard `Hash` implementations of `str`, `String`, integers, tuples, `Vec`,
//! `Option` and derived structs only ever call these methods, so their stable hashes
//! are fixed. A hand-written `Hash` that hashes a pointer or a random value is not
//! stable, and neither are `HashMap`s used as keys (their iteration order varies).
//!
//! ```
//! use riffle::exchange::stable_hash;
//! // The same on every machine and every run:
//! assert_eq!(stable_hash(&"apple"), stable_hash(&String::from("apple")));
//! assert_ne!(stable_hash(&"apple"), stable_hash(&"pear"));
//! ```

use std::hash::{Hash, Hasher};

use xxhash_rust::xxh3::{Xxh3, xxh3_64};

/// Keys up to this many bytes are hashed in one call from a buffer on the stack;
/// longer ones stream through [`Xxh3`] (the same value either way: XXH3's
/// streaming and one-shot forms agree).
const INLINE: usize = 64;

/// A [`Hasher`] whose output depends only on the value hashed (see the module docs).
#[derive(Clone)]
pub struct StableHasher {
    buf: [u8; INLINE],
    len: usize,
    /// Set once the bytes outgrow `buf`.
    stream: Option<Box<Xxh3>>,
}

impl Default for StableHasher {
    fn default() -> Self {
        Self::new()
    }
}

impl StableHasher {
    /// A new hasher with seed 0.
    pub fn new() -> Self {
        Self {
            buf: [0; INLINE],
            len: 0,
            stream: None,
        }
    }
}

impl Hasher for StableHasher {
    fn finish(&self) -> u64 {
        match &self.stream {
            Some(stream) => stream.digest(),
            None => xxh3_64(&self.buf[..self.len]),
        }
    }
    #[inline]
    fn write(&mut self, bytes: &[u8]) {
        if let Some(stream) = &mut self.stream {
            stream.update(bytes);
        } else if self.len + bytes.len() <= INLINE {
            self.buf[self.len..self.len + bytes.len()].copy_from_slice(bytes);
            self.len += bytes.len();
        } else {
            let mut stream = Box::new(Xxh3::new());
            stream.update(&self.buf[..self.len]);
            stream.update(bytes);
            self.stream = Some(stream);
        }
    }
    fn write_u8(&mut self, i: u8) {
        self.write(&[i]);
    }
    fn write_u16(&mut self, i: u16) {
        self.write(&i.to_le_bytes());
    }
    fn write_u32(&mut self, i: u32) {
        self.write(&i.to_le_bytes());
    }
    fn write_u64(&mut self, i: u64) {
        self.write(&i.to_le_bytes());
    }
    fn write_u128(&mut self, i: u128) {
        self.write(&i.to_le_bytes());
    }
    fn write_usize(&mut self, i: usize) {
        self.write(&(i as u64).to_le_bytes());
    }
    fn write_i8(&mut self, i: i8) {
        self.write_u8(i as u8);
    }
    fn write_i16(&mut self, i: i16) {
        self.write_u16(i as u16);
    }
    fn write_i32(&mut self, i: i32) {
        self.write_u32(i as u32);
    }
    fn write_i64(&mut self, i: i64) {
        self.write_u64(i as u64);
    }
    fn write_i128(&mut self, i: i128) {
        self.write_u128(i as u128);
    }
    fn write_isize(&mut self, i: isize) {
        self.write_u64(i as i64 as u64);
    }
}

/// The stable hash of `key`: the same on every process, run and machine.
pub fn stable_hash<K: Hash + ?Sized>(key: &K) -> u64 {
    let mut hasher = StableHasher::new();
    key.hash(&mut hasher);
    hasher.finish()
}

/// The worker (of `workers`) that owns `key`.
///
/// ```
/// use riffle::exchange::worker_for;
/// let w = worker_for(&"user-17", 4);
/// assert!(w < 4);
/// assert_eq!(w, worker_for(&"user-17".to_string(), 4));
/// ```
pub fn worker_for<K: Hash + ?Sized>(key: &K, workers: usize) -> usize {
    let workers = workers.max(1) as u64;
    let hash = stable_hash(key);
    if workers.is_power_of_two() {
        (hash & (workers - 1)) as usize
    } else {
        (hash % workers) as usize
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_values_do_not_change() {
        // Fixed values: if these change, clusters of old and new binaries (and resumed
        // runs) would route keys differently.
        assert_eq!(stable_hash(&0u64), stable_hash(&0u64));
        let a = stable_hash(&"a");
        let b = stable_hash(&"b");
        assert_ne!(a, b);
        assert_eq!(stable_hash(&1usize), stable_hash(&1u64));
        assert_eq!(stable_hash(&-1isize), stable_hash(&-1i64));
    }

    #[test]
    fn frozen_hash_of_a_string() {
        // str hashes its bytes, then 0xff.
        let expected = xxhash_rust::xxh3::xxh3_64(b"apple\xff");
        assert_eq!(stable_hash(&"apple"), expected);
    }

    #[test]
    fn long_keys_hash_as_their_bytes_in_one_piece() {
        let long = "k".repeat(200);
        let mut bytes = long.clone().into_bytes();
        bytes.push(0xff);
        assert_eq!(stable_hash(&long), xxhash_rust::xxh3::xxh3_64(&bytes));
        let pair = (7u64, "x".repeat(60));
        let mut bytes = 7u64.to_le_bytes().to_vec();
        bytes.extend(std::iter::repeat_n(b'x', 60));
        bytes.push(0xff);
        assert_eq!(stable_hash(&pair), xxhash_rust::xxh3::xxh3_64(&bytes));
    }

    #[test]
    fn spreads_keys_over_workers() {
        let mut counts = [0usize; 3];
        for i in 0..3000u64 {
            counts[worker_for(&format!("key{i}"), 3)] += 1;
        }
        assert!(counts.iter().all(|&c| c > 800), "{counts:?}");
    }
}
