//! Lambda emulation: cargo-lambda serves the Lambda Runtime API and a Function URL front end
//! on the docker bridge, and function containers run under it the way Lambda runs an image.
//!
//! - **The emulator.** `local up` installs cargo-lambda 1.9.2 into
//!   `target/local-stack/cargo-lambda-venv` and starts
//!   `cargo-lambda lambda watch --only-lambda-apis --disable-cors -A <bridge> -P 9000
//!   --manifest-path target/local-stack/lambda/project/Cargo.toml` as a daemon with a recorded
//!   pid. `-A` takes one address, and it is the docker bridge's (docker0, e.g. 172.17.0.1):
//!   containers reach the host there, and so does this machine, because the address is local
//!   to it. Nothing listens on an outside interface. `--disable-cors` because the app applies
//!   CORS itself, and a second `Access-Control-Allow-Origin` makes browsers reject a response.
//! - **A function** runs its image's own ENTRYPOINT and CMD, with the Lambda Web Adapter
//!   started beside it from `/opt/extensions` (as Lambda starts extensions), a read-only root
//!   with a writable `/tmp`, the function's memory as the container's limit, and the variables
//!   Lambda sets: `AWS_LAMBDA_RUNTIME_API=<bridge>:9000/.rt/<function>` and its twin
//!   `AWS_LWA_LAMBDA_RUNTIME_API_PROXY`, `AWS_LAMBDA_FUNCTION_NAME`, `..._VERSION`,
//!   `..._MEMORY_SIZE`, `AWS_REGION`, then the function's own variables (from a file, not argv).
//! - **Each function has its own name in the emulator**, so its invokes queue separately: the
//!   deployed function and a smoke test of the next image never take each other's requests.
//!   cargo-lambda routes `/lambda-url/<function>/…` only for a binary of that name in its Cargo
//!   project, so serving a function adds a `[[bin]]` to the dummy project (under a file lock).
//! - **The Function URL** is `http://<bridge>:9000/lambda-url/<function>`; `/stream` below it
//!   reaches the app's `/stream`.
//! - **Served functions** (what `deploy` and `rollback` leave running) are recorded in
//!   `target/local-stack/lambda/functions/<function>.json`: name, image and digest, environment,
//!   memory, timeout, URL and container id. `local status` shows them; `local down` removes
//!   their containers by the recorded ids.
//!
//! Known differences from Lambda. Neither the smoke test nor the tests depend on them:
//! - **Overlapping invokes.** The emulator accepts the runtime's `POST …/response` before the
//!   streamed body ends, so one adapter may run several invokes at once; Lambda gives one
//!   execution environment one invoke at a time.
//! - **Stale invokes.** An invoke whose client left before a runtime asked for it stays queued
//!   and is delivered later. So the smoke test waits on one `/health` request rather than
//!   polling with short timeouts, and each smoke test uses a fresh function name.
//! - **Extra headers and CORS.** Responses carry `lambda-runtime-function-response-mode`; CORS
//!   would be permissive without `--disable-cors`.
//! - **The deadline** (`Lambda-Runtime-Deadline-Ms`) is fixed: the function's timeout is
//!   recorded but not enforced (cargo-lambda's `--timeout` would apply to every route, the
//!   runtime's long poll included).
//! - **Lifecycle.** Extension `/event/next` answers 500 (the adapter ignores it), there is no
//!   SHUTDOWN event, no freeze between invokes and no concurrency limit. A replaced container
//!   gets `docker stop` (SIGTERM), so its open streams end with the app's `shutdown` event.
//! - **No IAM auth** on the Function URL, whatever `function_url_auth_type` says.

use std::collections::BTreeMap;
use std::fs::OpenOptions;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use xshell::{Shell, cmd};

use super::process::{self, Daemon};
use super::{Ctx, Health, Paths, step};
use crate::cmdline::CmdLine;
use crate::http;
use crate::tools::docker;

mod project;
mod served;

pub use project::Registered;
pub(crate) use project::replace_file;
use project::{edit_functions, install};

pub(crate) use served::stop_functions;
pub use served::{
    Function, ServeOutcome, Served, deployed, parse_function, serve, served, unserve,
};

/// The emulator's port on the bridge address.
pub const PORT: u16 = 9000;
/// The cargo-lambda release the project is tested against.
const REQUIREMENT: &str = "cargo-lambda==1.9.2";
const VERSION: &str = "cargo-lambda 1.9.2";
/// The dummy project's own binary; never a function name.
const PACKAGE: &str = "xtask-lambda-emulator";
/// A function name the emulator never serves: its Function URL answers 404 at once.
const PROBE: &str = "xtask-health-probe";
/// Carried by every function container this stack starts, with the function's name.
pub const LABEL: &str = "xtask.lambda-function";
/// Lambda's default memory size, for a smoke test whose settings name none.
pub const DEFAULT_MEMORY_MB: u32 = 128;
/// How long a container may take to answer `/health` through the Function URL.
pub const READY: Duration = Duration::from_secs(30);

pub(crate) const LAMBDA: Daemon = Daemon {
    name: "lambda",
    program: "cargo-lambda",
    grace: Duration::from_secs(10),
};

/// The variables Lambda sets for a function, pointed at the emulator's Runtime API `api`
/// (`HOST:PORT/.rt`) under the function's own name. The adapter takes the prefixed API through
/// two variables: `AWS_LAMBDA_RUNTIME_API` (extension registration, no scheme) and
/// `AWS_LWA_LAMBDA_RUNTIME_API_PROXY` (its runtime client, with scheme).
pub fn runtime_environment(
    api: &str,
    function: &str,
    memory_mb: u32,
    region: &str,
) -> Vec<(String, String)> {
    [
        ("AWS_LAMBDA_RUNTIME_API", format!("{api}/{function}")),
        (
            "AWS_LWA_LAMBDA_RUNTIME_API_PROXY",
            format!("http://{api}/{function}"),
        ),
        ("AWS_LAMBDA_FUNCTION_NAME", function.to_string()),
        ("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST".to_string()),
        ("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", memory_mb.to_string()),
        ("AWS_REGION", region.to_string()),
        ("AWS_DEFAULT_REGION", region.to_string()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect()
}

/// The labels of a function container.
pub fn labels(function: &str) -> Vec<(String, String)> {
    vec![(LABEL.to_string(), function.to_string())]
}

/// A Lambda function name (letters, digits, `-`, `_`; at most 64), which is also a Cargo
/// binary name in the emulator's project and part of a container name.
pub fn check_name(name: &str) -> Result<()> {
    let valid = !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        && name != PACKAGE
        && name != PROBE;
    if !valid {
        bail!(
            "{name:?} is not a function name the Lambda emulator can serve (letters, digits, \
             `-` and `_`, at most 64)"
        );
    }
    Ok(())
}

fn watch_args(addr: SocketAddr, manifest: &Path) -> Vec<String> {
    [
        "lambda",
        "watch",
        "--only-lambda-apis",
        "--disable-cors",
        "-A",
        &addr.ip().to_string(),
        "-P",
        &addr.port().to_string(),
        "--manifest-path",
        &manifest.display().to_string(),
    ]
    .iter()
    .map(ToString::to_string)
    .collect()
}

/// The emulator answers: a Function URL of a function it does not know is a quick 404 (a known
/// function's would queue until a runtime takes the invoke).
fn healthy(addr: SocketAddr) -> bool {
    http::request(
        "GET",
        &format!("http://{addr}/lambda-url/{PROBE}/"),
        &[],
        b"",
        Duration::from_secs(5),
    )
    .is_ok_and(|r| r.status == 404 && r.text().contains("Missing function"))
}

/// Runs a docker command quietly; a failure carries its stderr.
fn output(sh: &Shell, line: &CmdLine) -> Result<String> {
    let out = line
        .to_cmd(sh)
        .quiet()
        .ignore_status()
        .output()
        .with_context(|| format!("running `{line}`"))?;
    if !out.status.success() {
        bail!(
            "`{line}` failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// The host's address on the docker bridge, where containers reach it.
fn bridge_ip(sh: &Shell) -> Result<Ipv4Addr> {
    let text = output(sh, &docker::bridge_config())
        .context("reading the docker bridge address (is the Docker engine running?)")?;
    docker::parse_bridge_gateway(&text)
}

/// The full ids of every running container (records keep the id `docker run` printed), in
/// one docker call: `up` runs before every command, and one check per served function (every
/// deployed environment is served) cost a docker round trip each.
fn running_containers(sh: &Shell) -> std::collections::BTreeSet<String> {
    let format = "{{.ID}}";
    cmd!(sh, "docker ps --no-trunc --format {format}")
        .quiet()
        .ignore_stderr()
        .read()
        .map(|names| names.lines().map(str::to_string).collect())
        .unwrap_or_default()
}

fn running(sh: &Shell, container: &str) -> bool {
    output(sh, &docker::running(container)).is_ok_and(|s| s.trim() == "true")
}

// --- The emulator ----------------------------------------------------------------------------

/// A running emulator: the stack's, or a private one that this process stops when the value
/// is dropped.
pub struct Emulator {
    addr: SocketAddr,
    paths: Paths,
    private: Option<Child>,
}

impl Emulator {
    /// The stack's emulator, when `local up` started it and it still runs.
    pub fn shared(sh: &Shell) -> Option<Emulator> {
        let paths = Paths::new(sh);
        let pid = process::recorded(&paths, &LAMBDA)?;
        let args = process::cmdline(pid)?;
        let value = |flag: &str| {
            let i = args.iter().position(|a| a == flag)?;
            args.get(i + 1)
        };
        let ip: IpAddr = value("-A")?.parse().ok()?;
        let port: u16 = value("-P")?.parse().ok()?;
        Some(Emulator {
            addr: SocketAddr::new(ip, port),
            paths,
            private: None,
        })
    }

    /// The stack's emulator when it answers; otherwise a private one on a free port of the
    /// bridge, for this process only. A CI job for an AWS environment runs no local stack,
    /// yet its smoke test goes through an emulated Function URL too.
    pub fn shared_or_private(sh: &Shell) -> Result<Emulator> {
        if let Some(shared) = Emulator::shared(sh).filter(|e| healthy(e.addr)) {
            return Ok(shared);
        }
        let paths = Paths::new(sh);
        std::fs::create_dir_all(&paths.dir)
            .with_context(|| format!("creating {}", paths.dir.display()))?;
        let exe = install(sh, &paths)?;
        let manifest = edit_functions(&paths, |_| {})?;
        let ip = bridge_ip(sh)?;
        let port = TcpListener::bind((ip, 0))
            .with_context(|| format!("finding a free port on the docker bridge {ip}"))?
            .local_addr()?
            .port();
        let addr = SocketAddr::new(ip.into(), port);
        let log_path = paths.log("lambda-private");
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .with_context(|| format!("opening {}", log_path.display()))?;
        let child = Command::new(&exe)
            .args(watch_args(addr, &manifest))
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            // Its own process group: a terminal's Ctrl-C reaches xtask, which stops it on drop.
            .process_group(0)
            .spawn()
            .with_context(|| format!("starting {}", exe.display()))?;
        let mut emulator = Emulator {
            addr,
            paths,
            private: Some(child),
        };
        process::wait_healthy(emulator.private.as_mut(), &LAMBDA, &log_path, READY, || {
            healthy(addr)
        })?;
        Ok(emulator)
    }

    /// The Runtime API as the adapter's variables take it: `HOST:PORT/.rt`.
    pub fn runtime_api(&self) -> String {
        format!("{}/.rt", self.addr)
    }

    /// The Function URL of `function`, without a trailing slash: `<url>/stream` is the app's
    /// `/stream`.
    pub fn function_url(&self, function: &str) -> String {
        format!("http://{}/lambda-url/{function}", self.addr)
    }

    /// Whether this emulator is this process's own, not the stack's.
    pub fn is_private(&self) -> bool {
        self.private.is_some()
    }

    /// The process id of a private emulator.
    pub fn private_pid(&self) -> Option<u32> {
        self.private.as_ref().map(Child::id)
    }

    /// Makes the emulator route `function`'s Function URL; undone when the guard drops.
    pub fn register(&self, function: &str) -> Result<Registered> {
        check_name(function)?;
        edit_functions(&self.paths, |set| {
            set.insert(function.to_string());
        })?;
        Ok(Registered {
            paths: Paths {
                dir: self.paths.dir.clone(),
            },
            function: Some(function.to_string()),
        })
    }
}

impl Drop for Emulator {
    fn drop(&mut self) {
        if let Some(child) = &mut self.private {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// `local up`: installs cargo-lambda, starts the emulator on the bridge address (or keeps the
/// one already running there) and forgets served functions whose container is gone.
pub(crate) fn ensure(ctx: &mut Ctx<'_>, pids: &mut BTreeMap<String, u32>) -> Result<Health> {
    let started = Instant::now();
    let (sh, paths) = (ctx.sh, &ctx.paths);
    let exe = install(sh, paths)?;
    let manifest = edit_functions(paths, |_| {})?;
    let addr = SocketAddr::new(bridge_ip(sh)?.into(), PORT);
    let args = watch_args(addr, &manifest);
    let mut ours = process::recorded(paths, &LAMBDA);
    if let Some(pid) = ours.filter(|&pid| !process::has_args(pid, &args)) {
        // The bridge address changed (or the command line did): a running function container
        // would keep calling the old address, so restart on the new one.
        step(format!(
            "restarting the Lambda emulator (pid {pid}) on {addr}"
        ));
        process::stop(pid, &LAMBDA)?;
        ours = None;
    }
    let mut child = None;
    if ours.is_none() {
        if process::port_open(addr) {
            let who = process::listener(PORT)
                .map(|(pid, cmd)| format!("pid {pid} ({cmd})"))
                .unwrap_or_else(|| "another process".to_string());
            bail!(
                "{addr} is already in use by {who}, which this stack did not start, so the \
                 Lambda emulator cannot listen there; stop that process"
            );
        }
        child = Some(process::spawn(paths, &LAMBDA, &exe, &args, &[])?);
    }
    process::wait_healthy(
        child.as_mut(),
        &LAMBDA,
        &paths.log(LAMBDA.name),
        READY,
        || healthy(addr),
    )?;
    let pid = process::recorded(paths, &LAMBDA)
        .context("the Lambda emulator exited right after startup")?;
    pids.insert(LAMBDA.name.into(), pid);
    let mut served = 0;
    let live = running_containers(sh);
    for record in served::records(paths) {
        if live.contains(&record.container) {
            served += 1;
        } else {
            step(format!(
                "forgetting served function {} (its container is gone)",
                record.function
            ));
            served::forget(paths, &record.function);
        }
    }
    Ok(Health {
        name: "lambda",
        address: format!("http://{addr}"),
        healthy: true,
        health: format!(
            "healthy: {VERSION} pid {pid}, Function URLs /lambda-url/<function>, {served} served"
        ),
        elapsed: started.elapsed(),
    })
}

/// `local status`: the emulator, then one line per served function.
pub(crate) fn status(ctx: &Ctx<'_>) -> Vec<Health> {
    let started = Instant::now();
    let pid = process::recorded(&ctx.paths, &LAMBDA);
    let (healthy, address, health) = match (pid, Emulator::shared(ctx.sh)) {
        (Some(pid), Some(e)) if healthy(e.addr) => (
            true,
            format!("http://{}", e.addr),
            format!("healthy: {VERSION} pid {pid}, Function URLs /lambda-url/<function>"),
        ),
        (Some(pid), _) => (
            false,
            format!("<bridge>:{PORT}"),
            format!("unhealthy: pid {pid} does not answer"),
        ),
        (None, _) => (
            false,
            format!("<bridge>:{PORT}"),
            "down: not running".to_string(),
        ),
    };
    let mut reports = vec![Health {
        name: "lambda",
        address,
        healthy,
        health,
        elapsed: started.elapsed(),
    }];
    for record in served::records(&ctx.paths) {
        let started = Instant::now();
        let up = running(ctx.sh, &record.container);
        let short = &record.container[..record.container.len().min(12)];
        reports.push(Health {
            name: "function",
            address: record.url.clone(),
            healthy: up,
            health: format!(
                "{} {} serves {} (container {short})",
                if up { "running:" } else { "stopped:" },
                record.function,
                record.digest
            ),
            elapsed: started.elapsed(),
        });
    }
    reports
}

#[cfg(test)]
mod tests {
    use super::project::manifest;
    use super::*;
    use std::collections::BTreeSet;

    #[test]
    fn runtime_environment_points_the_adapter_at_the_function() {
        let env = runtime_environment("172.17.0.1:9000/.rt", "fn-a", 512, "us-east-1");
        let get = |k: &str| {
            env.iter()
                .find(|(key, _)| key == k)
                .map(|(_, v)| v.as_str())
        };
        assert_eq!(
            get("AWS_LAMBDA_RUNTIME_API"),
            Some("172.17.0.1:9000/.rt/fn-a")
        );
        assert_eq!(
            get("AWS_LWA_LAMBDA_RUNTIME_API_PROXY"),
            Some("http://172.17.0.1:9000/.rt/fn-a")
        );
        assert_eq!(get("AWS_LAMBDA_FUNCTION_NAME"), Some("fn-a"));
        assert_eq!(get("AWS_LAMBDA_FUNCTION_VERSION"), Some("$LATEST"));
        assert_eq!(get("AWS_LAMBDA_FUNCTION_MEMORY_SIZE"), Some("512"));
        assert_eq!(get("AWS_REGION"), Some("us-east-1"));
    }

    #[test]
    fn names_are_lambda_names() {
        assert!(check_name("local-sse-streaming-lambda").is_ok());
        assert!(check_name("smoke_1").is_ok());
        for bad in ["", "a/b", "a b", "x\"y", PACKAGE, PROBE, &"x".repeat(65)] {
            assert!(check_name(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn the_manifest_names_each_function() {
        let set: BTreeSet<String> = ["b-fn".to_string(), "a-fn".to_string()].into();
        let text = manifest(&set);
        assert!(text.contains("[workspace]"), "{text}");
        let bins: Vec<&str> = text
            .lines()
            .filter_map(|l| l.strip_prefix("name = "))
            .collect();
        assert_eq!(
            bins,
            [
                "\"xtask-lambda-emulator\"",
                "\"xtask-lambda-emulator\"",
                "\"a-fn\"",
                "\"b-fn\""
            ]
        );
    }

    #[test]
    fn registrations_are_undone_unless_kept() {
        let dir = std::env::temp_dir().join(format!("xtask-lambda-{}", std::process::id()));
        let paths = Paths { dir: dir.clone() };
        let emulator = Emulator {
            addr: "172.17.0.1:9000".parse().unwrap(),
            paths: Paths { dir: dir.clone() },
            private: None,
        };
        let manifest_path = dir.join("lambda/project/Cargo.toml");
        let guard = emulator.register("smoke-a").unwrap();
        emulator.register("served-b").unwrap().keep();
        let text = std::fs::read_to_string(&manifest_path).unwrap();
        assert!(
            text.contains("\"smoke-a\"") && text.contains("\"served-b\""),
            "{text}"
        );
        drop(guard);
        let text = std::fs::read_to_string(&manifest_path).unwrap();
        assert!(
            !text.contains("\"smoke-a\"") && text.contains("\"served-b\""),
            "{text}"
        );
        served::forget(&paths, "served-b");
        let text = std::fs::read_to_string(&manifest_path).unwrap();
        assert!(!text.contains("served-b"), "{text}");
        assert_eq!(
            emulator.function_url("fn"),
            "http://172.17.0.1:9000/lambda-url/fn"
        );
        assert_eq!(emulator.runtime_api(), "172.17.0.1:9000/.rt");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
