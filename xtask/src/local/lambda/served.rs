//! Functions the local stack serves: what the AWS emulator's Lambda API says is deployed, run
//! under the Lambda emulator (see the parent module), with a record per function in
//! `target/local-stack/lambda/functions/` that `local status` shows and `local down` removes.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};
use xshell::Shell;

use super::super::{Paths, fake_sigv4};
use super::{
    DEFAULT_MEMORY_MB, Emulator, LABEL, READY, check_name, edit_functions, healthy, labels, output,
    replace_file, running, runtime_environment,
};
use crate::cmdline::CmdLine;
use crate::settings::Platform;
use crate::tools::docker::{self, LambdaContainer};
use crate::{http, smoke};

/// How long a replaced container's open streams get to end (uvicorn's graceful shutdown is 5 s).
const STOP_GRACE_SECS: u32 = 8;

/// The container that serves a deployed function.
fn container_name(function: &str) -> String {
    format!("xtask-fn-{function}")
}

/// `local down`, before the engine stops: removes the function containers this stack started,
/// by their recorded ids, and forgets them. The emulator itself stops with the other daemons.
pub(crate) fn stop_functions(sh: &Shell, paths: &Paths) {
    for record in records(paths) {
        let t = Instant::now();
        match output(sh, &docker::remove(&record.container)) {
            Ok(_) => eprintln!(
                "stopped {:<12} {:<30} {:.1}s",
                "function",
                record.function,
                t.elapsed().as_secs_f64()
            ),
            Err(e) => eprintln!("function {}: {e:#}", record.function),
        }
        forget(paths, &record.function);
    }
}

// --- Deployed functions ----------------------------------------------------------------------

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

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct GetFunction {
    configuration: Configuration,
    code: Code,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Configuration {
    function_name: String,
    memory_size: Option<u32>,
    timeout: Option<u32>,
    environment: Option<EnvironmentJson>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct EnvironmentJson {
    #[serde(default)]
    variables: BTreeMap<String, String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Code {
    image_uri: Option<String>,
}

/// Parses a Lambda `GetFunction` answer.
pub fn parse_function(json: &str, region: &str) -> Result<Function> {
    let got: GetFunction =
        serde_json::from_str(json).context("GetFunction did not answer the expected JSON")?;
    let c = got.configuration;
    let image = got.code.image_uri.with_context(|| {
        format!(
            "function {} has no Code.ImageUri: it is not an image function",
            c.function_name
        )
    })?;
    let digest = image
        .split_once('@')
        .map(|(_, d)| d.to_string())
        .filter(|d| d.starts_with("sha256:"))
        .with_context(|| {
            format!(
                "function {} runs {image}, which names no digest (deploy pins one)",
                c.function_name
            )
        })?;
    Ok(Function {
        name: c.function_name,
        image,
        digest,
        region: region.to_string(),
        environment: c.environment.map(|e| e.variables).unwrap_or_default(),
        // Lambda's defaults, for a function created without them.
        memory_size: c.memory_size.unwrap_or(DEFAULT_MEMORY_MB),
        timeout: c.timeout.unwrap_or(3),
    })
}

/// What the AWS emulator says `name` is: `GET /2015-03-31/functions/{name}`. moto reads the
/// service from the credential scope and does not check signatures.
pub fn deployed(endpoint_url: &str, region: &str, name: &str) -> Result<Function> {
    check_name(name)?;
    let url = format!(
        "{}/2015-03-31/functions/{name}",
        endpoint_url.trim_end_matches('/')
    );
    let auth = fake_sigv4(region, "lambda");
    let r = http::request(
        "GET",
        &url,
        &[("Authorization", &auth)],
        b"",
        Duration::from_secs(10),
    )
    .with_context(|| format!("GET {url}"))?;
    if r.status != 200 {
        bail!(
            "the emulator's Lambda API has no function {name}: HTTP {}: {}",
            r.status,
            r.text()
        );
    }
    parse_function(&r.text(), region)
}

/// The record of a function the stack serves.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Served {
    pub function: String,
    pub image: String,
    pub digest: String,
    pub environment: BTreeMap<String, String>,
    pub memory_size: u32,
    pub timeout: u32,
    pub url: String,
    /// The container's id, as `docker run` printed it.
    pub container: String,
}

impl Served {
    fn serves(&self, f: &Function, url: &str) -> bool {
        self.digest == f.digest
            && self.image == f.image
            && self.environment == f.environment
            && self.memory_size == f.memory_size
            && self.timeout == f.timeout
            && self.url == url
    }
}

fn record_path(paths: &Paths, function: &str) -> PathBuf {
    paths.lambda_functions().join(format!("{function}.json"))
}

fn env_path(paths: &Paths, function: &str) -> PathBuf {
    paths.lambda_functions().join(format!("{function}.env"))
}

/// Every served function's record.
pub(crate) fn records(paths: &Paths) -> Vec<Served> {
    let Ok(dir) = std::fs::read_dir(paths.lambda_functions()) else {
        return vec![];
    };
    let mut found: Vec<Served> = dir
        .flatten()
        .filter(|e| e.path().extension().is_some_and(|x| x == "json"))
        .filter_map(|e| std::fs::read_to_string(e.path()).ok())
        .filter_map(|text| serde_json::from_str(&text).ok())
        .collect();
    found.sort_by(|a, b| a.function.cmp(&b.function));
    found
}

pub(super) fn forget(paths: &Paths, function: &str) {
    let _ = std::fs::remove_file(record_path(paths, function));
    let _ = std::fs::remove_file(env_path(paths, function));
    let _ = edit_functions(paths, |set| {
        set.remove(function);
    });
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
    let paths = Paths::new(sh);
    let emulator = Emulator::shared(sh)
        .filter(|e| healthy(e.addr))
        .context("the local stack's Lambda emulator is not running: run `cargo xtask local up`")?;
    let url = emulator.function_url(&f.name);
    let previous = read_record(&paths, &f.name);
    if let Some(p) = previous.as_ref().filter(|p| p.serves(f, &url)) {
        if running(sh, &p.container) && smoke::health(&url, Duration::from_secs(10)).is_ok() {
            return Ok(ServeOutcome {
                served: p.clone(),
                replaced: None,
                unchanged: true,
                executed: vec![],
            });
        }
    }
    let mut executed = Vec::new();
    let mut run = |line: CmdLine| -> Result<String> {
        executed.push(line.to_string());
        output(sh, &line)
    };
    run(docker::pull(&f.image, platform))
        .with_context(|| format!("pulling {} from the local registry", f.image))?;
    let command = docker::parse_image_command(&run(docker::image_config(&f.image))?)?;
    let env_text = env_file(&f.environment)?;
    emulator.register(&f.name)?.keep();

    // The old container goes first: two runtimes polling one function would split its
    // invokes between two images.
    let name = container_name(&f.name);
    let mut old: Vec<String> = previous.iter().map(|p| p.container.clone()).collect();
    // A container of ours left without a record (a run stopped between start and record).
    if let Ok(label) = output(
        sh,
        &CmdLine::new("docker").args([
            "container",
            "inspect",
            "--format",
            &format!("{{{{index .Config.Labels \"{LABEL}\"}}}}"),
            &name,
        ]),
    ) {
        if label.trim() == f.name {
            old.push(name.clone());
        }
    }
    for container in &old {
        let _ = run(docker::stop(container, STOP_GRACE_SECS));
        let _ = run(docker::remove(container));
    }

    std::fs::create_dir_all(paths.lambda_functions())?;
    let env_path = env_path(&paths, &f.name);
    replace_file(&env_path, &env_text, 0o600)?;
    let env_path_text = env_path.display().to_string();
    let line = docker::run_lambda(&LambdaContainer {
        name: &name,
        image: &f.image,
        platform,
        memory_mb: f.memory_size,
        labels: labels(&f.name),
        env: runtime_environment(&emulator.runtime_api(), &f.name, f.memory_size, &f.region),
        env_file: Some(&env_path_text),
        command,
    });
    let container = run(line)?.trim().to_string();
    let served = Served {
        function: f.name.clone(),
        image: f.image.clone(),
        digest: f.digest.clone(),
        environment: f.environment.clone(),
        memory_size: f.memory_size,
        timeout: f.timeout,
        url: url.clone(),
        container: container.clone(),
    };
    // Recorded before the wait, so that `local down` finds the container even if it fails.
    let json = serde_json::to_string_pretty(&served)? + "\n";
    replace_file(&record_path(&paths, &f.name), &json, 0o600)?;
    smoke::health(&url, READY).with_context(|| {
        format!(
            "the container of {} ({}) started, but /health does not answer through {url}; \
             see `docker logs {}`",
            f.name,
            f.digest,
            &container[..container.len().min(12)]
        )
    })?;
    Ok(ServeOutcome {
        served,
        replaced: previous.map(|p| p.digest).filter(|d| d != &f.digest),
        unchanged: false,
        executed,
    })
}

fn read_record(paths: &Paths, function: &str) -> Option<Served> {
    let text = std::fs::read_to_string(record_path(paths, function)).ok()?;
    serde_json::from_str(&text).ok()
}

/// The record of a served function, if the stack serves it.
pub fn served(sh: &Shell, function: &str) -> Option<Served> {
    read_record(&Paths::new(sh), function)
}

/// Stops serving `function`: removes its container (by the recorded id) and its record.
pub fn unserve(sh: &Shell, function: &str) -> Result<()> {
    let paths = Paths::new(sh);
    if let Some(record) = read_record(&paths, function) {
        output(sh, &docker::remove(&record.container))?;
    }
    forget(&paths, function);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn get_function_answers_parse() {
        let json = r#"{"Configuration":{"FunctionName":"local-sse-streaming-lambda","MemorySize":512,"Timeout":60,
            "Environment":{"Variables":{"AWS_LWA_INVOKE_MODE":"response_stream"}},"PackageType":"Image"},
            "Code":{"RepositoryType":"ECR","ImageUri":"127.0.0.1:5000/local-sse-streaming-lambda@sha256:ab"}}"#;
        let f = parse_function(json, "us-east-1").unwrap();
        assert_eq!(f.name, "local-sse-streaming-lambda");
        assert_eq!(f.digest, "sha256:ab");
        assert_eq!(
            f.image,
            "127.0.0.1:5000/local-sse-streaming-lambda@sha256:ab"
        );
        assert_eq!((f.memory_size, f.timeout), (512, 60));
        assert_eq!(f.environment["AWS_LWA_INVOKE_MODE"], "response_stream");
        let tag = json.replace("@sha256:ab", ":latest");
        let e = parse_function(&tag, "us-east-1").unwrap_err().to_string();
        assert!(e.contains("names no digest"), "{e}");
        let e = format!("{:#}", parse_function("{}", "us-east-1").unwrap_err());
        assert!(e.contains("expected JSON"), "{e}");
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
