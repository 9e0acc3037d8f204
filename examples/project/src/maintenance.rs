//! The `maintenance` pipeline: one long step that checks for cancellation, to show
//! what Ctrl-C does to a run (it stops, and the run is recorded as cancelled).

use std::time::{Duration, Instant};

use riffle_pipeline::Pipeline;

/// The pipeline this project registers.
pub fn pipeline() -> riffle_pipeline::Result<Pipeline> {
    let mut p = Pipeline::builder("maintenance");
    p.about("a long clean-up that stops cleanly on Ctrl-C");
    let swept = p
        .step("sweep", (), |ctx, ()| {
            let seconds: u64 = ctx.param("seconds")?;
            let start = Instant::now();
            let mut rounds = 0_u64;
            while start.elapsed() < Duration::from_secs(seconds) {
                if ctx.is_cancelled() {
                    return Err(format!("stopped after {rounds} rounds").into());
                }
                std::thread::sleep(Duration::from_millis(10));
                rounds += 1;
            }
            Ok(rounds)
        })
        .param("seconds", 30)
        .always_run()
        .output();
    p.step("summary", &swept, |_ctx, rounds: u64| {
        Ok(format!("{rounds} rounds"))
    });
    p.build()
}
