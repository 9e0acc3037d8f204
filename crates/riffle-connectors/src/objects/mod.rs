//! Files in object stores: lines of the objects under a prefix in, new objects out,
//! exactly-once under a recovery store. S3, Google Cloud Storage, Azure Blob
//! Storage and local folders, through `object_store`.
//!
//! ## Source
//!
//! [`ObjectSource`] reads every object under a folder (`s3://bucket/prefix`,
//! `file:///data/in`, ...). Each object is a partition of the source, read line by
//! line from a ranged GET; its position (the byte offset after the last line
//! emitted, and the line number) is the partition's snapshot state, so a resumed
//! run goes on from exactly the committed line. A following source
//! ([`ObjectSource::tail`], the default) lists the folder again every 10 s and reads
//! the objects that appeared; `.tail(false)` reads what is there and ends (an empty
//! folder is then an error). Objects under a folder or with a name starting with
//! `_` or `.` are not read (a sink's staging area, hidden files). Lines are
//! decoded by a [`LineFormat`]: any [`Format`](crate::format::Format) (UTF-8
//! text by default, [`Json`](crate::format::Json) for JSON lines), or [`Csv`]
//! (`.csv::<T>()`) for CSV objects whose first line is their header: rows are
//! decoded into `T` by column name, so objects may order their columns
//! differently, and the header is kept in the partition's snapshot state so a
//! resume in the middle of an object decodes with it (read again from the object
//! when a state lacks it). A quoted CSV field holding a line break is not read
//! (each of its lines is refused, saying so). An undecodable line stops the run
//! with an error naming the object and the line, or, with
//! [`ObjectSource::dead_letters`], goes to the dead letters with them. Items are
//! [`ObjectLine`]s: the object, the line number (the header is line 1) and the
//! value.
//!
//! ```no_run
//! use riffle::Dataflow;
//! use riffle_connectors::objects::{ObjectSource, ObjectStoreSettings};
//!
//! #[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
//! struct Sale { id: u64, amount: f64 }
//!
//! let flow = Dataflow::new("sales");
//! flow.input("in", ObjectSource::new(ObjectStoreSettings::new("s3://shop/sales")).csv::<Sale>())?
//!     .map("amount", |l| l.value.amount.to_string())?
//!     .output("out", riffle::sinks::StdOutSink::new())?;
//! # Ok::<(), riffle::RiffleError>(())
//! ```
//!
//! ## Sink
//!
//! [`ObjectSink`] writes items into new objects, from [`ObjectSink::parts`]
//! partitions, each object encoded by a [`FileEncoding`]: [`Lines`] (each item one
//! line) by default, Parquet files with `tables::ParquetFiles` (feature `tables`). No object is ever visible half written (a PUT
//! is atomic, and so is a local rename):
//!
//! - Without a recovery store, each partition puts what it got into a new object
//!   every time the flow's epoch moves on: **at-least-once** (a crash after the put
//!   and before the source's commit writes those lines again, in another object).
//! - With a recovery store, each partition stages its lines at every snapshot
//!   (`_staging/NAME`) and the commit hook moves them into place (copy, then
//!   delete) once the store has committed the snapshot. A resumed partition moves
//!   what its committed state had staged, and writes anything after it again under
//!   the same names, so every line is in place **exactly once**.
//!
//! Objects are named `{step}-{partition}-{run}-{n}{suffix}`, `run` being fixed
//! for the life of a recovery store, so two stores never overwrite each other.
//!
//! ```no_run
//! use riffle::Dataflow;
//! use riffle_connectors::format::Json;
//! use riffle_connectors::objects::{ObjectSink, ObjectSource, ObjectStoreSettings};
//!
//! let flow = Dataflow::new("clean");
//! flow.input("in", ObjectSource::new(ObjectStoreSettings::new("s3://events/raw")).format(Json::<serde_json::Value>::new()))?
//!     .filter_map("valid", |l| l.value.get("user").map(|u| u.to_string()))?
//!     .output("out", ObjectSink::new(ObjectStoreSettings::new("s3://events/users")).parts(4))?;
//! # Ok::<(), riffle::RiffleError>(())
//! ```
//!
//! ## A store that goes away
//!
//! The source's listings and reads and the sink's puts, copies and deletes are
//! asked again every 500 ms while the store does not answer (a restart, a
//! network cut), for a patience of 60 s ([`ObjectSource::patience`],
//! [`ObjectSink::patience`]), said once on stderr; then the run fails naming the
//! folder's URL. Every such request is safe to repeat: see [`went_away`] and the
//! sink's module docs.
//!
//! ## Managed prefixes
//!
//! [`admin`] has the functions a Flow's `plan`/`apply`/`destroy` calls for a
//! folder it declares: [`admin::create_prefix`] (the store answers and takes a
//! write there; S3 has no folders, so it puts an empty marker object),
//! [`admin::prefix_exists`], [`admin::list_objects`] and [`admin::delete_prefix`]
//! (every object under it, staged ones included).
//!
//! ## Settings
//!
//! [`ObjectStoreSettings`] are the folder's URL and the store's non-secret
//! options; credentials come from the provider's environment variables
//! (`AWS_ACCESS_KEY_ID`, ...), never from settings.

pub mod admin;
mod csv_rows;
mod encoding;
mod line_format;
pub(crate) mod outage;
mod partitions;
mod settings;
mod sink;
mod source;
pub mod testing;

pub use csv_rows::{Csv, CsvObject};
pub use encoding::{FileEncoding, Lines};
pub use line_format::LineFormat;
pub use outage::{PATIENCE, went_away};
#[cfg(feature = "tables")]
pub(crate) use partitions::{ObjectPart, ObjectParts, StoreAt};
#[cfg(feature = "tables")]
pub(crate) use settings::Folder;
pub use settings::ObjectStoreSettings;
#[cfg(feature = "tables")]
pub(crate) use sink::new_run;
pub use sink::{ObjectSink, ObjectSinkPartition, ObjectSinkState, STAGING};
pub use source::{ObjectLine, ObjectPosition, ObjectSource, ObjectSourcePartition};
