//! A Riffle project of its own: this binary registers its pipeline with
//! [`riffle_cli::App`] and so answers every `riffle` subcommand.
//!
//! ```text
//! cargo run -p riffle-example-project -- run --workflow inventory --config prod
//! cargo run -p riffle-example-project -- runs list
//! cargo run -p riffle-example-project -- cache ls
//! ```

use std::process::ExitCode;

use riffle_cli::App;

mod inventory;
mod maintenance;

fn main() -> ExitCode {
    App::new("inventory")
        .pipeline(inventory::pipeline)
        .pipeline(maintenance::pipeline)
        .main()
}
