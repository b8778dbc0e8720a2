//! A Docker engine for a bare Debian machine, as root (this project's CI machines: no engine,
//! no systemd); `engine` calls it only when no engine answers. Debian trixie's docker.io 26,
//! containerd, docker-buildx and docker-compose install and run on bookworm too, which has no
//! buildx: trixie is added as an apt source pinned at priority 100, so nothing else is upgraded
//! from it. The containerd image store is turned on in /etc/docker/daemon.json, and containerd
//! and dockerd are started in sessions of their own, logging to `target/local-stack/`.

use std::fs::{File, OpenOptions};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use super::{stack_dir, step, write_if_changed};

const TRIXIE_SOURCE: &str = "/etc/apt/sources.list.d/xtask-local-stack-trixie.sources";
const TRIXIE_PIN: &str = "/etc/apt/preferences.d/xtask-local-stack-trixie";
const POLICY_RC_D: &str = "/usr/sbin/policy-rc.d";
const DAEMON_JSON: &str = "/etc/docker/daemon.json";
const CONTAINERD_SOCKET: &str = "/run/containerd/containerd.sock";

/// Root on Debian with apt: the only place xtask changes the system itself.
pub(crate) fn possible() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    let root = unsafe { libc::geteuid() } == 0;
    root && Path::new("/etc/debian_version").exists() && Path::new("/usr/bin/apt-get").exists()
}

/// Installs what is missing, turns the containerd image store on and starts the daemons.
pub(crate) fn engine() -> Result<()> {
    step("no Docker engine answers: installing one (root on Debian)");
    let packages = ["docker.io", "containerd", "docker-buildx", "docker-compose"];
    if !packages.iter().all(|p| installed(p)) {
        add_trixie()?;
        // Only these come from trixie; what they pull in (runc, iptables, …) stays on the
        // machine's own release.
        let wanted = packages.iter().map(|p| format!("{p}/trixie"));
        install(&wanted.chain(["runc".to_string()]).collect::<Vec<_>>())?;
    }
    if turn_on_containerd_store()? {
        step(format!(
            "turned on the containerd image store in {DAEMON_JSON}"
        ));
    }
    let containerd = || UnixStream::connect(CONTAINERD_SOCKET).is_ok();
    if !containerd() {
        start("containerd", &[], Duration::from_secs(30), containerd)?;
    }
    // Two daemons on one data root corrupt it: a dockerd that runs but does not answer is left
    // to its owner.
    let pid = std::fs::read_to_string("/var/run/docker.pid").unwrap_or_default();
    let comm = std::fs::read_to_string(format!("/proc/{}/comm", pid.trim()));
    if !pid.trim().is_empty() && comm.is_ok_and(|c| c.trim() == "dockerd") {
        let pid = pid.trim();
        bail!(
            "a dockerd (pid {pid}) runs but does not answer `docker info`; fix or stop it, then rerun"
        );
    }
    let args = [format!("--containerd={CONTAINERD_SOCKET}")];
    start("dockerd", &args, Duration::from_secs(60), || {
        let mut info = Command::new("docker");
        let info = info.arg("info").stdout(Stdio::null()).stderr(Stdio::null());
        info.status().is_ok_and(|s| s.success())
    })
}

/// `target/local-stack/<name>.log`, opened for appending.
fn log(name: &str) -> Result<(PathBuf, File)> {
    let path = stack_dir().join(format!("{name}.log"));
    let file = OpenOptions::new().create(true).append(true).open(&path);
    Ok((
        path.clone(),
        file.with_context(|| format!("opening {}", path.display()))?,
    ))
}

/// The last lines of a log, for an error that names what went wrong.
fn tail(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    let last = format!("last lines of {}:\n", path.display());
    last + &lines[lines.len().saturating_sub(15)..].join("\n")
}

/// Runs `command` quietly, its output appended to the log `name`; a failure quotes the log.
pub(crate) fn logged(command: &mut Command, name: &str) -> Result<()> {
    let (path, file) = log(name)?;
    let status = command
        .stdin(Stdio::null())
        .stdout(file.try_clone()?)
        .stderr(file)
        .status();
    let status = status.with_context(|| format!("running {command:?}"))?;
    if !status.success() {
        bail!("{command:?} failed ({status}); {}", tail(&path));
    }
    Ok(())
}

/// Starts a daemon in a session of its own (it outlives xtask and ignores a terminal's Ctrl-C)
/// and waits until it is `ready`, or fails with the end of its log.
fn start(
    program: &str,
    args: &[String],
    timeout: Duration,
    ready: impl Fn() -> bool,
) -> Result<()> {
    let (path, file) = log(program)?;
    let mut daemon = Command::new("setsid");
    let daemon = daemon.arg(program).args(args).stdin(Stdio::null());
    let child = daemon.stdout(file.try_clone()?).stderr(file).spawn();
    let child = child.with_context(|| format!("starting {program} via setsid"))?;
    step(format!(
        "started {program} (pid {}, log {})",
        child.id(),
        path.display()
    ));
    let started = Instant::now();
    while !ready() {
        if started.elapsed() > timeout {
            bail!("{program} not ready after {timeout:?}; {}", tail(&path));
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    Ok(())
}

/// Sets `features.containerd-snapshotter = true` in daemon.json, keeping other settings.
fn turn_on_containerd_store() -> Result<bool> {
    let text = std::fs::read_to_string(DAEMON_JSON).unwrap_or_default();
    let mut json: serde_json::Value = match text.trim() {
        "" => serde_json::json!({}),
        text => serde_json::from_str(text)
            .with_context(|| format!("{DAEMON_JSON} is not valid JSON; fix it and rerun"))?,
    };
    if !json.is_object() || !(json["features"].is_object() || json["features"].is_null()) {
        bail!("{DAEMON_JSON} is not a JSON object with an object `features`; fix it and rerun");
    }
    if json["features"]["containerd-snapshotter"] == true {
        return Ok(false);
    }
    json["features"]["containerd-snapshotter"] = true.into();
    let text = serde_json::to_string_pretty(&json)? + "\n";
    write_if_changed(Path::new(DAEMON_JSON), &text)
}

pub(crate) fn installed(package: &str) -> bool {
    let query = Command::new("dpkg-query")
        .args(["-W", "-f=${Status}", package])
        .output();
    query.is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains("install ok installed"))
}

/// `apt-get update` and `install`, quietly (the output goes to a log), with maintainer
/// scripts kept from starting daemons: the stack starts its own.
pub(crate) fn install(packages: &[String]) -> Result<()> {
    step("apt-get update");
    logged(Command::new("apt-get").args(["update", "-q"]), "apt")?;
    step(format!("apt-get install {}", packages.join(" ")));
    let created = !Path::new(POLICY_RC_D).exists();
    if created {
        use std::os::unix::fs::PermissionsExt;
        let script = "#!/bin/sh\n# Temporary, from cargo xtask local up.\nexit 101\n";
        std::fs::write(POLICY_RC_D, script)?;
        std::fs::set_permissions(POLICY_RC_D, std::fs::Permissions::from_mode(0o755))?;
    }
    let mut apt = Command::new("apt-get");
    apt.args(["install", "-y", "-q", "--no-install-recommends"])
        .args(packages);
    let result = logged(apt.env("DEBIAN_FRONTEND", "noninteractive"), "apt");
    if created {
        let _ = std::fs::remove_file(POLICY_RC_D);
    }
    result
}

/// Adds Debian trixie as an extra source, pinned at priority 100 so that nothing is upgraded
/// from it unless asked for by name (`pkg/trixie`).
fn add_trixie() -> Result<()> {
    let mirror = mirror_uri()?;
    let source = format!(
        "# Added by `cargo xtask local up` for docker.io, containerd, docker-buildx and docker-compose.\n\
         Types: deb\nURIs: {mirror}\nSuites: trixie\nComponents: main\n\
         Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg\n"
    );
    let pin = "# Added by `cargo xtask local up`: trixie only for packages named explicitly.\n\
               Package: *\nPin: release n=trixie\nPin-Priority: 100\n";
    if write_if_changed(Path::new(TRIXIE_PIN), pin)?
        | write_if_changed(Path::new(TRIXIE_SOURCE), &source)?
    {
        step(format!(
            "added apt source {TRIXIE_SOURCE} ({mirror} trixie, pin priority 100)"
        ));
    }
    Ok(())
}

/// The Debian mirror this machine already uses: the source of its own release's main suite,
/// as `apt-cache policy` lists it (` 500 http://deb.debian.org/debian bookworm/main amd64 Packages`).
pub(crate) fn mirror_uri() -> Result<String> {
    let os = std::fs::read_to_string("/etc/os-release").unwrap_or_default();
    let codename = os.lines().find_map(|l| l.strip_prefix("VERSION_CODENAME="));
    let codename = codename
        .context("no VERSION_CODENAME in /etc/os-release")?
        .trim_matches('"');
    let policy = Command::new("apt-cache")
        .arg("policy")
        .output()
        .context("running apt-cache")?;
    find_mirror(&String::from_utf8_lossy(&policy.stdout), codename)
        .with_context(|| format!("`apt-cache policy` lists no source for Debian {codename} main"))
}

fn find_mirror(policy: &str, codename: &str) -> Option<String> {
    let suite = format!("{codename}/main");
    policy.lines().find_map(|l| {
        let mut words = l.split_whitespace().skip(1);
        let uri = words.next()?;
        (words.next()? == suite).then(|| uri.trim_end_matches('/').to_string())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_machine_mirror() {
        let policy = "Package files:\n 100 /var/lib/dpkg/status\n     release a=now\n \
                      100 http://deb.example/debian trixie/main amd64 Packages\n \
                      500 http://sec.example/debian-security bookworm-security/main amd64 Packages\n \
                      500 http://deb.example/debian/ bookworm/main amd64 Packages\n";
        assert_eq!(
            find_mirror(policy, "bookworm").as_deref(),
            Some("http://deb.example/debian")
        );
        assert_eq!(find_mirror(policy, "bullseye"), None);
    }
}
