//! Debian package installation for the stack's system tools (root on Debian only).

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use xshell::{Shell, cmd};

use super::step;

/// Runs `apt-get update` at most once per xtask run and keeps apt's chatter in a log.
pub(crate) struct Apt {
    updated: bool,
    log: PathBuf,
}

/// Where the trixie source and its pin live; named after xtask so a human can tell who added them.
const TRIXIE_SOURCE: &str = "/etc/apt/sources.list.d/xtask-local-stack-trixie.sources";
const TRIXIE_PIN: &str = "/etc/apt/preferences.d/xtask-local-stack-trixie";
const POLICY_RC_D: &str = "/usr/sbin/policy-rc.d";

impl Apt {
    pub fn new(log: PathBuf) -> Self {
        Self {
            updated: false,
            log,
        }
    }

    /// Runs an apt command with its output appended to the log (the caller
    /// prints one progress line per step instead), failing with its stderr.
    fn logged(&self, cmd: xshell::Cmd<'_>) -> anyhow::Result<()> {
        use std::io::Write;
        let out = cmd.quiet().ignore_status().output()?;
        if let Ok(mut log) = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
        {
            let _ = log.write_all(&out.stdout);
            let _ = log.write_all(&out.stderr);
        }
        if !out.status.success() {
            bail!(
                "{} (full output in {})",
                String::from_utf8_lossy(&out.stderr).trim(),
                self.log.display()
            );
        }
        Ok(())
    }

    /// Installs `packages` (an entry may carry a `/release` suffix) unless all are installed.
    pub fn install(&mut self, sh: &Shell, packages: &[&str]) -> anyhow::Result<()> {
        let missing: Vec<&str> = packages
            .iter()
            .copied()
            .filter(|p| !installed(sh, p.split('/').next().unwrap_or(p)))
            .collect();
        if missing.is_empty() {
            return Ok(());
        }
        if !can_install() {
            bail!(
                "missing Debian packages {missing:?}, and xtask installs packages only as root on \
                 Debian; install them yourself (`sudo apt-get install {}`)",
                missing.join(" ")
            );
        }
        if !self.updated {
            step("apt-get update");
            self.logged(cmd!(sh, "apt-get update -q"))
                .context("apt-get update")?;
            self.updated = true;
        }
        step(format!("apt-get install {}", missing.join(" ")));
        // Package maintainer scripts would otherwise start the daemons from
        // their init scripts (a registry on 0.0.0.0:5000, a dockerd we did not
        // record); the stack starts its own. policy-rc.d exit 101 forbids that.
        let _guard = PolicyRcD::install()?;
        let list = missing.join(" ");
        self.logged(
            cmd!(
                sh,
                "apt-get install -y -q --no-install-recommends {missing...}"
            )
            .env("DEBIAN_FRONTEND", "noninteractive"),
        )
        .with_context(|| format!("apt-get install {list}"))?;
        Ok(())
    }

    /// Adds Debian trixie as an extra source, pinned at priority 100 so that
    /// nothing is upgraded from it unless asked for by name (`pkg/trixie`).
    pub fn add_trixie(&mut self) -> anyhow::Result<()> {
        let mirror = mirror_uri()?;
        let source = format!(
            "# Added by `cargo xtask local up` for docker.io, containerd and docker-buildx.\n\
             Types: deb\nURIs: {mirror}\nSuites: trixie\nComponents: main\n\
             Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg\n"
        );
        let pin = "# Added by `cargo xtask local up`: trixie only for packages named explicitly.\n\
                   Package: *\nPin: release n=trixie\nPin-Priority: 100\n";
        let changed_pin = super::write_if_changed(Path::new(TRIXIE_PIN), pin)?;
        let changed_source = super::write_if_changed(Path::new(TRIXIE_SOURCE), &source)?;
        if changed_pin || changed_source {
            step(format!(
                "added apt source {TRIXIE_SOURCE} ({mirror} trixie, pin priority 100)"
            ));
            self.updated = false;
        }
        Ok(())
    }
}

/// Creates `/usr/sbin/policy-rc.d` for the duration of an install if the system has none.
struct PolicyRcD {
    created: bool,
}

impl PolicyRcD {
    fn install() -> anyhow::Result<Self> {
        if Path::new(POLICY_RC_D).exists() {
            return Ok(Self { created: false });
        }
        use std::os::unix::fs::PermissionsExt;
        std::fs::write(
            POLICY_RC_D,
            "#!/bin/sh\n# Temporary, from cargo xtask local up.\nexit 101\n",
        )?;
        std::fs::set_permissions(POLICY_RC_D, std::fs::Permissions::from_mode(0o755))?;
        Ok(Self { created: true })
    }
}

impl Drop for PolicyRcD {
    fn drop(&mut self) {
        if self.created {
            let _ = std::fs::remove_file(POLICY_RC_D);
        }
    }
}

pub(crate) fn installed(sh: &Shell, package: &str) -> bool {
    let fmt = "${Status}";
    cmd!(sh, "dpkg-query -W -f={fmt} {package}")
        .quiet()
        .ignore_stderr()
        .read()
        .is_ok_and(|s| s.contains("install ok installed"))
}

pub(crate) fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status").is_ok_and(|s| {
        s.lines()
            .find_map(|l| l.strip_prefix("Uid:"))
            .and_then(|l| l.split_whitespace().nth(1))
            == Some("0")
    })
}

/// Root on Debian with apt: the only place xtask changes the system itself.
pub(crate) fn can_install() -> bool {
    is_root()
        && Path::new("/etc/debian_version").exists()
        && super::process::which("apt-get").is_some()
}

fn codename() -> Option<String> {
    let os = std::fs::read_to_string("/etc/os-release").ok()?;
    os.lines()
        .find_map(|l| l.strip_prefix("VERSION_CODENAME="))
        .map(|v| v.trim_matches('"').to_string())
}

/// The Debian mirror this machine already uses (the source for its own
/// release's main suite), so the stack fetches from the same, reachable host.
pub(crate) fn mirror_uri() -> anyhow::Result<String> {
    let codename = codename().context("no VERSION_CODENAME in /etc/os-release")?;
    let mut files = vec![std::path::PathBuf::from("/etc/apt/sources.list")];
    if let Ok(dir) = std::fs::read_dir("/etc/apt/sources.list.d") {
        let mut more: Vec<_> = dir.flatten().map(|e| e.path()).collect();
        more.sort();
        files.extend(more);
    }
    for f in files {
        let name = f.to_string_lossy().into_owned();
        // Our own trixie source must not be mistaken for the machine's mirror.
        if name.contains("xtask-local-stack") {
            continue;
        }
        let Ok(text) = std::fs::read_to_string(&f) else {
            continue;
        };
        let found = if name.ends_with(".sources") {
            find_in_deb822(&text, &codename)
        } else if name.ends_with(".list") {
            find_in_one_line(&text, &codename)
        } else {
            None
        };
        if let Some(uri) = found {
            return Ok(uri.trim_end_matches('/').to_string());
        }
    }
    bail!("no apt source for Debian {codename} main found in /etc/apt/sources.list{{,.d/*}}")
}

fn find_in_deb822(text: &str, codename: &str) -> Option<String> {
    text.split("\n\n").find_map(|stanza| {
        let field = |k: &str| {
            stanza
                .lines()
                .find_map(|l| l.strip_prefix(k).and_then(|r| r.strip_prefix(':')))
                .map(str::trim)
        };
        let suites = field("Suites")?;
        let enabled = field("Enabled").is_none_or(|v| v != "no");
        let types = field("Types").unwrap_or("deb");
        (enabled
            && types.split_whitespace().any(|t| t == "deb")
            && suites.split_whitespace().any(|s| s == codename)
            && field("Components")?.split_whitespace().any(|c| c == "main"))
        .then(|| field("URIs"))?
        .and_then(|u| u.split_whitespace().next())
        .map(str::to_string)
    })
}

fn find_in_one_line(text: &str, codename: &str) -> Option<String> {
    text.lines().find_map(|line| {
        let line = line.split('#').next()?.trim();
        let rest = line.strip_prefix("deb ")?.trim();
        // Skip an `[ option=value ... ]` block.
        let rest = match rest.strip_prefix('[') {
            Some(r) => r.split_once(']')?.1.trim(),
            None => rest,
        };
        let mut parts = rest.split_whitespace();
        let uri = parts.next()?;
        let suite = parts.next()?;
        (suite == codename && parts.any(|c| c == "main")).then(|| uri.to_string())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_mirror_in_both_formats() {
        let deb822 = "Types: deb\n# x\nURIs: http://mirror.example/debian\nSuites: bookworm bookworm-updates\n\
                      Components: main\n\nTypes: deb\nURIs: http://sec.example/debian-security\n\
                      Suites: bookworm-security\nComponents: main\n";
        assert_eq!(
            find_in_deb822(deb822, "bookworm").as_deref(),
            Some("http://mirror.example/debian")
        );
        assert_eq!(find_in_deb822(deb822, "trixie"), None);
        let list = "# comment\ndeb [arch=amd64 signed-by=/k.gpg] http://m.example/debian bookworm main contrib\n";
        assert_eq!(
            find_in_one_line(list, "bookworm").as_deref(),
            Some("http://m.example/debian")
        );
        assert_eq!(
            find_in_one_line("deb http://x/ bookworm-security main\n", "bookworm"),
            None
        );
    }
}
