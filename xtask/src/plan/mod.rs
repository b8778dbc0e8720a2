//! Plans are data: the ordered steps a command will take, decided by pure functions.
//!
//! `image`, `deploy` and `rollback` each turn (settings, facts) into a [`Plan`]. The runner
//! executes it; `--dry-run` prints it. Values known only at run time (the digest a build
//! produces, the current time) are placeholders such as `<digest>` that the runner fills in.

pub mod deploy;
pub mod image;
pub mod rollback;

use std::fmt;

use crate::settings::Platform;

pub use crate::cmdline::{CONTAINER, CmdLine, DIGEST, LIVE_DIGEST, NOW};

#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    pub command: &'static str,
    pub env: String,
    pub steps: Vec<Step>,
    /// Files the runner deletes when the plan ends, on success and on failure.
    pub cleanup: Vec<String>,
    /// What the summary reports: the image repository, tags and the reason for each decision.
    pub image_repo: String,
    pub tags: Vec<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Step {
    pub title: String,
    pub when: When,
    pub action: Action,
}

/// A condition on a step. `Always` steps run; the others are checked by the runner, using a
/// fact gathered earlier in the same run, so a dry run prints them as conditions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum When {
    Always,
    /// The ECR repository does not exist yet: a first-ever deploy.
    RepositoryMissing,
    /// The content tag is not in the registry yet (or `--force`).
    ImageMissing,
    /// `terraform plan` exited 2.
    ChangesPlanned,
    /// The `live` tag does not point at the image being deployed (or does not exist).
    LiveMoves,
    /// Changes are planned and `live` points at another image, which becomes `previous`.
    PreviousMoves,
}

impl fmt::Display for When {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            When::Always => "always",
            When::RepositoryMissing => "if the ECR repository does not exist yet",
            When::ImageMissing => "if the content tag is not in the registry",
            When::ChangesPlanned => "if terraform plan finds changes",
            When::LiveMoves => "if `live` does not point at this image yet",
            When::PreviousMoves => "if changes are planned and `live` points at another image",
        })
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// A fact already gathered, printed for the record.
    Note(String),
    /// STS GetCallerIdentity and the effective region must match the settings.
    CheckIdentity { account_id: String, region: String },
    /// ECR DescribeRepositories: does the repository exist?
    CheckRepository { name: String, required: bool },
    /// ECR GetAuthorizationToken, then this `docker login` with the password on stdin.
    Login { registry: String, cmd: CmdLine },
    /// Reads a reference from the registry; sets `sets` to its digest when it exists.
    Lookup {
        reference: String,
        sets: Slot,
        required: bool,
        cmd: CmdLine,
    },
    /// A command that must exit 0.
    Run { cmd: CmdLine, retry: bool },
    /// `docker buildx build --push`; the digest comes from the metadata file.
    Build { cmd: CmdLine, metadata_file: String },
    /// The pushed tag must be a single image manifest for `platform` with the built digest.
    VerifyManifest {
        reference: String,
        platform: Platform,
        cmd: CmdLine,
    },
    /// Run the image, wait for `/health`, read live SSE events, stop it.
    /// `logs` runs only when the test fails; `remove` always.
    Smoke {
        image: String,
        run: CmdLine,
        port: CmdLine,
        logs: CmdLine,
        remove: CmdLine,
    },
    /// Points `tags` (bare names) of `repository` at the digest in `slot` by copying its
    /// manifest (see `registry.rs`), then reads each back to check the digest.
    Retag {
        repository: String,
        slot: Slot,
        tags: Vec<String>,
        verify: Vec<CmdLine>,
    },
    /// `terraform plan -detailed-exitcode`: 0 no changes, 2 changes, else failure.
    TerraformPlan { cmd: CmdLine, show: CmdLine },
    /// Ask before applying (protected environments outside CI, without `--yes`).
    Confirm { prompt: String },
    /// `terraform apply` of the saved plan; Ctrl-C is forwarded once so state is saved.
    Apply { cmd: CmdLine },
    /// `terraform output -json`, reported in the summary.
    Outputs { cmd: CmdLine },
}

/// Runtime values a lookup can fill.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Slot {
    /// The image to deploy: `<digest>`.
    Digest,
    /// The image that was live before: `<live-digest>`.
    LiveDigest,
}

impl Action {
    /// Reads `reference` from the registry into `sets`.
    pub fn lookup(reference: String, sets: Slot, required: bool) -> Action {
        Action::Lookup {
            cmd: crate::tools::docker::inspect(&reference),
            reference,
            sets,
            required,
        }
    }
    /// Checks that `reference` is a single image manifest for `platform` with the run's digest.
    pub fn verify(reference: String, platform: Platform) -> Action {
        Action::VerifyManifest {
            cmd: crate::tools::docker::inspect(&reference),
            reference,
            platform,
        }
    }
}

impl Step {
    pub fn new(title: impl Into<String>, action: Action) -> Step {
        Step {
            title: title.into(),
            when: When::Always,
            action,
        }
    }
    pub fn when(mut self, when: When) -> Step {
        self.when = when;
        self
    }
    /// The command lines this step runs, in order (none for pure AWS calls and notes).
    pub fn commands(&self) -> Vec<&CmdLine> {
        match &self.action {
            Action::Note(_)
            | Action::CheckIdentity { .. }
            | Action::CheckRepository { .. }
            | Action::Confirm { .. } => vec![],
            Action::Login { cmd, .. }
            | Action::Lookup { cmd, .. }
            | Action::Run { cmd, .. }
            | Action::Build { cmd, .. }
            | Action::VerifyManifest { cmd, .. }
            | Action::Apply { cmd }
            | Action::Outputs { cmd } => vec![cmd],
            Action::Smoke {
                run, port, remove, ..
            } => vec![run, port, remove],
            Action::TerraformPlan { cmd, show } => vec![cmd, show],
            Action::Retag { verify, .. } => verify.iter().collect(),
        }
    }
    /// One line saying what the step does, for the dry run and the log.
    pub fn describe(&self) -> Vec<String> {
        match &self.action {
            Action::Note(text) => vec![text.clone()],
            Action::CheckIdentity { account_id, region } => vec![format!(
                "aws sts get-caller-identity: account must be {account_id}, region {region}"
            )],
            Action::CheckRepository { name, .. } => {
                vec![format!(
                    "aws ecr describe-repositories --repository-names {name}"
                )]
            }
            Action::Login { registry, cmd } => vec![
                format!("aws ecr get-authorization-token (registry {registry})"),
                format!("{cmd}   (password on stdin)"),
            ],
            Action::Smoke {
                image,
                run,
                port,
                logs,
                remove,
            } => vec![
                run.to_string(),
                port.to_string(),
                format!("GET /health, then GET /stream: read 3 SSE events from {image}"),
                format!("{logs}   (on failure)"),
                remove.to_string(),
            ],
            Action::Confirm { prompt } => vec![format!("ask: {prompt}")],
            Action::Retag {
                repository,
                slot,
                tags,
                verify,
            } => {
                let digest = match slot {
                    Slot::Digest => DIGEST,
                    Slot::LiveDigest => LIVE_DIGEST,
                };
                let mut lines = vec![format!(
                    "copy the manifest {repository}@{digest} to tag {} (ECR PutImage, or the \
                     OCI distribution API on the local registry)",
                    tags.join(", ")
                )];
                lines.extend(verify.iter().map(ToString::to_string));
                lines
            }
            _ => self.commands().iter().map(ToString::to_string).collect(),
        }
    }
}

impl Plan {
    /// Every command line of the plan in order, for tests and `--json`.
    pub fn command_lines(&self) -> Vec<String> {
        self.steps
            .iter()
            .flat_map(|s| s.commands())
            .map(ToString::to_string)
            .collect()
    }
}

impl fmt::Display for Plan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "plan: cargo xtask {} --env {} ({} steps)",
            self.command,
            self.env,
            self.steps.len()
        )?;
        for (i, step) in self.steps.iter().enumerate() {
            let cond = match step.when {
                When::Always => String::new(),
                when => format!("  [{when}]"),
            };
            writeln!(f, "{:>3}. {}{cond}", i + 1, step.title)?;
            for line in step.describe() {
                writeln!(f, "       {line}")?;
            }
        }
        for file in &self.cleanup {
            writeln!(f, "  finally: delete {file}")?;
        }
        Ok(())
    }
}
