//! The AWS API emulator (moto server) and what the stack asks of it: the ECR
//! login token and the Terraform state bucket.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::Context;
use xshell::cmd;

use super::process::{self, MOTO};
use super::{Config, Ctx, Health, step};
use crate::aws::Aws;
use crate::http;
use crate::secret::Secret;

/// The moto release the project is tested against, for the project-local virtualenv.
const MOTO_REQUIREMENT: &str = "moto[server]==5.2.1";
const TIMEOUT: Duration = Duration::from_secs(5);

fn healthy(cfg: &Config) -> bool {
    http::request(
        "GET",
        &format!("{}/moto-api/", cfg.endpoint_url),
        &[],
        b"",
        TIMEOUT,
    )
    .is_ok_and(|r| r.status == 200)
}

/// The registry credentials that the emulator's ECR `GetAuthorizationToken` hands out, through
/// the same SDK client `image` and `deploy` use.
pub(crate) fn ecr_credentials(cfg: &Config) -> anyhow::Result<(String, Secret)> {
    let token = Aws::emulator(&cfg.endpoint_url, &cfg.region)?
        .login_token()
        .context("the emulator's ECR GetAuthorizationToken")?;
    Ok((token.username, token.password))
}

/// Whether the Terraform state bucket exists (the bootstrap creates it), through the same
/// signed HeadBucket that `deploy` uses.
fn bucket_exists(cfg: &Config) -> bool {
    Aws::emulator(&cfg.endpoint_url, &cfg.region)
        .and_then(|aws| aws.bucket(&cfg.state_bucket))
        .is_ok_and(|b| b == crate::aws::Bucket::Exists)
}

/// `moto_server` from PATH (preinstalled here), else from a project-local
/// virtualenv that is created on first use.
fn moto_server(ctx: &Ctx<'_>) -> anyhow::Result<PathBuf> {
    if let Some(p) = process::which("moto_server") {
        return Ok(p);
    }
    let venv = ctx.paths.moto_venv();
    let exe = venv.join("bin").join("moto_server");
    if exe.exists() {
        return Ok(exe);
    }
    let sh = ctx.sh;
    let python = process::which("python3").context(
        "moto_server is not on PATH and python3 is missing to install it; install Python 3.9+ \
         (Debian: apt-get install python3 python3-venv)",
    )?;
    step(format!(
        "creating {} and installing {MOTO_REQUIREMENT}",
        venv.display()
    ));
    cmd!(sh, "{python} -m venv {venv}")
        .quiet()
        .run()
        .context("creating the moto virtualenv (Debian: apt-get install python3-venv)")?;
    let pip = venv.join("bin").join("pip");
    cmd!(sh, "{pip} install --quiet {MOTO_REQUIREMENT}")
        .quiet()
        .run()
        .context("pip install moto")?;
    Ok(exe)
}

/// Starts moto unless ours already runs; the flag says whether this call started it, so that
/// its empty state gets the account layer applied (and a running one is left alone).
pub(crate) fn ensure(
    ctx: &mut Ctx<'_>,
    addr: SocketAddr,
    pids: &mut BTreeMap<String, u32>,
) -> anyhow::Result<(Health, bool)> {
    let started = Instant::now();
    let cfg = ctx.cfg;
    let args = vec![
        "-H".to_string(),
        addr.ip().to_string(),
        "-p".to_string(),
        addr.port().to_string(),
    ];
    let mut ours = process::recorded(&ctx.paths, &MOTO);
    if let Some(pid) = ours.filter(|&pid| !process::has_args(pid, &args)) {
        // The settings moved the endpoint since this moto started; its state is
        // disposable, so restart it where the settings say.
        step(format!("restarting moto (pid {pid}) on {addr}"));
        process::stop(pid, &MOTO)?;
        ours = None;
    }
    let fresh = ours.is_none();
    let service = process::Service {
        daemon: &MOTO,
        addr,
        what: "the AWS emulator",
        setting: "local.endpoint_url",
    };
    let pid = process::ensure_running(
        &ctx.paths,
        &service,
        ours,
        || Ok((moto_server(ctx)?, args.clone())),
        || healthy(cfg),
    )?;
    pids.insert(MOTO.name.into(), pid);
    let (user, _password) = ecr_credentials(cfg)?;
    let bucket = if fresh {
        "fresh state: the account layer is applied next".to_string()
    } else if bucket_exists(cfg) {
        format!("bucket {}", cfg.state_bucket)
    } else {
        format!(
            "bucket {} missing: run `cargo xtask bootstrap --env local`",
            cfg.state_bucket
        )
    };
    let health = Health {
        name: "emulator",
        address: cfg.endpoint_url.clone(),
        healthy: true,
        health: format!("healthy: moto pid {pid}, ECR token for {user}, {bucket}"),
        elapsed: started.elapsed(),
    };
    Ok((health, fresh))
}

pub(crate) fn status(ctx: &Ctx<'_>, addr: SocketAddr) -> Health {
    let started = Instant::now();
    let cfg = ctx.cfg;
    let (healthy, health) = match process::recorded(&ctx.paths, &MOTO) {
        None if process::port_open(addr) => (
            false,
            format!("foreign: {addr} is held by a process this stack did not start"),
        ),
        None => (false, "down: not running".to_string()),
        Some(pid) if !healthy(cfg) => (false, format!("unhealthy: pid {pid} does not answer")),
        Some(pid) => match ecr_credentials(cfg) {
            Err(e) => (false, format!("unhealthy: pid {pid}: {e:#}")),
            Ok(_) if !bucket_exists(cfg) => (
                false,
                format!("unhealthy: pid {pid}, bucket {} missing", cfg.state_bucket),
            ),
            Ok((user, _)) => (
                true,
                format!(
                    "healthy: moto pid {pid}, ECR token for {user}, bucket {}",
                    cfg.state_bucket
                ),
            ),
        },
    };
    Health {
        name: "emulator",
        address: cfg.endpoint_url.clone(),
        healthy,
        health,
        elapsed: started.elapsed(),
    }
}
