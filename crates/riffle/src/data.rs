//! What may travel on a stream ([`Data`]) and what may key state ([`Key`]).
//!
//! Items cross threads and, in a cluster, processes, so they must be `Send`, `Clone`
//! and serde-serializable. They must also be `Debug`, so that an error can show the
//! item it happened on. Both traits are implemented for every type that qualifies;
//! nobody implements them by hand.

use std::fmt::Debug;
use std::hash::Hash;

use serde::Serialize;
use serde::de::DeserializeOwned;

/// A type that can travel on a stream.
pub trait Data: Clone + Send + Debug + Serialize + DeserializeOwned + 'static {}
impl<T: Clone + Send + Debug + Serialize + DeserializeOwned + 'static> Data for T {}

/// A type that can key state: hashed with the stable hash of [`crate::exchange`] to
/// choose the worker that owns the key.
pub trait Key: Data + Hash + Eq {}
impl<T: Data + Hash + Eq> Key for T {}
