//! The `bootstrap` plan: the account layer an administrator applies once per account and
//! region (state bucket, GitHub OIDC provider, deploy role, one execution role per function),
//! as `cdk bootstrap` does for CDK. A second run finds everything in place and says so.

use std::path::Path;

use super::{Action, Plan, Step, When, steps};
use crate::facts::Tool;
use crate::paths;
use crate::settings::Environment;
use crate::tools::{bootstrap as tf, terraform};

#[derive(Debug, Clone, Copy, Default)]
pub struct Options {
    pub yes: bool,
    /// Running in CI, where nobody can answer a prompt.
    pub ci: bool,
}

/// The environment of the bootstrap root's Terraform: the application's, with a data
/// directory of its own so the two roots never share backend settings.
pub fn bootstrap_env(env: &Environment, tf_cli_config: Option<&Path>) -> Vec<(String, String)> {
    let mut vars = terraform::terraform_env(env, tf_cli_config);
    let data_dir = paths::env_dir(&env.name).join("bootstrap-terraform");
    for (_, dir) in vars.iter_mut().filter(|(k, _)| k == "TF_DATA_DIR") {
        *dir = data_dir.display().to_string();
    }
    vars
}

/// `source`: the environment `env` promotes from, whose repositories its CI may read.
pub fn plan(
    env: &Environment,
    source: Option<&Environment>,
    tools: &[(Tool, String)],
    opts: Options,
    tf_cli_config: Option<&Path>,
) -> Plan {
    let tf_env = bootstrap_env(env, tf_cli_config);
    let bucket = steps::state_bucket(env);
    let local_state = tf::local_state(env).display().to_string();
    let first = || When::FirstBootstrap;
    let lookup = Action::CheckBucket {
        bucket: bucket.clone(),
        local_state: Some(local_state.clone()),
        required: false,
    };
    let vars = Action::WriteFile {
        path: tf::vars_path(env),
        contents: tf::vars_file(env, source),
    };
    let copy = Action::CopyDirs {
        copies: tf::first_run_sources(env),
    };
    let select = Action::WriteFile {
        path: tf::override_file(env),
        contents: tf::override_contents(env),
    };
    let mut steps = steps::guards(env, tools, false);
    steps.push(Step::new(format!("state bucket lookup ({bucket})"), lookup));
    let title = "the account layer's variables (functions, promotion source)";
    steps.push(Step::new(title, vars));
    let title = "first run: a private copy of the configuration, on local state";
    steps.push(Step::new(title, copy).when(first()));
    let title = "first run: select the local backend in the copy";
    steps.push(Step::new(title, select).when(first()));
    let init = tf::init_local(env, &tf_env);
    steps.push(steps::run("terraform init (local state)", init, first()));
    let title = format!("terraform init (state in s3://{bucket})");
    let init = tf::init(env, &tf_env);
    steps.push(steps::run(title, init, When::Bootstrapped));
    let commands = [
        tf::plan(env, &tf_env),
        tf::show(env, &tf_env),
        tf::apply(env, &tf_env),
    ];
    let name = &env.name;
    let ask =
        format!("apply these changes to the account layer of protected environment `{name}`?");
    let ask = steps::asks(env, opts.yes, opts.ci).then_some(ask);
    let title = "terraform plan (account layer)";
    steps.extend(steps::plan_apply(title, commands, ask));
    let title = format!("move the state into s3://{bucket} (terraform init -migrate-state)");
    steps.push(steps::run(title, tf::migrate(env, &tf_env), first()));
    let remove = Action::RemoveFiles {
        paths: vec![
            local_state.clone(),
            format!("{local_state}.backup"),
            tf::first_run_copy(env).display().to_string(),
        ],
    };
    let title = "delete the first run's copy and local state";
    steps.push(Step::new(title, remove).when(first()));
    let outputs = Action::Outputs {
        cmd: tf::output(env, &tf_env),
    };
    steps.push(Step::new("terraform outputs (what CI needs)", outputs));
    let cleanup = vec![tf::plan_file(env), tf::vars_path(env)];
    Plan::new("bootstrap", env, steps, cleanup, vec![])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::tests::{facts, settings};

    fn commands(name: &str) -> (Plan, Vec<String>) {
        let settings = settings();
        let env = settings.environment(name).unwrap();
        let plan = plan(env, None, &facts(false).tools, Options::default(), None);
        let lines = plan.command_lines();
        (plan, lines)
    }

    #[test]
    fn first_run_uses_a_private_copy_on_local_state_then_migrates_into_the_bucket() {
        let (plan, lines) = commands("prod");
        let titles: Vec<(&str, When)> = plan
            .steps
            .iter()
            .map(|s| (s.title.as_str(), s.when.clone()))
            .collect();
        let bucket = "prod-sse-streaming-tfstate";
        assert_eq!(
            titles,
            [
                ("tool preflight", When::Always),
                ("account and region check", When::Always),
                (&*format!("state bucket lookup ({bucket})"), When::Always),
                (
                    "the account layer's variables (functions, promotion source)",
                    When::Always
                ),
                (
                    "first run: a private copy of the configuration, on local state",
                    When::FirstBootstrap
                ),
                (
                    "first run: select the local backend in the copy",
                    When::FirstBootstrap
                ),
                ("terraform init (local state)", When::FirstBootstrap),
                (
                    &*format!("terraform init (state in s3://{bucket})"),
                    When::Bootstrapped
                ),
                ("terraform plan (account layer)", When::Always),
                ("confirmation", When::ChangesPlanned),
                ("terraform apply (saved plan)", When::ChangesPlanned),
                (
                    &*format!("move the state into s3://{bucket} (terraform init -migrate-state)"),
                    When::FirstBootstrap
                ),
                (
                    "delete the first run's copy and local state",
                    When::FirstBootstrap
                ),
                ("terraform outputs (what CI needs)", When::Always),
            ]
        );
        let copy = crate::paths::root().join("target/xtask/prod/bootstrap-first-run");
        let copy = copy.display();
        // The first run never writes into infrastructure/: its override lives in the copy.
        match &plan.steps[4].action {
            Action::CopyDirs { copies } => assert_eq!(
                copies,
                &[
                    (
                        "infrastructure/bootstrap".to_string(),
                        format!("{copy}/bootstrap")
                    ),
                    (
                        "infrastructure/modules".to_string(),
                        format!("{copy}/modules")
                    ),
                ]
            ),
            other => panic!("{other:?}"),
        }
        match &plan.steps[5].action {
            Action::WriteFile { path, .. } => {
                assert_eq!(path, &format!("{copy}/bootstrap/local_backend_override.tf"))
            }
            other => panic!("{other:?}"),
        }
        let backend = format!(
            "-backend-config=bucket={bucket} -backend-config=key=prod/bootstrap.tfstate \
             -backend-config=region=eu-west-1 -backend-config=use_lockfile=true"
        );
        assert_eq!(
            lines[0],
            format!("terraform -chdir={copy}/bootstrap init -input=false -no-color -reconfigure")
        );
        assert_eq!(
            lines[1],
            format!(
                "terraform -chdir=infrastructure/bootstrap init -input=false -no-color {backend}"
            )
        );
        let saved = crate::paths::root().join("target/xtask/prod/bootstrap.tfplan");
        // Plan and apply run in whichever directory the bucket lookup chose.
        assert_eq!(
            lines[2],
            format!(
                "terraform -chdir=<bootstrap-root> plan -input=false -no-color -lock-timeout=5m \
                 -detailed-exitcode -out={} \
                 -var environment=prod -var account_id=222222222222 -var region=eu-west-1 \
                 -var project=sse-streaming -var state_bucket={bucket} \
                 -var app_state_key=prod/sse-streaming.tfstate \
                 -var github_repository=example-org/sse-streaming -var-file={}",
                saved.display(),
                crate::paths::root()
                    .join("target/xtask/prod/bootstrap.tfvars.json")
                    .display()
            )
        );
        assert!(lines.contains(&format!(
            "terraform -chdir=infrastructure/bootstrap init -input=false -no-color -migrate-state \
             -force-copy {backend}"
        )));
        assert!(
            !lines.iter().any(|l| l.contains("deny_insecure_transport")),
            "the deny-without-TLS policy is only ever switched off on the local stack"
        );
    }

    #[test]
    fn only_protected_environments_ask_and_never_in_ci() {
        let settings = settings();
        let asks = |name: &str, opts: Options| {
            let env = settings.environment(name).unwrap();
            plan(env, None, &facts(false).tools, opts, None)
                .steps
                .iter()
                .any(|s| matches!(s.action, Action::Confirm { .. }))
        };
        assert!(asks("prod", Options::default()));
        assert!(!asks(
            "prod",
            Options {
                yes: true,
                ci: false
            }
        ));
        assert!(!asks(
            "prod",
            Options {
                yes: false,
                ci: true
            }
        ));
        assert!(!asks("preprod", Options::default()));
    }

    #[test]
    fn the_override_selects_local_state_under_target() {
        let settings = settings();
        let env = settings.environment("local").unwrap();
        let lines = plan(env, None, &facts(false).tools, Options::default(), None).command_lines();
        assert!(
            lines
                .iter()
                .any(|l| l.contains("-var deny_insecure_transport=false")),
            "the emulator speaks plain HTTP"
        );
        let text = tf::override_contents(env);
        assert!(text.contains("backend \"local\""), "{text}");
        assert!(
            text.contains(
                &crate::paths::root()
                    .join("target/xtask/local/bootstrap-local.tfstate")
                    .display()
                    .to_string()
            ),
            "{text}"
        );
    }
}
