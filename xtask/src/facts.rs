//! Facts read from the world before acting: tools, git, the builder. Reading changes nothing
//! that matters: hashing the working tree writes a throw-away git index under `target/` and
//! the loose objects `git add` stores, which git's own garbage collection removes.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::process::{Command, Stdio};

use anyhow::{Context, Result, bail};
use aws_smithy_types::date_time::{DateTime, Format};
use xshell::{Shell, cmd};

use crate::paths;
use crate::settings::{Environment, Platform};
use crate::tools::{docker, version};

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
        ["git", "docker", "docker buildx", "terraform"][self as usize]
    }

    /// The command that prints the tool's version.
    fn probe(self) -> (&'static str, &'static [&'static str]) {
        match self {
            Tool::Git => ("git", &["--version"]),
            Tool::Docker => ("docker", &["version", "--format", "{{.Client.Version}}"]),
            Tool::Buildx => ("docker", &["buildx", "version"]),
            Tool::Terraform => ("terraform", &["version"]),
        }
    }

    fn how_to_get(self) -> &'static str {
        [
            "install git (Debian: apt-get install git)",
            "install the Docker CLI and engine (https://docs.docker.com/engine/install/; on this \
             project's Debian machines `cargo xtask local up` installs it)",
            "install the buildx plugin (Debian trixie: apt-get install docker-buildx; elsewhere \
             https://github.com/docker/buildx#installing)",
            "install Terraform >= 1.10 (https://developer.hashicorp.com/terraform/install)",
        ][self as usize]
    }
}

/// Probes every tool and reports all the missing ones in one error. All probes start at
/// once and are read in order: the preflight costs the slowest probe, not their sum (it runs
/// before every command).
pub fn preflight(sh: &Shell, tools: &[Tool]) -> Result<Vec<(Tool, String)>> {
    let spawn = |tool: Tool| {
        let (program, args) = tool.probe();
        let mut command: Command = sh.cmd(program).args(args).into();
        command.stdin(Stdio::null()).stderr(Stdio::null());
        command.stdout(Stdio::piped()).spawn()
    };
    let probes: Vec<_> = tools.iter().map(|&tool| (tool, spawn(tool))).collect();
    let (mut found, mut missing) = (Vec::new(), String::new());
    for (tool, child) in probes {
        let out = child
            .and_then(|c| c.wait_with_output())
            .ok()
            .filter(|o| o.status.success());
        let Some(out) = out else {
            let _ = write!(missing, "\n  - {}: {}", tool.name(), tool.how_to_get());
            continue;
        };
        // The first word that starts with a digit (after an optional `v`) on the first line.
        let text = String::from_utf8_lossy(&out.stdout);
        let first = text.trim().lines().next().unwrap_or_default();
        let number = |w: &&str| {
            w.trim_start_matches('v')
                .starts_with(|c: char| c.is_ascii_digit())
        };
        let version = first.split_whitespace().find(number).unwrap_or(first);
        found.push((tool, version.trim_start_matches('v').to_string()));
    }
    if !missing.is_empty() {
        bail!("missing tools, nothing was run:{missing}");
    }
    Ok(found)
}

/// Refuses a Terraform older (or newer) than the configuration's `required_version`, before
/// anything runs: `init` would refuse it too, but only after the identity check and the
/// registry login, and with a message that does not say what to install.
pub fn check_terraform_version(found: &[(Tool, String)], tf_dir: &std::path::Path) -> Result<()> {
    let file = tf_dir.join("versions.tf");
    let tf = std::fs::read_to_string(paths::root().join(&file)).unwrap_or_default();
    let found = found.iter().find(|(t, _)| *t == Tool::Terraform);
    let (Some((_, text)), Some((required, line))) = (found, version::required_version(&tf)) else {
        return Ok(());
    };
    let at = format!("{}:{line}", file.display());
    let requirement =
        version::Requirement::parse(&required).context(format!("{at}: required_version"))?;
    let version = version::Version::parse(text).with_context(|| {
        format!("`terraform version` printed {text:?}, which is not a version number")
    })?;
    if !requirement.allows(&version) {
        bail!(
            "terraform {version} is on PATH, but {at} requires required_version = \
             \"{requirement}\": nothing was run. Install a matching Terraform \
             (https://developer.hashicorp.com/terraform/install) or put it first on PATH"
        );
    }
    Ok(())
}

/// What git says about the commit being built.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Git {
    pub head: String,
    pub short: String,
    /// Committer time of HEAD, used as the image's `created` label so rebuilds are stable.
    pub commit_time: String,
    pub source_url: Option<String>,
}

impl Git {
    /// HEAD's commit time in seconds since 1970: the build's `SOURCE_DATE_EPOCH`, so every
    /// build of one commit stamps the same times into the image.
    pub fn source_date_epoch(&self) -> Option<i64> {
        source_date_epoch(&self.commit_time)
    }
}

/// What decides one function's image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Content {
    /// Hash of the context tree, the Dockerfile, the platform and the build args.
    pub hash: String,
    /// The context or the Dockerfile differs from HEAD (including untracked files).
    pub dirty: bool,
}

/// Seconds since 1970 of an RFC 3339 time with an offset (git's `%cI`, the `created` label).
pub fn source_date_epoch(rfc3339: &str) -> Option<i64> {
    let time = DateTime::from_str(rfc3339.trim(), Format::DateTimeWithOffset);
    time.ok().map(|t| t.secs())
}

/// HEAD, and each function's content hash: the working tree as git would commit it, hashed
/// through a private index, so untracked files count, ignored ones do not, and the real index
/// is left alone.
pub fn git(sh: &Shell, env: &Environment) -> Result<(Git, BTreeMap<String, Content>)> {
    let head = cmd!(sh, "git rev-parse HEAD").quiet().read();
    let head = head.context("git rev-parse HEAD: the repository needs at least one commit")?;
    let short = cmd!(sh, "git rev-parse --short=12 HEAD").quiet().read()?;
    let commit_time = cmd!(sh, "git log -1 --format=%cI HEAD").quiet().read()?;
    // One index per process: two runs hashing at once must not share it.
    let index = paths::xtask_dir().join(format!("content-{}.index", std::process::id()));
    sh.create_dir(paths::xtask_dir())?;
    let _ = sh.remove_path(&index);
    let functions = env.functions.iter();
    let paths: Vec<&str> = functions
        .flat_map(|f| [&*f.build_context, &*f.dockerfile])
        .collect();
    let tree = {
        let _guard = sh.push_env("GIT_INDEX_FILE", &index);
        cmd!(sh, "git read-tree HEAD").quiet().run()?;
        let added = cmd!(sh, "git add --all -- {paths...}").quiet().run();
        added.context("git add: a function's build context or Dockerfile is missing")?;
        cmd!(sh, "git write-tree").quiet().read()?
    };
    let _ = sh.remove_path(&index);
    let object = |root: &str, path: &str| {
        let read = quiet(cmd!(sh, "git rev-parse {root}:{path}"));
        read.with_context(|| format!("`{path}` is not in the working tree"))
    };
    let mut contents = BTreeMap::new();
    for f in &env.functions {
        let (context, dockerfile) = (&f.build_context, &f.dockerfile);
        let (tree, blob) = (object(&tree, context)?, object(&tree, dockerfile)?);
        let committed = |path: &str, now: &str| object("HEAD", path).ok().as_deref() == Some(now);
        let dirty = !committed(context, &tree) || !committed(dockerfile, &blob);
        let platform = f.platform;
        let mut key = format!("context {context} {tree}\ndockerfile {dockerfile} {blob}\n");
        let _ = writeln!(key, "platform {platform}");
        for (k, v) in &f.build_args {
            let _ = writeln!(key, "build-arg {k}={v}");
        }
        let hash = cmd!(sh, "git hash-object --stdin").stdin(key);
        let hash = hash.quiet().read()?;
        contents.insert(f.name.clone(), Content { hash, dirty });
    }
    let var = |name| std::env::var(name).ok();
    let origin = || quiet(cmd!(sh, "git remote get-url origin")).ok();
    let source_url = match (var("GITHUB_SERVER_URL"), var("GITHUB_REPOSITORY")) {
        (Some(server), Some(repo)) if !repo.is_empty() => Some(format!("{server}/{repo}")),
        _ => origin().map(|url| strip_userinfo(&url)),
    };
    let git = Git {
        head,
        short,
        commit_time,
        source_url,
    };
    Ok((git, contents))
}

/// A command's output; its error output is not echoed (the caller says what failed).
fn quiet(cmd: xshell::Cmd<'_>) -> xshell::Result<String> {
    cmd.quiet().ignore_stderr().read()
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

/// What the builder can do, and how to reach it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Builder {
    /// `--cache-to type=registry` works: any driver but `docker`, or `docker` on the
    /// containerd image store.
    pub exports_cache: bool,
    pub driver: String,
    pub target: docker::Builder,
}

/// The active builder, or the `builder` setting: a buildx builder, or a docker context (whose
/// default builder buildx reaches only through `docker --context`). The cache-export check
/// asks the engine the build runs on.
pub fn builder(sh: &Shell, name: Option<&str>) -> Result<Builder> {
    let format = "{{.Name}}";
    let contexts = quiet(cmd!(sh, "docker context ls --format {format}")).unwrap_or_default();
    let is_context = |n: &str| contexts.lines().any(|c| c.trim() == n);
    let target = match name {
        None => docker::Builder::Active,
        Some(n) if is_context(n) => docker::Builder::Context(n.to_string()),
        Some(n) => docker::Builder::Named(n.to_string()),
    };
    let (context, builder): (Vec<&str>, Vec<&str>) = match &target {
        docker::Builder::Active => (vec![], vec![]),
        docker::Builder::Named(n) => (vec![], vec!["--builder", n]),
        docker::Builder::Context(c) => (vec!["--context", c], vec![]),
    };
    let global = context.clone();
    let inspect = quiet(cmd!(sh, "docker {global...} buildx inspect {builder...}"));
    let inspect = inspect.with_context(|| match name {
        Some(n) => format!(
            "docker buildx inspect: the `builder` setting names `{n}`, which is neither a \
             buildx builder (`docker buildx ls`) nor a docker context (`docker context ls`), \
             or its engine does not answer"
        ),
        None => "docker buildx inspect: is the Docker engine running? (`docker info`)".into(),
    })?;
    let driver = inspect.lines().find_map(|l| l.strip_prefix("Driver:"));
    let driver = driver.unwrap_or_default().trim().to_string();
    let format = "{{json .DriverStatus}}";
    let status = || quiet(cmd!(sh, "docker {context...} info --format {format}"));
    let containerd = || {
        status()
            .unwrap_or_default()
            .contains("io.containerd.snapshotter")
    };
    let exports_cache = driver != "docker" || containerd();
    Ok(Builder {
        exports_cache,
        driver,
        target,
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
    let secs = time
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    // RFC 3339 without fractions, e.g. 2026-11-27T12:04:05Z, then without its separators.
    let text = DateTime::from_secs(secs as i64).fmt(Format::DateTime);
    text.map_or_else(|_| "19700101T000000Z".into(), |s| s.replace(['-', ':'], ""))
}

/// Everything a plan is decided from, besides the settings.
#[derive(Debug, Clone)]
pub struct Facts {
    pub tools: Vec<(Tool, String)>,
    pub git: Git,
    /// Each function's content, by name.
    pub contents: BTreeMap<String, Content>,
    pub builder: Builder,
    /// The platform this machine runs, for the smoke tests.
    pub host: Option<Platform>,
    /// This run's id (the process id): files one run owns, such as its saved plan, are named
    /// with it, so concurrent runs of one environment never share them.
    pub run: String,
    /// The run's UTC time, `YYYYMMDDTHHMMSSZ`, for its `deployed-` tags.
    pub now: String,
    /// The local stack's offline Terraform CLI config.
    pub tf_cli_config: Option<std::path::PathBuf>,
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
    fn every_missing_tool_is_named_in_one_error() {
        let sh = Shell::new().unwrap();
        sh.set_var("PATH", "/nonexistent");
        let e = preflight(&sh, &[Tool::Git, Tool::Buildx, Tool::Terraform]).unwrap_err();
        let e = e.to_string();
        assert!(
            e.starts_with("missing tools, nothing was run:\n  - git: install git"),
            "{e}"
        );
        assert!(
            e.contains("\n  - docker buildx: install the buildx plugin"),
            "{e}"
        );
        assert!(
            e.contains("\n  - terraform: install Terraform >= 1.10"),
            "{e}"
        );
    }

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
}
