//! Settings: the TOML schema of `infrastructure/environments.toml`, defaults merged into each
//! environment and each function, and validation.
//!
//! Nothing else in xtask reads the file. Every error names the file, the line and column, and
//! the offending key, and is raised before anything runs. The tool knows no function and no
//! project by name: the repository's functions are `[functions.NAME]` tables.

mod function;
mod parse;

pub use parse::valid_env_name;

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

/// The settings file, validated: one fully merged [`Environment`] per name.
#[derive(Debug, Clone)]
pub struct Settings {
    pub path: PathBuf,
    pub environments: BTreeMap<String, Environment>,
}

/// Everything one environment needs, defaults already applied.
#[derive(Debug, Clone, PartialEq)]
pub struct Environment {
    pub name: String,
    /// The `project` key: names the deploy role and tags every resource.
    pub project: String,
    pub account_id: String,
    pub region: String,
    /// `docker buildx bake --builder NAME`, or a docker context; `None` uses the active one.
    pub builder: Option<String>,
    pub protected: bool,
    pub smoke_test: bool,
    /// This environment runs only images that this other environment has run (`promote`).
    pub promote_from: Option<String>,
    /// Deploy roles of the environments promoting from this one: they may pull its images.
    pub readers: Vec<String>,
    pub terraform: Terraform,
    pub bootstrap: Bootstrap,
    pub scan: crate::scan::Policy,
    /// Set for environments that run on the local stack (the emulator and a loopback registry).
    pub local: Option<LocalEndpoints>,
    pub functions: Vec<Function>,
}

/// One container Lambda in one environment.
#[derive(Debug, Clone, PartialEq)]
pub struct Function {
    /// The `[functions.NAME]` key: the bake target and the Terraform map key.
    pub name: String,
    pub repository: String,
    pub function_name: String,
    /// Created by the account layer; the only role CI may pass to this function.
    pub execution_role: String,
    pub description: String,
    pub build_context: String,
    pub dockerfile: String,
    pub platform: Platform,
    pub invoke_mode: InvokeMode,
    /// `--build-arg`s (the function's, then the environment's); part of the content tag.
    pub build_args: BTreeMap<String, String>,
    pub smoke: Option<Smoke>,
    pub memory_size: u32,
    pub timeout: u32,
    pub log_retention_days: u32,
    /// The Function URL's `authorization_type`: `AWS_IAM` or `NONE`.
    pub url_auth_type: String,
    pub environment: BTreeMap<String, String>,
}

/// How the Function URL answers, and the Lambda Web Adapter with it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InvokeMode {
    ResponseStream,
    Buffered,
}

impl InvokeMode {
    pub const ALL: [InvokeMode; 2] = [InvokeMode::ResponseStream, InvokeMode::Buffered];
    pub fn name(self) -> &'static str {
        ["RESPONSE_STREAM", "BUFFERED"][self as usize]
    }
}

/// What the smoke test reads through the function's URL once `/health` answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Smoke {
    /// Path and query below the Function URL, e.g. `/stream?count=3&interval=1`.
    pub path: String,
    pub expect: Expect,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Expect {
    /// An SSE stream of `tick` events with increasing ids, the first well before the end.
    Sse,
    /// `200 application/json` whose top-level fields have these values.
    Json(BTreeMap<String, String>),
}

#[derive(Debug, Clone, PartialEq)]
pub struct Terraform {
    pub dir: String,
    pub lock_timeout: String,
    /// `-backend-config=KEY=VALUE`, in key order.
    pub backend: BTreeMap<String, String>,
}

/// The account layer an administrator applies once (`cargo xtask bootstrap`): the state
/// bucket, the GitHub OIDC provider, the deploy role and the execution roles.
#[derive(Debug, Clone, PartialEq)]
pub struct Bootstrap {
    pub dir: String,
    /// `-var NAME=VALUE` for the bootstrap root, in name order.
    pub vars: BTreeMap<String, String>,
}

impl Bootstrap {
    /// The bootstrap root's own state object, next to the application's in the same bucket.
    pub fn state_key(env: &str) -> String {
        format!("{env}/bootstrap.tfstate")
    }
}

/// Dummy keys for the local stack's AWS emulator. Not secrets: the emulator accepts any, and a
/// developer's real credentials are never sent there.
pub const EMULATOR_KEYS: (&str, &str) = ("testing", "testing");

/// The emulator's default account; any other is reached by assuming a role there.
pub const EMULATOR_ACCOUNT: &str = "123456789012";

/// Where a local-stack environment's registry and AWS emulator listen.
#[derive(Debug, Clone, PartialEq)]
pub struct LocalEndpoints {
    /// `host:port` of the loopback OCI registry that stands in for ECR's registry side.
    pub registry: String,
    /// The AWS API emulator, used as `AWS_ENDPOINT_URL`.
    pub endpoint_url: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Platform {
    Amd64,
    Arm64,
}

impl Platform {
    pub const ALL: [Platform; 2] = [Platform::Amd64, Platform::Arm64];
    /// The `docker buildx --platform` value.
    pub fn docker(self) -> &'static str {
        ["linux/amd64", "linux/arm64"][self as usize]
    }
    /// The OCI `architecture` field of an image config.
    pub fn oci_arch(self) -> &'static str {
        ["amd64", "arm64"][self as usize]
    }
    /// The Lambda `architectures` value.
    pub fn lambda(self) -> &'static str {
        ["x86_64", "arm64"][self as usize]
    }
    /// The platform of the machine xtask runs on, if it is one Lambda supports.
    pub fn host() -> Option<Platform> {
        let arch = std::env::consts::ARCH.replace("aarch64", "arm64");
        Platform::ALL.into_iter().find(|p| p.lambda() == arch)
    }
}

impl fmt::Display for Platform {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.docker())
    }
}

impl Environment {
    /// The ECR registry host: the loopback registry for the local stack, else the account's.
    pub fn registry(&self) -> String {
        match &self.local {
            Some(local) => local.registry.clone(),
            None => format!("{}.dkr.ecr.{}.amazonaws.com", self.account_id, self.region),
        }
    }
    /// `registry/repository`, the name every tag and digest reference of `function` starts with.
    pub fn image_repo(&self, function: &Function) -> String {
        format!("{}/{}", self.registry(), function.repository)
    }
    /// The partition of the environment's ARNs.
    pub fn partition(&self) -> &'static str {
        match self.region.as_str() {
            r if r.starts_with("cn-") => "aws-cn",
            r if r.starts_with("us-gov-") => "aws-us-gov",
            _ => "aws",
        }
    }
    /// The role CI assumes to deploy this environment (created by its account layer).
    pub fn deploy_role_arn(&self) -> String {
        let (partition, account, env, project) = (
            self.partition(),
            &self.account_id,
            &self.name,
            &self.project,
        );
        format!("arn:{partition}:iam::{account}:role/{env}-{project}-deploy")
    }
    /// The functions `--function` names (every function when none is named), or an error
    /// naming the valid ones.
    pub fn select(&self, names: &[String]) -> Result<Vec<&Function>> {
        let valid: Vec<&str> = self.functions.iter().map(|f| f.name.as_str()).collect();
        let (env, valid) = (&self.name, valid.join(", "));
        let find = |name: &String| {
            let found = self.functions.iter().find(|f| &f.name == name);
            found.with_context(|| {
                format!(
                    "unknown function `{name}` in environment `{env}`: its functions are {valid} \
                     (pass one with --function, or add [functions.{name}] to the settings)"
                )
            })
        };
        match names {
            [] => Ok(self.functions.iter().collect()),
            _ => names.iter().map(find).collect(),
        }
    }
}

impl Settings {
    pub fn load(path: &Path) -> Result<Settings> {
        let text = std::fs::read_to_string(path).with_context(|| {
            let path = path.display();
            format!("cannot read settings file {path} (pass --config PATH or set XTASK_CONFIG)")
        })?;
        Settings::parse(path, &text)
    }

    /// Parses and validates; paths in the file are checked against the repository root.
    pub fn parse(path: &Path, text: &str) -> Result<Settings> {
        Settings::parse_in(&crate::paths::root(), path, text)
    }

    /// [`Settings::parse`] for the repository at `root`.
    pub fn parse_in(root: &Path, path: &Path, text: &str) -> Result<Settings> {
        parse::settings(path, text, root)
    }

    pub fn environment(&self, name: &str) -> Result<&Environment> {
        let names: Vec<&str> = self.environments.keys().map(String::as_str).collect();
        let (path, names) = (self.path.display(), names.join(", "));
        self.environments.get(name).with_context(|| {
            format!(
                "unknown environment `{name}` in {path}: valid environments are {names} (pass \
                 one with --env)"
            )
        })
    }
}

#[cfg(test)]
mod tests;
