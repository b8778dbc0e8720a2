//! Every repository path xtask uses, in one place. All are relative to the repository root,
//! which is the shell's current directory.

use std::path::{Path, PathBuf};

/// The repository root: the parent of the xtask crate, or `XTASK_ROOT` (a scratch clone
/// of the repository, where the benchmark and the tests change sources).
pub fn root() -> PathBuf {
    match std::env::var_os("XTASK_ROOT") {
        Some(dir) if !dir.is_empty() => PathBuf::from(dir),
        _ => home(),
    }
}

/// The repository xtask was built in, whose `target/local-stack/` the local stack keeps
/// whatever `XTASK_ROOT` says: one stack per machine.
pub fn home() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives in the repository")
        .to_path_buf()
}

/// One shell rooted at the repository; every path is relative to it.
pub fn shell() -> anyhow::Result<xshell::Shell> {
    let sh = xshell::Shell::new()?;
    sh.change_dir(root());
    Ok(sh)
}

/// The settings file: `--config` (relative to where the command ran) or the repository's.
pub fn settings_file(config: Option<&Path>) -> anyhow::Result<PathBuf> {
    Ok(match config {
        Some(path) => std::env::current_dir()?.join(path),
        None => root().join(SETTINGS),
    })
}

/// Copies a directory tree (files and directories; configuration only, no special files).
pub fn copy_dir(from: &Path, to: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(to)?;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let target = to.join(entry.file_name());
        if entry.file_type()?.is_dir() {
            copy_dir(&entry.path(), &target)?;
        } else {
            std::fs::copy(entry.path(), target)?;
        }
    }
    Ok(())
}

/// xtask's own scratch space: build metadata, private git index, Terraform data dirs.
pub fn xtask_dir() -> PathBuf {
    PathBuf::from("target/xtask")
}

/// One environment's scratch space, absolute: Terraform runs with `-chdir`, so paths handed
/// to it must not depend on the working directory.
pub fn env_dir(env: &str) -> PathBuf {
    root().join("target/xtask").join(env)
}

/// The saved Terraform plan of one run (`run` is its id). It lives under `target/`, never in
/// the Terraform directory, and the runner deletes it when the run ends, however it ends.
pub fn plan_file(env: &str, run: &str) -> PathBuf {
    env_dir(env).join(format!("{env}-{run}.tfplan"))
}

/// Terraform's data directory for one environment (backend config, providers), so switching
/// environments never re-points another environment's state.
pub fn terraform_data_dir(env: &str) -> PathBuf {
    root().join("target/xtask").join(env).join("terraform")
}

/// The project-local Python virtualenv for the Lambda's tests and the workflow linters.
pub fn venv() -> PathBuf {
    PathBuf::from("target/venv")
}

/// The auditors' own virtualenv (checkov, parliament, hadolint): checkov pins `packaging<24`,
/// which the Lambda's dev requirements in [`venv`] cannot share.
pub fn audit_venv() -> PathBuf {
    PathBuf::from("target/audit-venv")
}

/// Scratch space of `cargo xtask ci`'s auditors: the copy of the bootstrap root whose plan
/// renders the policies, and the rendered policies (absolute: Terraform runs with `-chdir`).
pub fn audit_dir() -> PathBuf {
    root().join("target/xtask/audit")
}

/// Every auditor finding the project accepts, each with its reason.
pub const AUDIT_SUPPRESSIONS: &str = "infrastructure/audit-suppressions.toml";

/// The settings file, unless --config or XTASK_CONFIG names another.
pub const SETTINGS: &str = "infrastructure/environments.toml";

/// The local stack's own directory (see [`home`]).
pub fn stack_dir() -> PathBuf {
    home().join("target/local-stack")
}

/// Sessions in the emulator's other accounts, one profile `xtask-<account>` each, for
/// Terraform (whose provider sends a profile's AssumeRole to the real STS): emulator keys,
/// written by `local up`, meaningless anywhere else. One file per compose project (each has
/// its own emulator), as its stack record is.
pub fn emulator_credentials() -> PathBuf {
    match local_project().as_str() {
        DEFAULT_PROJECT => stack_dir().join("emulator-credentials"),
        other => stack_dir().join(format!("emulator-credentials-{other}")),
    }
}

pub const DEFAULT_PROJECT: &str = "xtask-local";

/// The local stack's compose project: `XTASK_LOCAL_PROJECT`, or `xtask-local`.
pub fn local_project() -> String {
    let valid = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_';
    let project = std::env::var("XTASK_LOCAL_PROJECT").ok();
    let project = project.filter(|p| !p.is_empty() && p.chars().all(valid));
    project.unwrap_or_else(|| DEFAULT_PROJECT.to_string())
}

/// The Terraform CLI config the local stack writes (offline provider mirror).
pub fn local_tf_cli_config() -> PathBuf {
    stack_dir().join("terraform.rc")
}

/// Where the functions' sources live, one directory each.
pub const LAMBDAS_DIR: &str = "src/lambdas";
pub const WORKFLOWS_DIR: &str = ".github/workflows";
