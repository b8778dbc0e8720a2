//! The `rollback` plan: deploy an image already in the registry, by tag or digest, with no build.

use std::path::Path;

use super::deploy::{DeployOptions, release_steps, terraform_env, with_saved_plan};
use super::image;
use super::{Action, Plan, Slot, Step, When};
use crate::facts::Facts;
use crate::settings::Environment;
use crate::tools::terraform;

/// The image to go back to: `previous` by default, else a tag or a `sha256:` digest.
pub fn target_reference(env: &Environment, to: Option<&str>) -> String {
    let repo = env.image_repo();
    match to {
        None => format!("{repo}:previous"),
        Some(digest) if digest.starts_with("sha256:") => format!("{repo}@{digest}"),
        Some(tag) => format!("{repo}:{tag}"),
    }
}

pub fn plan(
    env: &Environment,
    facts: &Facts,
    to: Option<&str>,
    opts: DeployOptions,
    tf_cli_config: Option<&Path>,
) -> Plan {
    let tf_env = terraform_env(env, tf_cli_config);
    let target = target_reference(env, to);
    let mut steps = vec![
        image::preflight(&facts.tools),
        image::identity(env),
        image::login(env),
        super::bootstrap::bucket_check(env),
    ];
    steps.push(
        Step::new(
            "terraform init",
            Action::Run {
                cmd: terraform::init(env, &tf_env),
                retry: false,
            },
        )
        .when(When::InitStale),
    );
    steps.push(Step::new(
        format!("rollback target lookup ({})", to.unwrap_or("previous")),
        Action::lookup(target.clone(), Slot::Digest, true),
    ));
    steps.push(Step::new(
        "manifest verification",
        Action::verify(target.clone(), env.platform),
    ));
    steps.extend(release_steps(env, &tf_env, opts.confirm(env)));
    with_saved_plan("rollback", env, steps, vec![target])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::image::{
        find,
        tests::{facts, settings},
    };

    #[test]
    fn rollback_builds_nothing_and_defaults_to_previous() {
        let settings = settings();
        let env = settings.environment("preprod").unwrap();
        let plan = plan(env, &facts(false), None, DeployOptions::default(), None);
        let lines = plan.command_lines();
        assert!(
            !lines.iter().any(|l| l.contains("buildx build")),
            "{lines:#?}"
        );
        let repo = "111111111111.dkr.ecr.eu-west-1.amazonaws.com/preprod-sse-streaming-lambda";
        assert_eq!(
            find(&plan, "docker buildx imagetools inspect").to_string(),
            format!("docker buildx imagetools inspect {repo}:previous --format \"{{{{json .}}}}\"")
        );
        let tf = find(&plan, "terraform -chdir=infrastructure/terraform plan").to_string();
        assert!(
            tf.contains(&format!("-var image_uri={repo}@<digest>")),
            "{tf}"
        );
    }

    #[test]
    fn rollback_targets_a_tag_or_a_digest() {
        let settings = settings();
        let env = settings.environment("local").unwrap();
        let repo = "127.0.0.1:5000/local-sse-streaming-lambda";
        assert_eq!(
            target_reference(env, Some("src-0123456789ab")),
            format!("{repo}:src-0123456789ab")
        );
        let digest = format!("sha256:{}", "b".repeat(64));
        assert_eq!(
            target_reference(env, Some(&digest)),
            format!("{repo}@{digest}")
        );
    }
}
