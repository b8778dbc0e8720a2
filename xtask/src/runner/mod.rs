//! The runner: executes a plan's steps in order, times them, retries the transient failures of
//! retryable steps, stops at the first failure or signal, and never prints a secret. Each
//! action has one method; spawning lives in `exec`, the retry policy in `retry`, signal
//! forwarding in `signals`.

mod aws_steps;
mod bootstrap_steps;
mod cleanup;
pub mod docker_config;
pub mod exec;
pub mod retry;
pub mod signals;

use std::io::Write;
use std::time::{Duration, Instant, SystemTime};

use anyhow::{Context, Result, bail};
use xshell::Shell;

use crate::aws::{Aws, Token};
use crate::cmdline::CmdLine;
use crate::plan::{Action, CONTAINER, DIGEST, LIVE_DIGEST, NOW, Plan, Slot, Step, When};
use crate::report::{Outcome, Ran, Report, StepRecord};
use crate::settings::{Environment, Platform};
use crate::tools::docker::{self, Inspected};
use crate::tools::terraform::{self, Outputs};
use crate::{facts, smoke};
use exec::{Capture, Output};
use retry::{Failure, TRIES};

/// What the run learned, step by step.
#[derive(Debug, Default)]
pub struct State {
    pub digest: Option<String>,
    pub live_digest: Option<String>,
    pub repository_missing: Option<bool>,
    /// The account layer's first run: no state bucket yet (or an interrupted first run).
    pub first_bootstrap: Option<bool>,
    pub built: bool,
    pub changes: Option<bool>,
    pub outputs: Option<Outputs>,
    /// Every command line executed, placeholders filled, in order.
    pub executed: Vec<String>,
    pub records: Vec<StepRecord>,
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
        let (_files, leftovers) = cleanup::Files::new(&plan.cleanup);
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
            let outcome = match self.skip_reason(step.when) {
                Some(why) => Ok(Outcome::Skipped(why)),
                None => self.step(step).map(|()| Outcome::Done),
            };
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

    fn skip_reason(&self, when: When) -> Option<String> {
        let s = &self.state;
        let run = match when {
            When::Always => true,
            When::RepositoryMissing => s.repository_missing == Some(true),
            When::ImageMissing => s.digest.is_none(),
            When::ChangesPlanned => s.changes == Some(true),
            When::LiveMoves => s.live_digest != s.digest,
            // Only when the function moves: a `live` tag repaired after a run that applied but
            // failed to tag names no image the function ran before.
            When::PreviousMoves => {
                s.changes == Some(true) && s.live_digest.is_some() && s.live_digest != s.digest
            }
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
            When::PreviousMoves => "the function stays on its image, or none was live".to_string(),
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
            Action::Build { cmd, metadata_file } => self.build(cmd, metadata_file),
            Action::VerifyManifest {
                reference,
                platform,
                cmd,
            } => self.verify(reference, *platform, cmd),
            Action::Smoke {
                image,
                run,
                port,
                logs,
                remove,
            } => self.smoke(image, run, port, logs, remove),
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
                        "terraform apply failed (exit {}); the pushed image stays in place",
                        out.code
                    );
                }
                Ok(())
            }
            Action::Outputs { cmd } => self.outputs(cmd),
            Action::CheckBucket {
                bucket,
                local_state,
                required,
            } => self.check_bucket(bucket, local_state.as_deref(), *required),
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

    fn lookup_step(
        &mut self,
        reference: &str,
        sets: Slot,
        required: bool,
        cmd: &CmdLine,
    ) -> Result<()> {
        let line = self.resolve(cmd)?;
        match (self.lookup(&line)?, required) {
            (Some(found), _) => {
                self.report
                    .info(&format!("{reference} is {}", found.digest));
                *self.slot(sets) = Some(found.digest);
                Ok(())
            }
            (None, true) => bail!(
                "{reference} is not in the registry: pass --to with a tag or digest that was \
                 pushed (see `docker buildx imagetools inspect`)"
            ),
            (None, false) => {
                self.report
                    .info(&format!("{reference} is not in the registry"));
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

    fn build(&mut self, cmd: &CmdLine, metadata_file: &str) -> Result<()> {
        let _ = std::fs::remove_file(self.sh.current_dir().join(metadata_file));
        if let Some(parent) = std::path::Path::new(metadata_file).parent() {
            self.sh.create_dir(parent)?;
        }
        let line = self.resolve(cmd)?;
        self.run_with_retry(&line, TRIES, Capture::Stream)?;
        let text = self
            .sh
            .read_file(metadata_file)
            .with_context(|| format!("buildx wrote no metadata file {metadata_file}"))?;
        let meta: docker::BuildMetadata = serde_json::from_str(&text)
            .with_context(|| format!("{metadata_file} has no containerimage.digest"))?;
        self.report
            .info(&format!("pushed {}@{}", self.env.image_repo(), meta.digest));
        self.state.digest = Some(meta.digest);
        self.state.built = true;
        Ok(())
    }

    fn verify(&mut self, reference: &str, platform: Platform, cmd: &CmdLine) -> Result<()> {
        let line = self.resolve(cmd)?;
        let found = self
            .lookup(&line)?
            .with_context(|| format!("{reference} is not in the registry after the push"))?;
        let expected = self.state.digest.clone().context("no digest to verify")?;
        docker::verify_manifest(&found, &expected, platform)?;
        self.report.info(&format!(
            "{reference}: single {platform} image manifest, {}",
            found.digest
        ));
        Ok(())
    }

    fn smoke(
        &mut self,
        image: &str,
        run: &CmdLine,
        port: &CmdLine,
        logs: &CmdLine,
        remove: &CmdLine,
    ) -> Result<()> {
        let image = image.replace(DIGEST, self.state.digest.as_deref().unwrap_or(""));
        let out = self.run_with_retry(&self.resolve(run)?, 1, Capture::Stdout)?;
        let container = out.stdout.trim().to_string();
        let with_id = |cmd: &CmdLine| cmd.resolve(&[(CONTAINER, &container)]);
        // Queued first, so a signal or a failure below still removes the container.
        let remove = with_id(remove);
        self.deferred.push(remove.clone());
        let result = self.smoke_container(&with_id(port));
        if result.is_err() {
            if let Ok(out) = self.run_once(&with_id(logs), Capture::Quiet) {
                self.report.info(&format!(
                    "container logs:\n{}\n{}",
                    out.stdout,
                    out.stderr_tail.join("\n")
                ));
            }
        }
        self.record(&remove);
        let _ = exec::run_cleanup(self.sh, &remove);
        self.deferred.forget(&remove);
        result.with_context(|| format!("smoke test of {image}"))
    }

    fn smoke_container(&mut self, port: &CmdLine) -> Result<()> {
        let port = self.run_with_retry(port, 1, Capture::Quiet)?;
        let address = port
            .stdout
            .lines()
            .next()
            .context("docker port printed nothing")?
            .trim()
            .to_string();
        let seen = smoke::check(
            &format!("http://{address}"),
            Duration::from_secs(30),
            3,
            0.05,
        )?;
        self.report.info(&format!("/health: {}", seen.health));
        self.report.info(&format!(
            "/stream: {} events, ids {:?}",
            seen.ids.len(),
            seen.ids
        ));
        Ok(())
    }

    fn retag(
        &mut self,
        repository: &str,
        slot: Slot,
        tags: &[String],
        verify: &[CmdLine],
    ) -> Result<()> {
        let digest = self.slot(slot).clone().context("no digest to tag")?;
        let tags: Vec<String> = tags.iter().map(|t| t.replace(NOW, &self.now)).collect();
        self.copy_tags(repository, &digest, &tags)?;
        for (tag, cmd) in tags.iter().zip(verify) {
            let line = self.resolve(cmd)?;
            let found = self
                .lookup(&line)?
                .with_context(|| format!("{repository}:{tag} was not created"))?;
            if found.digest != digest {
                bail!(
                    "{repository}:{tag} points at {}, not {digest}: the registry changed the \
                     manifest",
                    found.digest
                );
            }
        }
        self.report
            .info(&format!("{} -> {digest}", tags.join(", ")));
        Ok(())
    }

    fn terraform_plan(&mut self, cmd: &CmdLine, show: &CmdLine) -> Result<()> {
        let line = self.resolve(cmd)?;
        let out = self.run_once(&line, Capture::Stream)?;
        match out.code {
            0 => {
                self.report.info("no changes: nothing to apply");
                self.state.changes = Some(false);
            }
            2 => {
                self.state.changes = Some(true);
                let show = self.resolve(show)?;
                let json = self.run_once(&show, Capture::Stdout)?;
                for line in terraform::summarize_plan(&json.stdout)? {
                    self.report.info(&line);
                }
            }
            code => bail!("terraform plan failed (exit {code})"),
        }
        Ok(())
    }

    fn outputs(&mut self, cmd: &CmdLine) -> Result<()> {
        let line = self.resolve(cmd)?;
        let out = self.run_once(&line, Capture::Stdout)?;
        let outputs = terraform::parse_outputs(&out.stdout)?;
        for key in ["function_name", "function_url"] {
            if let Some(v) = outputs.get(key).and_then(|o| o.value.as_str()) {
                self.report.info(&format!("{key}: {v}"));
            }
        }
        self.state.outputs = Some(outputs);
        Ok(())
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
        Ok(cmd.resolve(&[(DIGEST, &digest), (LIVE_DIGEST, &live), (NOW, &self.now)]))
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

/// Asks on the terminal; only `yes` goes on. The answer is read on another thread so that a
/// signal stops the wait (the read itself restarts after a signal).
fn confirm(prompt: &str) -> Result<()> {
    eprint!("    {prompt} Type `yes` to apply: ");
    let _ = std::io::stderr().flush();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut answer = String::new();
        let read = std::io::stdin().read_line(&mut answer);
        let _ = tx.send(read.map(|_| answer));
    });
    let answer = loop {
        if let Some(sig) = signals::received() {
            eprintln!();
            bail!(
                "interrupted ({}) at the confirmation: nothing was applied",
                signals::name(sig)
            );
        }
        match rx.recv_timeout(Duration::from_millis(100)) {
            Ok(read) => break read?,
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {}
            Err(e) => return Err(e.into()),
        }
    };
    // A terminal echoed the newline; piped input did not.
    if !std::io::IsTerminal::is_terminal(&std::io::stdin()) {
        eprintln!();
    }
    if answer.trim() != "yes" {
        bail!("not confirmed: nothing was applied (pass --yes to skip the question)");
    }
    Ok(())
}
