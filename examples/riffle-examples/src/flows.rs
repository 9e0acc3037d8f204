//! The bundled dataflows.

/// A bundled dataflow: its name, one line about it, and its builder.
pub struct FlowExample {
    pub name: &'static str,
    pub about: &'static str,
}

/// Every bundled dataflow.
pub fn flows() -> Vec<FlowExample> {
    Vec::new()
}
