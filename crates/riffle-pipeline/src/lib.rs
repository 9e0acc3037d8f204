//! riffle-pipeline (being written).
