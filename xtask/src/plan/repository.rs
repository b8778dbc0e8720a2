//! Steps shared by every command that may be the first one in an environment: Terraform's
//! environment and `init`, then, when the ECR repository does not exist yet, the targeted apply
//! that creates it (asking first for a protected environment outside CI). `image` and `deploy`
//! both start with them, so either works on a fresh environment.

use std::path::Path;

use super::{Action, Step, When};
use crate::paths;
use crate::settings::{EMULATOR_KEYS, Environment};
use crate::tools::terraform;

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

/// `terraform init` (skipped when the data directory is already initialised for this backend),
/// the repository lookup, and on a first run the targeted apply of the repository.
pub fn steps(env: &Environment, tf_env: &[(String, String)], confirm: bool) -> Vec<Step> {
    let mut steps = vec![
        // The account layer must exist first; without it `init` would fail half-way.
        super::bootstrap::bucket_check(env),
        Step::new(
            "terraform init",
            Action::Run {
                cmd: terraform::init(env, tf_env),
                retry: false,
            },
        )
        .when(When::InitStale),
        Step::new(
            "ECR repository lookup",
            Action::CheckRepository {
                name: env.repository.clone(),
                required: false,
            },
        ),
    ];
    if confirm {
        steps.push(
            Step::new(
                "confirmation (ECR repository bootstrap)",
                Action::Confirm {
                    prompt: format!(
                        "create the ECR repository `{}` of protected environment `{}` \
                         (targeted terraform apply)?",
                        env.repository, env.name
                    ),
                },
            )
            .when(When::RepositoryMissing),
        );
    }
    steps.push(
        Step::new(
            "ECR repository bootstrap (first run: targeted apply)",
            Action::Run {
                cmd: terraform::bootstrap(env, tf_env),
                retry: false,
            },
        )
        .when(When::RepositoryMissing),
    );
    steps
}
