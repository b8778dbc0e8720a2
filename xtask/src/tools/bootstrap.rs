//! `terraform` command lines for the account layer (`infrastructure/bootstrap`), which an
//! administrator applies once per account: the state bucket, the GitHub OIDC provider, the
//! deploy role CI assumes and the execution role CI may only pass.
//!
//! The root keeps its own state in the bucket it creates. Its first run cannot use that
//! backend, so it runs on local state (an override file selects the `local` backend), then
//! `init -migrate-state` moves the state into the new bucket.

use std::path::PathBuf;

use crate::cmdline::CmdLine;
use crate::paths;
use crate::settings::{Bootstrap, Environment};

/// Selects the local backend for the first run; Terraform merges `*_override.tf` files.
pub const OVERRIDE_FILE: &str = "local_backend_override.tf";

/// The override file's path, relative to the repository root.
pub fn override_file(env: &Environment) -> String {
    format!("{}/{OVERRIDE_FILE}", env.bootstrap.dir)
}

/// Where the first run keeps its state until it moves into the bucket (absolute, because
/// terraform runs with `-chdir`).
pub fn local_state(env: &Environment) -> PathBuf {
    paths::env_dir(&env.name).join("bootstrap-local.tfstate")
}

pub fn override_contents(env: &Environment) -> String {
    format!(
        "# Written by `cargo xtask bootstrap` for its first run and deleted when it ends.\n\
         terraform {{\n  backend \"local\" {{\n    path = {}\n  }}\n}}\n",
        serde_json::to_string(&local_state(env).display().to_string()).unwrap_or_default()
    )
}

/// The saved plan (absolute, under `target/`).
pub fn plan_file(env: &Environment) -> String {
    paths::env_dir(&env.name)
        .join("bootstrap.tfplan")
        .display()
        .to_string()
}

fn terraform(env: &Environment, process_env: &[(String, String)], sub: &str) -> CmdLine {
    CmdLine::new("terraform")
        .arg(format!("-chdir={}", env.bootstrap.dir))
        .arg(sub)
        .env(process_env)
}

/// The S3 backend settings: the application's, with the bootstrap's own key.
fn backend_config(env: &Environment) -> Vec<String> {
    env.terraform
        .backend
        .iter()
        .map(|(key, value)| match key.as_str() {
            "key" => format!("-backend-config=key={}", Bootstrap::state_key(&env.name)),
            _ => format!("-backend-config={key}={value}"),
        })
        .collect()
}

/// First run: local state, whatever the data directory remembers.
pub fn init_local(env: &Environment, process_env: &[(String, String)]) -> CmdLine {
    terraform(env, process_env, "init").args(["-input=false", "-no-color", "-reconfigure"])
}

/// Later runs: the state in the bucket.
pub fn init(env: &Environment, process_env: &[(String, String)]) -> CmdLine {
    terraform(env, process_env, "init")
        .args(["-input=false", "-no-color"])
        .args(backend_config(env))
}

/// After the first apply: copies the local state into the bucket, without asking.
pub fn migrate(env: &Environment, process_env: &[(String, String)]) -> CmdLine {
    terraform(env, process_env, "init")
        .args(["-input=false", "-no-color", "-migrate-state", "-force-copy"])
        .args(backend_config(env))
}

/// `-var` pairs: xtask's own, then the settings' `bootstrap.vars` in name order.
fn vars(env: &Environment) -> Vec<String> {
    let bucket = env
        .terraform
        .backend
        .get("bucket")
        .cloned()
        .unwrap_or_default();
    let mut pairs = vec![
        format!("environment={}", env.name),
        format!("account_id={}", env.account_id),
        format!("region={}", env.region),
        format!("state_bucket={bucket}"),
    ];
    if let Some(key) = env.terraform.backend.get("key") {
        pairs.push(format!("app_state_key={key}"));
    }
    // The emulator speaks plain HTTP: a deny-without-TLS bucket policy would lock Terraform
    // out of its own state there. On AWS the policy is always on; no setting turns it off.
    if env.local.is_some() {
        pairs.push("deny_insecure_transport=false".to_string());
    }
    pairs.extend(env.bootstrap.vars.iter().map(|(k, v)| format!("{k}={v}")));
    pairs
        .into_iter()
        .flat_map(|pair| ["-var".to_string(), pair])
        .collect()
}

fn lock_timeout(env: &Environment) -> String {
    format!("-lock-timeout={}", env.terraform.lock_timeout)
}

pub fn plan(env: &Environment, process_env: &[(String, String)]) -> CmdLine {
    terraform(env, process_env, "plan")
        .args([
            "-input=false",
            "-no-color",
            &lock_timeout(env),
            "-detailed-exitcode",
        ])
        .arg(format!("-out={}", plan_file(env)))
        .args(vars(env))
}

pub fn show(env: &Environment, process_env: &[(String, String)]) -> CmdLine {
    terraform(env, process_env, "show")
        .args(["-json", "-no-color"])
        .arg(plan_file(env))
}

pub fn apply(env: &Environment, process_env: &[(String, String)]) -> CmdLine {
    terraform(env, process_env, "apply")
        .args(["-input=false", "-no-color", &lock_timeout(env)])
        .arg(plan_file(env))
}

pub fn output(env: &Environment, process_env: &[(String, String)]) -> CmdLine {
    terraform(env, process_env, "output").args(["-json", "-no-color"])
}
