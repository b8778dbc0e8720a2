//! The runner: executes a plan's steps in order, times them, retries the transient failures of
//! retryable steps, stops at the first failure or signal, and never prints a secret. Each
//! action has one method; spawning lives in `exec`, the retry policy in `retry`, signal
//! forwarding in `signals`.

mod aws_steps;
mod bootstrap_steps;
mod cleanup;
pub mod docker_config;
pub mod exec;
mod lambda_steps;
mod memo;
mod registry_steps;
pub mod retry;
mod scan;
pub mod signals;
mod state_outputs;
mod tags;
mod terraform_steps;

use terraform_steps::{confirm, copy_dir};

use std::time::{Duration, Instant, SystemTime};

use anyhow::{Context, Result, bail};
use xshell::Shell;

use crate::aws::{Aws, Token};
use crate::cmdline::{BOOTSTRAP_ROOT, CmdLine};
use crate::facts;
use crate::plan::{Action, DIGEST, LIVE_DIGEST, NOW, Plan, RUN, Slot, Step, When};
use crate::report::{Outcome, Ran, Report, StepRecord};
use crate::settings::Environment;
use crate::tools::docker::{self, Inspected};
use crate::tools::terraform::Outputs;
use exec::{Capture, Output};
use retry::{Failure, TRIES};

/// What the run learned, step by step.
#[derive(Debug, Default)]
pub struct State {
    pub digest: Option<String>,
    pub live_digest: Option<String>,
    /// `live` named a single image manifest (not an index that `imagetools create` made).
    pub live_is_image: Option<bool>,
    /// The content tag as the lookup read it: verification reuses it when nothing was pushed.
    pub content_lookup: Option<(String, Inspected)>,
    pub repository_missing: Option<bool>,
    /// The account layer's first run: no state bucket yet (or an interrupted first run).
    pub first_bootstrap: Option<bool>,
    pub built: bool,
    pub changes: Option<bool>,
    pub outputs: Option<Outputs>,
    /// Every command line executed, placeholders filled, in order.
    pub executed: Vec<String>,
    pub records: Vec<StepRecord>,
    /// The scan gate's verdict (`crate::scan::Verdict::json`), for the summary.
    pub scan: Option<serde_json::Value>,
    /// The commit and `SOURCE_DATE_EPOCH` that rebuild the image (from its labels).
    pub reproducible: Option<String>,
}

pub struct Runner<'a> {
    sh: &'a Shell,
    env: &'a Environment,
    report: &'a mut Report,
    aws: Option<Aws>,
    /// The registry credentials from the login step, for registry-side writes.
    login: Option<Token>,
    /// First wait between tries of a retryable step; it doubles each time.
    backoff: Duration,
    /// One `<now>` for the whole run, so every command naming a `deployed-` tag agrees.
    now: String,
    /// Commands that undo what the run started, run when it ends (see `cleanup`).
    deferred: cleanup::Deferred,
    pub state: State,
}

impl State {
    /// The run as the JSON result reports it.
    pub fn ran(&self) -> Ran<'_> {
        Ran {
            digest: self.digest.as_deref(),
            built: self.built,
            changes: self.changes,
            outputs: self.outputs.as_ref(),
            executed: &self.executed,
            records: &self.records,
            scan: self.scan.as_ref(),
            reproducible: self.reproducible.as_deref(),
        }
    }
}

impl<'a> Runner<'a> {
    pub fn new(sh: &'a Shell, env: &'a Environment, report: &'a mut Report) -> Runner<'a> {
        signals::install();
        Runner {
            sh,
            env,
            report,
            aws: None,
            login: None,
            backoff: Duration::from_secs(2),
            now: facts::utc_stamp(SystemTime::now()),
            deferred: cleanup::Deferred::default(),
            state: State::default(),
        }
    }

    /// Runs every step with the run's private `DOCKER_CONFIG`; whatever happens (a failure,
    /// a signal), the plan's cleanup files, containers the run started and that configuration
    /// are removed at the end.
    pub fn execute(&mut self, plan: &Plan) -> Result<()> {
        let sh = self.sh;
        let (_files, leftovers) = cleanup::Files::new(&plan.cleanup, RUN);
        for file in leftovers {
            self.report.warn(&format!(
                "removed {} left by an earlier run that did not finish (it is never applied)",
                file.display()
            ));
        }
        let docker_config = docker_config::DockerConfig::for_run()?;
        // Every docker command of the run goes through this shell, so every one of them
        // (login, build, lookups, smoke test) reads and writes the run's configuration.
        let _docker_env = docker_config
            .as_ref()
            .map(|dc| sh.push_env("DOCKER_CONFIG", dc.path()));
        if docker_config.is_none() {
            self.report.detail(
                "docker: your config.json names a credential helper, which keeps the registry token",
            );
        }
        let result = self.steps(plan);
        for failed in self.deferred.run(sh) {
            self.report.warn(&format!("cleanup: {failed}"));
        }
        result
    }

    fn steps(&mut self, plan: &Plan) -> Result<()> {
        let total = plan.steps.len();
        for (i, step) in plan.steps.iter().enumerate() {
            if let Some(sig) = signals::received() {
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
    fn skip_reason(&self, step: &Step) -> Option<String> {
        let when = step.when;
        if let Some(why) = self.done_before(step) {
            return Some(why);
        }
        let s = &self.state;
        let run = match when {
            When::Always => true,
            When::RepositoryMissing => s.repository_missing == Some(true),
            When::ImageMissing => s.digest.is_none(),
            When::ChangesPlanned => s.changes == Some(true),
            When::LiveMoves => s.live_digest != s.digest,
            // Whenever `live` moves (also when a run that applied failed before tagging: `live`
            // then still names the image the function ran before), but never from a stale index.
            When::PreviousMoves => {
                s.live_digest.is_some()
                    && s.live_digest != s.digest
                    && s.live_is_image == Some(true)
            }
            When::ImageFound => s.digest.is_some() && !s.built,
            // Decided by `done_before`, which knows the record.
            When::InitStale => true,
            When::FirstBootstrap => s.first_bootstrap == Some(true),
            When::Bootstrapped => s.first_bootstrap == Some(false),
        };
        (!run).then(|| match when {
            When::RepositoryMissing => "the ECR repository exists".to_string(),
            When::ImageMissing => format!(
                "already in the registry as {}",
                s.digest.as_deref().unwrap_or_default()
            ),
            When::ChangesPlanned => "no changes".to_string(),
            When::LiveMoves => "`live` already points at this image".to_string(),
            When::PreviousMoves => match (&s.live_digest, s.live_is_image) {
                (None, _) => "no image was live".to_string(),
                (Some(_), Some(false)) => {
                    "`live` was a stale index, never an image the function ran".to_string()
                }
                _ => "`live` stays on this image".to_string(),
            },
            When::ImageFound => "the build pushed every tag".to_string(),
            When::InitStale => unreachable!("InitStale always runs unless done before"),
            When::FirstBootstrap => "the state bucket exists".to_string(),
            When::Bootstrapped => "first run: the state bucket does not exist yet".to_string(),
            When::Always => unreachable!(),
        })
    }

    pub(super) fn aws(&mut self) -> Result<&Aws> {
        if self.aws.is_none() {
            self.aws = Some(Aws::connect(self.env)?);
        }
        Ok(self.aws.as_ref().expect("set above"))
    }

    fn step(&mut self, step: &Step) -> Result<()> {
        match &step.action {
            Action::Note(text) => {
                self.report.info(text);
                Ok(())
            }
            Action::CheckIdentity { account_id, region } => self.check_identity(account_id, region),
            Action::CheckRepository { name, required } => self.check_repository(name, *required),
            Action::Login { registry, cmd } => self.login(registry, cmd),
            Action::Lookup {
                reference,
                sets,
                required,
                cmd,
            } => self.lookup_step(reference, *sets, *required, cmd),
            Action::Run { cmd, retry } => {
                let line = self.resolve(cmd)?;
                let tries = if *retry { TRIES } else { 1 };
                self.run_with_retry(&line, tries, Capture::Stream).map(drop)
            }
            Action::Build {
                cmd,
                metadata_file,
                push,
                archive,
            } => self.build(cmd, metadata_file, push, archive.as_deref()),
            Action::VerifyManifest {
                reference,
                platform,
                cmd,
            } => self.verify(reference, *platform, cmd),
            Action::Smoke { image, lines } => self.smoke(image, lines),
            Action::ServeLocal {
                endpoint_url,
                region,
                platform,
            } => self.serve_local(endpoint_url, region, *platform),
            Action::Retag {
                repository,
                slot,
                tags,
                verify,
            } => self.retag(repository, *slot, tags, verify),
            Action::TerraformPlan { cmd, show } => self.terraform_plan(cmd, show),
            Action::Confirm { prompt } => confirm(prompt),
            Action::Apply { cmd } => {
                let line = self.resolve(cmd)?;
                let out = self.run_once(&line, Capture::Stream)?;
                if out.code != 0 {
                    bail!(
                        "terraform apply failed (exit {}); the pushed image stays in place{}",
                        out.code,
                        self.terraform_hint(&out.stderr_tail)
                    );
                }
                Ok(())
            }
            Action::Outputs { cmd } => self.outputs(cmd),
            Action::MirrorToEmulator { repository, tags } => self.mirror(repository, tags),
            Action::ScanGate { repository, policy } => self.scan_gate(repository, policy),
            Action::CheckBucket {
                bucket,
                local_state,
                required,
            } => self.check_bucket(bucket, local_state.as_deref(), *required),
            Action::CopyDirs { copies } => {
                for (from, to) in copies {
                    let _ = self.sh.remove_path(to);
                    copy_dir(
                        &self.sh.current_dir().join(from),
                        &self.sh.current_dir().join(to),
                    )
                    .with_context(|| format!("copying {from} to {to}"))?;
                    self.report.info(&format!("copied {from}/ to {to}/"));
                }
                Ok(())
            }
            Action::WriteFile { path, contents } => {
                self.sh.write_file(path, contents)?;
                self.report.info(&format!("wrote {path}"));
                Ok(())
            }
            Action::RemoveFiles { paths } => {
                for path in paths {
                    if self.sh.path_exists(path) {
                        self.sh.remove_path(path)?;
                        self.report.info(&format!("deleted {path}"));
                    }
                }
                Ok(())
            }
        }
    }

    fn slot(&mut self, slot: Slot) -> &mut Option<String> {
        match slot {
            Slot::Digest => &mut self.state.digest,
            Slot::LiveDigest => &mut self.state.live_digest,
        }
    }

    /// Fills `<digest>`, `<live-digest>` and `<now>`; a missing value is an error.
    fn resolve(&self, cmd: &CmdLine) -> Result<CmdLine> {
        let digest = self.state.digest.clone().unwrap_or_default();
        let live = self.state.live_digest.clone().unwrap_or_default();
        for (name, value) in [(DIGEST, &digest), (LIVE_DIGEST, &live)] {
            if value.is_empty() && cmd.placeholders().contains(&name) {
                bail!("{name} is not known at this point of the plan");
            }
        }
        let run = std::process::id().to_string();
        let bootstrap_root = match self.state.first_bootstrap {
            Some(true) => crate::tools::bootstrap::first_run_root(self.env),
            Some(false) => self.env.bootstrap.dir.clone(),
            None if cmd.placeholders().contains(&BOOTSTRAP_ROOT) => {
                bail!("{BOOTSTRAP_ROOT} is not known before the state bucket lookup")
            }
            None => String::new(),
        };
        Ok(cmd.resolve(&[
            (DIGEST, &digest),
            (LIVE_DIGEST, &live),
            (NOW, &self.now),
            (RUN, &run),
            (BOOTSTRAP_ROOT, &bootstrap_root),
        ]))
    }

    fn lookup(&mut self, line: &CmdLine) -> Result<Option<Inspected>> {
        match self.run_with_retry(line, TRIES, Capture::Lookup) {
            Ok(out) => Ok(Some(docker::parse_inspect(&out.stdout)?)),
            Err(e)
                if e.downcast_ref::<retry::Failed>()
                    .is_some_and(|f| f.failure == Failure::NotFound) =>
            {
                Ok(None)
            }
            Err(e) => Err(e),
        }
    }

    fn record(&mut self, line: &CmdLine) {
        self.report.detail(&format!("$ {line}"));
        self.state.executed.push(line.to_string());
    }

    fn run_with_retry(&mut self, line: &CmdLine, tries: u32, capture: Capture) -> Result<Output> {
        self.state.executed.push(line.to_string());
        retry::run(self.sh, self.report, line, tries, self.backoff, capture)
    }

    fn run_once(&mut self, line: &CmdLine, capture: Capture) -> Result<Output> {
        self.record(line);
        exec::run(self.sh, line, None, capture, self.report.json)
    }
}
