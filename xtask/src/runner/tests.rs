//! The runner's own logic, driven through a scripted world: the step loop and every skip
//! reason, retries and the backoff, signals, cleanup after a failure, tag order, the scan
//! gate's wait, the bake of only the missing images, and the result of a failed run.

use std::collections::{BTreeMap, VecDeque};
use std::time::Duration;

use anyhow::{Result, anyhow, bail};

use super::effects::Served;
use super::exec::Output;
use super::*;
use crate::aws::{Bucket, Identity, ScanState, Token};
use crate::plan::tests::{facts, settings};
use crate::plan::{deploy, image, promote};
use crate::report::{RunResult, Status};
use crate::scan::{Finding, Severity};
use crate::secret::Secret;
use crate::settings::Environment;

/// A registry, an AWS account and Terraform, as far as the runner can tell.
struct Fake {
    /// Reference → (digest, media type) for `imagetools inspect`.
    images: BTreeMap<String, (String, String)>,
    missing_repositories: Vec<String>,
    /// Exit code of `terraform plan -detailed-exitcode`.
    plan_exit: i32,
    /// Command prefix → answers to give, in order, before it succeeds.
    failures: Vec<(String, VecDeque<(i32, String)>)>,
    scans: VecDeque<ScanState>,
    /// Tag writes the registry refuses.
    refuse_tags: Vec<String>,
    /// The bake file last written, for the metadata the bake "writes".
    bake_file: Option<String>,
    deployed_tags: Vec<String>,
    /// The account the credentials belong to, and its registry.
    account: String,
    /// The region the credential chain chose.
    chain_region: String,
    host: String,
    log: Vec<Effect>,
    signal_after: Option<usize>,
    /// A command (prefix) during which a signal arrives: it then exits 1.
    signal_during: Option<String>,
}

impl Fake {
    /// The fake as `env`'s own account and registry.
    fn of(mut self, env: &Environment) -> Fake {
        self.account = env.account_id.clone();
        self.host = env.registry();
        self
    }
    fn new() -> Fake {
        Fake {
            images: BTreeMap::new(),
            missing_repositories: vec![],
            plan_exit: 2,
            failures: vec![],
            scans: VecDeque::new(),
            refuse_tags: vec![],
            bake_file: None,
            deployed_tags: vec!["deployed-20261101T000000Z".into()],
            account: "111111111111".into(),
            chain_region: "eu-west-1".into(),
            host: HOST.into(),
            log: vec![],
            signal_after: None,
            signal_during: None,
        }
    }
    /// `reference` is in the registry as a single image.
    fn with(mut self, reference: &str, digest: &str) -> Fake {
        self.images.insert(
            reference.to_string(),
            (
                digest.to_string(),
                "application/vnd.oci.image.manifest.v1+json".into(),
            ),
        );
        self
    }
    fn lines(&self) -> Vec<String> {
        self.log
            .iter()
            .filter_map(|e| match e {
                Effect::Run { line, .. } | Effect::Cleanup(line) => Some(line.to_string()),
                _ => None,
            })
            .collect()
    }
    fn count(&self, pred: impl Fn(&Effect) -> bool) -> usize {
        self.log.iter().filter(|e| pred(e)).count()
    }
    fn inspect(&self, reference: &str) -> Output {
        match self.images.get(reference) {
            Some((digest, media_type)) => output(
                0,
                &format!(
                    r#"{{"name":"{reference}","manifest":{{"mediaType":"{media_type}","digest":"{digest}"}},"image":{{"architecture":"amd64","os":"linux","config":{{"Labels":{{"org.opencontainers.image.revision":"abc","org.opencontainers.image.created":"2026-11-27T12:00:00+00:00"}}}}}}}}"#
                ),
                "",
            ),
            None => output(1, "", &format!("ERROR: {reference}: not found")),
        }
    }
}

fn output(code: i32, stdout: &str, stderr: &str) -> Output {
    Output {
        code,
        stdout: stdout.into(),
        stderr_tail: stderr.lines().map(str::to_string).collect(),
    }
}

impl World for Fake {
    fn interrupted(&self) -> Option<i32> {
        self.signal_after
            .filter(|n| self.log.len() >= *n)
            .map(|_| libc::SIGINT)
    }

    fn perform(&mut self, effect: Effect) -> Result<Reply> {
        self.log.push(effect.clone());
        Ok(match effect {
            Effect::Run { line, .. } => {
                let text = line.to_string();
                if self
                    .signal_during
                    .as_ref()
                    .is_some_and(|p| text.starts_with(p.as_str()))
                {
                    self.signal_after = Some(0);
                    return Ok(Reply::Output(output(1, "", "Interrupt received.")));
                }
                if let Some((_, answers)) = self
                    .failures
                    .iter_mut()
                    .find(|(p, _)| text.starts_with(p.as_str()))
                {
                    if let Some((code, stderr)) = answers.pop_front() {
                        return Ok(Reply::Output(output(code, "", &stderr)));
                    }
                }
                let out = if text.starts_with("docker buildx imagetools inspect") {
                    self.inspect(&line.args[3])
                } else if text.contains(" plan ") && text.starts_with("terraform") {
                    output(self.plan_exit, "", "")
                } else if text.contains(" show -json") {
                    output(
                        0,
                        r#"{"resource_changes":[{"address":"module.function[\"status\"].aws_lambda_function.this","change":{"actions":["update"]}}]}"#,
                        "",
                    )
                } else if text.contains(" output -json") {
                    output(
                        0,
                        r#"{"functions":{"value":{"sse-streaming":{"function_name":"f-sse","function_url":"https://sse/"},"status":{"function_name":"f-status","function_url":"https://status/"}}}}"#,
                        "",
                    )
                } else if text.starts_with("docker image inspect") {
                    output(0, r#"{"Cmd":["python","-m","uvicorn"]}"#, "")
                } else if text.starts_with("docker buildx bake") {
                    // The bake pushes what the file names: record each target's tags.
                    let file: serde_json::Value =
                        serde_json::from_str(self.bake_file.as_deref().unwrap_or("{}"))?;
                    for (name, target) in file["target"].as_object().into_iter().flatten() {
                        for tag in target["tags"].as_array().into_iter().flatten() {
                            let digest = format!("sha256:built-{name}");
                            self.images.insert(
                                tag.as_str().unwrap().into(),
                                (digest, "application/vnd.oci.image.manifest.v1+json".into()),
                            );
                        }
                    }
                    output(0, "", "")
                } else {
                    output(0, "", "")
                };
                Reply::Output(out)
            }
            Effect::Cleanup(_) => Reply::Output(output(0, "", "")),
            Effect::ChainRegion => Reply::Region(Some(self.chain_region.clone())),
            Effect::Identity => Reply::Identity(Identity {
                account: self.account.clone(),
                arn: format!("arn:aws:iam::{}:role/ci", self.account),
            }),
            Effect::MissingRepositories(names) => Reply::Names(
                names
                    .into_iter()
                    .filter(|n| self.missing_repositories.contains(n))
                    .collect(),
            ),
            Effect::LoginToken { .. } => Reply::Token(Token {
                username: "AWS".into(),
                password: Secret::new("token".into()),
                proxy_endpoint: format!("https://{}", self.host),
            }),
            Effect::Bucket(_) => Reply::Bucket(Bucket::Exists),
            Effect::TagDigest { repository, tag } => Reply::Digest(
                self.images
                    .iter()
                    .find(|(r, _)| r.ends_with(&format!("/{repository}:{tag}")))
                    .map(|(_, (d, _))| d.clone()),
            ),
            Effect::CopyTags {
                repository,
                digest,
                tags,
            } => {
                for tag in &tags {
                    if self.refuse_tags.contains(tag) {
                        bail!("the registry refused tag {tag}: HTTP 500");
                    }
                    let media = "application/vnd.oci.image.manifest.v1+json".to_string();
                    self.images.insert(
                        format!("{}/{repository}:{tag}", self.host),
                        (digest.clone(), media),
                    );
                }
                Reply::Done
            }
            Effect::ImageTags { .. } => Reply::Names(self.deployed_tags.clone()),
            Effect::ScanFindings { .. } => Reply::Scan(
                self.scans
                    .pop_front()
                    .unwrap_or(ScanState::Complete(vec![])),
            ),
            Effect::StateOutputs { .. } => Reply::Outputs(None),
            Effect::WriteFile { path, contents } => {
                if path.contains("/bake-") {
                    self.bake_file = Some(contents);
                }
                Reply::Done
            }
            Effect::ReadFile(path) if path.contains("bake-metadata") => {
                let file: serde_json::Value =
                    serde_json::from_str(self.bake_file.as_deref().unwrap_or("{}"))?;
                let meta: BTreeMap<String, serde_json::Value> = file["target"]
                    .as_object()
                    .into_iter()
                    .flatten()
                    .map(|(n, _)| (n.clone(), serde_json::json!({"containerimage.digest": format!("sha256:built-{n}")})))
                    .collect();
                Reply::Text(serde_json::to_string(&meta)?)
            }
            Effect::ReadFile(path) => bail!("no file {path}"),
            Effect::Confirm(_) => Reply::Yes(true),
            Effect::Recall(_) => Reply::Recalled(false, String::new()),
            Effect::Route { function, .. } => Reply::Route {
                api: "lambda:9000/.rt".into(),
                url: format!("http://127.0.0.1:9000/lambda-url/{function}"),
                network: "xtask-local_default".into(),
            },
            Effect::Probe { .. } => Reply::Seen(crate::smoke::Seen::default()),
            Effect::Serve { function_name, .. } => Reply::Served(Served {
                function_name: function_name.clone(),
                digest: "sha256:x".into(),
                url: format!("http://127.0.0.1:9000/lambda-url/{function_name}"),
                replaced: None,
                unchanged: false,
                memory_size: 512,
                timeout: 60,
                executed: vec![],
            }),
            _ => Reply::Done,
        })
    }
}

const HOST: &str = "111111111111.dkr.ecr.eu-west-1.amazonaws.com";

fn preprod() -> Environment {
    settings().environment("preprod").unwrap().clone()
}

/// Runs `plan` in the fake world; the result as the report renders it.
fn run(env: &Environment, plan: &Plan, world: &mut Fake) -> (Result<()>, RunResult) {
    let mut report = Report::new(false, false);
    let mut runner = Runner::new(world, env, &mut report);
    runner.backoff = Duration::from_millis(2000);
    let result = runner.execute(plan);
    let error = result.as_ref().err().map(|e| format!("{e:#}"));
    let ran = runner.state.result(plan, error);
    (result, ran)
}

fn skipped(result: &RunResult, title: &str) -> String {
    let step = result
        .steps
        .iter()
        .find(|s| s.title == title)
        .unwrap_or_else(|| panic!("no step {title}"));
    assert_eq!(step.outcome, "skipped", "{title}: {step:?}");
    step.detail.clone()
}

fn no_smoke() -> image::Options {
    image::Options {
        image: crate::plan::steps::ImageOptions {
            no_smoke: true,
            ..Default::default()
        },
        ..Default::default()
    }
}

#[test]
fn only_the_missing_image_is_baked_and_the_found_one_gets_its_tags() {
    let env = preprod();
    let plan = image::plan(&env, &facts(false), &no_smoke()).unwrap();
    let mut world = Fake::new().with(
        &format!("{HOST}/preprod-status:src-0123abcd4567"),
        "sha256:old-status",
    );
    let (result, ran) = run(&env, &plan, &mut world);
    result.unwrap();
    let file: serde_json::Value =
        serde_json::from_str(world.bake_file.as_deref().unwrap()).unwrap();
    assert_eq!(
        file["group"]["default"]["targets"],
        serde_json::json!(["sse-streaming"])
    );
    let sse = &ran.functions[0];
    assert_eq!(
        (sse.image.as_deref(), sse.digest.as_deref()),
        (Some("built"), Some("sha256:built-sse-streaming"))
    );
    assert_eq!(sse.tags, ["src-feedfacecafe", "git-0123456789ab", "latest"]);
    let status = &ran.functions[1];
    assert_eq!(status.digest.as_deref(), Some("sha256:old-status"));
    assert_eq!(
        status.image.as_deref(),
        Some(&*format!("found {HOST}/preprod-status:src-0123abcd4567"))
    );
    assert_eq!(
        status.tags,
        ["src-0123abcd4567", "git-0123456789ab", "latest"],
        "found by its content tag, the others written by manifest copy"
    );
    assert_eq!(
        skipped(
            &ran,
            "sse-streaming: tag the existing image (git-0123456789ab, latest)"
        ),
        "the build pushed every tag"
    );
    assert_eq!(
        skipped(&ran, "ECR repositories: terraform apply -target"),
        "every ECR repository exists"
    );
    // Both images are verified; the found one from its lookup, the built one read again.
    assert_eq!(
        world
            .lines()
            .iter()
            .filter(|l| l.contains("imagetools inspect") && l.contains("src-feedfacecafe"))
            .count(),
        2
    );
}

#[test]
fn nothing_is_baked_when_every_content_tag_is_found() {
    let env = preprod();
    let plan = image::plan(&env, &facts(false), &no_smoke()).unwrap();
    let mut world = Fake::new()
        .with(
            &format!("{HOST}/preprod-status:src-0123abcd4567"),
            "sha256:s",
        )
        .with(
            &format!("{HOST}/preprod-sse-streaming-lambda:src-feedfacecafe"),
            "sha256:e",
        );
    let (result, ran) = run(&env, &plan, &mut world);
    result.unwrap();
    assert_eq!(
        skipped(&ran, "docker buildx bake (push)"),
        "every content tag is already in the registry"
    );
    assert!(!world.lines().iter().any(|l| l.contains("bake")));
}

#[test]
fn a_first_deploy_creates_the_missing_repositories() {
    let env = preprod();
    let plan = image::plan(&env, &facts(false), &no_smoke()).unwrap();
    let mut world = Fake::new();
    world.missing_repositories = vec!["preprod-status".into()];
    let (result, _) = run(&env, &plan, &mut world);
    result.unwrap();
    let vars = world.log.iter().find_map(|e| match e {
        Effect::WriteFile { path, contents } if path.ends_with("repositories.tfvars.json") => {
            Some(contents.clone())
        }
        _ => None,
    });
    let vars: serde_json::Value =
        serde_json::from_str(&vars.expect("the ECR-only variable file")).unwrap();
    assert_eq!(
        vars["functions"]["status"]["image_uri"],
        serde_json::Value::Null
    );
    assert!(
        world
            .lines()
            .iter()
            .any(|l| l.contains("apply") && l.contains("-target=module.function[\"status\"]"))
    );
}

#[test]
fn transient_failures_are_retried_with_doubling_waits_and_others_are_not() {
    let env = preprod();
    let plan = image::plan(&env, &facts(false), &no_smoke()).unwrap();
    let mut world = Fake::new();
    world.failures.push((
        "docker buildx bake".into(),
        VecDeque::from(vec![
            (
                1,
                "received unexpected HTTP status: 503 Service Unavailable".to_string()
            );
            2
        ]),
    ));
    let (result, _) = run(&env, &plan, &mut world);
    result.unwrap();
    let sleeps: Vec<Duration> = world
        .log
        .iter()
        .filter_map(|e| match e {
            Effect::Sleep(d) => Some(*d),
            _ => None,
        })
        .collect();
    assert_eq!(sleeps, [Duration::from_secs(2), Duration::from_secs(4)]);
    assert_eq!(
        world
            .lines()
            .iter()
            .filter(|l| l.starts_with("docker buildx bake"))
            .count(),
        3
    );

    let mut world = Fake::new();
    world.failures.push((
        "docker buildx bake".into(),
        VecDeque::from([(1, "unauthorized: authentication required".into())]),
    ));
    let (result, ran) = run(&env, &plan, &mut world);
    assert!(format!("{:#}", result.unwrap_err()).contains("unauthorized"));
    assert_eq!(
        world
            .lines()
            .iter()
            .filter(|l| l.starts_with("docker buildx bake"))
            .count(),
        1,
        "auth errors are not retried"
    );
    assert!(!world.log.iter().any(|e| matches!(e, Effect::Sleep(_))));
    // A timing in build output that looks like a status is no evidence of one.
    let mut world = Fake::new();
    world.failures.push((
        "docker buildx bake".into(),
        VecDeque::from([(
            1,
            "#8 0.503 ERROR: process did not complete successfully".into(),
        )]),
    ));
    assert!(run(&env, &plan, &mut world).0.is_err());
    assert_eq!(
        world
            .lines()
            .iter()
            .filter(|l| l.starts_with("docker buildx bake"))
            .count(),
        1
    );
    assert_eq!(ran.status, Status::Failed);
}

#[test]
fn a_signal_stops_the_run_at_the_next_step() {
    let env = preprod();
    let plan = deploy::plan(&env, &facts(false), &no_smoke()).unwrap();
    let mut world = Fake::new();
    world.signal_after = Some(3);
    let (result, ran) = run(&env, &plan, &mut world);
    let e = format!("{:#}", result.unwrap_err());
    assert!(
        e.contains("interrupted (SIGINT) before step") && e.contains("nothing more was started"),
        "{e}"
    );
    assert!(
        !world.lines().iter().any(|l| l.starts_with("terraform")),
        "{:?}",
        world.lines()
    );
    assert!(ran.steps.len() < 5);
}

#[test]
fn a_failed_smoke_test_shows_the_logs_and_always_removes_the_container() {
    let env = preprod();
    let plan = image::plan(&env, &facts(false), &image::Options::default()).unwrap();
    let mut world = Fake::new();
    world.failures.push((
        "docker run --detach --name xtask-smoke-preprod-sse-streaming".into(),
        VecDeque::from([(
            125,
            "docker: Error response from daemon: no space left".into(),
        )]),
    ));
    let (result, ran) = run(&env, &plan, &mut world);
    let e = format!("{:#}", result.unwrap_err());
    assert!(
        e.contains("smoke test of") && e.contains("no space left"),
        "{e}"
    );
    let lines = world.lines();
    let run_at = lines
        .iter()
        .position(|l| l.starts_with("docker run"))
        .unwrap();
    assert!(
        lines[run_at..]
            .iter()
            .any(|l| l == "docker logs xtask-smoke-preprod-sse-streaming-4242")
    );
    assert!(
        world.log.iter().any(|e| matches!(e, Effect::Cleanup(l) if l.to_string() == "docker rm --force xtask-smoke-preprod-sse-streaming-4242")),
        "{lines:?}"
    );
    assert!(
        world
            .log
            .iter()
            .any(|e| matches!(e, Effect::Unroute { .. }))
    );
    // The run line got the emulator's API and the image's command.
    assert!(
        lines[run_at].contains("AWS_LAMBDA_RUNTIME_API=lambda:9000/.rt/xtask-smoke"),
        "{}",
        lines[run_at]
    );
    assert!(
        lines[run_at].ends_with("sh python -m uvicorn"),
        "{}",
        lines[run_at]
    );
    assert_eq!(ran.steps.last().unwrap().outcome, "failed");
}

#[test]
fn tags_move_previous_first_and_live_last_and_a_refused_write_leaves_live() {
    let env = preprod();
    let plan = deploy::plan(&env, &facts(false), &no_smoke()).unwrap();
    let live = |f: &str| format!("{HOST}/preprod-{f}:live");
    let world = || {
        Fake::new()
            .with(&live("sse-streaming-lambda"), "sha256:was-sse")
            .with(&live("status"), "sha256:was-status")
    };
    let mut w = world();
    let (result, ran) = run(&env, &plan, &mut w);
    result.unwrap();
    let writes: Vec<(String, Vec<String>)> = w
        .log
        .iter()
        .filter_map(|e| match e {
            Effect::CopyTags {
                repository, tags, ..
            } => Some((repository.clone(), tags.clone())),
            _ => None,
        })
        .filter(|(r, _)| r == "preprod-status")
        .collect();
    assert_eq!(
        writes,
        [
            ("preprod-status".to_string(), vec!["previous".to_string()]),
            (
                "preprod-status".to_string(),
                vec!["deployed-20261127T120405Z".to_string(), "live".to_string()]
            ),
        ]
    );
    assert_eq!(
        ran.functions[1].tags,
        [
            "src-0123abcd4567",
            "git-0123456789ab",
            "latest",
            "deployed-20261127T120405Z",
            "live"
        ]
    );
    assert_eq!(
        ran.functions[1].function_url.as_deref(),
        Some("https://status/")
    );

    // The registry refuses `previous`: `live` is never written, the run fails.
    let mut w = world();
    w.refuse_tags = vec!["previous".into()];
    let (result, ran) = run(&env, &plan, &mut w);
    assert!(format!("{:#}", result.unwrap_err()).contains("refused tag previous"));
    assert!(
        !w.log.iter().any(
            |e| matches!(e, Effect::CopyTags { tags, .. } if tags.contains(&"live".to_string()))
        )
    );
    assert!(
        !ran.functions
            .iter()
            .any(|f| f.tags.contains(&"live".to_string())),
        "no tag it did not write"
    );
    // The next run (nothing to apply) writes them all.
    let mut next = world();
    next.plan_exit = 0;
    let (result, ran) = run(&env, &plan, &mut next);
    result.unwrap();
    assert_eq!(skipped(&ran, "terraform apply (saved plan)"), "no changes");
    assert!(next.log.iter().any(|e| matches!(e, Effect::CopyTags { tags, .. } if tags.last().map(String::as_str) == Some("live"))));
}

#[test]
fn the_no_change_path_skips_apply_and_tags() {
    let env = preprod();
    let plan = deploy::plan(&env, &facts(false), &no_smoke()).unwrap();
    let sse = format!("{HOST}/preprod-sse-streaming-lambda");
    let status = format!("{HOST}/preprod-status");
    let mut world = Fake::new()
        .with(&format!("{sse}:src-feedfacecafe"), "sha256:e")
        .with(&format!("{sse}:git-0123456789ab"), "sha256:e")
        .with(&format!("{sse}:latest"), "sha256:e")
        .with(&format!("{sse}:live"), "sha256:e")
        .with(&format!("{status}:src-0123abcd4567"), "sha256:s")
        .with(&format!("{status}:git-0123456789ab"), "sha256:s")
        .with(&format!("{status}:latest"), "sha256:s")
        .with(&format!("{status}:live"), "sha256:s");
    world.plan_exit = 0;
    let (result, ran) = run(&env, &plan, &mut world);
    result.unwrap();
    assert_eq!(
        skipped(&ran, "docker buildx bake (push)"),
        "every content tag is already in the registry"
    );
    assert_eq!(skipped(&ran, "terraform apply (saved plan)"), "no changes");
    assert_eq!(
        skipped(&ran, "status: mark the deployed image"),
        "`live` already points at this image"
    );
    assert_eq!(
        skipped(
            &ran,
            "status: keep the previous image as the rollback target"
        ),
        "`live` stays on this image"
    );
    assert_eq!(
        world.count(|e| matches!(e, Effect::CopyTags { .. })),
        0,
        "a tag that is right is only read"
    );
    assert_eq!(ran.terraform.as_deref(), Some("no changes"));
    assert!(
        world
            .log
            .iter()
            .any(|e| matches!(e, Effect::StateOutputs { .. })),
        "outputs from the state object first"
    );
}

#[test]
fn the_scan_gate_waits_with_a_bound_and_refuses_blocking_findings() {
    let mut env = settings().environment("prod").unwrap().clone();
    env.promote_from = None;
    let plan = image::plan(&env, &facts(false), &no_smoke()).unwrap();
    let mut world = Fake::new().of(&env);
    world.scans = VecDeque::from([
        ScanState::NotFound,
        ScanState::Pending("IN_PROGRESS".into()),
        ScanState::Pending("IN_PROGRESS".into()),
        ScanState::Complete(vec![Finding {
            id: "CVE-9999-9999".into(),
            severity: Severity::High,
            package: None,
        }]),
    ]);
    let (result, ran) = run(&env, &plan, &mut world);
    let e = format!("{:#}", result.unwrap_err());
    assert!(
        e.contains("CVE-9999-9999 (HIGH)") && e.contains("scan.fail_on = \"HIGH\""),
        "{e}"
    );
    assert_eq!(world.count(|e| matches!(e, Effect::StartScan { .. })), 1);
    let sleeps: Vec<Duration> = world
        .log
        .iter()
        .filter_map(|e| match e {
            Effect::Sleep(d) => Some(*d),
            _ => None,
        })
        .collect();
    assert_eq!(sleeps, [Duration::from_secs(2), Duration::from_secs(4)]);
    assert_eq!(ran.functions[0].scan.as_ref().unwrap().counts, "HIGH 1");
    assert!(
        !world.lines().iter().any(|l| l.contains("smoke")),
        "nothing after the gate"
    );

    env.scan.timeout = Duration::from_secs(5);
    let plan = image::plan(&env, &facts(false), &no_smoke()).unwrap();
    let mut world = Fake::new().of(&env);
    world.scans = VecDeque::from(vec![ScanState::Pending("IN_PROGRESS".into()); 10]);
    let e = format!("{:#}", run(&env, &plan, &mut world).0.unwrap_err());
    assert!(
        e.contains("did not finish within 5s") && e.contains("raise scan.timeout"),
        "{e}"
    );
}

#[test]
fn a_failed_run_reports_only_what_happened() {
    let env = preprod();
    let plan = deploy::plan(&env, &facts(false), &no_smoke()).unwrap();
    let mut world = Fake::new();
    world.failures.push((
        "docker buildx bake".into(),
        VecDeque::from([(1, "ERROR: failed to solve: process did not complete".into())]),
    ));
    let (result, ran) = run(&env, &plan, &mut world);
    assert!(result.is_err());
    assert_eq!(ran.status, Status::Failed);
    for f in &ran.functions {
        assert!(
            f.digest.is_none()
                && f.image_uri.is_none()
                && f.tags.is_empty()
                && f.function_url.is_none(),
            "{f:?}"
        );
    }
    assert_eq!(ran.steps.last().unwrap().title, "docker buildx bake (push)");
    let summary = ran.summary(Duration::from_secs(1)).join("\n");
    assert!(
        summary.contains("failed at     docker buildx bake (push)"),
        "{summary}"
    );
    assert!(
        !summary.contains("tag ") && !summary.contains("image_uri"),
        "{summary}"
    );
    assert!(
        !world
            .lines()
            .iter()
            .any(|l| l.starts_with("terraform -chdir=infrastructure/terraform plan"))
    );
}

#[test]
fn promotion_copies_the_source_digest_and_refuses_one_the_source_never_deployed() {
    let s = settings();
    let (source, target) = (
        s.environment("preprod").unwrap(),
        s.environment("prod").unwrap().clone(),
    );
    let plan = promote::plan(
        source,
        &target,
        &facts(false),
        &promote::Options {
            ci: true,
            ..Default::default()
        },
    )
    .unwrap();
    let world = || {
        Fake::new()
            .with(
                &format!("{HOST}/preprod-sse-streaming-lambda:live"),
                "sha256:e",
            )
            .with(&format!("{HOST}/preprod-status:live"), "sha256:s")
            .with(
                "222222222222.dkr.ecr.eu-west-1.amazonaws.com/prod-sse-streaming-lambda@sha256:e",
                "sha256:e",
            )
            .with(
                "222222222222.dkr.ecr.eu-west-1.amazonaws.com/prod-status@sha256:s",
                "sha256:s",
            )
    };
    let mut w = world().of(&target);
    let (result, ran) = run(&target, &plan, &mut w);
    result.unwrap();
    let copies: Vec<(String, String)> = w
        .log
        .iter()
        .filter_map(|e| match e {
            Effect::CopyImage {
                digest, repository, ..
            } => Some((repository.clone(), digest.clone())),
            _ => None,
        })
        .collect();
    assert_eq!(
        copies,
        [
            ("prod-sse-streaming-lambda".into(), "sha256:e".into()),
            ("prod-status".into(), "sha256:s".into())
        ]
    );
    assert!(!w.lines().iter().any(|l| l.contains("bake")));
    assert_eq!(
        ran.functions[1].ran.as_deref(),
        Some("preprod since 20261101T000000Z")
    );
    assert_eq!(
        ran.functions[1].image.as_deref(),
        Some("copied from `preprod` (no build)")
    );

    let mut w = world().of(&target);
    w.deployed_tags = vec!["latest".into()];
    let (result, _) = run(&target, &plan, &mut w);
    let e = format!("{:#}", result.unwrap_err());
    assert!(
        e.contains("never ran in preprod") && e.contains("nothing was changed"),
        "{e}"
    );
    assert_eq!(w.count(|e| matches!(e, Effect::CopyImage { .. })), 0);
}

#[test]
fn local_stacks_serve_every_function_and_report_its_url() {
    let env = settings().environment("local").unwrap().clone();
    let plan = deploy::plan(&env, &facts(false), &no_smoke()).unwrap();
    let mut world = Fake::new().of(&env);
    let (result, ran) = run(&env, &plan, &mut world);
    result.map_err(|e| anyhow!("{e:#}")).unwrap();
    let urls: Vec<Option<&str>> = ran
        .functions
        .iter()
        .map(|f| f.local_url.as_deref())
        .collect();
    assert_eq!(
        urls,
        [
            Some("http://127.0.0.1:9000/lambda-url/f-sse"),
            Some("http://127.0.0.1:9000/lambda-url/f-status")
        ]
    );
}

#[test]
fn a_region_the_chain_chose_otherwise_is_refused_before_any_aws_call() {
    let env = preprod();
    let plan = image::plan(&env, &facts(false), &no_smoke()).unwrap();
    let mut world = Fake::new();
    world.chain_region = "us-west-2".into();
    let (result, ran) = run(&env, &plan, &mut world);
    let error = format!("{:#}", result.unwrap_err());
    assert!(
        error.contains("selects region us-west-2") && error.contains("AWS_REGION=eu-west-1"),
        "{error}"
    );
    assert!(
        !world.log.iter().any(|e| matches!(e, Effect::Identity)),
        "STS was called"
    );
    assert!(ran.commands.is_empty(), "{:?}", ran.commands);
}

#[test]
fn a_signal_during_plan_or_apply_is_reported_as_the_interruption() {
    for (command, step) in [
        (
            "terraform -chdir=infrastructure/terraform apply",
            "terraform apply (saved plan)",
        ),
        (
            "terraform -chdir=infrastructure/terraform plan",
            "terraform plan",
        ),
    ] {
        let env = preprod();
        let plan = deploy::plan(&env, &facts(false), &no_smoke()).unwrap();
        let mut world = Fake::new();
        world.signal_during = Some(command.into());
        let (result, ran) = run(&env, &plan, &mut world);
        let e = format!("{:#}", result.unwrap_err());
        assert!(!e.contains("failed (exit"), "{step}: {e}");
        let failed = ran.steps.iter().find(|s| s.outcome == "failed").unwrap();
        assert!(failed.title.starts_with(step), "{failed:?}");
        assert_eq!(
            ran.steps.last().unwrap().title,
            failed.title,
            "nothing ran after it"
        );
    }
}
