//! Every repository path xtask uses, in one place. All are relative to the repository root,
//! which is the shell's current directory.

use std::path::{Path, PathBuf};

/// The repository root: the parent of the xtask crate.
pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives in the repository")
        .to_path_buf()
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

/// `docker buildx build --metadata-file`, read for the pushed digest.
pub fn build_metadata(env: &str) -> String {
    format!("target/xtask/{env}/build-metadata.json")
}

/// The OCI archive a build on the `docker` driver exports (then loads and pushes), deleted
/// after the push.
pub fn image_archive(env: &str) -> String {
    format!("target/xtask/{env}/image.oci.tar")
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

/// The Terraform CLI config the local stack writes (offline provider mirror).
pub const LOCAL_TF_CLI_CONFIG: &str = "target/local-stack/terraform.rc";

pub const LAMBDA_DIR: &str = "src/lambdas/sse_streaming";
pub const WORKFLOWS_DIR: &str = ".github/workflows";
