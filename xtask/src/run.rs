//! The runner: executes a plan's steps in order, times them, retries the transient failures of
//! retryable steps, stops at the first failure, forwards Ctrl-C once to the running child, and
//! never prints a secret.

use std::{
    collections::VecDeque,
    io::{BufRead, BufReader, Read, Write},
    process::{Command, Stdio},
    sync::{
        Mutex,
        atomic::{AtomicBool, AtomicI32, Ordering},
    },
    time::{Duration, Instant, SystemTime},
};

use anyhow::{Context, Result, bail};
use serde_json::{Value, json};
use xshell::Shell;

use crate::aws::{Aws, Secret, Token};
use crate::http;
use crate::plan::{Action, CONTAINER, CmdLine, DIGEST, LIVE_DIGEST, NOW, Plan, Slot, Step, When};
use crate::registry;
use crate::report::{Outcome, Report, StepRecord, step_json};
use crate::settings::{Environment, Platform};

/// What the run learned, step by step.
#[derive(Debug, Default)]
pub struct State {
    pub digest: Option<String>,
    pub live_digest: Option<String>,
    pub repository_missing: Option<bool>,
    pub built: bool,
    pub changes: Option<bool>,
    pub outputs: Option<Value>,
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
    pub state: State,
}

const TRIES: u32 = 3;

impl<'a> Runner<'a> {
    pub fn new(sh: &'a Shell, env: &'a Environment, report: &'a mut Report) -> Runner<'a> {
        install_sigint_handler();
        Runner {
            sh,
            env,
            report,
            aws: None,
            login: None,
            backoff: Duration::from_secs(2),
            now: utc_stamp(SystemTime::now()),
            state: State::default(),
        }
    }

    /// Runs every step; the plan's cleanup files are deleted whatever happens.
    pub fn execute(&mut self, plan: &Plan) -> Result<()> {
        let result = self.steps(plan);
        for file in &plan.cleanup {
            let _ = self.sh.remove_path(file);
        }
        result
    }

    fn steps(&mut self, plan: &Plan) -> Result<()> {
        let total = plan.steps.len();
        for (i, step) in plan.steps.iter().enumerate() {
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
            When::Always => unreachable!(),
        })
    }

    fn aws(&mut self) -> Result<&Aws> {
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
            Action::CheckRepository { name, required } => {
                let exists = self.aws()?.repository_exists(name)?;
                self.state.repository_missing = Some(!exists);
                if !exists && *required {
                    bail!(
                        "ECR repository `{name}` does not exist in account {} ({}): run \
                         `cargo xtask deploy --env {}` first (it creates the repository)",
                        self.env.account_id,
                        self.env.region,
                        self.env.name
                    );
                }
                self.report.info(if exists {
                    "the repository exists"
                } else {
                    "the repository does not exist yet: first deploy"
                });
                Ok(())
            }
            Action::Login { registry, cmd } => {
                let token = self.aws()?.login_token()?;
                if self.env.local.is_none() {
                    let endpoint = token.proxy_endpoint.trim_start_matches("https://");
                    if endpoint != registry {
                        bail!(
                            "ECR hands out a token for {endpoint}, but the settings point at \
                             {registry}: check `account_id` and `region` for `{}`",
                            self.env.name
                        );
                    }
                }
                let line = self.resolve(cmd)?;
                let out = self.run_once(&line, Some(&token.password), Capture::Quiet)?;
                if out.code != 0 {
                    bail!(
                        "docker login to {registry} failed:\n{}",
                        out.stderr_tail.join("\n")
                    );
                }
                self.report
                    .info(&format!("logged in to {registry} as {}", token.username));
                self.login = Some(token);
                Ok(())
            }
            Action::Lookup {
                reference,
                sets,
                required,
                cmd,
            } => {
                let line = self.resolve(cmd)?;
                let found = self.lookup(&line)?;
                match (found, required) {
                    (Some(found), _) => {
                        self.report
                            .info(&format!("{reference} is {}", found.digest));
                        match sets {
                            Slot::Digest => self.state.digest = Some(found.digest),
                            Slot::LiveDigest => self.state.live_digest = Some(found.digest),
                        }
                        Ok(())
                    }
                    (None, true) => bail!(
                        "{reference} is not in the registry: pass --to with a tag or digest \
                         that was pushed (see `docker buildx imagetools inspect`)"
                    ),
                    (None, false) => {
                        self.report
                            .info(&format!("{reference} is not in the registry"));
                        Ok(())
                    }
                }
            }
            Action::Run { cmd, retry } => {
                let line = self.resolve(cmd)?;
                let tries = if *retry { TRIES } else { 1 };
                self.run_with_retry(&line, tries, Capture::Stream).map(drop)
            }
            Action::Build { cmd, metadata_file } => {
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
                let meta: Value = serde_json::from_str(&text)?;
                let digest = meta["containerimage.digest"]
                    .as_str()
                    .context("the build metadata has no containerimage.digest")?
                    .to_string();
                self.report
                    .info(&format!("pushed {}@{digest}", self.env.image_repo()));
                self.state.digest = Some(digest);
                self.state.built = true;
                Ok(())
            }
            Action::VerifyManifest {
                reference,
                platform,
                cmd,
            } => {
                let line = self.resolve(cmd)?;
                let found = self.lookup(&line)?.with_context(|| {
                    format!("{reference} is not in the registry after the push")
                })?;
                let expected = self.state.digest.clone().context("no digest to verify")?;
                verify_manifest(&found, &expected, *platform)?;
                self.report.info(&format!(
                    "{reference}: single {} image manifest, {}",
                    platform, found.digest
                ));
                Ok(())
            }
            Action::Smoke {
                image,
                run,
                port,
                logs,
                remove,
            } => {
                let image = image.replace(DIGEST, self.state.digest.as_deref().unwrap_or(""));
                let out = self.run_with_retry(&self.resolve(run)?, 1, Capture::Stdout)?;
                let container = out.stdout.trim().to_string();
                let with_id = |cmd: &CmdLine| cmd.resolve(&[(CONTAINER, &container)]);
                let result = self.smoke_container(&with_id(port));
                if result.is_err() {
                    if let Ok(out) = self.run_once(&with_id(logs), None, Capture::Quiet) {
                        self.report.info(&format!(
                            "container logs:\n{}\n{}",
                            out.stdout,
                            out.stderr_tail.join("\n")
                        ));
                    }
                }
                let _ = self.run_once(&with_id(remove), None, Capture::Quiet);
                result.with_context(|| format!("smoke test of {image}"))
            }
            Action::Retag {
                repository,
                slot,
                tags,
                verify,
            } => {
                let digest = match slot {
                    Slot::Digest => self.state.digest.clone(),
                    Slot::LiveDigest => self.state.live_digest.clone(),
                }
                .context("no digest to tag")?;
                let tags: Vec<String> = tags.iter().map(|t| t.replace(NOW, &self.now)).collect();
                self.copy_tags(repository, &digest, &tags)?;
                for (tag, cmd) in tags.iter().zip(verify) {
                    let line = self.resolve(cmd)?;
                    let found = self
                        .lookup(&line)?
                        .with_context(|| format!("{repository}:{tag} was not created"))?;
                    if found.digest != digest {
                        bail!(
                            "{repository}:{tag} points at {}, not {digest}: the registry changed \
                             the manifest",
                            found.digest
                        );
                    }
                }
                self.report
                    .info(&format!("{} -> {digest}", tags.join(", ")));
                Ok(())
            }
            Action::TerraformPlan { cmd, show } => {
                let line = self.resolve(cmd)?;
                let out = self.run_once(&line, None, Capture::Stream)?;
                match out.code {
                    0 => {
                        self.report.info("no changes: nothing to apply");
                        self.state.changes = Some(false);
                    }
                    2 => {
                        self.state.changes = Some(true);
                        let show = self.resolve(show)?;
                        let json = self.run_once(&show, None, Capture::Stdout)?;
                        for line in summarize_plan(&json.stdout)? {
                            self.report.info(&line);
                        }
                    }
                    code => bail!("terraform plan failed (exit {code})"),
                }
                Ok(())
            }
            Action::Confirm { prompt } => {
                eprint!("    {prompt} Type `yes` to apply: ");
                let _ = std::io::stderr().flush();
                let mut answer = String::new();
                std::io::stdin().read_line(&mut answer)?;
                // A terminal echoed the newline; piped input did not.
                if !std::io::IsTerminal::is_terminal(&std::io::stdin()) {
                    eprintln!();
                }
                if answer.trim() != "yes" {
                    bail!("not confirmed: nothing was applied (pass --yes to skip the question)");
                }
                Ok(())
            }
            Action::Apply { cmd } => {
                let line = self.resolve(cmd)?;
                let out = self.run_once(&line, None, Capture::Stream)?;
                if out.code != 0 {
                    bail!(
                        "terraform apply failed (exit {}); the pushed image stays in place",
                        out.code
                    );
                }
                Ok(())
            }
            Action::Outputs { cmd } => {
                let line = self.resolve(cmd)?;
                let out = self.run_once(&line, None, Capture::Stdout)?;
                let outputs: Value = serde_json::from_str(&out.stdout)
                    .context("terraform output -json is not JSON")?;
                for key in ["function_name", "function_url"] {
                    if let Some(v) = outputs[key]["value"].as_str() {
                        self.report.info(&format!("{key}: {v}"));
                    }
                }
                self.state.outputs = Some(outputs);
                Ok(())
            }
        }
    }

    /// New tags for an image in the registry, without changing its digest (see `registry.rs`).
    fn copy_tags(&mut self, repository: &str, digest: &str, tags: &[String]) -> Result<()> {
        let env = self.env;
        if let Some(local) = &env.local {
            let token = self
                .login
                .as_ref()
                .context("registry login must come before tagging")?;
            let target = registry::Target::Oci {
                registry: &local.registry,
                username: &token.username,
                password: &token.password,
            };
            registry::copy_tags(&target, repository, digest, tags)
        } else {
            registry::copy_tags(
                &registry::Target::Ecr(self.aws()?),
                repository,
                digest,
                tags,
            )
        }
    }

    fn check_identity(&mut self, account_id: &str, region: &str) -> Result<()> {
        let env = self.env;
        if env.local.is_none() {
            if let Some((key, _)) =
                std::env::vars().find(|(k, _)| k.starts_with("AWS_ENDPOINT_URL"))
            {
                bail!(
                    "{key} is set, which would send `{}`'s AWS calls to another endpoint: \
                     unset it (only local-stack environments use an endpoint override)",
                    env.name
                );
            }
        }
        let aws = self.aws()?;
        if env.local.is_none() {
            if let Some(chain) = aws.chain_region.as_deref() {
                if chain != region {
                    bail!(
                        "refusing to act: the AWS configuration selects region {chain}, but \
                         `region` for environment `{}` is {region} in the settings; set \
                         AWS_REGION={region} (or the profile's region) or fix the settings",
                        env.name
                    );
                }
            }
        }
        let identity = aws.identity()?;
        if identity.account != account_id {
            bail!(
                "refusing to act: the credentials belong to account {} ({}), but `account_id` \
                 for environment `{}` is {account_id} in the settings; use credentials for \
                 {account_id} or fix the settings",
                identity.account,
                identity.arn,
                env.name
            );
        }
        self.report.info(&format!(
            "account {} ({}), region {region}",
            identity.account, identity.arn
        ));
        Ok(())
    }

    /// Fills `<digest>`, `<live-digest>` and `<now>`; a missing value is an error.
    fn resolve(&self, cmd: &CmdLine) -> Result<CmdLine> {
        let now = self.now.clone();
        let digest = self.state.digest.clone().unwrap_or_default();
        let live = self.state.live_digest.clone().unwrap_or_default();
        for (name, value) in [(DIGEST, &digest), (LIVE_DIGEST, &live)] {
            if value.is_empty() && cmd.placeholders().contains(&name) {
                bail!("{name} is not known at this point of the plan");
            }
        }
        let line = cmd.resolve(&[(DIGEST, &digest), (LIVE_DIGEST, &live), (NOW, &now)]);
        Ok(line)
    }

    fn lookup(&mut self, line: &CmdLine) -> Result<Option<Inspected>> {
        match self.run_with_retry(line, TRIES, Capture::Lookup) {
            Ok(out) => Ok(Some(parse_inspect(&out.stdout)?)),
            Err(e) if is_not_found(&format!("{e:#}")) => Ok(None),
            Err(e) => Err(e),
        }
    }

    fn run_with_retry(&mut self, line: &CmdLine, tries: u32, capture: Capture) -> Result<Output> {
        let mut attempt = 1;
        loop {
            let out = self.run_once(line, None, capture)?;
            if out.code == 0 {
                return Ok(out);
            }
            let tail = out.stderr_tail.join("\n");
            let error = anyhow::anyhow!("`{line}` exited with {}:\n{tail}", out.code);
            let transient = is_transient(&tail);
            if attempt >= tries || !transient || is_not_found(&tail) || interrupted() {
                return Err(error);
            }
            let wait = self.backoff * 2u32.pow(attempt - 1);
            self.report.warn(&format!(
                "attempt {attempt}/{tries} failed with a transient error; retrying in {:.1}s",
                wait.as_secs_f64()
            ));
            std::thread::sleep(wait);
            attempt += 1;
        }
    }

    /// Spawns one command, in its own process group so that Ctrl-C reaches only xtask, which
    /// forwards it once.
    fn run_once(
        &mut self,
        line: &CmdLine,
        stdin: Option<&Secret>,
        capture: Capture,
    ) -> Result<Output> {
        use std::os::unix::process::CommandExt;
        self.report.detail(&format!("$ {line}"));
        self.state.executed.push(line.to_string());
        let mut command: Command = line.to_cmd(self.sh).into();
        command.process_group(0);
        command.stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        });
        command.stdout(match capture {
            Capture::Stdout | Capture::Lookup | Capture::Quiet => Stdio::piped(),
            Capture::Stream if self.report.json => Stdio::from(std::io::stderr()),
            Capture::Stream => Stdio::inherit(),
        });
        command.stderr(Stdio::piped());
        let mut child = command.spawn().with_context(|| {
            format!(
                "cannot start `{}`: is it installed and on PATH?",
                line.program
            )
        })?;
        CHILD.store(child.id() as i32, Ordering::SeqCst);
        if let (Some(secret), Some(mut pipe)) = (stdin, child.stdin.take()) {
            pipe.write_all(secret.expose().as_bytes())?;
        }
        let echo = matches!(capture, Capture::Stream | Capture::Stdout);
        let stderr = child.stderr.take().expect("piped");
        let tail = std::thread::spawn(move || {
            let mut tail = VecDeque::new();
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if echo {
                    eprintln!("{line}");
                }
                if tail.len() == 40 {
                    tail.pop_front();
                }
                tail.push_back(line);
            }
            tail
        });
        let mut stdout = String::new();
        if let Some(mut pipe) = child.stdout.take() {
            pipe.read_to_string(&mut stdout)?;
        }
        let status = child.wait()?;
        CHILD.store(0, Ordering::SeqCst);
        let stderr_tail: Vec<String> = tail.join().unwrap_or_default().into();
        if interrupted() {
            bail!(
                "interrupted: `{}` was stopped by Ctrl-C and has exited",
                line.program
            );
        }
        Ok(Output {
            code: status.code().unwrap_or(-1),
            stdout,
            stderr_tail,
        })
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
        let base = format!("http://{address}");
        let deadline = Instant::now() + Duration::from_secs(30);
        let health = loop {
            match http::request(
                "GET",
                &format!("{base}/health"),
                &[],
                b"",
                Duration::from_secs(2),
            ) {
                Ok(resp) if resp.status == 200 => break resp,
                _ if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(200)),
                Ok(resp) => bail!("/health answered {}", resp.status),
                Err(e) => return Err(e.context("/health never answered within 30s")),
            }
        };
        self.report.info(&format!(
            "/health: {}",
            String::from_utf8_lossy(&health.body).trim()
        ));
        let resp = http::request(
            "GET",
            &format!("{base}/stream?count=3&interval=0.05"),
            &[("Accept", "text/event-stream")],
            b"",
            Duration::from_secs(20),
        )?;
        let content_type = resp
            .headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case("content-type"))
            .map(|(_, v)| v.as_str())
            .unwrap_or_default();
        if resp.status != 200 || !content_type.starts_with("text/event-stream") {
            bail!(
                "/stream answered {} with content-type {content_type:?}",
                resp.status
            );
        }
        let events = parse_sse(&String::from_utf8_lossy(&resp.body))?;
        let ticks: Vec<&SseEvent> = events.iter().filter(|e| e.event == "tick").collect();
        if ticks.len() < 3 {
            bail!(
                "expected at least 3 tick events, got {}: {events:?}",
                ticks.len()
            );
        }
        let ids: Vec<u64> = ticks
            .iter()
            .map(|e| {
                e.id.with_context(|| format!("tick event without id: {e:?}"))
            })
            .collect::<Result<_>>()?;
        if !ids.windows(2).all(|w| w[0] < w[1]) {
            bail!("event ids are not increasing: {ids:?}");
        }
        self.report
            .info(&format!("/stream: {} events, ids {ids:?}", ticks.len()));
        Ok(())
    }
}

#[derive(Debug, Clone, Copy)]
enum Capture {
    /// Output streams to the terminal.
    Stream,
    /// Stdout is captured and returned, stderr streams.
    Stdout,
    /// A registry read: stdout captured, stderr kept only to classify failures.
    Lookup,
    /// Nothing is shown.
    Quiet,
}

struct Output {
    code: i32,
    stdout: String,
    stderr_tail: Vec<String>,
}

/// A reference as the registry describes it.
#[derive(Debug, Clone, PartialEq)]
pub struct Inspected {
    pub media_type: String,
    pub digest: String,
    pub architecture: Option<String>,
    pub os: Option<String>,
}

/// Parses `docker buildx imagetools inspect REF --format '{{json .}}'`.
pub fn parse_inspect(text: &str) -> Result<Inspected> {
    let value: Value = serde_json::from_str(text).context("imagetools inspect printed no JSON")?;
    let manifest = &value["manifest"];
    let image = &value["image"];
    Ok(Inspected {
        media_type: manifest["mediaType"]
            .as_str()
            .unwrap_or_default()
            .to_string(),
        digest: manifest["digest"]
            .as_str()
            .or_else(|| {
                value["name"]
                    .as_str()
                    .and_then(|n| n.split_once('@').map(|(_, d)| d))
            })
            .context("imagetools inspect gave no digest")?
            .to_string(),
        architecture: image["architecture"].as_str().map(str::to_string),
        os: image["os"].as_str().map(str::to_string),
    })
}

/// Lambda takes a single-platform image manifest, for its architecture, with the pushed digest.
pub fn verify_manifest(found: &Inspected, expected_digest: &str, platform: Platform) -> Result<()> {
    const IMAGE_MANIFESTS: [&str; 2] = [
        "application/vnd.oci.image.manifest.v1+json",
        "application/vnd.docker.distribution.manifest.v2+json",
    ];
    if !IMAGE_MANIFESTS.contains(&found.media_type.as_str()) {
        bail!(
            "the registry holds a {} (not a single image manifest): Lambda rejects image indexes; \
             build with --provenance=false --sbom=false and a single --platform",
            found.media_type
        );
    }
    if found.digest != expected_digest {
        bail!(
            "the registry's digest {} is not the one the build reported ({expected_digest}): \
             another push raced this one or the registry rewrote the manifest",
            found.digest
        );
    }
    if found.architecture.as_deref() != Some(platform.oci_arch())
        || found.os.as_deref() != Some("linux")
    {
        bail!(
            "the image is for {}/{}, but the settings' platform is {platform}",
            found.os.as_deref().unwrap_or("?"),
            found.architecture.as_deref().unwrap_or("?")
        );
    }
    Ok(())
}

fn is_not_found(text: &str) -> bool {
    let t = text.to_ascii_lowercase();
    t.contains("not found") || t.contains("manifest unknown") || t.contains("name unknown")
}

/// Network hiccups and server-side 5xx/429 are worth another try; auth errors never are.
fn is_transient(text: &str) -> bool {
    let t = text.to_ascii_lowercase();
    let auth = [
        "unauthorized",
        "denied",
        "authentication required",
        "forbidden",
        "no basic auth",
    ];
    if auth.iter().any(|a| t.contains(a)) {
        return false;
    }
    [
        "connection refused",
        "connection reset",
        "timeout",
        "timed out",
        "tls handshake",
        "502",
        "503",
        "504",
        "429",
        "too many requests",
        "unexpected eof",
        "broken pipe",
        "temporary",
    ]
    .iter()
    .any(|p| t.contains(p))
}

#[derive(Debug, Clone, PartialEq)]
pub struct SseEvent {
    pub id: Option<u64>,
    pub event: String,
    pub data: Value,
}

/// Parses a Server-Sent Events body into its events; each must carry JSON data.
pub fn parse_sse(body: &str) -> Result<Vec<SseEvent>> {
    let mut events = Vec::new();
    for block in body.replace("\r\n", "\n").split("\n\n") {
        let (mut id, mut event, mut data) = (None, "message".to_string(), String::new());
        for line in block.lines() {
            if line.starts_with(':') {
                continue;
            }
            let (field, value) = line.split_once(':').unwrap_or((line, ""));
            let value = value.strip_prefix(' ').unwrap_or(value);
            match field {
                "id" => {
                    id = Some(
                        value
                            .parse::<u64>()
                            .with_context(|| format!("bad id {value:?}"))?,
                    )
                }
                "event" => event = value.to_string(),
                "data" => data.push_str(value),
                _ => {}
            }
        }
        if data.is_empty() {
            continue;
        }
        let data: Value = serde_json::from_str(&data)
            .with_context(|| format!("event data is not JSON: {data}"))?;
        events.push(SseEvent { id, event, data });
    }
    Ok(events)
}

/// `terraform show -json` → one line per resource change.
pub fn summarize_plan(json: &str) -> Result<Vec<String>> {
    let plan: Value = serde_json::from_str(json).context("terraform show -json is not JSON")?;
    let mut lines = Vec::new();
    let (mut add, mut change, mut destroy) = (0, 0, 0);
    for rc in plan["resource_changes"].as_array().into_iter().flatten() {
        let actions: Vec<&str> = rc["change"]["actions"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .collect();
        let symbol = match actions.as_slice() {
            ["no-op"] | ["read"] => continue,
            ["create"] => {
                add += 1;
                "+"
            }
            ["update"] => {
                change += 1;
                "~"
            }
            ["delete"] => {
                destroy += 1;
                "-"
            }
            _ => {
                add += 1;
                destroy += 1;
                "-/+"
            }
        };
        lines.push(format!(
            "{symbol} {}",
            rc["address"].as_str().unwrap_or("?")
        ));
    }
    lines.push(format!(
        "plan: {add} to add, {change} to change, {destroy} to destroy"
    ));
    Ok(lines)
}

/// `YYYYMMDDTHHMMSSZ`, for `deployed-` tags (tags allow no `:`).
pub fn utc_stamp(time: SystemTime) -> String {
    let secs = time
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let (days, rem) = ((secs / 86_400) as i64, secs % 86_400);
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}{month:02}{day:02}T{:02}{:02}{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

// Ctrl-C handling. The child runs in its own process group, so the terminal's SIGINT reaches
// only xtask; the handler forwards the first one to the child and lets it finish (terraform
// then saves its state). A second Ctrl-C is not forwarded, because a second SIGINT makes
// terraform abandon the apply.
static CHILD: AtomicI32 = AtomicI32::new(0);
static INTERRUPTED: AtomicBool = AtomicBool::new(false);
static INSTALLED: Mutex<bool> = Mutex::new(false);

fn interrupted() -> bool {
    INTERRUPTED.load(Ordering::SeqCst)
}

extern "C" fn on_sigint(_: libc::c_int) {
    let child = CHILD.load(Ordering::SeqCst);
    if child <= 0 {
        // Nothing is running: stop now, as an unhandled Ctrl-C would.
        unsafe { libc::_exit(130) };
    }
    if !INTERRUPTED.swap(true, Ordering::SeqCst) {
        unsafe { libc::kill(child, libc::SIGINT) };
        let msg = b"\nxtask: Ctrl-C forwarded once; waiting for the command to exit cleanly\n";
        unsafe { libc::write(2, msg.as_ptr().cast(), msg.len()) };
    }
}

fn install_sigint_handler() {
    let mut installed = INSTALLED.lock().unwrap_or_else(|e| e.into_inner());
    if !*installed {
        unsafe { libc::signal(libc::SIGINT, on_sigint as *const () as libc::sighandler_t) };
        *installed = true;
    }
}

/// The JSON result of a run or a dry run.
pub fn result_json(
    plan: &Plan,
    state: Option<&State>,
    status: &str,
    error: Option<String>,
) -> Value {
    let digest = state.and_then(|s| s.digest.clone());
    let output = |k: &str| {
        state
            .and_then(|s| s.outputs.as_ref())
            .and_then(|o| o[k]["value"].as_str())
            .map(str::to_string)
    };
    json!({
        "command": plan.command,
        "env": plan.env,
        "status": status,
        "dry_run": state.is_none(),
        "error": error,
        "digest": digest,
        "image_uri": digest.as_ref().map(|d| format!("{}@{d}", plan.image_repo)),
        "tags": plan.tags,
        "image": state.map(|s| if s.built { "built" } else if s.digest.is_some() { "skipped: already in the registry" } else { "" }),
        "terraform": state.and_then(|s| s.changes).map(|c| if c { "applied" } else { "no changes" }),
        "function_name": output("function_name"),
        "function_url": output("function_url"),
        "commands": match state {
            Some(s) => s.executed.clone(),
            None => plan.command_lines(),
        },
        "steps": state.map(|s| step_json(&s.records)),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A command that counts its runs in `counter` and fails with `error` until run `ok_on`.
    fn flaky(counter: &std::path::Path, error: &str, ok_on: u32) -> CmdLine {
        let script = format!(
            "n=$(($(cat {c} 2>/dev/null || echo 0) + 1)); echo $n > {c}; \
             [ $n -ge {ok_on} ] || {{ echo '{error}' >&2; exit 1; }}",
            c = counter.display()
        );
        CmdLine::new("sh").args(["-c", &script])
    }

    #[test]
    fn transient_failures_are_retried_and_auth_failures_are_not() {
        let settings = crate::plan::image::tests::settings();
        let env = settings.environment("local").unwrap();
        let sh = Shell::new().unwrap();
        let mut report = Report::new(false, false);
        let mut runner = Runner::new(&sh, env, &mut report);
        runner.backoff = Duration::from_millis(1);
        let dir = std::env::temp_dir().join(format!("xtask-retry-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let count = |name: &str| -> u32 {
            std::fs::read_to_string(dir.join(name))
                .unwrap()
                .trim()
                .parse()
                .unwrap()
        };

        let refused = flaky(
            &dir.join("a"),
            "dial tcp 127.0.0.1:5000: connection refused",
            99,
        );
        let err = runner
            .run_with_retry(&refused, TRIES, Capture::Quiet)
            .err()
            .unwrap();
        assert_eq!(count("a"), 3, "three tries, then the last error");
        assert!(format!("{err:#}").contains("connection refused"), "{err:#}");

        let auth = flaky(&dir.join("b"), "unauthorized: authentication required", 99);
        assert!(runner.run_with_retry(&auth, TRIES, Capture::Quiet).is_err());
        assert_eq!(count("b"), 1, "auth errors are not retried");

        let recovers = flaky(&dir.join("c"), "503 Service Unavailable", 2);
        assert!(
            runner
                .run_with_retry(&recovers, TRIES, Capture::Quiet)
                .is_ok()
        );
        assert_eq!(count("c"), 2);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn utc_stamps() {
        let t = SystemTime::UNIX_EPOCH + Duration::from_secs(1_795_781_045);
        assert_eq!(utc_stamp(t), "20261127T120405Z");
        assert_eq!(utc_stamp(SystemTime::UNIX_EPOCH), "19700101T000000Z");
    }

    #[test]
    fn sse_bodies_parse() {
        let body = ": heartbeat\n\nretry: 1000\n\nid: 4\nevent: tick\ndata: {\"seq\": 4}\n\nid: 5\nevent: tick\ndata: {\"seq\": 5}\n\n";
        let events = parse_sse(body).unwrap();
        assert_eq!(
            events.iter().map(|e| e.id).collect::<Vec<_>>(),
            [Some(4), Some(5)]
        );
        assert_eq!(events[1].data["seq"], 5);
        assert!(parse_sse("id: 1\ndata: not json\n\n").is_err());
        assert_eq!(parse_sse("event: end\ndata: {}\n\n").unwrap()[0].id, None);
    }

    #[test]
    fn manifests_are_checked() {
        let good = Inspected {
            media_type: "application/vnd.oci.image.manifest.v1+json".into(),
            digest: "sha256:aa".into(),
            architecture: Some("amd64".into()),
            os: Some("linux".into()),
        };
        verify_manifest(&good, "sha256:aa", Platform::Amd64).unwrap();
        let e = verify_manifest(&good, "sha256:bb", Platform::Amd64)
            .unwrap_err()
            .to_string();
        assert!(e.contains("not the one the build reported"), "{e}");
        let e = verify_manifest(&good, "sha256:aa", Platform::Arm64)
            .unwrap_err()
            .to_string();
        assert!(e.contains("platform is linux/arm64"), "{e}");
        let index = Inspected {
            media_type: "application/vnd.oci.image.index.v1+json".into(),
            ..good
        };
        let e = verify_manifest(&index, "sha256:aa", Platform::Amd64)
            .unwrap_err()
            .to_string();
        assert!(e.contains("Lambda rejects image indexes"), "{e}");
    }

    #[test]
    fn failures_are_classified() {
        assert!(is_transient(
            "dial tcp 127.0.0.1:5000: connect: connection refused"
        ));
        assert!(is_transient(
            "received unexpected HTTP status: 503 Service Unavailable"
        ));
        assert!(!is_transient("unauthorized: authentication required"));
        assert!(!is_transient("invalid reference format"));
        assert!(is_not_found("ERROR: 127.0.0.1:5000/x:src-1: not found"));
    }

    #[test]
    fn plan_summaries_count_changes() {
        let json = r#"{"resource_changes":[
            {"address":"aws_lambda_function.this","change":{"actions":["update"]}},
            {"address":"aws_ecr_repository.this","change":{"actions":["no-op"]}},
            {"address":"aws_lambda_function_url.this","change":{"actions":["create"]}},
            {"address":"aws_iam_role.x","change":{"actions":["delete","create"]}}]}"#;
        assert_eq!(
            summarize_plan(json).unwrap(),
            [
                "~ aws_lambda_function.this",
                "+ aws_lambda_function_url.this",
                "-/+ aws_iam_role.x",
                "plan: 2 to add, 1 to change, 1 to destroy"
            ]
        );
    }
}
