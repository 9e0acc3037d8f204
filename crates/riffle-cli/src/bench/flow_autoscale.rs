//! The `flow-autoscale` workload: a backlog in front of a slow consumer, and
//! what its autoscaler does about it, second by second.
//!
//! **`riffle bench flow-autoscale -P brokers=HOST:PORT`** fills a Kafka topic of
//! `-P partitions=N` (default 4) with `--items` records (default 200,000; filled
//! once and reused) and starts a Flow whose one consumer reads it from the
//! start with a fresh group, waiting `-P work_us=N` microseconds per record
//! (default 50: a lookup, say; waiting rather than computing, so replicas do
//! not fight for the cores), under `Autoscale::new(-P min=1, --workers)` (the
//! most replicas; at least 2), burning within `-P burn_s=2` seconds, scaling
//! down after `-P down_s=3` quiet seconds, looking every 500 ms.
//!
//! Every 250 ms it samples the replicas and the backlog (the group's lag) until
//! every record was handled and the pool was back at its minimum for a second
//! (or 180 s passed: then an error). One report, phase `burn`: `items` handled,
//! `seconds` until the last one, `peak_replicas`, `scale_changes` (how often the
//! count moved: a pool that flaps moves many times), `back_to_min_s` (when the
//! pool reached its minimum again after the backlog was gone), and `timeline`
//! (`[seconds, replicas, backlog]` triples). `-P plot=PATH` also writes the
//! timeline as an SVG chart (backlog as an area, replicas as a step line).

use std::fmt::Write as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use riffle::sinks::TestingSink;
use riffle_connectors::kafka::{KafkaMessage, KafkaSettings, KafkaSource, StartOffset};
use riffle_flow::{Autoscale, Flow, RunOptions};

use super::kafka::fill;
use super::{BenchArgs, BenchReport, param};

/// Records waiting unless `--items` says otherwise.
const ITEMS: u64 = 200_000;
/// How often the bench samples the pool.
const SAMPLE: Duration = Duration::from_millis(250);
/// The longest a run may take.
const LIMIT: Duration = Duration::from_secs(180);

/// One sample: seconds since the start, replicas, backlog.
type Sample = (f64, u64, Option<u64>);

/// The benchmark of the autoscaler; see the [module docs](self).
pub fn run(args: &BenchArgs) -> anyhow::Result<Vec<BenchReport>> {
    let brokers = match param(args, "brokers") {
        Some(b) => b.to_string(),
        None => std::env::var("RIFFLE_KAFKA_BROKERS").map_err(|_| {
            anyhow::anyhow!(
                "riffle bench flow-autoscale needs -P brokers=HOST:PORT (or RIFFLE_KAFKA_BROKERS)"
            )
        })?,
    };
    let settings = KafkaSettings::new(brokers);
    let items = args.items.unwrap_or(ITEMS);
    let partitions: i32 = super::flow::parsed(args, "partitions", 4)?;
    let work = Duration::from_micros(super::flow::parsed(args, "work_us", 50)?);
    let min: usize = super::flow::parsed(args, "min", 1)?;
    let max = args.workers.max(2);
    anyhow::ensure!(
        min < max,
        "-P min={min}: must be below the most replicas ({max})"
    );
    let input = format!("riffle-autoscalebench-{items}-p{partitions}");
    fill(&settings, &input, partitions, items, 32)?;

    let mut flow = Flow::new("bench-autoscale");
    let done = Arc::new(AtomicU64::new(0));
    let counted = done.clone();
    let group = format!("riffle-autoscalebench-{}", std::process::id());
    let source = KafkaSource::new(settings, [input.as_str()])
        .group_id(group)
        .start(StartOffset::Earliest);
    flow.consumer(
        "slow",
        source,
        TestingSink::<u32>::new(),
        move |m: KafkaMessage| {
            std::thread::sleep(work);
            counted.fetch_add(1, Ordering::Relaxed);
            Ok::<_, std::convert::Infallible>(m.value.map(|v| v.len() as u32))
        },
    )?
    .autoscale(
        Autoscale::new(min, max)
            .burn_within(Duration::from_secs(super::flow::parsed(args, "burn_s", 2)?))
            .scale_down_after(Duration::from_secs(super::flow::parsed(args, "down_s", 3)?))
            .every(Duration::from_millis(500)),
    );
    let running = flow.start(RunOptions {
        addr: "127.0.0.1:0".parse()?,
        ..Default::default()
    })?;
    let slow = running.metrics().processor("slow", "consumer");
    let started = Instant::now();
    let mut timeline: Vec<Sample> = Vec::new();
    let mut burned: Option<f64> = None;
    let mut at_min: Option<f64> = None;
    loop {
        let now = started.elapsed().as_secs_f64();
        let replicas = slow.replicas();
        timeline.push((now, replicas, slow.backlog()));
        if burned.is_none() && done.load(Ordering::Relaxed) >= items {
            burned = Some(now);
        }
        if burned.is_some() {
            match (replicas as usize <= min, at_min) {
                (true, None) => at_min = Some(now),
                (false, _) => at_min = None,
                (true, Some(since)) if now - since >= 1.0 => break,
                _ => {}
            }
        }
        if started.elapsed() > LIMIT {
            running.stop();
            let _ = running.wait();
            anyhow::bail!(
                "flow-autoscale: after {}s, {} of {items} records handled and {} replicas",
                LIMIT.as_secs(),
                done.load(Ordering::Relaxed),
                replicas
            );
        }
        std::thread::sleep(SAMPLE);
    }
    running.stop();
    running.wait()?;

    let burned = burned.unwrap_or_default();
    let mut report = BenchReport::new("flow-autoscale", max, items, burned);
    report.phase = Some("burn".into());
    let peak = timeline.iter().map(|s| s.1).max().unwrap_or_default();
    let changes = timeline.windows(2).filter(|w| w[0].1 != w[1].1).count();
    report.extra.insert("peak_replicas".into(), peak.into());
    report.extra.insert("scale_changes".into(), changes.into());
    report.extra.insert("min_replicas".into(), min.into());
    report
        .extra
        .insert("back_to_min_s".into(), at_min.unwrap_or(burned).into());
    report
        .extra
        .insert("work_us".into(), (work.as_micros() as u64).into());
    report.extra.insert(
        "timeline".into(),
        serde_json::to_value(
            timeline
                .iter()
                .map(|(t, r, b)| (round(*t), *r, *b))
                .collect::<Vec<_>>(),
        )?,
    );
    if let Some(path) = param(args, "plot") {
        std::fs::write(path, plot(&timeline, max as u64))
            .map_err(|e| anyhow::anyhow!("-P plot={path}: cannot write the chart: {e}"))?;
        eprintln!("flow-autoscale: chart written to {path}");
    }
    Ok(vec![report])
}

fn round(t: f64) -> f64 {
    (t * 100.0).round() / 100.0
}

/// The timeline as an SVG chart: the backlog (left axis) as a shaded area, the
/// replicas (right axis, 0 to `most`) as a step line, seconds along the bottom.
fn plot(timeline: &[Sample], most: u64) -> String {
    let (w, h, left, right, top, bottom) = (720.0, 320.0, 70.0, 50.0, 30.0, 40.0);
    let (pw, ph) = (w - left - right, h - top - bottom);
    let end = timeline.last().map_or(1.0, |s| s.0).max(1.0);
    let peak = timeline
        .iter()
        .filter_map(|s| s.2)
        .max()
        .unwrap_or(1)
        .max(1) as f64;
    let x = |t: f64| left + t / end * pw;
    let yb = |b: f64| top + ph - b / peak * ph;
    let yr = |r: f64| top + ph - r / most.max(1) as f64 * ph;
    let mut svg = String::new();
    let _ = write!(
        svg,
        r##"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" viewBox="0 0 {w} {h}" font-family="sans-serif" font-size="12">
<rect width="{w}" height="{h}" fill="#fff"/>
<text x="{left}" y="18">backlog (records, left) and replicas (right) over time (s)</text>
"##
    );
    // Axes and ticks.
    let _ = writeln!(
        svg,
        r##"<path d="M{left} {top} V{} H{}" fill="none" stroke="#333"/>"##,
        top + ph,
        left + pw
    );
    let _ = writeln!(
        svg,
        r##"<path d="M{} {top} V{}" fill="none" stroke="#333"/>"##,
        left + pw,
        top + ph
    );
    for i in 0..=4 {
        let f = i as f64 / 4.0;
        let _ = writeln!(
            svg,
            r##"<text x="{}" y="{}" text-anchor="end">{}</text><text x="{}" y="{}" text-anchor="middle">{:.0}</text>"##,
            left - 6.0,
            yb(peak * f) + 4.0,
            (peak * f).round() as u64,
            x(end * f),
            top + ph + 16.0,
            end * f
        );
    }
    for r in 0..=most {
        let _ = writeln!(
            svg,
            r##"<text x="{}" y="{}">{r}</text>"##,
            left + pw + 6.0,
            yr(r as f64) + 4.0
        );
    }
    // The backlog, as an area, from its first reading on.
    let known: Vec<(f64, u64)> = timeline
        .iter()
        .filter_map(|(t, _, b)| b.map(|b| (*t, b)))
        .collect();
    let first = known.first().map_or(0.0, |k| k.0);
    let mut area = format!("M{:.1} {:.1}", x(first), yb(0.0));
    for (t, b) in &known {
        let _ = write!(area, " L{:.1} {:.1}", x(*t), yb(*b as f64));
    }
    let _ = write!(area, " L{:.1} {:.1} Z", x(end), yb(0.0));
    let _ = writeln!(
        svg,
        r##"<path class="backlog" d="{area}" fill="#9ecae1" stroke="#3182bd"/>"##
    );
    // The replicas, as steps.
    let mut steps = String::new();
    for (i, (t, r, _)) in timeline.iter().enumerate() {
        if i == 0 {
            let _ = write!(steps, "M{:.1} {:.1}", x(*t), yr(*r as f64));
        } else {
            let _ = write!(steps, " H{:.1} V{:.1}", x(*t), yr(*r as f64));
        }
    }
    let _ = writeln!(
        svg,
        r##"<path class="replicas" d="{steps}" fill="none" stroke="#e6550d" stroke-width="2"/>"##
    );
    svg.push_str("</svg>\n");
    svg
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_chart_has_a_point_per_sample_and_both_axes() {
        let timeline = vec![
            (0.0, 1, None),
            (0.2, 1, Some(1000)),
            (0.5, 4, Some(600)),
            (1.0, 4, Some(0)),
            (2.0, 1, Some(0)),
        ];
        let svg = plot(&timeline, 4);
        assert!(svg.starts_with("<svg"), "{svg}");
        let backlog = svg
            .lines()
            .find(|l| l.contains("class=\"backlog\""))
            .unwrap();
        // A point per reading (not the first sample, read before the backlog
        // was known), and the closing one.
        assert_eq!(backlog.matches(" L").count(), timeline.len());
        let replicas = svg
            .lines()
            .find(|l| l.contains("class=\"replicas\""))
            .unwrap();
        // A step per sample after the first.
        assert_eq!(replicas.matches(" V").count(), timeline.len() - 1);
        assert!(svg.contains(">1000<"), "the backlog's peak labels the axis");
    }
}
