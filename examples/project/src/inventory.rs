//! The `inventory` pipeline: stock levels and daily demand in, a reorder list out.
//!
//! `stock` and `demand` are independent and run in parallel; `reorder` reads both and
//! decides what to buy with the `lead_days` parameter; `notify` runs after it without
//! reading its output. The buying threshold differs per environment (config key
//! `safety_days`, overridable as `RIFFLE_CONFIG_SAFETY_DAYS`).

use std::collections::BTreeMap;

use riffle_pipeline::{Config, Pipeline, StepContext, StepResult};
use serde::{Deserialize, Serialize};

/// What to buy of one item.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Order {
    pub item: String,
    pub quantity: u32,
}

fn stock(_ctx: &StepContext, (): ()) -> StepResult<BTreeMap<String, u32>> {
    Ok([
        ("bolts", 120),
        ("nuts", 15),
        ("washers", 300),
        ("hinges", 4),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect())
}

fn demand(_ctx: &StepContext, (): ()) -> StepResult<BTreeMap<String, u32>> {
    Ok([("bolts", 30), ("nuts", 10), ("washers", 5), ("hinges", 2)]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect())
}

fn reorder(
    ctx: &StepContext,
    (stock, demand): (BTreeMap<String, u32>, BTreeMap<String, u32>),
) -> StepResult<Vec<Order>> {
    let lead_days: u32 = ctx.param("lead_days")?;
    let safety_days: u32 = ctx
        .config("safety_days")?
        .parse()
        .map_err(|e| format!("config safety_days is not a number: {e}"))?;
    let mut orders = Vec::new();
    for (item, per_day) in &demand {
        let have = stock.get(item).copied().unwrap_or(0);
        let need = per_day * (lead_days + safety_days);
        if have < need {
            orders.push(Order {
                item: item.clone(),
                quantity: need - have,
            });
        }
    }
    ctx.metric("orders", orders.len() as f64);
    Ok(orders)
}

/// The pipeline this project registers.
pub fn pipeline() -> riffle_pipeline::Result<Pipeline> {
    let mut p = Pipeline::builder("inventory");
    p.about("decide what to reorder from stock and demand")
        .schedule("0 6 * * 1-5")
        .config(
            Config::new()
                .env("dev", [("safety_days", "1")])
                .env("prod", [("safety_days", "3")])
                .default_env("dev"),
        );
    let stock = p.step("stock", (), stock).version("1").output();
    let demand = p.step("demand", (), demand).version("1").output();
    let orders = p
        .step("reorder", (&stock, &demand), reorder)
        .param("lead_days", 2)
        .uses_config(&["safety_days"])
        .version("1")
        .output();
    p.step("notify", (), |ctx, ()| {
        ctx.log("the purchasing team was told");
        Ok(())
    })
    .after(&orders)
    .always_run();
    p.build()
}

#[cfg(test)]
mod tests {
    use super::*;
    use riffle_pipeline::{ProjectStores, RunOptions, RunStatus};

    #[test]
    fn prod_orders_more_than_dev() {
        let dir = tempfile::tempdir().unwrap();
        let ex = ProjectStores::local(dir.path()).executor().unwrap();
        let p = pipeline().unwrap();
        let run = |env: &str| {
            let r = ex
                .run(
                    &p,
                    RunOptions {
                        environment: Some(env.into()),
                        ..Default::default()
                    },
                )
                .unwrap();
            assert_eq!(r.status, RunStatus::Succeeded, "{:?}", r.error);
            ex.output::<Vec<Order>>(&r, "reorder").unwrap()
        };
        let dev = run("dev");
        let prod = run("prod");
        assert_eq!(
            dev,
            [
                Order {
                    item: "nuts".into(),
                    quantity: 15
                },
                Order {
                    item: "hinges".into(),
                    quantity: 2
                }
            ]
            .into_iter()
            .rev()
            .collect::<Vec<_>>()
        );
        assert!(
            prod.iter().map(|o| o.quantity).sum::<u32>()
                > dev.iter().map(|o| o.quantity).sum::<u32>()
        );
    }
}
