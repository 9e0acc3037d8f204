//! [`FlowContext`]: what a registered flow's builder is told: the environment it
//! runs in and its settings.
//!
//! A setting is read from the command line first (`-P name=value`), then from the
//! environment variable `RIFFLE_NAME` (the name upper-cased, `-` and `.` as `_`),
//! then from the project's settings for the environment (`riffle.toml`'s
//! `[env.E.settings]`, given with [`FlowContext::file_settings`]), so secrets (a
//! password, a token) come from the environment and are never written anywhere.
//!
//! ```
//! use riffle_flow::FlowContext;
//!
//! let ctx = FlowContext::new("shop", Some("dev".into()), [("topic".to_string(), "orders".to_string())].into());
//! assert_eq!(ctx.env(), Some("dev"));
//! assert_eq!(ctx.setting("topic").as_deref(), Some("orders"));
//! assert_eq!(ctx.setting_or("replicas", "2"), "2");
//! assert!(ctx.require("brokers").unwrap_err().to_string().contains("RIFFLE_BROKERS"));
//! let ctx = ctx.file_settings([("brokers".to_string(), "k:9092".to_string())].into());
//! assert_eq!(ctx.setting("brokers").as_deref(), Some("k:9092"));
//! ```

use std::collections::BTreeMap;

use crate::error::FlowError;

/// The environment and settings a flow is built with.
#[derive(Debug, Clone, Default)]
pub struct FlowContext {
    flow: String,
    env: Option<String>,
    params: BTreeMap<String, String>,
    file: BTreeMap<String, String>,
}

impl FlowContext {
    /// A context for flow `flow` in environment `env`, with the settings given on
    /// the command line.
    pub fn new(flow: &str, env: Option<String>, params: BTreeMap<String, String>) -> Self {
        Self {
            flow: flow.to_string(),
            env,
            params,
            file: BTreeMap::new(),
        }
    }

    /// Settings from the project's file for this environment: the last place a
    /// setting is looked for.
    pub fn file_settings(mut self, settings: BTreeMap<String, String>) -> Self {
        self.file = settings;
        self
    }

    /// The name the flow is run under.
    pub fn flow(&self) -> &str {
        &self.flow
    }

    /// The environment asked for (`--env`), if one was.
    pub fn env(&self) -> Option<&str> {
        self.env.as_deref()
    }

    /// Setting `name`: from the command line, else from `RIFFLE_NAME`, else from
    /// the project's file.
    pub fn setting(&self, name: &str) -> Option<String> {
        self.params
            .get(name)
            .cloned()
            .or_else(|| std::env::var(env_name(name)).ok())
            .or_else(|| self.file.get(name).cloned())
    }

    /// Setting `name`, or `default`.
    pub fn setting_or(&self, name: &str, default: &str) -> String {
        self.setting(name).unwrap_or_else(|| default.to_string())
    }

    /// Setting `name`, or an error saying where to give it.
    pub fn require(&self, name: &str) -> Result<String, FlowError> {
        self.setting(name).ok_or_else(|| FlowError::Definition {
            flow: self.flow.clone(),
            what: format!(
                "setting {name:?} is missing: give -P {name}=VALUE, set {}, or put it in riffle.toml's [env.ENV.settings]",
                env_name(name)
            ),
        })
    }
}

/// The environment variable of setting `name`.
fn env_name(name: &str) -> String {
    format!("RIFFLE_{}", name.to_uppercase().replace(['-', '.'], "_"))
}
