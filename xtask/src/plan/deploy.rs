//! The `deploy` plan: init, bootstrap the repository on a first deploy, the image, then a
//! Terraform plan and apply pinned to the image digest, and the deployment tags.

use std::path::Path;

use anyhow::Result;

use super::image::{self, Facts, Options};
use super::{Action, DIGEST, LIVE_DIGEST, NOW, Plan, Slot, Step, When};
use crate::aws::EMULATOR_KEYS;
use crate::facts::Builder;
use crate::paths;
use crate::settings::Environment;
use crate::tools::{docker, terraform};

/// The environment every Terraform command runs with.
pub fn terraform_env(env: &Environment, tf_cli_config: Option<&Path>) -> Vec<(String, String)> {
    let mut vars = vec![
        ("TF_IN_AUTOMATION".to_string(), "1".to_string()),
        (
            "TF_DATA_DIR".to_string(),
            paths::terraform_data_dir(&env.name).display().to_string(),
        ),
        ("AWS_REGION".to_string(), env.region.clone()),
    ];
    if let Some(config) = tf_cli_config {
        vars.push((
            "TF_CLI_CONFIG_FILE".to_string(),
            config.display().to_string(),
        ));
    }
    if let Some(local) = &env.local {
        vars.push(("AWS_ENDPOINT_URL".to_string(), local.endpoint_url.clone()));
        vars.push(("AWS_ACCESS_KEY_ID".to_string(), EMULATOR_KEYS.0.to_string()));
        vars.push((
            "AWS_SECRET_ACCESS_KEY".to_string(),
            EMULATOR_KEYS.1.to_string(),
        ));
    }
    vars
}

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
    let mut steps = vec![image::preflight(facts), image::identity(env)];
    steps.push(Step::new(
        "terraform init",
        Action::Run {
            cmd: terraform::init(env, &tf_env),
            retry: false,
        },
    ));
    steps.push(Step::new(
        "ECR repository lookup",
        Action::CheckRepository {
            name: env.repository.clone(),
            required: false,
        },
    ));
    steps.push(
        Step::new(
            "ECR repository bootstrap (first deploy: targeted apply)",
            Action::Run {
                cmd: terraform::bootstrap(env, &tf_env),
                retry: false,
            },
        )
        .when(When::RepositoryMissing),
    );
    steps.extend(image::build_steps(env, facts, opts.image)?);
    steps.extend(release_steps(
        env,
        &facts.builder,
        &tf_env,
        opts.confirm(env),
    ));
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
        cleanup: vec![format!(
            "{}/{}",
            env.terraform.dir,
            terraform::plan_file(env)
        )],
        image_repo: env.image_repo(),
        tags,
    }
}

/// From the `live` lookup to the outputs: shared by `deploy` and `rollback`.
pub(super) fn release_steps(
    env: &Environment,
    builder: &Builder,
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
    let retag = |source: String, tags: Vec<String>| {
        let cmds = docker::retag(&source, &tags, builder.prefer_index_flag);
        let verify = tags.iter().map(|t| docker::inspect(t)).collect();
        Action::Retag {
            source,
            tags,
            cmds,
            verify,
        }
    };
    steps.push(
        Step::new(
            "keep the previous image as the rollback target",
            retag(
                format!("{repo}@{LIVE_DIGEST}"),
                vec![format!("{repo}:previous")],
            ),
        )
        .when(When::LiveChanged),
    );
    steps.push(
        Step::new(
            "mark the deployed image",
            retag(
                image_uri.clone(),
                vec![format!("{repo}:live"), format!("{repo}:deployed-{NOW}")],
            ),
        )
        .when(When::ChangesPlanned),
    );
    steps.push(Step::new(
        "terraform outputs",
        Action::Outputs {
            cmd: terraform::output(env, tf_env),
        },
    ));
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
            "terraform init",
            "ECR repository bootstrap",
            "registry login",
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
        let settings_vars = "-var state_bucket=prod-sse-streaming-tfstate \
                             -var state_key=prod/sse-streaming.tfstate \
                             -var function_url_auth_type=AWS_IAM \
                             -var github_repository=example-org/sse-streaming \
                             -var log_retention_days=14 -var memory_size=1024 -var timeout=60";
        let repo = "222222222222.dkr.ecr.eu-west-1.amazonaws.com/prod-sse-streaming-lambda";
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
                 -detailed-exitcode -out=prod.tfplan {vars} -var image_uri={repo}@<digest> {settings_vars}"
            )
        );
        assert!(!tf_plan.contains(":latest"));
        assert_eq!(
            find(&plan, "terraform -chdir=infrastructure/terraform apply -input=false -no-color -lock-timeout")
                .to_string(),
            "terraform -chdir=infrastructure/terraform apply -input=false -no-color -lock-timeout=5m prod.tfplan"
        );
        assert_eq!(plan.cleanup, ["infrastructure/terraform/prod.tfplan"]);
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
    fn deployment_tags_move_after_apply() {
        let repo = "127.0.0.1:5000/local-sse-streaming-lambda";
        let retags = |plan: &Plan| -> Vec<Vec<String>> {
            plan.steps
                .iter()
                .filter(|s| matches!(s.action, Action::Retag { .. }))
                .map(|s| s.commands().iter().map(ToString::to_string).collect())
                .collect()
        };
        // This buildx knows --prefer-index: one carbon copy per step.
        let settings = settings();
        let mut f = facts(false);
        f.builder.prefer_index_flag = true;
        let env = settings.environment("local").unwrap();
        let plan = plan(env, &f, DeployOptions::default(), None).unwrap();
        let inspect = |tag: &str| {
            format!("docker buildx imagetools inspect {repo}:{tag} --format \"{{{{json .}}}}\"")
        };
        assert_eq!(
            retags(&plan),
            [
                vec![
                    format!(
                        "docker buildx imagetools create --prefer-index=false --tag {repo}:previous {repo}@<live-digest>"
                    ),
                    inspect("previous"),
                ],
                vec![
                    format!(
                        "docker buildx imagetools create --prefer-index=false --tag {repo}:live \
                         --tag {repo}:deployed-<now> {repo}@<digest>"
                    ),
                    inspect("live"),
                    inspect("deployed-<now>"),
                ],
            ]
        );
        // An older buildx would wrap the manifest in an index: the engine copies it instead.
        let plan = deploy("local");
        assert_eq!(
            retags(&plan)[1],
            [
                format!("docker pull --quiet {repo}@<digest>"),
                format!("docker tag {repo}@<digest> {repo}:live"),
                format!("docker push --quiet {repo}:live"),
                format!("docker tag {repo}@<digest> {repo}:deployed-<now>"),
                format!("docker push --quiet {repo}:deployed-<now>"),
                inspect("live"),
                inspect("deployed-<now>"),
            ]
        );
    }
}
