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

use serde_json::json;

use super::terraform::{apply_saved, backend, chdir, plan_into, tf};
use crate::cmdline::{Arg, CmdLine, Slot};
use crate::paths;
use crate::settings::{Bootstrap, Environment, Function};

type Vars = [(String, String)];

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
    let dir = std::path::Path::new(&env.bootstrap.dir);
    let parent = dir
        .parent()
        .map(|p| p.display().to_string())
        .unwrap_or_default();
    let copy = |name: &str| first_run_copy(env).join(name).display().to_string();
    let modules = format!("{parent}/modules");
    vec![
        (env.bootstrap.dir.clone(), copy("bootstrap")),
        (modules, copy("modules")),
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
    let path = serde_json::to_string(&local_state(env).display().to_string());
    format!(
        "# Written by `cargo xtask bootstrap` for its first run and deleted when it ends.\n\
         terraform {{\n  backend \"local\" {{\n    path = {}\n  }}\n}}\n",
        path.unwrap_or_default()
    )
}

/// The saved plan (absolute, under `target/`).
pub fn plan_file(env: &Environment) -> String {
    paths::env_dir(&env.name)
        .join("bootstrap.tfplan")
        .display()
        .to_string()
}

/// The real root.
fn real(env: &Environment) -> Arg {
    chdir(&env.bootstrap.dir)
}

/// Whichever root the run uses, the real one or the first run's copy (`<bootstrap-root>`,
/// filled in after the state bucket lookup).
fn decided() -> Arg {
    Arg::from("-chdir=").then(Slot::BootstrapRoot)
}

/// First run: local state (in the private copy), whatever the data directory remembers.
pub fn init_local(env: &Environment, process_env: &Vars) -> CmdLine {
    let copy = chdir(&first_run_root(env));
    tf(
        copy,
        process_env,
        "init -input=false -no-color -reconfigure",
    )
}

/// Later runs: the state in the bucket, under the bootstrap's own key.
pub fn init(env: &Environment, process_env: &Vars) -> CmdLine {
    let backend = backend(env, Some(Bootstrap::state_key(&env.name)));
    tf(real(env), process_env, "init -input=false -no-color").args(backend)
}

/// After the first apply, in the real root: copies the local state into the bucket, without
/// asking.
pub fn migrate(env: &Environment, process_env: &Vars) -> CmdLine {
    let backend = backend(env, Some(Bootstrap::state_key(&env.name)));
    let words = "init -input=false -no-color -migrate-state -force-copy";
    tf(real(env), process_env, words).args(backend)
}

/// The variable file of the account layer: every function's names (one execution role each)
/// and, for an environment that promotes, the source repositories CI may read.
pub fn vars_path(env: &Environment) -> String {
    let dir = paths::env_dir(&env.name);
    dir.join("bootstrap.tfvars.json").display().to_string()
}

pub fn vars_file(env: &Environment, source: Option<&Environment>) -> String {
    let mut functions = serde_json::Map::new();
    for f in &env.functions {
        let names = json!({
            "function_name": f.function_name,
            "repository_name": f.repository,
            "execution_role_name": f.execution_role,
        });
        functions.insert(f.name.clone(), names);
    }
    let here = |f: &&Function| env.functions.iter().any(|t| t.name == f.name);
    let promotion_source = source.and_then(|s| {
        let shared: Vec<&String> = s
            .functions
            .iter()
            .filter(here)
            .map(|f| &f.repository)
            .collect();
        let (account, region) = (&s.account_id, &s.region);
        let source = json!({ "account_id": account, "region": region, "repository_names": shared });
        (!shared.is_empty()).then_some(source)
    });
    let file = json!({ "functions": functions, "promotion_source": promotion_source });
    serde_json::to_string_pretty(&file).unwrap_or_default()
}

/// `-var` pairs: xtask's own, then the settings' `bootstrap.vars` in name order, then the
/// variable file.
fn vars(env: &Environment) -> Vec<String> {
    let bucket = env
        .terraform
        .backend
        .get("bucket")
        .cloned()
        .unwrap_or_default();
    let (name, account, region, project) = (&env.name, &env.account_id, &env.region, &env.project);
    let mut pairs = vec![
        format!("environment={name}"),
        format!("account_id={account}"),
        format!("region={region}"),
        format!("project={project}"),
        format!("state_bucket={bucket}"),
    ];
    let key = env.terraform.backend.get("key");
    pairs.extend(key.map(|key| format!("app_state_key={key}")));
    // The emulator speaks plain HTTP: a deny-without-TLS bucket policy would lock Terraform
    // out of its own state there. And its state resets on `local down`, so the lifecycle rule
    // that expires old state versions means nothing there, while the provider waits about a
    // minute after creating it. On AWS both are always on; no setting turns them off.
    if env.local.is_some() {
        pairs.push("deny_insecure_transport=false".to_string());
        pairs.push("expire_noncurrent_state_versions=false".to_string());
    }
    pairs.extend(env.bootstrap.vars.iter().map(|(k, v)| format!("{k}={v}")));
    let vars = pairs
        .into_iter()
        .flat_map(|pair| ["-var".to_string(), pair]);
    vars.chain([format!("-var-file={}", vars_path(env))])
        .collect()
}

pub fn plan(env: &Environment, process_env: &Vars) -> CmdLine {
    let lock = &env.terraform.lock_timeout;
    plan_into(decided(), process_env, lock, &plan_file(env)).args(vars(env))
}

pub fn show(env: &Environment, process_env: &Vars) -> CmdLine {
    tf(decided(), process_env, "show -json -no-color").arg(plan_file(env))
}

pub fn apply(env: &Environment, process_env: &Vars) -> CmdLine {
    apply_saved(
        decided(),
        process_env,
        &env.terraform.lock_timeout,
        &plan_file(env),
    )
}

pub fn output(env: &Environment, process_env: &Vars) -> CmdLine {
    tf(real(env), process_env, "output -json -no-color")
}
