//! The local stack: a registry per AWS account, the AWS API emulator (moto) and the Lambda
//! emulator, as containers on the user's Docker engine from one compose file,
//! `infrastructure/local/compose.yaml`, plus offline Terraform. The engine is used as it is
//! (`engine`); only a bare root Debian machine gets one installed (`provision`). What xtask
//! writes lives in `target/local-stack/`. `XTASK_LOCAL_PROJECT` names another compose project,
//! so a second stack runs beside the first, on the ports of the compose file's variables.

mod engine;
mod images;
pub mod lambda;
mod provision;
mod terraform;

use std::net::{TcpStream, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use serde::{Deserialize, Serialize};
use xshell::Shell;

use crate::aws::{Aws, Bucket};
use crate::cmdline::{CmdLine, Resolved, Slot};
use crate::http;
use crate::paths::DEFAULT_PROJECT;
use crate::paths::{self, stack_dir};

/// Settings for a local-stack environment, built by the caller from `infrastructure/environments.toml`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Config {
    /// `host:port` of the account's OCI registry, loopback only (e.g. `127.0.0.1:5050`).
    pub registry: String,
    /// Base URL of the AWS API emulator (e.g. `http://127.0.0.1:4566`).
    pub endpoint_url: String,
    pub account_id: String,
    pub region: String,
    /// S3 bucket for Terraform state, created in the emulator by the account layer.
    #[serde(default)]
    pub state_bucket: String,
}

/// What a caller needs to use the running stack.
#[derive(Debug, Clone)]
pub struct Running {
    /// Absolute path of the generated Terraform CLI config, for `TF_CLI_CONFIG_FILE`.
    pub tf_cli_config: PathBuf,
    /// This `up` started the AWS emulator, so its state is empty: the caller applies the
    /// account layer (`bootstrap`) to it.
    pub fresh_emulator: bool,
    /// The running emulator instance (`moto_started`).
    pub moto: Option<String>,
}

/// The record of a project's last successful `up`, `target/local-stack/stack.json`.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct StackFile {
    #[serde(flatten)]
    pub config: Config,
    pub tf_cli_config: PathBuf,
    pub project: String,
    /// `http://127.0.0.1:<port>`: where the Lambda emulator's Function URLs are.
    pub lambda_url: String,
    /// The compose network that function containers join.
    pub network: String,
    /// The services `up` started, and the account of its registry.
    pub services: Vec<String>,
    #[serde(default)]
    pub registry_account: String,
    /// The emulator instance (container id and start time) the account layers were last
    /// applied to. Its state is in memory: another instance (recreated, restarted by its
    /// restart policy or the engine, or none recorded) is empty.
    #[serde(default)]
    pub layered_moto: Option<String>,
}

/// Where `up` writes the Terraform CLI config, for the report lines.
const TF_RC: &str = "target/local-stack/terraform.rc";

pub(crate) use crate::paths::local_project as project;

/// The network of a compose project (compose's default network).
pub(crate) fn network(project: &str) -> String {
    format!("{project}_default")
}

fn stack_file(project: &str) -> PathBuf {
    match project {
        DEFAULT_PROJECT => stack_dir().join("stack.json"),
        other => stack_dir().join(format!("stack-{other}.json")),
    }
}

pub(crate) fn read_stack(project: &str) -> Option<StackFile> {
    serde_json::from_str(&std::fs::read_to_string(stack_file(project)).ok()?).ok()
}

/// `docker compose` on the stack's file, for one project, with `env` for its variables.
pub(crate) fn compose(project: &str, env: &[(String, String)], args: &[&str]) -> CmdLine {
    let file = paths::home().join("infrastructure/local/compose.yaml");
    CmdLine::new("docker")
        .args(["compose", "--project-name", project, "--file"])
        .arg(file.display().to_string())
        .args(args.iter().copied())
        .env(env)
}

/// A stack command with its one possible slot filled: the Runtime API, the same
/// `lambda:9000/.rt` for every emulator, on the emulator's own network.
pub(crate) fn resolve(line: &CmdLine) -> Result<Resolved> {
    line.resolve(|slot| match slot {
        Slot::LambdaApi => Ok(vec![lambda::RUNTIME_API.to_string()]),
        other => bail!("a local stack command cannot fill {other}"),
    })
}

/// Runs a command quietly and returns its stdout; a failure carries its stderr.
pub(crate) fn run(sh: &Shell, line: &CmdLine) -> Result<String> {
    let line = resolve(line)?;
    let out = line.to_cmd(sh).quiet().ignore_status().output();
    let out = out.with_context(|| format!("running `{line}`"))?;
    if !out.status.success() {
        let stderr = String::from_utf8_lossy(&out.stderr);
        bail!("`{line}` failed ({}): {}", out.status, stderr.trim());
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Prints one component's line on stderr (a caller's `--json` keeps stdout) with the time
/// since `since`, which it resets; true when healthy.
fn line(since: &mut Instant, name: &str, address: &str, result: Result<String>) -> bool {
    let (mark, text) = match &result {
        Ok(text) => ("ok  ", text.clone()),
        Err(e) => ("FAIL", format!("{e:#}")),
    };
    let secs = std::mem::replace(since, Instant::now()).elapsed();
    let secs = secs.as_secs_f64();
    eprintln!("{mark} {name:<12} {address:<26} {text} ({secs:.1}s)");
    result.is_ok()
}

/// Prints one progress line for a long or system-changing step.
pub(crate) fn step(msg: impl std::fmt::Display) {
    eprintln!("  -> {msg}");
}

/// The port of `host:port` or `http://host:port` (the settings checked both are loopback).
fn port(address: &str) -> u16 {
    let port = address.trim_end_matches('/').rsplit(':').next();
    port.and_then(|p| p.parse().ok()).unwrap_or_default()
}

/// The host port a service of `docker compose config` publishes for its container port.
fn published(config: &serde_json::Value, service: &str, target: u64) -> Option<u16> {
    let ports = config["services"][service]["ports"].as_array()?;
    let port = ports.iter().find(|p| p["target"] == target)?;
    port["published"].as_str()?.parse().ok()
}

/// The settings and the compose file must agree on a port, or clients and containers would
/// talk past each other.
fn same_port(config: &serde_json::Value, service: &str, target: u64, want: &str) -> Result<()> {
    match published(config, service, target) {
        Some(p) if p == port(want) => Ok(()),
        found => bail!(
            "the settings put endpoint_url at {want}, but compose service `{service}` publishes \
             port {}: set the compose variable for it (see infrastructure/local/compose.yaml) \
             or change `endpoint_url` in the settings",
            found.map_or("none".to_string(), |p| p.to_string())
        ),
    }
}

/// The registry service the settings' `registry` port names (one distribution registry per
/// account, labelled `xtask.account`), and its account. The environment's `account_id` does
/// not pick it: a wrong one is refused by the identity check, with a clearer message.
fn registry_service(config: &serde_json::Value, registry: &str) -> Result<(String, String)> {
    let mut known = Vec::new();
    for (name, s) in config["services"].as_object().into_iter().flatten() {
        let Some(account) = s["labels"]["xtask.account"].as_str() else {
            continue;
        };
        match published(config, name, 5000) {
            Some(p) if p == port(registry) => return Ok((name.clone(), account.to_string())),
            p => known.push(format!("`{name}` for {account} on port {}", p.unwrap_or(0))),
        }
    }
    bail!(
        "the settings' registry {registry} is none of the registries of \
         infrastructure/local/compose.yaml ({}): use one of their ports, set its compose port \
         variable, or add a registry service for the account (its own port, htpasswd and \
         volume, labelled `xtask.account`)",
        known.join(", ")
    )
}

/// What the emulator's ECR GetAuthorizationToken hands out for `account`.
fn ecr_token(cfg: &Config, account: &str) -> Result<crate::aws::Token> {
    let aws = match account {
        crate::settings::EMULATOR_ACCOUNT => Aws::emulator(&cfg.endpoint_url, &cfg.region)?,
        other => Aws::emulator_account(&cfg.endpoint_url, &cfg.region, other)?,
    };
    let token = aws.login_token();
    token.context("the emulator's ECR GetAuthorizationToken")
}

/// Anonymous `/v2/` is refused and the emulator's token for the account is accepted: each
/// registry's htpasswd holds exactly that token, so `docker login` with it is the real path.
fn registry_login(cfg: &Config, service: &str, account: &str) -> Result<String> {
    let url = format!("http://{}/v2/", cfg.registry);
    let get = |headers: &[(&str, &str)]| {
        http::request("GET", &url, headers, b"", Duration::from_secs(5)).map(|r| r.status)
    };
    let anonymous = get(&[])?;
    let token = ecr_token(cfg, account)?;
    let pair = format!("{}:{}", token.username, token.password.expose());
    let basic = format!("Basic {}", aws_smithy_types::base64::encode(pair));
    let with_token = get(&[("Authorization", &basic)])?;
    if (anonymous, with_token) != (401, 200) {
        bail!(
            "the registry `{service}` at {} answers /v2/ with {anonymous} anonymously and \
             {with_token} with the emulator's ECR token for {account} (want 401 and 200): its \
             htpasswd in infrastructure/local/compose.yaml must hold `{}:<bcrypt of the token>`",
            cfg.registry,
            token.username
        );
    }
    Ok(format!(
        "`{service}` for {account}: /v2/ 401 anonymous, 200 with the ECR token"
    ))
}

/// The emulator hands out a token; whether the environment's state bucket is there is
/// reported, not required: a new environment has none until its `bootstrap`, and the
/// commands that need it stop at their state bucket lookup with that hint.
fn moto(cfg: &Config, fresh: bool) -> Result<String> {
    let user = ecr_token(cfg, &cfg.account_id)?.username;
    let token = format!("ECR token for {user} in {}", cfg.account_id);
    let bucket = &cfg.state_bucket;
    if fresh {
        return Ok(format!(
            "{token}, an instance the account layers are not in yet: they are applied next"
        ));
    }
    Ok(
        match Aws::emulator(&cfg.endpoint_url, &cfg.region)?.bucket(bucket)? {
            Bucket::Exists => format!("{token}, bucket {bucket}"),
            _ => format!("{token}, no bucket {bucket} yet (`cargo xtask bootstrap` makes it)"),
        },
    )
}

/// The running moto container's id and start time: its instance. Another instance than the
/// one the account layers went into is empty (its state is in memory).
fn moto_started(sh: &Shell, project: &str) -> Option<String> {
    let format = "{{.Id}} {{.State.StartedAt}} {{.State.Running}}";
    let inspect = CmdLine::new("docker").args(["container", "inspect", "--format", format]);
    let found = run(sh, &inspect.arg(format!("{project}-moto-1"))).ok()?;
    let instance = found.trim_end().strip_suffix(" true")?;
    Some(instance.to_string())
}

/// Brings every service up (building stand-ins where nothing can be pulled) and prints one
/// line per component. On a running, healthy stack it only checks.
pub fn up(sh: &Shell, cfg: &Config) -> Result<Running> {
    let started = Instant::now();
    let project = project();
    std::fs::create_dir_all(stack_dir())
        .with_context(|| format!("creating {}", stack_dir().display()))?;
    let mut t = Instant::now();
    let engine = engine::ensure(sh, true).context("local stack: Docker engine")?;
    line(&mut t, "docker", &engine::address(), Ok(engine));
    let (notes, env) = images::ensure(sh).context("local stack: images")?;
    line(&mut t, "images", "docker engine", Ok(notes));

    let config = compose(&project, &env, &["config", "--format", "json"]);
    let config = run(sh, &config)?;
    let config = serde_json::from_str(&config)
        .context("`docker compose config --format json` printed no JSON")?;
    let (registry, account) = registry_service(&config, &cfg.registry)?;
    same_port(&config, "moto", 5000, &cfg.endpoint_url)?;
    let lambda_port = published(&config, "lambda", 9000)
        .context("compose service `lambda` publishes no port for 9000")?;
    let wanted = ["moto", "lambda", registry.as_str()];
    let mut args = vec!["up", "--detach", "--wait", "--wait-timeout", "180"];
    args.extend(wanted);
    run(sh, &compose(&project, &env, &args)).context("starting the local stack")?;
    let moto_now = moto_started(sh, &project)
        .with_context(|| format!("{project}-moto-1 does not run after `compose up`"))?;
    let layered = read_stack(&project).and_then(|s| s.layered_moto);
    let fresh = layered.as_ref() != Some(&moto_now);
    let healthy = format!("healthy: {}", wanted.join(", "));
    line(&mut t, "compose", &project, Ok(healthy));
    line(&mut t, "moto", &cfg.endpoint_url, Ok(moto(cfg, fresh)?));
    let login = registry_login(cfg, &registry, &account)?;
    line(&mut t, "ecr-login", &cfg.registry, Ok(login));
    let (terraform, tf_cli_config) = terraform::ensure(sh).context("local stack: terraform")?;
    line(&mut t, "terraform", TF_RC, Ok(terraform));

    let record = StackFile {
        config: cfg.clone(),
        tf_cli_config: tf_cli_config.clone(),
        project: project.clone(),
        lambda_url: format!("http://127.0.0.1:{lambda_port}"),
        network: network(&project),
        services: wanted.iter().map(ToString::to_string).collect(),
        registry_account: account,
        // Only `layers_applied` records a new instance, once its layers are in.
        layered_moto: layered,
    };
    write_stack(&project, &record)?;
    let secs = started.elapsed().as_secs_f64();
    eprintln!("local stack `{project}` up in {secs:.1}s");
    Ok(Running {
        tf_cli_config,
        fresh_emulator: fresh,
        moto: Some(moto_now),
    })
}

/// Records that the account layers are applied to the running emulator instance, so that the
/// next `up` applies them again only to another (empty) one.
pub fn layers_applied(running: &Running) -> Result<()> {
    let project = project();
    let mut stack = read_stack(&project).context("no stack record: run `cargo xtask local up`")?;
    stack.layered_moto.clone_from(&running.moto);
    write_stack(&project, &stack)
}

fn write_stack(project: &str, stack: &StackFile) -> Result<()> {
    let text = serde_json::to_string_pretty(stack)? + "\n";
    std::fs::write(stack_file(project), text).context("writing the stack record")
}

/// How long the full check of a successful `up` is trusted by the commands that start with
/// one (`deploy`, `image`, `rollback`): within it they only check that the project's containers
/// run healthy and its ports accept connections. `local up` and `local status` check everything.
pub const TRUSTED: Duration = Duration::from_secs(300);

/// The running stack, if `up` fully checked it less than `within` ago for this very config and
/// its services still run and listen.
pub fn recently_healthy(sh: &Shell, cfg: &Config, within: Duration) -> Option<(Running, Duration)> {
    let project = project();
    let age = std::fs::metadata(stack_file(&project))
        .ok()?
        .modified()
        .ok()?;
    let age = age.elapsed().ok()?;
    let stack = read_stack(&project).filter(|s| s.config == *cfg && s.tf_cli_config.is_file())?;
    let endpoint = cfg.endpoint_url.trim_start_matches("http://");
    let listening = [cfg.registry.as_str(), endpoint.trim_end_matches('/')]
        .iter()
        .all(|a| {
            let addr = a.to_socket_addrs().ok().and_then(|mut a| a.next());
            addr.is_some_and(|a| TcpStream::connect_timeout(&a, Duration::from_millis(300)).is_ok())
        });
    // `<service> <status>` of the project's running containers, in one docker call.
    let ps = CmdLine::new("docker").args(["ps", "--filter"]).args([
        format!("label=com.docker.compose.project={project}"),
        "--format".into(),
        "{{.Label \"com.docker.compose.service\"}} {{.Status}}".into(),
    ]);
    let ps = run(sh, &ps).unwrap_or_default();
    let healthy = |s: &String| {
        let status = ps.lines().find_map(|l| l.strip_prefix(&format!("{s} ")));
        status.is_some_and(|status| status.contains("(healthy)"))
    };
    // The emulator the account layers went into, not one restarted empty since.
    let moto = moto_started(sh, &project).filter(|m| stack.layered_moto.as_ref() == Some(m));
    let layered = moto.is_some();
    let running = Running {
        tf_cli_config: stack.tf_cli_config.clone(),
        fresh_emulator: false,
        moto,
    };
    let fresh_enough = age <= within && listening && layered;
    (fresh_enough && stack.services.iter().all(healthy)).then_some((running, age))
}

/// Removes every container, network and volume of the project: the function containers on
/// its network first (the network cannot go while they are attached), then the compose project.
/// The images stay, so the next `up` takes seconds.
pub fn down(sh: &Shell, _cfg: &Config) -> Result<()> {
    let project = project();
    let t = Instant::now();
    let removed = lambda::remove_functions(sh, &network(&project))?;
    let secs = t.elapsed().as_secs_f64();
    eprintln!("removed {removed} function container(s) ({secs:.1}s)");
    let t = Instant::now();
    let args = ["down", "--volumes", "--remove-orphans", "--timeout", "5"];
    run(sh, &compose(&project, &[], &args)).context("removing the local stack")?;
    let secs = t.elapsed().as_secs_f64();
    eprintln!(
        "removed compose project `{project}`: its containers, network and volumes ({secs:.1}s)"
    );
    // Without it, readers of the record would take a removed stack for a running one.
    let _ = std::fs::remove_file(stack_file(&project));
    Ok(())
}

/// Prints each service (its image, the digest it runs, its state and health), the ECR login,
/// the state bucket, each served function and Terraform; `Ok(true)` when all are healthy.
pub fn status(sh: &Shell, cfg: &Config) -> Result<bool> {
    let (project, mut t) = (project(), Instant::now());
    let mut ok = line(
        &mut t,
        "docker",
        &engine::address(),
        engine::ensure(sh, false),
    );
    let stack = read_stack(&project);
    let (services, account) = stack
        .map(|s| (s.services, s.registry_account))
        .unwrap_or_default();
    if services.is_empty() {
        let not_up = Err(anyhow!("not up: run `cargo xtask local up`"));
        ok &= line(&mut t, "compose", &project, not_up);
    }
    for service in &services {
        // `.Image` is, on the containerd image store, the digest of the manifest or index.
        let format = "{{.Config.Image}} {{.Image}} {{.State.Status}} {{if .State.Health}}{{.State.Health.Status}}{{end}}";
        let inspect = CmdLine::new("docker").args(["container", "inspect", "--format", format]);
        let found = run(sh, &inspect.arg(format!("{project}-{service}-1"))).unwrap_or_default();
        let state = match found.trim() {
            "" => Err(anyhow!("no container: run `cargo xtask local up`")),
            f if f.ends_with(" running healthy") => Ok(f.to_string()),
            f => Err(anyhow!("{f}")),
        };
        ok &= line(&mut t, service, &project, state);
        if service.starts_with("registry") {
            let login = registry_login(cfg, service, &account);
            ok &= line(&mut t, "ecr-login", &cfg.registry, login);
        } else if service == "moto" {
            ok &= line(&mut t, "aws-state", &cfg.endpoint_url, moto(cfg, false));
        }
    }
    for (s, running) in lambda::served_all(sh, &project) {
        let id = &s.container[..s.container.len().min(12)];
        let serves = format!(
            "{} serves {} (timeout {} s, container {id})",
            s.function, s.digest, s.timeout
        );
        let state = match running {
            true => Ok(format!("running: {serves}")),
            false => Err(anyhow!("stopped: {serves}")),
        };
        ok &= line(&mut t, "function", &s.url, state);
    }
    ok &= line(&mut t, "terraform", TF_RC, terraform::status());
    Ok(ok)
}

pub use lambda::logs;

/// Writes `contents` only when the file differs, and says whether it changed.
pub(crate) fn write_if_changed(path: &Path, contents: &str) -> Result<bool> {
    if std::fs::read_to_string(path).is_ok_and(|old| old == contents) {
        return Ok(false);
    }
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)?;
    }
    std::fs::write(path, contents).with_context(|| format!("writing {}", path.display()))?;
    Ok(true)
}

/// Runs `command` with its stdout captured, killed after `timeout` (then its status is a
/// failure): an offline pull may hang on DNS or TCP, and a search of a large tree may be slow.
fn bounded(command: &mut Command, timeout: Duration) -> Result<Output> {
    let mut child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .with_context(|| format!("running {command:?}"))?;
    let started = Instant::now();
    while child.try_wait()?.is_none() && started.elapsed() < timeout {
        std::thread::sleep(Duration::from_millis(100));
    }
    let _ = child.kill();
    Ok(child.wait_with_output()?)
}

/// FNV-1a: a content hash for tags and labels, stable across Rust releases (std's is not).
pub(crate) fn fnv64(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_compose_file_and_the_settings_agree_on_ports() {
        let config = serde_json::json!({"services": {
            "registry": {"labels": {"xtask.account": "123456789012"}, "ports": [{"target": 5000, "published": "5050"}]},
            "registry-2": {"labels": {"xtask.account": "210987654321"}, "ports": [{"target": 5000, "published": "5051"}]},
            "moto": {"ports": [{"target": 5000, "published": "4566", "host_ip": "127.0.0.1"}]},
            "lambda": {}
        }});
        assert_eq!(
            registry_service(&config, "127.0.0.1:5051").unwrap(),
            ("registry-2".into(), "210987654321".into())
        );
        let e = registry_service(&config, "localhost:4566")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("`registry` for 123456789012 on port 5050") && !e.contains("moto"),
            "{e}"
        );
        assert!(same_port(&config, "moto", 5000, "http://127.0.0.1:4566/").is_ok());
        let e = same_port(&config, "moto", 5000, "http://127.0.0.1:4567")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("publishes port 4566") && e.contains("endpoint_url"),
            "{e}"
        );
        let e = same_port(&config, "lambda", 9000, "http://127.0.0.1:9000").unwrap_err();
        assert!(e.to_string().contains("port none"), "{e}");
    }

    #[test]
    fn projects_name_their_network_and_record() {
        assert_eq!(network("xtask-local"), "xtask-local_default");
        assert!(stack_file(DEFAULT_PROJECT).ends_with("target/local-stack/stack.json"));
        assert!(stack_file("dev").ends_with("target/local-stack/stack-dev.json"));
    }
}
