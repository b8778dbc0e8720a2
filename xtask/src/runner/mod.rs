//! The runner: executes a plan's steps in order through one [`World`], times them, retries the
//! transient failures of retryable steps, stops at the first failure or signal, and never
//! prints a secret. Each action has one method, grouped by concern: `registry` (lookups, the
//! bake, manifests, tags, copies), `aws` (identity, repositories, login, bucket), `scan`,
//! `terraform` and `lambda` (smoke test, local serving). What the run learns goes into
//! [`State`], from which the result is rendered.

mod aws;
pub mod cleanup;
pub mod docker_config;
pub mod effects;
pub mod exec;
mod lambda;
pub mod memo;
mod registry;
mod scan;
mod terraform;
#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use crate::cmdline::{CmdLine, Resolved, Slot};
use crate::plan::{Action, Plan, Step, When};
use crate::report::{FunctionResult, Outcome, Report, RunResult, Status, StepRecord, StepResult};
use crate::settings::Environment;
use crate::tools::docker::Inspected;
use crate::tools::terraform::Outputs;
use crate::{retry, signals};
pub use effects::{Effect, Reply, World};
use exec::{Capture, Output};

/// What the run learned about one function.
#[derive(Debug, Default, Clone)]
pub struct FunctionState {
    /// The image to deploy: built, found by its content tag, or a rollback/promotion target.
    pub digest: Option<String>,
    /// What `live` named before this run, and whether that was a single image manifest.
    pub live: Option<(String, bool)>,
    pub built: bool,
    /// Where the digest came from when nothing was built: `found <reference>`, `copied from`.
    pub origin: Option<String>,
    /// The content tag as the lookup read it: verification reuses it when nothing was pushed.
    pub content_lookup: Option<(String, Inspected)>,
    /// Tags the run wrote or read back at the digest, in order.
    pub tags: Vec<String>,
    pub scan: Option<crate::scan::Report>,
    /// The commit and `SOURCE_DATE_EPOCH` that rebuild the image (from its labels).
    pub reproducible: Option<String>,
    /// The newest `deployed-<time>` of the digest in the environment it came from.
    pub ran_since: Option<String>,
    /// Local stack: the URL that answers for it.
    pub local_url: Option<String>,
}

/// What the run learned, step by step.
#[derive(Debug, Default)]
pub struct State {
    pub functions: BTreeMap<String, FunctionState>,
    pub missing_repositories: Option<Vec<String>>,
    /// The account layer's first run: no state bucket yet (or an interrupted first run).
    pub first_bootstrap: Option<bool>,
    pub changes: Option<bool>,
    pub outputs: Option<Outputs>,
    /// Every command line executed, slots filled, in order.
    pub executed: Vec<String>,
    pub records: Vec<StepRecord>,
}

impl State {
    /// What the run did, from what it learned: only what it produced.
    pub fn result(&self, plan: &Plan, error: Option<String>) -> RunResult {
        let outputs = self.outputs.clone().unwrap_or_default();
        let deployed = outputs.get("functions").map(|o| o.value.clone());
        let functions = self
            .functions
            .iter()
            .filter(|(name, _)| plan.functions.iter().any(|p| &p.name == *name))
            .map(|(name, f)| {
                let planned = plan.functions.iter().find(|p| &p.name == name);
                let field = |k: &str| {
                    deployed
                        .as_ref()
                        .and_then(|d| d[name.as_str()][k].as_str())
                        .map(str::to_string)
                };
                let image = if f.built {
                    Some("built".to_string())
                } else {
                    f.digest.as_ref().and(f.origin.clone())
                };
                FunctionResult {
                    name: name.clone(),
                    image,
                    image_uri: f
                        .digest
                        .as_ref()
                        .and_then(|d| planned.map(|p| format!("{}@{d}", p.image_repo))),
                    digest: f.digest.clone(),
                    tags: f.tags.clone(),
                    function_name: field("function_name"),
                    function_url: field("function_url"),
                    local_url: f.local_url.clone(),
                    scan: f.scan.clone(),
                    reproducible: f.reproducible.clone(),
                    ran: f.ran_since.clone(),
                }
            })
            .collect();
        RunResult {
            command: plan.command.to_string(),
            env: plan.env.clone(),
            status: if error.is_some() {
                Status::Failed
            } else {
                Status::Ok
            },
            error,
            functions,
            terraform: self
                .changes
                .map(|c| if c { "applied" } else { "no changes" }.to_string()),
            outputs: outputs
                .iter()
                .filter_map(|(k, v)| {
                    v.value
                        .as_str()
                        .filter(|s| s.len() <= 200 && !s.contains('\n'))
                        .map(|s| (k.clone(), s.to_string()))
                })
                .collect(),
            steps: self
                .records
                .iter()
                .map(|r| {
                    let (outcome, detail) = match &r.outcome {
                        Outcome::Done => ("ok", String::new()),
                        Outcome::Skipped(why) => ("skipped", why.clone()),
                        Outcome::Failed(why) => ("failed", why.clone()),
                    };
                    StepResult {
                        title: r.title.clone(),
                        outcome: outcome.into(),
                        detail,
                        seconds: (r.elapsed.as_secs_f64() * 10.0).round() / 10.0,
                    }
                })
                .collect(),
            commands: self.executed.clone(),
        }
    }

    fn function(&mut self, name: &str) -> &mut FunctionState {
        self.functions.entry(name.to_string()).or_default()
    }
    fn digest(&self, name: &str) -> Option<&str> {
        self.functions.get(name).and_then(|f| f.digest.as_deref())
    }
}

pub struct Runner<'a> {
    world: &'a mut dyn World,
    env: &'a Environment,
    report: &'a mut Report,
    /// First wait between tries of a retryable step; it doubles each time.
    backoff: Duration,
    /// Commands that undo what the run started, run when it ends (see `cleanup`).
    deferred: Vec<Resolved>,
    pub state: State,
}

impl<'a> Runner<'a> {
    pub fn new(
        world: &'a mut dyn World,
        env: &'a Environment,
        report: &'a mut Report,
    ) -> Runner<'a> {
        Runner {
            world,
            env,
            report,
            backoff: Duration::from_secs(2),
            deferred: vec![],
            state: State::default(),
        }
    }

    /// Runs every step; whatever happens (a failure, a signal), containers the run started
    /// are removed at the end.
    pub fn execute(&mut self, plan: &Plan) -> Result<()> {
        let result = self.steps(plan);
        while let Some(line) = self.deferred.pop() {
            match self.world.perform(Effect::Cleanup(line.clone())) {
                Ok(Reply::Output(out)) if out.code == 0 => {}
                Ok(_) => self.report.warn(&format!("cleanup: `{line}` failed")),
                Err(e) => self.report.warn(&format!("cleanup: `{line}`: {e:#}")),
            }
        }
        result
    }

    fn steps(&mut self, plan: &Plan) -> Result<()> {
        let total = plan.steps.len();
        for (i, step) in plan.steps.iter().enumerate() {
            if let Some(sig) = self.world.interrupted() {
                bail!(
                    "interrupted ({}) before step {}/{total} ({}): nothing more was started",
                    signals::name(sig),
                    i + 1,
                    step.title
                );
            }
            self.report.step_start(i + 1, total, &step.title);
            let started = Instant::now();
            let outcome = match self.skip_reason(step) {
                Some(why) => Ok(Outcome::Skipped(why)),
                None => self.step(step).map(|()| Outcome::Done),
            };
            self.remember(step, &outcome);
            let record = StepRecord {
                title: step.title.clone(),
                outcome: match &outcome {
                    Ok(o) => o.clone(),
                    Err(e) => Outcome::Failed(format!("{e:#}")),
                },
                elapsed: started.elapsed(),
            };
            self.report.step_end(&record);
            self.state.records.push(record);
            outcome.with_context(|| format!("{} ({})", step.title, self.env.name))?;
        }
        Ok(())
    }

    /// Why `step` does not run: its condition is false, or an earlier run already did it.
    fn skip_reason(&mut self, step: &Step) -> Option<String> {
        if let Some(why) = self.done_before(step) {
            return Some(why);
        }
        let s = &self.state;
        let f = |name: &str| s.functions.get(name).cloned().unwrap_or_default();
        match &step.when {
            When::Always | When::InitStale => None,
            When::RepositoriesMissing => match &s.missing_repositories {
                Some(missing) if !missing.is_empty() => None,
                _ => Some("every ECR repository exists".into()),
            },
            // A state with resources of an older configuration may hold pending moves, which
            // a targeted apply refuses; a new environment's state holds nothing to move.
            When::SomeRepositoriesMissing => match (&s.missing_repositories, &step.action) {
                (Some(missing), _) if missing.is_empty() => {
                    Some("every ECR repository exists".into())
                }
                (Some(missing), _) if missing.len() < self.env.functions.len() => None,
                _ => Some("no repository exists yet: a new environment, nothing to carry".into()),
            },
            When::AnyImageMissing => match &step.action {
                Action::Bake { targets, .. }
                    if targets.iter().all(|t| s.digest(&t.name).is_some()) =>
                {
                    Some("every content tag is already in the registry".into())
                }
                _ => None,
            },
            When::ImageFound(name) => {
                let f = f(name);
                (f.digest.is_none() || f.built).then(|| "the build pushed every tag".into())
            }
            When::ChangesPlanned => (s.changes != Some(true)).then(|| "no changes".into()),
            When::LiveMoves(name) => {
                let f = f(name);
                (f.live.as_ref().map(|l| &l.0) == f.digest.as_ref())
                    .then(|| "`live` already points at this image".into())
            }
            // Whenever `live` moves (also when a run that applied failed before tagging: `live`
            // then still names the image the function ran before), but never from a stale index.
            When::PreviousMoves(name) => match (f(name).live, f(name).digest) {
                (None, _) => Some("no image was live".into()),
                (Some((_, false)), _) => {
                    Some("`live` was a stale index, never an image the function ran".into())
                }
                (Some((live, true)), digest) if Some(&live) == digest.as_ref() => {
                    Some("`live` stays on this image".into())
                }
                _ => None,
            },
            When::FirstBootstrap => {
                (s.first_bootstrap != Some(true)).then(|| "the state bucket exists".into())
            }
            When::Bootstrapped => (s.first_bootstrap != Some(false))
                .then(|| "first run: the state bucket does not exist yet".into()),
        }
    }

    fn step(&mut self, step: &Step) -> Result<()> {
        match &step.action {
            Action::Note(text) => {
                self.report.info(text);
                Ok(())
            }
            Action::Refuse(why) => bail!("{why}"),
            Action::CheckIdentity { account_id, region } => self.check_identity(account_id, region),
            Action::CheckRepositories { names, required } => {
                self.check_repositories(names, *required)
            }
            Action::Login {
                registry,
                cmd,
                source,
            } => self.login(registry, cmd, source.as_ref()),
            Action::Lookup {
                reference,
                sets,
                required,
                cmd,
            } => self.lookup_step(reference, sets, required.as_deref(), cmd),
            Action::Run { cmd, retry } => {
                let tries = if *retry { retry::TRIES } else { 1 };
                self.run(cmd, tries, Capture::Stream).map(drop)
            }
            Action::Bake {
                file,
                metadata,
                targets,
                cmd,
            } => self.bake(file, metadata, targets, cmd),
            Action::VerifyManifest {
                function,
                reference,
                platform,
                cmd,
            } => self.verify(function, &reference.to_string(), *platform, cmd),
            Action::CheckRan { function, places } => self.check_ran(function, places),
            Action::Smoke {
                function,
                container,
                check,
                lines,
            } => self.smoke(function, container, check, lines),
            Action::ServeLocal {
                endpoint_url,
                region,
                functions,
            } => self.serve_local(endpoint_url, region, functions),
            Action::Retag {
                function,
                repository,
                slot,
                tags,
                verify,
            } => self.retag(function, repository, slot, tags, verify),
            Action::WriteVars { path, functions } => self.write_vars(path, functions),
            Action::TerraformPlan { cmd, show } => self.terraform_plan(cmd, show),
            Action::Confirm { prompt } => match self
                .world
                .perform(Effect::Confirm(prompt.clone()))?
            {
                Reply::Yes(true) => Ok(()),
                _ => bail!("not confirmed: nothing was applied (pass --yes to skip the question)"),
            },
            Action::Apply { cmd } => self.apply(cmd),
            Action::Outputs { cmd } => self.outputs(cmd),
            Action::MirrorToEmulator {
                function,
                repository,
                tags,
            } => self.mirror(function, repository, tags),
            Action::ScanGate {
                function,
                repository,
                policy,
            } => self.scan_gate(function, repository, policy),
            Action::CopyImage {
                function,
                from,
                repository,
                tag,
            } => self.copy_image(function, from, repository, tag),
            Action::CheckBucket {
                bucket,
                local_state,
                required,
            } => self.check_bucket(bucket, local_state.as_deref(), *required),
            Action::CopyDirs { copies } => {
                for (from, to) in copies {
                    self.world.perform(Effect::CopyDir {
                        from: from.clone(),
                        to: to.clone(),
                    })?;
                    self.report.info(&format!("copied {from}/ to {to}/"));
                }
                Ok(())
            }
            Action::WriteFile { path, contents } => {
                self.world.perform(Effect::WriteFile {
                    path: path.clone(),
                    contents: contents.clone(),
                })?;
                self.report.info(&format!("wrote {path}"));
                Ok(())
            }
            Action::RemoveFiles { paths } => {
                self.world.perform(Effect::RemovePaths(paths.clone()))?;
                self.report.info(&format!("deleted {}", paths.join(", ")));
                Ok(())
            }
        }
    }

    /// Fills every slot from what the run learned; a value not known yet is an error.
    fn resolve(&self, cmd: &CmdLine) -> Result<Resolved> {
        cmd.resolve(|slot| self.slot_value(slot).map(|v| vec![v]))
    }

    fn slot_value(&self, slot: &Slot) -> Result<String> {
        let known = match slot {
            Slot::Digest(name) => self.state.digest(name).map(str::to_string),
            Slot::Live(name) => self
                .state
                .functions
                .get(name)
                .and_then(|f| f.live.as_ref())
                .map(|l| l.0.clone()),
            Slot::BootstrapRoot => self.state.first_bootstrap.map(|first| match first {
                true => crate::tools::bootstrap::first_run_root(self.env),
                false => self.env.bootstrap.dir.clone(),
            }),
            Slot::LambdaApi | Slot::LambdaNetwork | Slot::ImageCommand => None,
        };
        known.with_context(|| format!("{slot} is not known at this point of the plan"))
    }

    /// Runs a command; a transient failure is tried again, up to `tries`, with doubling waits
    /// that a signal cuts short.
    fn run(&mut self, cmd: &CmdLine, tries: u32, capture: Capture) -> Result<Output> {
        let line = self.resolve(cmd)?;
        self.run_resolved(line, tries, capture, None)
    }

    fn run_resolved(
        &mut self,
        line: Resolved,
        tries: u32,
        capture: Capture,
        stdin: Option<crate::secret::Secret>,
    ) -> Result<Output> {
        let mut attempt = 1;
        loop {
            self.report.detail(&format!("$ {line}"));
            self.state.executed.push(line.to_string());
            let reply = self.world.perform(Effect::Run {
                line: line.clone(),
                capture,
                stdin: stdin.clone(),
            })?;
            let Reply::Output(out) = reply else {
                bail!("`{line}`: the world answered {reply:?}");
            };
            if out.code == 0 {
                return Ok(out);
            }
            let failed = retry::Failed::new(&line, out.code, &out.stderr_tail);
            if attempt >= tries || failed.failure != retry::Failure::Transient {
                return Err(failed.into());
            }
            let wait = self.backoff * 2u32.pow(attempt - 1);
            self.report.warn(&format!(
                "attempt {attempt}/{tries} failed with a transient error; retrying in {:.1}s",
                wait.as_secs_f64()
            ));
            self.world.perform(Effect::Sleep(wait))?;
            attempt += 1;
        }
    }

    /// An effect whose answer must be of one kind.
    fn ask(&mut self, effect: Effect) -> Result<Reply> {
        self.world.perform(effect)
    }

    /// The names of the functions the plan built, found, or moved.
    pub fn functions_seen(&self) -> BTreeSet<String> {
        self.state.functions.keys().cloned().collect()
    }
}
