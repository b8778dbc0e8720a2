//! The Lambda emulator's installation (a pinned cargo-lambda in a project-local virtualenv)
//! and the dummy Cargo project it needs, whose `[[bin]]` entries are the functions it routes.

use std::collections::BTreeSet;
use std::fs::OpenOptions;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};
use xshell::{Shell, cmd};

use super::super::process;
use super::super::{Paths, step};
use super::{PACKAGE, REQUIREMENT, VERSION, check_name};

// --- Installation and the dummy project ------------------------------------------------------

pub(super) fn installed(exe: &Path) -> bool {
    Command::new(exe)
        .args(["lambda", "--version"])
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains(VERSION))
}

/// cargo-lambda from a project-local virtualenv, created (or repaired) on first use.
/// `--no-deps` leaves out `ziglang` (about 400 MB), which only cross-compiling Rust needs: the
/// emulator is one static binary.
pub(super) fn install(sh: &Shell, paths: &Paths) -> Result<PathBuf> {
    let venv = paths.lambda_venv();
    let exe = venv.join("bin").join("cargo-lambda");
    if installed(&exe) {
        return Ok(exe);
    }
    let python = process::which("python3").context(
        "python3 is missing to install cargo-lambda (the Lambda emulator); install Python 3.9+ \
         (Debian: apt-get install python3 python3-venv)",
    )?;
    step(format!(
        "creating {} and installing {REQUIREMENT}",
        venv.display()
    ));
    cmd!(sh, "{python} -m venv {venv}")
        .quiet()
        .run()
        .context("creating the cargo-lambda virtualenv (Debian: apt-get install python3-venv)")?;
    let pip = venv.join("bin").join("pip");
    cmd!(
        sh,
        "{pip} install --quiet --disable-pip-version-check --no-deps {REQUIREMENT}"
    )
    .quiet()
    .run()
    .context("pip install cargo-lambda")?;
    if !installed(&exe) {
        bail!(
            "{} does not report {VERSION} after pip install",
            exe.display()
        );
    }
    Ok(exe)
}

/// The dummy project's manifest: one binary per served function, all built from one empty
/// `main.rs` that is never compiled. `[workspace]` keeps it out of the repository's workspace.
pub(super) fn manifest(functions: &BTreeSet<String>) -> String {
    let mut text = format!(
        "# Written by xtask (local/lambda.rs). cargo-lambda needs a Cargo project, and it routes\n\
         # a Function URL only to a binary of the function's name.\n\
         [package]\nname = \"{PACKAGE}\"\nversion = \"0.0.0\"\nedition = \"2021\"\npublish = false\n\n\
         [workspace]\n\n[[bin]]\nname = \"{PACKAGE}\"\npath = \"src/main.rs\"\n"
    );
    for f in functions {
        text.push_str(&format!(
            "\n[[bin]]\nname = \"{f}\"\npath = \"src/main.rs\"\n"
        ));
    }
    text
}

/// Writes `contents` to `path` through a rename, so a concurrent reader never sees half a file.
pub(crate) fn replace_file(path: &Path, contents: &str, mode: u32) -> Result<()> {
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    let mut file = OpenOptions::new()
        .create(true)
        .write(true)
        .truncate(true)
        .mode(mode)
        .open(&tmp)
        .with_context(|| format!("writing {}", tmp.display()))?;
    file.write_all(contents.as_bytes())?;
    drop(file);
    std::fs::rename(&tmp, path).with_context(|| format!("writing {}", path.display()))
}

/// Changes the set of functions the emulator routes, under an exclusive lock (smoke tests and
/// deploys of several environments may run at once); returns the manifest's path.
pub(super) fn edit_functions(
    paths: &Paths,
    edit: impl FnOnce(&mut BTreeSet<String>),
) -> Result<PathBuf> {
    let project = paths.lambda_project();
    std::fs::create_dir_all(project.join("src"))
        .with_context(|| format!("creating {}", project.display()))?;
    let lock = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(project.join("functions.lock"))?;
    // SAFETY: flock(2) on a descriptor this function owns; the lock goes with the descriptor.
    if unsafe { libc::flock(std::os::fd::AsRawFd::as_raw_fd(&lock), libc::LOCK_EX) } != 0 {
        bail!(
            "locking {}: {}",
            project.display(),
            std::io::Error::last_os_error()
        );
    }
    let list = project.join("functions.txt");
    let mut functions: BTreeSet<String> = std::fs::read_to_string(&list)
        .unwrap_or_default()
        .lines()
        .filter(|l| check_name(l).is_ok())
        .map(str::to_string)
        .collect();
    let before = functions.clone();
    edit(&mut functions);
    let main = project.join("src").join("main.rs");
    if !main.exists() {
        std::fs::write(&main, "fn main() {}\n")?;
    }
    let manifest_path = project.join("Cargo.toml");
    let text = manifest(&functions);
    if functions != before || std::fs::read_to_string(&manifest_path).ok() != Some(text.clone()) {
        let names: String = functions.iter().map(|f| format!("{f}\n")).collect();
        replace_file(&list, &names, 0o644)?;
        replace_file(&manifest_path, &text, 0o644)?;
    }
    Ok(manifest_path)
}

/// Unregisters a function when dropped (a smoke test's), unless kept (a served function's).
pub struct Registered {
    pub(super) paths: Paths,
    pub(super) function: Option<String>,
}

impl Registered {
    /// The function stays routed after this value is gone.
    pub fn keep(mut self) {
        self.function = None;
    }
}

impl Drop for Registered {
    fn drop(&mut self) {
        if let Some(f) = self.function.take() {
            let _ = edit_functions(&self.paths, |set| {
                set.remove(&f);
            });
        }
    }
}
