//! The Docker engine with buildx and the containerd image store.
//!
//! An engine that already answers is used as is. Otherwise, as root on
//! Debian, xtask installs trixie's docker.io, containerd and docker-buildx
//! (bookworm has no buildx and a too-old engine), turns the containerd image
//! store on, and starts containerd and dockerd itself (there is no systemd).

use std::collections::BTreeMap;
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use xshell::{Shell, cmd};

use super::process::{self, CONTAINERD, DOCKERD};
use super::{Ctx, Health, step};

const CONTAINERD_SOCKET: &str = "/run/containerd/containerd.sock";
const DAEMON_JSON: &str = "/etc/docker/daemon.json";
const ADDRESS: &str = "unix:///var/run/docker.sock";

/// What to install where xtask will not install an engine itself.
const INSTALL_HINT: &str = "Install Docker Engine 24 or newer with the buildx plugin \
     (Debian/Ubuntu: the docker-ce, docker-ce-cli, containerd.io and docker-buildx-plugin \
     packages from https://docs.docker.com/engine/install/; macOS/Windows: Docker Desktop), \
     turn on the containerd image store (\"features\": {\"containerd-snapshotter\": true} in \
     daemon.json, or Settings > General > \"Use containerd for pulling and storing images\" in \
     Docker Desktop), start it, and rerun `cargo xtask local up`. As root on Debian, xtask \
     installs and starts one itself.";

fn docker_answers(sh: &Shell) -> bool {
    let fmt = "{{.ServerVersion}}";
    cmd!(sh, "docker info --format {fmt}")
        .quiet()
        .ignore_stderr()
        .read()
        .is_ok_and(|v| {
            // `docker info` prints an empty server version when the daemon is unreachable.
            !v.trim().is_empty()
        })
}

fn buildx_version(sh: &Shell) -> Option<String> {
    cmd!(sh, "docker buildx version")
        .quiet()
        .ignore_stderr()
        .read()
        .ok()
}

/// The default `docker` buildx driver can export a registry cache only with
/// the containerd image store, which `docker info` reports as a snapshotter driver type.
fn containerd_store(sh: &Shell) -> anyhow::Result<bool> {
    let fmt = "{{json .DriverStatus}}";
    let status = cmd!(sh, "docker info --format {fmt}").quiet().read()?;
    Ok(status.contains("io.containerd.snapshotter"))
}

fn summary(sh: &Shell) -> String {
    let fmt = "{{.ServerVersion}}";
    let server = cmd!(sh, "docker info --format {fmt}")
        .quiet()
        .ignore_stderr()
        .read();
    let buildx = buildx_version(sh).unwrap_or_default();
    let buildx = buildx.split_whitespace().nth(1).unwrap_or("?").to_string();
    format!(
        "engine {}, buildx {buildx}",
        server.unwrap_or_default().trim()
    )
}

pub(crate) fn ensure(
    ctx: &mut Ctx<'_>,
    pids: &mut BTreeMap<String, u32>,
) -> anyhow::Result<Health> {
    let started = Instant::now();
    let sh = ctx.sh;
    let record = |pids: &mut BTreeMap<String, u32>, ctx: &Ctx<'_>| {
        for d in [CONTAINERD, DOCKERD] {
            if let Some(pid) = process::recorded(&ctx.paths, &d) {
                pids.insert(d.name.to_string(), pid);
            }
        }
    };

    if docker_answers(sh) && buildx_version(sh).is_some() {
        record(pids, ctx);
        let ours = pids.contains_key(DOCKERD.name);
        let store = containerd_store(sh)?;
        if !store {
            if ours {
                bail!(
                    "the dockerd we started runs without the containerd image store; check {DAEMON_JSON}"
                );
            }
            // An engine we did not start is used as is; say what will not work.
            eprintln!(
                "warning: the running Docker engine has the containerd image store off, so the default \
                 builder cannot export a registry cache (type=registry). Turn it on: {INSTALL_HINT}"
            );
        }
        let who = if ours {
            "started by xtask"
        } else {
            "already running, used as is"
        };
        let store = if store {
            "containerd store"
        } else {
            "NO containerd store"
        };
        return Ok(Health {
            name: "docker",
            address: ADDRESS.into(),
            healthy: true,
            health: format!("healthy: {}, {store}, {who}", summary(sh)),
            elapsed: started.elapsed(),
        });
    }

    let missing_binaries = ["dockerd", "containerd", "runc"]
        .iter()
        .any(|p| process::which(p).is_none())
        || !Path::new("/usr/libexec/docker/cli-plugins/docker-buildx").exists()
            && buildx_version(sh).is_none();
    if missing_binaries {
        if !super::apt::can_install() {
            let why = if docker_answers(sh) {
                "The Docker engine answers but `docker buildx version` fails."
            } else {
                "No Docker engine answers (`docker info` fails)."
            };
            bail!("{why} {INSTALL_HINT}");
        }
        step("installing a Docker engine: Debian trixie's docker.io, containerd and docker-buildx");
        ctx.apt.add_trixie()?;
        // Only these three come from trixie; everything they pull in (runc,
        // iptables, …) stays on the machine's own release.
        ctx.apt
            .install(
                sh,
                &[
                    "docker.io/trixie",
                    "containerd/trixie",
                    "docker-buildx/trixie",
                    "runc",
                ],
            )
            .context("installing the Docker engine")?;
    }

    if merge_daemon_json()? {
        step(format!(
            "turned on the containerd image store in {DAEMON_JSON}"
        ));
    }

    if UnixStream::connect(CONTAINERD_SOCKET).is_err() {
        let mut child = match process::recorded(&ctx.paths, &CONTAINERD) {
            Some(_) => None,
            None => {
                let exe = process::which("containerd").context("containerd not on PATH")?;
                Some(process::spawn(&ctx.paths, &CONTAINERD, &exe, &[], &[])?)
            }
        };
        process::wait_healthy(
            child.as_mut(),
            &CONTAINERD,
            &ctx.paths.log(CONTAINERD.name),
            Duration::from_secs(30),
            || UnixStream::connect(CONTAINERD_SOCKET).is_ok(),
        )?;
    }

    if !docker_answers(sh) {
        let mut child = match process::recorded(&ctx.paths, &DOCKERD) {
            Some(_) => None,
            None => {
                refuse_foreign_dockerd()?;
                let exe = process::which("dockerd").context("dockerd not on PATH")?;
                let args = vec![format!("--containerd={CONTAINERD_SOCKET}")];
                Some(process::spawn(&ctx.paths, &DOCKERD, &exe, &args, &[])?)
            }
        };
        process::wait_healthy(
            child.as_mut(),
            &DOCKERD,
            &ctx.paths.log(DOCKERD.name),
            Duration::from_secs(60),
            || docker_answers(sh),
        )?;
    }
    if buildx_version(sh).is_none() {
        bail!("`docker buildx version` fails after installing docker-buildx. {INSTALL_HINT}");
    }
    if !containerd_store(sh)? {
        bail!(
            "dockerd runs without the containerd image store although {DAEMON_JSON} turns it on; \
             see {}",
            ctx.paths.log(DOCKERD.name).display()
        );
    }
    record(pids, ctx);
    Ok(Health {
        name: "docker",
        address: ADDRESS.into(),
        healthy: true,
        health: format!(
            "healthy: {}, containerd store, started by xtask",
            summary(sh)
        ),
        elapsed: started.elapsed(),
    })
}

/// A dockerd that runs but does not answer, and that we did not start, must not
/// be fought over (two daemons on one data root corrupt it).
fn refuse_foreign_dockerd() -> anyhow::Result<()> {
    let pid = std::fs::read_to_string("/var/run/docker.pid")
        .ok()
        .and_then(|p| p.trim().parse().ok());
    if let Some(pid) = pid.filter(|&p| process::runs_program(p, "dockerd")) {
        bail!(
            "a dockerd (pid {pid}) that this stack did not start is running but `docker info` \
             does not answer; fix or stop it, then rerun `cargo xtask local up`"
        );
    }
    Ok(())
}

/// Sets `features.containerd-snapshotter = true` in daemon.json, keeping any
/// other settings; returns whether the file changed.
fn merge_daemon_json() -> anyhow::Result<bool> {
    let mut json: serde_json::Value = match std::fs::read_to_string(DAEMON_JSON) {
        Ok(text) if !text.trim().is_empty() => serde_json::from_str(&text)
            .with_context(|| format!("{DAEMON_JSON} is not valid JSON; fix it and rerun"))?,
        _ => serde_json::json!({}),
    };
    let obj = json
        .as_object_mut()
        .with_context(|| format!("{DAEMON_JSON} is not a JSON object"))?;
    let features = obj
        .entry("features")
        .or_insert_with(|| serde_json::json!({}));
    let features = features
        .as_object_mut()
        .with_context(|| format!("\"features\" in {DAEMON_JSON} is not an object"))?;
    if features.get("containerd-snapshotter") == Some(&serde_json::Value::Bool(true)) {
        return Ok(false);
    }
    features.insert("containerd-snapshotter".into(), true.into());
    super::write_if_changed(
        Path::new(DAEMON_JSON),
        &(serde_json::to_string_pretty(&json)? + "\n"),
    )
}

pub(crate) fn status(ctx: &Ctx<'_>) -> Health {
    let started = Instant::now();
    let sh = ctx.sh;
    let pids: Vec<String> = [CONTAINERD, DOCKERD]
        .iter()
        .filter_map(|d| process::recorded(&ctx.paths, d).map(|p| format!("{} pid {p}", d.name)))
        .collect();
    let who = if pids.is_empty() {
        "not started by xtask".to_string()
    } else {
        pids.join(", ")
    };
    let (healthy, health) = if !docker_answers(sh) {
        (
            false,
            format!("down: `docker info` does not answer ({who})"),
        )
    } else if buildx_version(sh).is_none() {
        (false, format!("unhealthy: buildx missing ({who})"))
    } else if !containerd_store(sh).unwrap_or(false) {
        (
            false,
            format!("unhealthy: containerd image store off ({who})"),
        )
    } else {
        (
            true,
            format!("healthy: {}, containerd store, {who}", summary(sh)),
        )
    };
    Health {
        name: "docker",
        address: ADDRESS.into(),
        healthy,
        health,
        elapsed: started.elapsed(),
    }
}
