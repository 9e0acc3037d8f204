//! The bundled batch pipeline, `sales`: read a CSV of sales, clean it, aggregate it,
//! fit a trend, and write a report.
//!
//! ```text
//! read_csv ──> clean ──> by_region ──────────────┐
//!                  └───> by_day ──> fit_trend ───┴──> report ──> write_report
//! ```
//!
//! `read_csv` reads the file named by the config key `sales_csv` (the bundled
//! `data/pipeline/sales.csv` unless `RIFFLE_CONFIG_SALES_CSV` says otherwise). It runs
//! every time, since a file can change behind the cache's back; everything downstream is
//! cached by the content of what it reads, so a second run with the same file reuses
//! every step but the last. `write_report` writes `sales-YYYY-MM-DD.md` for the run's
//! runtime into the environment's `report_dir` (`dev`: `target/riffle-reports/dev`,
//! `prod`: `target/riffle-reports/prod`).
//!
//! ```text
//! riffle run --workflow sales --runtime 2024-03-01
//! riffle run --job sales.fit_trend
//! ```

use std::collections::BTreeMap;

use riffle_pipeline::{Config, Pipeline, StepContext, StepResult};
use serde::{Deserialize, Serialize};

/// The CSV the `sales` pipeline reads by default.
pub const SALES_CSV: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/data/pipeline/sales.csv");

/// The bundled pipelines, as builders the `riffle` binary registers with
/// `app.pipeline(build)`.
pub fn pipelines() -> Vec<fn() -> riffle_pipeline::Result<Pipeline>> {
    vec![sales]
}

/// One line of the CSV as read: every field still text.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RawRow {
    pub line: u32,
    pub fields: Vec<String>,
}

/// One valid sale.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Sale {
    /// `YYYY-MM-DD`.
    pub date: String,
    pub region: String,
    pub product: String,
    pub units: u32,
    pub unit_price: f64,
}

/// Units and revenue of one region.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RegionTotal {
    pub region: String,
    pub units: u64,
    pub revenue: f64,
}

/// Revenue on one day.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DayTotal {
    pub date: String,
    pub revenue: f64,
}

/// A least-squares line through daily revenue: revenue ≈ intercept + slope × day.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Trend {
    pub slope: f64,
    pub intercept: f64,
    pub r_squared: f64,
    pub days: u32,
}

/// The `sales` pipeline.
pub fn sales() -> riffle_pipeline::Result<Pipeline> {
    let mut p = Pipeline::builder("sales");
    p.about("read, clean and aggregate bundled sales data, fit a trend, write a report")
        .schedule("@daily")
        .start("2024-02-01")
        .config(
            Config::new()
                .value("sales_csv", SALES_CSV)
                .env("dev", [("report_dir", "target/riffle-reports/dev")])
                .env("prod", [("report_dir", "target/riffle-reports/prod")])
                .default_env("dev"),
        );
    let raw = p
        .step("read_csv", (), read_csv)
        .about("read the CSV named by config sales_csv")
        .uses_config(&["sales_csv"])
        .always_run()
        .retries(2, std::time::Duration::from_millis(200))
        .output();
    let clean = p
        .step("clean", &raw, clean)
        .about("drop malformed, negative and duplicate rows; normalise names")
        .version("1")
        .output();
    let regions = p.step("by_region", &clean, by_region).version("1").output();
    let days = p.step("by_day", &clean, by_day).version("1").output();
    let trend = p
        .step("fit_trend", &days, fit_trend)
        .about("least-squares line through daily revenue")
        .param("min_days", 3)
        .version("1")
        .output();
    let report = p
        .step("report", (&regions, &trend), report)
        .uses_runtime()
        .version("1")
        .output();
    p.step("write_report", &report, write_report)
        .uses_runtime()
        .uses_config(&["report_dir"])
        .always_run();
    p.build()
}

fn read_csv(ctx: &StepContext, (): ()) -> StepResult<Vec<RawRow>> {
    let path = ctx.config("sales_csv")?;
    let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read {path}: {e}"))?;
    let rows: Vec<RawRow> = text
        .lines()
        .enumerate()
        .skip(1)
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, l)| RawRow {
            line: i as u32 + 1,
            fields: l.split(',').map(str::to_string).collect(),
        })
        .collect();
    ctx.log(format!("read {} rows from {path}", rows.len()));
    Ok(rows)
}

fn parse_sale(row: &RawRow) -> Result<Sale, String> {
    let [date, region, product, units, price] = row.fields.as_slice() else {
        return Err(format!("{} fields, expected 5", row.fields.len()));
    };
    let date = date.trim();
    if chrono_like_date(date).is_none() {
        return Err(format!("date {date:?} is not YYYY-MM-DD"));
    }
    let region = region.trim().to_lowercase();
    if region.is_empty() {
        return Err("no region".into());
    }
    let units: i64 = units
        .trim()
        .parse()
        .map_err(|_| format!("units {units:?} is not a number"))?;
    if units <= 0 {
        return Err(format!("units {units} is not positive"));
    }
    let unit_price: f64 = price
        .trim()
        .parse()
        .map_err(|_| format!("price {price:?} is not a number"))?;
    Ok(Sale {
        date: date.to_string(),
        region,
        product: product.trim().to_lowercase(),
        units: units as u32,
        unit_price,
    })
}

/// `Some((y, m, d))` when `text` is a plausible `YYYY-MM-DD`.
fn chrono_like_date(text: &str) -> Option<(u32, u32, u32)> {
    let mut parts = text.split('-');
    let (y, m, d) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() || y.len() != 4 || m.len() != 2 || d.len() != 2 {
        return None;
    }
    let (y, m, d) = (y.parse().ok()?, m.parse().ok()?, d.parse().ok()?);
    ((1..=12).contains(&m) && (1..=31).contains(&d)).then_some((y, m, d))
}

fn clean(ctx: &StepContext, rows: Vec<RawRow>) -> StepResult<Vec<Sale>> {
    let mut sales: Vec<Sale> = Vec::with_capacity(rows.len());
    let mut dropped = 0;
    for row in &rows {
        match parse_sale(row) {
            Ok(sale) if sales.contains(&sale) => {
                dropped += 1;
                ctx.log(format!("line {}: duplicate, dropped", row.line));
            }
            Ok(sale) => sales.push(sale),
            Err(why) => {
                dropped += 1;
                ctx.log(format!("line {}: {why}, dropped", row.line));
            }
        }
    }
    ctx.metric("rows_in", rows.len() as f64);
    ctx.metric("rows_dropped", dropped as f64);
    Ok(sales)
}

fn by_region(_ctx: &StepContext, sales: Vec<Sale>) -> StepResult<Vec<RegionTotal>> {
    let mut totals: BTreeMap<String, (u64, f64)> = BTreeMap::new();
    for s in &sales {
        let t = totals.entry(s.region.clone()).or_default();
        t.0 += s.units as u64;
        t.1 += s.units as f64 * s.unit_price;
    }
    Ok(totals
        .into_iter()
        .map(|(region, (units, revenue))| RegionTotal {
            region,
            units,
            revenue: (revenue * 100.0).round() / 100.0,
        })
        .collect())
}

fn by_day(_ctx: &StepContext, sales: Vec<Sale>) -> StepResult<Vec<DayTotal>> {
    let mut totals: BTreeMap<String, f64> = BTreeMap::new();
    for s in &sales {
        *totals.entry(s.date.clone()).or_default() += s.units as f64 * s.unit_price;
    }
    Ok(totals
        .into_iter()
        .map(|(date, revenue)| DayTotal { date, revenue })
        .collect())
}

fn fit_trend(ctx: &StepContext, days: Vec<DayTotal>) -> StepResult<Trend> {
    let min_days: usize = ctx.param("min_days")?;
    if days.len() < min_days {
        return Err(format!(
            "{} days of data, need at least {min_days} to fit a trend",
            days.len()
        )
        .into());
    }
    let n = days.len() as f64;
    let xs: Vec<f64> = (0..days.len()).map(|i| i as f64).collect();
    let ys: Vec<f64> = days.iter().map(|d| d.revenue).collect();
    let (mx, my) = (xs.iter().sum::<f64>() / n, ys.iter().sum::<f64>() / n);
    let sxy: f64 = xs.iter().zip(&ys).map(|(x, y)| (x - mx) * (y - my)).sum();
    let sxx: f64 = xs.iter().map(|x| (x - mx).powi(2)).sum();
    let syy: f64 = ys.iter().map(|y| (y - my).powi(2)).sum();
    let slope = if sxx > 0.0 { sxy / sxx } else { 0.0 };
    let intercept = my - slope * mx;
    let r_squared = if sxx > 0.0 && syy > 0.0 {
        sxy * sxy / (sxx * syy)
    } else {
        0.0
    };
    ctx.metric("slope", slope);
    ctx.metric("r_squared", r_squared);
    Ok(Trend {
        slope,
        intercept,
        r_squared,
        days: days.len() as u32,
    })
}

fn report(ctx: &StepContext, (regions, trend): (Vec<RegionTotal>, Trend)) -> StepResult<String> {
    let mut out = format!("# Sales report for {}\n\n", ctx.runtime()?.date());
    out.push_str("| region | units | revenue |\n|---|---:|---:|\n");
    for r in &regions {
        out.push_str(&format!(
            "| {} | {} | {:.2} |\n",
            r.region, r.units, r.revenue
        ));
    }
    let total: f64 = regions.iter().map(|r| r.revenue).sum();
    out.push_str(&format!("\nTotal revenue: {total:.2}\n\n"));
    out.push_str(&format!(
        "Trend over {} days: revenue ≈ {:.2} + {:.2} × day (R² = {:.3})\n",
        trend.days, trend.intercept, trend.slope, trend.r_squared
    ));
    Ok(out)
}

fn write_report(ctx: &StepContext, text: String) -> StepResult<String> {
    let dir = std::path::PathBuf::from(ctx.config("report_dir")?);
    std::fs::create_dir_all(&dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    let path = dir.join(format!("sales-{}.md", ctx.runtime()?.date()));
    std::fs::write(&path, text).map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    ctx.log(format!("wrote {}", path.display()));
    Ok(path.display().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use riffle_pipeline::{ProjectStores, RunOptions, RunStatus};
    use std::sync::Arc;

    #[test]
    fn the_sales_pipeline_runs_end_to_end_and_then_from_the_cache() {
        let project = tempfile::tempdir().unwrap();
        let reports = project.path().join("reports");
        let reports_dir = reports.display().to_string();
        let executor = ProjectStores::local(project.path()).executor().unwrap();
        let options = RunOptions {
            runtime: Some("2024-03-01".parse().unwrap()),
            env_lookup: Some(Arc::new(move |var: &str| {
                (var == "RIFFLE_CONFIG_REPORT_DIR").then(|| reports_dir.clone())
            })),
            ..Default::default()
        };
        let pipeline = sales().unwrap();
        let first = executor.run(&pipeline, options.clone()).unwrap();
        assert_eq!(first.status, RunStatus::Succeeded, "{:?}", first.error);

        let clean: Vec<Sale> = executor.output(&first, "clean").unwrap();
        let rows: Vec<RawRow> = executor.output(&first, "read_csv").unwrap();
        assert_eq!(rows.len(), 63);
        // Five malformed rows and one duplicate are dropped; " North " is kept as north.
        assert_eq!(clean.len(), 57);
        assert!(clean.iter().all(|s| s.units > 0 && !s.region.is_empty()));
        let regions: Vec<RegionTotal> = executor.output(&first, "by_region").unwrap();
        let units: u64 = regions.iter().map(|r| r.units).sum();
        assert_eq!(units, clean.iter().map(|s| s.units as u64).sum::<u64>());
        assert_eq!(
            regions
                .iter()
                .map(|r| r.region.as_str())
                .collect::<Vec<_>>(),
            ["east", "north", "south", "west"]
        );
        let trend: Trend = executor.output(&first, "fit_trend").unwrap();
        assert_eq!(trend.days, 28);
        assert!((0.0..=1.0).contains(&trend.r_squared));
        let written = std::fs::read_to_string(reports.join("sales-2024-03-01.md")).unwrap();
        assert!(written.starts_with("# Sales report for 2024-03-01"));
        assert!(written.contains("| north |"));

        let second = executor.run(&pipeline, options).unwrap();
        let ran: Vec<&str> = second
            .steps
            .iter()
            .filter(|s| !s.cache_hit)
            .map(|s| s.step_id.as_str())
            .collect();
        assert_eq!(
            ran,
            ["read_csv", "write_report"],
            "only the always-run steps run again"
        );
    }

    #[test]
    fn a_short_file_fails_the_trend_with_a_clear_error() {
        let project = tempfile::tempdir().unwrap();
        let csv = project.path().join("short.csv");
        std::fs::write(
            &csv,
            "date,region,product,units,unit_price\n2024-01-01,north,kettle,1,2.0\n",
        )
        .unwrap();
        let csv = csv.display().to_string();
        let executor = ProjectStores::local(project.path()).executor().unwrap();
        let report = executor
            .run(
                &sales().unwrap(),
                RunOptions {
                    env_lookup: Some(Arc::new(move |var: &str| {
                        (var == "RIFFLE_CONFIG_SALES_CSV").then(|| csv.clone())
                    })),
                    ..Default::default()
                },
            )
            .unwrap();
        assert_eq!(report.status, RunStatus::Failed);
        assert!(
            report
                .error
                .unwrap()
                .contains("1 days of data, need at least 3")
        );
    }
}
