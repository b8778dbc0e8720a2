//! Shared by the tests that need the local stack: the stack's record, and subprocesses that
//! cannot write into a real GitHub Actions job.
//!
//! Those tests are `#[ignore = "needs the local stack (cargo xtask local up)"]`: a plain
//! `cargo test` lists them as ignored, never as passed, and `cargo xtask ci` runs them with
//! `--include-ignored`, where a missing stack fails them.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::Deserialize;

pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// `target/local-stack/stack.json`, written by every successful `local up` (for another compose
/// project, `XTASK_LOCAL_PROJECT`, `stack-<project>.json`).
#[derive(Debug, Clone, Deserialize)]
pub struct Stack {
    pub registry: String,
    pub endpoint_url: String,
    pub tf_cli_config: PathBuf,
    pub account_id: String,
    pub region: String,
    /// The compose project.
    pub project: String,
    /// `http://127.0.0.1:<port>`, the Lambda emulator's Function URLs.
    pub lambda_url: String,
    /// The compose network function containers join.
    pub network: String,
    pub services: Vec<String>,
    /// The account whose registry `registry` is.
    #[serde(default)]
    pub registry_account: String,
}

/// The compose project the tests use: `XTASK_LOCAL_PROJECT`, as xtask reads it.
pub fn project() -> String {
    std::env::var("XTASK_LOCAL_PROJECT")
        .ok()
        .filter(|p| !p.is_empty())
        .unwrap_or_else(|| "xtask-local".into())
}

pub fn stack_file() -> PathBuf {
    match project().as_str() {
        "xtask-local" => root().join("target/local-stack/stack.json"),
        other => root().join(format!("target/local-stack/stack-{other}.json")),
    }
}

/// A copy of the real settings with the `local` environment renamed to `env` (and `local-prod`
/// promoting from it), on the running stack's registry and endpoint (which differ from the
/// settings' for another project).
pub fn settings_for(env: &str, stack: &Stack) -> String {
    let real = std::fs::read_to_string(root().join("infrastructure/environments.toml")).unwrap();
    real.replace("[environments.local]", &format!("[environments.{env}]"))
        .replace("[environments.local.", &format!("[environments.{env}."))
        .replace(
            "promote_from = \"local\"",
            &format!("promote_from = \"{env}\""),
        )
        .replace(
            "registry = \"127.0.0.1:5050\"",
            &format!("registry = \"{}\"", stack.registry),
        )
        .replace(
            "endpoint_url = \"http://127.0.0.1:4566\"",
            &format!("endpoint_url = \"{}\"", stack.endpoint_url),
        )
}

/// The running stack; a test that needs it fails (never skips) when it is not up.
pub fn stack() -> Stack {
    let file = stack_file();
    let text = std::fs::read_to_string(&file).unwrap_or_else(|e| {
        panic!(
            "the local stack is not running ({}: {e}): run `cargo xtask local up`",
            file.display()
        )
    });
    let mut stack: Stack = serde_json::from_str(&text)
        .unwrap_or_else(|e| panic!("{} is not a stack record: {e}", file.display()));
    // The record is of the last `up`, which may have been for another account's environment
    // (its own registry): the tests start from the `local` environment's view.
    if stack.registry_account != xtask::settings::EMULATOR_ACCOUNT {
        let up = xtask().args(["local", "up"]).output().unwrap();
        assert!(
            up.status.success(),
            "`cargo xtask local up`: {}",
            String::from_utf8_lossy(&up.stderr)
        );
        let text = std::fs::read_to_string(&file).unwrap();
        stack = serde_json::from_str(&text).unwrap();
    }
    let healthy = xtask::http::request(
        "GET",
        &format!("{}/moto-api/", stack.endpoint_url),
        &[],
        b"",
        Duration::from_secs(3),
    )
    .is_ok_and(|r| r.status == 200)
        && Command::new("docker")
            .args(["info", "--format", "{{.ServerVersion}}"])
            .output()
            .is_ok_and(|o| o.status.success());
    assert!(
        healthy,
        "the local stack in {} does not answer (emulator or Docker engine down): run \
         `cargo xtask local up`",
        file.display()
    );
    stack
}

/// A name no other test run uses.
pub fn unique(prefix: &str) -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("{prefix}-{}-{}", std::process::id(), nanos % 1_000_000_000)
}

/// The variables through which a process reports to a GitHub Actions job.
pub const GITHUB_FILES: [&str; 5] = [
    "GITHUB_ACTIONS",
    "GITHUB_OUTPUT",
    "GITHUB_STEP_SUMMARY",
    "GITHUB_ENV",
    "GITHUB_PATH",
];

/// The xtask binary, run from the repository root, with none of the job's GitHub Actions
/// files: a test run inside Actions must not write into the real job's outputs.
pub fn xtask() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_xtask"));
    cmd.current_dir(root());
    for var in GITHUB_FILES {
        cmd.env_remove(var);
    }
    cmd
}

/// A `docker` command logged in to the local registry through a private `DOCKER_CONFIG` of
/// this test process: xtask keeps its own login in a per-run config that it removes at exit,
/// so a test that reads the registry logs in for itself (password on stdin, as xtask does).
pub fn docker() -> Command {
    docker_in(&stack())
}

/// `docker()` logged in to `stack`'s registry as its account (once per registry).
pub fn docker_in(stack: &Stack) -> Command {
    use std::sync::Mutex;
    static LOGGED_IN: Mutex<Vec<String>> = Mutex::new(Vec::new());
    let dir = root().join(format!("target/e2e/docker-config-{}", std::process::id()));
    let mut logged_in = LOGGED_IN.lock().unwrap_or_else(|e| e.into_inner());
    if !logged_in.contains(&stack.registry) {
        std::fs::create_dir_all(&dir).unwrap();
        let token = emulator_in(stack).login_token().unwrap();
        let mut login = Command::new("docker")
            .env("DOCKER_CONFIG", &dir)
            .args(["login", "--username", &token.username, "--password-stdin"])
            .arg(&stack.registry)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        {
            use std::io::Write;
            let mut stdin = login.stdin.take().unwrap();
            stdin.write_all(token.password.expose().as_bytes()).unwrap();
        }
        let out = login.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "docker login to {}: {}",
            stack.registry,
            String::from_utf8_lossy(&out.stderr)
        );
        logged_in.push(stack.registry.clone());
    }
    let mut cmd = Command::new("docker");
    cmd.env("DOCKER_CONFIG", dir);
    cmd
}

/// One xtask run with `--json`: its typed result, read back as xtask wrote it.
pub struct Run {
    pub ok: bool,
    pub result: xtask::report::RunResult,
    pub stderr: String,
    pub secs: f64,
}

impl Run {
    /// Runs `cmd` (which passes `--json`) to the end.
    pub fn of(cmd: &mut Command) -> Run {
        let started = std::time::Instant::now();
        Run::from_output(cmd.output().unwrap(), started.elapsed())
    }

    pub fn from_output(out: std::process::Output, elapsed: Duration) -> Run {
        let stderr = String::from_utf8_lossy(&out.stderr).to_string();
        let result = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
            panic!(
                "no run result on stdout ({e}):\n{}\nstderr:\n{stderr}",
                String::from_utf8_lossy(&out.stdout)
            )
        });
        Run {
            ok: out.status.success(),
            result,
            stderr,
            secs: elapsed.as_secs_f64(),
        }
    }

    /// The outcome (`ok`, `skipped`, `failed`) of the first step whose title starts with
    /// `prefix`, or `absent`.
    pub fn step(&self, prefix: &str) -> &str {
        self.result
            .steps
            .iter()
            .find(|s| s.title.starts_with(prefix))
            .map_or("absent", |s| s.outcome.as_str())
    }

    pub fn function(&self, name: &str) -> &xtask::report::FunctionResult {
        self.result
            .functions
            .iter()
            .find(|f| f.name == name)
            .unwrap_or_else(|| panic!("no function `{name}` in {:#?}", self.result))
    }

    /// A function's digest: present, or the test fails naming the run.
    pub fn digest(&self, name: &str) -> String {
        let f = self.function(name);
        f.digest
            .clone()
            .unwrap_or_else(|| panic!("{name}: no digest in {:#?}", self.result))
    }

    pub fn error(&self) -> &str {
        self.result.error.as_deref().unwrap_or_default()
    }

    pub fn assert_ok(&self, what: &str) {
        assert!(
            self.ok,
            "{what} failed:\n{}\n{:#?}",
            self.stderr, self.result
        );
        eprintln!("{what}: ok in {:.1}s", self.secs);
    }
}

/// The emulator as the stack's account.
pub fn emulator_in(stack: &Stack) -> xtask::aws::Aws {
    let (url, region) = (&stack.endpoint_url, &stack.region);
    match stack.account_id.as_str() {
        xtask::settings::EMULATOR_ACCOUNT => xtask::aws::Aws::emulator(url, region),
        other => xtask::aws::Aws::emulator_account(url, region, other),
    }
    .unwrap()
}

/// A signed GET of the emulator's Lambda API (`/2015-03-31/functions/...`), as JSON, in the
/// stack's account.
pub fn lambda_api(stack: &Stack, path: &str) -> serde_json::Value {
    let aws = emulator_in(stack);
    let url = format!("{}{path}", stack.endpoint_url);
    let r = aws.signed("lambda", "GET", &url, b"").unwrap();
    assert!(
        (200..300).contains(&r.status),
        "{path}: {} {}",
        r.status,
        String::from_utf8_lossy(&r.body)
    );
    serde_json::from_slice(&r.body).unwrap()
}

/// A Lambda function's image URI and its Function URL's invoke mode, read from the emulator.
pub fn deployed(stack: &Stack, function: &str) -> (String, String) {
    let f = lambda_api(stack, &format!("/2015-03-31/functions/{function}"));
    let url = lambda_api(stack, &format!("/2021-10-31/functions/{function}/url"));
    let text = |v: &serde_json::Value| v.as_str().unwrap_or_default().to_string();
    (text(&f["Code"]["ImageUri"]), text(&url["InvokeMode"]))
}
