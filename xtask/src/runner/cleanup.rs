//! What a run leaves behind, removed however the run ends: the saved Terraform plan (a file
//! guard) and containers the run started (commands run at the end, even after a signal).

use std::path::{Path, PathBuf};

use xshell::Shell;

use super::exec;
use crate::cmdline::CmdLine;

/// Files that exist only for one run. Their names may hold the run's id (`placeholder`):
/// then files of earlier runs whose process is gone (killed before they could clean up) are
/// removed first, so nothing can apply them, and files of runs still going are left to them.
/// The run's own files are removed when the guard drops.
pub struct Files {
    paths: Vec<PathBuf>,
}

impl Files {
    /// Returns the guard and the leftovers it removed.
    pub fn new(patterns: &[String], placeholder: &str) -> (Files, Vec<PathBuf>) {
        let run = std::process::id().to_string();
        let mut leftovers = Vec::new();
        let mut paths = Vec::new();
        for pattern in patterns {
            let path = PathBuf::from(pattern.replace(placeholder, &run));
            if let Some(parent) = path.parent() {
                let _ = std::fs::create_dir_all(parent);
            }
            if std::fs::remove_file(&path).is_ok() {
                leftovers.push(path.clone());
            }
            if let Some((prefix, suffix)) = pattern.split_once(placeholder) {
                leftovers.extend(dead_runs(prefix, suffix));
            }
            paths.push(path);
        }
        (Files { paths }, leftovers)
    }
}

/// Removes `<prefix><pid><suffix>` files whose process no longer exists.
fn dead_runs(prefix: &str, suffix: &str) -> Vec<PathBuf> {
    let (dir, name) = prefix.rsplit_once('/').unwrap_or((".", prefix));
    let mut removed = Vec::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let file = entry.file_name();
        let Some(id) = file
            .to_str()
            .and_then(|f| f.strip_prefix(name))
            .and_then(|f| f.strip_suffix(suffix))
        else {
            continue;
        };
        let alive = Path::new("/proc").join(id).exists();
        if !id.is_empty() && id.bytes().all(|b| b.is_ascii_digit()) && !alive {
            let path = entry.path();
            if std::fs::remove_file(&path).is_ok() {
                removed.push(path);
            }
        }
    }
    removed
}

impl Drop for Files {
    fn drop(&mut self) {
        for path in &self.paths {
            let _ = std::fs::remove_file(path);
        }
    }
}

/// Commands that undo what a step started (`docker rm --force <id>`), run when the run ends.
#[derive(Debug, Default)]
pub struct Deferred {
    commands: Vec<CmdLine>,
}

impl Deferred {
    pub fn push(&mut self, cmd: CmdLine) {
        self.commands.push(cmd);
    }

    /// Runs and forgets every command, newest first; returns the ones that failed.
    pub fn run(&mut self, sh: &Shell) -> Vec<String> {
        let mut failed = Vec::new();
        while let Some(cmd) = self.commands.pop() {
            match exec::run_cleanup(sh, &cmd) {
                Ok(out) if out.code == 0 => {}
                Ok(out) => failed.push(format!("`{cmd}` exited with {}", out.code)),
                Err(e) => failed.push(format!("`{cmd}`: {e:#}")),
            }
        }
        failed
    }

    /// Drops a command that already ran in the step that queued it.
    pub fn forget(&mut self, cmd: &CmdLine) {
        self.commands.retain(|c| c != cmd);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_go_before_and_after_and_other_live_runs_keep_theirs() {
        let dir = std::env::temp_dir().join(format!("xtask-cleanup-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let pattern = format!("{}/x-<run>.tfplan", dir.display());
        let dead = dir.join("x-999999999.tfplan");
        // pid 1 always runs: a live run's plan is not a leftover.
        let live = dir.join("x-1.tfplan");
        for f in [&dead, &live] {
            std::fs::write(f, "plan").unwrap();
        }
        let (guard, leftovers) = Files::new(std::slice::from_ref(&pattern), "<run>");
        assert_eq!(leftovers, std::slice::from_ref(&dead));
        assert!(live.exists(), "another run's plan file is left alone");
        let own = dir.join(format!("x-{}.tfplan", std::process::id()));
        std::fs::write(&own, "this run's plan").unwrap();
        drop(guard);
        assert!(!own.exists());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn deferred_commands_run_after_a_signal_too() {
        // run_cleanup ignores the signal flag; run would refuse to start.
        let sh = Shell::new().unwrap();
        let dir = std::env::temp_dir().join(format!("xtask-deferred-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let marker = dir.join("ran");
        let mut deferred = Deferred::default();
        deferred.push(CmdLine::new("touch").arg(marker.display().to_string()));
        deferred.push(CmdLine::new("false"));
        let failed = deferred.run(&sh);
        assert!(marker.exists());
        assert_eq!(failed.len(), 1, "{failed:?}");
        assert!(deferred.run(&sh).is_empty(), "each command runs once");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
