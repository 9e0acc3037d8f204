//! A word count through the public API, as a library user writes it, on whatever
//! allocator the program has: this example sets none, so it runs on the system's
//! (glibc's `malloc` on Linux), where the `riffle` binary runs on mimalloc.
//!
//! The words follow Zipf's law over a vocabulary (word `k` drawn with weight `1/k`),
//! 10 to a line, generated in memory before the clock starts. Each round counts them
//! three times: with a dataflow (`flat_map` split, `count_final`), with one that
//! counts each line's words by reference (`count_final_each`), and with a plain
//! single-threaded `HashMap<String, u64>` (a `String` only for a word not seen yet),
//! the limit one core reaches. Each is timed by the wall clock and by the CPU time
//! the process used (steadier where other work shares the cores). The rounds repeat in the same process, so a slowdown
//! that grows with each run (a fragmented heap) shows.
//!
//! ```text
//! cargo run --release -p riffle --example zipf_wordcount -- [WORDS] [VOCABULARY] [WORKERS] [ROUNDS]
//! ```
//!
//! Defaults: 20,000,000 words, 1,000,000 words of vocabulary, 1 worker, 3 rounds.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use riffle::operators::keyed::Tally;
use riffle::sinks::TestingSink;
use riffle::sources::GeneratorSource;
use riffle::{Dataflow, Execution};

const WORDS_PER_LINE: usize = 10;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<usize> = std::env::args()
        .skip(1)
        .map(|a| a.replace('_', "").parse())
        .collect::<Result<_, _>>()?;
    let arg = |i: usize, default: usize| args.get(i).copied().unwrap_or(default);
    let (words, vocabulary, workers, rounds) =
        (arg(0, 20_000_000), arg(1, 1_000_000), arg(2, 1), arg(3, 3));
    let lines = Arc::new(zipf_lines(words, vocabulary));
    println!(
        "{words} words over a vocabulary of {vocabulary}, {} lines, {workers} worker(s)",
        lines.len()
    );
    for round in 1..=rounds {
        let (started, cpu) = (Instant::now(), cpu_seconds());
        let distinct = dataflow_count(&lines, workers, Split::FlatMap)?;
        let (dataflow, dataflow_cpu) = (started.elapsed().as_secs_f64(), cpu_seconds() - cpu);
        let (started, cpu) = (Instant::now(), cpu_seconds());
        let each_distinct = dataflow_count(&lines, workers, Split::Each)?;
        let (each, each_cpu) = (started.elapsed().as_secs_f64(), cpu_seconds() - cpu);
        let (started, cpu) = (Instant::now(), cpu_seconds());
        let baseline_distinct = hashmap_count(&lines);
        let (baseline, baseline_cpu) = (started.elapsed().as_secs_f64(), cpu_seconds() - cpu);
        assert_eq!(distinct, baseline_distinct, "the two counts disagree");
        assert_eq!(each_distinct, baseline_distinct, "the two counts disagree");
        let rate = |seconds: f64| words as f64 / seconds / 1e6;
        println!(
            "round {round}: flat_map + count_final {:.2}M words/s ({dataflow:.2} s, CPU {dataflow_cpu:.2} s), count_final_each {:.2}M words/s ({each:.2} s, CPU {each_cpu:.2} s), HashMap {:.2}M words/s ({baseline:.2} s, CPU {baseline_cpu:.2} s); of the HashMap's: {:.2} and {:.2} (by CPU {:.2} and {:.2}), {distinct} distinct words",
            rate(dataflow),
            rate(each),
            rate(baseline),
            baseline / dataflow,
            baseline / each,
            baseline_cpu / dataflow_cpu,
            baseline_cpu / each_cpu,
        );
    }
    Ok(())
}

/// How a dataflow splits the lines into words to count.
#[derive(Clone, Copy)]
enum Split {
    /// `flat_map` to a `String` per word (collected into a `Vec` per line), then
    /// `count_final`: the way most dataflow APIs put it.
    FlatMap,
    /// `count_final_each`: each word of a line counted as a `&str`.
    Each,
}

/// Counts the words with a dataflow; returns how many distinct words it counted.
fn dataflow_count(
    lines: &Arc<Vec<String>>,
    workers: usize,
    split: Split,
) -> Result<usize, Box<dyn std::error::Error>> {
    let flow = Dataflow::new("zipf-wordcount");
    let out = TestingSink::new();
    let source_lines = lines.clone();
    let input = flow.input_dynamic(
        "lines",
        GeneratorSource::new(lines.len() as u64, move |i| {
            source_lines[i as usize].clone()
        })
        .batch_size(1024),
    )?;
    let counts = match split {
        Split::FlatMap => input
            .flat_map("split", |line: String| {
                line.split(' ').map(str::to_owned).collect::<Vec<_>>()
            })?
            .count_final("count", |word: String| word)?,
        Split::Each => {
            input.count_final_each("count", |line: String, words: &mut Tally<String>| {
                line.split(' ').for_each(|word| words.add(word))
            })?
        }
    };
    counts.output("out", out.clone())?;
    Execution::new().workers(workers).run(&flow)?;
    Ok(out.take().len())
}

/// Counts the words with one `HashMap` on this thread.
fn hashmap_count(lines: &[String]) -> usize {
    let mut counts: HashMap<String, u64> = HashMap::new();
    for line in lines {
        for word in line.split(' ') {
            match counts.get_mut(word) {
                Some(n) => *n += 1,
                None => {
                    counts.insert(word.to_owned(), 1);
                }
            }
        }
    }
    counts.len()
}

/// `words` words drawn by Zipf's law over `vocabulary` words, `WORDS_PER_LINE` a line.
fn zipf_lines(words: usize, vocabulary: usize) -> Vec<String> {
    let mut cumulative = Vec::with_capacity(vocabulary);
    let mut total = 0.0;
    for k in 1..=vocabulary {
        total += 1.0 / k as f64;
        cumulative.push(total);
    }
    let mut state = 0x5EED_u64;
    let mut line = String::new();
    let mut lines = Vec::with_capacity(words.div_ceil(WORDS_PER_LINE));
    for i in 0..words {
        let u = (splitmix64(&mut state) >> 11) as f64 / (1u64 << 53) as f64 * total;
        let k = cumulative.partition_point(|&c| c < u);
        if !line.is_empty() {
            line.push(' ');
        }
        line.push_str(&format!("w{k}"));
        if (i + 1) % WORDS_PER_LINE == 0 || i + 1 == words {
            lines.push(std::mem::take(&mut line));
        }
    }
    lines
}

/// The CPU time this process has used, user and system, in seconds (from
/// `/proc/self/stat`, at the kernel's clock tick; 0 where there is no `/proc`): on a
/// busy machine a steadier measure than the wall clock.
fn cpu_seconds() -> f64 {
    let Ok(stat) = std::fs::read_to_string("/proc/self/stat") else {
        return 0.0;
    };
    // The fields after the command name (which may hold spaces) in parentheses;
    // utime and stime are the 14th and 15th fields of the line.
    let after = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    (ticks(11) + ticks(12)) / 100.0
}

fn splitmix64(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}
