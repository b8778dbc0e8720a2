//! `terraform` command lines. Every one runs with `-chdir` into the environment's directory.

use std::collections::BTreeMap;

use anyhow::{Context, Result};
use serde::Deserialize;

use crate::cmdline::CmdLine;
use crate::settings::Environment;

/// The saved plan's absolute path (terraform runs with `-chdir`), under `target/`, named by
/// the run (`<run>`), so that two runs of one environment never apply each other's plan.
pub fn plan_file(env: &Environment) -> String {
    crate::paths::plan_file(&env.name, crate::cmdline::RUN)
        .display()
        .to_string()
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

/// `terraform show -json PLAN`, as far as the summary reads it.
#[derive(Deserialize)]
struct ShowJson {
    #[serde(default)]
    resource_changes: Vec<ResourceChange>,
}

#[derive(Deserialize)]
struct ResourceChange {
    address: String,
    change: Change,
}

#[derive(Deserialize)]
struct Change {
    actions: Vec<String>,
}

/// `terraform show -json` → one line per resource change, then the totals.
pub fn summarize_plan(json: &str) -> Result<Vec<String>> {
    let plan: ShowJson =
        serde_json::from_str(json).context("terraform show -json is not the expected JSON")?;
    let mut lines = Vec::new();
    let (mut add, mut change, mut destroy) = (0, 0, 0);
    for rc in plan.resource_changes {
        let actions: Vec<&str> = rc.change.actions.iter().map(String::as_str).collect();
        let symbol = match actions.as_slice() {
            ["no-op"] | ["read"] => continue,
            ["create"] => {
                add += 1;
                "+"
            }
            ["update"] => {
                change += 1;
                "~"
            }
            ["delete"] => {
                destroy += 1;
                "-"
            }
            _ => {
                add += 1;
                destroy += 1;
                "-/+"
            }
        };
        lines.push(format!("{symbol} {}", rc.address));
    }
    lines.push(format!(
        "plan: {add} to add, {change} to change, {destroy} to destroy"
    ));
    Ok(lines)
}

/// The cause and the fix of a failed plan or apply, when terraform's error output names one
/// that xtask can explain: a stale saved plan or a state lock held by another run (two
/// deploys of one environment at once), a variable without a value.
pub fn failure_hint(stderr: &str, env: &str, lock_timeout: &str) -> Option<String> {
    if stderr.contains("Saved plan is stale") {
        return Some(format!(
            "the state of `{env}` changed after this run made its plan (another deploy of \
             `{env}` applied meanwhile), so nothing of this plan was applied: run the command \
             again"
        ));
    }
    if stderr.contains("Error acquiring the state lock") {
        return Some(format!(
            "another run holds the state lock of `{env}` (its ID and who holds it are printed \
             above) and did not release it within lock_timeout = {lock_timeout}: wait for it to \
             finish, then run the command again; use `terraform force-unlock ID` only when that \
             run is gone"
        ));
    }
    let missing = stderr
        .lines()
        .find_map(|l| l.split("No value for required variable").nth(1))
        .map(|_| ());
    missing.map(|()| {
        format!(
            "a variable of the configuration has no value: set it under \
             [environments.{env}.terraform.vars] in the settings (terraform never asks: \
             -input=false)"
        )
    })
}

/// One `terraform output -json` value.
#[derive(Debug, Clone, Deserialize, serde::Serialize)]
pub struct OutputValue {
    pub value: serde_json::Value,
}

/// `terraform output -json`: output name → value.
pub type Outputs = BTreeMap<String, OutputValue>;

pub fn parse_outputs(json: &str) -> Result<Outputs> {
    serde_json::from_str(json).context("terraform output -json is not the expected JSON")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plan_summaries_count_changes() {
        let json = r#"{"resource_changes":[
            {"address":"aws_lambda_function.this","change":{"actions":["update"]}},
            {"address":"aws_ecr_repository.this","change":{"actions":["no-op"]}},
            {"address":"aws_lambda_function_url.this","change":{"actions":["create"]}},
            {"address":"aws_iam_role.x","change":{"actions":["delete","create"]}}]}"#;
        assert_eq!(
            summarize_plan(json).unwrap(),
            [
                "~ aws_lambda_function.this",
                "+ aws_lambda_function_url.this",
                "-/+ aws_iam_role.x",
                "plan: 2 to add, 1 to change, 1 to destroy"
            ]
        );
        assert!(summarize_plan(r#"{"resource_changes":[{"address":"x"}]}"#).is_err());
    }

    #[test]
    fn failures_are_explained() {
        let stale = "Error: Saved plan is stale\n\nThe given plan file can no longer be applied";
        let hint = failure_hint(stale, "prod", "5m").unwrap();
        assert!(hint.contains("nothing of this plan was applied") && hint.contains("again"));
        let lock = "Error: Error acquiring the state lock\n\nLock Info:\n  ID: 1";
        let hint = failure_hint(lock, "prod", "5m").unwrap();
        assert!(
            hint.contains("lock_timeout = 5m") && hint.contains("force-unlock"),
            "{hint}"
        );
        let var = "Error: No value for required variable\n  on fault.tf line 1:";
        assert!(
            failure_hint(var, "prod", "5m")
                .unwrap()
                .contains("terraform.vars")
        );
        assert_eq!(failure_hint("Error: something else", "prod", "5m"), None);
    }

    #[test]
    fn outputs_parse() {
        let o = parse_outputs(
            r#"{"function_url":{"sensitive":false,"type":"string","value":"http://x/"}}"#,
        )
        .unwrap();
        assert_eq!(o["function_url"].value, "http://x/");
    }
}
