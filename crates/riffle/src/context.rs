//! [`DataflowContext`]: what a registered flow's builder receives from the command line.
//!
//! `riffle run NAME -P key=value` builds the flow registered as `NAME` with a context
//! holding those parameters. The builder may also ask for counters; `riffle run`
//! prints each as a throughput line when the run ends.
//!
//! ```
//! use riffle::context::DataflowContext;
//! let ctx = DataflowContext::new([("input".to_string(), "a.txt".to_string())].into());
//! assert_eq!(ctx.param_or("input", "default.txt"), "a.txt");
//! assert_eq!(ctx.parsed_param_or("top", 10usize)?, 10);
//! let words = ctx.counter("words");
//! words.fetch_add(3, std::sync::atomic::Ordering::Relaxed);
//! # Ok::<(), riffle::RiffleError>(())
//! ```

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// A named counter: the unit it counts and its value.
type Counter = (String, Arc<AtomicU64>);

/// What a dataflow builder receives: the `-P key=value` parameters of `riffle run`,
/// and counters the flow can bump so that `riffle run` prints a throughput line.
#[derive(Debug, Clone, Default)]
pub struct DataflowContext {
    /// Parameters given as `-P key=value`.
    pub params: BTreeMap<String, String>,
    counters: Arc<Mutex<Vec<Counter>>>,
    /// The parameter names the builder asked for, given or not.
    asked: Arc<Mutex<BTreeSet<String>>>,
}

impl DataflowContext {
    /// A context with these parameters.
    pub fn new(params: BTreeMap<String, String>) -> Self {
        Self {
            params,
            counters: Default::default(),
            asked: Default::default(),
        }
    }

    /// A counter named `unit` (e.g. `words`): bump it from the flow's functions, and
    /// `riffle run` prints `N unit in S s (R unit/s)` when the run ends.
    pub fn counter(&self, unit: &str) -> Arc<AtomicU64> {
        let counter = Arc::new(AtomicU64::new(0));
        self.counters
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push((unit.to_string(), counter.clone()));
        counter
    }

    /// Prints the run's throughput line(s).
    pub fn report(&self, flow: &str, seconds: f64) {
        Self::report_counts(flow, seconds, &self.counts());
    }

    /// Each counter's unit and value, in the order they were made.
    pub fn counts(&self) -> Vec<(String, u64)> {
        let counters = self.counters.lock().unwrap_or_else(|p| p.into_inner());
        counters
            .iter()
            .map(|(unit, counter)| (unit.clone(), counter.load(Ordering::Relaxed)))
            .collect()
    }

    /// Prints throughput lines for `counts` (summed over the processes of a run, say)
    /// to stderr, in one write so that processes sharing it do not mix their lines.
    pub fn report_counts(flow: &str, seconds: f64, counts: &[(String, u64)]) {
        let mut text = String::new();
        if counts.is_empty() {
            text.push_str(&format!("{flow}: done in {seconds:.3} s\n"));
        }
        for (unit, n) in counts {
            let rate = if seconds > 0.0 {
                *n as f64 / seconds
            } else {
                0.0
            };
            text.push_str(&format!(
                "{flow}: {n} {unit} in {seconds:.3} s ({rate:.0} {unit}/s)\n"
            ));
        }
        let _ = std::io::Write::write_all(&mut std::io::stderr().lock(), text.as_bytes());
    }

    /// The parameters given that the builder never asked for (so far): with
    /// [`DataflowContext::asked_params`], what `riffle run` needs to refuse a typo such as
    /// `-P inptu=x` instead of ignoring it.
    ///
    /// ```
    /// use riffle::context::DataflowContext;
    /// let ctx = DataflowContext::new([("inptu".to_string(), "a.txt".to_string())].into());
    /// let _ = ctx.param_or("input", "default.txt");
    /// assert_eq!(ctx.unused_params(), ["inptu"]);
    /// assert_eq!(ctx.asked_params(), ["input"]);
    /// ```
    pub fn unused_params(&self) -> Vec<String> {
        let asked = self.asked.lock().unwrap_or_else(|p| p.into_inner());
        self.params
            .keys()
            .filter(|k| !asked.contains(*k))
            .cloned()
            .collect()
    }

    /// The parameter names the builder asked for, given or not, in order.
    pub fn asked_params(&self) -> Vec<String> {
        let asked = self.asked.lock().unwrap_or_else(|p| p.into_inner());
        asked.iter().cloned().collect()
    }

    fn ask(&self, key: &str) {
        self.asked
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(key.to_string());
    }

    /// The parameter `key`, if it was given.
    pub fn param(&self, key: &str) -> Option<String> {
        self.ask(key);
        self.params.get(key).cloned()
    }

    /// The parameter `key`, or `default` when it was not given.
    pub fn param_or(&self, key: &str, default: &str) -> String {
        self.ask(key);
        self.params
            .get(key)
            .cloned()
            .unwrap_or_else(|| default.to_string())
    }

    /// The parameter `key` parsed as `T`, or `default`; a value that does not parse is
    /// an error naming the parameter.
    pub fn parsed_param_or<T>(&self, key: &str, default: T) -> crate::Result<T>
    where
        T: std::str::FromStr,
        T::Err: std::fmt::Display,
    {
        self.ask(key);
        match self.params.get(key) {
            None => Ok(default),
            Some(text) => text.parse().map_err(|e| crate::RiffleError::InvalidFlow {
                flow: String::new(),
                reason: format!("parameter {key}={text:?} is not valid: {e}"),
            }),
        }
    }
}
