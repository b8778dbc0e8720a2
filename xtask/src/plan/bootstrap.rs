//! The `bootstrap` plan: the account layer an administrator applies once per account and
//! region (state bucket, GitHub OIDC provider, deploy role, execution role), as `cdk
//! bootstrap` does for CDK. A second run finds everything in place and says so.

use std::path::Path;

use super::deploy::terraform_env;
use super::image;
use super::{Action, Plan, Step, When};
use crate::facts::Tool;
use crate::paths;
use crate::settings::Environment;
use crate::tools::bootstrap as tf;

#[derive(Debug, Clone, Copy, Default)]
pub struct Options {
    pub yes: bool,
    /// Running in CI, where nobody can answer a prompt.
    pub ci: bool,
}

/// The environment of the bootstrap root's Terraform: the application's, with a data
/// directory of its own so the two roots never share backend settings.
pub fn bootstrap_env(env: &Environment, tf_cli_config: Option<&Path>) -> Vec<(String, String)> {
    let data_dir = paths::env_dir(&env.name).join("bootstrap-terraform");
    terraform_env(env, tf_cli_config)
        .into_iter()
        .map(|(k, v)| match k.as_str() {
            "TF_DATA_DIR" => (k, data_dir.display().to_string()),
            _ => (k, v),
        })
        .collect()
}

/// The state bucket the settings name (validated to be present).
pub fn state_bucket(env: &Environment) -> String {
    env.terraform
        .backend
        .get("bucket")
        .cloned()
        .unwrap_or_default()
}

/// The state-bucket check that `deploy` runs before `terraform init`.
pub fn bucket_check(env: &Environment) -> Step {
    Step::new(
        format!("state bucket exists ({})", state_bucket(env)),
        Action::CheckBucket {
            bucket: state_bucket(env),
            local_state: None,
            required: true,
        },
    )
}

pub fn plan(
    env: &Environment,
    tools: &[(Tool, String)],
    opts: Options,
    tf_cli_config: Option<&Path>,
) -> Plan {
    let tf_env = bootstrap_env(env, tf_cli_config);
    let bucket = state_bucket(env);
    let local_state = tf::local_state(env).display().to_string();
    let mut steps = vec![image::preflight(tools), image::identity(env)];
    steps.push(Step::new(
        format!("state bucket lookup ({bucket})"),
        Action::CheckBucket {
            bucket: bucket.clone(),
            local_state: Some(local_state.clone()),
            required: false,
        },
    ));
    steps.push(
        Step::new(
            "first run: a private copy of the configuration, on local state",
            Action::CopyDirs {
                copies: tf::first_run_sources(env),
            },
        )
        .when(When::FirstBootstrap),
    );
    steps.push(
        Step::new(
            "first run: select the local backend in the copy",
            Action::WriteFile {
                path: tf::override_file(env),
                contents: tf::override_contents(env),
            },
        )
        .when(When::FirstBootstrap),
    );
    steps.push(
        Step::new(
            "terraform init (local state)",
            Action::Run {
                cmd: tf::init_local(env, &tf_env),
                retry: false,
            },
        )
        .when(When::FirstBootstrap),
    );
    steps.push(
        Step::new(
            format!("terraform init (state in s3://{bucket})"),
            Action::Run {
                cmd: tf::init(env, &tf_env),
                retry: false,
            },
        )
        .when(When::Bootstrapped),
    );
    steps.push(Step::new(
        "terraform plan (account layer)",
        Action::TerraformPlan {
            cmd: tf::plan(env, &tf_env),
            show: tf::show(env, &tf_env),
        },
    ));
    if env.protected && !opts.yes && !opts.ci {
        steps.push(
            Step::new(
                "confirmation",
                Action::Confirm {
                    prompt: format!(
                        "apply these changes to the account layer of protected environment `{}`?",
                        env.name
                    ),
                },
            )
            .when(When::ChangesPlanned),
        );
    }
    steps.push(
        Step::new(
            "terraform apply (saved plan)",
            Action::Apply {
                cmd: tf::apply(env, &tf_env),
            },
        )
        .when(When::ChangesPlanned),
    );
    steps.push(
        Step::new(
            format!("move the state into s3://{bucket} (terraform init -migrate-state)"),
            Action::Run {
                cmd: tf::migrate(env, &tf_env),
                retry: false,
            },
        )
        .when(When::FirstBootstrap),
    );
    steps.push(
        Step::new(
            "delete the first run's copy and local state",
            Action::RemoveFiles {
                paths: vec![
                    local_state.clone(),
                    format!("{local_state}.backup"),
                    tf::first_run_copy(env).display().to_string(),
                ],
            },
        )
        .when(When::FirstBootstrap),
    );
    steps.push(Step::new(
        "terraform outputs (what CI needs)",
        Action::Outputs {
            cmd: tf::output(env, &tf_env),
        },
    ));
    Plan {
        command: "bootstrap",
        env: env.name.clone(),
        steps,
        cleanup: vec![tf::plan_file(env)],
        image_repo: env.image_repo(),
        tags: vec![],
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::image::tests::{facts, settings};

    fn commands(name: &str) -> (Plan, Vec<String>) {
        let settings = settings();
        let env = settings.environment(name).unwrap();
        let plan = plan(env, &facts(false).tools, Options::default(), None);
        let lines = plan.command_lines();
        (plan, lines)
    }

    #[test]
    fn first_run_uses_a_private_copy_on_local_state_then_migrates_into_the_bucket() {
        let (plan, lines) = commands("prod");
        let titles: Vec<(&str, When)> = plan
            .steps
            .iter()
            .map(|s| (s.title.as_str(), s.when))
            .collect();
        let bucket = "prod-sse-streaming-tfstate";
        assert_eq!(
            titles,
            [
                ("tool preflight", When::Always),
                ("account and region check", When::Always),
                (&*format!("state bucket lookup ({bucket})"), When::Always),
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
        match &plan.steps[3].action {
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
        match &plan.steps[4].action {
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
                 -var state_bucket={bucket} \
                 -var app_state_key=prod/sse-streaming.tfstate \
                 -var github_repository=example-org/sse-streaming",
                saved.display()
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
            plan(env, &facts(false).tools, opts, None)
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
        let lines = plan(env, &facts(false).tools, Options::default(), None).command_lines();
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
