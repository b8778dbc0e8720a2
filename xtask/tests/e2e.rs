//! End-to-end: `cargo xtask image|deploy|rollback` against the real local stack (Docker engine,
//! registry, emulator, Terraform). Each run uses a fresh environment name, so its ECR repository,
//! registry repository, Terraform state and Lambda start empty.
//!
//! They are ignored by a plain `cargo test` and run by `cargo xtask ci` (`--include-ignored`);
//! without a running stack they fail.

mod support;

use xtask::http;

use std::{
    path::{Path, PathBuf},
    process::Output,
    time::{Duration, Instant, SystemTime},
};

use serde_json::Value;

fn root() -> PathBuf {
    support::root()
}

/// A settings file with one fresh local-stack environment, `e2e-<nonce>`.
struct Env {
    name: String,
    config: PathBuf,
    repo: String,
    endpoint: String,
}

impl Env {
    fn new(account_id: &str) -> Env {
        let nonce = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap()
            .as_micros()
            % 1_000_000_000;
        let name = format!("e2e-{nonce}");
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
            repo: format!("{}/{name}-sse-streaming-lambda", stack.registry),
            endpoint: stack.endpoint_url.clone(),
            name,
            config,
        }
    }

    /// A fresh environment with its own account layer (`cargo xtask bootstrap`): its own
    /// state bucket and execution role, which the application's Terraform reads.
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

    fn xtask(&self, args: &[&str]) -> Run {
        self.xtask_with(args, &[])
    }

    fn xtask_with(&self, args: &[&str], envs: &[(&str, &Path)]) -> Run {
        let started = Instant::now();
        let out = support::xtask()
            .envs(envs.iter().map(|(k, v)| (k, v)))
            .args(args)
            .args(["--env", &self.name, "--config"])
            .arg(&self.config)
            .arg("--json")
            .current_dir(root())
            .output()
            .unwrap();
        Run::new(out, started.elapsed())
    }

    /// Reads the Lambda back from the emulator: (image URI, Function URL invoke mode).
    fn lambda(&self) -> (String, String) {
        let function = format!("{}-sse-streaming-lambda", self.name);
        let get = |path: &str| -> Value {
            let auth = "AWS4-HMAC-SHA256 Credential=testing/20260101/us-east-1/lambda/aws4_request, \
                        SignedHeaders=host, Signature=0";
            let r = http::request(
                "GET",
                &format!("{}{path}", self.endpoint),
                &[("Authorization", auth)],
                b"",
                Duration::from_secs(10),
            )
            .unwrap();
            assert!(
                (200..300).contains(&r.status),
                "{path}: {} {}",
                r.status,
                String::from_utf8_lossy(&r.body)
            );
            serde_json::from_slice(&r.body).unwrap()
        };
        let f = get(&format!("/2015-03-31/functions/{function}"));
        let url = get(&format!("/2021-10-31/functions/{function}/url"));
        (
            f["Code"]["ImageUri"]
                .as_str()
                .unwrap_or_default()
                .to_string(),
            url["InvokeMode"].as_str().unwrap_or_default().to_string(),
        )
    }

    /// The registry's digest and media type for a reference.
    fn registry(&self, reference: &str) -> Option<(String, String)> {
        let out = support::docker()
            .args([
                "buildx",
                "imagetools",
                "inspect",
                reference,
                "--format",
                "{{json .Manifest}}",
            ])
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
}

struct Run {
    ok: bool,
    json: Value,
    stderr: String,
    secs: f64,
}

impl Run {
    fn new(out: Output, elapsed: Duration) -> Run {
        let stderr = String::from_utf8_lossy(&out.stderr).to_string();
        let json = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
        Run {
            ok: out.status.success(),
            json,
            stderr,
            secs: elapsed.as_secs_f64(),
        }
    }
    fn str(&self, key: &str) -> &str {
        self.json[key].as_str().unwrap_or_default()
    }
    fn step(&self, prefix: &str) -> &str {
        self.json["steps"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|s| s["title"].as_str().unwrap_or_default().starts_with(prefix))
            .and_then(|s| s["outcome"].as_str())
            .unwrap_or("absent")
    }
    fn commands(&self) -> Vec<String> {
        self.json["commands"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|c| c.as_str().map(String::from))
            .collect()
    }
    fn assert_ok(&self, what: &str) {
        assert!(self.ok, "{what} failed:\n{}\n{}", self.stderr, self.json);
        eprintln!("{what}: ok in {:.1}s", self.secs);
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

/// Replaces each run that starts with `prefix` and ends before `end` by `with`.
fn replace_runs(text: &str, prefix: &str, end: impl Fn(char) -> bool, with: &str) -> String {
    let mut out = String::new();
    let mut rest = text;
    while let Some(i) = rest.find(prefix) {
        out.push_str(&rest[..i]);
        out.push_str(with);
        let tail = &rest[i..];
        let len = tail.find(|c: char| end(c)).unwrap_or(tail.len());
        rest = &tail[len..];
    }
    out.push_str(rest);
    out
}

/// Normalizes run-time values so a dry run's and a real run's command lines compare.
fn normalize(line: &str) -> String {
    let mut out = String::new();
    let mut rest = line;
    while let Some(i) = rest.find("sha256:") {
        out.push_str(&rest[..i]);
        out.push_str("<digest>");
        rest = &rest[i + 7 + 64.min(rest.len() - i - 7)..];
    }
    out.push_str(rest);
    let out = out.replace("<live-digest>", "<digest>");
    // A container id: 64 hex digits standing alone.
    let out = out
        .split(' ')
        .map(|w| {
            if w.len() == 64 && w.bytes().all(|b| b.is_ascii_hexdigit()) {
                "<container>"
            } else {
                w
            }
        })
        .collect::<Vec<_>>()
        .join(" ");
    // The smoke test's container (also its function's name in the Lambda emulator), the
    // emulator's Runtime API address, and the image's command spliced in at run time.
    let out = replace_runs(
        &out,
        "xtask-smoke-",
        |c| c == ' ' || c == '/',
        "<container>",
    );
    let out = out.replace("lambda:9000/.rt", "<lambda-api>").replace(
        &format!("--network {}_default", support::project()),
        "--network <lambda-network>",
    );
    let out = match (out.starts_with("docker run "), out.rfind(" sh ")) {
        (true, Some(i)) => format!("{} sh <image-command>", &out[..i]),
        _ => out,
    };
    // The saved plan is named with the run's id (the process id): `<env>-<run>.tfplan`.
    let out = match out.find(".tfplan") {
        Some(end) => {
            let digits = out[..end]
                .bytes()
                .rev()
                .take_while(u8::is_ascii_digit)
                .count();
            if digits > 0 && out[..end - digits].ends_with('-') {
                format!("{}<run>{}", &out[..end - digits], &out[end..])
            } else {
                out
            }
        }
        None => out,
    };
    // deployed-YYYYMMDDTHHMMSSZ
    match out.find(":deployed-") {
        Some(i) if out.len() >= i + 26 && !out[i..].starts_with(":deployed-<now>") => {
            format!("{}:deployed-<now>{}", &out[..i], &out[i + 26..])
        }
        _ => out,
    }
}

#[test]
#[ignore = "needs the local stack (cargo xtask local up)"]
fn image_builds_skips_rebuilds_on_change_and_uses_the_registry_cache() {
    support::stack();
    // The shared local state bucket exists, and `image` is a first command too: it creates the
    // repository with the same targeted apply as a first deploy.
    let env = Env::new("123456789012");
    let first = env.xtask(&["image"]);
    first.assert_ok("first image");
    assert_eq!(
        first.step("ECR repository bootstrap"),
        "ok",
        "{}",
        first.json
    );

    let skip = env.xtask(&["image"]);
    skip.assert_ok("image with no change");
    assert_eq!(skip.step("docker buildx build"), "skipped");
    assert!(skip.str("image").starts_with("skipped"), "{}", skip.json);
    assert!(
        !skip
            .commands()
            .iter()
            .any(|c| c.starts_with("docker buildx build"))
    );
    let digest = skip.str("digest").to_string();
    assert_eq!(digest, first.str("digest"));

    // Content tag, git tag and latest: one digest, one single-platform image manifest.
    let tags: Vec<String> = skip.json["tags"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_str().unwrap().to_string())
        .collect();
    assert_eq!(tags.len(), 3, "{tags:?}");
    for tag in &tags {
        let (d, media) = env.registry(tag).unwrap_or_else(|| panic!("{tag} missing"));
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

    // In GitHub Actions: a group per step, the digest and image URI as step outputs, a summary.
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
    assert!(
        actions
            .stderr
            .lines()
            .any(|l| l.starts_with("::group::[1/") && l.ends_with("] tool preflight")),
        "{}",
        actions.stderr
    );
    // One group per step, each closed.
    let groups = actions
        .stderr
        .lines()
        .filter(|l| l.starts_with("::group::["))
        .count();
    let steps = actions.json["steps"].as_array().map_or(0, Vec::len);
    assert_eq!(groups, steps, "{}", actions.stderr);
    assert_eq!(
        actions.stderr.matches("::endgroup::").count(),
        groups,
        "{}",
        actions.stderr
    );
    let outputs = std::fs::read_to_string(&output).unwrap();
    assert!(outputs.contains(&format!("digest={digest}\n")), "{outputs}");
    assert!(
        outputs.contains(&format!("image_uri={}@{digest}\n", env.repo)),
        "{outputs}"
    );
    let table = std::fs::read_to_string(&summary).unwrap();
    assert!(
        table.contains("| image | `skipped: already in the registry` |"),
        "{table}"
    );

    // A handler change builds a new digest; the dependency layers come from cache.
    let _change = SourceChange::new(&env.name);
    let changed = env.xtask(&["image"]);
    changed.assert_ok("image after a handler.py change");
    assert_eq!(changed.step("docker buildx build"), "ok");
    assert_eq!(changed.step("smoke test"), "ok");
    assert_ne!(changed.str("digest"), digest);
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
    let forced = env.xtask(&["image", "--force"]);
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
    support::stack();
    let env = Env::bootstrapped("123456789012");

    let dry = env.xtask(&["deploy", "--dry-run"]);
    assert!(dry.ok, "{}", dry.stderr);
    let planned: Vec<String> = dry.commands().iter().map(|c| normalize(c)).collect();

    let first = env.xtask(&["deploy"]);
    first.assert_ok("first deploy");
    assert_eq!(first.step("ECR repository bootstrap"), "ok");
    assert_eq!(first.str("image"), "built");
    assert_eq!(first.str("terraform"), "applied");
    let digest = first.str("digest").to_string();
    assert!(
        digest.starts_with("sha256:") && digest.len() == 71,
        "{digest}"
    );
    let (uri, mode) = env.lambda();
    assert_eq!(uri, format!("{}@{digest}", env.repo));
    assert_eq!(mode, "RESPONSE_STREAM");
    assert_eq!(
        env.registry(&format!("{}:live", env.repo)).unwrap().0,
        digest
    );

    // The real run issued the dry run's commands, in the dry run's order, up to the outputs.
    // Serving the deployed function locally comes after; its commands depend on what the
    // emulator's Lambda API reports, so the plan names that step without command lines.
    let executed: Vec<String> = first
        .commands()
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
    assert_eq!(again.step("ECR repository bootstrap"), "skipped");
    assert_eq!(again.step("docker buildx build"), "skipped");
    assert_eq!(again.str("terraform"), "no changes");
    assert_eq!(again.step("terraform apply"), "skipped");
    assert!(
        !again.commands().iter().any(|c| c.contains(" apply ")),
        "{:#?}",
        again.commands()
    );
    assert_eq!(again.step("mark the deployed image"), "skipped");

    // A stale `live` (here: the image wrapped in an index, which is what `imagetools create`
    // makes without --prefer-index) is repaired by the next deploy, with nothing applied.
    let live = format!("{}:live", env.repo);
    let wrap = support::docker()
        .args([
            "buildx",
            "imagetools",
            "create",
            "--tag",
            &live,
            &format!("{}@{digest}", env.repo),
        ])
        .output()
        .unwrap();
    assert!(
        wrap.status.success(),
        "{}",
        String::from_utf8_lossy(&wrap.stderr)
    );
    assert_ne!(env.registry(&live).unwrap().0, digest);
    let repair = env.xtask(&["deploy"]);
    repair.assert_ok("deploy repairing a stale live tag");
    assert_eq!(repair.str("terraform"), "no changes");
    assert_eq!(repair.step("keep the previous image"), "skipped");
    assert_eq!(repair.step("mark the deployed image"), "ok");
    assert_eq!(env.registry(&live).unwrap().0, digest);

    let second_digest = {
        let _change = SourceChange::new(&env.name);
        let changed = env.xtask(&["deploy"]);
        changed.assert_ok("deploy after a handler.py change");
        assert_eq!(changed.str("terraform"), "applied");
        changed.str("digest").to_string()
    };
    assert_ne!(second_digest, digest);
    assert_eq!(env.lambda().0, format!("{}@{second_digest}", env.repo));
    assert_eq!(
        env.registry(&format!("{}:previous", env.repo)).unwrap().0,
        digest
    );

    let back = env.xtask(&["rollback"]);
    back.assert_ok("rollback");
    assert!(!back.commands().iter().any(|c| c.contains("buildx build")));
    assert_eq!(env.lambda().0, format!("{}@{digest}", env.repo));
    assert_eq!(
        env.registry(&format!("{}:live", env.repo)).unwrap().0,
        digest
    );
    assert_eq!(
        env.registry(&format!("{}:previous", env.repo)).unwrap().0,
        second_digest
    );
    eprintln!(
        "figures: first deploy {:.1}s, no-change deploy {:.1}s, rollback {:.1}s",
        first.secs, again.secs, back.secs
    );
}

#[test]
#[ignore = "needs the local stack (cargo xtask local up)"]
fn a_wrong_account_is_refused_before_any_command() {
    support::stack();
    let env = Env::new("111111111111");
    for command in ["image", "deploy"] {
        let run = env.xtask(&[command]);
        assert!(!run.ok, "{command} must fail");
        let error = run.str("error");
        assert!(
            error.contains("account 123456789012")
                && error.contains("`account_id`")
                && error.contains("111111111111"),
            "{command}: {error}"
        );
        assert!(
            run.commands().is_empty(),
            "{command} ran {:#?}",
            run.commands()
        );
        assert_eq!(run.step("account and region check"), "failed");
    }
    let actions = env.xtask_with(&["image"], &[("GITHUB_ACTIONS", Path::new("true"))]);
    assert!(!actions.ok);
    assert!(
        actions
            .stderr
            .lines()
            .any(|l| l.starts_with("::error::") && l.contains("account_id")),
        "{}",
        actions.stderr
    );
}

#[test]
#[ignore = "needs the local stack (cargo xtask local up)"]
fn a_protected_environment_applies_only_after_confirmation() {
    support::stack();
    let env = Env::bootstrapped("123456789012");
    let text = std::fs::read_to_string(&env.config).unwrap();
    let header = format!("[environments.{}]", env.name);
    std::fs::write(
        &env.config,
        text.replace(&header, &format!("{header}\nprotected = true")),
    )
    .unwrap();
    // Outside CI, with the answers on stdin; CI itself never asks. A first deploy asks twice:
    // before the targeted apply that creates the repository, and before the main apply.
    let deploy = |answer: &str| {
        let mut child = support::xtask()
            .args(["deploy", "--json", "--env", &env.name, "--config"])
            .arg(&env.config)
            .env_remove("CI")
            .current_dir(root())
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        use std::io::Write;
        child
            .stdin
            .take()
            .unwrap()
            .write_all(answer.as_bytes())
            .unwrap();
        Run::new(child.wait_with_output().unwrap(), Duration::ZERO)
    };
    let refused = deploy("no\n");
    assert!(!refused.ok, "{}", refused.stderr);
    assert!(
        refused
            .str("error")
            .contains("not confirmed: nothing was applied"),
        "{}",
        refused.json
    );
    assert_eq!(refused.step("terraform apply"), "absent");
    assert!(
        !refused
            .commands()
            .iter()
            .any(|c| c.ends_with(".tfplan") && c.contains(" apply "))
    );
    assert!(
        !root()
            .join(format!("infrastructure/terraform/{}.tfplan", env.name))
            .exists()
    );

    let confirmed = deploy("yes\nyes\n");
    confirmed.assert_ok("deploy confirmed with yes");
    assert_eq!(confirmed.str("terraform"), "applied");
    assert_eq!(
        env.lambda().0,
        format!("{}@{}", env.repo, confirmed.str("digest"))
    );
}
