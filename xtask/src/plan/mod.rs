//! Plans are data: the ordered steps a command will take, decided by pure functions of the
//! settings and the facts; the runner executes a [`Plan`] and `--dry-run` prints it. Values
//! known only at run time are typed [`Slot`]s, printed as `<digest:NAME>`.

pub mod bootstrap;
pub mod deploy;
pub mod image;
pub mod promote;
pub mod release;
pub mod rollback;
pub mod steps;

use std::fmt;

pub use crate::cmdline::{Arg, CmdLine, Slot};
use crate::scan::Policy;
use crate::settings::{Environment, Expect, Function, Platform, Smoke};
use crate::tools::{docker::BakeTarget, terraform::FunctionVars};

#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    pub command: &'static str,
    pub env: String,
    pub steps: Vec<Step>,
    /// Files the runner deletes when the plan ends, on success and on failure.
    pub cleanup: Vec<String>,
    /// The functions the plan acts on, with the tags it writes, for the result.
    pub functions: Vec<Planned>,
}

/// One function as the plan acts on it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Planned {
    pub name: String,
    /// `registry/repository`.
    pub image_repo: String,
    /// Bare tag names the plan writes (or finds) for the function's image.
    pub tags: Vec<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Step {
    pub title: String,
    pub when: When,
    pub action: Action,
}

/// A condition on a step, checked by the runner against what earlier steps learned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum When {
    Always,
    RepositoriesMissing,
    /// A new function in a deployed environment.
    SomeRepositoriesMissing,
    AnyImageMissing,
    ImageFound(String),
    ChangesPlanned,
    LiveMoves(String),
    /// `live` moves from another single image, which becomes `previous` (never from a stale
    /// index that `imagetools create` made: no function ever ran one).
    PreviousMoves(String),
    /// Unless the data directory was initialised with the same key (backend settings,
    /// configuration files and provider lock file, recorded in it).
    InitStale,
    /// No state bucket yet, or a local state left by an interrupted first run: local state,
    /// then migrated into the bucket.
    FirstBootstrap,
    Bootstrapped,
}

impl fmt::Display for When {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            When::Always => f.write_str("always"),
            When::RepositoriesMissing => f.write_str("if an ECR repository does not exist yet"),
            When::SomeRepositoriesMissing => {
                f.write_str("if some ECR repositories exist and others do not yet")
            }
            When::AnyImageMissing => {
                f.write_str("for the functions whose content tag is not in the registry")
            }
            When::ImageFound(n) => write!(f, "if {n}'s content tag was already in the registry"),
            When::ChangesPlanned => f.write_str("if terraform plan finds changes"),
            When::LiveMoves(n) => write!(f, "if {n}'s `live` does not point at this image yet"),
            When::PreviousMoves(n) => write!(f, "if {n}'s `live` moves from another image"),
            When::InitStale => {
                f.write_str("unless already initialised for this backend and configuration")
            }
            When::FirstBootstrap => f.write_str("on the first run (no state bucket yet)"),
            When::Bootstrapped => f.write_str("if the state bucket exists"),
        }
    }
}

/// What a step does: [`Step::describe`] says it for the dry run, the runner does it.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// A fact already gathered, printed for the record.
    Note(String),
    /// STS GetCallerIdentity and the effective region must match the settings.
    CheckIdentity { account_id: String, region: String },
    /// ECR DescribeRepositories; with `required` a missing one stops the run.
    CheckRepositories { names: Vec<String>, required: bool },
    /// `source`: the registry images are promoted from (on the local stack its account signs).
    Login {
        registry: String,
        cmd: CmdLine,
        source: Option<Source>,
    },
    /// Sets `sets` to the reference's digest when it exists, else refuses with `required`.
    Lookup {
        reference: String,
        sets: Slot,
        required: Option<String>,
        cmd: CmdLine,
    },
    /// A command that must exit 0.
    Run { cmd: CmdLine, retry: bool },
    Bake {
        file: String,
        metadata: String,
        targets: Vec<BakeTarget>,
        cmd: CmdLine,
    },
    VerifyManifest {
        function: String,
        reference: Arg,
        platform: Platform,
        cmd: CmdLine,
    },
    /// Stops the run with this explanation.
    Refuse(String),
    CheckRan {
        function: String,
        places: Vec<Source>,
    },
    Smoke {
        function: String,
        /// Also the function's name in the emulator (unique per run).
        container: String,
        check: Smoke,
        lines: Box<SmokeLines>,
    },
    ServeLocal {
        endpoint_url: String,
        region: String,
        functions: Vec<(String, Platform)>,
    },
    Retag {
        function: String,
        repository: String,
        slot: Slot,
        tags: Vec<String>,
        verify: Vec<CmdLine>,
    },
    WriteVars {
        path: String,
        functions: Vec<FunctionVars>,
    },
    /// `terraform plan -detailed-exitcode`: 0 no changes, 2 changes, else failure.
    TerraformPlan { cmd: CmdLine, show: CmdLine },
    /// Asks before applying (protected environments outside CI, without `--yes`).
    Confirm { prompt: String },
    /// Ctrl-C is forwarded once, so the state is saved.
    Apply { cmd: CmdLine },
    /// A first run's leftover `local_state` also counts as a first run, so an interrupted
    /// bootstrap resumes from its own state.
    CheckBucket {
        bucket: String,
        local_state: Option<String>,
        required: bool,
    },
    /// Relative to the repository root, or absolute.
    WriteFile { path: String, contents: String },
    /// Replaces each destination directory with a copy of its source.
    CopyDirs { copies: Vec<(String, String)> },
    /// Missing ones are fine.
    RemoveFiles { paths: Vec<String> },
    /// `terraform output -json`, for the summary.
    Outputs { cmd: CmdLine },
    MirrorToEmulator {
        function: String,
        repository: String,
        tags: Vec<String>,
    },
    ScanGate {
        function: String,
        repository: String,
        policy: Policy,
    },
    CopyImage {
        function: String,
        from: Source,
        repository: String,
        tag: String,
    },
}

/// Another environment's copy of a function's repository: where to read its images.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Source {
    pub env: String,
    pub account_id: String,
    pub registry: String,
    pub repository: String,
    /// On the local stack: its emulator account signs the calls.
    pub local: bool,
}

impl Source {
    pub fn of(env: &Environment, f: &Function) -> Source {
        Source {
            env: env.name.clone(),
            account_id: env.account_id.clone(),
            registry: env.registry(),
            repository: f.repository.clone(),
            local: env.local.is_some(),
        }
    }
}

/// The command lines of one smoke test, in the order they run.
#[derive(Debug, Clone, PartialEq)]
pub struct SmokeLines {
    pub pull: CmdLine,
    /// Reads the image's ENTRYPOINT and CMD, which `run` starts as Lambda would.
    pub inspect: CmdLine,
    pub run: CmdLine,
    /// Only when the test fails.
    pub logs: CmdLine,
    /// Always, even after a failure or a signal.
    pub remove: CmdLine,
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
            Action::Login { cmd, .. }
            | Action::Lookup { cmd, .. }
            | Action::Run { cmd, .. }
            | Action::Bake { cmd, .. }
            | Action::VerifyManifest { cmd, .. }
            | Action::Apply { cmd }
            | Action::Outputs { cmd } => vec![cmd],
            Action::Smoke { lines, .. } => {
                vec![&lines.pull, &lines.inspect, &lines.run, &lines.remove]
            }
            Action::TerraformPlan { cmd, show } => vec![cmd, show],
            Action::Retag { verify, .. } => verify.iter().collect(),
            _ => vec![],
        }
    }
    /// What the step does, one line each, for the dry run.
    pub fn describe(&self) -> Vec<String> {
        let indented = |text: String| text.lines().map(|l| format!("  {l}")).collect::<Vec<_>>();
        let digest = |function: &String| Slot::Digest(function.clone());
        let mut out = vec![];
        match &self.action {
            Action::Note(text) => out.push(text.clone()),
            Action::CheckIdentity { account_id, region } => out.push(format!(
                "aws sts get-caller-identity: account must be {account_id}, region {region}"
            )),
            Action::CheckRepositories { names, .. } => {
                let names = names.join(" ");
                out.push(format!(
                    "aws ecr describe-repositories --repository-names {names}"
                ))
            }
            Action::Refuse(why) => out.push(format!("refuses: {why}")),
            Action::CheckRan { function, places } => {
                let places = places
                    .iter()
                    .map(|p| format!("{} ({})", p.repository, p.env));
                let (digest, places) = (digest(function), places.collect::<Vec<_>>().join(" or "));
                out.push(format!(
                    "aws ecr describe-images --image-ids imageDigest={digest}: a deployed-<time> \
                     tag in {places}"
                ))
            }
            Action::Login { registry, cmd, .. } => out.extend([
                format!("aws ecr get-authorization-token (registry {registry})"),
                format!("{cmd}   (password on stdin)"),
            ]),
            Action::Bake { file, targets, .. } => {
                out.push(format!(
                    "write {file} with the targets below whose content tag is missing:"
                ));
                out.extend(indented(crate::tools::docker::bake_file(targets.iter())));
                out.extend(self.lines());
            }
            Action::Smoke { check, lines, .. } => {
                let expect = match &check.expect {
                    Expect::Sse => "an SSE stream, the first event well before the end".into(),
                    Expect::Json(fields) => format!("JSON with {fields:?}"),
                };
                let path = &check.path;
                out.extend([
                    lines.pull.to_string(),
                    lines.inspect.to_string(),
                    format!("{}   (the Lambda emulator's Runtime API)", lines.run),
                    format!("GET <function-url>/health, then <function-url>{path} ({expect})"),
                    format!("{}   (on failure)", lines.logs),
                    format!("{}   (always)", lines.remove),
                ])
            }
            Action::ServeLocal {
                endpoint_url,
                region,
                functions,
            } => {
                let names: Vec<&str> = functions.iter().map(|(n, _)| n.as_str()).collect();
                out.push(format!(
                    "GET {endpoint_url}/2015-03-31/functions/<function_name> (Lambda GetFunction \
                     in {region}) for {}: image digest, environment, memory, timeout",
                    names.join(", ")
                ));
                let serve = "replace each function's container under the Lambda emulator";
                out.push(format!("{serve}; wait for /health"));
                out.push("print each `local url: http://127.0.0.1:<port>/...`".into());
            }
            Action::Retag {
                repository,
                slot,
                tags,
                ..
            } => {
                out.push(format!(
                    "copy the manifest {repository}@{slot} to tag {} (ECR PutImage, or the OCI \
                     distribution API on the local registry)",
                    tags.join(", ")
                ));
                out.extend(self.lines());
            }
            Action::WriteVars { path, functions } => {
                out.push(format!("write {path}:"));
                let text = crate::tools::terraform::vars_file(functions, |slot| slot.to_string());
                out.extend(indented(text));
            }
            Action::Confirm { prompt } => out.push(format!("ask: {prompt}")),
            Action::CheckBucket {
                bucket,
                local_state,
                required,
            } => {
                out.push(format!("aws s3api head-bucket --bucket {bucket}"));
                if *required {
                    out.push("missing: stop, run `cargo xtask bootstrap` first".into());
                }
                if let Some(path) = local_state {
                    out.push(format!("first run if missing, or if {path} holds a state"));
                }
            }
            Action::WriteFile { path, .. } => out.push(format!("write {path}")),
            Action::CopyDirs { copies } => out.extend(
                copies
                    .iter()
                    .map(|(from, to)| format!("copy {from}/ to {to}/")),
            ),
            Action::RemoveFiles { paths } => out.push(format!("delete {}", paths.join(", "))),
            Action::MirrorToEmulator {
                function,
                repository,
                tags,
            } => out.push(format!(
                "aws ecr put-image --repository-name {repository} --image-digest {} (manifest \
                 read from the local registry), tags {}",
                digest(function),
                tags.join(", ")
            )),
            Action::ScanGate {
                function,
                repository,
                policy,
            } => {
                let (digest, wait) = (digest(function), policy.timeout.as_secs());
                out.push(format!(
                    "aws ecr describe-image-scan-findings --repository-name {repository} \
                     --image-id imageDigest={digest}   (start-image-scan when there is none; \
                     wait up to {wait}s)"
                ));
                let (fail_on, entries) = (&policy.fail_on, policy.allow.len());
                out.push(format!(
                    "refuse findings at or above {fail_on} unless allowed ({entries} allow-list \
                     entries)"
                ));
                for a in &policy.allow {
                    let (id, expires, reason) = (&a.id, &a.expires, &a.reason);
                    out.push(format!("  allow {id} until {expires}: {reason}"));
                }
            }
            Action::CopyImage {
                function,
                from,
                repository,
                tag,
            } => out.push(format!(
                "copy {}/{}@{} (environment {}) with its blobs to {repository}:{tag}, registry to \
                 registry; refuse any other digest",
                from.registry,
                from.repository,
                digest(function),
                from.env
            )),
            _ => out.extend(self.lines()),
        }
        out
    }
    fn lines(&self) -> Vec<String> {
        self.commands().iter().map(ToString::to_string).collect()
    }
}

impl Plan {
    pub fn new(
        command: &'static str,
        env: &Environment,
        steps: Vec<Step>,
        cleanup: Vec<String>,
        functions: Vec<Planned>,
    ) -> Plan {
        let env = env.name.clone();
        Plan {
            command,
            env,
            steps,
            cleanup,
            functions,
        }
    }
    /// Every command line of the plan in order, for tests and `--json`.
    pub fn command_lines(&self) -> Vec<String> {
        self.steps.iter().flat_map(Step::lines).collect()
    }
}

impl fmt::Display for Plan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (command, env, steps) = (self.command, &self.env, self.steps.len());
        writeln!(f, "plan: cargo xtask {command} --env {env} ({steps} steps)")?;
        for (i, step) in self.steps.iter().enumerate() {
            let cond = match &step.when {
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

#[cfg(test)]
pub(crate) mod tests;
