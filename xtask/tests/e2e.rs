//! End-to-end: `cargo xtask image|deploy|rollback` against the real local stack (Docker engine,
//! registry, emulator, Terraform), with both of the repository's functions. Each test uses a
//! fresh environment name, so its ECR repositories, registry repositories, Terraform state and
//! Lambdas start empty.
//!
//! They are ignored by a plain `cargo test` and run by `cargo xtask ci` (`--include-ignored`);
//! without a running stack they fail.

mod support;

use std::path::{Path, PathBuf};

use serde_json::Value;
use support::Run;

const SSE: &str = "sse-streaming";
const STATUS: &str = "status";

fn root() -> PathBuf {
    support::root()
}

/// A settings file with one fresh local-stack environment, `e2e-<nonce>`.
struct Env {
    name: String,
    config: PathBuf,
    stack: support::Stack,
}

impl Env {
    fn new(account_id: &str) -> Env {
        let name = support::unique("e2e");
        let stack = support::stack();
        let text = support::settings_for(&name, &stack).replace(
            "account_id = \"123456789012\"",
            &format!("account_id = \"{account_id}\""),
        );
        let dir = root().join("target/e2e");
        std::fs::create_dir_all(&dir).unwrap();
        let config = dir.join(format!("{name}.toml"));
        std::fs::write(&config, text).unwrap();
        Env {
            name,
            config,
            stack,
        }
    }

    /// A fresh environment with its own account layer (`cargo xtask bootstrap`): its own
    /// state bucket and execution roles, which the application's Terraform reads.
    fn bootstrapped(account_id: &str) -> Env {
        let env = Env::new(account_id);
        let text = std::fs::read_to_string(&env.config).unwrap().replace(
            "bucket = \"local-sse-streaming-tfstate\"",
            &format!("bucket = \"{}-sse-streaming-tfstate\"", env.name),
        );
        std::fs::write(&env.config, text).unwrap();
        env.xtask(&["bootstrap", "--yes"]).assert_ok("bootstrap");
        env
    }

    /// A bootstrapped fresh environment and, in the second emulator account (`local-prod`'s,
    /// with its own registry), a bootstrapped fresh one that promotes from it: prod's
    /// rehearsal. Both in one settings file, each with its own state bucket.
    fn promotion_pair() -> (Env, Env) {
        let source = Env::new("123456789012");
        let target_name = format!("{}-p", source.name);
        let text = std::fs::read_to_string(&source.config).unwrap();
        let text = text
            .replace(
                "bucket = \"local-sse-streaming-tfstate\"",
                &format!("bucket = \"{}-sse-streaming-tfstate\"", source.name),
            )
            .replace(
                "[environments.local-prod]",
                &format!("[environments.{target_name}]"),
            )
            .replace(
                "[environments.local-prod.",
                &format!("[environments.{target_name}."),
            )
            .replace(
                "bucket = \"local-prod-sse-streaming-tfstate\"",
                &format!("bucket = \"{target_name}-sse-streaming-tfstate\""),
            );
        std::fs::write(&source.config, &text).unwrap();
        let prod = text
            .split(&format!("[environments.{target_name}]"))
            .nth(1)
            .unwrap();
        let value = |key: &str| {
            let line = prod.lines().find_map(|l| l.strip_prefix(key)).unwrap();
            line.trim_matches('"').to_string()
        };
        let target = Env {
            name: target_name,
            config: source.config.clone(),
            stack: support::Stack {
                registry: value("registry = "),
                account_id: value("account_id = "),
                registry_account: value("account_id = "),
                ..source.stack.clone()
            },
        };
        // The target's layer first: the source's grants its deploy role reads by ARN.
        target
            .xtask(&["bootstrap", "--yes"])
            .assert_ok("bootstrap (target)");
        source
            .xtask(&["bootstrap", "--yes"])
            .assert_ok("bootstrap (source)");
        (source, target)
    }

    /// A function's ECR repository (both functions' names are in environments.toml).
    fn repo(&self, function: &str) -> String {
        let name = match function {
            SSE => format!("{}-sse-streaming-lambda", self.name),
            other => format!("{}-{other}", self.name),
        };
        format!("{}/{name}", self.stack.registry)
    }

    /// The Lambda function's name.
    fn function_name(&self, function: &str) -> String {
        self.repo(function).rsplit('/').next().unwrap().to_string()
    }

    fn xtask(&self, args: &[&str]) -> Run {
        self.xtask_with(args, &[])
    }

    fn xtask_with(&self, args: &[&str], envs: &[(&str, &Path)]) -> Run {
        Run::of(
            support::xtask()
                .envs(envs.iter().map(|(k, v)| (k, v)))
                .args(args)
                .args(["--env", &self.name, "--config"])
                .arg(&self.config)
                .arg("--json"),
        )
    }

    /// The Lambda as the emulator has it: (image URI, Function URL invoke mode).
    fn lambda(&self, function: &str) -> (String, String) {
        support::deployed(&self.stack, &self.function_name(function))
    }

    /// The registry's digest and media type for a reference.
    fn registry(&self, reference: &str) -> Option<(String, String)> {
        let out = support::docker_in(&self.stack)
            .args(["buildx", "imagetools", "inspect", reference])
            .args(["--format", "{{json .Manifest}}"])
            .output()
            .unwrap();
        if !out.status.success() {
            return None;
        }
        let v: Value = serde_json::from_slice(&out.stdout).unwrap();
        Some((
            v["digest"].as_str()?.to_string(),
            v["mediaType"].as_str()?.to_string(),
        ))
    }

    fn tag(&self, function: &str, tag: &str) -> String {
        let reference = format!("{}:{tag}", self.repo(function));
        self.registry(&reference)
            .unwrap_or_else(|| panic!("{reference} is not in the registry"))
            .0
    }
}

/// Appends a comment to handler.py for the guard's lifetime, restoring it on drop (even when
/// the test fails), so the image content changes without touching the rest of the tree.
struct SourceChange {
    path: PathBuf,
    original: String,
}

impl SourceChange {
    fn new(marker: &str) -> SourceChange {
        let path = root().join("src/lambdas/sse_streaming/handler.py");
        let original = std::fs::read_to_string(&path).unwrap();
        std::fs::write(&path, format!("{original}\n# e2e source change {marker}\n")).unwrap();
        SourceChange { path, original }
    }
}

impl Drop for SourceChange {
    fn drop(&mut self) {
        std::fs::write(&self.path, &self.original).unwrap();
    }
}

/// Whether the buildx step whose title contains `needle` was served from cache, read from
/// plain progress output (`#N [stage] TITLE`, later `#N CACHED`).
fn step_cached(log: &str, needle: &str) -> Option<bool> {
    let title = log
        .lines()
        .find(|l| l.starts_with('#') && l.contains(needle))?;
    let id = title.split_whitespace().next()?;
    Some(log.lines().any(|l| l.trim() == format!("{id} CACHED")))
}

/// A command line with the values only a run knows made comparable between a dry run (typed
/// slots: `<digest:NAME>`, `<lambda-network>`...) and a real run (their values): digests and
/// digest slots become `<digest>`, the image's command `<image-command>`, and every number of
/// three or more digits `N` (the run id in file and container names, the `deployed-` time).
fn normalize(line: &str) -> String {
    let network = format!("{}_default", support::project());
    let mut line = line
        .replace(&network, "<lambda-network>")
        .replace("lambda:9000/.rt", "<lambda-api>");
    if line.starts_with("docker run ")
        && let Some(i) = line.rfind(" sh ")
    {
        line = format!("{} sh <image-command>", &line[..i]);
    }
    let mut out = String::new();
    let mut rest = line.as_str();
    loop {
        let next = ["sha256:", "<digest:", "<live:"]
            .iter()
            .filter_map(|p| rest.find(p).map(|i| (i, *p)))
            .min();
        let Some((i, prefix)) = next else { break };
        out.push_str(&rest[..i]);
        out.push_str("<digest>");
        let tail = &rest[i + prefix.len()..];
        rest = match prefix {
            "sha256:" => &tail[tail.len().min(64)..],
            _ => &tail[tail.find('>').map_or(tail.len(), |j| j + 1)..],
        };
    }
    out.push_str(rest);
    let mut normalized = String::new();
    let mut digits = String::new();
    for c in out.chars().chain(std::iter::once('\0')) {
        if c.is_ascii_digit() {
            digits.push(c);
            continue;
        }
        normalized.push_str(if digits.len() >= 3 { "N" } else { &digits });
        digits.clear();
        if c != '\0' {
            normalized.push(c);
        }
    }
    normalized
}

#[test]
fn normalize_makes_a_planned_and_an_executed_line_equal() {
    let planned = "docker run --name xtask-smoke-e-sse-1234 --network <lambda-network> \
                   --env API=<lambda-api>/x r/e@<digest:sse> -c \"a\" sh <image-command>";
    let digest = format!("sha256:{}", "ab12".repeat(16));
    let executed = format!(
        "docker run --name xtask-smoke-e-sse-98765 --network {}_default --env \
         API=lambda:9000/.rt/x r/e@{digest} -c \"a\" sh python -m uvicorn",
        support::project()
    );
    assert_eq!(normalize(planned), normalize(&executed));
    assert_ne!(normalize("x:deployed-1"), normalize("x:live"));
}

#[test]
#[ignore = "needs the local stack (cargo xtask local up)"]
fn image_builds_skips_rebuilds_only_what_changed_and_uses_the_registry_cache() {
    // The shared local state bucket exists, and `image` is a first command too: it creates the
    // repositories with the same targeted apply as a first deploy.
    let env = Env::new("123456789012");
    let first = env.xtask(&["image"]);
    first.assert_ok("first image");
    assert_eq!(
        first.step("ECR repositories: terraform apply -target"),
        "ok"
    );
    assert_eq!(first.step("docker buildx bake (push)"), "ok");
    for f in [SSE, STATUS] {
        assert_eq!(first.function(f).image.as_deref(), Some("built"), "{f}");
    }

    let skip = env.xtask(&["image"]);
    skip.assert_ok("image with no change");
    assert_eq!(
        skip.step("ECR repositories: terraform apply -target"),
        "skipped"
    );
    assert_eq!(skip.step("docker buildx bake (push)"), "skipped");
    assert!(
        !skip
            .result
            .commands
            .iter()
            .any(|c| c.starts_with("docker buildx bake")),
        "{:#?}",
        skip.result.commands
    );
    for f in [SSE, STATUS] {
        let image = skip.function(f).image.clone().unwrap_or_default();
        assert!(image.starts_with("found "), "{f}: {image}");
        assert_eq!(skip.digest(f), first.digest(f), "{f}");
    }
    let digest = skip.digest(SSE);

    // Content tag, git tag and latest: one digest, one single-platform image manifest.
    let tags = &skip.function(SSE).tags;
    assert_eq!(tags.len(), 3, "{tags:?}");
    assert!(
        tags[0].starts_with("src-"),
        "the content tag first: {tags:?}"
    );
    for tag in tags {
        let reference = format!("{}:{tag}", env.repo(SSE));
        let (d, media) = env
            .registry(&reference)
            .unwrap_or_else(|| panic!("{reference} missing"));
        assert_eq!(d, digest, "{tag}");
        assert!(
            [
                "application/vnd.oci.image.manifest.v1+json",
                "application/vnd.docker.distribution.manifest.v2+json"
            ]
            .contains(&media.as_str()),
            "{tag} is a {media}, not a single image manifest"
        );
    }

    // In GitHub Actions: a group per step, each function's digest and image URI as step
    // outputs, a summary.
    let gh = root()
        .join("target/e2e")
        .join(format!("{}-github", env.name));
    std::fs::create_dir_all(&gh).unwrap();
    let (output, summary) = (gh.join("output"), gh.join("summary.md"));
    let actions = env.xtask_with(
        &["image"],
        &[
            ("GITHUB_ACTIONS", Path::new("true")),
            ("GITHUB_OUTPUT", &output),
            ("GITHUB_STEP_SUMMARY", &summary),
        ],
    );
    actions.assert_ok("image in GitHub Actions");
    let groups = actions
        .stderr
        .lines()
        .filter(|l| l.starts_with("::group::["))
        .count();
    assert!(
        actions
            .stderr
            .lines()
            .any(|l| l.starts_with("::group::[1/") && l.ends_with("] tool preflight")),
        "{}",
        actions.stderr
    );
    assert_eq!(groups, actions.result.steps.len(), "{}", actions.stderr);
    assert_eq!(actions.stderr.matches("::endgroup::").count(), groups);
    let outputs = std::fs::read_to_string(&output).unwrap();
    assert!(
        outputs.contains(&format!("sse_streaming_digest={digest}\n")),
        "{outputs}"
    );
    let uri = format!("sse_streaming_image_uri={}@{digest}\n", env.repo(SSE));
    assert!(outputs.contains(&uri), "{outputs}");
    let status_uri = format!(
        "status_image_uri={}@{}\n",
        env.repo(STATUS),
        skip.digest(STATUS)
    );
    assert!(outputs.contains(&status_uri), "{outputs}");
    let table = std::fs::read_to_string(&summary).unwrap();
    assert!(
        table.contains("| docker buildx bake (push) | skipped |"),
        "{table}"
    );

    // A handler change builds a new sse-streaming digest, its dependency layers from cache,
    // and leaves the status function's image as it was: one bake, one target.
    let _change = SourceChange::new(&env.name);
    let changed = env.xtask(&["image"]);
    changed.assert_ok("image after a handler.py change");
    assert_eq!(changed.step("docker buildx bake (push)"), "ok");
    assert_eq!(changed.step("sse-streaming: smoke test"), "ok");
    assert_eq!(changed.function(SSE).image.as_deref(), Some("built"));
    assert_ne!(changed.digest(SSE), digest);
    let status = changed.function(STATUS).image.clone().unwrap_or_default();
    assert!(status.starts_with("found "), "status was rebuilt: {status}");
    assert_eq!(changed.digest(STATUS), first.digest(STATUS));
    assert_eq!(
        step_cached(&changed.stderr, "RUN python -m pip install"),
        Some(true),
        "dependencies were reinstalled:\n{}",
        changed.stderr
    );
    assert_eq!(
        step_cached(&changed.stderr, "handler.py /app/handler.py"),
        Some(false),
        "the source layer was not rebuilt:\n{}",
        changed.stderr
    );

    // With the engine's build cache pruned, the registry cache still serves the dependencies.
    let prune = support::docker()
        .args(["buildx", "prune", "--all", "--force"])
        .output()
        .unwrap();
    assert!(prune.status.success());
    let forced = env.xtask(&["image", "--force", "--function", SSE]);
    forced.assert_ok("image --force after pruning the build cache");
    assert!(
        forced.stderr.contains("importing cache manifest from"),
        "{}",
        forced.stderr
    );
    assert_eq!(
        step_cached(&forced.stderr, "RUN python -m pip install"),
        Some(true),
        "dependencies did not come from the registry cache:\n{}",
        forced.stderr
    );
}

#[test]
#[ignore = "needs the local stack (cargo xtask local up)"]
fn deploy_from_empty_then_noop_then_change_then_rollback() {
    let env = Env::bootstrapped("123456789012");

    let dry = env.xtask(&["deploy", "--dry-run"]);
    assert!(dry.ok, "{}", dry.stderr);
    let planned: Vec<String> = dry.result.commands.iter().map(|c| normalize(c)).collect();

    let first = env.xtask(&["deploy"]);
    first.assert_ok("first deploy");
    assert_eq!(
        first.step("ECR repositories: terraform apply -target"),
        "ok"
    );
    assert_eq!(first.result.terraform.as_deref(), Some("applied"));
    let digest = first.digest(SSE);
    assert!(
        digest.starts_with("sha256:") && digest.len() == 71,
        "{digest}"
    );
    for (f, mode) in [(SSE, "RESPONSE_STREAM"), (STATUS, "BUFFERED")] {
        assert_eq!(first.function(f).image.as_deref(), Some("built"), "{f}");
        let uri = format!("{}@{}", env.repo(f), first.digest(f));
        assert_eq!(env.lambda(f), (uri, mode.to_string()), "{f}");
        assert_eq!(env.tag(f, "live"), first.digest(f), "{f}");
    }

    // The real run issued the dry run's commands, in the dry run's order, up to the outputs.
    // Serving the deployed functions locally comes after; its commands depend on what the
    // emulator's Lambda API reports, so the plan names that step without command lines.
    let executed: Vec<String> = first
        .result
        .commands
        .iter()
        .map(|c| normalize(c))
        .scan(false, |done, c| {
            let keep = !*done;
            *done |= c.contains(" output -json");
            keep.then_some(c)
        })
        .collect();
    assert!(
        executed.last().is_some_and(|c| c.contains(" output -json")),
        "{executed:#?}"
    );
    let mut planned_iter = planned.iter();
    for line in &executed {
        assert!(
            planned_iter.any(|p| p == line),
            "executed but not planned (in this order): {line}\nplanned: {planned:#?}"
        );
    }

    let again = env.xtask(&["deploy"]);
    again.assert_ok("deploy with no change");
    assert_eq!(
        again.step("ECR repositories: terraform apply -target"),
        "skipped"
    );
    assert_eq!(again.step("docker buildx bake (push)"), "skipped");
    assert_eq!(again.result.terraform.as_deref(), Some("no changes"));
    assert_eq!(again.step("terraform apply (saved plan)"), "skipped");
    assert!(
        !again.result.commands.iter().any(|c| c.contains(" apply ")),
        "{:#?}",
        again.result.commands
    );
    assert_eq!(
        again.step("sse-streaming: mark the deployed image"),
        "skipped"
    );

    // A stale `live` (here: the image wrapped in an index, which is what `imagetools create`
    // makes without --prefer-index) is repaired by the next deploy, with nothing applied.
    let live = format!("{}:live", env.repo(SSE));
    let wrap = support::docker()
        .args(["buildx", "imagetools", "create", "--tag", &live])
        .arg(format!("{}@{digest}", env.repo(SSE)))
        .output()
        .unwrap();
    assert!(
        wrap.status.success(),
        "{}",
        String::from_utf8_lossy(&wrap.stderr)
    );
    assert_ne!(env.tag(SSE, "live"), digest);
    let repair = env.xtask(&["deploy"]);
    repair.assert_ok("deploy repairing a stale live tag");
    assert_eq!(repair.result.terraform.as_deref(), Some("no changes"));
    assert_eq!(
        repair.step("sse-streaming: keep the previous image"),
        "skipped"
    );
    assert_eq!(repair.step("sse-streaming: mark the deployed image"), "ok");
    assert_eq!(repair.step("status: mark the deployed image"), "skipped");
    assert_eq!(env.tag(SSE, "live"), digest);

    // One function's source changes: only its Lambda moves, the other keeps its digest.
    let status_uri = env.lambda(STATUS).0;
    let second_digest = {
        let _change = SourceChange::new(&env.name);
        let changed = env.xtask(&["deploy"]);
        changed.assert_ok("deploy after a handler.py change");
        assert_eq!(changed.result.terraform.as_deref(), Some("applied"));
        assert_eq!(
            changed.function(STATUS).digest,
            first.function(STATUS).digest
        );
        changed.digest(SSE)
    };
    assert_ne!(second_digest, digest);
    assert_eq!(
        env.lambda(SSE).0,
        format!("{}@{second_digest}", env.repo(SSE))
    );
    assert_eq!(env.lambda(STATUS).0, status_uri);
    assert_eq!(env.tag(SSE, "previous"), digest);

    let back = env.xtask(&["rollback", "--function", SSE]);
    back.assert_ok("rollback");
    assert!(
        !back
            .result
            .commands
            .iter()
            .any(|c| c.contains("buildx bake"))
    );
    assert_eq!(env.lambda(SSE).0, format!("{}@{digest}", env.repo(SSE)));
    assert_eq!(env.lambda(STATUS).0, status_uri);
    assert_eq!(env.tag(SSE, "live"), digest);
    assert_eq!(env.tag(SSE, "previous"), second_digest);
    eprintln!(
        "figures: first deploy {:.1}s, no-change deploy {:.1}s, rollback {:.1}s",
        first.secs, again.secs, back.secs
    );
}

#[test]
#[ignore = "needs the local stack (cargo xtask local up)"]
fn a_protected_environment_applies_only_after_confirmation() {
    let env = Env::bootstrapped("123456789012");
    let text = std::fs::read_to_string(&env.config).unwrap();
    let header = format!("[environments.{}]", env.name);
    std::fs::write(
        &env.config,
        text.replace(&header, &format!("{header}\nprotected = true")),
    )
    .unwrap();
    // Outside CI, with the answers on stdin; CI itself never asks. A first deploy asks twice:
    // before the targeted apply that creates the repositories, and before the main apply.
    let deploy = |answer: &str| {
        let mut child = support::xtask()
            .args(["deploy", "--json", "--env", &env.name, "--config"])
            .arg(&env.config)
            .env_remove("CI")
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        use std::io::Write;
        let mut stdin = child.stdin.take().unwrap();
        stdin.write_all(answer.as_bytes()).unwrap();
        drop(stdin);
        Run::from_output(child.wait_with_output().unwrap(), std::time::Duration::ZERO)
    };
    let refused = deploy("no\n");
    assert!(!refused.ok, "{}", refused.stderr);
    assert!(
        refused
            .error()
            .contains("not confirmed: nothing was applied"),
        "{:#?}",
        refused.result
    );
    assert_eq!(refused.step("terraform apply (saved plan)"), "absent");
    assert!(
        !refused
            .result
            .commands
            .iter()
            .any(|c| c.ends_with(".tfplan") && c.contains(" apply "))
    );

    let confirmed = deploy("yes\nyes\n");
    confirmed.assert_ok("deploy confirmed with yes");
    assert_eq!(confirmed.result.terraform.as_deref(), Some("applied"));
    for f in [SSE, STATUS] {
        let uri = format!("{}@{}", env.repo(f), confirmed.digest(f));
        assert_eq!(env.lambda(f).0, uri, "{f}");
    }
}

/// Issue 20: prod runs exactly what preprod ran. The target environment (another emulator
/// account, registry and state) never builds; `promote` copies the source's live digests
/// registry to registry, scans them in the target and pins its Lambdas to them.
#[test]
#[ignore = "needs the local stack (cargo xtask local up)"]
fn promote_copies_the_live_digests_into_another_account_with_no_build() {
    let (source, target) = Env::promotion_pair();
    let (from, to) = (source.name.as_str(), target.name.as_str());

    // Before anything ran in the source: nothing to promote, nothing changed.
    let early = target.xtask(&["promote", "--from", from, "--to", to]);
    assert!(
        !early.ok,
        "promote with nothing live in the source succeeded"
    );
    assert!(early.error().contains("no live image"), "{}", early.error());

    // The target never builds: its plan has no build, and running it refuses, naming promote.
    let refusal = format!("cargo xtask promote --from {from} --to {to}");
    let dry = target.xtask(&["deploy", "--dry-run"]);
    assert!(dry.ok, "{}", dry.stderr);
    assert!(
        !dry.result.commands.iter().any(|c| c.contains("buildx")),
        "{:#?}",
        dry.result
    );
    for command in ["deploy", "image"] {
        let run = target.xtask(&[command]);
        assert!(!run.ok, "{command} in a promoted-to environment succeeded");
        assert!(run.error().contains(&refusal), "{command}: {}", run.error());
        assert!(
            !run.result.commands.iter().any(|c| c.contains("buildx")),
            "{command}"
        );
    }

    source.xtask(&["deploy"]).assert_ok("deploy (source)");
    let live: Vec<(&str, String)> = [SSE, STATUS]
        .iter()
        .map(|f| (*f, source.tag(f, "live")))
        .collect();

    let promoted = target.xtask(&["promote", "--from", from, "--to", to]);
    promoted.assert_ok("promote");
    assert!(
        !promoted
            .result
            .commands
            .iter()
            .any(|c| c.contains("buildx bake") || c.contains("buildx build")),
        "promote built: {:#?}",
        promoted.result.commands
    );
    for (f, digest) in &live {
        assert_eq!(
            &promoted.digest(f),
            digest,
            "{f}: the digest the source runs"
        );
        assert_eq!(
            target.lambda(f).0,
            format!("{}@{digest}", target.repo(f)),
            "{f}"
        );
        assert_eq!(&target.tag(f, "live"), digest, "{f}");
        assert_eq!(
            promoted.step(&format!("{f}: image scan gate")),
            "ok",
            "{f}: the scan gate ran in the target"
        );
        let ran = promoted.function(f).ran.clone().unwrap_or_default();
        assert!(ran.starts_with(&format!("{from} since ")), "{f}: {ran}");
        let tags = &promoted.function(f).tags;
        assert!(
            tags.iter()
                .any(|t| t.starts_with(&format!("promoted-from-{from}-"))),
            "{f}: {tags:?}"
        );
    }
    assert!(
        promoted
            .stderr
            .contains(&format!("{} has run in `{from}` since ", live[0].1)),
        "{}",
        promoted.stderr
    );

    // A digest that is live in the source but that the source never deployed (no
    // `deployed-*` tag there) is refused, and the target keeps what it runs.
    let repo = source.repo(SSE);
    let variant = format!("{repo}:never-deployed");
    let dockerfile = root().join(format!("target/e2e/{from}-variant.Dockerfile"));
    std::fs::write(
        &dockerfile,
        format!(
            "FROM {repo}@{}\nLABEL xtask.test=never-deployed\n",
            live[0].1
        ),
    )
    .unwrap();
    let build = support::docker()
        .args([
            "buildx",
            "build",
            "--provenance=false",
            "--push",
            "--tag",
            &variant,
            "--file",
        ])
        .arg(&dockerfile)
        .arg(root().join("target/e2e"))
        .output()
        .unwrap();
    assert!(
        build.status.success(),
        "{}",
        String::from_utf8_lossy(&build.stderr)
    );
    let live_tag = format!("{repo}:live");
    let retag = support::docker()
        .args([
            "buildx",
            "imagetools",
            "create",
            "--tag",
            &live_tag,
            &variant,
        ])
        .output()
        .unwrap();
    assert!(
        retag.status.success(),
        "{}",
        String::from_utf8_lossy(&retag.stderr)
    );
    let refused = target.xtask(&["promote", "--from", from, "--to", to, "--function", SSE]);
    assert!(!refused.ok, "a never-deployed digest was promoted");
    assert!(
        refused.error().contains("never ran in"),
        "{}",
        refused.error()
    );
    assert!(
        !refused
            .result
            .commands
            .iter()
            .any(|c| c.contains(" apply ")),
        "{:#?}",
        refused.result.commands
    );
    assert_eq!(
        target.lambda(SSE).0,
        format!("{}@{}", target.repo(SSE), live[0].1)
    );
    eprintln!(
        "figures: promote {:.1}s for {} functions",
        promoted.secs,
        live.len()
    );
}
