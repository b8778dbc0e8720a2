//! The runner's one boundary with the world: every command, AWS call, registry read and write,
//! file, prompt, wait and emulator call is an [`Effect`], performed by a [`World`]. [`Real`]
//! does it; the scripted world of the runner's unit tests (`runner/tests.rs`) answers like a
//! registry, an AWS account and Terraform would and records what was asked, so every branch of
//! the runner runs in milliseconds without Docker, while the end-to-end tests show the real
//! programs answer as the script assumes.

use std::time::Duration;

use anyhow::{Context, Result};
use xshell::Shell;

use super::exec::{self, Capture, Output};
use crate::aws::{Aws, Bucket, Identity, ScanState, Token};
use crate::cmdline::Resolved;
use crate::plan::Source;
use crate::registry::{self, Registry};
use crate::secret::Secret;
use crate::settings::{Environment, Platform, Smoke};
use crate::signals;
use crate::smoke;
use crate::tools::terraform::Outputs;

/// One thing the runner asks of the world.
#[derive(Debug, Clone, PartialEq)]
pub enum Effect {
    /// A command, run to completion; `stdin` is the only way a secret reaches it.
    Run {
        line: Resolved,
        capture: Capture,
        stdin: Option<Secret>,
    },
    /// A command that undoes what the run started, run even after a signal.
    Cleanup(Resolved),
    /// The region the credential chain chose (configuration only, no call).
    ChainRegion,
    /// STS GetCallerIdentity.
    Identity,
    /// ECR DescribeRepositories: the names that do not exist.
    MissingRepositories(Vec<String>),
    /// ECR GetAuthorizationToken (for `source`'s registry when promoting on the local stack).
    LoginToken {
        source: Option<Source>,
    },
    /// S3 HeadBucket.
    Bucket(String),
    /// The digest a tag names, read over the registry API (`None`: no such tag).
    TagDigest {
        repository: String,
        tag: String,
    },
    /// New tags for a manifest already in the repository, by copying it byte for byte.
    CopyTags {
        repository: String,
        digest: String,
        tags: Vec<String>,
    },
    /// Local stack: the manifest from the loopback registry into the emulator's ECR.
    Mirror {
        repository: String,
        digest: String,
        tags: Vec<String>,
    },
    /// The manifest and blobs of `digest` from another environment's repository into this
    /// environment's, under `tag`.
    CopyImage {
        from: Source,
        repository: String,
        digest: String,
        tag: String,
    },
    /// ECR DescribeImages: the tags the digest carries in `place`.
    ImageTags {
        place: Source,
        digest: String,
    },
    ScanFindings {
        repository: String,
        digest: String,
    },
    StartScan {
        repository: String,
        digest: String,
    },
    /// Terraform's outputs from the state object (one S3 GetObject), when it can be read.
    StateOutputs {
        bucket: String,
        key: String,
    },
    WriteFile {
        path: String,
        contents: String,
    },
    ReadFile(String),
    RemovePaths(Vec<String>),
    CopyDir {
        from: String,
        to: String,
    },
    /// Asks on the terminal; `true` only for `yes`.
    Confirm(String),
    /// Waits, stopping early on a signal.
    Sleep(Duration),
    /// Routes a function name to the Lambda emulator; the answer is the Runtime API for its
    /// container and its Function URL. The invocation is cut at `timeout` seconds.
    Route {
        function: String,
        timeout: u32,
    },
    /// Removes the route again.
    Unroute {
        function: String,
    },
    /// `/health`, then the smoke check, through a Function URL.
    Probe {
        url: String,
        check: Smoke,
    },
    /// Whether an earlier run established this (a smoke pass, an initialised data directory).
    Recall(super::memo::Memo),
    /// Records it after the step (`false`: the step failed).
    Remember(super::memo::Memo, bool),
    /// Local stack: serves the deployed function the emulator's Lambda API describes.
    Serve {
        endpoint_url: String,
        region: String,
        function_name: String,
        platform: Platform,
    },
}

/// The world's answer.
#[derive(Debug, Clone)]
pub enum Reply {
    Done,
    Output(Output),
    Region(Option<String>),
    Identity(Identity),
    Names(Vec<String>),
    Token(Token),
    Bucket(Bucket),
    Digest(Option<String>),
    Scan(ScanState),
    Outputs(Option<Outputs>),
    Text(String),
    Yes(bool),
    Route {
        api: String,
        url: String,
        network: String,
    },
    Seen(smoke::Seen),
    Served(Served),
    /// A recalled fact, and its key for the log.
    Recalled(bool, String),
}

/// A function the local stack now serves.
#[derive(Debug, Clone, PartialEq)]
pub struct Served {
    pub function_name: String,
    pub digest: String,
    pub url: String,
    /// The digest it served before, when that changed.
    pub replaced: Option<String>,
    pub unchanged: bool,
    pub memory_size: u32,
    pub timeout: u32,
    pub executed: Vec<String>,
}

pub trait World {
    fn perform(&mut self, effect: Effect) -> Result<Reply>;
    /// The first signal received, if any: the runner stops at the next step boundary.
    fn interrupted(&self) -> Option<i32>;
}

/// The world itself: processes, the SDK, the registry, the emulator.
pub struct Real<'a> {
    pub sh: &'a Shell,
    pub env: &'a Environment,
    pub json: bool,
    aws: Option<Aws>,
    /// The registry credentials from the login, for registry-side reads and writes.
    login: Option<Token>,
    source_login: Option<Token>,
    emulator: Option<crate::local::lambda::Emulator>,
    routes: Vec<(String, crate::local::lambda::Registered)>,
}

impl<'a> Real<'a> {
    pub fn new(sh: &'a Shell, env: &'a Environment, json: bool) -> Real<'a> {
        Real {
            sh,
            env,
            json,
            aws: None,
            login: None,
            source_login: None,
            emulator: None,
            routes: vec![],
        }
    }

    fn aws(&mut self) -> Result<&Aws> {
        if self.aws.is_none() {
            self.aws = Some(Aws::connect(self.env)?);
        }
        Ok(self.aws.as_ref().expect("set above"))
    }

    /// The registry of this environment, with the login's credentials.
    fn registry(&self) -> Result<Registry> {
        let token = self
            .login
            .as_ref()
            .context("the registry login must come before registry calls")?;
        Ok(Registry::new(
            &self.env.registry(),
            &token.username,
            &token.password,
        ))
    }
}

impl Real<'_> {
    /// The manifest from the loopback registry into the emulator's ECR, under `tags`.
    fn mirror(&mut self, repository: &str, digest: &str, tags: &[String]) -> Result<()> {
        let (manifest, media_type) = self
            .registry()?
            .manifest(repository, digest)?
            .with_context(|| format!("{repository}@{digest} is not in the local registry"))?;
        let manifest = String::from_utf8(manifest).context("the manifest is not UTF-8 JSON")?;
        self.aws()?
            .put_manifest(repository, &manifest, &media_type, digest, tags)
    }
}

impl World for Real<'_> {
    fn interrupted(&self) -> Option<i32> {
        signals::received()
    }

    fn perform(&mut self, effect: Effect) -> Result<Reply> {
        Ok(match effect {
            Effect::Run {
                line,
                capture,
                stdin,
            } => Reply::Output(exec::run(self.sh, &line, stdin.as_ref(), capture)?),
            Effect::Cleanup(line) => Reply::Output(exec::run_cleanup(self.sh, &line)?),
            Effect::ChainRegion => Reply::Region(self.aws()?.chain_region.clone()),
            Effect::Identity => Reply::Identity(self.aws()?.identity()?),
            Effect::MissingRepositories(names) => {
                let aws = self.aws()?;
                let mut missing = vec![];
                for name in names {
                    if !aws.repository_exists(&name)? {
                        missing.push(name);
                    }
                }
                Reply::Names(missing)
            }
            Effect::LoginToken { source } => {
                let token = match source.as_ref().filter(|s| s.local) {
                    // The source account's registry on the local stack trusts only its own
                    // token; on AWS the caller's token opens every registry it may read.
                    Some(source) => {
                        let local = self
                            .env
                            .local
                            .as_ref()
                            .context("local source, local target")?;
                        Aws::emulator_account(
                            &local.endpoint_url,
                            &self.env.region,
                            &source.account_id,
                        )?
                        .login_token()?
                    }
                    None => self.aws()?.login_token()?,
                };
                // Kept for the registry-side reads and writes that follow.
                match source {
                    Some(_) => self.source_login = Some(token.clone()),
                    None => self.login = Some(token.clone()),
                }
                Reply::Token(token)
            }
            Effect::Bucket(name) => Reply::Bucket(self.aws()?.bucket(&name)?),
            Effect::TagDigest { repository, tag } => {
                Reply::Digest(self.registry()?.tag_digest(&repository, &tag)?)
            }
            Effect::CopyTags {
                repository,
                digest,
                tags,
            } => {
                self.registry()?.copy_tags(&repository, &digest, &tags)?;
                // The emulator's ECR keeps the same tags, so ECR's image calls (the scan,
                // which digest a tag names) answer there as on AWS.
                if self.env.local.is_some() {
                    self.mirror(&repository, &digest, &tags)?;
                }
                Reply::Done
            }
            Effect::Mirror {
                repository,
                digest,
                tags,
            } => {
                self.mirror(&repository, &digest, &tags)?;
                Reply::Done
            }
            Effect::CopyImage {
                from,
                repository,
                digest,
                tag,
            } => {
                let token = self
                    .source_login
                    .clone()
                    .or_else(|| self.login.clone())
                    .context("the registry logins must come before a copy")?;
                let source = Registry::new(&from.registry, &token.username, &token.password);
                registry::copy_image(
                    &source,
                    &from.repository,
                    &self.registry()?,
                    &repository,
                    &digest,
                    &tag,
                )?;
                Reply::Done
            }
            Effect::ImageTags { place, digest } => {
                let aws = if place.local {
                    let local = self.env.local.as_ref().context("local place, local env")?;
                    Aws::emulator_account(&local.endpoint_url, &self.env.region, &place.account_id)?
                } else {
                    Aws::connect(self.env)?
                };
                Reply::Names(aws.image_tags(&place.account_id, &place.repository, &digest)?)
            }
            Effect::ScanFindings { repository, digest } => {
                Reply::Scan(self.aws()?.scan_findings(&repository, &digest)?)
            }
            Effect::StartScan { repository, digest } => {
                self.aws()?.start_scan(&repository, &digest)?;
                Reply::Done
            }
            Effect::StateOutputs { bucket, key } => Reply::Outputs(
                super::terraform::outputs_from_state(self.aws()?, &bucket, &key),
            ),
            Effect::WriteFile { path, contents } => {
                let path = self.sh.current_dir().join(path);
                if let Some(parent) = path.parent() {
                    std::fs::create_dir_all(parent)?;
                }
                std::fs::write(&path, contents)
                    .with_context(|| format!("writing {}", path.display()))?;
                Reply::Done
            }
            Effect::ReadFile(path) => Reply::Text(
                self.sh
                    .read_file(&path)
                    .with_context(|| format!("reading {path}"))?,
            ),
            Effect::RemovePaths(paths) => {
                for path in paths {
                    if self.sh.path_exists(&path) {
                        self.sh.remove_path(&path)?;
                    }
                }
                Reply::Done
            }
            Effect::CopyDir { from, to } => {
                let root = self.sh.current_dir();
                let _ = std::fs::remove_dir_all(root.join(&to));
                crate::paths::copy_dir(&root.join(&from), &root.join(&to))
                    .with_context(|| format!("copying {from} to {to}"))?;
                Reply::Done
            }
            Effect::Recall(memo) => {
                let (holds, key) = memo.recall();
                Reply::Recalled(holds, key)
            }
            Effect::Remember(memo, ok) => {
                memo.record(ok);
                Reply::Done
            }
            Effect::Confirm(prompt) => Reply::Yes(super::terraform::confirm(&prompt)?),
            Effect::Sleep(total) => {
                crate::retry::pause(total)?;
                Reply::Done
            }
            Effect::Route { function, timeout } => {
                if self.emulator.is_none() {
                    self.emulator =
                        Some(crate::local::lambda::Emulator::shared_or_private(self.sh)?);
                }
                let emulator = self.emulator.as_ref().expect("set above");
                let routed = emulator.register(&function, timeout)?;
                let reply = Reply::Route {
                    api: emulator.runtime_api(),
                    url: emulator.function_url(&function),
                    network: emulator.network().to_string(),
                };
                self.routes.push((function, routed));
                reply
            }
            Effect::Unroute { function } => {
                self.routes.retain(|(f, _)| f != &function);
                Reply::Done
            }
            Effect::Probe { url, check } => {
                Reply::Seen(smoke::check(&url, crate::local::lambda::READY, &check)?)
            }
            Effect::Serve {
                endpoint_url: _,
                region,
                function_name,
                platform,
            } => {
                let deployed =
                    crate::local::lambda::deployed(self.aws()?, &region, &function_name)?;
                let outcome = crate::local::lambda::serve(self.sh, &deployed, platform)
                    .with_context(|| {
                        format!("serving {function_name} under the Lambda emulator")
                    })?;
                Reply::Served(Served {
                    function_name,
                    digest: outcome.served.digest.clone(),
                    url: outcome.served.url.clone(),
                    replaced: outcome.replaced.clone(),
                    unchanged: outcome.unchanged,
                    memory_size: deployed.memory_size,
                    timeout: deployed.timeout,
                    executed: outcome.executed,
                })
            }
        })
    }
}
