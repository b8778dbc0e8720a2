//! Files that exist only for one run (the saved Terraform plan, the variable files), removed
//! however the run ends, and those of earlier runs that were killed before they could.

use std::path::{Path, PathBuf};

/// Files that exist only for one run. Their names may hold the run's id (`placeholder`):
/// then files of earlier runs whose process is gone (killed before they could clean up) are
/// removed first, so nothing can apply them, and files of runs still going are left to them.
/// The run's own files are removed when the guard drops.
pub struct Files {
    paths: Vec<PathBuf>,
}

impl Files {
    /// Returns the guard and the leftovers it removed. Files whose name holds `run` (this
    /// run's id) are also looked for under the ids of runs that are gone.
    pub fn new(patterns: &[String], run: &str) -> (Files, Vec<PathBuf>) {
        let mut leftovers = Vec::new();
        let mut paths = Vec::new();
        for pattern in patterns {
            let path = PathBuf::from(pattern);
            if let Some(parent) = path.parent() {
                let _ = std::fs::create_dir_all(parent);
            }
            if std::fs::remove_file(&path).is_ok() {
                leftovers.push(path.clone());
            }
            if let Some((prefix, suffix)) = pattern.rsplit_once(run) {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_go_before_and_after_and_other_live_runs_keep_theirs() {
        let dir = std::env::temp_dir().join(format!("xtask-cleanup-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let own = dir.join(format!("x-{}.tfplan", std::process::id()));
        let pattern = own.display().to_string();
        let dead = dir.join("x-999999999.tfplan");
        // pid 1 always runs: a live run's plan is not a leftover.
        let live = dir.join("x-1.tfplan");
        for f in [&dead, &live] {
            std::fs::write(f, "plan").unwrap();
        }
        let (guard, leftovers) = Files::new(
            std::slice::from_ref(&pattern),
            &std::process::id().to_string(),
        );
        assert_eq!(leftovers, std::slice::from_ref(&dead));
        assert!(live.exists(), "another run's plan file is left alone");
        std::fs::write(&own, "this run's plan").unwrap();
        drop(guard);
        assert!(!own.exists());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
