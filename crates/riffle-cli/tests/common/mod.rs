//! Helpers shared by the tests that run the real `riffle` binary.

#![allow(dead_code)]

use std::path::Path;

pub mod sigkill;

/// Process output as text.
pub fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Every line of every file in `dir`, sorted.
pub fn sorted_lines(dir: &Path) -> Vec<String> {
    let mut lines = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let content = std::fs::read_to_string(entry.unwrap().path()).unwrap();
        lines.extend(content.lines().map(str::to_string));
    }
    lines.sort();
    lines
}
