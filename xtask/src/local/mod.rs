//! The local stack: Docker engine, OCI registry, AWS API emulator and offline Terraform.
//!
//! `up` makes every component available and healthy and is safe to run again
//! (a second run only checks health), `down` stops exactly the processes `up`
//! started (identified by recorded pids whose `/proc/<pid>/cmdline` still names
//! the expected program), and `status` reports each part. Everything the stack
//! writes lives under `target/local-stack/`.

mod apt;
mod emulator;
mod engine;
pub mod lambda;
mod oci_registry;
mod process;
mod standins;
mod terraform;

use std::collections::BTreeMap;
use std::net::{SocketAddr, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde::{Deserialize, Serialize};
use xshell::Shell;

/// Settings for the `local` environment, built by the caller from `infrastructure/environments.toml`.
#[derive(Debug, Clone)]
pub struct Config {
    /// `host:port` of the OCI registry, loopback only (e.g. `127.0.0.1:5000`).
    pub registry: String,
    /// Base URL of the AWS API emulator (e.g. `http://127.0.0.1:4566`).
    pub endpoint_url: String,
    /// The emulator's account (moto's default is `123456789012`).
    pub account_id: String,
    pub region: String,
    /// S3 bucket for Terraform state, created in the emulator by `up`.
    pub state_bucket: String,
}

/// What a caller needs to use the running stack.
#[derive(Debug, Clone)]
pub struct Running {
    // Part of the contract for callers that connect to the stack; the CLI
    // itself currently needs only the Terraform config.
    #[allow(dead_code)]
    pub registry: String,
    #[allow(dead_code)]
    pub endpoint_url: String,
    /// Absolute path of the generated Terraform CLI config, for `TF_CLI_CONFIG_FILE`.
    pub tf_cli_config: PathBuf,
    /// This `up` started the emulator, so its state is empty: the caller applies the
    /// account layer (`bootstrap`) to it.
    pub fresh_emulator: bool,
}

/// The record written to `target/local-stack/stack.json` after every successful `up`.
#[derive(Debug, Serialize, Deserialize)]
struct StackFile {
    registry: String,
    endpoint_url: String,
    tf_cli_config: PathBuf,
    account_id: String,
    region: String,
    /// Processes this stack started, by component name; an engine that was
    /// already running is not listed because `down` must leave it alone.
    pids: BTreeMap<String, u32>,
}

/// Every path the stack uses, in one place, absolute so daemons and config files
/// do not depend on their working directory.
pub(crate) struct Paths {
    pub dir: PathBuf,
}

impl Paths {
    fn new(sh: &Shell) -> Self {
        // Daemons and config files record these paths, so they must not
        // depend on how the caller spelled the repository root.
        let root = std::fs::canonicalize(sh.current_dir()).unwrap_or_else(|_| sh.current_dir());
        Self {
            dir: root.join("target").join("local-stack"),
        }
    }
    pub fn log(&self, name: &str) -> PathBuf {
        self.dir.join(format!("{name}.log"))
    }
    pub fn pid(&self, name: &str) -> PathBuf {
        self.dir.join(format!("{name}.pid"))
    }
    fn stack_json(&self) -> PathBuf {
        self.dir.join("stack.json")
    }
    pub fn registry_config(&self) -> PathBuf {
        self.dir.join("registry.yml")
    }
    pub fn registry_data(&self) -> PathBuf {
        self.dir.join("registry-data")
    }
    pub fn htpasswd(&self) -> PathBuf {
        self.dir.join("htpasswd")
    }
    pub fn terraform_rc(&self) -> PathBuf {
        self.dir.join("terraform.rc")
    }
    pub fn mirror_cache(&self) -> PathBuf {
        self.dir.join("provider-mirror.txt")
    }
    pub fn terraform_probe(&self) -> PathBuf {
        self.dir.join("terraform-probe")
    }
    pub fn moto_venv(&self) -> PathBuf {
        self.dir.join("moto-venv")
    }
    pub fn standins(&self) -> PathBuf {
        self.dir.join("standins")
    }
    pub fn adapter_root(&self) -> PathBuf {
        self.dir.join("adapter")
    }
    pub fn lambda_venv(&self) -> PathBuf {
        self.dir.join("cargo-lambda-venv")
    }
    /// The dummy Cargo project cargo-lambda runs on; one binary per served function.
    pub fn lambda_project(&self) -> PathBuf {
        self.dir.join("lambda").join("project")
    }
    /// One record (`<function>.json`) and environment file per served function.
    pub fn lambda_functions(&self) -> PathBuf {
        self.dir.join("lambda").join("functions")
    }
}

/// State shared by the steps of one `up`/`status` run.
pub(crate) struct Ctx<'a> {
    pub sh: &'a Shell,
    pub cfg: &'a Config,
    pub paths: Paths,
    pub apt: apt::Apt,
}

/// One component's outcome, printed as one line.
pub(crate) struct Health {
    pub name: &'static str,
    pub address: String,
    pub healthy: bool,
    pub health: String,
    pub elapsed: Duration,
}

impl Health {
    /// All report lines go to stderr, so that a caller's `--json` result keeps
    /// stdout to itself.
    fn line(&self) -> String {
        let mark = if self.healthy { "ok  " } else { "FAIL" };
        format!(
            "{mark} {:<12} {:<34} {:<60} {:>6.1}s",
            self.name,
            self.address,
            self.health,
            self.elapsed.as_secs_f64()
        )
    }
    fn print(&self) {
        eprintln!("{}", self.line());
    }
}

/// Prints one progress line for a long or system-changing step.
pub(crate) fn step(msg: impl std::fmt::Display) {
    eprintln!("  -> {msg}");
}

fn check_config(cfg: &Config) -> anyhow::Result<(SocketAddr, SocketAddr)> {
    let registry =
        loopback(&cfg.registry).with_context(|| format!("local.registry = {:?}", cfg.registry))?;
    let endpoint = cfg
        .endpoint_url
        .strip_prefix("http://")
        .map(|rest| rest.trim_end_matches('/'))
        .filter(|rest| !rest.contains('/'))
        .with_context(|| {
            format!(
                "local.endpoint_url = {:?}: expected http://HOST:PORT",
                cfg.endpoint_url
            )
        })?;
    let endpoint = loopback(endpoint)
        .with_context(|| format!("local.endpoint_url = {:?}", cfg.endpoint_url))?;
    if cfg.state_bucket.is_empty() || cfg.account_id.is_empty() || cfg.region.is_empty() {
        bail!("local config: state_bucket, account_id and region must not be empty");
    }
    Ok((registry, endpoint))
}

/// Resolves `host:port` and refuses anything but a loopback address, because the
/// stack has fixed dummy credentials and must never be reachable from outside.
fn loopback(hostport: &str) -> anyhow::Result<SocketAddr> {
    let addr = hostport
        .to_socket_addrs()
        .with_context(|| format!("{hostport:?} is not HOST:PORT"))?
        .next()
        .with_context(|| format!("{hostport:?} resolves to no address"))?;
    if !addr.ip().is_loopback() {
        bail!("{hostport:?} is not a loopback address; the local stack only listens on 127.0.0.1");
    }
    Ok(addr)
}

/// Brings every component up (installing what is missing where allowed) and
/// prints one line per component. Idempotent: with everything healthy it only checks.
pub fn up(sh: &Shell, cfg: &Config) -> anyhow::Result<Running> {
    let started = Instant::now();
    let (registry_addr, endpoint_addr) = check_config(cfg)?;
    let paths = Paths::new(sh);
    sh.create_dir(&paths.dir)
        .with_context(|| format!("creating {}", paths.dir.display()))?;
    let apt = apt::Apt::new(paths.log("apt"));
    let mut ctx = Ctx {
        sh,
        cfg,
        paths,
        apt,
    };
    let mut pids = BTreeMap::new();

    // The adapter build is CPU-bound and the engine install is mostly
    // downloads, so starting it first overlaps the two slow steps.
    let adapter_build = standins::start_adapter_build(&ctx)?;

    let r = engine::ensure(&mut ctx, &mut pids).context("local stack: Docker engine")?;
    r.print();
    let (r, fresh_emulator) =
        emulator::ensure(&mut ctx, endpoint_addr, &mut pids).context("local stack: emulator")?;
    r.print();
    let r = oci_registry::ensure(&mut ctx, registry_addr, &mut pids)
        .context("local stack: registry")?;
    r.print();
    let (r, tf_cli_config) = terraform::ensure(&mut ctx).context("local stack: terraform")?;
    r.print();
    let r = standins::ensure(&mut ctx, adapter_build).context("local stack: base images")?;
    r.print();
    let r = lambda::ensure(&mut ctx, &mut pids).context("local stack: Lambda emulator")?;
    r.print();

    let record = StackFile {
        registry: cfg.registry.clone(),
        endpoint_url: cfg.endpoint_url.clone(),
        tf_cli_config: tf_cli_config.clone(),
        account_id: cfg.account_id.clone(),
        region: cfg.region.clone(),
        pids,
    };
    let json = serde_json::to_string_pretty(&record)?;
    sh.write_file(ctx.paths.stack_json(), json + "\n")?;
    eprintln!(
        "local stack up in {:.1}s (state in {})",
        started.elapsed().as_secs_f64(),
        ctx.paths.dir.display()
    );
    Ok(Running {
        registry: cfg.registry.clone(),
        endpoint_url: cfg.endpoint_url.clone(),
        tf_cli_config,
        fresh_emulator,
    })
}

/// How long the full check of a successful `up` is trusted by the commands that start with
/// one (`deploy`, `image`, `rollback`): within it they only check that every process `up`
/// recorded is alive and every listener accepts connections, which takes milliseconds where
/// the full check takes about a second of docker and HTTP round trips. `local up` and
/// `local status` always check everything.
pub const TRUSTED: Duration = Duration::from_secs(300);

/// The running stack, if `up` fully checked it less than `within` ago for this very config,
/// every process it recorded still runs and every listener still accepts connections.
pub fn recently_healthy(sh: &Shell, cfg: &Config, within: Duration) -> Option<(Running, Duration)> {
    let (registry_addr, endpoint_addr) = check_config(cfg).ok()?;
    let file = Paths::new(sh).stack_json();
    let age = std::fs::metadata(&file)
        .ok()?
        .modified()
        .ok()?
        .elapsed()
        .ok()?;
    let text = std::fs::read_to_string(&file).ok()?;
    let stack: StackFile = serde_json::from_str(&text).ok()?;
    let same = stack.registry == cfg.registry
        && stack.endpoint_url == cfg.endpoint_url
        && stack.account_id == cfg.account_id
        && stack.region == cfg.region;
    let daemons = [process::REGISTRY.name, process::MOTO.name, "lambda"];
    let alive = daemons.iter().all(|d| stack.pids.contains_key(*d))
        && stack
            .pids
            .values()
            .all(|pid| Path::new(&format!("/proc/{pid}")).exists());
    // Only the default engine socket is checked this way; anything else gets the full check.
    let engine = std::env::var_os("DOCKER_HOST").is_none()
        && std::os::unix::net::UnixStream::connect("/var/run/docker.sock").is_ok();
    let ok = age <= within
        && same
        && alive
        && engine
        && stack.tf_cli_config.is_file()
        && process::port_open(registry_addr)
        && process::port_open(endpoint_addr);
    ok.then_some((
        Running {
            registry: stack.registry,
            endpoint_url: stack.endpoint_url,
            tf_cli_config: stack.tf_cli_config,
            fresh_emulator: false,
        },
        age,
    ))
}

/// Stops the processes `up` started (registry, emulator, then the engine if
/// `up` started it), leaving anything else alone. Registry data persists;
/// the emulator's state is in memory and goes with its process.
pub fn down(sh: &Shell, cfg: &Config) -> anyhow::Result<()> {
    let _ = cfg;
    let paths = Paths::new(sh);
    // Function containers go while the engine still runs; then the emulator they called.
    lambda::stop_functions(sh, &paths);
    // Order matters: dockerd needs containerd to stop its containers cleanly.
    for d in [
        lambda::LAMBDA,
        process::REGISTRY,
        process::MOTO,
        process::DOCKERD,
        process::CONTAINERD,
    ] {
        match process::recorded(&paths, &d) {
            Some(pid) => {
                let t = Instant::now();
                process::stop(pid, &d)?;
                eprintln!(
                    "stopped {:<12} pid {pid:<8} {:.1}s",
                    d.name,
                    t.elapsed().as_secs_f64()
                );
            }
            None => eprintln!("{:<12} not running (nothing of ours to stop)", d.name),
        }
        let _ = std::fs::remove_file(paths.pid(d.name));
    }
    // Without it, readers of stack.json would take a stopped stack for a running one.
    let _ = std::fs::remove_file(paths.stack_json());
    Ok(())
}

/// Prints each component's state; `Ok(true)` when every part is healthy.
pub fn status(sh: &Shell, cfg: &Config) -> anyhow::Result<bool> {
    let (registry_addr, endpoint_addr) = check_config(cfg)?;
    let paths = Paths::new(sh);
    let apt = apt::Apt::new(paths.log("apt"));
    let ctx = Ctx {
        sh,
        cfg,
        paths,
        apt,
    };
    let mut reports = vec![
        engine::status(&ctx),
        emulator::status(&ctx, endpoint_addr),
        oci_registry::status(&ctx, registry_addr),
        terraform::status(&ctx),
        standins::status(&ctx),
    ];
    reports.extend(lambda::status(&ctx));
    for r in &reports {
        eprintln!("{}", r.line());
    }
    Ok(reports.iter().all(|r| r.healthy))
}

/// Writes `contents` only when the file differs, and says whether it changed,
/// so reruns neither touch timestamps nor restart daemons needlessly.
pub(crate) fn write_if_changed(path: &Path, contents: &str) -> anyhow::Result<bool> {
    if std::fs::read_to_string(path).is_ok_and(|old| old == contents) {
        return Ok(false);
    }
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)?;
    }
    std::fs::write(path, contents).with_context(|| format!("writing {}", path.display()))?;
    Ok(true)
}

/// A dummy SigV4-shaped Authorization header: moto routes requests by the
/// service named in the credential scope and does not check the signature.
pub(crate) fn fake_sigv4(region: &str, service: &str) -> String {
    format!(
        "AWS4-HMAC-SHA256 Credential=testing/20260101/{region}/{service}/aws4_request, \
         SignedHeaders=host, Signature=0"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> Config {
        Config {
            registry: "127.0.0.1:5000".into(),
            endpoint_url: "http://127.0.0.1:4566".into(),
            account_id: "123456789012".into(),
            region: "us-east-1".into(),
            state_bucket: "local-sse-streaming-tfstate".into(),
        }
    }

    #[test]
    fn a_recent_full_check_is_trusted_only_while_everything_still_runs() {
        let dir = std::env::temp_dir().join(format!("xtask-recent-{}", std::process::id()));
        let sh = Shell::new().unwrap();
        sh.change_dir(&dir);
        let paths = Paths::new(&sh);
        std::fs::create_dir_all(&paths.dir).unwrap();
        let registry = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let emulator = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let mut cfg = cfg();
        cfg.registry = registry.local_addr().unwrap().to_string();
        cfg.endpoint_url = format!("http://{}", emulator.local_addr().unwrap());
        let rc = paths.dir.join("terraform.rc");
        std::fs::write(&rc, "").unwrap();
        let write = |pid: u32| {
            let record = StackFile {
                registry: cfg.registry.clone(),
                endpoint_url: cfg.endpoint_url.clone(),
                tf_cli_config: rc.clone(),
                account_id: cfg.account_id.clone(),
                region: cfg.region.clone(),
                pids: ["registry", "moto", "lambda"]
                    .into_iter()
                    .map(|d| (d.to_string(), pid))
                    .collect(),
            };
            std::fs::write(paths.stack_json(), serde_json::to_string(&record).unwrap()).unwrap();
        };
        write(std::process::id());
        let engine = std::os::unix::net::UnixStream::connect("/var/run/docker.sock").is_ok()
            && std::env::var_os("DOCKER_HOST").is_none();
        let long = Duration::from_secs(300);
        assert_eq!(recently_healthy(&sh, &cfg, long).is_some(), engine);
        assert!(
            recently_healthy(&sh, &cfg, Duration::ZERO).is_none(),
            "too old"
        );
        let mut other = cfg.clone();
        other.region = "eu-west-1".into();
        assert!(
            recently_healthy(&sh, &other, long).is_none(),
            "another config"
        );
        write(999_999_999);
        assert!(
            recently_healthy(&sh, &cfg, long).is_none(),
            "a recorded process is gone"
        );
        write(std::process::id());
        drop(registry);
        assert!(
            recently_healthy(&sh, &cfg, long).is_none(),
            "the registry stopped listening"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn config_must_be_loopback() {
        assert!(check_config(&cfg()).is_ok());
        let mut c = cfg();
        c.registry = "0.0.0.0:5000".into();
        assert!(format!("{:#}", check_config(&c).unwrap_err()).contains("loopback"));
        let mut c = cfg();
        c.endpoint_url = "https://127.0.0.1:4566".into();
        assert!(check_config(&c).is_err());
    }
}
