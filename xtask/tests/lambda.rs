//! The Lambda emulator end to end, on the local stack:
//! - `deploy` ends with a Function URL that streams, and `rollback` switches what it serves;
//! - the smoke check bites: the same image with `AWS_LWA_INVOKE_MODE=BUFFERED`, and an image
//!   without the adapter, both fail it, each with a message that says why;
//! - through the Function URL, a stream dropped mid-way resumes with `Last-Event-ID`, with no
//!   duplicates and no gaps.
//!
//! The image comes from one `deploy` of a fresh environment, shared by the tests of this file.
//! Nothing here depends on the emulator's known differences from Lambda (see
//! `xtask/src/local/lambda.rs`): each test's function has its own name, so no queued invoke of
//! another test can reach it, and no test needs two invokes to overlap or not.

mod support;

const SSE: &str = "sse-streaming";

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use serde_json::Value;
use xshell::Shell;
use xtask::aws::Aws;
use xtask::cmdline::{Arg, Slot};
use xtask::local::lambda::{self, Emulator, Registered};
use xtask::settings::{Expect, Platform, Smoke};
use xtask::smoke::{self, SseEvent};
use xtask::tools::docker::{self, LambdaContainer};

/// The served function's timeout in this file's environment: longer than any stream its
/// tests read whole, shorter than the one that proves the cut. Its streams do not hand over
/// (`SSE_HANDOVER=off`), so that one runs into the timeout as an app that ignores it would.
const TIMEOUT: u32 = 8;

fn shell() -> Shell {
    let sh = Shell::new().unwrap();
    sh.change_dir(support::root());
    sh
}

/// One fresh environment, deployed once for the whole file.
struct Deployed {
    env: String,
    config: PathBuf,
    function: String,
    /// `REPOSITORY@sha256:…`, as the emulator's Lambda API reports it.
    image: String,
    /// The Function URL `deploy` printed.
    url: String,
    deploy_stderr: String,
    /// A private docker configuration logged in to the local registry.
    docker_config: PathBuf,
}

/// The smoke check of `deploy`: three ticks, a second apart.
fn three_ticks() -> Smoke {
    Smoke {
        path: "/stream?count=3&interval=1".into(),
        expect: Expect::Sse,
    }
}

fn emulator_aws() -> Aws {
    let stack = support::stack();
    Aws::emulator(&stack.endpoint_url, &stack.region).unwrap()
}

/// The `local_url` of the SSE function in a `--json` result.
fn local_url(json: &Value) -> Option<String> {
    let functions = json["functions"].as_array()?;
    let sse = functions.iter().find(|f| f["name"] == "sse-streaming")?;
    sse["local_url"].as_str().map(String::from)
}

fn run(cmd: &mut Command) -> Output {
    cmd.output().unwrap()
}

fn xtask(d: &Deployed, args: &[&str]) -> (bool, Value, String) {
    let out = run(support::xtask()
        .args(args)
        .args(["--env", &d.env, "--config"])
        .arg(&d.config)
        .arg("--json")
        .stdin(Stdio::null()));
    (
        out.status.success(),
        serde_json::from_slice(&out.stdout).unwrap_or(Value::Null),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn docker(d: &Deployed, args: &[&str]) -> String {
    let out = run(Command::new("docker")
        .env("DOCKER_CONFIG", &d.docker_config)
        .args(args)
        .stdin(Stdio::null()));
    assert!(
        out.status.success(),
        "docker {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `docker buildx build` of a Dockerfile given as text, in an empty context.
fn build(d: &Deployed, dockerfile: &str, args: &[&str]) {
    let dir = support::root()
        .join("target/lambda-test")
        .join(support::unique("ctx"));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("Dockerfile"), dockerfile).unwrap();
    let mut all = vec!["buildx", "build", "--provenance=false", "--sbom=false"];
    all.extend_from_slice(args);
    let dir_text = dir.display().to_string();
    all.push(&dir_text);
    docker(d, &all);
    let _ = std::fs::remove_dir_all(&dir);
}

fn deployed() -> &'static Deployed {
    static DEPLOYED: OnceLock<Deployed> = OnceLock::new();
    DEPLOYED.get_or_init(|| {
        let stack = support::stack();
        // A fresh environment: its repository, state and function start empty.
        let nonce: String = support::unique("x")
            .chars()
            .filter(char::is_ascii_digit)
            .collect();
        let env = format!("lam-{}", &nonce[nonce.len().saturating_sub(12)..]);
        // Its own state bucket too: `bootstrap` creates it with the account layer.
        let text = support::settings_for(&env, &stack).replace(
            "bucket = \"local-sse-streaming-tfstate\"",
            &format!("bucket = \"{env}-sse-streaming-tfstate\""),
        ) + &format!(
            "\n[environments.{env}.function.sse-streaming]\ntimeout = {TIMEOUT}\n\
             [environments.{env}.function.sse-streaming.stream]\nhandover_margin = 2\nheartbeat = 2\n\
             [environments.{env}.function.sse-streaming.environment]\nSSE_HANDOVER = \"off\"\n"
        );
        let dir = support::root().join("target/lambda-test");
        std::fs::create_dir_all(&dir).unwrap();
        let config = dir.join(format!("{env}.toml"));
        std::fs::write(&config, text).unwrap();

        let docker_config = dir.join(format!("docker-{env}"));
        std::fs::create_dir_all(&docker_config).unwrap();
        let token = xtask::aws::Aws::emulator(&stack.endpoint_url, &stack.region)
            .unwrap()
            .login_token()
            .unwrap();
        let mut login = Command::new("docker")
            .env("DOCKER_CONFIG", &docker_config)
            .args([
                "login",
                "--username",
                &token.username,
                "--password-stdin",
                &stack.registry,
            ])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .spawn()
            .unwrap();
        login
            .stdin
            .take()
            .unwrap()
            .write_all(token.password.expose().as_bytes())
            .unwrap();
        assert!(
            login.wait().unwrap().success(),
            "docker login {}",
            stack.registry
        );

        let mut d = Deployed {
            env: env.clone(),
            config,
            function: String::new(),
            image: String::new(),
            url: String::new(),
            deploy_stderr: String::new(),
            docker_config,
        };
        let started = Instant::now();
        let (ok, json, stderr) = xtask(&d, &["bootstrap"]);
        assert!(ok, "bootstrap --env {env} failed:\n{stderr}\n{json}");
        let (ok, json, stderr) = xtask(&d, &["deploy"]);
        assert!(ok, "deploy --env {env} failed:\n{stderr}\n{json}");
        eprintln!(
            "deploy --env {env}: {:.1}s",
            started.elapsed().as_secs_f64()
        );
        d.function = format!("{env}-sse-streaming-lambda");
        let f = lambda::deployed(&emulator_aws(), &stack.region, &d.function).unwrap();
        d.image = f.image;
        d.url = local_url(&json)
            .unwrap_or_else(|| panic!("deploy reported no local url for sse-streaming:\n{json}"));
        d.deploy_stderr = stderr;
        d
    })
}

/// A function container of this test, under the stack's emulator, removed on drop.
struct TestFunction {
    /// The Lambda function's name, also its container's.
    name: String,
    url: String,
    container: String,
    _routed: Registered,
    _emulator: Emulator,
}

impl TestFunction {
    /// Runs `image` the way the smoke test does, under a fresh function name, plus `extra` env,
    /// under the stack's emulator.
    fn start(d: &Deployed, image: &str, extra: &[(&str, &str)]) -> TestFunction {
        let emulator =
            Emulator::shared(&shell()).expect("the stack's Lambda emulator is not running");
        TestFunction::start_under(d, emulator, image, extra, 60)
    }

    fn start_under(
        d: &Deployed,
        emulator: Emulator,
        image: &str,
        extra: &[(&str, &str)],
        timeout: u32,
    ) -> TestFunction {
        let name = support::unique("xtask-test");
        let routed = emulator.register(&name, timeout).unwrap();
        let command = docker::parse_image_command(&docker(
            d,
            &["image", "inspect", "--format", "{{json .Config}}", image],
        ))
        .unwrap();
        let mut env = docker::lambda_environment(&name, 512, "us-east-1");
        env.extend(extra.iter().map(|(k, v)| (k.to_string(), Arg::from(*v))));
        let line = docker::run_lambda(&LambdaContainer {
            name: &name,
            image: image.into(),
            platform: Platform::Amd64,
            memory_mb: 512,
            network: emulator.network().into(),
            labels: docker::lambda_labels(&name),
            env,
            env_file: None,
            command: command.into_iter().map(Arg::from).collect(),
        });
        let api = emulator.runtime_api();
        let line = line
            .resolve(|slot| match slot {
                Slot::LambdaApi => Ok(vec![api.clone()]),
                other => Err(format!("no value for {other:?}")),
            })
            .unwrap();
        let args: Vec<&str> = line.args.iter().map(String::as_str).collect();
        let container = docker(d, &args).trim().to_string();
        TestFunction {
            url: emulator.function_url(&name),
            name,
            container,
            _routed: routed,
            _emulator: emulator,
        }
    }

    fn logs(&self) -> String {
        let out = run(Command::new("docker").args(["logs", &self.container]));
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    }
}

impl Drop for TestFunction {
    fn drop(&mut self) {
        let _ = Command::new("docker")
            .args(["rm", "--force", &self.container])
            .output();
    }
}

fn ids(events: &[SseEvent]) -> Vec<u64> {
    events
        .iter()
        .filter(|e| e.event == "tick")
        .filter_map(|e| e.id)
        .collect()
}

#[test]
#[ignore = "needs the local stack (cargo xtask local up)"]
fn deploy_serves_a_streaming_function_url_and_rollback_switches_it() {
    let d = deployed();
    let stack = support::stack();
    // The SSE function's smoke test read its stream through an emulated Function URL and
    // timed it (the status function's reads JSON: no first event).
    let smoke_lines: Vec<&str> = d
        .deploy_stderr
        .lines()
        .filter(|l| {
            (l.contains("/lambda-url/xtask-smoke-") && l.contains("-sse-streaming-"))
                || l.contains("first event after")
        })
        .collect();
    assert_eq!(smoke_lines.len(), 2, "{}", d.deploy_stderr);
    assert!(
        d.url.ends_with(&format!("/lambda-url/{}", d.function)),
        "{}",
        d.url
    );

    // The printed URL streams, one event a second, the first at once.
    let seen = smoke::check(&d.url, Duration::from_secs(30), &three_ticks()).unwrap();
    eprintln!(
        "{}/stream?count=3&interval=1: first event {:.3}s, total {:.3}s",
        d.url,
        seen.first_event.as_secs_f64(),
        seen.total.as_secs_f64()
    );
    assert!(seen.first_event < Duration::from_millis(900), "{seen:?}");
    assert_eq!(seen.ids, [1, 2, 3]);
    let served = lambda::served(&shell(), &d.function).expect("no served record");
    assert_eq!(served.image, d.image);
    assert_eq!(
        served.environment["AWS_LWA_INVOKE_MODE"].to_lowercase(),
        "response_stream"
    );

    // Another digest of the same app: a label makes it differ.
    let repo = d.image.split('@').next().unwrap().to_string();
    let variant = format!("{repo}:lambda-test-variant");
    build(
        d,
        &format!("FROM {}\nLABEL xtask.test=variant\n", d.image),
        &["--push", "--tag", &variant],
    );
    let (ok, json, stderr) = xtask(
        d,
        &["rollback", "--function", SSE, "--to", "lambda-test-variant"],
    );
    assert!(ok, "rollback --to the variant failed:\n{stderr}\n{json}");
    let now = lambda::deployed(&emulator_aws(), &stack.region, &d.function).unwrap();
    assert_ne!(now.image, d.image, "the rollback did not move the function");
    let served = lambda::served(&shell(), &d.function).unwrap();
    assert_eq!(
        served.digest, now.digest,
        "the URL still serves the old digest"
    );
    assert!(
        stderr.contains(&format!(
            "switched from {} to {}",
            d.image.split('@').nth(1).unwrap(),
            now.digest
        )),
        "{stderr}"
    );
    assert_eq!(local_url(&json).as_deref(), Some(&*d.url), "{json}");
    let seen = smoke::check(&d.url, Duration::from_secs(30), &three_ticks()).unwrap();
    assert_eq!(seen.ids, [1, 2, 3]);

    // `local status` names the digest being served.
    let out = run(support::xtask()
        .args(["local", "status"])
        .stdin(Stdio::null()));
    let status = String::from_utf8_lossy(&out.stderr);
    assert!(
        status
            .lines()
            .any(|l| l.contains(&d.function) && l.contains(&now.digest) && l.contains("running")),
        "{status}"
    );

    // And back: `rollback` to `previous`, the first image.
    let (ok, json, stderr) = xtask(d, &["rollback", "--function", SSE]);
    assert!(ok, "rollback failed:\n{stderr}\n{json}");
    let served = lambda::served(&shell(), &d.function).unwrap();
    assert_eq!(served.image, d.image, "{stderr}");
    smoke::check(&d.url, Duration::from_secs(30), &three_ticks()).unwrap();

    lambda::unserve(&shell(), &d.function).unwrap();
    assert!(lambda::served(&shell(), &d.function).is_none());
}

#[test]
#[ignore = "needs the local stack (cargo xtask local up)"]
fn a_buffered_stream_fails_the_smoke_check() {
    let d = deployed();
    // The control: the very same image and harness, streaming, passes.
    let control = TestFunction::start(d, &d.image, &[]);
    let seen = smoke::check(&control.url, Duration::from_secs(30), &three_ticks())
        .unwrap_or_else(|e| panic!("control: {e:#}\n{}", control.logs()));
    assert!(seen.first_event < Duration::from_millis(900), "{seen:?}");

    let buffered = TestFunction::start(d, &d.image, &[("AWS_LWA_INVOKE_MODE", "BUFFERED")]);
    let err = smoke::check(&buffered.url, Duration::from_secs(30), &three_ticks())
        .map(|seen| format!("passed: {seen:?}"))
        .unwrap_or_else(|e| format!("{e:#}"));
    eprintln!("buffered: {err}");
    assert!(err.contains("not delivered incrementally"), "{err}");
}

#[test]
#[ignore = "needs the local stack (cargo xtask local up)"]
fn an_image_without_the_adapter_fails_the_smoke_check() {
    let d = deployed();
    let tag = format!("xtask-test/no-adapter:{}", support::unique("t"));
    build(
        d,
        &format!(
            "FROM {}\nUSER root\nRUN rm /opt/extensions/lambda-adapter\nUSER 10001:10001\n",
            d.image
        ),
        &["--load", "--tag", &tag],
    );
    let f = TestFunction::start(d, &tag, &[]);
    let err = smoke::check(&f.url, Duration::from_secs(12), &three_ticks())
        .map(|seen| format!("passed: {seen:?}"))
        .unwrap_or_else(|e| format!("{e:#}"));
    eprintln!("no adapter: {err}");
    assert!(
        err.contains("/health never answered") && err.contains("no runtime took the invoke"),
        "{err}"
    );
    // The app itself started: it is the missing extension that fails, not a crash.
    let logs = f.logs();
    assert!(logs.contains("Uvicorn running"), "{logs}");
    drop(f);
    let _ = Command::new("docker").args(["image", "rm", &tag]).output();
}

/// Reads whole SSE blocks from a raw HTTP/1.0 response until `want` ticks arrived, then drops
/// the connection.
fn read_then_drop(url: &str, want: usize) -> Vec<SseEvent> {
    let rest = url.strip_prefix("http://").unwrap();
    let (authority, path) = rest.split_at(rest.find('/').unwrap());
    let mut stream = TcpStream::connect(authority).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    write!(
        stream,
        "GET {path}/stream?count=6&interval=0.5 HTTP/1.0\r\nHost: {authority}\r\n\
         Accept: text/event-stream\r\n\r\n"
    )
    .unwrap();
    let mut raw = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let n = stream.read(&mut buf).unwrap();
        assert!(n > 0, "the stream ended before {want} events");
        raw.extend_from_slice(&buf[..n]);
        let text = String::from_utf8_lossy(&raw).replace("\r\n", "\n");
        let Some((_, body)) = text.split_once("\n\n") else {
            continue;
        };
        let complete = &body[..body.rfind("\n\n").map_or(0, |i| i + 2)];
        let events = smoke::parse_sse(complete).unwrap();
        if ids(&events).len() >= want {
            drop(stream);
            return events;
        }
    }
}

#[test]
#[ignore = "needs the local stack (cargo xtask local up)"]
fn a_dropped_stream_resumes_with_last_event_id_through_the_function_url() {
    let d = deployed();
    let f = TestFunction::start(d, &d.image, &[]);
    smoke::health(&f.url, Duration::from_secs(30))
        .unwrap_or_else(|e| panic!("{e:#}\n{}", f.logs()));

    let first = ids(&read_then_drop(&f.url, 2));
    assert_eq!(first, [1, 2]);
    let last = first.last().unwrap().to_string();
    let resumed = xtask::http::request(
        "GET",
        &format!("{}/stream?count=6&interval=0.5", f.url),
        &[("Accept", "text/event-stream"), ("Last-Event-ID", &last)],
        b"",
        Duration::from_secs(30),
    )
    .unwrap();
    assert_eq!(resumed.status, 200, "{}", resumed.text());
    let events = smoke::parse_sse(&resumed.text()).unwrap();
    let second = ids(&events);
    let all: Vec<u64> = first.iter().chain(&second).copied().collect();
    assert_eq!(all, [1, 2, 3, 4, 5, 6], "no duplicates, no gaps");
    assert_eq!(events.last().unwrap().event, "end", "{events:?}");

    // Resuming after the last event: the stream is over (204 stops an EventSource).
    let over = xtask::http::request(
        "GET",
        &format!("{}/stream?count=6&interval=0.5", f.url),
        &[("Accept", "text/event-stream"), ("Last-Event-ID", "6")],
        b"",
        Duration::from_secs(30),
    )
    .unwrap();
    assert_eq!(over.status, 204, "{}", over.text());
}

#[test]
#[ignore = "needs the local stack (cargo xtask local up)"]
fn without_the_stack_emulator_a_private_one_serves_and_stops() {
    let d = deployed();
    // What a CI job for an AWS environment gets, where no local stack runs.
    let sh = shell();
    let emulator = Emulator::private(&sh).unwrap();
    assert!(emulator.private_project().is_some());
    let project = emulator.private_project().unwrap().to_string();
    let f = TestFunction::start_under(d, emulator, &d.image, &[], 60);
    let stack = support::stack();
    assert!(
        !f.url.starts_with(&stack.lambda_url),
        "a private emulator takes a free port: {}",
        f.url
    );
    let seen = smoke::check(&f.url, Duration::from_secs(30), &three_ticks())
        .unwrap_or_else(|e| panic!("{e:#}\n{}", f.logs()));
    assert_eq!(seen.ids, [1, 2, 3]);
    drop(f);
    let label = format!("label=com.docker.compose.project={project}");
    for what in [
        &["ps", "--all", "--quiet", "--filter", &label][..],
        &["network", "ls", "--quiet", "--filter", &label],
        &["volume", "ls", "--quiet", "--filter", &label],
    ] {
        let out = run(Command::new("docker").args(what));
        assert!(
            out.stdout.is_empty(),
            "the private emulator {project} outlived its owner: docker {what:?}"
        );
    }
}

/// The function's log as `cargo xtask local logs` shows it.
fn function_log(function: &str) -> String {
    let out = run(support::xtask()
        .args(["local", "logs", function])
        .stdin(Stdio::null()));
    assert!(
        out.status.success(),
        "local logs {function}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
#[ignore = "needs the local stack (cargo xtask local up)"]
fn a_stream_longer_than_the_timeout_is_cut_at_it_as_lambda_does() {
    let d = deployed();
    // The app ignores the deadline: 30 events a second apart, under a function timeout of 8 s
    // (its Timeout in the emulator's Lambda API, from the settings).
    let f = lambda::deployed(&emulator_aws(), "us-east-1", &d.function).unwrap();
    assert_eq!(f.timeout, TIMEOUT);
    let started = Instant::now();
    let resp = xtask::http::request(
        "GET",
        &format!("{}/stream?count=30&interval=1", d.url),
        &[("Accept", "text/event-stream")],
        b"",
        Duration::from_secs(40),
    )
    .expect("the client gets the response it had, with no error");
    let took = started.elapsed();
    eprintln!("cut after {:.2}s:\n{}", took.as_secs_f64(), resp.text());
    assert_eq!(resp.status, 200, "the client keeps the status");
    let timeout = Duration::from_secs(TIMEOUT.into());
    assert!(
        took >= timeout && took < timeout + Duration::from_secs(2),
        "cut after {took:?}, not at the {timeout:?} timeout"
    );
    // A truncated body: whole events up to the cut (a partial last one is dropped), no `end`.
    let text = resp.text();
    let complete = &text[..text.rfind("\n\n").map_or(0, |i| i + 2)];
    let events = smoke::parse_sse(complete).unwrap();
    let ticks = ids(&events);
    assert!(
        (TIMEOUT as usize - 1..=TIMEOUT as usize + 1).contains(&ticks.len()),
        "{ticks:?}"
    );
    assert_eq!(ticks, (1..=ticks.len() as u64).collect::<Vec<_>>());
    assert!(events.iter().all(|e| e.event != "end"), "{events:?}");

    // The function's log says so, as CloudWatch would.
    let log = function_log(&d.function);
    let line = log
        .lines()
        .find(|l| l.contains("Task timed out after"))
        .unwrap_or_else(|| panic!("no timeout line in the function's log:\n{log}"));
    let secs: f64 = line
        .split("Task timed out after ")
        .nth(1)
        .and_then(|r| r.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("{line}"));
    assert!(
        (f64::from(TIMEOUT)..f64::from(TIMEOUT) + 0.5).contains(&secs),
        "{line}"
    );
    // The app's own line for that request is in the same log, before it.
    let app = log
        .find("GET /stream?count=30&interval=1")
        .expect("the app's request line");
    assert!(app < log.find(line).unwrap(), "{log}");
    // As on Lambda, the function serves the next request.
    smoke::health(&d.url, Duration::from_secs(30)).unwrap();
}

#[test]
#[ignore = "needs the local stack (cargo xtask local up)"]
fn the_app_gets_the_invocation_deadline_from_the_function_timeout() {
    let d = deployed();
    // The deployed image with an app that echoes its request headers, where the adapter puts
    // the invocation context (`x-amzn-lambda-context`).
    let tag = format!("xtask-test/echo:{}", support::unique("t"));
    let echo = "import http.server as s, json\\nclass H(s.BaseHTTPRequestHandler):\\n def do_GET(self):\\n  b = json.dumps({k.lower(): v for k, v in self.headers.items()}).encode()\\n  self.send_response(200)\\n  self.send_header('Content-Length', str(len(b)))\\n  self.end_headers()\\n  self.wfile.write(b)\\ns.ThreadingHTTPServer(('0.0.0.0', 8080), H).serve_forever()";
    build(
        d,
        &format!(
            "FROM {}\nENV AWS_LWA_READINESS_CHECK_PATH=/\nCMD [\"python\", \"-c\", \"{echo}\"]\n",
            d.image
        ),
        &["--load", "--tag", &tag],
    );
    let emulator = Emulator::shared(&shell()).expect("the stack's Lambda emulator is not running");
    let f = TestFunction::start_under(d, emulator, &tag, &[], 7);
    smoke::health(&f.url, Duration::from_secs(30))
        .unwrap_or_else(|e| panic!("{e:#}\n{}", f.logs()));
    let now_ms = || {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis() as i64
    };
    let before = now_ms();
    let resp = xtask::http::request(
        "GET",
        &format!("{}/anything", f.url),
        &[],
        b"",
        Duration::from_secs(10),
    )
    .unwrap();
    let after = now_ms();
    let headers: Value =
        serde_json::from_slice(&resp.body).unwrap_or_else(|e| panic!("{e}: {}", resp.text()));
    let context: Value = serde_json::from_str(
        headers["x-amzn-lambda-context"]
            .as_str()
            .expect("x-amzn-lambda-context"),
    )
    .unwrap();
    let deadline = context["deadline"].as_i64().unwrap();
    eprintln!("invoked between {before} and {after}, deadline {deadline}");
    assert!(
        (before + 7000 - 100..=after + 7000 + 100).contains(&deadline),
        "deadline {deadline} is not the invocation's start + 7 s ({before}..{after})"
    );
    drop(f);
    let _ = Command::new("docker").args(["image", "rm", &tag]).output();
}

/// Issue 21's end-to-end check: under a 10 s function timeout, `count=30&interval=1` hands
/// over before each deadline and an EventSource-like client (reconnect after `retry`, with
/// `Last-Event-ID`) gets all 30 ticks once each, in order, over at least 3 invocations, then
/// `end`; no invocation is cut. The deployed function runs the same image with the handover
/// off, and [`a_stream_longer_than_the_timeout_is_cut_at_it_as_lambda_does`] is that mutation.
#[test]
#[ignore = "needs the local stack (cargo xtask local up)"]
fn a_stream_longer_than_the_timeout_hands_over_and_resumes_across_invocations() {
    let d = deployed();
    let emulator = Emulator::shared(&shell()).expect("the stack's Lambda emulator is not running");
    let stream = [
        ("SSE_HANDOVER_MARGIN_SECONDS", "2"),
        ("SSE_HEARTBEAT_SECONDS", "2"),
        ("SSE_MAX_STREAM_SECONDS", "10"),
    ];
    let f = TestFunction::start_under(d, emulator, &d.image, &stream, 10);
    smoke::health(&f.url, Duration::from_secs(30))
        .unwrap_or_else(|e| panic!("{e:#}\n{}", f.logs()));
    let started = Instant::now();
    let (mut ticks, mut spans, mut last_id, mut retry) = (vec![], vec![], None::<u64>, 0);
    let last = loop {
        assert!(
            spans.len() < 10,
            "no end after {} invocations: {ticks:?}",
            spans.len()
        );
        std::thread::sleep(Duration::from_millis(retry));
        let begin = started.elapsed();
        let id = last_id.map(|i| i.to_string());
        let mut headers = vec![("Accept", "text/event-stream")];
        headers.extend(id.as_deref().map(|i| ("Last-Event-ID", i)));
        let resp = xtask::http::request(
            "GET",
            &format!("{}/stream?count=30&interval=1", f.url),
            &headers,
            b"",
            Duration::from_secs(30),
        )
        .unwrap();
        spans.push((begin, started.elapsed()));
        assert_eq!(resp.status, 200, "{}", resp.text());
        let text = resp.text();
        assert!(text.ends_with("\n\n"), "a truncated response:\n{text}");
        let events = smoke::parse_sse(&text).unwrap();
        ticks.extend(ids(&events));
        let end = events.last().unwrap_or_else(|| panic!("no event:\n{text}"));
        last_id = events.iter().filter_map(|e| e.id).next_back().or(last_id);
        if let Some(ms) = text.lines().rev().find_map(|l| l.strip_prefix("retry: ")) {
            retry = ms.trim().parse().unwrap();
        }
        if end.event != "handover" {
            break end.event.clone();
        }
    };
    for (i, (begin, end)) in spans.iter().enumerate() {
        let gap = spans.get(i + 1).map(|next| next.0 - *end);
        eprintln!(
            "invocation {}: {:.2}s..{:.2}s ({:.2}s), gap before the next {}",
            i + 1,
            begin.as_secs_f64(),
            end.as_secs_f64(),
            (*end - *begin).as_secs_f64(),
            gap.map_or("-".into(), |g| format!("{:.3}s", g.as_secs_f64()))
        );
    }
    assert_eq!(last, "end");
    assert_eq!(
        ticks,
        (1..=30).collect::<Vec<u64>>(),
        "every tick once, in order"
    );
    assert!(spans.len() >= 3, "{} invocations", spans.len());
    for (begin, end) in &spans {
        assert!(
            *end - *begin < Duration::from_secs(10),
            "an invocation ran into the timeout"
        );
    }
    let logs = function_log(&f.name);
    assert!(!logs.contains("Task timed out"), "{logs}");
    assert!(logs.contains("GET /stream?count=30&interval=1"), "{logs}");
}
