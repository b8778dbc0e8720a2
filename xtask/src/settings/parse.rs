//! The raw TOML schema, the merge of `[defaults]` into each environment, and validation,
//! with every error naming the file, line, column and key.

use std::{collections::BTreeMap, fmt, path::Path};

use anyhow::{Result, bail};
use serde::Deserialize;
use toml::Spanned;

use super::*;

mod scan;

pub(super) fn settings(path: &Path, text: &str) -> Result<Settings> {
    let file: RawFile = toml::from_str(text).map_err(|err| {
        let at = err.span().map(|span| Located::new(path, text, span.start));
        anyhow::anyhow!(
            "{}invalid settings: {}{}",
            at.as_ref().map(|at| format!("{at}: ")).unwrap_or_default(),
            err.message(),
            at.map(|at| at.excerpt()).unwrap_or_default()
        )
    })?;
    let cx = Cx { path, text };
    let defaults = file.defaults.unwrap_or_default();
    if file.environments.is_empty() {
        bail!(
            "{}: no [environments.NAME] table is defined",
            path.display()
        );
    }
    let mut environments = BTreeMap::new();
    for (name, raw) in file.environments {
        let env = cx.merge(&name, &defaults, raw)?;
        environments.insert(name.into_inner(), env);
    }
    Ok(Settings {
        path: path.to_path_buf(),
        environments,
    })
}

/// The environment named by `--env`, or an error listing the valid names.

// The raw schema. Every field is optional here so that defaults can be merged;
// required values are checked after the merge, with the position of the table.

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawFile {
    defaults: Option<RawEnv>,
    #[serde(default)]
    environments: BTreeMap<Spanned<String>, Spanned<RawEnv>>,
}

#[derive(Deserialize, Default, Clone)]
#[serde(deny_unknown_fields)]
struct RawEnv {
    account_id: Option<Spanned<String>>,
    region: Option<Spanned<String>>,
    repository: Option<Spanned<String>>,
    platform: Option<Spanned<String>>,
    build_context: Option<Spanned<String>>,
    dockerfile: Option<Spanned<String>>,
    build_args: Option<BTreeMap<String, String>>,
    builder: Option<Spanned<String>>,
    protected: Option<bool>,
    smoke_test: Option<bool>,
    registry: Option<Spanned<String>>,
    endpoint_url: Option<Spanned<String>>,
    terraform: Option<RawTerraform>,
    bootstrap: Option<RawBootstrap>,
    scan: Option<scan::RawScan>,
}

/// `[bootstrap]`: the administrator's account layer (`cargo xtask bootstrap`).
#[derive(Deserialize, Default, Clone)]
#[serde(deny_unknown_fields)]
struct RawBootstrap {
    dir: Option<Spanned<String>>,
    vars: Option<BTreeMap<Spanned<String>, Spanned<toml::Value>>>,
}

#[derive(Deserialize, Default, Clone)]
#[serde(deny_unknown_fields)]
struct RawTerraform {
    dir: Option<Spanned<String>>,
    lock_timeout: Option<Spanned<String>>,
    backend: Option<BTreeMap<Spanned<String>, Spanned<toml::Value>>>,
    vars: Option<BTreeMap<Spanned<String>, Spanned<toml::Value>>>,
}

struct Cx<'a> {
    path: &'a Path,
    text: &'a str,
}

impl Cx<'_> {
    fn error(&self, offset: usize, key: &str, message: impl fmt::Display) -> anyhow::Error {
        let at = Located::new(self.path, self.text, offset);
        anyhow::anyhow!("{at}: invalid settings: `{key}`: {message}{}", at.excerpt())
    }

    fn merge(
        &self,
        name: &Spanned<String>,
        defaults: &RawEnv,
        raw: Spanned<RawEnv>,
    ) -> Result<Environment> {
        let table_at = raw.span().start;
        let raw = raw.into_inner();
        let env_name = name.get_ref().clone();
        if !valid_env_name(&env_name) {
            return Err(self.error(
                name.span().start,
                "environments",
                format_args!(
                    "environment name `{env_name}` must match ^[a-z][a-z0-9-]{{0,31}}$ \
                     (lowercase letter first, then lowercase letters, digits or `-`, at most 32)"
                ),
            ));
        }
        let subst = |s: &str| s.replace("{env}", &env_name);
        let pick = |own: &Option<Spanned<String>>, def: &Option<Spanned<String>>| {
            own.clone().or_else(|| def.clone())
        };
        let required = |value: Option<Spanned<String>>, key: &str| -> Result<Spanned<String>> {
            value.ok_or_else(|| {
                self.error(
                    table_at,
                    key,
                    format_args!(
                        "missing for environment `{env_name}`: set it under [environments.{env_name}] or [defaults]"
                    ),
                )
            })
        };

        let account = required(pick(&raw.account_id, &defaults.account_id), "account_id")?;
        if !(account.get_ref().len() == 12 && account.get_ref().bytes().all(|b| b.is_ascii_digit()))
        {
            return Err(self.error(
                account.span().start,
                "account_id",
                format_args!(
                    "`{}` is not an AWS account id (exactly 12 digits)",
                    account.get_ref()
                ),
            ));
        }
        let region = required(pick(&raw.region, &defaults.region), "region")?;
        if !valid_region(region.get_ref()) {
            return Err(self.error(
                region.span().start,
                "region",
                format_args!(
                    "`{}` does not look like an AWS region (for example eu-west-1, us-gov-west-1)",
                    region.get_ref()
                ),
            ));
        }
        let repository = required(pick(&raw.repository, &defaults.repository), "repository")?;
        let repository_name = subst(repository.get_ref());
        if !valid_repository(&repository_name) {
            return Err(self.error(
                repository.span().start,
                "repository",
                format_args!(
                    "`{repository_name}` is not a valid ECR repository name \
                     (lowercase letters, digits, `.`, `_`, `-`, `/`, 2 to 256 characters)"
                ),
            ));
        }
        let platform = required(pick(&raw.platform, &defaults.platform), "platform")?;
        let platform_value = match platform.get_ref().as_str() {
            "linux/amd64" => Platform::Amd64,
            "linux/arm64" => Platform::Arm64,
            other => {
                return Err(self.error(
                    platform.span().start,
                    "platform",
                    format_args!(
                        "`{other}` is not a Lambda platform: use linux/amd64 or linux/arm64"
                    ),
                ));
            }
        };
        let build_context = required(
            pick(&raw.build_context, &defaults.build_context),
            "build_context",
        )?;
        let dockerfile = required(pick(&raw.dockerfile, &defaults.dockerfile), "dockerfile")?;
        for (value, key) in [
            (&build_context, "build_context"),
            (&dockerfile, "dockerfile"),
        ] {
            let v = value.get_ref();
            if v.is_empty() || Path::new(v).is_absolute() || v.split('/').any(|part| part == "..") {
                return Err(self.error(
                    value.span().start,
                    key,
                    format_args!("`{v}` must be a path relative to the repository root, inside it"),
                ));
            }
        }

        let mut build_args = defaults.build_args.clone().unwrap_or_default();
        build_args.extend(raw.build_args.clone().unwrap_or_default());

        let registry = raw.registry.clone();
        let endpoint_url = raw.endpoint_url.clone();
        if let Some(key) = [
            ("registry", &defaults.registry),
            ("endpoint_url", &defaults.endpoint_url),
        ]
        .iter()
        .find_map(|(key, value)| value.as_ref().map(|v| (key, v)))
        {
            return Err(self.error(
                key.1.span().start,
                key.0,
                "belongs to one environment, not to [defaults]: a shared endpoint override would \
                 point every environment at the local stack",
            ));
        }
        let local = match (registry, endpoint_url) {
            (None, None) => None,
            (Some(registry), Some(endpoint)) => {
                let host = registry.get_ref();
                if !is_loopback_hostport(host) {
                    return Err(self.error(
                        registry.span().start,
                        "registry",
                        format_args!(
                            "`{host}` must be a loopback host:port such as 127.0.0.1:5000"
                        ),
                    ));
                }
                let url = endpoint.get_ref();
                let hostport = url
                    .strip_prefix("http://")
                    .map(|rest| rest.trim_end_matches('/'));
                if !hostport.is_some_and(is_loopback_hostport) {
                    return Err(self.error(
                        endpoint.span().start,
                        "endpoint_url",
                        format_args!(
                            "`{url}` must be a loopback http URL such as http://127.0.0.1:4566"
                        ),
                    ));
                }
                Some(LocalEndpoints {
                    registry: host.clone(),
                    endpoint_url: url.clone(),
                })
            }
            (Some(one), None) | (None, Some(one)) => {
                return Err(self.error(
                    one.span().start,
                    "registry",
                    "`registry` and `endpoint_url` go together: set both for a local-stack \
                     environment, or neither",
                ));
            }
        };

        let def_tf = defaults.terraform.clone().unwrap_or_default();
        let own_tf = raw.terraform.clone().unwrap_or_default();
        let tf_dir = required(pick(&own_tf.dir, &def_tf.dir), "terraform.dir")?;
        let lock_timeout = required(
            pick(&own_tf.lock_timeout, &def_tf.lock_timeout),
            "terraform.lock_timeout",
        )?;
        if !valid_duration(lock_timeout.get_ref()) {
            return Err(self.error(
                lock_timeout.span().start,
                "terraform.lock_timeout",
                format_args!(
                    "`{}` is not a duration such as 30s or 5m",
                    lock_timeout.get_ref()
                ),
            ));
        }
        let backend = self.merge_values(
            &def_tf.backend,
            &own_tf.backend,
            "terraform.backend",
            &subst,
        )?;
        let mut backend = backend;
        backend
            .entry("region".into())
            .or_insert_with(|| region.get_ref().clone());
        if !backend.contains_key("bucket") {
            return Err(self.error(
                table_at,
                "terraform.backend.bucket",
                format_args!(
                    "missing for environment `{env_name}`: the S3 state bucket goes in \
                     [environments.{env_name}.terraform.backend]"
                ),
            ));
        }
        let vars = self.merge_values(&def_tf.vars, &own_tf.vars, "terraform.vars", &subst)?;
        if let Some((key, _)) = own_tf
            .vars
            .iter()
            .chain(def_tf.vars.iter())
            .flatten()
            .find(|(key, _)| RESERVED_VARS.contains(&key.get_ref().as_str()))
        {
            return Err(self.error(
                key.span().start,
                "terraform.vars",
                format_args!(
                    "`{}` is set by xtask from the environment's own keys; remove it here",
                    key.get_ref()
                ),
            ));
        }

        let def_bs = defaults.bootstrap.clone().unwrap_or_default();
        let own_bs = raw.bootstrap.clone().unwrap_or_default();
        let bootstrap_dir = pick(&own_bs.dir, &def_bs.dir)
            .map(|d| subst(d.get_ref()))
            .unwrap_or_else(|| DEFAULT_BOOTSTRAP_DIR.to_string());
        let bootstrap_vars =
            self.merge_values(&def_bs.vars, &own_bs.vars, "bootstrap.vars", &subst)?;
        if let Some((key, _)) = own_bs
            .vars
            .iter()
            .chain(def_bs.vars.iter())
            .flatten()
            .find(|(key, _)| RESERVED_BOOTSTRAP_VARS.contains(&key.get_ref().as_str()))
        {
            return Err(self.error(
                key.span().start,
                "bootstrap.vars",
                format_args!(
                    "`{}` is set by xtask from the environment's own keys; remove it here",
                    key.get_ref()
                ),
            ));
        }

        Ok(Environment {
            name: env_name.clone(),
            account_id: account.into_inner(),
            region: region.into_inner(),
            repository: repository_name,
            platform: platform_value,
            build_context: subst(build_context.get_ref()),
            dockerfile: subst(dockerfile.get_ref()),
            build_args,
            builder: pick(&raw.builder, &defaults.builder).map(|b| subst(b.get_ref())),
            protected: raw.protected.or(defaults.protected).unwrap_or(false),
            smoke_test: raw.smoke_test.or(defaults.smoke_test).unwrap_or(true),
            terraform: Terraform {
                dir: subst(tf_dir.get_ref()),
                lock_timeout: lock_timeout.into_inner(),
                backend,
                vars,
            },
            bootstrap: Bootstrap {
                dir: bootstrap_dir,
                vars: bootstrap_vars,
            },
            scan: self.scan(defaults, &raw)?,
            local,
        })
    }

    /// Merges two key/value tables; scalars become their literal text, and strings get `{env}`.
    fn merge_values(
        &self,
        defaults: &Option<BTreeMap<Spanned<String>, Spanned<toml::Value>>>,
        own: &Option<BTreeMap<Spanned<String>, Spanned<toml::Value>>>,
        table: &str,
        subst: &dyn Fn(&str) -> String,
    ) -> Result<BTreeMap<String, String>> {
        let mut out = BTreeMap::new();
        for (key, value) in defaults.iter().chain(own.iter()).flatten() {
            let text = match value.get_ref() {
                toml::Value::String(s) => subst(s),
                toml::Value::Integer(i) => i.to_string(),
                toml::Value::Float(f) => f.to_string(),
                toml::Value::Boolean(b) => b.to_string(),
                other if table.ends_with(".vars") => serde_json::to_string(other)?,
                _ => {
                    return Err(self.error(
                        value.span().start,
                        &format!("{table}.{}", key.get_ref()),
                        "backend settings are single values (string, number or boolean)",
                    ));
                }
            };
            out.insert(key.get_ref().clone(), text);
        }
        Ok(out)
    }
}

/// A position in the settings file, printed as `path:line:column`.
struct Located<'a> {
    path: &'a Path,
    line: usize,
    column: usize,
    line_text: &'a str,
}

impl<'a> Located<'a> {
    fn new(path: &'a Path, text: &'a str, offset: usize) -> Located<'a> {
        let offset = offset.min(text.len());
        let before = &text[..offset];
        let line = before.matches('\n').count() + 1;
        let line_start = before.rfind('\n').map_or(0, |i| i + 1);
        let line_end = text[offset..].find('\n').map_or(text.len(), |i| offset + i);
        let column = text[line_start..offset].chars().count() + 1;
        Located {
            path,
            line,
            column,
            line_text: &text[line_start..line_end],
        }
    }
    fn excerpt(&self) -> String {
        format!("\n  {:>4} | {}", self.line, self.line_text.trim_end())
    }
}

impl fmt::Display for Located<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}", self.path.display(), self.line, self.column)
    }
}

pub fn valid_env_name(name: &str) -> bool {
    let bytes = name.as_bytes();
    !bytes.is_empty()
        && bytes.len() <= 32
        && bytes[0].is_ascii_lowercase()
        && bytes
            .iter()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'-')
}

/// `xx-name-N` or `xx-gov-name-N`: two lowercase letters, one or two words, a number.
pub(super) fn valid_region(region: &str) -> bool {
    let parts: Vec<&str> = region.split('-').collect();
    let (Some(first), Some(last)) = (parts.first(), parts.last()) else {
        return false;
    };
    (3..=4).contains(&parts.len())
        && first.len() == 2
        && first.bytes().all(|b| b.is_ascii_lowercase())
        && !last.is_empty()
        && last.len() <= 2
        && last.bytes().all(|b| b.is_ascii_digit())
        && parts[1..parts.len() - 1]
            .iter()
            .all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_lowercase()))
}

fn valid_repository(name: &str) -> bool {
    (2..=256).contains(&name.len())
        && name.as_bytes()[0].is_ascii_alphanumeric()
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-/".contains(&b))
}

fn valid_duration(text: &str) -> bool {
    let digits = text.trim_end_matches(['s', 'm', 'h']);
    !digits.is_empty() && digits.len() < text.len() && digits.bytes().all(|b| b.is_ascii_digit())
}

fn is_loopback_hostport(hostport: &str) -> bool {
    let Some((host, port)) = hostport.rsplit_once(':') else {
        return false;
    };
    let loopback = host == "localhost"
        || host.strip_prefix("127.").is_some_and(|rest| {
            rest.split('.').count() == 3 && rest.split('.').all(|o| o.parse::<u8>().is_ok())
        });
    loopback && port.parse::<u16>().is_ok_and(|p| p > 0)
}
