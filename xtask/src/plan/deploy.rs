//! The `deploy` plan: init, bootstrap the repository on a first deploy, the image, then a
//! Terraform plan and apply pinned to the image digest, and the deployment tags.

use std::path::Path;

use anyhow::Result;

use super::image::{self, Options};
use super::{Action, DIGEST, NOW, Plan, Slot, Step, When};
use crate::facts::Facts;
use crate::settings::Environment;
use crate::tools::terraform;

pub use super::repository::terraform_env;

#[derive(Debug, Clone, Copy, Default)]
pub struct DeployOptions {
    pub image: Options,
    pub yes: bool,
    /// Running in CI, where nobody can answer a prompt: the pipeline's approval gate decides.
    pub ci: bool,
}

impl DeployOptions {
    /// Protected environments ask before applying, unless `--yes` or CI.
    pub fn confirm(&self, env: &Environment) -> bool {
        env.protected && !self.yes && !self.ci
    }
}

pub fn plan(
    env: &Environment,
    facts: &Facts,
    opts: DeployOptions,
    tf_cli_config: Option<&Path>,
) -> Result<Plan> {
    let tf_env = terraform_env(env, tf_cli_config);
    let mut steps = vec![
        image::preflight(&facts.tools),
        image::identity(env),
        image::login(env),
    ];
    steps.extend(super::repository::steps(env, &tf_env, opts.confirm(env)));
    steps.extend(image::build_steps(env, facts, opts.image)?);
    steps.extend(release_steps(env, &tf_env, opts.confirm(env)));
    Ok(with_saved_plan(
        "deploy",
        env,
        steps,
        image::tags(env, &facts.git),
    ))
}

/// A plan that saves a Terraform plan file, which the runner deletes when it ends.
pub(super) fn with_saved_plan(
    command: &'static str,
    env: &Environment,
    steps: Vec<Step>,
    tags: Vec<String>,
) -> Plan {
    Plan {
        command,
        env: env.name.clone(),
        steps,
        cleanup: vec![terraform::plan_file(env)],
        image_repo: env.image_repo(),
        tags,
    }
}

/// From the `live` lookup to the outputs: shared by `deploy` and `rollback`.
pub(super) fn release_steps(
    env: &Environment,
    tf_env: &[(String, String)],
    confirm: bool,
) -> Vec<Step> {
    let repo = env.image_repo();
    let live = format!("{repo}:live");
    let image_uri = format!("{repo}@{DIGEST}");
    let mut steps = vec![Step::new(
        "current deployment lookup (live tag)",
        Action::lookup(live.clone(), Slot::LiveDigest, false),
    )];
    steps.push(Step::new(
        "terraform plan",
        Action::TerraformPlan {
            cmd: terraform::plan(env, tf_env, &image_uri),
            show: terraform::show(env, tf_env),
        },
    ));
    if confirm {
        steps.push(
            Step::new(
                "confirmation",
                Action::Confirm {
                    prompt: format!(
                        "apply these changes to protected environment `{}`?",
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
                cmd: terraform::apply(env, tf_env),
            },
        )
        .when(When::ChangesPlanned),
    );
    // `live` is the commit point, written last: `previous` (the image `live` named) first,
    // then `deployed-<time>`, then `live`. Whatever fails partway, `live` still names the old
    // image, so the next run (even with no changes to apply) writes all three again.
    steps.push(
        Step::new(
            "keep the previous image as the rollback target",
            Action::retag(env, Slot::LiveDigest, vec!["previous".into()]),
        )
        .when(When::PreviousMoves),
    );
    steps.push(
        Step::new(
            "mark the deployed image",
            Action::retag(
                env,
                Slot::Digest,
                vec![format!("deployed-{NOW}"), "live".into()],
            ),
        )
        .when(When::LiveMoves),
    );
    steps.push(Step::new(
        "terraform outputs",
        Action::Outputs {
            cmd: terraform::output(env, tf_env),
        },
    ));
    // On the local stack the function really runs: the URL printed at the end streams.
    if let Some(local) = &env.local {
        steps.push(Step::new(
            "serve the function locally (Lambda emulator)",
            Action::ServeLocal {
                endpoint_url: local.endpoint_url.clone(),
                region: env.region.clone(),
                platform: env.platform,
            },
        ));
    }
    steps
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::image::{
        find,
        tests::{facts, settings},
    };

    fn deploy(name: &str) -> Plan {
        let settings = settings();
        plan(
            settings.environment(name).unwrap(),
            &facts(false),
            DeployOptions::default(),
            None,
        )
        .unwrap()
    }

    #[test]
    fn deploy_order_is_the_documented_one() {
        let plan = deploy("preprod");
        let titles: Vec<&str> = plan.steps.iter().map(|s| s.title.as_str()).collect();
        let position = |needle: &str| {
            titles
                .iter()
                .position(|t| t.starts_with(needle))
                .unwrap_or_else(|| panic!("{needle} missing from {titles:?}"))
        };
        let order = [
            "tool preflight",
            "account and region check",
            // Before any Terraform: a registry that is down stops the run with nothing changed.
            "registry login",
            "state bucket exists",
            "terraform init",
            "ECR repository bootstrap",
            "docker buildx build --push",
            "manifest verification",
            "terraform plan",
            "terraform apply",
        ];
        let positions: Vec<usize> = order.iter().map(|n| position(n)).collect();
        assert!(positions.windows(2).all(|w| w[0] < w[1]), "{titles:?}");
        assert_eq!(
            plan.steps[position("ECR repository bootstrap")].when,
            When::RepositoryMissing
        );
        assert_eq!(
            plan.steps[position("terraform apply")].when,
            When::ChangesPlanned
        );
    }

    #[test]
    fn terraform_lines_are_exact_and_pinned_to_a_digest() {
        let plan = deploy("prod");
        let vars = "-var environment=prod -var account_id=222222222222 -var region=eu-west-1 \
                    -var platform=linux/amd64";
        let settings_vars = "-var function_url_auth_type=AWS_IAM \
                             -var log_retention_days=14 -var memory_size=1024 -var timeout=60";
        let repo = "222222222222.dkr.ecr.eu-west-1.amazonaws.com/prod-sse-streaming-lambda";
        // Absolute, under target/: terraform runs with -chdir, and the file is no source.
        let saved = crate::paths::root().join("target/xtask/prod/prod-<run>.tfplan");
        let saved = saved.display();
        assert_eq!(
            find(&plan, "terraform -chdir=infrastructure/terraform init").to_string(),
            "terraform -chdir=infrastructure/terraform init -input=false -no-color \
             -backend-config=bucket=prod-sse-streaming-tfstate \
             -backend-config=key=prod/sse-streaming.tfstate -backend-config=region=eu-west-1 \
             -backend-config=use_lockfile=true"
        );
        assert_eq!(
            find(&plan, "terraform -chdir=infrastructure/terraform apply -input=false -no-color -auto-approve")
                .to_string(),
            format!(
                "terraform -chdir=infrastructure/terraform apply -input=false -no-color -auto-approve \
                 -lock-timeout=5m -target=aws_ecr_repository.this -target=aws_ecr_lifecycle_policy.this \
                 {vars} {settings_vars}"
            )
        );
        let tf_plan = find(&plan, "terraform -chdir=infrastructure/terraform plan").to_string();
        assert_eq!(
            tf_plan,
            format!(
                "terraform -chdir=infrastructure/terraform plan -input=false -no-color -lock-timeout=5m \
                 -detailed-exitcode -out={saved} {vars} -var image_uri={repo}@<digest> {settings_vars}"
            )
        );
        assert!(!tf_plan.contains(":latest"));
        assert_eq!(
            find(&plan, "terraform -chdir=infrastructure/terraform apply -input=false -no-color -lock-timeout")
                .to_string(),
            format!(
                "terraform -chdir=infrastructure/terraform apply -input=false -no-color -lock-timeout=5m {saved}"
            )
        );
        assert_eq!(plan.cleanup, [saved.to_string()]);
        let confirm = plan
            .steps
            .iter()
            .position(|s| s.title == "confirmation")
            .unwrap();
        assert!(plan.steps[confirm + 1].title.starts_with("terraform apply"));
    }

    #[test]
    fn only_protected_environments_ask_and_never_in_ci() {
        let settings = settings();
        let asks = |name: &str, yes: bool, ci: bool| {
            let opts = DeployOptions {
                yes,
                ci,
                ..DeployOptions::default()
            };
            plan(
                settings.environment(name).unwrap(),
                &facts(false),
                opts,
                None,
            )
            .unwrap()
            .steps
            .iter()
            .any(|s| matches!(s.action, Action::Confirm { .. }))
        };
        assert!(asks("prod", false, false));
        assert!(!asks("prod", true, false));
        assert!(!asks("prod", false, true));
        assert!(!asks("preprod", false, false));
    }

    #[test]
    fn the_image_variable_is_always_a_digest_reference() {
        for name in ["local", "preprod", "prod"] {
            let plan = deploy(name);
            let line = find(&plan, "terraform -chdir=infrastructure/terraform plan").to_string();
            let uri = line
                .split("image_uri=")
                .nth(1)
                .unwrap()
                .split(' ')
                .next()
                .unwrap();
            assert!(uri.ends_with("-sse-streaming-lambda@<digest>"), "{uri}");
            let resolved = uri.replace(DIGEST, &format!("sha256:{}", "a".repeat(64)));
            let (_, digest) = resolved.split_once('@').unwrap();
            assert_eq!(digest.len(), 71);
        }
    }

    #[test]
    fn local_terraform_talks_to_the_emulator_with_dummy_keys() {
        let settings = settings();
        let env = settings.environment("local").unwrap();
        let vars = terraform_env(env, Some(Path::new("/x/terraform.rc")));
        let get = |k: &str| {
            vars.iter()
                .find(|(key, _)| key == k)
                .map(|(_, v)| v.as_str())
        };
        assert_eq!(get("AWS_ENDPOINT_URL"), Some("http://127.0.0.1:4566"));
        assert_eq!(get("TF_CLI_CONFIG_FILE"), Some("/x/terraform.rc"));
        let prod = terraform_env(settings.environment("prod").unwrap(), None);
        assert!(
            !prod
                .iter()
                .any(|(k, _)| k.starts_with("AWS_ENDPOINT") || k == "AWS_ACCESS_KEY_ID")
        );
    }

    #[test]
    fn only_local_stack_deploys_serve_the_function() {
        let local = deploy("local");
        let last = local.steps.last().unwrap();
        assert_eq!(last.title, "serve the function locally (Lambda emulator)");
        assert_eq!(last.when, When::Always);
        assert_eq!(
            last.action,
            Action::ServeLocal {
                endpoint_url: "http://127.0.0.1:4566".into(),
                region: "us-east-1".into(),
                platform: crate::settings::Platform::Amd64,
            }
        );
        let described = local.to_string();
        assert!(
            described.contains(
                "GET http://127.0.0.1:4566/2015-03-31/functions/<function_name> (Lambda \
                 GetFunction in us-east-1)"
            ) && described.contains("local function url: http://<bridge>:9000/lambda-url/"),
            "{described}"
        );
        for name in ["preprod", "prod"] {
            assert!(
                !deploy(name)
                    .steps
                    .iter()
                    .any(|s| matches!(s.action, Action::ServeLocal { .. })),
                "{name}"
            );
        }
    }

    #[test]
    fn deployment_tags_move_by_manifest_copy_and_are_read_back() {
        let repo = "127.0.0.1:5000/local-sse-streaming-lambda";
        let plan = deploy("local");
        type Retag<'a> = (&'a str, When, &'a Slot, &'a Vec<String>, Vec<String>);
        let retags: Vec<Retag> = plan
            .steps
            .iter()
            // The image part's own tags (a skipped build) are the image plan's test.
            .filter(|s| s.when != When::ImageFound)
            .filter_map(|s| match &s.action {
                Action::Retag {
                    repository,
                    slot,
                    tags,
                    verify,
                } => {
                    assert_eq!(repository, "local-sse-streaming-lambda");
                    Some((
                        s.title.as_str(),
                        s.when,
                        slot,
                        tags,
                        verify.iter().map(ToString::to_string).collect(),
                    ))
                }
                _ => None,
            })
            .collect();
        let inspect = |tag: &str| {
            format!("docker buildx imagetools inspect {repo}:{tag} --format \"{{{{json .}}}}\"")
        };
        assert_eq!(
            retags,
            [
                (
                    "keep the previous image as the rollback target",
                    When::PreviousMoves,
                    &Slot::LiveDigest,
                    &vec!["previous".to_string()],
                    vec![inspect("previous")],
                ),
                (
                    "mark the deployed image",
                    When::LiveMoves,
                    &Slot::Digest,
                    // `live` last: it is the commit point a failed run leaves unmoved.
                    &vec!["deployed-<now>".to_string(), "live".to_string()],
                    vec![inspect("deployed-<now>"), inspect("live")],
                ),
            ]
        );
        // The copy itself is no command line: nothing in the plan may rewrap the manifest.
        assert!(
            !plan
                .command_lines()
                .iter()
                .any(|c| c.contains("imagetools create"))
        );
    }
}
