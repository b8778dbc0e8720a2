//! End-to-end: the scan gate on the local stack. The emulator's ECR knows the pushed image
//! through the mirror step, and reports one HIGH finding, `CVE-9999-9999`, for every image it
//! knows. With `scan.fail_on = "HIGH"` a deploy is refused before Terraform applies anything;
//! an allow-list entry lets it through (and the deployment tags then go through ECR PutImage
//! on the emulator); once the entry has expired the same image is refused again.

mod support;

use std::path::{Path, PathBuf};
use std::process::Output;

use serde_json::Value;
use xtask::aws::Aws;

/// A settings file with one fresh local-stack environment whose gate fails on HIGH.
struct ScanEnv {
    name: String,
    config: PathBuf,
    base: String,
}

impl ScanEnv {
    fn new() -> ScanEnv {
        let name = support::unique("scan");
        let real =
            std::fs::read_to_string(support::root().join("infrastructure/environments.toml"))
                .unwrap();
        assert!(
            !real.contains("[environments.local.scan]"),
            "this test sets the local environment's [scan] itself"
        );
        let base = real
            .replace("[environments.local]", &format!("[environments.{name}]"))
            .replace("[environments.local.", &format!("[environments.{name}."))
            .replace(
                "promote_from = \"local\"",
                &format!("promote_from = \"{name}\""),
            )
            // Its own state bucket, which `bootstrap` creates with the account layer.
            .replace(
                "bucket = \"local-sse-streaming-tfstate\"",
                &format!("bucket = \"{name}-sse-streaming-tfstate\""),
            )
            + &format!("\n[environments.{name}.scan]\nfail_on = \"HIGH\"\ntimeout = \"2m\"\n");
        let dir = support::root().join("target/e2e");
        std::fs::create_dir_all(&dir).unwrap();
        let config = dir.join(format!("{name}.toml"));
        let env = ScanEnv { name, config, base };
        env.allow(None);
        env
    }

    /// Rewrites the settings with or without an allow-list entry for the emulator's finding.
    fn allow(&self, expires: Option<&str>) {
        let mut text = self.base.clone();
        if let Some(expires) = expires {
            text += &format!(
                "\n[[environments.{}.scan.allow]]\nid = \"CVE-9999-9999\"\nreason = \"the \
                 emulator's fixed finding, not a real package\"\nexpires = \"{expires}\"\n",
                self.name
            );
        }
        std::fs::write(&self.config, text).unwrap();
    }

    fn xtask(&self, args: &[&str], summary: &Path) -> Run {
        let out = support::xtask()
            .args(args)
            .args(["--env", &self.name, "--config"])
            .arg(&self.config)
            .arg("--json")
            .env("GITHUB_ACTIONS", "true")
            .env("GITHUB_STEP_SUMMARY", summary)
            .output()
            .unwrap();
        Run::new(out)
    }

    fn repository(&self) -> String {
        format!("{}-sse-streaming-lambda", self.name)
    }

    /// Whether the emulator has the function (Terraform applied), asked with a signed request.
    fn function_exists(&self) -> bool {
        let stack = support::stack();
        let aws = Aws::emulator(&stack.endpoint_url, &stack.region).unwrap();
        xtask::local::lambda::deployed(&aws, &stack.region, &self.repository()).is_ok()
    }
}

struct Run {
    ok: bool,
    json: Value,
    stderr: String,
}

impl Run {
    fn new(out: Output) -> Run {
        Run {
            ok: out.status.success(),
            json: serde_json::from_slice(&out.stdout).unwrap_or(Value::Null),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }
    fn error(&self) -> &str {
        self.json["error"].as_str().unwrap_or_default()
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
    /// The SSE function's entry of the result.
    fn sse(&self) -> &Value {
        let functions = self.json["functions"].as_array().into_iter().flatten();
        let mut sse = functions.filter(|f| f["name"] == "sse-streaming");
        sse.next().unwrap_or(&Value::Null)
    }
    fn decision(&self) -> &str {
        self.sse()["scan"]["findings"][0]["decision"]
            .as_str()
            .unwrap_or_default()
    }
}

#[test]
#[ignore = "needs the local stack (cargo xtask local up)"]
fn high_findings_block_an_allow_list_entry_passes_an_expired_one_blocks_again() {
    let stack = support::stack();
    let env = ScanEnv::new();
    let summary = support::root()
        .join("target/e2e")
        .join(format!("{}-summary.md", env.name));

    let bootstrap = env.xtask(&["bootstrap"], &summary);
    assert!(
        bootstrap.ok,
        "bootstrap: {}\n{}",
        bootstrap.stderr, bootstrap.json
    );
    let _ = std::fs::remove_file(&summary);

    // Blocked: refused after the push, before Terraform plans or applies anything.
    let blocked = env.xtask(&["deploy"], &summary);
    eprintln!("blocked deploy:\n{}", blocked.stderr);
    assert!(!blocked.ok, "a HIGH finding must block: {}", blocked.json);
    let error = blocked.error();
    assert!(
        error.contains("CVE-9999-9999 (HIGH)")
            && error.contains("scan.fail_on = \"HIGH\"")
            && error.contains(&format!("[[environments.{}.scan.allow]]", env.name)),
        "{error}"
    );
    assert_eq!(blocked.step("docker buildx bake"), "ok");
    assert_eq!(blocked.step("sse-streaming: image scan gate"), "failed");
    assert_eq!(blocked.step("terraform plan"), "absent");
    assert_eq!(blocked.step("terraform apply"), "absent");
    assert!(!env.function_exists(), "nothing may be applied");
    assert_eq!(blocked.decision(), "BLOCKS");
    assert!(
        blocked
            .stderr
            .lines()
            .any(|l| l.contains("CVE-9999-9999") && l.contains("HIGH") && l.contains("BLOCKS")),
        "the findings table is in the step output"
    );
    let md = std::fs::read_to_string(&summary).unwrap();
    assert!(
        md.contains("| CVE-9999-9999 | HIGH | moto_fake 9.9.9 | BLOCKS |"),
        "job summary:\n{md}"
    );
    let digest = blocked.sse()["digest"].as_str().unwrap().to_string();

    // Allowed: the same image (no rebuild) passes and is deployed.
    env.allow(Some("2099-12-31"));
    let allowed = env.xtask(&["deploy"], &summary);
    eprintln!("allowed deploy:\n{}", allowed.stderr);
    assert!(allowed.ok, "{}\n{}", allowed.stderr, allowed.json);
    assert_eq!(allowed.step("docker buildx bake"), "skipped");
    assert_eq!(allowed.step("sse-streaming: image scan gate"), "ok");
    assert!(
        allowed.decision().starts_with("allowed until 2099-12-31"),
        "{}",
        allowed.sse()["scan"]
    );
    assert_eq!(allowed.sse()["digest"], digest.as_str());
    // The summary says how to rebuild the digest: the commit in its labels and its time.
    let reproducible = allowed.sse()["reproducible"].as_str().unwrap_or_default();
    let (commit, epoch) = reproducible
        .strip_prefix("from commit ")
        .and_then(|rest| rest.split_once(" (SOURCE_DATE_EPOCH="))
        .unwrap_or_else(|| panic!("{}", allowed.json));
    assert!(commit.len() == 40 && epoch.trim_end_matches(')').parse::<u64>().is_ok());
    let md = std::fs::read_to_string(&summary).unwrap();
    assert!(
        md.contains(&format!("-sse-streaming-lambda@{digest}\n"))
            && md.contains(&format!("reproducible   {reproducible}\n")),
        "job summary:\n{md}"
    );
    assert!(env.function_exists());
    // The deployment tags went through ECR PutImage on the emulator too.
    let aws = Aws::emulator(&stack.endpoint_url, &stack.region).unwrap();
    assert_eq!(
        aws.image_digest(&env.repository(), "live")
            .unwrap()
            .as_deref(),
        Some(digest.as_str()),
        "ECR `live` tag on the emulator"
    );

    // Expired: treated as no entry, warned about, and the image is refused again.
    env.allow(Some("2020-01-31"));
    let expired = env.xtask(&["image"], &summary);
    eprintln!("expired allow-list entry:\n{}", expired.stderr);
    assert!(!expired.ok, "{}", expired.json);
    assert!(
        expired.error().contains("CVE-9999-9999 (HIGH)"),
        "{}",
        expired.error()
    );
    assert!(
        expired
            .stderr
            .lines()
            .any(|l| l.starts_with("::warning::") && l.contains("expired on 2020-01-31")),
        "{}",
        expired.stderr
    );
    assert_eq!(expired.decision(), "BLOCKS");
}
