//! Upgrade in place: an environment that the previous release (e5c42e9, one function at the
//! top level of both Terraform roots) bootstrapped and deployed is bootstrapped and deployed
//! by this version on the local stack. Terraform must move state (the `moved` blocks of
//! infrastructure/terraform and infrastructure/bootstrap), never destroy or replace: the live
//! Lambda is updated, its repository keeps the old images, and `status` is added beside it.
//!
//! The old release is checked out from this repository's history into
//! `target/upgrade/old-src` and built into `target/upgrade/old-target` (both reused by later
//! runs). It runs with `XTASK_LOCAL_STACK=external`, so it uses the running stack's registry
//! and emulator as its settings name them and never starts anything.

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use serde_json::Value;
use support::{Run, Stack};

/// The single-function release environments were deployed with.
const OLD: &str = "e5c42e9";

/// The lines of Terraform's plan output that announce a destroy or a replacement.
const DESTROYS: [&str; 3] = [
    "must be replaced",
    "will be destroyed",
    "create replacement",
];

/// The old release's source (a shared clone at `OLD`) and its xtask binary, built warm.
fn old_xtask() -> (PathBuf, PathBuf) {
    let root = support::root();
    let git = |dir: &Path, args: &[&str]| {
        let out = Command::new("git")
            .arg("-C")
            .arg(dir)
            .args(args)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "git {args:?} in {}: {} (the test needs the history with {OLD}: a full clone)",
            dir.display(),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    };
    let commit = git(&root, &["rev-parse", &format!("{OLD}^{{commit}}")]);
    let src = root.join("target/upgrade/old-src");
    // A detached checkout's .git/HEAD is the commit: reuse the tree when it is at OLD.
    let head = std::fs::read_to_string(src.join(".git/HEAD")).unwrap_or_default();
    if head.trim() != commit {
        let _ = std::fs::remove_dir_all(&src);
        let clone = ["clone", "--quiet", "--shared", "--no-checkout", "."];
        git(&root, &[&clone[..], &[src.to_str().unwrap()]].concat());
        git(&src, &["checkout", "--quiet", "--detach", &commit]);
    }
    // The old xtask reads the stack's Terraform CLI configuration at this fixed path.
    let rc = src.join("target/local-stack/terraform.rc");
    std::fs::create_dir_all(rc.parent().unwrap()).unwrap();
    let _ = std::fs::remove_file(&rc);
    std::os::unix::fs::symlink(&support::stack().tf_cli_config, &rc).unwrap();

    let target = root.join("target/upgrade/old-target");
    let started = Instant::now();
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let status = Command::new(cargo)
        .current_dir(&src)
        .env("CARGO_TARGET_DIR", &target)
        .args(["build", "--quiet", "-p", "xtask"])
        .status()
        .unwrap();
    assert!(status.success(), "cargo build of the {OLD} xtask failed");
    let secs = started.elapsed().as_secs_f64();
    eprintln!("{OLD} xtask built in {secs:.1}s");
    (src, target.join("debug/xtask"))
}

/// One run of the old xtask with `--json`: (its result, its progress, seconds).
fn old_run(bin: &Path, src: &Path, args: &[&str]) -> (Value, String, f64) {
    let started = Instant::now();
    let mut cmd = Command::new(bin);
    cmd.current_dir(src).env("XTASK_LOCAL_STACK", "external");
    for var in support::GITHUB_FILES {
        cmd.env_remove(var);
    }
    let out = cmd.args(args).arg("--json").output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    let json = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{OLD} {args:?}: no JSON result ({e}):\n{stderr}"));
    (json, stderr, started.elapsed().as_secs_f64())
}

/// What Terraform printed in one run's progress: moved resources ("has moved to", or
/// "(moved from …)" for one that also changes), each plan's add/change/destroy, and every
/// line that announces a destroy or a replacement.
fn figures(log: &str) -> (usize, Vec<[u32; 3]>, Vec<&str>) {
    let (mut moves, mut plans, mut destroys) = (0, vec![], vec![]);
    for line in log.lines().map(str::trim) {
        moves += usize::from(line.contains(" has moved to ") || line.starts_with("# (moved from "));
        if DESTROYS.iter().any(|s| line.contains(s)) {
            destroys.push(line);
        }
        if let Some(plan) = line.strip_prefix("Plan: ") {
            let parts = || plan.trim_end_matches('.').split(", ");
            let count = |kind| parts().find_map(|p| p.strip_suffix(kind)).map(str::parse);
            let count = |kind| count(kind).map_or(0, Result::unwrap);
            plans.push([count(" to add"), count(" to change"), count(" to destroy")]);
        }
    }
    (moves, plans, destroys)
}

/// Asserts the run destroyed and replaced nothing and moved `moves` resources, before its
/// outcome is checked: a plan that destroys fails here, naming what it would destroy.
fn assert_in_place(what: &str, run: &Run, moves: usize) {
    let (moved, plans, destroys) = figures(&run.stderr);
    let total = |i: usize| plans.iter().map(|p| p[i]).sum::<u32>();
    let (add, change, destroy) = (total(0), total(1), total(2));
    eprintln!(
        "{what}: {moved} moves / {add} add / {change} change / {destroy} destroy in {:.1}s \
         (plans add/change/destroy: {plans:?})",
        run.secs
    );
    assert!(
        destroy == 0 && destroys.is_empty(),
        "{what} destroys or replaces: {destroys:#?}\n{}",
        run.stderr
    );
    assert_eq!(moved, moves, "{what}: moved resources\n{}", run.stderr);
    run.assert_ok(what);
}

/// The environment's functions stop being served (their containers) when the test ends.
struct Served(Vec<String>);

impl Drop for Served {
    fn drop(&mut self) {
        if let Ok(sh) = xshell::Shell::new() {
            sh.change_dir(support::root());
            for function in &self.0 {
                let _ = xtask::local::lambda::unserve(&sh, function);
            }
        }
    }
}

#[test]
#[ignore = "needs the local stack (cargo xtask local up)"]
fn an_environment_of_the_single_function_version_upgrades_in_place() {
    // The record names the registry of the account the last `up` was for, which a concurrent
    // run may have left on the second one; this environment is in the default account.
    let stack = support::stack();
    let registry = match stack.account_id.as_str() {
        "123456789012" => stack.registry.clone(),
        _ => "127.0.0.1:5050".to_string(),
    };
    let stack = Stack { registry, ..stack };
    let (src, old) = old_xtask();
    let name = support::unique("up");
    let bucket = format!("{name}-sse-streaming-tfstate");
    let sse = format!("{name}-sse-streaming-lambda");
    let status = format!("{name}-status");
    let _served = Served(vec![sse.clone(), status.clone()]);
    let rename = |text: String| {
        text.replace("[environments.local]", &format!("[environments.{name}]"))
            .replace("[environments.local.", &format!("[environments.{name}."))
            .replace(
                "bucket = \"local-sse-streaming-tfstate\"",
                &format!("bucket = \"{bucket}\""),
            )
    };
    let dir = support::root().join("target/e2e");
    std::fs::create_dir_all(&dir).unwrap();

    // The old release: its settings on this stack. Its smoke test and its last step (serving
    // the function) need the Lambda emulator it ran itself, which the compose stack replaced.
    let old_config = dir.join(format!("{name}-old.toml"));
    let text = std::fs::read_to_string(src.join("infrastructure/environments.toml")).unwrap();
    let text = rename(text)
        .replace("127.0.0.1:5000", &stack.registry)
        .replace("http://127.0.0.1:4566", &stack.endpoint_url)
        .replace("smoke_test = true", "smoke_test = false");
    std::fs::write(&old_config, text).unwrap();
    let env = ["--env", &name, "--config", old_config.to_str().unwrap()];
    let (result, log, secs) = old_run(&old, &src, &[&["bootstrap", "--yes"], &env[..]].concat());
    let ok = result["status"] == "ok";
    assert!(ok, "{OLD} bootstrap:\n{log}\n{result:#}");
    eprintln!("{OLD} bootstrap: ok in {secs:.1}s");
    let (result, log, secs) = old_run(&old, &src, &[&["deploy", "--yes"], &env[..]].concat());
    let failed: Vec<&str> = result["steps"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["outcome"] != "ok" && s["outcome"] != "skipped")
        .map(|s| s["title"].as_str().unwrap())
        .collect();
    assert!(
        result["terraform"] == "applied"
            && failed == ["serve the function locally (Lambda emulator)"],
        "{OLD} deploy:\n{log}\n{result:#}"
    );
    let old_digest = result["digest"].as_str().unwrap().to_string();
    eprintln!("{OLD} deploy: applied {old_digest} in {secs:.1}s");

    // What the old release left. A published version is a witness: it lives as long as the
    // function, so it survives an update and would be gone after a replacement.
    let function = format!("/2015-03-31/functions/{sse}");
    let before = support::lambda_api(&stack, &function);
    let image = |v: &Value| v["Code"]["ImageUri"].as_str().unwrap().to_string();
    assert!(image(&before).ends_with(&old_digest), "{before:#}");
    let aws = xtask::aws::Aws::emulator(&stack.endpoint_url, &stack.region).unwrap();
    let versions = format!("{}{function}/versions", stack.endpoint_url);
    let published = aws.signed("lambda", "POST", &versions, b"").unwrap();
    let ok = published.status == 201;
    assert!(ok, "PublishVersion: {}", published.text());
    let witness: Value = serde_json::from_slice(&published.body).unwrap();

    // This version, on the same environment: its settings and the current commands.
    let config = dir.join(format!("{name}.toml"));
    std::fs::write(&config, rename(support::settings_for(&name, &stack))).unwrap();
    let current = |command: &str| {
        Run::of(
            support::xtask()
                .args([command, "--yes", "--json", "--env", &name, "--config"])
                .arg(&config),
        )
    };
    // The execution role and its policy move to the instance "sse-streaming".
    assert_in_place("current bootstrap", &current("bootstrap"), 2);
    // The repository, its lifecycle policy, the log group, the Lambda and its URL move.
    let deploy = current("deploy");
    assert_in_place("current deploy", &deploy, 5);

    // The same Lambda, updated to the new image: same ARN, its published version still there.
    let after = support::lambda_api(&stack, &function);
    let (b, a) = (&before["Configuration"], &after["Configuration"]);
    assert_eq!(a["FunctionArn"], b["FunctionArn"]);
    let new_digest = deploy.digest("sse-streaming");
    assert_ne!(new_digest, old_digest, "the image did not change");
    assert!(image(&after).ends_with(&new_digest), "{after:#}");
    assert_ne!(a["CodeSha256"], b["CodeSha256"]);
    let listed = support::lambda_api(&stack, &format!("{function}/versions"));
    let kept =
        |v: &Value| v["Version"] == witness["Version"] && v["CodeSha256"] == witness["CodeSha256"];
    let kept = listed["Versions"].as_array().unwrap().iter().any(kept);
    assert!(kept, "version gone: {listed:#}");
    eprintln!(
        "{} updated in place to {new_digest}, published version {} kept",
        a["FunctionArn"], witness["Version"]
    );

    // The ECR repository (the emulator's, which Terraform manages) kept the old image, which
    // is now the rollback target.
    for reference in [old_digest.as_str(), "previous"] {
        let found = aws.image_digest(&sse, reference).unwrap();
        assert_eq!(found, Some(old_digest.clone()), "{reference}");
    }

    // The new function is added beside it.
    let (status_image, mode) = support::deployed(&stack, &status);
    let added = status_image.ends_with(&deploy.digest("status")) && mode == "BUFFERED";
    assert!(added, "{status}: {status_image} {mode}");
}
