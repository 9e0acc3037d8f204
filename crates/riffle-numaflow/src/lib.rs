//! riffle-numaflow (being written).
