//! Facts read from the world before acting: tools, git, the builder. Reading changes nothing
//! that matters: hashing the working tree writes a throw-away git index under `target/` and
//! the loose objects `git add` stores, which git's own garbage collection removes.

use std::fmt::Write as _;

use anyhow::{Context, Result, bail};
use xshell::{Shell, cmd};

use crate::paths;
use crate::settings::{Environment, Platform};

/// The tools a command needs, each with how to get it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tool {
    Git,
    Docker,
    Buildx,
    Terraform,
}

impl Tool {
    pub fn name(self) -> &'static str {
        match self {
            Tool::Git => "git",
            Tool::Docker => "docker",
            Tool::Buildx => "docker buildx",
            Tool::Terraform => "terraform",
        }
    }
    fn how_to_get(self) -> &'static str {
        match self {
            Tool::Git => "install git (Debian: apt-get install git)",
            Tool::Docker => {
                "install the Docker CLI and engine (https://docs.docker.com/engine/install/; \
                 on this project's Debian machines `cargo xtask local up` installs it)"
            }
            Tool::Buildx => {
                "install the buildx plugin (Debian trixie: apt-get install docker-buildx; \
                 elsewhere https://github.com/docker/buildx#installing)"
            }
            Tool::Terraform => {
                "install Terraform >= 1.10 (https://developer.hashicorp.com/terraform/install)"
            }
        }
    }
}

/// Probes every tool and reports all the missing ones in one error.
pub fn preflight(sh: &Shell, tools: &[Tool]) -> Result<Vec<(Tool, String)>> {
    let mut found = Vec::new();
    let mut missing = Vec::new();
    // All probes start at once and are read in order: the preflight costs the slowest
    // probe, not their sum (it runs before every command).
    let probes: Vec<(Tool, std::io::Result<std::process::Child>)> = tools
        .iter()
        .map(|&tool| {
            let cmd = match tool {
                Tool::Git => cmd!(sh, "git --version"),
                Tool::Docker => {
                    let format = "{{.Client.Version}}";
                    cmd!(sh, "docker version --format {format}")
                }
                Tool::Buildx => cmd!(sh, "docker buildx version"),
                Tool::Terraform => cmd!(sh, "terraform version"),
            };
            let mut command: std::process::Command = cmd.into();
            command
                .stdin(std::process::Stdio::null())
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::null());
            (tool, command.spawn())
        })
        .collect();
    for (tool, child) in probes {
        let out = child
            .and_then(|c| c.wait_with_output())
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
            .ok_or(());
        match out {
            Ok(text) => {
                let first = text.lines().next().unwrap_or_default();
                let version = first
                    .split_whitespace()
                    .find(|w| {
                        w.trim_start_matches('v')
                            .chars()
                            .next()
                            .is_some_and(|c| c.is_ascii_digit())
                    })
                    .unwrap_or(first)
                    .trim_start_matches('v');
                found.push((tool, version.to_string()));
            }
            Err(_) => missing.push(tool),
        }
    }
    if !missing.is_empty() {
        let mut msg = String::from("missing tools, nothing was run:");
        for tool in missing {
            let _ = write!(msg, "\n  - {}: {}", tool.name(), tool.how_to_get());
        }
        bail!(msg);
    }
    Ok(found)
}

/// Refuses a Terraform older (or newer) than the configuration's `required_version`, before
/// anything runs: `init` would refuse it too, but only after the identity check and the
/// registry login, and with a message that does not say what to install.
pub fn check_terraform_version(found: &[(Tool, String)], tf_dir: &std::path::Path) -> Result<()> {
    let Some((_, text)) = found.iter().find(|(t, _)| *t == Tool::Terraform) else {
        return Ok(());
    };
    let file = tf_dir.join("versions.tf");
    let Ok(tf) = std::fs::read_to_string(paths::root().join(&file)) else {
        return Ok(());
    };
    let Some((required, line)) = crate::tools::version::required_version(&tf) else {
        return Ok(());
    };
    let requirement = crate::tools::version::Requirement::parse(&required)
        .with_context(|| format!("{}:{line}: required_version", file.display()))?;
    let version = crate::tools::version::Version::parse(text).with_context(|| {
        format!("`terraform version` printed {text:?}, which is not a version number")
    })?;
    if !requirement.allows(&version) {
        bail!(
            "terraform {version} is on PATH, but {}:{line} requires required_version = \
             \"{requirement}\": nothing was run. Install a matching Terraform \
             (https://developer.hashicorp.com/terraform/install) or put it first on PATH",
            file.display()
        );
    }
    Ok(())
}

/// What git says about the build context.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Git {
    pub head: String,
    pub short: String,
    /// Committer time of HEAD, used as the image's `created` label so rebuilds are stable.
    pub commit_time: String,
    /// Hash of everything that decides the image: context tree, Dockerfile, platform, args.
    pub content: String,
    /// The build context or the Dockerfile differs from HEAD (including untracked files).
    pub dirty: bool,
    pub source_url: Option<String>,
}

impl Git {
    /// `src-<12 hex>` for a clean tree, `dirty-<12 hex>` otherwise.
    pub fn content_tag(&self) -> String {
        let prefix = if self.dirty { "dirty" } else { "src" };
        format!("{prefix}-{}", &self.content[..12])
    }

    /// HEAD's commit time in seconds since 1970: the build's `SOURCE_DATE_EPOCH`, so every
    /// build of one commit stamps the same times into the image.
    pub fn source_date_epoch(&self) -> Option<i64> {
        source_date_epoch(&self.commit_time)
    }
}

/// Seconds since 1970 of an RFC 3339 time with an offset (git's `%cI`, the `created` label).
pub fn source_date_epoch(rfc3339: &str) -> Option<i64> {
    use aws_smithy_types::date_time::{DateTime, Format};
    DateTime::from_str(rfc3339.trim(), Format::DateTimeWithOffset)
        .ok()
        .map(|t| t.secs())
}

pub fn git(sh: &Shell, env: &Environment) -> Result<Git> {
    let head = cmd!(sh, "git rev-parse HEAD")
        .quiet()
        .read()
        .context("git rev-parse HEAD: the repository needs at least one commit")?;
    let short = cmd!(sh, "git rev-parse --short=12 HEAD").quiet().read()?;
    let commit_time = cmd!(sh, "git log -1 --format=%cI HEAD").quiet().read()?;

    // Hash the working tree as git would commit it, through a private index, so untracked
    // files count and ignored ones do not, and the real index is left alone.
    // One index per process: two runs hashing at once must not share it.
    let index = paths::xtask_dir().join(format!("content-{}.index", std::process::id()));
    sh.create_dir(paths::xtask_dir())?;
    let _ = sh.remove_path(&index);
    let context = &env.build_context;
    let dockerfile = &env.dockerfile;
    let tree = {
        let _guard = sh.push_env("GIT_INDEX_FILE", &index);
        cmd!(sh, "git read-tree HEAD").quiet().run()?;
        cmd!(sh, "git add --all -- {context} {dockerfile}")
            .quiet()
            .run()
            .with_context(|| {
                format!(
                    "git add: build context `{context}` or Dockerfile `{dockerfile}` is missing"
                )
            })?;
        cmd!(sh, "git write-tree").quiet().read()?
    };
    let _ = sh.remove_path(&index);
    let object = |root: &str, path: &str| -> Result<String> {
        cmd!(sh, "git rev-parse {root}:{path}")
            .quiet()
            .ignore_stderr()
            .read()
            .with_context(|| format!("`{path}` is not in the working tree"))
    };
    let context_tree = object(&tree, context)?;
    let dockerfile_blob = object(&tree, dockerfile)?;
    let committed = |path: &str| object("HEAD", path).ok();
    let dirty = committed(context).as_deref() != Some(context_tree.as_str())
        || committed(dockerfile).as_deref() != Some(dockerfile_blob.as_str());

    let mut key = format!(
        "context {context} {context_tree}\ndockerfile {dockerfile} {dockerfile_blob}\nplatform {}\n",
        env.platform
    );
    for (k, v) in &env.build_args {
        let _ = writeln!(key, "build-arg {k}={v}");
    }
    let content = cmd!(sh, "git hash-object --stdin")
        .stdin(key)
        .quiet()
        .read()?;

    let source_url = match (
        std::env::var("GITHUB_SERVER_URL"),
        std::env::var("GITHUB_REPOSITORY"),
    ) {
        (Ok(server), Ok(repo)) if !repo.is_empty() => Some(format!("{server}/{repo}")),
        _ => cmd!(sh, "git remote get-url origin")
            .quiet()
            .ignore_stderr()
            .read()
            .ok()
            .map(|url| strip_userinfo(&url)),
    };
    Ok(Git {
        head,
        short,
        commit_time,
        content,
        dirty,
        source_url,
    })
}

/// Removes `user:password@` from a URL so a token in a remote never reaches a label.
fn strip_userinfo(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    let authority = &rest[..rest.find('/').unwrap_or(rest.len())];
    match authority.rfind('@') {
        Some(at) => format!("{scheme}://{}", &rest[at + 1..]),
        None => url.to_string(),
    }
}

/// What the active buildx builder can do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Builder {
    /// `--cache-to type=registry` works: any driver but `docker`, or `docker` on the
    /// containerd image store.
    pub exports_cache: bool,
    pub driver: String,
}

pub fn builder(sh: &Shell, name: Option<&str>) -> Result<Builder> {
    let builder_args: Vec<&str> = name.map(|n| vec!["--builder", n]).unwrap_or_default();
    let inspect = cmd!(sh, "docker buildx inspect {builder_args...}")
        .quiet()
        .ignore_stderr()
        .read()
        .context("docker buildx inspect: is the Docker engine running? (`docker info`)")?;
    let driver = inspect
        .lines()
        .find_map(|l| l.strip_prefix("Driver:"))
        .map(|d| d.trim().to_string())
        .unwrap_or_default();
    let exports_cache = if driver == "docker" {
        let format = "{{json .DriverStatus}}";
        let status = cmd!(sh, "docker info --format {format}")
            .quiet()
            .ignore_stderr()
            .read()
            .unwrap_or_default();
        status.contains("io.containerd.snapshotter")
    } else {
        true
    };
    Ok(Builder {
        exports_cache,
        driver,
    })
}

/// Is this run inside CI (any CI sets `CI=true`), and inside GitHub Actions?
pub fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true" || v == "1")
}

pub fn in_github_actions() -> bool {
    std::env::var("GITHUB_ACTIONS").is_ok_and(|v| v == "true")
}

/// `YYYYMMDDTHHMMSSZ` (UTC), for `deployed-` tags, which allow no `:`.
pub fn utc_stamp(time: std::time::SystemTime) -> String {
    use aws_smithy_types::date_time::{DateTime, Format};
    let secs = time
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    // RFC 3339 without fractions, e.g. 2026-11-27T12:04:05Z, then without its separators.
    DateTime::from_secs(secs as i64)
        .fmt(Format::DateTime)
        .map(|s| s.replace(['-', ':'], ""))
        .unwrap_or_else(|_| "19700101T000000Z".to_string())
}

/// Everything a plan is decided from, besides the settings.
#[derive(Debug, Clone)]
pub struct Facts {
    pub tools: Vec<(Tool, String)>,
    pub git: Git,
    pub builder: Builder,
    /// The image's platform is this machine's, so the smoke test can run it.
    pub host_runs: bool,
}

/// Whether the image can run on this machine for the smoke test.
pub fn host_runs(platform: Platform) -> bool {
    Platform::host() == Some(platform)
}

#[cfg(test)]
mod tests {
    #[test]
    fn utc_stamps() {
        use std::time::{Duration, SystemTime};
        let t = SystemTime::UNIX_EPOCH + Duration::from_secs(1_795_781_045);
        assert_eq!(super::utc_stamp(t), "20261127T120405Z");
        assert_eq!(super::utc_stamp(SystemTime::UNIX_EPOCH), "19700101T000000Z");
    }

    use super::*;

    #[test]
    fn userinfo_is_stripped() {
        assert_eq!(
            strip_userinfo("https://x:tok@github.com/o/r.git"),
            "https://github.com/o/r.git"
        );
        assert_eq!(
            strip_userinfo("https://github.com/o/r.git"),
            "https://github.com/o/r.git"
        );
        assert_eq!(
            strip_userinfo("git@github.com:o/r.git"),
            "git@github.com:o/r.git"
        );
    }

    #[test]
    fn content_tag_marks_dirty_trees() {
        let mut git = Git {
            head: "a".repeat(40),
            short: "a".repeat(12),
            commit_time: String::new(),
            content: "0123456789abcdef".into(),
            dirty: false,
            source_url: None,
        };
        assert_eq!(git.content_tag(), "src-0123456789ab");
        git.dirty = true;
        assert_eq!(git.content_tag(), "dirty-0123456789ab");
    }
}
