//! Helpers shared by the tests that run the real `riffle` binary.

#![allow(dead_code)]

pub mod sigkill;

/// Process output as text.
pub fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[allow(unused_imports)]
pub use riffle::testing::sorted_lines;
