//! What a component reads from the environment and which AWS actions it
//! calls, as JSON. Each runtime describes its own components from the very
//! argument definitions that read their settings and the adapters' action
//! lists (`queue2bucket manifest`, `queue2bucket-api manifest`,
//! `queue2bucket-worker manifest`); the infrastructure's consistency test
//! compares Terraform's task definitions, functions and IAM policies against
//! the union, so none of it is a copy that can drift.

use clap::Command;
use serde_json::{Value, json};

use crate::aws::AwsTuning;

/// Read by the logging set-up rather than by an argument.
const EXTRA_OPTIONAL_ENV: &[&str] = &["RUST_LOG"];

/// One component: its settings (a clap command whose arguments carry their
/// environment names and defaults), the AWS actions it calls, and the SDK
/// limit on each of its calls (which the infrastructure's timeouts must
/// leave room for).
pub fn component(command: &Command, actions: &[&str], tuning: AwsTuning) -> Value {
    let mut required = Vec::new();
    let mut optional: Vec<String> = EXTRA_OPTIONAL_ENV.iter().map(|s| s.to_string()).collect();
    let mut defaults = serde_json::Map::new();
    for arg in command.get_arguments() {
        let Some(env) = arg.get_env() else { continue };
        let env = env.to_string_lossy().into_owned();
        if let Some(default) = arg.get_default_values().first() {
            defaults.insert(env.clone(), json!(default.to_string_lossy()));
        }
        if arg.is_required_set() {
            required.push(env);
        } else {
            optional.push(env);
        }
    }
    required.sort();
    optional.sort();
    optional.dedup();
    let mut actions = actions.to_vec();
    actions.sort();
    actions.dedup();
    json!({
        "env": { "required": required, "optional": optional, "defaults": defaults },
        "aws_actions": actions,
        "aws_call_timeout_secs": tuning.operation_timeout.as_secs(),
    })
}

/// The metrics the code emits ([`crate::metrics`]): the dashboard and the
/// alarms may use only these.
pub fn metrics() -> Value {
    use crate::metrics::{API, DEFAULT_NAMESPACE, DIMENSION, Service, WORKER};
    let names = |catalog: &[(&str, ::metrics::Unit, crate::metrics::Kind)]| -> Vec<String> {
        catalog
            .iter()
            .map(|(name, ..)| (*name).to_owned())
            .collect()
    };
    json!({
        "namespace": { "env": "METRICS_NAMESPACE", "default": DEFAULT_NAMESPACE },
        "dimension": DIMENSION,
        "emitted": {
            Service::Api.as_str(): names(API),
            Service::Worker.as_str(): names(WORKER),
        },
    })
}

/// A manifest document holding `components` (name → [`component`]).
pub fn document(components: Vec<(&str, Value)>) -> Value {
    let components: serde_json::Map<String, Value> = components
        .into_iter()
        .map(|(name, c)| (name.to_owned(), c))
        .collect();
    json!({ "components": components })
}
