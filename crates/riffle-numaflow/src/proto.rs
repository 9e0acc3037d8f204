//! The generated protobuf messages and gRPC stubs of Numaflow's v1 protocol.
//!
//! The `.proto` files live in the crate's `proto/` folder and are compiled at build
//! time by `protox` (no `protoc` needed). Each module mirrors one protobuf package:
//! `map::v1` is the package `map.v1`, whose service path on the wire is
//! `/map.v1.Map/MapFn`. Most users never touch these types: the traits in
//! [`crate::udf`] and the data model in [`crate::datum`] wrap them.
#![allow(missing_docs, clippy::all, clippy::pedantic)]

/// Metadata shared by every UDF kind.
pub mod common {
    tonic::include_proto!("common");
}

macro_rules! package {
    ($module:ident, $package:literal) => {
        #[doc = concat!("The `", $package, "` package.")]
        pub mod $module {
            pub mod v1 {
                tonic::include_proto!($package);
            }
        }
    };
}

package!(map, "map.v1");
package!(sourcetransformer, "sourcetransformer.v1");
package!(reduce, "reduce.v1");
package!(accumulator, "accumulator.v1");
package!(sink, "sink.v1");
package!(source, "source.v1");
package!(sideinput, "sideinput.v1");
