//! `terraform` command lines for the account layer (`infrastructure/bootstrap`), which an
//! administrator applies once per account: the state bucket, the GitHub OIDC provider, the
//! deploy role CI assumes and the execution role CI may only pass.
//!
//! The root keeps its own state in the bucket it creates. Its first run cannot use that
//! backend, so it runs in a private copy of the root (under `target/`, so two environments
//! bootstrapping at once never see each other's files) where an override file selects the
//! `local` backend; then `init -migrate-state`, in the real root with the same data
//! directory, moves the state into the new bucket.

use std::path::PathBuf;

use crate::cmdline::{BOOTSTRAP_ROOT, CmdLine};
use crate::paths;
use crate::settings::{Bootstrap, Environment};

/// Selects the local backend for the first run; Terraform merges `*_override.tf` files.
pub const OVERRIDE_FILE: &str = "local_backend_override.tf";

/// The first run's private copy of the configuration: the root and the modules it uses,
/// side by side as in `infrastructure/`, so relative module sources still resolve.
pub fn first_run_copy(env: &Environment) -> PathBuf {
    paths::env_dir(&env.name).join("bootstrap-first-run")
}

/// The root inside the first run's copy (absolute).
pub fn first_run_root(env: &Environment) -> String {
    first_run_copy(env).join("bootstrap").display().to_string()
}

/// What the first run copies: each directory of `infrastructure/` the root uses, and where.
pub fn first_run_sources(env: &Environment) -> Vec<(String, String)> {
    let parent = std::path::Path::new(&env.bootstrap.dir)
        .parent()
        .map(|p| p.display().to_string())
        .unwrap_or_default();
    let copy = first_run_copy(env);
    vec![
        (
            env.bootstrap.dir.clone(),
            copy.join("bootstrap").display().to_string(),
        ),
        (
            format!("{parent}/modules"),
            copy.join("modules").display().to_string(),
        ),
    ]
}

/// The override file's path inside the first run's copy.
pub fn override_file(env: &Environment) -> String {
    format!("{}/{OVERRIDE_FILE}", first_run_root(env))
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

/// Where a command runs: the real root, the first run's private copy, or whichever of the
/// two the run is using (`<bootstrap-root>`, filled in after the state bucket lookup).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Root {
    Real,
    FirstRunCopy,
    Decided,
}

fn terraform(
    env: &Environment,
    root: Root,
    process_env: &[(String, String)],
    sub: &str,
) -> CmdLine {
    let dir = match root {
        Root::Real => env.bootstrap.dir.clone(),
        Root::FirstRunCopy => first_run_root(env),
        Root::Decided => BOOTSTRAP_ROOT.to_string(),
    };
    CmdLine::new("terraform")
        .arg(format!("-chdir={dir}"))
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

/// First run: local state (in the private copy), whatever the data directory remembers.
pub fn init_local(env: &Environment, process_env: &[(String, String)]) -> CmdLine {
    terraform(env, Root::FirstRunCopy, process_env, "init").args([
        "-input=false",
        "-no-color",
        "-reconfigure",
    ])
}

/// Later runs: the state in the bucket.
pub fn init(env: &Environment, process_env: &[(String, String)]) -> CmdLine {
    terraform(env, Root::Real, process_env, "init")
        .args(["-input=false", "-no-color"])
        .args(backend_config(env))
}

/// After the first apply, in the real root: copies the local state into the bucket, without
/// asking.
pub fn migrate(env: &Environment, process_env: &[(String, String)]) -> CmdLine {
    terraform(env, Root::Real, process_env, "init")
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
    // out of its own state there. And its state resets on `local down`, so the lifecycle rule
    // that expires old state versions means nothing there, while the provider waits about a
    // minute after creating it. On AWS both are always on; no setting turns them off.
    if env.local.is_some() {
        pairs.push("deny_insecure_transport=false".to_string());
        pairs.push("expire_noncurrent_state_versions=false".to_string());
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
    terraform(env, Root::Decided, process_env, "plan")
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
    terraform(env, Root::Decided, process_env, "show")
        .args(["-json", "-no-color"])
        .arg(plan_file(env))
}

pub fn apply(env: &Environment, process_env: &[(String, String)]) -> CmdLine {
    terraform(env, Root::Decided, process_env, "apply")
        .args(["-input=false", "-no-color", &lock_timeout(env)])
        .arg(plan_file(env))
}

pub fn output(env: &Environment, process_env: &[(String, String)]) -> CmdLine {
    terraform(env, Root::Real, process_env, "output").args(["-json", "-no-color"])
}
