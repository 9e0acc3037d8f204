//! Which partition a keyed record goes to: the same as Kafka's Java clients
//! (murmur2 of the key, made positive, modulo the partition count), so Riffle and
//! the other producers of a topic agree on where a key lives.

/// Kafka's murmur2 hash of `data`.
fn murmur2(data: &[u8]) -> i32 {
    const SEED: u32 = 0x9747_b28c;
    const M: u32 = 0x5bd1_e995;
    const R: u32 = 24;
    let len = data.len();
    let mut h: u32 = SEED ^ (len as u32);
    let mut chunks = data.chunks_exact(4);
    for chunk in &mut chunks {
        let mut k = u32::from_le_bytes([chunk[0], chunk[1], chunk[2], chunk[3]]);
        k = k.wrapping_mul(M);
        k ^= k >> R;
        k = k.wrapping_mul(M);
        h = h.wrapping_mul(M);
        h ^= k;
    }
    let rest = chunks.remainder();
    if rest.len() >= 3 {
        h ^= (rest[2] as u32) << 16;
    }
    if rest.len() >= 2 {
        h ^= (rest[1] as u32) << 8;
    }
    if !rest.is_empty() {
        h ^= rest[0] as u32;
        h = h.wrapping_mul(M);
    }
    h ^= h >> 13;
    h = h.wrapping_mul(M);
    h ^= h >> 15;
    h as i32
}

/// The partition (of `partitions`) Kafka's default partitioner gives `key`.
///
/// ```
/// use riffle_connectors::kafka::murmur2_partition;
/// // The same as the Java client's `Utils.toPositive(Utils.murmur2(key)) % 3`.
/// assert_eq!(murmur2_partition(b"a", 3), 1);
/// assert!(murmur2_partition(b"any key", 4) < 4);
/// ```
pub fn murmur2_partition(key: &[u8], partitions: usize) -> usize {
    ((murmur2(key) & 0x7fff_ffff) as u32 as usize) % partitions.max(1)
}

#[cfg(test)]
mod tests {
    use super::murmur2;

    #[test]
    fn matches_the_java_client() {
        // Values of org.apache.kafka.common.utils.Utils.murmur2 for these keys.
        assert_eq!(murmur2(b"21"), -973932308);
        assert_eq!(murmur2(b"foobar"), -790332482);
        assert_eq!(murmur2(b"a-little-bit-long-string"), -985981536);
        assert_eq!(murmur2(b"a-little-bit-longer-string"), -1486304829);
        assert_eq!(
            murmur2(b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8"),
            -58897971
        );
        assert_eq!(murmur2(b"abc"), 479470107);
        assert_eq!(murmur2(b""), 275646681);
    }
}
