//! The `image` plan: identity, login, skip when the content tag exists, build, verify, smoke.

use anyhow::{Result, bail};

#[cfg(test)]
use super::CmdLine;
use super::{Action, CONTAINER, DIGEST, Plan, Slot, Step, When};
use crate::facts::{Facts, Git};
use crate::paths;
use crate::settings::Environment;
use crate::tools::docker;

#[derive(Debug, Clone, Copy, Default)]
pub struct Options {
    pub force: bool,
    pub allow_dirty: bool,
    pub no_smoke: bool,
}

/// The tags every push carries: the content tag first, then `git-<sha>` for clean trees, `latest`.
pub fn tags(env: &Environment, git: &Git) -> Vec<String> {
    let repo = env.image_repo();
    let mut tags = vec![format!("{repo}:{}", git.content_tag())];
    if !git.dirty {
        tags.push(format!("{repo}:git-{}", git.short));
    }
    tags.push(format!("{repo}:latest"));
    tags
}

pub fn plan(env: &Environment, facts: &Facts, opts: Options) -> Result<Plan> {
    let mut steps = vec![preflight(facts), identity(env)];
    steps.push(Step::new(
        "ECR repository exists",
        Action::CheckRepository {
            name: env.repository.clone(),
            required: true,
        },
    ));
    steps.extend(build_steps(env, facts, opts)?);
    Ok(Plan {
        command: "image",
        env: env.name.clone(),
        steps,
        cleanup: vec![],
        image_repo: env.image_repo(),
        tags: tags(env, &facts.git),
    })
}

pub(super) fn preflight(facts: &Facts) -> Step {
    let tools: Vec<String> = facts
        .tools
        .iter()
        .map(|(tool, version)| format!("{} {version}", tool.name()))
        .collect();
    Step::new(
        "tool preflight",
        Action::Note(format!("found {}", tools.join(", "))),
    )
}

pub(super) fn identity(env: &Environment) -> Step {
    Step::new(
        "account and region check",
        Action::CheckIdentity {
            account_id: env.account_id.clone(),
            region: env.region.clone(),
        },
    )
}

pub(super) fn login(env: &Environment) -> Step {
    let registry = env.registry();
    Step::new(
        format!("registry login ({registry})"),
        Action::Login {
            cmd: docker::login(&registry),
            registry,
        },
    )
}

/// Login, the skip check, build, verify and smoke: shared by `image` and `deploy`.
pub(super) fn build_steps(env: &Environment, facts: &Facts, opts: Options) -> Result<Vec<Step>> {
    let git = &facts.git;
    if git.dirty && env.protected && !opts.allow_dirty {
        bail!(
            "refusing to build from a dirty working tree for protected environment `{}`: \
             commit or stash the changes under {} (or pass --allow-dirty to push a `{}` image)",
            env.name,
            env.build_context,
            git.content_tag()
        );
    }
    let tags = tags(env, git);
    let content_ref = tags[0].clone();
    let mut steps = vec![login(env)];
    if opts.force {
        steps.push(Step::new(
            "content tag lookup",
            Action::Note("skipped: --force rebuilds".into()),
        ));
    } else {
        steps.push(Step::new(
            format!("content tag lookup ({})", git.content_tag()),
            Action::lookup(content_ref.clone(), Slot::Digest, false),
        ));
    }
    let metadata_file = paths::build_metadata(&env.name);
    let mut labels = vec![
        (
            "org.opencontainers.image.revision".to_string(),
            git.head.clone(),
        ),
        (
            "org.opencontainers.image.created".to_string(),
            git.commit_time.clone(),
        ),
    ];
    if let Some(url) = &git.source_url {
        labels.push(("org.opencontainers.image.source".to_string(), url.clone()));
    }
    let build = docker::build(&docker::Build {
        builder: env.builder.as_deref(),
        platform: env.platform,
        dockerfile: &env.dockerfile,
        context: &env.build_context,
        labels,
        build_args: env.build_args.clone().into_iter().collect(),
        cache_ref: format!("{}:buildcache", env.image_repo()),
        export_cache: facts.builder.exports_cache,
        metadata_file: &metadata_file,
        tags,
    });
    steps.push(
        Step::new(
            format!("docker buildx build --push ({})", env.platform),
            Action::Build {
                cmd: build,
                metadata_file,
            },
        )
        .when(When::ImageMissing),
    );
    steps.push(Step::new(
        "manifest verification",
        Action::verify(content_ref.clone(), env.platform),
    ));
    let smoke = if opts.no_smoke {
        Some("skipped: --no-smoke")
    } else if !env.smoke_test {
        Some("skipped: smoke_test = false in the settings")
    } else if !facts.host_runs {
        Some("skipped: the image's platform is not this machine's")
    } else {
        None
    };
    match smoke {
        Some(reason) => steps.push(Step::new("smoke test", Action::Note(reason.into()))),
        None => {
            let image = format!("{}@{DIGEST}", env.image_repo());
            // Also when the build was skipped: an image pushed by a run whose smoke test failed
            // must not pass unchecked the next time.
            steps.push(Step::new(
                "smoke test",
                Action::Smoke {
                    run: docker::run_detached(&image, env.platform),
                    port: docker::port(CONTAINER),
                    logs: docker::logs(CONTAINER),
                    remove: docker::remove(CONTAINER),
                    image,
                },
            ));
        }
    }
    Ok(steps)
}

/// A command line the plan reads back, for tests.
#[cfg(test)]
pub(super) fn find<'p>(plan: &'p Plan, prefix: &str) -> &'p CmdLine {
    plan.steps
        .iter()
        .flat_map(|s| s.commands())
        .find(|c| c.to_string().starts_with(prefix))
        .unwrap_or_else(|| panic!("no command starting with {prefix:?} in\n{plan}"))
}

#[cfg(test)]
pub(crate) mod tests {
    use std::path::Path;

    use super::*;
    use crate::facts::{Builder, Tool};
    use crate::settings::Settings;

    pub fn settings() -> Settings {
        Settings::parse(
            Path::new("environments.toml"),
            include_str!("../../../infrastructure/environments.toml"),
        )
        .unwrap()
    }

    pub fn facts(dirty: bool) -> Facts {
        Facts {
            tools: vec![
                (Tool::Docker, "26.1.5".into()),
                (Tool::Git, "2.47.3".into()),
            ],
            git: Git {
                head: "0123456789abcdef0123456789abcdef01234567".into(),
                short: "0123456789ab".into(),
                commit_time: "2026-11-27T12:00:00+00:00".into(),
                content: "feedfacecafebeef0000".into(),
                dirty,
                source_url: Some("https://github.com/example-org/sse-streaming".into()),
            },
            builder: Builder {
                exports_cache: true,
                driver: "docker".into(),
            },
            host_runs: true,
        }
    }

    #[test]
    fn buildx_line_is_exact_for_each_environment() {
        let settings = settings();
        for (name, registry) in [
            ("local", "127.0.0.1:5000"),
            ("preprod", "111111111111.dkr.ecr.eu-west-1.amazonaws.com"),
            ("prod", "222222222222.dkr.ecr.eu-west-1.amazonaws.com"),
        ] {
            let env = settings.environment(name).unwrap();
            let plan = plan(env, &facts(false), Options::default()).unwrap();
            let repo = format!("{registry}/{name}-sse-streaming-lambda");
            // Only the local stack replaces the Dockerfile's pinned bases by its stand-ins.
            let build_args = if name == "local" {
                "--build-arg LWA_IMAGE=public.ecr.aws/awsguru/aws-lambda-adapter:0.9.1 \
                 --build-arg PYTHON_IMAGE=python:3.13-slim "
            } else {
                ""
            };
            assert_eq!(
                find(&plan, "docker buildx build").to_string(),
                format!(
                    "docker buildx build --platform linux/amd64 --provenance=false --sbom=false \
                     --file src/lambdas/sse_streaming/Dockerfile \
                     --label org.opencontainers.image.revision=0123456789abcdef0123456789abcdef01234567 \
                     --label org.opencontainers.image.created=2026-11-27T12:00:00+00:00 \
                     --label org.opencontainers.image.source=https://github.com/example-org/sse-streaming \
                     {build_args}--cache-from type=registry,ref={repo}:buildcache \
                     --cache-to type=registry,ref={repo}:buildcache,mode=max,image-manifest=true,oci-mediatypes=true \
                     --metadata-file target/xtask/{name}/build-metadata.json \
                     --tag {repo}:src-feedfacecafe --tag {repo}:git-0123456789ab --tag {repo}:latest \
                     --push src/lambdas/sse_streaming"
                )
            );
            assert_eq!(
                find(&plan, "docker login").to_string(),
                format!("docker login --username AWS --password-stdin {registry}")
            );
        }
    }

    #[test]
    fn image_plan_order() {
        let settings = settings();
        let plan = plan(
            settings.environment("preprod").unwrap(),
            &facts(false),
            Options::default(),
        )
        .unwrap();
        let titles: Vec<&str> = plan.steps.iter().map(|s| s.title.as_str()).collect();
        assert_eq!(
            titles,
            [
                "tool preflight",
                "account and region check",
                "ECR repository exists",
                "registry login (111111111111.dkr.ecr.eu-west-1.amazonaws.com)",
                "content tag lookup (src-feedfacecafe)",
                "docker buildx build --push (linux/amd64)",
                "manifest verification",
                "smoke test",
            ]
        );
        assert_eq!(plan.steps[5].when, When::ImageMissing);
        assert_eq!(plan.steps[7].when, When::Always);
    }

    #[test]
    fn platform_comes_from_settings() {
        let text = include_str!("../../../infrastructure/environments.toml")
            .replace("platform = \"linux/amd64\"", "platform = \"linux/arm64\"");
        let settings = Settings::parse(Path::new("e.toml"), &text).unwrap();
        let env = settings.environment("prod").unwrap();
        let mut f = facts(false);
        f.host_runs = false;
        let plan = plan(env, &f, Options::default()).unwrap();
        let build = find(&plan, "docker buildx build").to_string();
        assert!(
            build.contains("--platform linux/arm64 --provenance=false --sbom=false"),
            "{build}"
        );
        assert!(
            plan.to_string()
                .contains("skipped: the image's platform is not this machine's")
        );
    }

    #[test]
    fn dirty_trees_get_their_own_tag_and_are_refused_in_protected_envs() {
        let settings = settings();
        let preprod = settings.environment("preprod").unwrap();
        let plan = plan(preprod, &facts(true), Options::default()).unwrap();
        let build = find(&plan, "docker buildx build").to_string();
        assert!(build.contains(":dirty-feedfacecafe --tag"), "{build}");
        assert!(
            !build.contains(":git-"),
            "a dirty build must not claim a commit: {build}"
        );

        let prod = settings.environment("prod").unwrap();
        let err = super::plan(prod, &facts(true), Options::default())
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("dirty working tree") && err.contains("--allow-dirty"),
            "{err}"
        );
        let opts = Options {
            allow_dirty: true,
            ..Options::default()
        };
        assert!(super::plan(prod, &facts(true), opts).is_ok());
    }

    #[test]
    fn no_cache_export_when_the_builder_cannot() {
        let settings = settings();
        let mut f = facts(false);
        f.builder.exports_cache = false;
        let plan = plan(
            settings.environment("local").unwrap(),
            &f,
            Options::default(),
        )
        .unwrap();
        let build = find(&plan, "docker buildx build").to_string();
        assert!(build.contains("--cache-from type=registry"), "{build}");
        assert!(!build.contains("--cache-to"), "{build}");
    }

    #[test]
    fn force_drops_the_lookup() {
        let settings = settings();
        let opts = Options {
            force: true,
            ..Options::default()
        };
        let plan = plan(settings.environment("local").unwrap(), &facts(false), opts).unwrap();
        assert!(
            !plan
                .steps
                .iter()
                .any(|s| matches!(s.action, Action::Lookup { .. }))
        );
        assert!(plan.command_lines()[1].starts_with("docker buildx build"));
    }
}
