//! `terraform` command lines of the application root, its environment and its variable file,
//! and what terraform prints, parsed. Every command runs with `-chdir` into the root.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::cmdline::{Arg, CmdLine, Slot};
use crate::paths;
use crate::settings::{EMULATOR_ACCOUNT, EMULATOR_KEYS, Environment, Function};

type Vars = [(String, String)];

/// The environment every Terraform command runs with: its own data directory, the region, and
/// on the local stack the emulator with its dummy keys and the offline CLI config.
pub fn terraform_env(env: &Environment, tf_cli_config: Option<&Path>) -> Vec<(String, String)> {
    let data_dir = paths::terraform_data_dir(&env.name).display().to_string();
    let mut vars = vec![
        ("TF_IN_AUTOMATION", "1".to_string()),
        ("TF_DATA_DIR", data_dir),
        ("AWS_REGION", env.region.clone()),
    ];
    let config = tf_cli_config.map(|c| ("TF_CLI_CONFIG_FILE", c.display().to_string()));
    vars.extend(config);
    if let Some(local) = &env.local {
        vars.push(("AWS_ENDPOINT_URL", local.endpoint_url.clone()));
        // moto's IAM is not thread-safe (getmoto/moto#5643): one change at a time.
        vars.push(("TF_CLI_ARGS_apply", "-parallelism=1".into()));
        if env.account_id == EMULATOR_ACCOUNT {
            vars.push(("AWS_ACCESS_KEY_ID", EMULATOR_KEYS.0.into()));
            vars.push(("AWS_SECRET_ACCESS_KEY", EMULATOR_KEYS.1.into()));
        } else {
            // Another emulator account: the session `local up` opened there (see
            // `paths::emulator_credentials`).
            let file = paths::emulator_credentials().display().to_string();
            vars.push(("AWS_SHARED_CREDENTIALS_FILE", file));
            vars.push(("AWS_PROFILE", format!("xtask-{}", env.account_id)));
        }
    }
    vars.into_iter().map(|(k, v)| (k.to_string(), v)).collect()
}

/// The saved plan's absolute path (terraform runs with `-chdir`), under `target/`, named by
/// the run, so that two runs of one environment never apply each other's plan.
pub fn plan_file(env: &Environment, run: &str) -> String {
    paths::plan_file(&env.name, run).display().to_string()
}

/// The variable file the runner writes before a plan: every function of the environment.
pub fn vars_path(env: &Environment, run: &str) -> String {
    let file = format!("functions-{run}.tfvars.json");
    paths::env_dir(&env.name).join(file).display().to_string()
}

/// One entry of the root's `functions` map: its values, and the image it runs.
#[derive(Debug, Clone, PartialEq)]
pub struct FunctionVars {
    pub name: String,
    /// `repository@<digest>`: filled from the slot when the file is written; `None` for the
    /// first deploy's ECR-only apply.
    pub image: Option<(String, Slot)>,
    pub values: Value,
}

impl FunctionVars {
    /// `readers`: other accounts' deploy roles that may pull (environments promoting from this
    /// one).
    pub fn new(env: &Environment, f: &Function, readers: Vec<String>, image: bool) -> FunctionVars {
        let values = json!({
            "function_name": f.function_name,
            "repository_name": f.repository,
            "execution_role_name": f.execution_role,
            "architecture": f.platform.lambda(),
            "invoke_mode": f.invoke_mode.name(),
            "memory_size": f.memory_size,
            "timeout": f.timeout,
            "log_retention_days": f.log_retention_days,
            "environment_variables": f.environment,
            "function_url_auth_type": f.url_auth_type,
            "description": f.description,
            "repository_readers": readers,
        });
        let image = image.then(|| (env.image_repo(f), Slot::Digest(f.name.clone())));
        FunctionVars {
            name: f.name.clone(),
            image,
            values,
        }
    }
}

/// The variable file's text, each image's digest given by `digest`.
pub fn vars_file(functions: &[FunctionVars], mut digest: impl FnMut(&Slot) -> String) -> String {
    let mut map = BTreeMap::new();
    for f in functions {
        let mut value = f.values.clone();
        value["image_uri"] = json!(f.image.as_ref().map(|(r, s)| format!("{r}@{}", digest(s))));
        map.insert(f.name.as_str(), value);
    }
    serde_json::to_string_pretty(&json!({ "functions": map })).unwrap_or_default()
}

/// `terraform -chdir=DIR` then `words` (a subcommand and fixed flags, none with a space),
/// with the process environment.
pub(super) fn tf(chdir: Arg, process_env: &Vars, words: &str) -> CmdLine {
    let cmd = CmdLine::new("terraform").arg(chdir);
    cmd.args(words.split(' ')).env(process_env)
}

pub(super) fn chdir(dir: &str) -> Arg {
    format!("-chdir={dir}").into()
}

/// `plan` into a saved plan file, which `show` prints and `apply` applies as it is.
pub(super) fn plan_into(chdir: Arg, process_env: &Vars, lock: &str, out: &str) -> CmdLine {
    let words = format!("plan -input=false -no-color -lock-timeout={lock} -detailed-exitcode");
    tf(chdir, process_env, &words).arg(format!("-out={out}"))
}

pub(super) fn apply_saved(chdir: Arg, process_env: &Vars, lock: &str, file: &str) -> CmdLine {
    let words = format!("apply -input=false -no-color -lock-timeout={lock}");
    tf(chdir, process_env, &words).arg(file)
}

fn root(env: &Environment) -> Arg {
    chdir(&env.terraform.dir)
}

/// `-backend-config=KEY=VALUE` of each backend setting, in key order.
pub(super) fn backend(env: &Environment, key: Option<String>) -> Vec<String> {
    let value = |k: &String, v: &String| key.clone().filter(|_| k == "key").unwrap_or(v.clone());
    let config = env.terraform.backend.iter();
    config
        .map(|(k, v)| format!("-backend-config={k}={}", value(k, v)))
        .collect()
}

pub fn init(env: &Environment, process_env: &Vars) -> CmdLine {
    tf(root(env), process_env, "init -input=false -no-color").args(backend(env, None))
}

/// `-var`s of the scalars, then the functions' variable file.
fn vars(env: &Environment, file: &str) -> Vec<String> {
    let (name, account, region, project) = (&env.name, &env.account_id, &env.region, &env.project);
    let vars = format!("environment={name} account_id={account} region={region} project={project}");
    let vars = vars
        .split(' ')
        .flat_map(|pair| ["-var".to_string(), pair.to_string()]);
    vars.chain([format!("-var-file={file}")]).collect()
}

/// The resource addresses of one function's repository and its lifecycle policy.
pub fn repository_targets(function: &str) -> [String; 2] {
    ["aws_ecr_repository.this", "aws_ecr_lifecycle_policy.this"]
        .map(|r| format!("-target=module.function[\"{function}\"].{r}"))
}

/// `apply -auto-approve` of the application root: `flag`, then the lock timeout.
fn apply_now(env: &Environment, process_env: &Vars, flag: &str) -> CmdLine {
    let lock = &env.terraform.lock_timeout;
    let words = format!("apply{flag} -input=false -no-color -auto-approve -lock-timeout={lock}");
    tf(root(env), process_env, &words)
}

/// A first deploy: only the repositories and their lifecycle policies, so images can be pushed
/// before the Lambdas that need them exist.
pub fn create_repositories(
    env: &Environment,
    process_env: &Vars,
    functions: &[&Function],
    file: &str,
) -> CmdLine {
    let targets = functions.iter().flat_map(|f| repository_targets(&f.name));
    let cmd = apply_now(env, process_env, "").args(targets);
    cmd.args(vars(env, file))
}

/// Saves into the state what a refresh finds, and the moves of `moved` blocks, changing no
/// infrastructure: a targeted apply refuses to run while moves are pending (the first deploy
/// of a new function into an environment upgraded from an older configuration).
pub fn refresh_only(env: &Environment, process_env: &Vars, file: &str) -> CmdLine {
    apply_now(env, process_env, " -refresh-only").args(vars(env, file))
}

pub fn plan(env: &Environment, process_env: &Vars, run: &str, file: &str) -> CmdLine {
    let (lock, out) = (&env.terraform.lock_timeout, plan_file(env, run));
    plan_into(root(env), process_env, lock, &out).args(vars(env, file))
}

pub fn show(env: &Environment, process_env: &Vars, run: &str) -> CmdLine {
    tf(root(env), process_env, "show -json -no-color").arg(plan_file(env, run))
}

pub fn apply(env: &Environment, process_env: &Vars, run: &str) -> CmdLine {
    let (lock, file) = (&env.terraform.lock_timeout, plan_file(env, run));
    apply_saved(root(env), process_env, lock, &file)
}

pub fn output(env: &Environment, process_env: &Vars) -> CmdLine {
    tf(root(env), process_env, "output -json -no-color")
}

/// `terraform show -json PLAN` → one line per resource change (and per `moved` block that
/// carried a resource), then the totals.
pub fn summarize_plan(json: &str) -> Result<Vec<String>> {
    #[derive(Deserialize)]
    struct Show {
        #[serde(default)]
        resource_changes: Vec<Change>,
    }
    #[derive(Deserialize)]
    struct Change {
        address: String,
        previous_address: Option<String>,
        change: Actions,
    }
    #[derive(Deserialize)]
    struct Actions {
        actions: Vec<String>,
    }
    let plan: Show =
        serde_json::from_str(json).context("terraform show -json is not the expected JSON")?;
    let (mut lines, mut counts) = (Vec::new(), [0; 4]);
    for rc in plan.resource_changes {
        if let Some(from) = &rc.previous_address {
            counts[3] += 1;
            lines.push(format!("moved {from} to {}", rc.address));
        }
        let actions: Vec<&str> = rc.change.actions.iter().map(String::as_str).collect();
        // The symbol, and which of add (0), change (1) and destroy (2) the action counts for.
        let (symbol, counted): (&str, &[usize]) = match actions.as_slice() {
            ["no-op"] | ["read"] => continue,
            ["create"] => ("+", &[0]),
            ["update"] => ("~", &[1]),
            ["delete"] => ("-", &[2]),
            _ => ("-/+", &[0, 2]),
        };
        counted.iter().for_each(|&i| counts[i] += 1);
        lines.push(format!("{symbol} {}", rc.address));
    }
    let [add, change, destroy, moved] = counts;
    let moved = if moved > 0 {
        format!(", {moved} moved")
    } else {
        String::new()
    };
    lines.push(format!(
        "plan: {add} to add, {change} to change, {destroy} to destroy{moved}"
    ));
    Ok(lines)
}

/// The cause and the fix of a failed plan or apply, when terraform's error output names one
/// that xtask can explain: a stale saved plan or a state lock held by another run (two
/// deploys of one environment at once), a variable without a value.
pub fn failure_hint(stderr: &str, env: &str, lock_timeout: &str) -> Option<String> {
    let hint = if stderr.contains("Saved plan is stale") {
        format!(
            "the state of `{env}` changed after this run made its plan (another deploy of \
             `{env}` applied meanwhile), so nothing of this plan was applied: run the command \
             again"
        )
    } else if stderr.contains("Error acquiring the state lock") {
        format!(
            "another run holds the state lock of `{env}` (its ID and who holds it are printed \
             above) and did not release it within lock_timeout = {lock_timeout}: wait for it to \
             finish, then run the command again; use `terraform force-unlock ID` only when that \
             run is gone"
        )
    } else if stderr.contains("No value for required variable") {
        format!(
            "a variable of the configuration `{env}` uses has no value: the configuration and \
             this xtask disagree on its variables (terraform never asks: -input=false)"
        )
    } else {
        return None;
    };
    Some(hint)
}

/// One `terraform output -json` value.
#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct OutputValue {
    pub value: Value,
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
        let moved = r#"{"resource_changes":[
            {"address":"module.function[\"a\"].aws_ecr_repository.this",
             "previous_address":"aws_ecr_repository.this","change":{"actions":["no-op"]}}]}"#;
        assert_eq!(
            summarize_plan(moved).unwrap(),
            [
                "moved aws_ecr_repository.this to module.function[\"a\"].aws_ecr_repository.this",
                "plan: 0 to add, 0 to change, 0 to destroy, 1 moved"
            ]
        );
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
                .contains("disagree on its variables")
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
