//! The file's schema, the merge of `[defaults]` into each environment, validation and the
//! scan gate's table, with every error naming the file, line, column and key.
//!
//! The file is typed twice: as written, so a wrong key or type is found where it is; then
//! each environment as TOML tables merged key by key (every value keeps its place in the
//! file), so one set of optional raw types serves every layer of the merge.

use std::{collections::BTreeMap, fmt, ops::Range, path::Path, time::Duration};

use anyhow::{Result, anyhow, bail};
use serde::{Deserialize, de::DeserializeOwned};
use toml::Spanned;
use toml::de::{DeTable, DeValue, ValueDeserializer};

use super::*;
use crate::scan::{Allow, Date, FailOn, Policy, Severity};

/// A string of the file, with its place in it.
pub(super) type Str = Spanned<String>;
type Map = BTreeMap<String, String>;
type Values = BTreeMap<Str, Spanned<toml::Value>>;

/// Variables xtask sets itself for the bootstrap root.
const RESERVED_BOOTSTRAP_VARS: &str = "environment account_id region project functions \
    promotion_source state_bucket app_state_key deny_insecure_transport \
    expire_noncurrent_state_versions";

/// What a valid value of each checked key is: its error says this after the value.
const RULES: &str = "\
project: must match ^[a-z][a-z0-9-]{0,31}$ (it prefixes role and bucket names)
name: must match ^[a-z][a-z0-9-]{0,31}$ (lowercase letter first, then lowercase letters, \
    digits or `-`, at most 32)
account_id: is not an AWS account id (exactly 12 digits)
region: does not look like an AWS region (for example eu-west-1, us-gov-west-1)
terraform.lock_timeout: is not a duration such as 30s or 5m
registry: must be a loopback host:port such as 127.0.0.1:5001
endpoint_url: must be a loopback http URL such as http://127.0.0.1:4566
scan.fail_on: is not a severity: use one of CRITICAL, HIGH, MEDIUM, LOW, INFORMATIONAL, \
    UNDEFINED, never
scan.timeout: is not a positive duration such as 30s, 10m or 1h
scan.allow.id: is not a finding id (such as CVE-2024-12345)
scan.allow.expires: is not a date YYYY-MM-DD (the last day it counts)
build_context: must be a path relative to the repository root, inside it
dockerfile: must be a path relative to the repository root, inside it
platform: is not a Lambda platform: use linux/amd64 or linux/arm64
invoke_mode: is not an invoke mode: use RESPONSE_STREAM or BUFFERED
repository: is not a valid ECR repository name (lowercase letters, digits, `.`, `_`, `-`, `/`, \
    2 to 256 characters)
memory_size: is not a memory size: 128 to 10240 MB
timeout: is not a Lambda timeout: 1 to 900 seconds
log_retention_days: is not a retention CloudWatch Logs accepts (1, 3, 5, 7, 14, 30, 60, 90, \
    ... 3653)";

pub(super) fn rule(key: &str) -> &'static str {
    let line = |l: &'static str| l.strip_prefix(key)?.strip_prefix(": ");
    RULES.lines().find_map(line).unwrap_or("is not valid")
}

pub(super) fn settings(path: &Path, text: &str, root: &Path) -> Result<Settings> {
    let mut cx = Cx {
        path,
        text,
        root,
        project: "",
        functions: &DeTable::new(),
        env: "",
        function: "",
        at: 0,
    };
    let doc = DeTable::parse(text).map_err(|e| cx.toml(e))?;
    let file: RawFile = cx.de(doc.span(), doc.get_ref().clone())?;
    let why = "missing: name the project at the top of the file";
    let project = file.project.ok_or_else(|| cx.error(0, "project", why))?;
    if !valid_env_name(project.get_ref()) {
        return Err(cx.at(&project, "project", rule("project")));
    }
    let (none, empty) = (file.functions.is_empty(), file.environments.is_empty());
    if let Some(table) = none
        .then_some("functions")
        .or(empty.then_some("environments"))
    {
        bail!("{}: no [{table}.NAME] table is defined", path.display());
    }
    for name in file.functions.keys() {
        cx.check_name(name, "functions")?;
    }
    let d = file.defaults;
    let local = [("registry", d.registry), ("endpoint_url", d.endpoint_url)];
    for (key, value) in local.into_iter().chain([("promote_from", d.promote_from)]) {
        if let Some(value) = value {
            return Err(cx.at(&value, key, "belongs to one environment, not to [defaults]"));
        }
    }
    let top = |key: &str| table(doc.get_ref().get(key));
    let functions = top("functions");
    (cx.project, cx.functions) = (project.get_ref(), &functions);
    let mut environments = BTreeMap::new();
    for (name, value) in top("environments") {
        let name = Spanned::new(name.span(), name.get_ref().to_string());
        cx.check_name(&name, "environments")?;
        let mut merged = top("defaults");
        merge(&mut merged, &table(Some(&value)), true);
        let overrides = table(merged.get("function"));
        let cx = cx.within(name.get_ref(), "", value.span().start);
        let env = cx.environment(cx.de(value.span(), merged)?, &overrides)?;
        environments.insert(name.into_inner(), env);
    }
    // An environment that promotes from another may read its images: its deploy role is a
    // reader of the source's repositories.
    let mut readers = vec![];
    for (name, raw) in &file.environments {
        if let Some(from) = &raw.promote_from {
            let target = &environments[name.get_ref()];
            cx.check_promotion(&environments, target, from)?;
            readers.push((from.get_ref().clone(), target.deploy_role_arn()));
        }
    }
    for (source, reader) in readers {
        if let Some(env) = environments.get_mut(&source) {
            env.readers.push(reader);
        }
    }
    let path = path.to_path_buf();
    Ok(Settings { path, environments })
}

/// The table a value holds (the typed pass has already checked that it is one).
pub(super) fn table<'i>(value: Option<&Spanned<DeValue<'i>>>) -> DeTable<'i> {
    match value.map(Spanned::get_ref) {
        Some(DeValue::Table(table)) => table.clone(),
        _ => DeTable::new(),
    }
}

/// `over` merged into `base` key by key: tables merge, but a `smoke` or `stream` table and a
/// table value of `bootstrap.vars` replace; `allow` lists add up; any other value replaces.
pub(super) fn merge<'i>(base: &mut DeTable<'i>, over: &DeTable<'i>, deep: bool) {
    for (key, value) in over {
        let k: &str = key.get_ref();
        let whole = !deep || k == "smoke" || k == "stream";
        let merged = match (base.remove(k).map(Spanned::into_inner), value.get_ref()) {
            (Some(DeValue::Table(mut b)), DeValue::Table(o)) if !whole => {
                merge(&mut b, o, k != "vars");
                DeValue::Table(b)
            }
            (Some(DeValue::Array(mut b)), DeValue::Array(o)) if k == "allow" => {
                o.iter().for_each(|v| b.push(v.clone()));
                DeValue::Array(b)
            }
            _ => value.get_ref().clone(),
        };
        base.insert(key.clone(), Spanned::new(value.span(), merged));
    }
}

// The raw schema: every field is optional, so that one type serves each layer of the merge;
// required values are checked after it, at the position of the environment's table.

#[derive(Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
struct RawFile {
    project: Option<Str>,
    defaults: RawEnv,
    functions: BTreeMap<Str, function::RawFunction>,
    environments: BTreeMap<Str, RawEnv>,
}

#[derive(Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
pub(super) struct RawEnv {
    account_id: Option<Str>,
    region: Option<Str>,
    builder: Option<String>,
    protected: bool,
    smoke_test: Option<bool>,
    registry: Option<Str>,
    endpoint_url: Option<Str>,
    promote_from: Option<Str>,
    /// The functions deployed here (default: all), and their overrides.
    pub(super) functions: Option<Vec<Str>>,
    pub(super) function: BTreeMap<Str, function::RawFunction>,
    /// Build args of every function here (the local stack's base-image stand-ins).
    pub(super) build_args: Map,
    terraform: RawTerraform,
    bootstrap: RawBootstrap,
    scan: RawScan,
}

#[derive(Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
struct RawTerraform {
    dir: Option<Str>,
    lock_timeout: Option<Str>,
    backend: Values,
    /// Refused with a pointer: function values moved to `[functions.NAME]`.
    vars: Option<Spanned<toml::Value>>,
}

#[derive(Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
struct RawBootstrap {
    dir: Option<Str>,
    vars: Values,
}

#[derive(Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
struct RawScan {
    fail_on: Option<Str>,
    timeout: Option<Str>,
    allow: Vec<Spanned<RawAllow>>,
}

#[derive(Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
struct RawAllow {
    id: Option<Str>,
    reason: Option<Str>,
    /// A string `"2027-01-31"` or a TOML date `2027-01-31`.
    expires: Option<Spanned<toml::Value>>,
}

/// Where validation stands: the file, and the environment and function being merged (their
/// table's position is where a missing key is reported).
#[derive(Clone, Copy)]
pub(super) struct Cx<'a> {
    path: &'a Path,
    text: &'a str,
    /// The repository root, against which build contexts and Dockerfiles are checked.
    pub(super) root: &'a Path,
    project: &'a str,
    /// The `[functions.NAME]` tables, as written.
    pub(super) functions: &'a DeTable<'a>,
    pub(super) env: &'a str,
    pub(super) function: &'a str,
    pub(super) at: usize,
}

impl<'a> Cx<'a> {
    /// The same file, at an environment's or a function's table.
    pub(super) fn within(&self, env: &'a str, function: &'a str, at: usize) -> Cx<'a> {
        let mut cx = *self;
        (cx.env, cx.function, cx.at) = (env, function, at);
        cx
    }

    /// `path:line:column: invalid settings: MESSAGE`, then the line quoted.
    fn fail(&self, offset: usize, message: impl fmt::Display) -> anyhow::Error {
        let (text, path) = (self.text, self.path.display());
        let offset = offset.min(text.len());
        let start = text[..offset].rfind('\n').map_or(0, |i| i + 1);
        let quoted = text[start..].lines().next().unwrap_or_default().trim_end();
        let line = text[..offset].matches('\n').count() + 1;
        let column = text[start..offset].chars().count() + 1;
        anyhow!("{path}:{line}:{column}: invalid settings: {message}\n  {line:>4} | {quoted}")
    }

    fn toml(&self, err: toml::de::Error) -> anyhow::Error {
        let Some(span) = err.span() else {
            let (path, message) = (self.path.display(), err.message());
            return anyhow!("{path}: invalid settings: {message}");
        };
        self.fail(span.start, err.message())
    }

    /// Types a table; a wrong key or type is an error at its place in the file.
    pub(super) fn de<T: DeserializeOwned>(&self, span: Range<usize>, table: DeTable) -> Result<T> {
        let value = ValueDeserializer::from(Spanned::new(span, DeValue::Table(table)));
        T::deserialize(value).map_err(|e| self.toml(e))
    }

    pub(super) fn error(&self, at: usize, key: &str, why: impl fmt::Display) -> anyhow::Error {
        self.fail(at, format_args!("`{key}`: {why}"))
    }

    pub(super) fn at<T>(&self, v: &Spanned<T>, key: &str, why: impl fmt::Display) -> anyhow::Error {
        self.error(v.span().start, key, why)
    }

    /// What `parse` makes of the value, or "`VALUE` RULE" at its position (see [`RULES`]).
    pub(super) fn parse<T>(&self, v: &Str, key: &str, f: impl Fn(&str) -> Option<T>) -> Result<T> {
        let why = format!("`{v}` {}", rule(key));
        f(v.get_ref()).ok_or_else(|| self.at(v, key, why))
    }

    pub(super) fn check(&self, v: &Str, key: &str, ok: fn(&str) -> bool) -> Result<()> {
        self.parse(v, key, |text| ok(text).then_some(()))
    }

    /// A value the merge requires, or an error at the environment's or function's table.
    pub(super) fn need<'v, T>(&self, v: &'v Option<T>, key: &str) -> Result<&'v T> {
        let (env, f) = (self.env, self.function);
        let why = match f {
            "" => format!("environment `{env}`: set it under [environments.{env}] or [defaults]"),
            _ => format!("function `{f}`: set it under [functions.{f}]"),
        };
        let error = || self.error(self.at, key, format_args!("missing for {why}"));
        v.as_ref().ok_or_else(error)
    }

    fn check_name(&self, name: &Str, table: &str) -> Result<()> {
        let why = format!("name `{name}` {}", rule("name"));
        let valid = valid_env_name(name.get_ref());
        valid.then_some(()).ok_or_else(|| self.at(name, table, why))
    }

    fn environment(&self, raw: RawEnv, overrides: &DeTable) -> Result<Environment> {
        let (env, at) = (self.env, self.at);
        let subst = |s: &str| s.replace("{env}", env);
        let account = self.need(&raw.account_id, "account_id")?;
        self.check(account, "account_id", |a| {
            a.len() == 12 && a.bytes().all(|b| b.is_ascii_digit())
        })?;
        let region = self.need(&raw.region, "region")?;
        self.check(region, "region", valid_region)?;
        let local = self.local(&raw)?;
        let tf = &raw.terraform;
        if let Some(vars) = &tf.vars {
            let why = "function values (memory_size, timeout, log_retention_days, \
                       function_url_auth_type, environment variables, cors_allow_origins) \
                       moved to [functions.NAME], and per environment to \
                       [environments.ENV.function.NAME]";
            return Err(self.at(vars, "terraform.vars", why));
        }
        let tf_dir = self.need(&tf.dir, "terraform.dir")?;
        let timeout = self.need(&tf.lock_timeout, "terraform.lock_timeout")?;
        self.check(timeout, "terraform.lock_timeout", |t| duration(t).is_some())?;
        let mut backend = self.values(&tf.backend, "terraform.backend")?;
        let region_text = region.get_ref().clone();
        backend.entry("region".into()).or_insert(region_text);
        if !backend.contains_key("bucket") {
            let why = format!(
                "missing for environment `{env}`: the S3 state bucket goes in \
                 [environments.{env}.terraform.backend]"
            );
            return Err(self.error(at, "terraform.backend.bucket", why));
        }
        let bootstrap_dir = self.need(&raw.bootstrap.dir, "bootstrap.dir")?;
        let reserved = |k: &&Str| listed(RESERVED_BOOTSTRAP_VARS, k.get_ref());
        if let Some(key) = raw.bootstrap.vars.keys().find(reserved) {
            let why = "is set by xtask from the environment's own keys; remove it here";
            return Err(self.at(key, "bootstrap.vars", format_args!("`{key}` {why}")));
        }
        Ok(Environment {
            name: env.to_string(),
            project: self.project.to_string(),
            account_id: account.get_ref().clone(),
            region: region.get_ref().clone(),
            builder: raw.builder.as_deref().map(subst),
            protected: raw.protected,
            smoke_test: raw.smoke_test.unwrap_or(true),
            promote_from: raw.promote_from.as_ref().map(|p| p.get_ref().clone()),
            readers: vec![],
            terraform: Terraform {
                dir: subst(tf_dir.get_ref()),
                lock_timeout: timeout.get_ref().clone(),
                backend,
            },
            bootstrap: Bootstrap {
                dir: subst(bootstrap_dir.get_ref()),
                vars: self.values(&raw.bootstrap.vars, "bootstrap.vars")?,
            },
            scan: self.scan(&raw.scan)?,
            local,
            functions: self.functions(&raw, overrides)?,
        })
    }

    /// `registry` and `endpoint_url`: both or neither, both on loopback.
    fn local(&self, raw: &RawEnv) -> Result<Option<LocalEndpoints>> {
        let (registry, endpoint) = match (&raw.registry, &raw.endpoint_url) {
            (None, None) => return Ok(None),
            (Some(registry), Some(endpoint)) => (registry, endpoint),
            (Some(one), None) | (None, Some(one)) => {
                let why = "`registry` and `endpoint_url` go together: set both for a local-stack \
                           environment, or neither";
                return Err(self.at(one, "registry", why));
            }
        };
        self.check(registry, "registry", is_loopback_hostport)?;
        self.check(endpoint, "endpoint_url", |url| {
            let host = url.strip_prefix("http://").map(|r| r.trim_end_matches('/'));
            host.is_some_and(is_loopback_hostport)
        })?;
        let (registry, endpoint_url) = (registry.get_ref().clone(), endpoint.get_ref().clone());
        Ok(Some(LocalEndpoints {
            registry,
            endpoint_url,
        }))
    }

    /// `promote_from` names another environment of the same region, with no cycle.
    fn check_promotion(
        &self,
        envs: &BTreeMap<String, Environment>,
        target: &Environment,
        from: &Str,
    ) -> Result<()> {
        let Some(source) = envs.get(from.get_ref()) else {
            let names: Vec<&str> = envs.keys().map(String::as_str).collect();
            let names = names.join(", ");
            let why = format!("`{from}` is not an environment (valid: {names})");
            return Err(self.at(from, "promote_from", why));
        };
        let (s, t, sr, tr) = (&source.name, &target.name, &source.region, &target.region);
        let shared = |f: &&Function| source.functions.iter().any(|g| g.name == f.name);
        let why = if s == t || source.promote_from.as_ref() == Some(t) {
            "an environment cannot promote from itself or from one that promotes from it".into()
        } else if sr != tr {
            format!(
                "`{s}` is in {sr} and `{t}` in {tr}: promotion copies images registry to registry \
                 within one region; across regions, set up ECR replication from {sr} (then the \
                 image is already in {tr}) or use one region"
            )
        } else if source.local.is_some() != target.local.is_some() {
            "a local-stack environment promotes only from another local-stack one".into()
        } else if let Some(f) = target.functions.iter().find(|f| !shared(f)) {
            let f = &f.name;
            format!(
                "function `{f}` of `{t}` is not deployed in `{s}`, so it could never be promoted"
            )
        } else {
            return Ok(());
        };
        Err(self.at(from, "promote_from", why))
    }

    /// A key/value table as text: scalars literally, strings with `{env}`; `bootstrap.vars`
    /// also take lists and tables, as JSON.
    fn values(&self, values: &Values, table: &str) -> Result<Map> {
        let mut out = BTreeMap::new();
        for (key, value) in values {
            let text = match value.get_ref() {
                toml::Value::String(s) => s.replace("{env}", self.env),
                toml::Value::Integer(i) => i.to_string(),
                toml::Value::Float(f) => f.to_string(),
                toml::Value::Boolean(b) => b.to_string(),
                other if table == "bootstrap.vars" => serde_json::to_string(other)?,
                _ => {
                    let why = "backend settings are single values (string, number or boolean)";
                    return Err(self.at(value, &format!("{table}.{key}"), why));
                }
            };
            out.insert(key.get_ref().clone(), text);
        }
        Ok(out)
    }

    /// The scan gate: `fail_on` (default CRITICAL), `timeout` (default ten minutes) and the
    /// allow-list, whose entries each need an id, a reason and the last day they count.
    fn scan(&self, raw: &RawScan) -> Result<Policy> {
        let mut allow: Vec<Allow> = Vec::new();
        for entry in &raw.allow {
            let missing = "missing: every [[scan.allow]] entry needs id, reason and expires";
            let field = |value: &Option<Str>, key: &str| match value {
                Some(v) if v.get_ref().trim().is_empty() => {
                    Err(self.at(v, key, "must not be empty"))
                }
                Some(v) => Ok(v.clone()),
                None => Err(self.at(entry, key, missing)),
            };
            let id = field(&entry.get_ref().id, "scan.allow.id")?;
            self.check(&id, "scan.allow.id", |id| !id.contains(char::is_whitespace))?;
            if allow.iter().any(|a| a.id == *id.get_ref()) {
                return Err(self.at(&id, "scan.allow.id", format_args!("`{id}` is listed twice")));
            }
            let reason = field(&entry.get_ref().reason, "scan.allow.reason")?.into_inner();
            let expires = entry.get_ref().expires.as_ref();
            let expires = expires.ok_or_else(|| self.at(entry, "scan.allow.expires", missing))?;
            let date = match expires.get_ref() {
                toml::Value::String(s) => s.clone(),
                toml::Value::Datetime(d) => d.to_string(),
                other => format!("a {}", other.type_str()),
            };
            let date = Spanned::new(expires.span(), date);
            let expires = self.parse(&date, "scan.allow.expires", Date::parse)?;
            let id = id.into_inner();
            allow.push(Allow {
                id,
                reason,
                expires,
            });
        }
        let fail_on = raw
            .fail_on
            .as_ref()
            .map(|v| self.parse(v, "scan.fail_on", FailOn::parse));
        let timeout = raw
            .timeout
            .as_ref()
            .map(|v| self.parse(v, "scan.timeout", duration));
        let fail_on = fail_on
            .transpose()?
            .unwrap_or(FailOn::At(Severity::Critical));
        let timeout = timeout.transpose()?.unwrap_or(Duration::from_secs(600));
        Ok(Policy {
            fail_on,
            timeout,
            allow,
        })
    }
}

/// Whether `word` is one of the space-separated words of `list`.
pub(super) fn listed(list: &str, word: &str) -> bool {
    list.split_whitespace().any(|w| w == word)
}

pub fn valid_env_name(name: &str) -> bool {
    let b = name.as_bytes();
    let ok = |b: &u8| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'-';
    (1..=32).contains(&b.len()) && b[0].is_ascii_lowercase() && b.iter().all(ok)
}

/// `xx-name-N` or `xx-gov-name-N`: two lowercase letters, one or two words, a number.
pub(super) fn valid_region(region: &str) -> bool {
    let parts: Vec<&str> = region.split('-').collect();
    let (words, last) = parts.split_at(parts.len() - 1);
    let lower = |p: &&str| !p.is_empty() && p.bytes().all(|b| b.is_ascii_lowercase());
    let number = (1..=2).contains(&last[0].len()) && last[0].bytes().all(|b| b.is_ascii_digit());
    (3..=4).contains(&parts.len()) && words[0].len() == 2 && words.iter().all(lower) && number
}

fn is_loopback_hostport(hostport: &str) -> bool {
    let Some((host, port)) = hostport.rsplit_once(':') else {
        return false;
    };
    let octets: Vec<&str> = host.split('.').collect();
    let octet = |o: &&str| o.parse::<u8>().is_ok();
    let ip = octets.len() == 4 && octets[0] == "127" && octets.iter().all(octet);
    (host == "localhost" || ip) && port.parse::<u16>().is_ok_and(|p| p > 0)
}

/// `30s`, `10m`, `1h` as a duration; zero is not a wait. The one duration parser.
pub(crate) fn duration(text: &str) -> Option<Duration> {
    let (digits, unit) = text.split_at(text.len().checked_sub(1)?);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let units = [("s", 1), ("m", 60), ("h", 3600)];
    let (_, unit) = units.iter().find(|(u, _)| *u == unit)?;
    let secs = digits.parse::<u64>().ok()?.checked_mul(*unit)?;
    (secs > 0).then(|| Duration::from_secs(secs))
}
