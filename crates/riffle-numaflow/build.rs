//! Compiles the Numaflow v1 protocol in `proto/` with a pure-Rust protobuf compiler
//! (protox), so building needs no `protoc` on the machine.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let files = [
        "map.proto",
        "transform.proto",
        "reduce.proto",
        "accumulator.proto",
        "sink.proto",
        "source.proto",
        "sideinput.proto",
    ];
    println!("cargo:rerun-if-changed=proto");
    let descriptors = protox::compile(files, ["proto"])?;
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        .compile_fds(descriptors)?;
    Ok(())
}
