//! What a run leaves behind, removed however the run ends: the saved Terraform plan (a file
//! guard) and containers the run started (commands run at the end, even after a signal).

use std::path::PathBuf;

use xshell::Shell;

use super::exec;
use crate::cmdline::CmdLine;

/// Files that exist only for one run. A leftover from an earlier run that was killed is
/// removed first, so nothing can apply it; the files are removed again when the guard drops.
pub struct Files {
    paths: Vec<PathBuf>,
}

impl Files {
    /// Returns the guard and the leftovers it removed.
    pub fn new(paths: &[String]) -> (Files, Vec<PathBuf>) {
        let paths: Vec<PathBuf> = paths.iter().map(PathBuf::from).collect();
        let mut leftovers = Vec::new();
        for path in &paths {
            if std::fs::remove_file(path).is_ok() {
                leftovers.push(path.clone());
            }
            if let Some(parent) = path.parent() {
                let _ = std::fs::create_dir_all(parent);
            }
        }
        (Files { paths }, leftovers)
    }
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
    fn files_go_before_and_after() {
        let dir = std::env::temp_dir().join(format!("xtask-cleanup-{}", std::process::id()));
        let file = dir.join("sub/x.tfplan");
        std::fs::create_dir_all(file.parent().unwrap()).unwrap();
        std::fs::write(&file, "stale").unwrap();
        let (guard, leftovers) = Files::new(&[file.display().to_string()]);
        assert_eq!(leftovers, std::slice::from_ref(&file));
        std::fs::write(&file, "this run's plan").unwrap();
        drop(guard);
        assert!(!file.exists());
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
