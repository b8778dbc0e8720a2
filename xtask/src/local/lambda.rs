//! Lambda emulation: the compose service `lambda`, cargo-lambda 1.9.2 behind
//! `infrastructure/local/lambda/front.py`, serves the Lambda Runtime API on the stack's network
//! and Function URLs on 127.0.0.1, each registered function under its own name (so a served
//! function and a smoke test never take each other's invokes) and with its own timeout,
//! enforced as Lambda does: at the deadline the response ends where it stands and the function's
//! log gets `Task timed out after N.NN seconds`. Function containers run under it the way Lambda
//! runs an image (`tools::docker::run_lambda`). A served function (what `deploy` leaves running)
//! is its container, `<project>-fn-<function>`, labelled with what it serves. The emulator's
//! known differences from Lambda are listed in the README ("Local Function URL").

use std::collections::BTreeMap;
use std::process::Command;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};
use xshell::Shell;

use super::{compose, fnv64, images, network, project, read_stack, resolve, run, stack_dir};
use crate::cmdline::CmdLine;
use crate::http;
use crate::settings::Platform;
use crate::smoke;
use crate::tools::docker::{self, FUNCTION_LABEL, LambdaContainer};

/// How long a container may take to answer `/health` through the Function URL.
pub const READY: Duration = Duration::from_secs(30);
/// The Runtime API as function containers on the emulator's network reach it.
pub(crate) const RUNTIME_API: &str = "lambda:9000/.rt";
/// How long a replaced container's open streams get to end (uvicorn's graceful shutdown is 5 s).
const STOP_GRACE_SECS: u32 = 8;
/// The label that records what a served function's container serves.
const SERVED: &str = "xtask.served";

/// A Lambda function name (letters, digits, `-`, `_`; at most 64), also part of a container name.
pub fn check_name(name: &str) -> Result<()> {
    let valid = |c: char| c.is_ascii_alphanumeric() || c == '-' || c == '_';
    let ok = (1..=64).contains(&name.len()) && name.chars().all(valid);
    if !ok || name == "xtask-lambda-emulator" {
        bail!(
            "{name:?} is not a function name the Lambda emulator can serve (letters, digits, \
             `-` and `_`, at most 64)"
        );
    }
    Ok(())
}

/// A running Lambda emulator: the stack's, or a private one (a compose project of its own)
/// that is removed when the value is dropped.
pub struct Emulator {
    /// `http://127.0.0.1:<port>`.
    base: String,
    network: String,
    private: Option<String>,
}

impl Emulator {
    /// The stack's emulator, when `local up` brought it up and it answers.
    pub fn shared(_sh: &Shell) -> Option<Emulator> {
        let stack = read_stack(&project())?;
        let health = format!("{}/_xtask/health", stack.lambda_url);
        let answer = http::request("GET", &health, &[], b"", Duration::from_secs(5));
        let (base, network) = (stack.lambda_url, stack.network);
        answer.is_ok_and(|r| r.status == 200).then_some(Emulator {
            base,
            network,
            private: None,
        })
    }

    /// The stack's emulator when it answers; otherwise a private one on a free port, for this
    /// process only: a CI job for an AWS environment has no stack, yet smoke-tests the same way.
    pub fn shared_or_private(sh: &Shell) -> Result<Emulator> {
        Emulator::shared(sh).map_or_else(|| Emulator::private(sh), Ok)
    }

    /// A private emulator: a compose project of its own with only the `lambda` service, on a
    /// port the engine picks; removed with its network and volume when the value is dropped.
    pub fn private(sh: &Shell) -> Result<Emulator> {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        let name = format!(
            "xtask-lambda-{}-{}",
            std::process::id(),
            now.subsec_micros()
        );
        let mut env = images::emulator_env(sh)?;
        // Port 0: the engine picks a free one.
        env.push(("LAMBDA_PORT".into(), "0".into()));
        // Owned from here on, so that a failure below still removes the project.
        let (base, network) = (String::new(), network(&name));
        let mut emulator = Emulator {
            base,
            network,
            private: Some(name.clone()),
        };
        let up = ["up", "--detach", "--wait", "--wait-timeout", "60", "lambda"];
        run(sh, &compose(&name, &env, &up)).context("starting a private Lambda emulator")?;
        let port = run(sh, &compose(&name, &env, &["port", "lambda", "9000"]))?;
        emulator.base = format!("http://{}", port.trim());
        Ok(emulator)
    }

    /// The Runtime API as the adapter's variables take it: `HOST:PORT/.rt`, on [`Self::network`].
    pub fn runtime_api(&self) -> String {
        RUNTIME_API.to_string()
    }

    /// The network a function container joins to reach the emulator.
    pub fn network(&self) -> &str {
        &self.network
    }

    /// The Function URL of `function`, without a trailing slash (`<url>/stream` is `/stream`).
    pub fn function_url(&self, function: &str) -> String {
        format!("{}/lambda-url/{function}", self.base)
    }

    /// The compose project of a private emulator (`None` for the stack's).
    pub fn private_project(&self) -> Option<&str> {
        self.private.as_deref()
    }

    /// Makes the emulator route `function`'s Function URL and stop each of its invocations at
    /// `timeout_secs`; undone when the guard drops, unless kept.
    pub fn register(&self, function: &str, timeout_secs: u32) -> Result<Registered> {
        check_name(function)?;
        let url = format!("{}/_xtask/functions/{function}", self.base);
        let body = format!("{{\"timeout\": {timeout_secs}}}");
        let json = [("Content-Type", "application/json")];
        let r = http::request("PUT", &url, &json, body.as_bytes(), Duration::from_secs(10))?;
        if r.status != 204 {
            let (status, text) = (r.status, r.text());
            bail!("registering {function} with the Lambda emulator: HTTP {status}: {text}");
        }
        Ok(Registered(Some(url)))
    }
}

impl Drop for Emulator {
    fn drop(&mut self) {
        if let (Some(name), Ok(sh)) = (&self.private, Shell::new()) {
            let _ = run(
                &sh,
                &compose(name, &[], &["down", "--volumes", "--timeout", "2"]),
            );
        }
    }
}

/// Unregisters a function when dropped (a smoke test's), unless kept (a served function's).
pub struct Registered(Option<String>);

impl Registered {
    /// The function stays routed after this value is gone.
    pub fn keep(mut self) {
        self.0 = None;
    }
}

impl Drop for Registered {
    fn drop(&mut self) {
        if let Some(url) = self.0.take() {
            let _ = http::request("DELETE", &url, &[], b"", Duration::from_secs(10));
        }
    }
}

/// A function as the AWS emulator's Lambda API describes it.
#[derive(Debug, Clone, PartialEq)]
pub struct Function {
    pub name: String,
    /// `Code.ImageUri`: `REPOSITORY@sha256:…`.
    pub image: String,
    pub digest: String,
    pub region: String,
    pub environment: BTreeMap<String, String>,
    pub memory_size: u32,
    pub timeout: u32,
}

/// Parses a Lambda `GetFunction` answer.
fn parse_function(json: &str, region: &str) -> Result<Function> {
    let got: serde_json::Value =
        serde_json::from_str(json).context("GetFunction did not answer the expected JSON")?;
    let c = &got["Configuration"];
    let name = c["FunctionName"].as_str();
    let name = name
        .context("GetFunction did not answer the expected JSON: no Configuration.FunctionName")?;
    let image = got["Code"]["ImageUri"].as_str().with_context(|| {
        format!("function {name} has no Code.ImageUri: it is not an image function")
    })?;
    let digest = image
        .split_once('@')
        .map(|(_, d)| d)
        .filter(|d| d.starts_with("sha256:"));
    let digest = digest.with_context(|| {
        format!("function {name} runs {image}, which names no digest (deploy pins one)")
    })?;
    // Lambda's defaults, for a function created without them.
    let number = |k: &str, default: u32| c[k].as_u64().map_or(default, |n| n as u32);
    Ok(Function {
        name: name.to_string(),
        image: image.to_string(),
        digest: digest.to_string(),
        region: region.to_string(),
        environment: serde_json::from_value(c["Environment"]["Variables"].clone())
            .unwrap_or_default(),
        memory_size: number("MemorySize", 128),
        timeout: number("Timeout", 3),
    })
}

/// What the AWS emulator says `name` is: Lambda `GET /2015-03-31/functions/{name}`, signed
/// as the environment's account.
pub fn deployed(aws: &crate::aws::Aws, region: &str, name: &str) -> Result<Function> {
    check_name(name)?;
    let url = aws.emulator_url(&format!("/2015-03-31/functions/{name}"));
    let r = aws.signed(
        "lambda",
        "GET",
        &url.context("only the emulator serves functions locally")?,
        b"",
    )?;
    if r.status != 200 {
        let (status, text) = (r.status, r.text());
        bail!("the emulator's Lambda API has no function {name}: HTTP {status}: {text}");
    }
    parse_function(&r.text(), region)
}

/// What a function container serves: its `xtask.served` label (numbers as text, a hash of the
/// function's own variables), then what docker says of it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Served {
    pub image: String,
    pub digest: String,
    memory_size: String,
    pub timeout: String,
    pub url: String,
    variables: String,
    #[serde(skip)]
    pub function: String,
    /// The container's variables: the image's, Lambda's and the function's own.
    #[serde(skip)]
    pub environment: BTreeMap<String, String>,
    /// The container's id.
    #[serde(skip)]
    pub container: String,
}

fn container_name(function: &str) -> String {
    format!("{}-fn-{function}", project())
}

/// `(served, running)` for function containers, from one `docker container inspect`.
fn inspect(sh: &Shell, containers: &[String]) -> Vec<(Served, bool)> {
    let inspect = CmdLine::new("docker")
        .args(["container", "inspect"])
        .args(containers);
    // Missing containers make inspect fail; what it printed for the others still counts.
    let out = match resolve(&inspect) {
        Ok(line) if !containers.is_empty() => line
            .to_cmd(sh)
            .quiet()
            .ignore_status()
            .ignore_stderr()
            .read(),
        _ => return vec![],
    };
    let found: Vec<serde_json::Value> =
        serde_json::from_str(&out.unwrap_or_default()).unwrap_or_default();
    let served = |c: &serde_json::Value| -> Option<(Served, bool)> {
        let labels = &c["Config"]["Labels"];
        let mut served: Served = serde_json::from_str(labels[SERVED].as_str()?).ok()?;
        served.function = labels[FUNCTION_LABEL].as_str()?.to_string();
        let environment = c["Config"]["Env"].as_array()?.iter();
        let environment = environment.filter_map(|e| e.as_str()?.split_once('='));
        served.environment = environment.map(|(k, v)| (k.into(), v.into())).collect();
        served.container = c["Id"].as_str()?.to_string();
        Some((served, c["State"]["Running"] == true))
    };
    found.iter().filter_map(served).collect()
}

/// The ids of the containers (running or not) with `label` on `network`.
fn containers(sh: &Shell, label: &str, network: &str) -> Result<Vec<String>> {
    let (label, network) = (format!("label={label}"), format!("network={network}"));
    let ps = CmdLine::new("docker").args(["ps", "--all", "--quiet", "--filter", &label]);
    let ids = run(sh, &ps.args(["--filter", &network]))?;
    Ok(ids.split_whitespace().map(str::to_string).collect())
}

/// Every served function of the project, for `local status`.
pub(crate) fn served_all(sh: &Shell, project: &str) -> Vec<(Served, bool)> {
    let ids = containers(sh, SERVED, &network(project)).unwrap_or_default();
    inspect(sh, &ids)
}

/// `local down`: removes the function containers on the stack's network; returns how many.
pub(crate) fn remove_functions(sh: &Shell, network: &str) -> Result<usize> {
    let ids = containers(sh, FUNCTION_LABEL, network)?;
    if !ids.is_empty() {
        let rm = CmdLine::new("docker").args(["rm", "--force"]).args(&ids);
        run(sh, &rm)?;
    }
    Ok(ids.len())
}

/// `docker run --env-file` lines; a value with a line break cannot be passed that way.
fn env_file(environment: &BTreeMap<String, String>) -> Result<String> {
    let mut text = String::new();
    for (key, value) in environment {
        if key.is_empty() || key.contains(['=', '\n', '\r']) || value.contains(['\n', '\r']) {
            bail!("environment variable {key:?} cannot be passed to a local container");
        }
        text.push_str(&format!("{key}={value}\n"));
    }
    Ok(text)
}

/// What [`serve`] did.
#[derive(Debug, Clone)]
pub struct ServeOutcome {
    pub served: Served,
    /// The digest served before, when this call switched images.
    pub replaced: Option<String>,
    /// The same function was already served, healthy: nothing was started.
    pub unchanged: bool,
    /// The docker command lines it ran, in order.
    pub executed: Vec<String>,
}

/// Serves `f` under the stack's emulator: pulls its image by digest, replaces the container
/// that served the function before (if any), starts the new one and waits until `/health`
/// answers through the Function URL. Already serving exactly this, healthy: nothing changes.
pub fn serve(sh: &Shell, f: &Function, platform: Platform) -> Result<ServeOutcome> {
    check_name(&f.name)?;
    let emulator = Emulator::shared(sh)
        .context("the local stack's Lambda emulator is not running: run `cargo xtask local up`")?;
    let (url, name) = (emulator.function_url(&f.name), container_name(&f.name));
    let env_text = env_file(&f.environment)?;
    let record = Served {
        image: f.image.clone(),
        digest: f.digest.clone(),
        memory_size: f.memory_size.to_string(),
        timeout: f.timeout.to_string(),
        url: url.clone(),
        variables: format!("{:016x}", fnv64(env_text.as_bytes())),
        ..Served::default()
    };
    let previous = inspect(sh, std::slice::from_ref(&name)).pop();
    // Registered again either way: the emulator's registrations live in its volume, which a
    // stack recreated around the container may have lost.
    if let Some((p, true)) = &previous {
        // The label's fields, what the container serves, are the same.
        let same = serde_json::to_value(p)? == serde_json::to_value(&record)?;
        if same && smoke::health(&url, Duration::from_secs(10)).is_ok() {
            emulator.register(&f.name, f.timeout)?.keep();
            let (served, replaced, executed) = (p.clone(), None, vec![]);
            return Ok(ServeOutcome {
                served,
                replaced,
                unchanged: true,
                executed,
            });
        }
    }
    let mut executed = Vec::new();
    let mut exec = |line: CmdLine| -> Result<String> {
        executed.push(resolve(&line)?.to_string());
        run(sh, &line)
    };
    exec(docker::pull(f.image.as_str().into(), platform))
        .with_context(|| format!("pulling {} from the local registry", f.image))?;
    let command =
        docker::parse_image_command(&exec(docker::image_config(f.image.as_str().into()))?)?;
    emulator.register(&f.name, f.timeout)?.keep();
    // The old container goes first: two runtimes polling one function would split its invokes
    // between two images.
    if previous.is_some() {
        let _ = exec(docker::stop(&name, STOP_GRACE_SECS));
        let _ = exec(docker::remove(&name));
    }
    let mut labels = docker::lambda_labels(&f.name);
    labels.push((SERVED.to_string(), serde_json::to_string(&record)?));
    // The function's own variables go through a file only its owner reads, never argv; it is
    // gone once the container has them.
    let env_path = stack_dir().join(format!("{name}.env"));
    let _ = std::fs::remove_file(&env_path);
    std::fs::write(&env_path, "")?;
    std::fs::set_permissions(
        &env_path,
        std::os::unix::fs::PermissionsExt::from_mode(0o600),
    )?;
    std::fs::write(&env_path, &env_text)?;
    let env_file = env_path.display().to_string();
    let started = exec(docker::run_lambda(&LambdaContainer {
        name: &name,
        image: f.image.as_str().into(),
        platform,
        memory_mb: f.memory_size,
        network: emulator.network().into(),
        labels,
        env: docker::lambda_environment(&f.name, f.memory_size, &f.region),
        env_file: Some(&env_file),
        command: command.into_iter().map(Into::into).collect(),
    }));
    let _ = std::fs::remove_file(&env_path);
    let container = started?.trim().to_string();
    smoke::health(&url, READY).with_context(|| {
        format!(
            "the container of {} ({}) started, but /health does not answer through {url}; see \
             `cargo xtask local logs {}`",
            f.name, f.digest, f.name
        )
    })?;
    let served = inspect(sh, &[container]).pop().map(|(s, _)| s);
    let served = served.context("the function's container vanished right after it started")?;
    let replaced = previous.map(|(p, _)| p.digest).filter(|d| d != &f.digest);
    Ok(ServeOutcome {
        served,
        replaced,
        unchanged: false,
        executed,
    })
}

/// What the stack serves for `function`, if anything.
pub fn served(sh: &Shell, function: &str) -> Option<Served> {
    inspect(sh, &[container_name(function)])
        .pop()
        .map(|(s, _)| s)
}

/// Stops serving `function`: removes its container and its registration.
pub fn unserve(sh: &Shell, function: &str) -> Result<()> {
    let name = container_name(function);
    if !inspect(sh, std::slice::from_ref(&name)).is_empty() {
        run(sh, &docker::remove(&name))?;
    }
    if let Some(emulator) = Emulator::shared(sh) {
        // Dropped unkept: the emulator no longer routes the function.
        drop(Registered(Some(format!(
            "{}/_xtask/functions/{function}",
            emulator.base
        ))));
    }
    Ok(())
}

/// What a log line says after docker's `--timestamps` prefix, and a sort key for the prefix
/// (docker trims trailing zeros of the fraction, so it is padded to nine digits).
fn stamped(line: &str) -> Option<(String, String)> {
    let (stamp, text) = line.split_once(' ')?;
    let stamp = stamp.trim_end_matches('Z');
    let (whole, fraction) = stamp.split_once('.').unwrap_or((stamp, ""));
    Some((format!("{whole}.{fraction:0<9}"), text.to_string()))
}

/// `local logs FUNCTION`: the function's log as Lambda keeps it, in time order: what its
/// container printed, and the emulator's lines for it (`<function> <request id> Task timed out
/// after N.NN seconds`).
pub fn logs(_sh: &Shell, function: &str) -> Result<String> {
    check_name(function)?;
    let read = |container: &str| -> Option<String> {
        let logs = Command::new("docker")
            .args(["logs", "--timestamps", container])
            .output()
            .ok()?;
        let text = [logs.stdout, logs.stderr].concat();
        logs.status
            .success()
            .then(|| String::from_utf8_lossy(&text).into_owned())
    };
    // A served function's container, else one named after the function (a smoke test's).
    let own = read(&container_name(function)).or_else(|| read(function));
    let own =
        own.with_context(|| format!("no container of function {function} on the local stack"))?;
    let platform = read(&format!("{}-lambda-1", project())).unwrap_or_default();
    let prefix = format!("{function} ");
    let emulator = platform
        .lines()
        .filter_map(stamped)
        .filter(|(_, t)| t.starts_with(&prefix));
    let mut lines: Vec<(String, String)> =
        own.lines().filter_map(stamped).chain(emulator).collect();
    lines.sort();
    Ok(lines
        .into_iter()
        .map(|(k, t)| format!("{k}Z {t}\n"))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_lambda_names() {
        assert!(check_name("local-sse-streaming-lambda").is_ok());
        assert!(check_name("smoke_1").is_ok());
        for bad in [
            "",
            "a/b",
            "a b",
            "x\"y",
            "xtask-lambda-emulator",
            &"x".repeat(65),
        ] {
            assert!(check_name(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn log_lines_sort_by_their_docker_timestamps() {
        let (a, text) =
            stamped("2026-12-02T04:28:13.69Z fn-b 1 Task timed out after 5.00 seconds").unwrap();
        let (b, _) = stamped("2026-12-02T04:28:13.6901Z INFO: x").unwrap();
        assert_eq!(text, "fn-b 1 Task timed out after 5.00 seconds");
        assert_eq!(a, "2026-12-02T04:28:13.690000000");
        assert!(a < b);
    }

    #[test]
    fn get_function_answers_parse() {
        let json = r#"{"Configuration":{"FunctionName":"local-sse-streaming-lambda","MemorySize":512,"Timeout":60,
            "Environment":{"Variables":{"AWS_LWA_INVOKE_MODE":"response_stream"}},"PackageType":"Image"},
            "Code":{"RepositoryType":"ECR","ImageUri":"127.0.0.1:5050/local-sse-streaming-lambda@sha256:ab"}}"#;
        let f = parse_function(json, "us-east-1").unwrap();
        assert_eq!(f.name, "local-sse-streaming-lambda");
        assert_eq!(f.digest, "sha256:ab");
        assert_eq!(
            f.image,
            "127.0.0.1:5050/local-sse-streaming-lambda@sha256:ab"
        );
        assert_eq!((f.memory_size, f.timeout), (512, 60));
        assert_eq!(f.environment["AWS_LWA_INVOKE_MODE"], "response_stream");
        let tag = json.replace("@sha256:ab", ":latest");
        let e = parse_function(&tag, "us-east-1").unwrap_err().to_string();
        assert!(e.contains("names no digest"), "{e}");
        let e = format!("{:#}", parse_function("{}", "us-east-1").unwrap_err());
        assert!(e.contains("expected JSON"), "{e}");
        let untimed = json.replace("\"Timeout\":60,", "");
        assert_eq!(parse_function(&untimed, "us-east-1").unwrap().timeout, 3);
    }

    #[test]
    fn env_files_refuse_line_breaks() {
        let mut env = BTreeMap::new();
        env.insert("A".to_string(), "1 2".to_string());
        assert_eq!(env_file(&env).unwrap(), "A=1 2\n");
        env.insert("B".to_string(), "x\ny".to_string());
        assert!(env_file(&env).is_err());
    }
}
