//! Per-environment settings: the TOML schema, defaults merged into each environment, validation.
//!
//! Nothing else in xtask reads `infrastructure/environments.toml`. Every error names the file,
//! the line and column, and the offending key, and is raised before anything runs.

mod parse;

pub use parse::valid_env_name;

use std::{
    collections::BTreeMap,
    fmt,
    path::{Path, PathBuf},
};

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
    pub account_id: String,
    pub region: String,
    pub repository: String,
    pub platform: Platform,
    pub build_context: String,
    pub dockerfile: String,
    pub build_args: BTreeMap<String, String>,
    /// `docker buildx build --builder NAME`; `None` uses the active builder.
    pub builder: Option<String>,
    pub protected: bool,
    pub smoke_test: bool,
    pub terraform: Terraform,
    pub bootstrap: Bootstrap,
    /// The image scan gate: threshold, wait and allow-list (`[scan]`).
    pub scan: crate::scan::Policy,
    /// Set for environments that run on the local stack (the emulator and a loopback registry).
    pub local: Option<LocalEndpoints>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Terraform {
    pub dir: String,
    pub lock_timeout: String,
    /// `-backend-config=KEY=VALUE`, in key order.
    pub backend: BTreeMap<String, String>,
    /// `-var NAME=VALUE`, in name order; non-string values are passed as HCL/JSON literals.
    pub vars: BTreeMap<String, String>,
}

/// The account layer an administrator applies once (`cargo xtask bootstrap`): the state
/// bucket, the GitHub OIDC provider, the deploy role and the execution role.
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

pub const DEFAULT_BOOTSTRAP_DIR: &str = "infrastructure/bootstrap";

/// Variables xtask sets itself for the bootstrap root.
pub const RESERVED_BOOTSTRAP_VARS: &[&str] = &[
    "environment",
    "account_id",
    "region",
    "state_bucket",
    "app_state_key",
    "deny_insecure_transport",
    "expire_noncurrent_state_versions",
];

/// Dummy keys for the local stack's AWS emulator. Not secrets: the emulator accepts any, and a
/// developer's real credentials are never sent there.
pub const EMULATOR_KEYS: (&str, &str) = ("testing", "testing");

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
    /// The `docker buildx --platform` value.
    pub fn docker(self) -> &'static str {
        match self {
            Platform::Amd64 => "linux/amd64",
            Platform::Arm64 => "linux/arm64",
        }
    }
    /// The OCI `architecture` field of an image config.
    pub fn oci_arch(self) -> &'static str {
        match self {
            Platform::Amd64 => "amd64",
            Platform::Arm64 => "arm64",
        }
    }
    /// The platform of the machine xtask runs on, if it is one Lambda supports.
    pub fn host() -> Option<Platform> {
        match std::env::consts::ARCH {
            "x86_64" => Some(Platform::Amd64),
            "aarch64" => Some(Platform::Arm64),
            _ => None,
        }
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
    /// `registry/repository`, the name every tag and digest reference starts with.
    pub fn image_repo(&self) -> String {
        format!("{}/{}", self.registry(), self.repository)
    }
}

/// Variables xtask sets itself; a settings file may not set them in `terraform.vars`.
pub const RESERVED_VARS: &[&str] = &[
    "environment",
    "account_id",
    "region",
    "platform",
    "image_uri",
];

impl Settings {
    pub fn load(path: &Path) -> Result<Settings> {
        let text = std::fs::read_to_string(path).with_context(|| {
            format!(
                "cannot read settings file {} (pass --config PATH or set XTASK_CONFIG)",
                path.display()
            )
        })?;
        Settings::parse(path, &text)
    }

    pub fn parse(path: &Path, text: &str) -> Result<Settings> {
        parse::settings(path, text)
    }

    pub fn environment(&self, name: &str) -> Result<&Environment> {
        self.environments.get(name).with_context(|| {
            let names: Vec<&str> = self.environments.keys().map(String::as_str).collect();
            format!(
                "unknown environment `{name}` in {}: valid environments are {} (pass one with --env)",
                self.path.display(),
                names.join(", ")
            )
        })
    }
}

#[cfg(test)]
mod tests {
    use super::parse::valid_region;
    use super::*;

    const FILE: &str = include_str!("../../../infrastructure/environments.toml");

    fn parse(text: &str) -> Result<Settings> {
        Settings::parse(Path::new("environments.toml"), text)
    }

    fn err(text: &str) -> String {
        format!("{:#}", parse(text).unwrap_err())
    }

    const MINIMAL: &str = r#"
[defaults]
region = "eu-west-1"
repository = "{env}-sse-streaming-lambda"
platform = "linux/amd64"
build_context = "src"
dockerfile = "src/Dockerfile"
[defaults.terraform]
dir = "infrastructure/terraform"
lock_timeout = "5m"
[defaults.terraform.backend]
bucket = "{env}-state"
[environments.prod]
account_id = "222222222222"
"#;

    #[test]
    fn the_real_file_parses_and_merges_defaults() {
        let settings = parse(FILE).unwrap();
        assert_eq!(
            settings.environments.keys().collect::<Vec<_>>(),
            ["local", "preprod", "prod"]
        );
        let prod = settings.environment("prod").unwrap();
        assert_eq!(prod.repository, "prod-sse-streaming-lambda");
        assert!(prod.protected);
        assert_eq!(prod.terraform.vars["memory_size"], "1024");
        assert_eq!(prod.terraform.vars["timeout"], "60");
        assert_eq!(prod.terraform.backend["key"], "prod/sse-streaming.tfstate");
        assert_eq!(prod.terraform.backend["region"], "eu-west-1");
        assert_eq!(
            prod.registry(),
            "222222222222.dkr.ecr.eu-west-1.amazonaws.com"
        );
        let local = settings.environment("local").unwrap();
        assert!(!local.protected);
        assert_eq!(local.registry(), "127.0.0.1:5000");
        assert_eq!(
            local.local.as_ref().unwrap().endpoint_url,
            "http://127.0.0.1:4566"
        );
    }

    #[test]
    fn unknown_environment_lists_the_valid_ones() {
        let settings = parse(FILE).unwrap();
        let e = format!("{:#}", settings.environment("staging").unwrap_err());
        assert!(e.contains("unknown environment `staging`"), "{e}");
        assert!(e.contains("local, preprod, prod"), "{e}");
    }

    #[test]
    fn unknown_keys_are_errors_with_position() {
        let e = err(&MINIMAL.replace(
            "account_id = \"222222222222\"",
            "account_id = \"222222222222\"\nregoin = \"x\"",
        ));
        assert!(e.contains("environments.toml:15:1"), "{e}");
        assert!(e.contains("unknown field `regoin`"), "{e}");
        assert!(e.contains("regoin = \"x\""), "{e}");
    }

    #[test]
    fn account_ids_are_twelve_digits() {
        for bad in ["22222222222", "2222222222222", "22222222222a"] {
            let e = err(&MINIMAL.replace("222222222222", bad));
            assert!(e.contains("environments.toml:14:14"), "{e}");
            assert!(
                e.contains("`account_id`") && e.contains("exactly 12 digits"),
                "{e}"
            );
        }
    }

    #[test]
    fn regions_must_look_like_regions() {
        for bad in [
            "eu-west",
            "europe-west-1",
            "EU-WEST-1",
            "eu--1",
            "eu-west-1a",
        ] {
            let e = err(&MINIMAL.replace("\"eu-west-1\"", &format!("\"{bad}\"")));
            assert!(e.contains(":3:10") && e.contains("`region`"), "{bad}: {e}");
        }
        for good in [
            "us-east-1",
            "us-gov-west-1",
            "ap-southeast-2",
            "il-central-1",
        ] {
            assert!(valid_region(good), "{good}");
        }
    }

    #[test]
    fn environment_names_are_checked() {
        for bad in [
            "Prod",
            "1prod",
            "prod_eu",
            "a-very-long-environment-name-that-is-too-long",
        ] {
            let e = err(&MINIMAL.replace("[environments.prod]", &format!("[environments.{bad}]")));
            assert!(
                e.contains("must match ^[a-z][a-z0-9-]{0,31}$"),
                "{bad}: {e}"
            );
        }
    }

    #[test]
    fn syntax_and_type_errors_name_line_column_and_key() {
        let e = err(&MINIMAL.replace("lock_timeout = \"5m\"", "lock_timeout = 5"));
        assert!(e.contains("environments.toml:10:16"), "{e}");
        assert!(e.contains("lock_timeout = 5"), "{e}");
        let e = err(&MINIMAL.replace("[defaults.terraform]", "[defaults.terraform"));
        assert!(
            e.contains("environments.toml:8:20") && e.contains("unclosed table"),
            "{e}"
        );
    }

    #[test]
    fn platform_is_one_of_two() {
        let e = err(&MINIMAL.replace("linux/amd64", "linux/386"));
        assert!(
            e.contains("`platform`") && e.contains("linux/amd64 or linux/arm64"),
            "{e}"
        );
    }

    #[test]
    fn local_keys_go_together_and_stay_on_loopback() {
        let base = MINIMAL.to_string() + "registry = \"127.0.0.1:5000\"\n";
        assert!(err(&base).contains("go together"));
        let remote = base.clone() + "endpoint_url = \"http://10.0.0.1:4566\"\n";
        assert!(err(&remote).contains("loopback http URL"));
        let ok = base + "endpoint_url = \"http://127.0.0.1:4566\"\n";
        assert!(parse(&ok).unwrap().environments["prod"].local.is_some());
        let shared = MINIMAL.replace(
            "[defaults.terraform]\n",
            "endpoint_url = \"http://127.0.0.1:1\"\n[defaults.terraform]\n",
        );
        assert!(
            err(&shared).contains("not to [defaults]"),
            "{}",
            err(&shared)
        );
    }

    #[test]
    fn reserved_terraform_vars_are_refused() {
        let text =
            MINIMAL.to_string() + "[environments.prod.terraform.vars]\nimage_uri = \"x:latest\"\n";
        let e = err(&text);
        assert!(e.contains("`image_uri` is set by xtask"), "{e}");
    }

    #[test]
    fn state_bucket_is_required() {
        let e = err(&MINIMAL.replace("bucket = \"{env}-state\"", ""));
        assert!(e.contains("terraform.backend.bucket"), "{e}");
    }
}
