//! The standalone `riffle` binary: the app entry with the bundled examples registered.

use std::process::ExitCode;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let mut app = riffle_cli::App::new("riffle").with_benchmarks();
    for example in riffle_examples::dataflows() {
        app = app.dataflow(example.name, example.about, example.build);
    }
    for example in riffle_examples::flows::flows() {
        app = app.flow(example.name, example.about, example.build);
    }
    for build in riffle_examples::pipelines::pipelines() {
        app = app.pipeline(build);
    }
    app.main()
}
