//! What earlier runs established, so a run with nothing new to do does not do it again: the
//! digests that passed the smoke test, and the backend a Terraform data directory was
//! initialised for. Both live under `target/xtask/<env>/`; deleting them only costs time.

use std::fmt::Write as _;
use std::path::PathBuf;

use anyhow::Result;

use super::{Effect, Reply, Runner};
use crate::cmdline::CmdLine;
use crate::paths;
use crate::plan::{Action, Step, When};
use crate::report::Outcome;

/// FNV-1a, 64 bits: stable across builds and platforms, which std's hasher does not promise.
fn fnv(bytes: &[u8], mut hash: u64) -> u64 {
    for b in bytes {
        hash ^= u64::from(*b);
        hash = hash.wrapping_mul(0x100_0000_01b3);
    }
    hash
}

const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;

/// A fingerprint of the given parts, each length-prefixed so that boundaries count.
fn fingerprint<'a>(parts: impl IntoIterator<Item = &'a [u8]>) -> String {
    let mut hash = FNV_OFFSET;
    for part in parts {
        hash = fnv(&(part.len() as u64).to_le_bytes(), hash);
        hash = fnv(part, hash);
    }
    format!("{hash:016x}")
}

/// Digests that passed the smoke test, each with the fingerprint of the test that passed, so
/// a changed smoke test runs again.
pub struct SmokeRecord {
    file: PathBuf,
}

impl SmokeRecord {
    pub fn for_env(env: &str) -> SmokeRecord {
        SmokeRecord {
            file: paths::env_dir(env).join("smoke-passed"),
        }
    }

    fn line(digest: &str, test: &[String]) -> String {
        let test = fingerprint(test.iter().map(|l| l.as_bytes()));
        format!("{digest} {test}")
    }

    pub fn passed(&self, digest: &str, test: &[String]) -> bool {
        let line = SmokeRecord::line(digest, test);
        std::fs::read_to_string(&self.file).is_ok_and(|t| t.lines().any(|l| l == line))
    }

    pub fn record(&self, digest: &str, test: &[String]) {
        if self.passed(digest, test) {
            return;
        }
        let mut text = std::fs::read_to_string(&self.file).unwrap_or_default();
        let _ = writeln!(text, "{}", SmokeRecord::line(digest, test));
        if let Some(parent) = self.file.parent() {
            let _ = std::fs::create_dir_all(parent);
        }
        let _ = std::fs::write(&self.file, text);
    }
}

/// The key of one `terraform init`: its command line and environment (backend settings, data
/// directory, CLI config path), the CLI config's contents, the configuration's `.tf` files
/// and the provider lock file. Equal keys and an initialised data directory mean `init`
/// would change nothing.
pub struct InitRecord {
    key: String,
    /// `TF_DATA_DIR`; the key is kept inside it, so it goes when the directory goes.
    data_dir: Option<PathBuf>,
}

impl InitRecord {
    /// The configuration is the command's `-chdir` directory, the data directory its
    /// `TF_DATA_DIR`; without one, `init` always runs.
    pub fn new(cmd: &CmdLine) -> InitRecord {
        let tf_dir = cmd
            .args
            .iter()
            .find_map(|a| a.to_string().strip_prefix("-chdir=").map(PathBuf::from))
            .unwrap_or_default();
        let mut parts: Vec<Vec<u8>> = vec![cmd.to_string().into_bytes()];
        for (k, v) in &cmd.env {
            parts.push(format!("{k}={v}").into_bytes());
        }
        let var = |name: &str| {
            cmd.env
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| PathBuf::from(v))
        };
        if let Some(config) = var("TF_CLI_CONFIG_FILE") {
            parts.push(std::fs::read(config).unwrap_or_default());
        }
        let dir = paths::root().join(&tf_dir);
        let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| e.path())
            .filter(|p| {
                p.extension().is_some_and(|e| e == "tf")
                    || p.file_name().is_some_and(|n| n == ".terraform.lock.hcl")
            })
            .collect();
        files.sort();
        for file in files {
            parts.push(file.display().to_string().into_bytes());
            parts.push(std::fs::read(&file).unwrap_or_default());
        }
        InitRecord {
            key: fingerprint(parts.iter().map(Vec::as_slice)),
            data_dir: var("TF_DATA_DIR"),
        }
    }

    fn file(&self) -> Option<PathBuf> {
        self.data_dir.as_ref().map(|d| d.join("xtask-init.key"))
    }

    /// The data directory holds a backend and providers, initialised with this very key.
    pub fn current(&self) -> bool {
        let initialised = self
            .data_dir
            .as_ref()
            .is_some_and(|d| d.join("terraform.tfstate").is_file() && d.join("providers").is_dir());
        initialised
            && self
                .file()
                .and_then(|f| std::fs::read_to_string(f).ok())
                .is_some_and(|k| k.trim() == self.key)
    }

    pub fn record(&self) {
        if let Some(file) = self.file() {
            let _ = std::fs::write(file, format!("{}\n", self.key));
        }
    }

    pub fn forget(&self) {
        if let Some(file) = self.file() {
            let _ = std::fs::remove_file(file);
        }
    }

    pub fn key(&self) -> &str {
        &self.key
    }
}

/// A fact an earlier run established, recalled or recorded through the world.
#[derive(Debug, Clone, PartialEq)]
pub enum Memo {
    /// This digest passed this smoke test (its described lines) in this environment.
    SmokePassed {
        env: String,
        digest: String,
        test: Vec<String>,
    },
    /// `terraform init` with this command line already initialised its data directory.
    Initialised(CmdLine),
}

impl Memo {
    /// Whether the fact holds, and its key for the log.
    pub fn recall(&self) -> (bool, String) {
        match self {
            Memo::SmokePassed { env, digest, test } => (
                SmokeRecord::for_env(env).passed(digest, test),
                String::new(),
            ),
            Memo::Initialised(cmd) => {
                let record = InitRecord::new(cmd);
                (record.current(), record.key().to_string())
            }
        }
    }
    /// Records the outcome of the step it is about (a failed init forgets its key).
    pub fn record(&self, ok: bool) {
        match (self, ok) {
            (Memo::SmokePassed { env, digest, test }, true) => {
                SmokeRecord::for_env(env).record(digest, test)
            }
            (Memo::Initialised(cmd), true) => InitRecord::new(cmd).record(),
            (Memo::Initialised(cmd), false) => InitRecord::new(cmd).forget(),
            (Memo::SmokePassed { .. }, false) => {}
        }
    }
}

impl Runner<'_> {
    fn memo(&self, step: &Step) -> Option<Memo> {
        match (&step.action, &step.when) {
            // The container's name is the run's own; the test is the rest of its lines.
            (
                Action::Smoke {
                    function,
                    container,
                    ..
                },
                _,
            ) => Some(Memo::SmokePassed {
                env: self.env.name.clone(),
                digest: self.state.digest(function)?.to_string(),
                test: step
                    .describe()
                    .iter()
                    .map(|l| l.replace(container, "<container>"))
                    .collect(),
            }),
            (Action::Run { cmd, .. }, When::InitStale) => Some(Memo::Initialised(cmd.clone())),
            _ => None,
        }
    }

    /// Why `step` need not run again: an earlier run did it for the same input.
    pub(super) fn done_before(&mut self, step: &Step) -> Option<String> {
        let memo = self.memo(step)?;
        let Ok(Reply::Recalled(true, key)) = self.world.perform(Effect::Recall(memo.clone()))
        else {
            return None;
        };
        Some(match memo {
            Memo::SmokePassed { digest, env, .. } => format!(
                "{digest} passed this smoke test in an earlier run (recorded in \
                 target/xtask/{env}/smoke-passed)"
            ),
            Memo::Initialised(_) => format!(
                "already initialised for this backend, configuration and lock file (key {key})"
            ),
        })
    }

    /// Records what a finished step established for later runs.
    pub(super) fn remember(&mut self, step: &Step, outcome: &Result<Outcome>) {
        let ok = match outcome {
            Ok(Outcome::Done) => true,
            Ok(Outcome::Skipped(_)) => return,
            Ok(Outcome::Failed(_)) | Err(_) => false,
        };
        if let Some(memo) = self.memo(step) {
            let _ = self.world.perform(Effect::Remember(memo, ok));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprints_see_boundaries_and_content() {
        let a = fingerprint([b"ab".as_slice(), b"c"]);
        assert_eq!(a, fingerprint([b"ab".as_slice(), b"c"]));
        assert_ne!(a, fingerprint([b"a".as_slice(), b"bc"]));
        assert_ne!(a, fingerprint([b"ab".as_slice(), b"d"]));
    }

    #[test]
    fn init_keys_change_with_the_backend_and_the_configuration() {
        let scratch = paths::root().join(format!("target/xtask-memo-test-{}", std::process::id()));
        let tf = scratch.join("tf");
        let data = scratch.join("data");
        std::fs::create_dir_all(&tf).unwrap();
        std::fs::create_dir_all(data.join("providers")).unwrap();
        std::fs::write(data.join("terraform.tfstate"), "{}").unwrap();
        std::fs::write(tf.join("versions.tf"), "terraform {}\n").unwrap();
        let env = vec![("TF_DATA_DIR".to_string(), data.display().to_string())];
        let init = |bucket: &str| {
            CmdLine::new("terraform")
                .arg(format!("-chdir={}", tf.display()))
                .args(["init", &format!("-backend-config=bucket={bucket}")])
                .env(&env)
        };
        let first = InitRecord::new(&init("a"));
        assert!(!first.current(), "never initialised with this key");
        first.record();
        assert!(InitRecord::new(&init("a")).current());
        assert!(!InitRecord::new(&init("b")).current(), "another bucket");
        std::fs::write(tf.join("modules.tf"), "module \"x\" {}\n").unwrap();
        assert!(!InitRecord::new(&init("a")).current(), "a new file");
        std::fs::remove_file(tf.join("modules.tf")).unwrap();
        assert!(InitRecord::new(&init("a")).current());
        std::fs::remove_file(data.join("terraform.tfstate")).unwrap();
        assert!(!InitRecord::new(&init("a")).current(), "data dir emptied");
        first.forget();
        std::fs::remove_dir_all(&scratch).unwrap();
    }

    #[test]
    fn smoke_passes_are_per_digest_and_per_test() {
        let name = format!("memo-smoke-{}", std::process::id());
        let record = SmokeRecord::for_env(&name);
        let test = vec!["docker run x".to_string()];
        assert!(!record.passed("sha256:aa", &test));
        record.record("sha256:aa", &test);
        record.record("sha256:aa", &test);
        assert!(record.passed("sha256:aa", &test));
        assert!(!record.passed("sha256:bb", &test));
        assert!(!record.passed("sha256:aa", &["docker run y".to_string()]));
        let text = std::fs::read_to_string(&record.file).unwrap();
        assert_eq!(text.lines().count(), 1);
        std::fs::remove_dir_all(paths::env_dir(&name)).unwrap();
    }
}
