//! `terraform` command lines. Every one runs with `-chdir` into the environment's directory.

use crate::plan::CmdLine;
use crate::settings::Environment;

/// The saved plan's file name, relative to the Terraform directory.
pub fn plan_file(env: &Environment) -> String {
    format!("{}.tfplan", env.name)
}

fn terraform(env: &Environment, process_env: &[(String, String)], sub: &str) -> CmdLine {
    CmdLine::new("terraform")
        .arg(format!("-chdir={}", env.terraform.dir))
        .arg(sub)
        .env(process_env)
}

pub fn init(env: &Environment, process_env: &[(String, String)]) -> CmdLine {
    let mut cmd = terraform(env, process_env, "init").args(["-input=false", "-no-color"]);
    for (key, value) in &env.terraform.backend {
        cmd = cmd.arg(format!("-backend-config={key}={value}"));
    }
    cmd
}

/// `-var` pairs in a fixed order: xtask's own, then the settings' in name order.
fn vars(env: &Environment, image_uri: Option<&str>) -> Vec<String> {
    let mut pairs = vec![
        format!("environment={}", env.name),
        format!("account_id={}", env.account_id),
        format!("region={}", env.region),
        format!("platform={}", env.platform),
    ];
    if let Some(uri) = image_uri {
        pairs.push(format!("image_uri={uri}"));
    }
    // The CI policy grants access to exactly this state object.
    for (var, key) in [("state_bucket", "bucket"), ("state_key", "key")] {
        if let Some(value) = env.terraform.backend.get(key) {
            pairs.push(format!("{var}={value}"));
        }
    }
    pairs.extend(env.terraform.vars.iter().map(|(k, v)| format!("{k}={v}")));
    pairs
        .into_iter()
        .flat_map(|pair| ["-var".to_string(), pair])
        .collect()
}

fn lock_timeout(env: &Environment) -> String {
    format!("-lock-timeout={}", env.terraform.lock_timeout)
}

/// The first-ever deploy: only the repository and its lifecycle policy, so an image can be
/// pushed before the Lambda that needs it exists.
pub fn bootstrap(env: &Environment, process_env: &[(String, String)]) -> CmdLine {
    terraform(env, process_env, "apply")
        .args([
            "-input=false",
            "-no-color",
            "-auto-approve",
            &lock_timeout(env),
        ])
        .args([
            "-target=aws_ecr_repository.this",
            "-target=aws_ecr_lifecycle_policy.this",
        ])
        .args(vars(env, None))
}

pub fn plan(env: &Environment, process_env: &[(String, String)], image_uri: &str) -> CmdLine {
    terraform(env, process_env, "plan")
        .args([
            "-input=false",
            "-no-color",
            &lock_timeout(env),
            "-detailed-exitcode",
        ])
        .arg(format!("-out={}", plan_file(env)))
        .args(vars(env, Some(image_uri)))
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
