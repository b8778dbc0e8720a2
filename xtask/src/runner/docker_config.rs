//! A private Docker client configuration for one run, so the registry token that `docker
//! login` stores never outlives the run.
//!
//! `docker login` writes the ECR token (valid for 12 hours) into `config.json` of the client
//! configuration directory. Unless the user chose a credential helper (`credsStore` or
//! `credHelpers`, which keep tokens out of that file), every docker command of a run gets
//! `DOCKER_CONFIG` pointing at a fresh directory that only its owner can read. It carries the
//! user's settings without their saved logins (every key of `config.json` but `auths`), and
//! links to their CLI plugins, buildx builder instances and contexts, so `--builder NAME` and
//! `docker context use` keep working. The directory is removed when the run ends, also after a
//! signal (the runner stops cleanly, see `signals`); one left by a killed run is removed by the
//! next run.

use std::fs::{self, DirBuilder, OpenOptions};
use std::io::Write as _;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde_json::Value;

/// Directory names under which runs keep their configuration: `xtask-docker-<pid>-<nonce>`.
const PREFIX: &str = "xtask-docker-";

/// What the user's own configuration links into the run's, when present.
const SHARED: [&str; 3] = ["cli-plugins", "buildx", "contexts"];

/// The run's private `DOCKER_CONFIG`; the directory is removed on drop.
#[derive(Debug)]
pub struct DockerConfig {
    dir: PathBuf,
}

/// Where the user's client configuration lives: `$DOCKER_CONFIG`, else `~/.docker`.
pub fn user_dir() -> Option<PathBuf> {
    match std::env::var_os("DOCKER_CONFIG") {
        Some(dir) if !dir.is_empty() => Some(PathBuf::from(dir)),
        _ => std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".docker")),
    }
}

/// Where run directories are made: the user's runtime directory (private, in memory) when
/// there is one, else the temporary directory.
fn base_dir() -> PathBuf {
    match std::env::var_os("XDG_RUNTIME_DIR") {
        Some(dir) if !dir.is_empty() && Path::new(&dir).is_dir() => PathBuf::from(dir),
        _ => std::env::temp_dir(),
    }
}

/// Whether `config.json` sends credentials to a helper instead of storing them itself.
pub fn uses_credential_helper(config: &Value) -> bool {
    let set = |key: &str| match config.get(key) {
        Some(Value::String(s)) => !s.is_empty(),
        Some(Value::Object(m)) => !m.is_empty(),
        _ => false,
    };
    set("credsStore") || set("credHelpers")
}

/// The user's settings without their saved logins.
fn without_auths(config: &Value) -> Value {
    match config {
        Value::Object(map) => Value::Object(
            map.iter()
                .filter(|(k, _)| k.as_str() != "auths")
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
        ),
        _ => Value::Object(Default::default()),
    }
}

impl DockerConfig {
    /// A private configuration for this run, or `None` when the user's configuration hands
    /// credentials to a helper (the token then goes where the user chose).
    pub fn for_run() -> Result<Option<DockerConfig>> {
        let user = user_dir();
        let config = match user.as_ref().map(|d| d.join("config.json")) {
            Some(file) if file.exists() => {
                let text = fs::read_to_string(&file)
                    .with_context(|| format!("reading {}", file.display()))?;
                serde_json::from_str(&text).with_context(|| {
                    format!(
                        "{} is not JSON: fix or remove it (docker itself would refuse it)",
                        file.display()
                    )
                })?
            }
            _ => Value::Object(Default::default()),
        };
        if uses_credential_helper(&config) {
            return Ok(None);
        }
        DockerConfig::create(&base_dir(), user.as_deref(), &config).map(Some)
    }

    fn create(base: &Path, user: Option<&Path>, config: &Value) -> Result<DockerConfig> {
        sweep(base);
        let nonce = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or_default();
        let dir = base.join(format!("{PREFIX}{}-{nonce}", std::process::id()));
        // create, not create_all: a directory someone else made first is never reused.
        DirBuilder::new()
            .mode(0o700)
            .create(&dir)
            .with_context(|| {
                format!("creating the run's docker configuration {}", dir.display())
            })?;
        let this = DockerConfig { dir };
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(this.dir.join("config.json"))?;
        file.write_all(serde_json::to_string_pretty(&without_auths(config))?.as_bytes())?;
        if let Some(user) = user {
            for name in SHARED {
                let target = user.join(name);
                if target.exists() {
                    std::os::unix::fs::symlink(&target, this.dir.join(name)).with_context(
                        || format!("linking {} into the run's configuration", target.display()),
                    )?;
                }
            }
        }
        Ok(this)
    }

    pub fn path(&self) -> &Path {
        &self.dir
    }
}

impl Drop for DockerConfig {
    fn drop(&mut self) {
        // Links are removed, never followed: the user's plugins and builders stay.
        let _ = fs::remove_dir_all(&self.dir);
    }
}

/// Removes run directories whose process is gone (a run killed with SIGKILL).
fn sweep(base: &Path) {
    let Ok(entries) = fs::read_dir(base) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(rest) = name.to_str().and_then(|n| n.strip_prefix(PREFIX)) else {
            continue;
        };
        let Some(pid) = rest.split('-').next().and_then(|p| p.parse::<u32>().ok()) else {
            continue;
        };
        if pid != std::process::id() && !Path::new(&format!("/proc/{pid}")).exists() {
            let _ = fs::remove_dir_all(entry.path());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn scratch(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("xtask-dc-test-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn a_credential_helper_is_respected() {
        let helper = serde_json::json!({"credsStore": "desktop"});
        assert!(uses_credential_helper(&helper));
        let helpers =
            serde_json::json!({"credHelpers": {"1.dkr.ecr.eu-west-1.amazonaws.com": "ecr-login"}});
        assert!(uses_credential_helper(&helpers));
        let plain = serde_json::json!({"auths": {"x": {"auth": "eA=="}}, "credsStore": ""});
        assert!(!uses_credential_helper(&plain));
    }

    #[test]
    fn the_run_config_is_private_keeps_settings_drops_logins_and_goes_away() {
        let base = scratch("base");
        let user = scratch("user");
        fs::create_dir_all(user.join("cli-plugins")).unwrap();
        fs::create_dir_all(user.join("buildx/instances")).unwrap();
        let config = serde_json::json!({
            "auths": {"127.0.0.1:5000": {"auth": "QVdTOnNlY3JldA=="}},
            "currentContext": "remote",
            "proxies": {"default": {"httpProxy": "http://proxy:3128"}},
        });
        // A directory left by a killed run (pid 1 never runs xtask; a dead pid is swept).
        let stale = base.join(format!("{PREFIX}999999999-1"));
        fs::create_dir_all(&stale).unwrap();

        let run = DockerConfig::create(&base, Some(&user), &config).unwrap();
        let dir = run.path().to_path_buf();
        assert!(!stale.exists(), "a dead run's directory is swept");
        assert_eq!(
            fs::metadata(&dir).unwrap().permissions().mode() & 0o777,
            0o700
        );
        assert_eq!(
            fs::metadata(dir.join("config.json"))
                .unwrap()
                .permissions()
                .mode()
                & 0o777,
            0o600
        );
        let written: Value =
            serde_json::from_str(&fs::read_to_string(dir.join("config.json")).unwrap()).unwrap();
        assert_eq!(written.get("auths"), None);
        assert_eq!(written["currentContext"], "remote");
        assert_eq!(
            written["proxies"]["default"]["httpProxy"],
            "http://proxy:3128"
        );
        assert_eq!(
            fs::read_link(dir.join("buildx")).unwrap(),
            user.join("buildx")
        );
        assert!(dir.join("cli-plugins").exists());
        assert!(!dir.join("contexts").exists(), "only what the user has");

        drop(run);
        assert!(!dir.exists());
        assert!(
            user.join("buildx/instances").is_dir(),
            "the user's builders survive the cleanup"
        );
        fs::remove_dir_all(&base).unwrap();
        fs::remove_dir_all(&user).unwrap();
    }
}
