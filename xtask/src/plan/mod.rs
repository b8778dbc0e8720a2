//! Plans are data: the ordered steps a command will take, decided by pure functions.
//!
//! `image`, `deploy` and `rollback` each turn (settings, facts) into a [`Plan`]. The runner
//! executes it; `--dry-run` prints it. Values known only at run time (the digest a build
//! produces, the current time) are placeholders such as `<digest>` that the runner fills in.

pub mod bootstrap;
pub mod deploy;
pub mod image;
pub mod repository;
pub mod rollback;
mod scan;

use std::fmt;

use crate::settings::Platform;

pub use crate::cmdline::{
    CONTAINER, CmdLine, DIGEST, IMAGE_COMMAND, LAMBDA_API, LIVE_DIGEST, NOW, RUN,
};

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
    /// `live` moves and points at another single image, which becomes `previous`. (Not a
    /// stale index that `imagetools create` made: no function ever ran one.)
    PreviousMoves,
    /// The content tag was already in the registry, so nothing was built or pushed.
    ImageFound,
    /// `terraform init`, unless the data directory was initialised with the same backend
    /// settings, configuration files and provider lock file (a key recorded in it).
    InitStale,
    /// The account layer's first run (no state bucket yet, or a local state left by an
    /// interrupted first run): local state, then migrated into the bucket.
    FirstBootstrap,
    /// The account layer's state is in its bucket.
    Bootstrapped,
}

impl fmt::Display for When {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            When::Always => "always",
            When::RepositoryMissing => "if the ECR repository does not exist yet",
            When::ImageMissing => "if the content tag is not in the registry",
            When::ChangesPlanned => "if terraform plan finds changes",
            When::LiveMoves => "if `live` does not point at this image yet",
            When::PreviousMoves => "if `live` moves from another image",
            When::ImageFound => "if the content tag was already in the registry",
            When::InitStale => "unless already initialised for this backend and configuration",
            When::FirstBootstrap => "on the first run (no state bucket yet)",
            When::Bootstrapped => "if the state bucket exists",
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
    /// Then `push` (the `docker` driver's load and pushes of `archive`, deleted afterwards).
    Build {
        cmd: CmdLine,
        metadata_file: String,
        push: Vec<CmdLine>,
        archive: Option<String>,
    },
    /// The pushed tag must be a single image manifest for `platform` with the built digest.
    VerifyManifest {
        reference: String,
        platform: Platform,
        cmd: CmdLine,
    },
    /// Run the image under the Lambda emulator (the adapter started as an extension), wait
    /// for `/health` through its Function URL, read a live SSE stream there, remove it.
    /// `<container>` is a fresh name per run, also the function's name in the emulator;
    /// `<lambda-api>` is the emulator's Runtime API; `<image-command>` the image's ENTRYPOINT
    /// and CMD, read by `inspect`. `logs` runs only when the test fails; `remove` always.
    Smoke {
        image: String,
        lines: Box<SmokeLines>,
    },
    /// Local stack only: serve the function Terraform reports (output `function_name`) the
    /// way the AWS emulator's Lambda API describes it (image digest, environment, memory)
    /// under the Lambda emulator, replacing what served it before, and print its Function URL.
    ServeLocal {
        endpoint_url: String,
        region: String,
        platform: Platform,
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
    /// S3 HeadBucket on the state bucket. `required`: a missing bucket stops the run with the
    /// bootstrap hint. `local_state`: a first run's leftover local state also counts as a
    /// first run, so an interrupted bootstrap resumes from its own state.
    CheckBucket {
        bucket: String,
        local_state: Option<String>,
        required: bool,
    },
    /// Writes a file (relative to the repository root); the plan's cleanup removes it.
    WriteFile { path: String, contents: String },
    /// Replaces each destination directory with a copy of its source (paths relative to the
    /// repository root, or absolute).
    CopyDirs { copies: Vec<(String, String)> },
    /// Deletes files; missing ones are fine.
    RemoveFiles { paths: Vec<String> },
    /// `terraform output -json`, reported in the summary.
    Outputs { cmd: CmdLine },
    /// Local stack only: ECR PutImage of the pushed manifest (read from the loopback registry)
    /// into the emulator's ECR under `tags`, so ECR's image calls (scan, retag) know the image.
    MirrorToEmulator {
        repository: String,
        tags: Vec<String>,
    },
    /// Waits (bounded) for the registry's scan of the run's digest, starting one when there is
    /// none, and refuses findings at or above the policy's threshold that it does not allow.
    ScanGate {
        repository: String,
        policy: crate::scan::Policy,
    },
}

/// The command lines of one smoke test, in the order they run.
#[derive(Debug, Clone, PartialEq)]
pub struct SmokeLines {
    /// `docker pull` of the digest (the engine may already have it).
    pub pull: CmdLine,
    /// Reads the image's ENTRYPOINT and CMD, which `run` starts as Lambda would.
    pub inspect: CmdLine,
    pub run: CmdLine,
    /// Only when the test fails.
    pub logs: CmdLine,
    /// Always, even after a failure or a signal.
    pub remove: CmdLine,
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
    /// Points bare `tags` of the environment's repository at the digest in `slot`, in order,
    /// then reads each back.
    pub fn retag(env: &crate::settings::Environment, slot: Slot, tags: Vec<String>) -> Action {
        let repo = env.image_repo();
        Action::Retag {
            repository: env.repository.clone(),
            slot,
            verify: tags
                .iter()
                .map(|t| crate::tools::docker::inspect(&format!("{repo}:{t}")))
                .collect(),
            tags,
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
            | Action::Confirm { .. }
            | Action::CheckBucket { .. }
            | Action::WriteFile { .. }
            | Action::CopyDirs { .. }
            | Action::RemoveFiles { .. }
            | Action::MirrorToEmulator { .. }
            | Action::ScanGate { .. }
            | Action::ServeLocal { .. } => vec![],
            Action::Login { cmd, .. }
            | Action::Lookup { cmd, .. }
            | Action::Run { cmd, .. }
            | Action::VerifyManifest { cmd, .. }
            | Action::Apply { cmd }
            | Action::Outputs { cmd } => vec![cmd],
            Action::Smoke { lines, .. } => {
                vec![&lines.pull, &lines.inspect, &lines.run, &lines.remove]
            }
            Action::TerraformPlan { cmd, show } => vec![cmd, show],
            Action::Build { cmd, push, .. } => std::iter::once(cmd).chain(push).collect(),
            Action::Retag { verify, .. } => verify.iter().collect(),
        }
    }
    /// One line saying what the step does, for the dry run and the log.
    pub fn describe(&self) -> Vec<String> {
        match &self.action {
            Action::Note(text) => vec![text.clone()],
            Action::CheckBucket {
                bucket,
                local_state,
                required,
            } => {
                let mut lines = vec![format!("aws s3api head-bucket --bucket {bucket}")];
                if *required {
                    lines.push("missing: stop, run `cargo xtask bootstrap` first".into());
                }
                if let Some(path) = local_state {
                    lines.push(format!("first run if missing, or if {path} holds a state"));
                }
                lines
            }
            Action::WriteFile { path, .. } => vec![format!("write {path}")],
            Action::CopyDirs { copies } => copies
                .iter()
                .map(|(from, to)| format!("copy {from}/ to {to}/"))
                .collect(),
            Action::MirrorToEmulator { repository, tags } => vec![format!(
                "aws ecr put-image --repository-name {repository} --image-digest {DIGEST} \
                 (manifest read from the local registry), tags {}",
                tags.join(", ")
            )],
            Action::ScanGate { repository, policy } => scan::describe(repository, policy),
            Action::RemoveFiles { paths } => vec![format!("delete {}", paths.join(", "))],
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
            Action::Smoke { image, lines } => vec![
                lines.pull.to_string(),
                lines.inspect.to_string(),
                format!(
                    "{}   (the Lambda emulator's Runtime API; {IMAGE_COMMAND} from above)",
                    lines.run
                ),
                format!(
                    "GET <function-url>/health, then <function-url>/stream?count=3&interval=1 \
                     through the emulated Function URL: 3 events from {image}, the first well \
                     before the end"
                ),
                format!("{}   (on failure)", lines.logs),
                format!("{}   (always)", lines.remove),
            ],
            Action::ServeLocal {
                endpoint_url,
                region,
                platform,
            } => vec![
                format!(
                    "GET {endpoint_url}/2015-03-31/functions/<function_name> (Lambda GetFunction \
                     in {region}): image digest, environment, memory, timeout"
                ),
                format!(
                    "{}   (unless it already serves that digest)",
                    crate::tools::docker::pull("<image-uri>", *platform)
                ),
                "replace the function's container under the Lambda emulator; wait for /health \
                 through its Function URL"
                    .to_string(),
                "print `local function url: http://<bridge>:9000/lambda-url/<function_name>`"
                    .to_string(),
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
