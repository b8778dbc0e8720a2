//! The `image` plan: identity, login, skip when the content tag exists, build, verify, smoke.

use anyhow::{Result, bail};

use super::CmdLine;
use super::{
    Action, CONTAINER, DIGEST, IMAGE_COMMAND, LAMBDA_API, Plan, Slot, SmokeLines, Step, When,
    repository,
};
use crate::facts::{Facts, Git, Tool};
use crate::local::lambda;
use crate::paths;
use crate::settings::Environment;
use crate::tools::docker;

#[derive(Debug, Clone, Copy, Default)]
pub struct Options {
    pub force: bool,
    pub allow_dirty: bool,
    pub no_smoke: bool,
    /// Ask before the first run's repository bootstrap (protected environments outside CI).
    pub confirm_bootstrap: bool,
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
    // The registry login comes before any Terraform: a registry that is down or hangs stops
    // the run before anything changes.
    let mut steps = vec![preflight(&facts.tools), identity(env), login(env)];
    // `image` may be the first command in an environment: it creates the repository as
    // `deploy` does. Local-stack environments use the stack's offline Terraform config.
    let tf_cli_config = env
        .local
        .as_ref()
        .map(|_| paths::root().join(paths::LOCAL_TF_CLI_CONFIG));
    let tf_env = repository::terraform_env(env, tf_cli_config.as_deref());
    steps.extend(repository::steps(env, &tf_env, opts.confirm_bootstrap));
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

pub(super) fn preflight(tools: &[(Tool, String)]) -> Step {
    let tools: Vec<String> = tools
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

/// The skip check, build, verify and smoke (after the login): shared by `image` and `deploy`.
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
    let mut steps = vec![];
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
    let archive = paths::image_archive(&env.name);
    // The export that keeps file times at the commit's on this builder (see `docker::Export`).
    let export = match (facts.builder.driver.as_str(), facts.builder.exports_cache) {
        ("docker", true) => docker::Export::OciArchive(&archive),
        ("docker", false) => docker::Export::Push,
        _ => docker::Export::Registry,
    };
    let push: Vec<CmdLine> = match export {
        docker::Export::OciArchive(file) => std::iter::once(docker::load(file))
            .chain(tags.iter().map(|t| docker::push(t)))
            .collect(),
        _ => vec![],
    };
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
        source_date_epoch: git.source_date_epoch(),
        export,
    });
    steps.push(
        Step::new(
            format!("docker buildx build --push ({})", env.platform),
            Action::Build {
                cmd: build,
                metadata_file,
                archive: matches!(export, docker::Export::OciArchive(_)).then(|| archive.clone()),
                push,
            },
        )
        .when(When::ImageMissing),
    );
    steps.push(Step::new(
        "manifest verification",
        Action::verify(content_ref.clone(), env.platform),
    ));
    // Also when the build was skipped: the emulator forgets its images on `local down`, and
    // an image pushed earlier must pass today's gate (an allow-list entry may have expired).
    steps.extend(super::scan::mirror(env, git));
    steps.push(super::scan::gate(env));
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
            steps.push(Step::new("smoke test", smoke_action(env, image)));
        }
    }
    // A build writes every tag; when it was skipped, the others are written here, so the
    // tags reported are the tags in the registry.
    let others: Vec<String> = self::tags(env, git)
        .iter()
        .skip(1)
        .filter_map(|t| t.rsplit_once(':').map(|(_, tag)| tag.to_string()))
        .collect();
    steps.push(
        Step::new(
            format!("tag the existing image ({})", others.join(", ")),
            Action::retag(env, Slot::Digest, others),
        )
        .when(When::ImageFound),
    );
    Ok(steps)
}

/// The smoke test: the image runs as Lambda runs it, under the Lambda emulator, with the
/// environment's memory size, and its stream is read through the emulated Function URL.
fn smoke_action(env: &Environment, image: String) -> Action {
    let memory_mb = env
        .terraform
        .vars
        .get("memory_size")
        .and_then(|m| m.parse().ok())
        .unwrap_or(lambda::DEFAULT_MEMORY_MB);
    let run = docker::run_lambda(&docker::LambdaContainer {
        name: CONTAINER,
        image: &image,
        platform: env.platform,
        memory_mb,
        labels: lambda::labels(CONTAINER),
        env: lambda::runtime_environment(LAMBDA_API, CONTAINER, memory_mb, &env.region),
        env_file: None,
        command: vec![IMAGE_COMMAND.to_string()],
    });
    Action::Smoke {
        lines: Box::new(SmokeLines {
            pull: docker::pull(&image, env.platform),
            inspect: docker::image_config(&image),
            run,
            logs: docker::logs(CONTAINER),
            remove: docker::remove(CONTAINER),
        }),
        image,
    }
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
                     {build_args}--build-arg SOURCE_DATE_EPOCH=1795780800 \
                     --cache-from type=registry,ref={repo}:buildcache \
                     --cache-to type=registry,ref={repo}:buildcache,mode=max,image-manifest=true,oci-mediatypes=true \
                     --metadata-file target/xtask/{name}/build-metadata.json \
                     --tag {repo}:src-feedfacecafe --tag {repo}:git-0123456789ab --tag {repo}:latest \
                     --output type=oci,dest=target/xtask/{name}/image.oci.tar,rewrite-timestamp=true \
                     src/lambdas/sse_streaming"
                )
            );
            // The docker driver's export: the OCI archive, loaded, then each tag pushed.
            let lines = plan.command_lines();
            let after = lines
                .iter()
                .skip_while(|l| !l.starts_with("docker buildx build"))
                .skip(1)
                .take(4)
                .cloned()
                .collect::<Vec<_>>();
            assert_eq!(
                after,
                [
                    format!("docker load --input target/xtask/{name}/image.oci.tar"),
                    format!("docker push {repo}:src-feedfacecafe"),
                    format!("docker push {repo}:git-0123456789ab"),
                    format!("docker push {repo}:latest"),
                ]
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
                "registry login (111111111111.dkr.ecr.eu-west-1.amazonaws.com)",
                "state bucket exists (preprod-sse-streaming-tfstate)",
                "terraform init",
                "ECR repository lookup",
                "ECR repository bootstrap (first run: targeted apply)",
                "content tag lookup (src-feedfacecafe)",
                "docker buildx build --push (linux/amd64)",
                "manifest verification",
                "image scan gate (fail on CRITICAL)",
                "smoke test",
                "tag the existing image (git-0123456789ab, latest)",
            ]
        );
        let gate = plan
            .steps
            .iter()
            .find(|s| s.title.starts_with("image scan gate"));
        assert!(matches!(gate.unwrap().action, Action::ScanGate { .. }));
        let when = |prefix: &str| {
            plan.steps
                .iter()
                .find(|s| s.title.starts_with(prefix))
                .unwrap()
                .when
        };
        assert_eq!(when("terraform init"), When::InitStale);
        assert_eq!(when("ECR repository bootstrap"), When::RepositoryMissing);
        assert_eq!(when("docker buildx build"), When::ImageMissing);
        assert_eq!(when("smoke test"), When::Always);
        // A skipped build still writes the tags the summary reports, by manifest copy.
        assert_eq!(when("tag the existing image"), When::ImageFound);
        let retag = plan
            .steps
            .iter()
            .find(|s| s.title.starts_with("tag the existing image"))
            .unwrap();
        assert!(
            matches!(&retag.action, Action::Retag { slot: Slot::Digest, tags, .. }
                if tags == &["git-0123456789ab", "latest"]),
            "{:?}",
            retag.action
        );
    }

    #[test]
    fn the_export_keeps_commit_times_on_every_driver_that_can() {
        let settings = settings();
        let env = settings.environment("preprod").unwrap();
        let repo = "111111111111.dkr.ecr.eu-west-1.amazonaws.com/preprod-sse-streaming-lambda";
        let build_of = |driver: &str, exports_cache: bool| {
            let mut f = facts(false);
            f.builder = Builder {
                exports_cache,
                driver: driver.into(),
            };
            let plan = plan(env, &f, Options::default()).unwrap();
            let step = plan
                .steps
                .iter()
                .find(|s| matches!(s.action, Action::Build { .. }))
                .unwrap()
                .clone();
            (find(&plan, "docker buildx build").to_string(), step)
        };
        // docker-container, remote, kubernetes: BuildKit pushes with rewritten times.
        let (line, step) = build_of("docker-container", true);
        assert!(
            line.ends_with(&format!(
                "--tag {repo}:latest --output type=registry,rewrite-timestamp=true \
                 src/lambdas/sse_streaming"
            )),
            "{line}"
        );
        assert!(
            line.contains("--build-arg SOURCE_DATE_EPOCH=1795780800"),
            "{line}"
        );
        assert_eq!(step.commands().len(), 1, "no load or push of its own");
        // The docker driver on the containerd store: the OCI archive, deleted after the push.
        let (line, step) = build_of("docker", true);
        assert!(
            line.contains(
                "--output type=oci,dest=target/xtask/preprod/image.oci.tar,rewrite-timestamp=true"
            ),
            "{line}"
        );
        let Action::Build { archive, push, .. } = &step.action else {
            unreachable!()
        };
        assert_eq!(
            archive.as_deref(),
            Some("target/xtask/preprod/image.oci.tar")
        );
        assert_eq!(push.len(), 4);
        // The classic image store rewrites layers on push anyway: a plain push.
        let (line, step) = build_of("docker", false);
        assert!(line.ends_with("--push src/lambdas/sse_streaming"), "{line}");
        assert!(!line.contains("rewrite-timestamp"), "{line}");
        assert_eq!(step.commands().len(), 1);
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
        // The first docker command after the login builds: nothing looks the tag up.
        let after_login = plan
            .command_lines()
            .into_iter()
            .filter(|l| l.starts_with("docker "))
            .nth(1)
            .unwrap();
        assert!(
            after_login.starts_with("docker buildx build"),
            "{after_login}"
        );
    }

    #[test]
    fn smoke_test_runs_under_the_lambda_emulator() {
        let settings = settings();
        let plan = plan(
            settings.environment("prod").unwrap(),
            &facts(false),
            Options::default(),
        )
        .unwrap();
        let image =
            "222222222222.dkr.ecr.eu-west-1.amazonaws.com/prod-sse-streaming-lambda@<digest>";
        let smoke = plan.steps.iter().find(|s| s.title == "smoke test").unwrap();
        let lines: Vec<String> = smoke.commands().iter().map(ToString::to_string).collect();
        assert_eq!(
            lines,
            [
                format!("docker pull --quiet --platform linux/amd64 {image}"),
                format!("docker image inspect --format \"{{{{json .Config}}}}\" {image}"),
                // The adapter as an extension beside the image's own command, the variables
                // Lambda sets (prod's memory_size), and no published port.
                format!(
                    "docker run --detach --name <container> --platform linux/amd64 --read-only \
                     --tmpfs /tmp --memory 1024m --label xtask.lambda-function=<container> \
                     --env AWS_LAMBDA_RUNTIME_API=<lambda-api>/<container> \
                     --env AWS_LWA_LAMBDA_RUNTIME_API_PROXY=http://<lambda-api>/<container> \
                     --env AWS_LAMBDA_FUNCTION_NAME=<container> \
                     --env AWS_LAMBDA_FUNCTION_VERSION=$LATEST \
                     --env AWS_LAMBDA_FUNCTION_MEMORY_SIZE=1024 --env AWS_REGION=eu-west-1 \
                     --env AWS_DEFAULT_REGION=eu-west-1 --entrypoint /bin/sh {image} \
                     -c \"/opt/extensions/lambda-adapter & exec \\\"$@\\\"\" sh <image-command>"
                ),
                "docker rm --force <container>".to_string(),
            ]
        );
        assert!(!lines[2].contains("--publish"), "{}", lines[2]);
        let described = smoke.describe().join("\n");
        assert!(
            described.contains("docker logs <container>   (on failure)")
                && described.contains("/stream?count=3&interval=1")
                && described.contains("Function URL"),
            "{described}"
        );
        // Local environments too: the same lines, with the default memory size when unset.
        let local = super::plan(
            settings.environment("local").unwrap(),
            &facts(false),
            Options::default(),
        )
        .unwrap();
        assert!(
            find(&local, "docker run")
                .to_string()
                .contains("--memory 512m")
        );
    }
}
