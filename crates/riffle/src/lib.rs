//! riffle (being written).
