//! The plans' exact steps and command lines, for every environment of the real settings.

use std::collections::BTreeMap;
use std::path::Path;

use super::steps::ImageOptions;
use super::*;
use crate::facts::{Builder, Content, Facts, Git, Tool};
use crate::settings::Settings;
use crate::tools::docker;

pub fn settings() -> Settings {
    Settings::parse(
        Path::new("environments.toml"),
        include_str!("../../../infrastructure/environments.toml"),
    )
    .unwrap()
}

pub fn facts(dirty: bool) -> Facts {
    let contents: BTreeMap<String, Content> = [
        ("sse-streaming", "feedfacecafebeef0000"),
        ("status", "0123abcd4567ef890000"),
    ]
    .into_iter()
    .map(|(name, hash)| {
        (
            name.to_string(),
            Content {
                hash: hash.into(),
                dirty,
            },
        )
    })
    .collect();
    Facts {
        tools: vec![
            (Tool::Docker, "26.1.5".into()),
            (Tool::Git, "2.47.3".into()),
        ],
        git: Git {
            head: "0123456789abcdef0123456789abcdef01234567".into(),
            short: "0123456789ab".into(),
            commit_time: "2026-11-27T12:00:00+00:00".into(),
            source_url: Some("https://github.com/example-org/sse-streaming".into()),
        },
        contents,
        builder: Builder {
            exports_cache: true,
            driver: "docker".into(),
            target: docker::Builder::Active,
        },
        host: Some(crate::settings::Platform::Amd64),
        run: "4242".into(),
        now: "20261127T120405Z".into(),
        tf_cli_config: None,
    }
}

fn opts() -> image::Options {
    image::Options::default()
}

/// The first command line of the plan starting with `prefix`.
pub fn find<'p>(plan: &'p Plan, prefix: &str) -> &'p CmdLine {
    plan.steps
        .iter()
        .flat_map(|s| s.commands())
        .find(|c| c.to_string().starts_with(prefix))
        .unwrap_or_else(|| panic!("no command starting with {prefix:?} in\n{plan}"))
}

fn titles(plan: &Plan) -> Vec<(&str, &When)> {
    plan.steps
        .iter()
        .map(|s| (s.title.as_str(), &s.when))
        .collect()
}

fn bake(plan: &Plan) -> (&Vec<docker::BakeTarget>, String) {
    plan.steps
        .iter()
        .find_map(|s| match &s.action {
            Action::Bake { targets, cmd, .. } => Some((targets, cmd.to_string())),
            _ => None,
        })
        .expect("a bake step")
}

#[test]
fn one_bake_builds_every_function_with_its_own_cache_and_no_attestation() {
    let settings = settings();
    for (name, registry, args) in [
        (
            "local",
            "127.0.0.1:5050",
            vec![
                (
                    "LWA_IMAGE",
                    "public.ecr.aws/awsguru/aws-lambda-adapter:0.9.1",
                ),
                ("PYTHON_IMAGE", "python:3.13-slim"),
                ("SOURCE_DATE_EPOCH", "1795780800"),
            ],
        ),
        (
            "preprod",
            "111111111111.dkr.ecr.eu-west-1.amazonaws.com",
            vec![("SOURCE_DATE_EPOCH", "1795780800")],
        ),
    ] {
        let env = settings.environment(name).unwrap();
        let plan = image::plan(env, &facts(false), &opts()).unwrap();
        let (targets, cmd) = bake(&plan);
        let dir = crate::paths::root().join(format!("target/xtask/{name}"));
        assert_eq!(
            cmd,
            format!(
                "docker buildx bake --file {0}/bake-4242.json --metadata-file {0}/bake-metadata-4242.json",
                dir.display()
            )
        );
        let repo = format!("{registry}/{name}-sse-streaming-lambda");
        let sse = &targets[0];
        assert_eq!(
            sse,
            &docker::BakeTarget {
                name: "sse-streaming".into(),
                context: "src/lambdas/sse_streaming".into(),
                dockerfile: "Dockerfile".into(),
                platforms: vec!["linux/amd64".into()],
                args: args
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
                labels: [
                    (
                        "org.opencontainers.image.created",
                        "2026-11-27T12:00:00+00:00"
                    ),
                    (
                        "org.opencontainers.image.revision",
                        "0123456789abcdef0123456789abcdef01234567"
                    ),
                    (
                        "org.opencontainers.image.source",
                        "https://github.com/example-org/sse-streaming"
                    ),
                ]
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
                tags: vec![
                    format!("{repo}:src-feedfacecafe"),
                    format!("{repo}:git-0123456789ab"),
                    format!("{repo}:latest"),
                ],
                cache_from: vec![format!("type=registry,ref={repo}:buildcache")],
                cache_to: vec![format!(
                    "type=registry,ref={repo}:buildcache,mode=max,image-manifest=true,oci-mediatypes=true"
                )],
                output: vec!["type=image,push=true,oci-mediatypes=true".into()],
                attest: vec![
                    "type=provenance,disabled=true".into(),
                    "type=sbom,disabled=true".into()
                ],
            }
        );
        assert_eq!(targets[1].name, "status");
        assert_eq!(
            targets[1].tags[0],
            format!("{registry}/{name}-status:src-0123abcd4567")
        );
        assert_eq!(
            targets[1].cache_from,
            [format!(
                "type=registry,ref={registry}/{name}-status:buildcache"
            )]
        );
        // The file is what buildx reads: one default group of every target.
        let file: serde_json::Value =
            serde_json::from_str(&docker::bake_file(targets.iter())).unwrap();
        assert_eq!(
            file["group"]["default"]["targets"],
            serde_json::json!(["sse-streaming", "status"])
        );
        assert_eq!(
            file["target"]["status"]["cache-from"][0],
            targets[1].cache_from[0]
        );
        assert!(file["target"]["status"].get("name").is_none());
    }
}

#[test]
fn image_plan_order_per_function() {
    let settings = settings();
    let plan = image::plan(
        settings.environment("preprod").unwrap(),
        &facts(false),
        &opts(),
    )
    .unwrap();
    let fi = |n: &str| When::ImageFound(n.into());
    assert_eq!(
        titles(&plan),
        [
            ("tool preflight", &When::Always),
            ("account and region check", &When::Always),
            (
                "registry login (111111111111.dkr.ecr.eu-west-1.amazonaws.com)",
                &When::Always
            ),
            (
                "state bucket exists (preprod-sse-streaming-tfstate)",
                &When::Always
            ),
            ("terraform init", &When::InitStale),
            ("ECR repository lookup", &When::Always),
            (
                "ECR repositories (first deploy: targeted apply)",
                &When::RepositoriesMissing
            ),
            (
                "ECR repositories: moved resources into the state (apply -refresh-only)",
                &When::SomeRepositoriesMissing
            ),
            (
                "ECR repositories: terraform apply -target",
                &When::RepositoriesMissing
            ),
            (
                "sse-streaming: content tag lookup (src-feedfacecafe)",
                &When::Always
            ),
            (
                "status: content tag lookup (src-0123abcd4567)",
                &When::Always
            ),
            ("docker buildx bake (push)", &When::AnyImageMissing),
            ("sse-streaming: manifest verification", &When::Always),
            (
                "sse-streaming: image scan gate (fail on CRITICAL)",
                &When::Always
            ),
            ("sse-streaming: smoke test", &When::Always),
            (
                "sse-streaming: tag the existing image (git-0123456789ab, latest)",
                &fi("sse-streaming")
            ),
            ("status: manifest verification", &When::Always),
            ("status: image scan gate (fail on CRITICAL)", &When::Always),
            ("status: smoke test", &When::Always),
            (
                "status: tag the existing image (git-0123456789ab, latest)",
                &fi("status")
            ),
        ]
    );
    let lines = plan.command_lines();
    let apply = lines
        .iter()
        .find(|l| l.contains("apply") && l.contains("-target"))
        .unwrap();
    let vars =
        crate::paths::root().join("target/xtask/preprod/functions-4242-repositories.tfvars.json");
    assert_eq!(
        apply,
        &format!(
            "terraform -chdir=infrastructure/terraform apply -input=false -no-color -auto-approve \
             -lock-timeout=5m -target=module.function[\"sse-streaming\"].aws_ecr_repository.this \
             -target=module.function[\"sse-streaming\"].aws_ecr_lifecycle_policy.this \
             -target=module.function[\"status\"].aws_ecr_repository.this \
             -target=module.function[\"status\"].aws_ecr_lifecycle_policy.this \
             -var environment=preprod -var account_id=111111111111 -var region=eu-west-1 \
             -var project=sse-streaming -var-file={}",
            vars.display()
        )
    );
}

#[test]
fn function_selects_what_image_builds() {
    let settings = settings();
    let env = settings.environment("local").unwrap();
    let one = image::Options {
        functions: vec!["status".into()],
        ..opts()
    };
    let plan = image::plan(env, &facts(false), &one).unwrap();
    let (targets, _) = bake(&plan);
    assert_eq!(
        targets.iter().map(|t| t.name.as_str()).collect::<Vec<_>>(),
        ["status"]
    );
    assert!(!plan.to_string().contains("sse-streaming: "), "{plan}");
    let e = image::plan(
        env,
        &facts(false),
        &image::Options {
            functions: vec!["x".into()],
            ..opts()
        },
    )
    .unwrap_err();
    assert!(format!("{e:#}").contains("unknown function `x`"));
}

#[test]
fn dirty_trees_get_their_own_tag_and_are_refused_in_protected_envs() {
    let settings = settings();
    let plan = image::plan(
        settings.environment("preprod").unwrap(),
        &facts(true),
        &opts(),
    )
    .unwrap();
    let (targets, _) = bake(&plan);
    assert!(
        targets[0].tags[0].ends_with(":dirty-feedfacecafe"),
        "{:?}",
        targets[0].tags
    );
    assert!(
        !targets[0].tags.iter().any(|t| t.contains(":git-")),
        "a dirty build claims no commit"
    );
    let mut prod = settings.environment("prod").unwrap().clone();
    prod.promote_from = None;
    let e = image::plan(&prod, &facts(true), &opts())
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("dirty working tree") && e.contains("--allow-dirty"),
        "{e}"
    );
    let allow = image::Options {
        image: ImageOptions {
            allow_dirty: true,
            ..ImageOptions::default()
        },
        ..opts()
    };
    assert!(image::plan(&prod, &facts(true), &allow).is_ok());
}

#[test]
fn an_environment_that_promotes_never_builds_and_says_why() {
    let settings = settings();
    let prod = settings.environment("prod").unwrap();
    for plan in [
        image::plan(prod, &facts(false), &opts()).unwrap(),
        deploy::plan(prod, &facts(false), &opts()).unwrap(),
    ] {
        assert!(
            !plan.command_lines().iter().any(|l| l.contains("bake")),
            "{plan}"
        );
        let text = plan.to_string();
        assert!(
            text.contains("refuses: `prod` runs only images that `preprod` has run")
                && text.contains("cargo xtask promote --from preprod --to prod"),
            "{text}"
        );
    }
}

#[test]
fn no_cache_export_when_the_builder_cannot() {
    let settings = settings();
    let mut f = facts(false);
    f.builder.exports_cache = false;
    let plan = image::plan(settings.environment("local").unwrap(), &f, &opts()).unwrap();
    let (targets, _) = bake(&plan);
    assert!(!targets[0].cache_from.is_empty());
    assert!(targets[0].cache_to.is_empty());
}

#[test]
fn a_builder_setting_reaches_the_bake() {
    for (target, line) in [
        (
            docker::Builder::Named("remote".into()),
            "docker buildx bake --builder remote --file",
        ),
        (
            docker::Builder::Context("second".into()),
            "docker --context second buildx bake --file",
        ),
    ] {
        let settings = settings();
        let mut f = facts(false);
        f.builder.target = target;
        let plan = image::plan(settings.environment("local").unwrap(), &f, &opts()).unwrap();
        assert!(bake(&plan).1.starts_with(line), "{}", bake(&plan).1);
    }
}

#[test]
fn force_drops_the_lookups() {
    let settings = settings();
    let force = image::Options {
        image: ImageOptions {
            force: true,
            ..ImageOptions::default()
        },
        ..opts()
    };
    let plan = image::plan(
        settings.environment("local").unwrap(),
        &facts(false),
        &force,
    )
    .unwrap();
    assert!(
        !plan
            .steps
            .iter()
            .any(|s| matches!(s.action, Action::Lookup { .. }))
    );
}

#[test]
fn smoke_tests_run_under_the_lambda_emulator_with_each_functions_check() {
    let settings = settings();
    let plan = image::plan(
        settings.environment("preprod").unwrap(),
        &facts(false),
        &opts(),
    )
    .unwrap();
    let smoke = |name: &str| {
        plan.steps
            .iter()
            .find(|s| s.title == format!("{name}: smoke test"))
            .unwrap()
    };
    let repo = "111111111111.dkr.ecr.eu-west-1.amazonaws.com/preprod-status";
    let lines: Vec<String> = smoke("status")
        .commands()
        .iter()
        .map(ToString::to_string)
        .collect();
    let c = "xtask-smoke-preprod-status-4242";
    assert_eq!(
        lines,
        [
            format!("docker pull --quiet --platform linux/amd64 {repo}@<digest:status>"),
            format!(
                "docker image inspect --format \"{{{{json .Config}}}}\" {repo}@<digest:status>"
            ),
            format!(
                "docker run --detach --name {c} --platform linux/amd64 --read-only --tmpfs /tmp \
                 --network <lambda-network> --memory 256m --label xtask.lambda-function={c} \
                 --env AWS_LAMBDA_RUNTIME_API=<lambda-api>/{c} \
                 --env AWS_LWA_LAMBDA_RUNTIME_API_PROXY=http://<lambda-api>/{c} \
                 --env AWS_LAMBDA_FUNCTION_NAME={c} --env AWS_LAMBDA_FUNCTION_VERSION=$LATEST \
                 --env AWS_LAMBDA_FUNCTION_MEMORY_SIZE=256 --env AWS_REGION=eu-west-1 \
                 --env AWS_DEFAULT_REGION=eu-west-1 --entrypoint /bin/sh {repo}@<digest:status> \
                 -c \"/opt/extensions/lambda-adapter & exec \\\"$@\\\"\" sh <image-command>"
            ),
            format!("docker rm --force {c}"),
        ]
    );
    let described = smoke("status").describe().join("\n");
    assert!(
        described.contains("<function-url>/status (JSON with {\"status\": \"ok\"})"),
        "{described}"
    );
    let described = smoke("sse-streaming").describe().join("\n");
    assert!(
        described.contains("/stream?count=3&interval=1 (an SSE stream"),
        "{described}"
    );
    // An image of another platform is not run here.
    let mut f = facts(false);
    f.host = Some(crate::settings::Platform::Arm64);
    let plan = image::plan(settings.environment("preprod").unwrap(), &f, &opts()).unwrap();
    assert!(
        plan.to_string()
            .contains("skipped: linux/amd64 images do not run on this machine")
    );
}

#[test]
fn deploy_pins_every_function_through_one_variable_file() {
    let settings = settings();
    let env = settings.environment("preprod").unwrap();
    let plan = deploy::plan(env, &facts(false), &opts()).unwrap();
    let vars = crate::paths::root().join("target/xtask/preprod/functions-4242.tfvars.json");
    let saved = crate::paths::root().join("target/xtask/preprod/preprod-4242.tfplan");
    assert_eq!(
        find(&plan, "terraform -chdir=infrastructure/terraform plan").to_string(),
        format!(
            "terraform -chdir=infrastructure/terraform plan -input=false -no-color -lock-timeout=5m \
             -detailed-exitcode -out={} -var environment=preprod -var account_id=111111111111 \
             -var region=eu-west-1 -var project=sse-streaming -var-file={}",
            saved.display(),
            vars.display()
        )
    );
    let file = plan
        .steps
        .iter()
        .find_map(|s| match &s.action {
            Action::WriteVars { functions, path } if !path.contains("repositories") => {
                Some(functions.clone())
            }
            _ => None,
        })
        .unwrap();
    let text = crate::tools::terraform::vars_file(&file, |slot| format!("sha256:{slot}"));
    let json: serde_json::Value = serde_json::from_str(&text).unwrap();
    let sse = &json["functions"]["sse-streaming"];
    assert_eq!(
        sse["image_uri"],
        "111111111111.dkr.ecr.eu-west-1.amazonaws.com/preprod-sse-streaming-lambda@sha256:<digest:sse-streaming>"
    );
    assert_eq!(sse["function_name"], "preprod-sse-streaming-lambda");
    assert_eq!(sse["execution_role_name"], "preprod-sse-streaming-exec");
    assert_eq!(sse["invoke_mode"], "RESPONSE_STREAM");
    assert_eq!(sse["architecture"], "x86_64");
    assert_eq!(
        sse["repository_readers"],
        serde_json::json!(["arn:aws:iam::222222222222:role/prod-sse-streaming-deploy"])
    );
    assert_eq!(json["functions"]["status"]["invoke_mode"], "BUFFERED");
    assert_eq!(json["functions"]["status"]["memory_size"], 256);
    assert_eq!(plan.cleanup.len(), 3, "{:?}", plan.cleanup);
}

#[test]
fn deploy_order_is_the_documented_one_and_live_moves_last() {
    let settings = settings();
    let plan = deploy::plan(
        settings.environment("preprod").unwrap(),
        &facts(false),
        &opts(),
    )
    .unwrap();
    let t: Vec<&str> = plan.steps.iter().map(|s| s.title.as_str()).collect();
    let at = |needle: &str| {
        t.iter()
            .position(|x| x.starts_with(needle))
            .unwrap_or_else(|| panic!("{needle}: {t:?}"))
    };
    let order = [
        "registry login",
        "state bucket exists",
        "terraform init",
        "ECR repositories: terraform apply",
        "docker buildx bake",
        "sse-streaming: manifest verification",
        "sse-streaming: current deployment lookup",
        "terraform variables",
        "terraform plan",
        "terraform apply",
        "sse-streaming: keep the previous image",
        "sse-streaming: mark the deployed image",
        "terraform outputs",
    ];
    let positions: Vec<usize> = order.iter().map(|n| at(n)).collect();
    assert!(positions.windows(2).all(|w| w[0] < w[1]), "{t:?}");
    let mark = plan
        .steps
        .iter()
        .find(|s| s.title == "status: mark the deployed image")
        .unwrap();
    assert_eq!(mark.when, When::LiveMoves("status".into()));
    match &mark.action {
        Action::Retag { tags, slot, .. } => {
            assert_eq!(tags, &["deployed-20261127T120405Z", "live"]);
            assert_eq!(slot, &Slot::Digest("status".into()));
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_deploy_of_one_function_keeps_the_others_on_their_live_image() {
    let settings = settings();
    let one = image::Options {
        functions: vec!["status".into()],
        ..opts()
    };
    let plan = deploy::plan(settings.environment("local").unwrap(), &facts(false), &one).unwrap();
    let keep = plan
        .steps
        .iter()
        .find(|s| s.title == "sse-streaming: stays on its live image")
        .unwrap();
    assert!(
        matches!(&keep.action, Action::Lookup { sets: Slot::Digest(n), required: Some(_), reference, .. }
            if n == "sse-streaming" && reference == "127.0.0.1:5050/local-sse-streaming-lambda:live"),
        "{:?}",
        keep.action
    );
    assert!(
        !plan
            .steps
            .iter()
            .any(|s| s.title == "sse-streaming: mark the deployed image")
    );
    let last = plan.steps.last().unwrap();
    assert!(
        matches!(&last.action, Action::ServeLocal { functions, .. } if functions.len() == 2),
        "every function is served: {:?}",
        last.action
    );
}

#[test]
fn only_protected_environments_ask_and_never_in_ci() {
    let settings = settings();
    let mut prod = settings.environment("prod").unwrap().clone();
    prod.promote_from = None;
    let asks = |env: &crate::settings::Environment, yes: bool, ci: bool| {
        deploy::plan(env, &facts(false), &image::Options { yes, ci, ..opts() })
            .unwrap()
            .steps
            .iter()
            .any(|s| matches!(s.action, Action::Confirm { .. }))
    };
    assert!(asks(&prod, false, false));
    assert!(!asks(&prod, true, false));
    assert!(!asks(&prod, false, true));
    assert!(!asks(
        settings.environment("preprod").unwrap(),
        false,
        false
    ));
}

#[test]
fn local_terraform_talks_to_the_emulator_with_dummy_keys() {
    let settings = settings();
    let vars = crate::tools::terraform::terraform_env(
        settings.environment("local").unwrap(),
        Some(Path::new("/x/rc")),
    );
    let get = |k: &str| {
        vars.iter()
            .find(|(key, _)| key == k)
            .map(|(_, v)| v.as_str())
    };
    assert_eq!(get("AWS_ENDPOINT_URL"), Some("http://127.0.0.1:4566"));
    assert_eq!(get("TF_CLI_CONFIG_FILE"), Some("/x/rc"));
    let prod = crate::tools::terraform::terraform_env(settings.environment("prod").unwrap(), None);
    assert!(
        !prod
            .iter()
            .any(|(k, _)| k.starts_with("AWS_ENDPOINT") || k == "AWS_ACCESS_KEY_ID")
    );
}

#[test]
fn rollback_builds_nothing_and_moves_only_the_named_function() {
    let settings = settings();
    let env = settings.environment("preprod").unwrap();
    let one = rollback::Options {
        functions: vec!["status".into()],
        ..rollback::Options::default()
    };
    let plan = rollback::plan(env, None, &facts(false), &one).unwrap();
    let lines = plan.command_lines();
    assert!(!lines.iter().any(|l| l.contains("bake")), "{lines:#?}");
    let repo = "111111111111.dkr.ecr.eu-west-1.amazonaws.com";
    assert!(lines.contains(&format!(
        "docker buildx imagetools inspect {repo}/preprod-status:previous --format \"{{{{json .}}}}\""
    )));
    assert!(lines.contains(&format!(
        "docker buildx imagetools inspect {repo}/preprod-sse-streaming-lambda:live --format \"{{{{json .}}}}\""
    )));
    assert!(
        !plan
            .steps
            .iter()
            .any(|s| s.title.starts_with("sse-streaming: mark"))
    );
    let digest = format!("sha256:{}", "b".repeat(64));
    let all = rollback::Options {
        to: Some(digest.clone()),
        ..rollback::Options::default()
    };
    let e = rollback::plan(env, None, &facts(false), &all).unwrap_err();
    assert!(
        format!("{e:#}").contains("--to with a digest names one image"),
        "{e:#}"
    );
}

#[test]
fn a_rollback_where_images_are_promoted_checks_they_ran_there_or_in_the_source() {
    let settings = settings();
    let prod = settings.environment("prod").unwrap();
    let preprod = settings.environment("preprod").unwrap();
    let plan = rollback::plan(
        prod,
        Some(preprod),
        &facts(false),
        &rollback::Options::default(),
    )
    .unwrap();
    let check = plan
        .steps
        .iter()
        .find(|s| s.title == "status: ran in `prod` or `preprod` before")
        .unwrap();
    match &check.action {
        Action::CheckRan { places, .. } => {
            let envs: Vec<&str> = places.iter().map(|p| p.env.as_str()).collect();
            assert_eq!(envs, ["prod", "preprod"]);
            assert_eq!(places[1].account_id, "111111111111");
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn promote_copies_the_live_digest_with_no_build_and_scans_it_in_the_target() {
    let settings = settings();
    let (preprod, prod) = (
        settings.environment("preprod").unwrap(),
        settings.environment("prod").unwrap(),
    );
    let plan = promote::plan(
        preprod,
        prod,
        &facts(false),
        &promote::Options {
            ci: true,
            ..Default::default()
        },
    )
    .unwrap();
    let lines = plan.command_lines();
    assert!(
        !lines
            .iter()
            .any(|l| l.contains("bake") || l.contains("buildx build")),
        "{lines:#?}"
    );
    let t: Vec<&str> = plan.steps.iter().map(|s| s.title.as_str()).collect();
    let at = |needle: &str| {
        t.iter()
            .position(|x| x.starts_with(needle))
            .unwrap_or_else(|| panic!("{needle}: {t:?}"))
    };
    for f in ["sse-streaming", "status"] {
        assert!(
            at(&format!("{f}: the image live in `preprod`"))
                < at(&format!("{f}: `preprod` has deployed it"))
        );
        assert!(at(&format!("{f}: copy the image")) < at(&format!("{f}: manifest verification")));
        assert!(
            at(&format!("{f}: manifest verification"))
                < at(&format!("{f}: image scan gate (fail on HIGH)"))
        );
        assert!(at(&format!("{f}: image scan gate")) < at("terraform plan"));
    }
    let copy = plan
        .steps
        .iter()
        .find(|s| s.title.starts_with("status: copy"))
        .unwrap();
    assert!(
        matches!(&copy.action, Action::CopyImage { tag, from, repository, .. }
            if tag == "promoted-from-preprod-20261127T120405Z"
            && from.repository == "preprod-status" && repository == "prod-status"),
        "{:?}",
        copy.action
    );
    assert!(lines.contains(&
        "docker buildx imagetools inspect 111111111111.dkr.ecr.eu-west-1.amazonaws.com/preprod-status:live --format \"{{json .}}\"".to_string()
    ));
    let e = promote::plan(prod, preprod, &facts(false), &promote::Options::default()).unwrap_err();
    assert!(
        format!("{e:#}").contains("`preprod` does not promote from `prod`"),
        "{e:#}"
    );
}

#[test]
fn bootstrap_writes_every_functions_roles_and_the_promotion_source() {
    let settings = settings();
    let (preprod, prod) = (
        settings.environment("preprod").unwrap(),
        settings.environment("prod").unwrap(),
    );
    let plan = bootstrap::plan(
        prod,
        Some(preprod),
        &facts(false).tools,
        bootstrap::Options::default(),
        None,
    );
    let contents = plan
        .steps
        .iter()
        .find_map(|s| match &s.action {
            Action::WriteFile { contents, path } if path.ends_with("bootstrap.tfvars.json") => {
                Some(contents.clone())
            }
            _ => None,
        })
        .unwrap();
    let json: serde_json::Value = serde_json::from_str(&contents).unwrap();
    assert_eq!(
        json["functions"]["status"]["execution_role_name"],
        "prod-status-exec"
    );
    assert_eq!(
        json["functions"]["sse-streaming"]["function_name"],
        "prod-sse-streaming-lambda"
    );
    assert_eq!(json["promotion_source"]["account_id"], "111111111111");
    assert_eq!(
        json["promotion_source"]["repository_names"],
        serde_json::json!(["preprod-sse-streaming-lambda", "preprod-status"])
    );
    let lines = plan.command_lines();
    let tf_plan = lines.iter().find(|l| l.contains(" plan ")).unwrap();
    assert!(
        tf_plan.starts_with("terraform -chdir=<bootstrap-root> plan"),
        "{tf_plan}"
    );
    assert!(
        tf_plan.contains("-var project=sse-streaming") && tf_plan.contains("-var-file="),
        "{tf_plan}"
    );
    assert!(
        plan.steps
            .iter()
            .any(|s| matches!(s.action, Action::Confirm { .. }))
    );
}
