//! Detached daemons with recorded pids: spawn, identify, wait for health, stop.
//!
//! A pid file alone is not proof of ownership (pids are reused after a crash
//! or reboot), so every use checks that `/proc/<pid>/cmdline` still names the
//! expected program before trusting or signalling it.

use std::fs::OpenOptions;
use std::io::Write;
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

use super::Paths;

/// A daemon the stack may start: its pid-file name and the program its cmdline must name.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Daemon {
    pub name: &'static str,
    pub program: &'static str,
    /// How long `stop` waits after SIGTERM before SIGKILL.
    pub grace: Duration,
}

pub(crate) const CONTAINERD: Daemon = Daemon {
    name: "containerd",
    program: "containerd",
    grace: Duration::from_secs(15),
};
// dockerd stops running containers on SIGTERM (10 s each by default), so it gets longer.
pub(crate) const DOCKERD: Daemon = Daemon {
    name: "dockerd",
    program: "dockerd",
    grace: Duration::from_secs(30),
};
pub(crate) const MOTO: Daemon = Daemon {
    name: "moto",
    program: "moto_server",
    grace: Duration::from_secs(10),
};
pub(crate) const REGISTRY: Daemon = Daemon {
    name: "registry",
    program: "docker-registry",
    grace: Duration::from_secs(10),
};

/// The arguments of a live process, or `None` if it is gone or a zombie.
pub(crate) fn cmdline(pid: u32) -> Option<Vec<String>> {
    let raw = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    let args: Vec<String> = raw
        .split(|b| *b == 0)
        .filter(|a| !a.is_empty())
        .map(|a| String::from_utf8_lossy(a).into_owned())
        .collect();
    (!args.is_empty()).then_some(args)
}

/// Whether `pid`'s arguments contain `args` as a contiguous run.
pub(crate) fn has_args(pid: u32, args: &[String]) -> bool {
    cmdline(pid).is_some_and(|c| c.windows(args.len()).any(|w| w == args))
}

/// Whether `pid` runs `program`, either directly or as an interpreter's script
/// (moto_server is `python …/moto_server`).
pub(crate) fn runs_program(pid: u32, program: &str) -> bool {
    cmdline(pid).is_some_and(|args| {
        args.iter()
            .take(2)
            .any(|a| Path::new(a).file_name().is_some_and(|f| f == program))
    })
}

/// The recorded pid of `d` if that process is still alive and still `d`;
/// a stale pid file (crash, reboot, reused pid) is removed.
pub(crate) fn recorded(paths: &Paths, d: &Daemon) -> Option<u32> {
    let file = paths.pid(d.name);
    let pid = std::fs::read_to_string(&file).ok()?.trim().parse().ok();
    match pid {
        Some(pid) if runs_program(pid, d.program) => Some(pid),
        _ => {
            let _ = std::fs::remove_file(&file);
            None
        }
    }
}

/// Starts `program args` in its own session (via util-linux `setsid`, which
/// execs in place so the child's pid is the daemon's), with stdin from
/// /dev/null and output appended to `target/local-stack/<name>.log`, so it
/// outlives xtask and ignores the terminal's Ctrl-C. Records the pid.
pub(crate) fn spawn(
    paths: &Paths,
    d: &Daemon,
    program: &Path,
    args: &[String],
    envs: &[(&str, &str)],
) -> anyhow::Result<Child> {
    let log_path = paths.log(d.name);
    let mut log = OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log_path)
        .with_context(|| format!("opening {}", log_path.display()))?;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_secs();
    writeln!(
        log,
        "=== xtask local up: starting {} {args:?} (unix time {now}) ===",
        program.display()
    )?;
    let child = Command::new("setsid")
        .arg(program)
        .args(args)
        .envs(envs.iter().copied())
        .current_dir(&paths.dir)
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .spawn()
        .with_context(|| format!("starting {} via setsid (util-linux)", program.display()))?;
    std::fs::write(paths.pid(d.name), format!("{}\n", child.id()))?;
    super::step(format!(
        "started {} (pid {}, log {})",
        d.name,
        child.id(),
        log_path.display()
    ));
    Ok(child)
}

/// Polls `healthy` until it holds, failing early (with the log's tail) if the
/// daemon exits, and after `timeout` otherwise.
pub(crate) fn wait_healthy(
    child: Option<&mut Child>,
    d: &Daemon,
    log: &Path,
    timeout: Duration,
    mut healthy: impl FnMut() -> bool,
) -> anyhow::Result<()> {
    let started = Instant::now();
    let mut child = child;
    loop {
        if healthy() {
            return Ok(());
        }
        // A daemon that already exited will never become healthy.
        if let Some(status) = child
            .as_deref_mut()
            .map(Child::try_wait)
            .transpose()?
            .flatten()
        {
            bail!(
                "{} exited during startup ({status}); last lines of {}:\n{}",
                d.name,
                log.display(),
                tail(log, 15)
            );
        }
        if started.elapsed() > timeout {
            bail!(
                "{} not healthy after {timeout:?}; last lines of {}:\n{}",
                d.name,
                log.display(),
                tail(log, 15)
            );
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// A loopback service this stack may start: the daemon, where it listens, and how to name
/// it in a port-conflict error.
pub(crate) struct Service<'a> {
    pub daemon: &'a Daemon,
    pub addr: SocketAddr,
    pub what: &'a str,
    pub setting: &'a str,
}

/// Starts the service unless `ours` (a pid of ours) already runs it, refusing a port that
/// something else holds; then waits until `healthy` and returns the recorded pid.
pub(crate) fn ensure_running(
    paths: &Paths,
    service: &Service<'_>,
    ours: Option<u32>,
    command: impl FnOnce() -> anyhow::Result<(PathBuf, Vec<String>)>,
    healthy: impl FnMut() -> bool,
) -> anyhow::Result<u32> {
    let d = service.daemon;
    let mut child = None;
    if ours.is_none() {
        if port_open(service.addr) {
            return Err(port_taken(service.addr, service.what, service.setting));
        }
        let (exe, args) = command()?;
        child = Some(spawn(paths, d, &exe, &args, &[])?);
    }
    wait_healthy(
        child.as_mut(),
        d,
        &paths.log(d.name),
        Duration::from_secs(30),
        healthy,
    )?;
    recorded(paths, d).with_context(|| format!("{} exited right after startup", d.name))
}

/// SIGTERM, wait up to `d.grace`, then SIGKILL; only if `pid` still runs `d.program`.
pub(crate) fn stop(pid: u32, d: &Daemon) -> anyhow::Result<()> {
    if !runs_program(pid, d.program) {
        return Ok(());
    }
    signal(libc::SIGTERM, pid)?;
    let deadline = Instant::now() + d.grace;
    while runs_program(pid, d.program) {
        if Instant::now() > deadline {
            eprintln!(
                "{} (pid {pid}) ignored SIGTERM for {:?}; sending SIGKILL",
                d.name, d.grace
            );
            signal(libc::SIGKILL, pid)?;
            let deadline = Instant::now() + Duration::from_secs(5);
            while runs_program(pid, d.program) {
                if Instant::now() > deadline {
                    bail!("{} (pid {pid}) survived SIGKILL", d.name);
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Ok(())
}

/// Sends `sig` to `pid`. A process that exited between the check and the signal is success.
fn signal(sig: libc::c_int, pid: u32) -> anyhow::Result<()> {
    // SAFETY: kill(2) has no memory-safety preconditions; `pid` was just checked to be ours.
    if unsafe { libc::kill(pid as libc::pid_t, sig) } != 0 {
        let err = std::io::Error::last_os_error();
        if err.raw_os_error() != Some(libc::ESRCH) {
            bail!("kill({pid}, {sig}): {err}");
        }
    }
    Ok(())
}

/// The last `n` lines of a log file, for error messages.
pub(crate) fn tail(path: &Path, n: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// Whether something accepts TCP connections at `addr`.
pub(crate) fn port_open(addr: SocketAddr) -> bool {
    TcpStream::connect_timeout(&addr, Duration::from_millis(300)).is_ok()
}

/// Who listens on TCP `port` (pid and command line), from /proc, so a port
/// conflict error can name the culprit.
pub(crate) fn listener(port: u16) -> Option<(u32, String)> {
    let inodes: Vec<String> = ["/proc/net/tcp", "/proc/net/tcp6"]
        .iter()
        .filter_map(|f| std::fs::read_to_string(f).ok())
        .flat_map(|t| t.lines().skip(1).map(str::to_owned).collect::<Vec<_>>())
        .filter_map(|line| {
            let cols: Vec<&str> = line.split_whitespace().collect();
            let local_port = cols.get(1)?.rsplit_once(':')?.1;
            // State 0A is LISTEN.
            (u16::from_str_radix(local_port, 16).ok()? == port && cols.get(3)? == &"0A")
                .then(|| cols.get(9).map(|s| s.to_string()))?
        })
        .collect();
    for entry in std::fs::read_dir("/proc").ok()?.flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(fds) = std::fs::read_dir(entry.path().join("fd")) else {
            continue;
        };
        for fd in fds.flatten() {
            let target = std::fs::read_link(fd.path()).unwrap_or_default();
            let target = target.to_string_lossy();
            if inodes.iter().any(|i| target == format!("socket:[{i}]")) {
                return Some((pid, cmdline(pid).unwrap_or_default().join(" ")));
            }
        }
    }
    None
}

/// An error for a port that something other than our daemon holds.
pub(crate) fn port_taken(addr: SocketAddr, what: &str, setting: &str) -> anyhow::Error {
    let who = match listener(addr.port()) {
        Some((pid, cmd)) => format!("pid {pid} ({cmd})"),
        None => "another process".to_string(),
    };
    anyhow::anyhow!(
        "{addr} is already in use by {who}, which this stack did not start, so {what} cannot \
         listen there. Stop that process, or choose another address with `{setting}` in \
         infrastructure/environments.toml"
    )
}

/// Finds `program` on PATH.
pub(crate) fn which(program: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(program))
        .find(|p| {
            std::fs::metadata(p).is_ok_and(|m| {
                use std::os::unix::fs::PermissionsExt;
                m.is_file() && m.permissions().mode() & 0o111 != 0
            })
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identifies_programs_by_cmdline() {
        let me = std::process::id();
        let exe = std::env::current_exe().unwrap();
        let name = exe.file_name().unwrap().to_str().unwrap();
        assert!(runs_program(me, name));
        assert!(!runs_program(me, "dockerd"));
        assert!(!runs_program(u32::MAX, name));
    }

    #[test]
    fn finds_listeners() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        let (pid, _) = listener(port).unwrap();
        assert_eq!(pid, std::process::id());
        assert!(which("sh").is_some());
        let addr = l.local_addr().unwrap();
        let msg = format!("{}", port_taken(addr, "the registry", "local.registry"));
        assert!(
            msg.contains(&format!("pid {}", std::process::id())),
            "{msg}"
        );
        assert!(msg.contains("local.registry"), "{msg}");
    }
}
