//! `[functions.NAME]` with `[environments.ENV.function.NAME]` merged over it: one function's
//! build, smoke check and Lambda values, validated against the repository (the Dockerfile
//! must exist and must not declare another invoke mode).

use std::{collections::BTreeMap, path::Path};

use anyhow::Result;
use serde::Deserialize;
use toml::Spanned;
use toml::de::DeTable;

use super::parse::{Cx, RawEnv, Str, listed, merge, rule, table};
use super::{Expect, Function, InvokeMode, Platform, Smoke};

#[derive(Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
pub(super) struct RawFunction {
    build_context: Option<Str>,
    dockerfile: Option<Str>,
    platform: Option<Str>,
    invoke_mode: Option<Str>,
    repository: Option<Str>,
    function_name: Option<String>,
    execution_role: Option<String>,
    description: Option<String>,
    build_args: BTreeMap<String, String>,
    smoke: Option<Spanned<RawSmoke>>,
    memory_size: Option<Spanned<i64>>,
    timeout: Option<Spanned<i64>>,
    log_retention_days: Option<Spanned<i64>>,
    url_auth_type: Option<Str>,
    environment: BTreeMap<Str, Str>,
    /// How a streaming function hands its streams over before the invocation's deadline (the
    /// stream contract in the README): seconds before it, and the longest quiet time.
    stream: Option<Spanned<RawStream>>,
}

#[derive(Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
struct RawStream {
    handover_margin: Option<u32>,
    heartbeat: Option<u32>,
}

#[derive(Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
struct RawSmoke {
    path: Option<Str>,
    /// `sse`, or `json` with the top-level `fields` the answer must have.
    expect: Option<Str>,
    fields: Option<BTreeMap<String, String>>,
}

/// The values CloudWatch Logs accepts for a log group's retention, in days.
const RETENTION_DAYS: &str =
    "1 3 5 7 14 30 60 90 120 150 180 365 400 545 731 1096 1827 2192 2557 2922 3288 3653";

/// Variables Lambda sets itself, and the one xtask derives from the invoke mode.
const RESERVED_VARIABLES: &str = "_HANDLER _X_AMZN_TRACE_ID AWS_DEFAULT_REGION AWS_REGION \
    AWS_EXECUTION_ENV AWS_LAMBDA_FUNCTION_NAME AWS_LAMBDA_FUNCTION_MEMORY_SIZE \
    AWS_LAMBDA_FUNCTION_VERSION AWS_LAMBDA_INITIALIZATION_TYPE AWS_LAMBDA_LOG_GROUP_NAME \
    AWS_LAMBDA_LOG_STREAM_NAME AWS_ACCESS_KEY AWS_ACCESS_KEY_ID AWS_SECRET_ACCESS_KEY \
    AWS_SESSION_TOKEN AWS_LAMBDA_RUNTIME_API LAMBDA_TASK_ROOT LAMBDA_RUNTIME_DIR \
    AWS_LWA_INVOKE_MODE";

/// The variables through which a streaming function gets its margin, heartbeat and timeout.
const STREAM_VARIABLES: &str =
    "SSE_HANDOVER_MARGIN_SECONDS SSE_HEARTBEAT_SECONDS SSE_MAX_STREAM_SECONDS";

impl Cx<'_> {
    /// The functions of this environment: `functions = [...]` (default all), each
    /// `[functions.NAME]` with `[environments.ENV.function.NAME]` merged over it.
    pub(super) fn functions(&self, raw: &RawEnv, over: &DeTable) -> Result<Vec<Function>> {
        let names: Vec<&str> = self.functions.keys().map(|k| &**k.get_ref()).collect();
        let valid = names.join(", ");
        let known = |name: &Str, key: &str| {
            let why = format!("unknown function `{name}`: the functions are {valid}");
            let why = format!("{why} ([functions.NAME] tables)");
            let known = names.contains(&name.get_ref().as_str());
            known.then_some(()).ok_or_else(|| self.at(name, key, why))
        };
        for name in raw.function.keys() {
            known(name, "function")?;
        }
        for name in raw.functions.iter().flatten() {
            known(name, "functions")?;
        }
        let mut functions: Vec<Function> = Vec::new();
        for (name, base) in self.functions {
            let name: &str = name.get_ref();
            let listed = |list: &Vec<Str>| list.iter().any(|n| n.get_ref() == name);
            if !raw.functions.as_ref().is_none_or(listed) {
                continue;
            }
            let mut merged = table(Some(base));
            merge(&mut merged, &table(over.get(name)), true);
            let cx = self.within(self.env, name, base.span().start);
            let f: RawFunction = cx.de(base.span(), merged)?;
            let at = f.repository.as_ref().map_or(cx.at, |r| r.span().start);
            let function = cx.function(f, &raw.build_args)?;
            let repository = &function.repository;
            if let Some(other) = functions.iter().find(|f| &f.repository == repository) {
                let (env, other) = (self.env, &other.name);
                let why = format!(
                    "functions `{other}` and `{name}` both use repository `{repository}` in \
                     environment `{env}`: each function needs its own"
                );
                return Err(self.error(at, "repository", why));
            }
            functions.push(function);
        }
        Ok(functions)
    }

    fn function(&self, raw: RawFunction, env_args: &BTreeMap<String, String>) -> Result<Function> {
        let (env, name) = (self.env, self.function);
        let subst = |s: &str| s.replace("{env}", env).replace("{function}", name);
        let text = |v: &Option<String>, default: &str| subst(v.as_deref().unwrap_or(default));
        let context = self.need(&raw.build_context, "build_context")?;
        let dockerfile = self.need(&raw.dockerfile, "dockerfile")?;
        for (value, key) in [(context, "build_context"), (dockerfile, "dockerfile")] {
            self.check(value, key, |v| {
                let outside = Path::new(v).is_absolute() || v.split('/').any(|p| p == "..");
                !v.is_empty() && !outside
            })?;
        }
        let unread = |e| {
            let why = "the path is relative to the repository root";
            let why = format!("`{dockerfile}` cannot be read ({e}): {why}");
            self.at(dockerfile, "dockerfile", why)
        };
        let dockerfile_text = std::fs::read_to_string(self.root.join(dockerfile.get_ref()));
        let dockerfile_text = dockerfile_text.map_err(unread)?;
        let platform = |p: &str| Platform::ALL.into_iter().find(|x| x.docker() == p);
        let platform = raw
            .platform
            .as_ref()
            .map(|p| self.parse(p, "platform", platform));
        let mode = self.need(&raw.invoke_mode, "invoke_mode")?;
        let parse = |m: &str| InvokeMode::ALL.into_iter().find(|x| x.name() == m);
        let invoke_mode = self.parse(mode, "invoke_mode", parse)?;
        let (declared, mode_name) = (declared_invoke_mode(&dockerfile_text), invoke_mode.name());
        if let Some((line, declared)) = declared.filter(|(_, d)| !d.eq_ignore_ascii_case(mode_name))
        {
            let why = format!(
                "`{mode_name}` contradicts {dockerfile}:{line}, which sets \
                 AWS_LWA_INVOKE_MODE={declared}: the Function URL and the adapter must agree; \
                 change one of them"
            );
            return Err(self.at(mode, "invoke_mode", why));
        }
        let repository = raw.repository.as_ref().map(|r| r.get_ref().clone());
        let repository = text(&repository, "{env}-{function}");
        if !valid_repository(&repository) {
            let why = format!("`{repository}` {}", rule("repository"));
            return Err(self.error(self.at, "repository", why));
        }
        let number = |v: &Option<Spanned<i64>>, key: &str, default: u32, ok: fn(i64) -> bool| {
            let Some(v) = v else { return Ok(default) };
            let why = format!("{v} {}", rule(key));
            let value = ok(*v.get_ref()).then_some(*v.get_ref() as u32);
            value.ok_or_else(|| self.at(v, key, why))
        };
        let memory = number(&raw.memory_size, "memory_size", 512, |m| {
            (128..=10240).contains(&m)
        })?;
        let timeout = number(&raw.timeout, "timeout", 60, |t| (1..=900).contains(&t))?;
        let retain = |d: i64| listed(RETENTION_DAYS, &d.to_string());
        let retention = number(&raw.log_retention_days, "log_retention_days", 14, retain)?;
        let url_auth_type = match &raw.url_auth_type {
            None => "AWS_IAM".to_string(),
            Some(v) if listed("AWS_IAM NONE", v.get_ref()) => v.get_ref().clone(),
            Some(v) => return Err(self.at(v, "url_auth_type", "use AWS_IAM or NONE")),
        };
        let mut environment = BTreeMap::new();
        for (key, value) in &raw.environment {
            let k = key.get_ref();
            let word = |b: u8| b.is_ascii_alphanumeric() || b == b'_';
            let valid = k.len() > 1 && k.as_bytes()[0].is_ascii_alphabetic() && k.bytes().all(word);
            let why = match valid {
                true => "set by Lambda or derived by xtask from invoke_mode",
                false => "not a variable name (a letter, then letters, digits and `_`)",
            };
            if !valid || listed(RESERVED_VARIABLES, k) {
                return Err(self.at(key, "environment", format_args!("`{k}` is {why}")));
            }
            environment.insert(k.clone(), subst(value.get_ref()));
        }
        let streams = invoke_mode == InvokeMode::ResponseStream;
        let compression = raw.environment.get_key_value("AWS_LWA_ENABLE_COMPRESSION");
        let on = |(_, v): &(&Str, &Str)| v.get_ref().eq_ignore_ascii_case("true");
        if let Some((key, _)) = compression.filter(on).filter(|_| streams) {
            let why = "AWS_LWA_ENABLE_COMPRESSION = true makes the Lambda Web Adapter 0.9.1 \
                       compress chunked responses, which batches a stream's events: remove it \
                       for a RESPONSE_STREAM function";
            return Err(self.at(key, "environment", why));
        }
        // Every stream hands over `handover_margin` seconds before the invocation's deadline,
        // which the timeout must leave room for, with one heartbeat.
        if let Some(stream) = &raw.stream {
            if !streams {
                return Err(self.at(stream, "stream", "only a RESPONSE_STREAM function streams"));
            }
            let margin = stream.get_ref().handover_margin.unwrap_or(5);
            let heartbeat = stream.get_ref().heartbeat.unwrap_or(15);
            if margin == 0 || heartbeat == 0 {
                let why = "handover_margin and heartbeat are whole seconds, at least 1";
                return Err(self.at(stream, "stream", why));
            }
            let least = margin + heartbeat;
            if timeout < least {
                let at = raw
                    .timeout
                    .as_ref()
                    .map_or(stream.span(), |t| t.span())
                    .start;
                let why = format!(
                    "{timeout} s leaves a stream of `{name}` less than stream.handover_margin \
                     ({margin} s) plus one heartbeat ({heartbeat} s): every invocation would \
                     hand over before it streamed; raise timeout to at least {least} or lower \
                     those"
                );
                return Err(self.error(at, "timeout", why));
            }
            for (var, value) in STREAM_VARIABLES
                .split(' ')
                .zip([margin, heartbeat, timeout])
            {
                if environment.insert(var.into(), value.to_string()).is_some() {
                    let why = format!("comes from [functions.{name}.stream] and the timeout");
                    let why = format!("`{var}` {why}; remove it");
                    return Err(self.at(stream, "environment", why));
                }
            }
        }
        let mut build_args = raw.build_args;
        build_args.extend(env_args.clone());
        Ok(Function {
            name: name.to_string(),
            function_name: text(&raw.function_name, "{env}-{function}"),
            execution_role: text(&raw.execution_role, "{env}-{function}-exec"),
            description: text(&raw.description, "{function} ({env})"),
            repository,
            build_context: context.get_ref().clone(),
            dockerfile: dockerfile.get_ref().clone(),
            platform: platform.transpose()?.unwrap_or(Platform::Amd64),
            invoke_mode,
            build_args,
            smoke: raw.smoke.as_ref().map(|s| self.smoke(s)).transpose()?,
            memory_size: memory,
            timeout,
            log_retention_days: retention,
            url_auth_type,
            environment,
        })
    }

    fn smoke(&self, raw: &Spanned<RawSmoke>) -> Result<Smoke> {
        let smoke = raw.get_ref();
        let why = "the path below the Function URL to read";
        let why = format!("missing for function `{}`: {why}", self.function);
        let path = smoke
            .path
            .as_ref()
            .ok_or_else(|| self.at(raw, "smoke.path", why))?;
        if !path.get_ref().starts_with('/') || path.get_ref().contains(char::is_whitespace) {
            return Err(self.at(path, "smoke.path", "must start with `/` and hold no spaces"));
        }
        let expect = match smoke.expect.as_ref().map(|e| e.get_ref().as_str()) {
            Some("sse") if smoke.fields.is_some() => {
                return Err(self.at(raw, "smoke.fields", "only for expect = \"json\""));
            }
            Some("sse") => Expect::Sse,
            Some("json") => Expect::Json(smoke.fields.clone().unwrap_or_default()),
            _ => {
                let at = smoke.expect.as_ref().map_or(raw.span(), |e| e.span()).start;
                let why = "use \"sse\" (a live event stream) or \"json\" (a JSON answer, with \
                           `fields`)";
                return Err(self.error(at, "smoke.expect", why));
            }
        };
        let path = path.get_ref().clone();
        Ok(Smoke { path, expect })
    }
}

/// `ENV AWS_LWA_INVOKE_MODE=...` in a Dockerfile: its line number and value.
fn declared_invoke_mode(dockerfile: &str) -> Option<(usize, String)> {
    dockerfile.lines().enumerate().find_map(|(i, line)| {
        let mut words = line.trim().strip_prefix("ENV ")?.split_whitespace();
        let value = words.find_map(|pair| pair.strip_prefix("AWS_LWA_INVOKE_MODE="))?;
        Some((i + 1, value.trim_matches('"').to_string()))
    })
}

fn valid_repository(name: &str) -> bool {
    let ok = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-/".contains(&b);
    let first = name
        .as_bytes()
        .first()
        .is_some_and(u8::is_ascii_alphanumeric);
    (2..=256).contains(&name.len()) && first && name.bytes().all(ok)
}
