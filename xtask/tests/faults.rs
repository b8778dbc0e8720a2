//! Failure scenarios, produced for real on the local stack: a signal, a stopped or absent
//! registry, a held state lock, a throttling or refusing endpoint, a failing apply. Each test
//! asserts the exit, a message that names the cause and the fix, and that nothing is lost: no
//! state lock left in the bucket, no terraform process left for the environment, no saved
//! plan file, no container, no private docker configuration.
//!
//! Every test makes its own environment (`fx<tag><nonce>`, a copy of `local` with its own
//! state bucket, repository and function). The README's "Failure behaviour" table maps each
//! scenario to its test. Stand-in servers (a registry on its own port, an endpoint that
//! answers for AWS) are real processes or listeners started here; the environments that use
//! them run with `XTASK_LOCAL_STACK=external`, so xtask never moves the shared stack to them.

mod support;

use std::{
    io::{Read, Write},
    net::{TcpListener, TcpStream},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, AtomicUsize, Ordering},
    },
    time::{Duration, Instant, SystemTime},
};

use serde_json::Value;
use xtask::http;

const MOTO: &str = "http://127.0.0.1:4566";
/// What the emulator's ECR GetAuthorizationToken hands out as the registry password.
const TOKEN: &str = "123456789012-auth-token";

fn root() -> PathBuf {
    support::root()
}

fn urlencode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

fn nonce() -> u64 {
    let n = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_micros() as u64;
    (n ^ u64::from(std::process::id()) << 20) % 100_000_000
}

/// A fresh local-stack environment in a settings file of its own.
struct Env {
    name: String,
    config: PathBuf,
    bucket: String,
    registry: String,
    /// Extra environment for every run.
    vars: Vec<(String, String)>,
}

impl Env {
    /// A copy of `local` under a fresh name; its state is a key of its own in the local
    /// environment's bucket (which `local up` creates).
    fn new(tag: &str) -> Env {
        Env::in_local_bucket(tag)
    }

    /// A copy of `local` whose state lives in the local environment's bucket (which `local
    /// up` creates): enough for `image`, which needs no execution role.
    fn in_local_bucket(tag: &str) -> Env {
        let name = format!("fx{tag}{}", nonce());
        Env::copy(&name, "local-sse-streaming-tfstate")
    }

    fn copy(name: &str, bucket: &str) -> Env {
        assert!(
            name.len() <= 32,
            "{name} is too long for an environment name"
        );
        let real =
            std::fs::read_to_string(root().join("infrastructure/environments.toml")).unwrap();
        let text = real
            .replace("[environments.local]", &format!("[environments.{name}]"))
            .replace("[environments.local.", &format!("[environments.{name}."))
            .replace(
                "promote_from = \"local\"",
                &format!("promote_from = \"{name}\""),
            )
            .replace(
                "bucket = \"local-sse-streaming-tfstate\"",
                &format!("bucket = \"{bucket}\""),
            );
        // One function: these tests are about one deploy's failures, and the account layer
        // they make by hand has the one execution role.
        let (start, end) = (
            text.find("[functions.status]").unwrap(),
            text.find("\n[defaults]\n").unwrap() + 1,
        );
        let text = format!("{}{}", &text[..start], &text[end..]);
        let dir = root().join("target/faults");
        std::fs::create_dir_all(&dir).unwrap();
        let config = dir.join(format!("{name}.toml"));
        std::fs::write(&config, text).unwrap();
        Env {
            name: name.to_string(),
            config,
            bucket: bucket.to_string(),
            registry: "127.0.0.1:5050".into(),
            vars: vec![],
        }
    }

    /// Replaces the first `old` by `new` in the settings file: this environment's table is
    /// the file's first (it replaced `local`'s), before `local-prod`'s alike keys.
    fn edit(&self, old: &str, new: &str) {
        let text = std::fs::read_to_string(&self.config).unwrap();
        assert!(text.contains(old), "{old:?} in {}", self.config.display());
        std::fs::write(&self.config, text.replacen(old, new, 1)).unwrap();
    }

    /// Adds `key = value` to the environment's own table.
    fn set(&self, key: &str, value: &str) {
        let header = format!("[environments.{}]", self.name);
        self.edit(&header, &format!("{header}\n{key} = {value}"));
    }

    /// Removes what [`Env::set`] added.
    fn unset(&self, key: &str, value: &str) {
        let header = format!("[environments.{}]", self.name);
        self.edit(&format!("{header}\n{key} = {value}"), &header);
    }

    /// Sets one of the function's Terraform values for this environment (`memory_size`...; its
    /// table is created on first use).
    fn set_var(&self, key: &str, value: &str) {
        let header = format!("[environments.{}.function.sse-streaming]", self.name);
        let text = std::fs::read_to_string(&self.config).unwrap();
        let text = if text.contains(&header) {
            let start = text.find(&header).unwrap();
            let (head, tail) = text.split_at(start);
            let tail: String = tail
                .lines()
                .filter(|l| !l.starts_with(&format!("{key} =")))
                .collect::<Vec<_>>()
                .join("\n");
            format!(
                "{head}{}\n",
                tail.replacen(&header, &format!("{header}\n{key} = {value}"), 1)
            )
        } else {
            format!("{text}\n{header}\n{key} = {value}\n")
        };
        std::fs::write(&self.config, text).unwrap();
    }

    /// Points the environment at another registry and endpoint, which xtask must use as they
    /// are (`local up` would move the shared stack there).
    fn external(mut self, registry: Option<&str>, endpoint: Option<&str>) -> Env {
        if let Some(registry) = registry {
            self.edit(
                "registry = \"127.0.0.1:5050\"",
                &format!("registry = \"{registry}\""),
            );
            self.registry = registry.to_string();
        }
        if let Some(endpoint) = endpoint {
            self.edit(
                "endpoint_url = \"http://127.0.0.1:4566\"",
                &format!("endpoint_url = \"{endpoint}\""),
            );
        }
        self.vars
            .push(("XTASK_LOCAL_STACK".into(), "external".into()));
        self
    }

    fn repo(&self) -> String {
        format!("{}/{}-sse-streaming-lambda", self.registry, self.name)
    }

    fn function(&self) -> String {
        format!("{}-sse-streaming-lambda", self.name)
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut cmd = support::xtask();
        cmd.args(args)
            .args(["--env", &self.name, "--json", "--config"])
            .arg(&self.config)
            .env_remove("CI")
            .envs(self.vars.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null());
        cmd
    }

    fn run(&self, args: &[&str]) -> Run {
        let started = Instant::now();
        let child = self
            .command(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let pid = child.id();
        Run::new(child.wait_with_output().unwrap(), pid, started.elapsed())
    }

    /// Starts xtask and hands back its stderr lines as they come.
    fn spawn(&self, args: &[&str], stdin: Stdio) -> Running {
        let mut child = self
            .command(args)
            .stdin(stdin)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut stderr = child.stderr.take().unwrap();
        let log = Arc::new(Mutex::new(String::new()));
        let copy = log.clone();
        // Raw reads, not lines: a prompt waits for its answer without a newline.
        let reader = std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = stderr.read(&mut buf) {
                if n == 0 {
                    break;
                }
                let text = String::from_utf8_lossy(&buf[..n]).into_owned();
                copy.lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .push_str(&text);
            }
        });
        Running {
            child,
            reader,
            log,
            started: Instant::now(),
        }
    }

    /// The execution role that `cargo xtask bootstrap` (the account layer) creates, made
    /// directly in the emulator: these tests are about deploys, and a bootstrap apply per
    /// environment would cost a minute each.
    fn account_layer(&self) {
        let policy = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"Service":"lambda.amazonaws.com"},"Action":"sts:AssumeRole"}]}"#;
        let body = format!(
            "Action=CreateRole&Version=2010-05-08&RoleName={}-sse-streaming-exec&AssumeRolePolicyDocument={}",
            self.name,
            urlencode(policy)
        );
        let auth = "AWS4-HMAC-SHA256 Credential=testing/20260101/us-east-1/iam/aws4_request, \
                    SignedHeaders=host, Signature=0";
        let r = http::request(
            "POST",
            &format!("{MOTO}/"),
            &[
                ("Authorization", auth),
                ("Content-Type", "application/x-www-form-urlencoded"),
            ],
            body.as_bytes(),
            Duration::from_secs(10),
        )
        .unwrap();
        assert_eq!(r.status, 200, "CreateRole: {}", r.text());
    }

    /// The image the emulator's Lambda runs, if the function exists.
    fn lambda_image(&self) -> Option<String> {
        let (status, body) = moto(
            "lambda",
            "GET",
            &format!("/2015-03-31/functions/{}", self.function()),
            b"",
        );
        (status == 200).then(|| {
            let v: Value = serde_json::from_slice(&body).unwrap();
            v["Code"]["ImageUri"]
                .as_str()
                .unwrap_or_default()
                .to_string()
        })
    }

    /// The digest a tag names in the environment's registry.
    fn tag(&self, tag: &str) -> Option<String> {
        let auth = format!(
            "Basic {}",
            aws_smithy_types::base64::encode(format!("AWS:{TOKEN}").as_bytes())
        );
        let accept = "application/vnd.oci.image.manifest.v1+json, \
                      application/vnd.docker.distribution.manifest.v2+json, \
                      application/vnd.oci.image.index.v1+json";
        let r = http::request(
            "GET",
            &format!(
                "http://{}/v2/{}-sse-streaming-lambda/manifests/{tag}",
                self.registry, self.name
            ),
            &[("Authorization", &auth), ("Accept", accept)],
            b"",
            Duration::from_secs(10),
        )
        .ok()?;
        (r.status == 200).then(|| r.header("docker-content-digest").unwrap().to_string())
    }

    fn plan_file(&self) -> PathBuf {
        root().join(format!("target/xtask/{0}/{0}.tfplan", self.name))
    }

    fn data_dir(&self) -> PathBuf {
        root().join(format!("target/xtask/{}/terraform", self.name))
    }

    /// Terraform's state lock object for this environment's state, if any.
    fn lock_held(&self) -> bool {
        let key = format!("{}/sse-streaming.tfstate.tflock", self.name);
        let (status, body) = moto(
            "s3",
            "GET",
            &format!("/{}?list-type=2&prefix={key}", self.bucket),
            b"",
        );
        assert_eq!(
            status,
            200,
            "listing {}: {}",
            self.bucket,
            String::from_utf8_lossy(&body)
        );
        String::from_utf8_lossy(&body).contains("<Key>")
    }

    /// Terraform processes (and their provider plugins) working on this environment, found by
    /// the data directory in their environment.
    fn terraform_processes(&self) -> Vec<String> {
        let marker = format!("TF_DATA_DIR={}", self.data_dir().display());
        processes()
            .into_iter()
            .filter(|p| p.environ.split('\0').any(|v| v == marker))
            .map(|p| format!("{} (parent {}): {}", p.pid, p.ppid, p.cmdline))
            .collect()
    }

    /// Containers the smoke test started for this environment.
    fn containers(&self) -> Vec<String> {
        let out = Command::new("docker")
            .args(["ps", "--all", "--format", "{{.Names}}"])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter(|n| n.starts_with(&format!("xtask-smoke-{}-", self.name)))
            .map(String::from)
            .collect()
    }

    /// No lock, no terraform process, no plan file, no container, no private docker
    /// configuration of `pid`.
    fn assert_nothing_left(&self, pid: u32) {
        assert!(
            !self.lock_held(),
            "the state lock of {} is still held",
            self.name
        );
        let procs = self.terraform_processes();
        assert!(
            procs.is_empty(),
            "terraform still runs for {}:\n{procs:#?}",
            self.name
        );
        assert!(
            !self.plan_file().exists(),
            "{} is left",
            self.plan_file().display()
        );
        assert!(
            self.containers().is_empty(),
            "containers left: {:?}",
            self.containers()
        );
        let configs = docker_configs(pid);
        assert!(
            configs.is_empty(),
            "private docker configuration left: {configs:?}"
        );
    }
}

/// A deploy serves the environment's function under the local stack's Lambda emulator
/// (a container): the test's environment stops being served when the test ends.
impl Drop for Env {
    fn drop(&mut self) {
        if let Ok(sh) = xshell::Shell::new() {
            sh.change_dir(root());
            let _ = xtask::local::lambda::unserve(&sh, &self.function());
        }
    }
}

/// A finished run.
struct Run {
    code: i32,
    json: Value,
    stderr: String,
    pid: u32,
    secs: f64,
}

impl Run {
    fn new(out: std::process::Output, pid: u32, elapsed: Duration) -> Run {
        use std::os::unix::process::ExitStatusExt;
        Run {
            code: out
                .status
                .code()
                .unwrap_or_else(|| 128 + out.status.signal().unwrap_or(0)),
            json: serde_json::from_slice(&out.stdout).unwrap_or(Value::Null),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
            pid,
            secs: elapsed.as_secs_f64(),
        }
    }
    fn str(&self, key: &str) -> &str {
        self.json[key].as_str().unwrap_or_default()
    }
    /// A field of the one function's result (`image`, `digest`...).
    fn sse(&self, key: &str) -> &str {
        self.json["functions"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|f| f["name"] == "sse-streaming")
            .and_then(|f| f[key].as_str())
            .unwrap_or_default()
    }
    fn step(&self, prefix: &str) -> (String, String) {
        self.json["steps"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|s| s["title"].as_str().unwrap_or_default().starts_with(prefix))
            .map(|s| {
                (
                    s["outcome"].as_str().unwrap_or_default().to_string(),
                    s["detail"].as_str().unwrap_or_default().to_string(),
                )
            })
            .unwrap_or(("absent".into(), String::new()))
    }
    fn outcome(&self, prefix: &str) -> String {
        self.step(prefix).0
    }
    fn commands(&self) -> Vec<String> {
        self.json["commands"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|c| c.as_str().map(String::from))
            .collect()
    }
    fn ran(&self, prefix: &str) -> bool {
        self.commands().iter().any(|c| c.starts_with(prefix))
    }
    fn assert_ok(&self, what: &str) {
        assert_eq!(
            self.code, 0,
            "{what} failed:\n{}\n{}",
            self.stderr, self.json
        );
        eprintln!("{what}: ok in {:.1}s", self.secs);
    }
    /// Fails with a non-zero exit and an error that contains every one of `needles`.
    fn assert_failed(&self, what: &str, needles: &[&str]) {
        assert_ne!(self.code, 0, "{what} succeeded:\n{}", self.stderr);
        let error = format!("{}\n{}", self.str("error"), self.stderr);
        for needle in needles {
            assert!(error.contains(needle), "{what}: {needle:?} not in\n{error}");
        }
        eprintln!(
            "{what}: failed as expected in {:.1}s (exit {}): {}",
            self.secs,
            self.code,
            self.str("error")
        );
    }
}

/// A run in progress, its stderr readable line by line.
struct Running {
    child: Child,
    reader: std::thread::JoinHandle<()>,
    log: Arc<Mutex<String>>,
    started: Instant,
}

impl Running {
    fn log(&self) -> String {
        self.log.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
    /// Waits until stderr shows `needle`.
    fn wait_for(&mut self, needle: &str, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        while !self.log().contains(needle) {
            if Instant::now() > deadline {
                let _ = self.child.kill();
                panic!("{needle:?} not seen within {timeout:?}:\n{}", self.log());
            }
            std::thread::sleep(Duration::from_millis(25));
        }
    }
    fn signal(&self, sig: i32) {
        // SAFETY: our own child, not yet waited for.
        unsafe { libc::kill(self.child.id() as i32, sig) };
    }
    fn pid(&self) -> u32 {
        self.child.id()
    }
    fn finish(self) -> Run {
        let pid = self.child.id();
        let mut out = self.child.wait_with_output().unwrap();
        let _ = self.reader.join();
        out.stderr = self
            .log
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
            .into_bytes();
        Run::new(out, pid, self.started.elapsed())
    }
}

struct Proc {
    pid: u32,
    ppid: u32,
    cmdline: String,
    environ: String,
}

fn processes() -> Vec<Proc> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let read = |f: &str| std::fs::read(entry.path().join(f)).unwrap_or_default();
        let stat = String::from_utf8_lossy(&read("stat")).into_owned();
        let ppid = stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().nth(1))
            .and_then(|p| p.parse().ok())
            .unwrap_or(0);
        found.push(Proc {
            pid,
            ppid,
            cmdline: String::from_utf8_lossy(&read("cmdline")).replace('\0', " "),
            environ: String::from_utf8_lossy(&read("environ")).into_owned(),
        });
    }
    found
}

/// Private docker configurations of the xtask process `pid` (see runner/docker_config.rs).
fn docker_configs(pid: u32) -> Vec<PathBuf> {
    let base = std::env::var_os("XDG_RUNTIME_DIR")
        .map(PathBuf::from)
        .filter(|d| d.is_dir())
        .unwrap_or_else(std::env::temp_dir);
    std::fs::read_dir(base)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with(&format!("xtask-docker-{pid}-")))
        })
        .collect()
}

/// One request to the emulator, with the dummy SigV4 header it routes by.
fn moto(service: &str, method: &str, path: &str, body: &[u8]) -> (u16, Vec<u8>) {
    let auth = format!(
        "AWS4-HMAC-SHA256 Credential=testing/20260101/us-east-1/{service}/aws4_request, \
         SignedHeaders=host, Signature=0"
    );
    let r = http::request(
        method,
        &format!("{MOTO}{path}"),
        &[
            ("Authorization", &auth),
            ("Content-Type", "application/json"),
        ],
        body,
        Duration::from_secs(30),
    )
    .unwrap();
    (r.status, r.body)
}

/// Whether the emulator's ECR has the repository.
fn repository_exists(name: &str) -> bool {
    let auth = "AWS4-HMAC-SHA256 Credential=testing/20260101/us-east-1/ecr/aws4_request, \
                SignedHeaders=host, Signature=0";
    let r = http::request(
        "POST",
        &format!("{MOTO}/"),
        &[
            ("Authorization", auth),
            ("Content-Type", "application/x-amz-json-1.1"),
            (
                "X-Amz-Target",
                "AmazonEC2ContainerRegistry_V20150921.DescribeRepositories",
            ),
        ],
        format!("{{\"repositoryNames\":[\"{name}\"]}}").as_bytes(),
        Duration::from_secs(10),
    )
    .unwrap();
    r.status == 200
}

/// A private registry (a container of the stack's registry image, with its htpasswd) on a port
/// of its own, accepting the emulator's ECR credentials; removed with its data on drop.
struct Registry {
    addr: String,
    dir: PathBuf,
    container: String,
}

impl Registry {
    fn start(name: &str) -> Registry {
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let addr = format!("127.0.0.1:{port}");
        let dir = root().join(format!("target/faults/registry-{name}"));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("data")).unwrap();
        let stack = support::stack();
        let image = String::from_utf8(
            Command::new("docker")
                .args(["container", "inspect", "--format", "{{.Config.Image}}"])
                .arg(format!("{}-registry-1", stack.project))
                .output()
                .unwrap()
                .stdout,
        )
        .unwrap();
        let container = format!("xtask-faults-registry-{name}-{}", std::process::id());
        let htpasswd = String::from_utf8(
            Command::new("docker")
                .args([
                    "exec",
                    &format!("{}-registry-1", stack.project),
                    "cat",
                    "/auth/htpasswd",
                ])
                .output()
                .unwrap()
                .stdout,
        )
        .unwrap();
        std::fs::write(dir.join("htpasswd"), htpasswd).unwrap();
        let out = Command::new("docker")
            .args(["run", "--detach", "--name", &container, "--publish"])
            .arg(format!("{addr}:5000"))
            .args([
                "--env",
                "REGISTRY_AUTH=htpasswd",
                "--env",
                "REGISTRY_AUTH_HTPASSWD_REALM=faults",
            ])
            .args(["--env", "REGISTRY_AUTH_HTPASSWD_PATH=/auth/htpasswd"])
            .args(["--env", "REGISTRY_STORAGE_DELETE_ENABLED=true", "--volume"])
            .arg(format!(
                "{}:/auth/htpasswd:ro",
                dir.join("htpasswd").display()
            ))
            .arg("--volume")
            .arg(format!("{}:/var/lib/registry", dir.join("data").display()))
            .arg(image.trim())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "docker run registry: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let registry = Registry {
            addr,
            dir,
            container,
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        while http::request(
            "GET",
            &format!("http://{}/v2/", registry.addr),
            &[],
            b"",
            Duration::from_secs(1),
        )
        .map_or(true, |r| r.status != 401)
        {
            assert!(
                Instant::now() < deadline,
                "the private registry did not start"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        registry
    }
    /// Freezes the registry (it accepts connections and never answers), as a hung one does.
    fn pause(&self) {
        let _ = Command::new("docker")
            .args(["pause", &self.container])
            .output();
    }
    /// Where the registry keeps a tag of `repository`.
    fn tag_dir(&self, repository: &str, tag: &str) -> PathBuf {
        self.dir.join(format!(
            "data/docker/registry/v2/repositories/{repository}/_manifests/tags/{tag}"
        ))
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = Command::new("docker")
            .args(["rm", "--force", "--volumes", &self.container])
            .output();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A stand-in AWS endpoint: answers the requests `fault` picks with an AWS error of its own
/// and forwards everything else to the emulator, one request per connection. Counts faults.
struct Endpoint {
    url: String,
    faults: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
}

type Fault = fn(&str, &[u8]) -> Option<Vec<u8>>;

impl Endpoint {
    fn start(fault: Fault) -> Endpoint {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        listener.set_nonblocking(true).unwrap();
        let faults = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let (count, done) = (faults.clone(), stop.clone());
        std::thread::spawn(move || {
            while !done.load(Ordering::SeqCst) {
                match listener.accept() {
                    Ok((client, _)) => {
                        let count = count.clone();
                        std::thread::spawn(move || serve(client, fault, &count));
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(10)),
                }
            }
        });
        Endpoint { url, faults, stop }
    }
    fn faults(&self) -> usize {
        self.faults.load(Ordering::SeqCst)
    }
}

impl Drop for Endpoint {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

fn serve(mut client: TcpStream, fault: Fault, count: &AtomicUsize) {
    client.set_nonblocking(false).unwrap();
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        match client.read(&mut chunk) {
            Ok(0) | Err(_) => return,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    let length: usize = head
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case("content-length")
                .then(|| v.trim().parse().ok())?
        })
        .unwrap_or(0);
    while buf.len() < head_end + length {
        match client.read(&mut chunk) {
            Ok(0) | Err(_) => return,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
    if let Some(answer) = fault(&head, &buf[head_end..]) {
        count.fetch_add(1, Ordering::SeqCst);
        let _ = client.write_all(&answer);
        return;
    }
    // One request per connection, so that every request is seen here.
    let head: String = head
        .split("\r\n")
        .filter(|l| !l.to_ascii_lowercase().starts_with("connection:"))
        .collect::<Vec<_>>()
        .join("\r\n");
    let head = head.trim_end().to_string() + "\r\nConnection: close\r\n\r\n";
    let Ok(mut upstream) = TcpStream::connect("127.0.0.1:4566") else {
        return;
    };
    let _ = upstream.write_all(head.as_bytes());
    let _ = upstream.write_all(&buf[head_end..]);
    let mut back = upstream.try_clone().unwrap();
    let mut front = client.try_clone().unwrap();
    let up = std::thread::spawn(move || {
        let _ = std::io::copy(&mut front, &mut upstream);
    });
    let _ = std::io::copy(&mut back, &mut client);
    let _ = client.shutdown(std::net::Shutdown::Both);
    let _ = up.join();
}

fn http_answer(status: &str, headers: &[(&str, &str)], body: &str) -> Vec<u8> {
    let mut out = format!("HTTP/1.1 {status}\r\nContent-Length: {}\r\n", body.len());
    for (k, v) in headers {
        out.push_str(&format!("{k}: {v}\r\n"));
    }
    out.push_str("Connection: close\r\n\r\n");
    out.push_str(body);
    out.into_bytes()
}

// ------------------------------------------------------------------------------------------

/// Scenario 4: Wrong region: the credential chain selects another region than the settings. Checked
/// before any call (and an endpoint override for a real environment is refused outright).
#[test]
#[ignore = "needs the local stack (cargo xtask local up)"]
fn s04_a_wrong_region_is_refused_before_any_call() {
    support::stack();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let home = root().join(format!("target/faults/home-region-{}", nonce()));
    std::fs::create_dir_all(&home).unwrap();
    let run = |extra: &[(&str, String)]| {
        let out = support::xtask()
            .args(["deploy", "--env", "preprod", "--json"])
            .env("HOME", &home)
            .env("AWS_ACCESS_KEY_ID", "AKIAEXAMPLE")
            .env("AWS_SECRET_ACCESS_KEY", "example")
            .env_remove("AWS_PROFILE")
            .env_remove("AWS_DEFAULT_REGION")
            .envs(extra.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .output()
            .unwrap();
        Run::new(out, 0, Duration::ZERO)
    };
    let wrong = run(&[("AWS_REGION", "us-west-2".into())]);
    wrong.assert_failed(
        "deploy --env preprod with AWS_REGION=us-west-2",
        &["us-west-2", "eu-west-1", "AWS_REGION=eu-west-1"],
    );
    assert!(wrong.commands().is_empty(), "{:?}", wrong.commands());
    assert_eq!(wrong.outcome("account and region check"), "failed");

    let endpoint = format!("http://{}", listener.local_addr().unwrap());
    let redirected = run(&[
        ("AWS_REGION", "eu-west-1".into()),
        ("AWS_ENDPOINT_URL", endpoint),
    ]);
    redirected.assert_failed(
        "deploy --env preprod with AWS_ENDPOINT_URL",
        &["AWS_ENDPOINT_URL is set", "unset it"],
    );
    assert!(redirected.commands().is_empty());
    assert!(
        listener.accept().is_err(),
        "an AWS call reached the endpoint"
    );
    let _ = std::fs::remove_dir_all(&home);
}

/// Scenario 5: Expired credentials: STS answers ExpiredToken; the run stops at the identity check with
/// the fix, before any command.
#[test]
#[ignore = "needs the local stack (cargo xtask local up)"]
fn s05_expired_credentials_stop_at_the_identity_check() {
    support::stack();
    fn expired(_head: &str, body: &[u8]) -> Option<Vec<u8>> {
        String::from_utf8_lossy(body)
            .contains("Action=GetCallerIdentity")
            .then(|| {
                http_answer(
                    "403 Forbidden",
                    &[("Content-Type", "text/xml")],
                    "<ErrorResponse xmlns=\"https://sts.amazonaws.com/doc/2011-06-15/\"><Error>\
                     <Type>Sender</Type><Code>ExpiredToken</Code><Message>The security token \
                     included in the request is expired</Message></Error><RequestId>1</RequestId>\
                     </ErrorResponse>",
                )
            })
    }
    let endpoint = Endpoint::start(expired);
    let env = Env::in_local_bucket("exp").external(None, Some(&endpoint.url));
    let run = env.run(&["deploy"]);
    run.assert_failed(
        "deploy with expired credentials",
        &[
            "ExpiredToken",
            "sts GetCallerIdentity failed",
            "have expired\n  fix: renew them",
        ],
    );
    assert!(endpoint.faults() >= 1);
    assert!(run.commands().is_empty(), "{:?}", run.commands());
    env.assert_nothing_left(run.pid);
}

/// Scenario 6: A throttled GetAuthorizationToken: the SDK retries with backoff, then the run stops at
/// the login, naming the throttling and what to do, with no terraform plan or apply.
#[test]
#[ignore = "needs the local stack (cargo xtask local up)"]
fn s06_a_throttled_login_token_is_retried_then_named() {
    support::stack();
    fn throttle(head: &str, _body: &[u8]) -> Option<Vec<u8>> {
        head.contains("AmazonEC2ContainerRegistry_V20150921.GetAuthorizationToken")
            .then(|| {
                http_answer(
                    "400 Bad Request",
                    &[
                        ("Content-Type", "application/x-amz-json-1.1"),
                        ("x-amzn-ErrorType", "ThrottlingException"),
                    ],
                    r#"{"__type":"ThrottlingException","message":"Rate exceeded"}"#,
                )
            })
    }
    let endpoint = Endpoint::start(throttle);
    let env = Env::in_local_bucket("thr").external(None, Some(&endpoint.url));
    let run = env.run(&["image", "--no-smoke"]);
    run.assert_failed(
        "image with a throttled GetAuthorizationToken",
        &["ThrottlingException", "throttl", "run it again"],
    );
    assert!(
        endpoint.faults() >= 2,
        "the throttled call was not retried ({} tries)",
        endpoint.faults()
    );
    assert_eq!(run.outcome("registry login"), "failed");
    assert!(!run.ran("terraform"), "{:?}", run.commands());
    env.assert_nothing_left(run.pid);
}

/// Scenario 7: A registry that refuses connections, and one that accepts them but never answers (its
/// process stopped): the run stops at the login within docker's own deadline, names the
/// registry and what to check, and runs no terraform.
#[test]
#[ignore = "needs the local stack (cargo xtask local up)"]
fn s07_an_unreachable_or_hung_registry_stops_the_run_in_bounded_time() {
    support::stack();
    // Nothing listens on a port that was just free.
    let free = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let env = Env::in_local_bucket("unr").external(Some(&free.to_string()), None);
    let run = env.run(&["deploy", "--no-smoke"]);
    run.assert_failed(
        "deploy to an unreachable registry",
        &[
            &free.to_string(),
            "nothing answers",
            "cargo xtask local status",
        ],
    );
    assert!(run.secs < 60.0, "took {:.0}s", run.secs);
    assert!(!run.ran("terraform"), "{:?}", run.commands());
    env.assert_nothing_left(run.pid);

    let registry = Registry::start("hung");
    registry.pause();
    let env = Env::in_local_bucket("hng").external(Some(&registry.addr), None);
    let run = env.run(&["deploy", "--no-smoke"]);
    run.assert_failed(
        "deploy to a hung registry",
        &[&registry.addr, "did not answer"],
    );
    assert!(run.secs < 90.0, "took {:.0}s", run.secs);
    assert!(!run.ran("terraform"), "{:?}", run.commands());
    env.assert_nothing_left(run.pid);
}

/// Scenario 9, point 7: `image` is a first command: on a fresh environment it creates the
/// repository (init + targeted apply), asking first for a protected one outside CI.
#[test]
#[ignore = "needs the local stack (cargo xtask local up)"]
fn s09_image_on_a_fresh_environment_creates_the_repository() {
    support::stack();
    let env = Env::in_local_bucket("img");
    env.set("protected", "true");
    let mut refused = env.spawn(&["image", "--no-smoke", "--allow-dirty"], Stdio::piped());
    refused.wait_for("Type `yes` to apply", Duration::from_secs(180));
    refused
        .child
        .stdin
        .take()
        .unwrap()
        .write_all(b"no\n")
        .unwrap();
    let refused = refused.finish();
    refused.assert_failed(
        "image, bootstrap refused",
        &["not confirmed", "nothing was applied", "--yes"],
    );
    assert!(!refused.ran("terraform -chdir=infrastructure/terraform apply"));
    assert!(
        !repository_exists(&env.function()),
        "the refused bootstrap created it"
    );
    env.assert_nothing_left(refused.pid);

    env.unset("protected", "true");
    let first = env.run(&["image", "--no-smoke"]);
    first.assert_ok("image on a fresh environment");
    assert_eq!(
        first.outcome("ECR repositories: terraform apply -target"),
        "ok"
    );
    assert_eq!(first.sse("image"), "built");
    assert_eq!(env.tag("latest").as_deref(), Some(first.sse("digest")));
    env.assert_nothing_left(first.pid);
}

/// Point 5: when the content tag is already there, the other reported tags are written too.
#[test]
#[ignore = "needs the local stack (cargo xtask local up)"]
fn a_skipped_build_still_writes_the_reported_tags() {
    support::stack();
    let env = Env::in_local_bucket("tag");
    let first = env.run(&["image", "--no-smoke"]);
    first.assert_ok("first image");
    let digest = first.sse("digest").to_string();
    // Another image under `latest`: what a build of other sources leaves behind.
    let other = env
        .tag("buildcache")
        .expect("the build exported a registry cache");
    copy_tag(&env, &other, "latest");
    assert_eq!(env.tag("latest").as_deref(), Some(other.as_str()));

    let skip = env.run(&["image", "--no-smoke"]);
    skip.assert_ok("image with the content tag present");
    assert_eq!(skip.outcome("docker buildx bake (push)"), "skipped");
    assert_eq!(skip.outcome("sse-streaming: tag the existing image"), "ok");
    let tags = skip.json["functions"][0]["tags"].as_array().unwrap();
    assert!(tags.iter().any(|t| t == "latest"), "{tags:?}");
    for tag in tags {
        let tag = tag.as_str().unwrap();
        assert_eq!(env.tag(tag).as_deref(), Some(digest.as_str()), "{tag}");
    }
    // Steady state: the next run only reads.
    let again = env.run(&["image", "--no-smoke"]);
    again.assert_ok("image, nothing to change");
    assert_eq!(again.outcome("sse-streaming: tag the existing image"), "ok");
    assert!(again.stderr.contains("nothing written"), "{}", again.stderr);
}

/// Points `tag` at `digest` in the shared registry, by manifest copy.
fn copy_tag(env: &Env, digest: &str, tag: &str) {
    let auth = format!(
        "Basic {}",
        aws_smithy_types::base64::encode(format!("AWS:{TOKEN}").as_bytes())
    );
    let base = format!(
        "http://{}/v2/{}-sse-streaming-lambda/manifests",
        env.registry, env.name
    );
    let accept = "application/vnd.oci.image.manifest.v1+json, \
                  application/vnd.docker.distribution.manifest.v2+json, \
                  application/vnd.oci.image.index.v1+json";
    let got = http::request(
        "GET",
        &format!("{base}/{digest}"),
        &[("Authorization", &auth), ("Accept", accept)],
        b"",
        Duration::from_secs(10),
    )
    .unwrap();
    assert_eq!(got.status, 200);
    let media = got.header("content-type").unwrap().to_string();
    let put = http::request(
        "PUT",
        &format!("{base}/{tag}"),
        &[("Authorization", &auth), ("Content-Type", &media)],
        &got.body,
        Duration::from_secs(10),
    )
    .unwrap();
    assert!((200..300).contains(&put.status), "{}", put.text());
}

/// The function's configuration in the emulator (`MemorySize`, `Code.ImageUri`...).
fn function(env: &Env) -> Option<Value> {
    let (status, body) = moto(
        "lambda",
        "GET",
        &format!("/2015-03-31/functions/{}", env.function()),
        b"",
    );
    (status == 200).then(|| serde_json::from_slice(&body).unwrap())
}

fn memory(env: &Env) -> Option<u64> {
    function(env).and_then(|f| f["Configuration"]["MemorySize"].as_u64())
}

/// Waits until `pid`'s terraform apply runs with its provider started: the state is locked
/// and changes are under way.
fn wait_for_apply(env: &Env, xtask_pid: u32, timeout: Duration) -> u32 {
    let plan = format!("{}-{xtask_pid}.tfplan", env.name);
    let deadline = Instant::now() + timeout;
    loop {
        let procs = processes();
        let apply = procs
            .iter()
            .find(|p| p.cmdline.contains(" apply ") && p.cmdline.contains(&plan));
        if let Some(apply) = apply {
            if procs
                .iter()
                .any(|p| p.ppid == apply.pid && p.cmdline.contains("terraform-provider"))
            {
                return apply.pid;
            }
        }
        assert!(
            Instant::now() < deadline,
            "no terraform apply with its provider for {} within {timeout:?}",
            env.name
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Point 6: `live` is the commit point. A registry that refuses the `previous` write (a file
/// where the tag's directory must go: a real 500 from the registry) stops the run before
/// `deployed-` and `live` move; the next run, with the registry repaired and nothing left to
/// apply, writes all three.
#[test]
#[ignore = "needs the local stack (cargo xtask local up)"]
fn s06b_a_refused_tag_write_is_redone_by_the_next_run() {
    support::stack();
    let registry = Registry::start("tags");
    let env = Env::new("tg").external(Some(&registry.addr), None);
    env.account_layer();
    let first = env.run(&["deploy", "--no-smoke"]);
    first.assert_ok("first deploy");
    let a = first.sse("digest").to_string();
    assert_eq!(env.tag("live").as_deref(), Some(a.as_str()));

    // Another image, B: A with a label, pushed as `other` (what a later build leaves).
    let b = push_labelled_copy(&env, &a, "other");
    assert_ne!(a, b);

    let repository = format!("{}-sse-streaming-lambda", env.name);
    let previous = registry.tag_dir(&repository, "previous");
    std::fs::create_dir_all(previous.parent().unwrap()).unwrap();
    std::fs::write(&previous, "in the way").unwrap();
    let broken = env.run(&["rollback", "--to", "other"]);
    broken.assert_failed(
        "rollback with `previous` refused",
        &[
            "keep the previous image",
            "the registry refused",
            ":previous: HTTP 500",
        ],
    );
    assert_eq!(broken.str("terraform"), "applied", "{}", broken.json);
    assert_eq!(env.lambda_image(), Some(format!("{}@{b}", env.repo())));
    assert_eq!(
        env.tag("live").as_deref(),
        Some(a.as_str()),
        "live moved before previous was written"
    );
    assert_eq!(
        broken.outcome("sse-streaming: mark the deployed image"),
        "absent"
    );
    env.assert_nothing_left(broken.pid);

    std::fs::remove_file(&previous).unwrap();
    let repaired = env.run(&["rollback", "--to", "other"]);
    repaired.assert_ok("rollback after the registry was repaired");
    assert_eq!(repaired.str("terraform"), "no changes");
    assert_eq!(
        repaired.outcome("sse-streaming: keep the previous image"),
        "ok"
    );
    assert_eq!(
        repaired.outcome("sse-streaming: mark the deployed image"),
        "ok"
    );
    assert_eq!(env.tag("previous").as_deref(), Some(a.as_str()));
    assert_eq!(env.tag("live").as_deref(), Some(b.as_str()));
    let tags = registry_tags(&env);
    assert!(
        tags.iter()
            .any(|t| t.starts_with("deployed-") && env.tag(t).as_deref() == Some(b.as_str())),
        "{tags:?}"
    );
    env.assert_nothing_left(repaired.pid);
}

/// Every tag of the environment's repository.
fn registry_tags(env: &Env) -> Vec<String> {
    let auth = format!(
        "Basic {}",
        aws_smithy_types::base64::encode(format!("AWS:{TOKEN}").as_bytes())
    );
    let r = http::request(
        "GET",
        &format!(
            "http://{}/v2/{}-sse-streaming-lambda/tags/list",
            env.registry, env.name
        ),
        &[("Authorization", &auth)],
        b"",
        Duration::from_secs(10),
    )
    .unwrap();
    let v: Value = serde_json::from_slice(&r.body).unwrap();
    v["tags"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|t| t.as_str().map(String::from))
        .collect()
}

/// Builds `FROM repo@digest` plus a label and pushes it as `tag` (single manifest, no
/// attestations), through a docker configuration of the test's own; returns its digest.
fn push_labelled_copy(env: &Env, digest: &str, tag: &str) -> String {
    let dir = root().join(format!("target/faults/{}-copy", env.name));
    std::fs::create_dir_all(dir.join("docker")).unwrap();
    std::fs::write(
        dir.join("Dockerfile"),
        format!("FROM {}@{digest}\nLABEL fault.copy={tag}\n", env.repo()),
    )
    .unwrap();
    let docker = |args: &[&str], stdin: &str| {
        let mut child = Command::new("docker")
            .args(args)
            .env("DOCKER_CONFIG", dir.join("docker"))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(stdin.as_bytes())
            .unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "docker {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    docker(
        &[
            "login",
            "--username",
            "AWS",
            "--password-stdin",
            &env.registry,
        ],
        TOKEN,
    );
    let metadata = dir.join("metadata.json");
    docker(
        &[
            "buildx",
            "build",
            "--provenance=false",
            "--sbom=false",
            "--platform",
            "linux/amd64",
            "--metadata-file",
            &metadata.display().to_string(),
            "--tag",
            &format!("{}:{tag}", env.repo()),
            "--push",
            &dir.display().to_string(),
        ],
        "",
    );
    let meta: Value = serde_json::from_slice(&std::fs::read(&metadata).unwrap()).unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    meta["containerimage.digest"].as_str().unwrap().to_string()
}

/// Scenario 12: Two deploys of one environment at once: each has its own saved plan; Terraform's state
/// lock serialises them; the one whose plan went stale fails with that named and nothing of
/// it applied, or finds no changes. State is never corrupted: the next deploy finds nothing.
#[test]
#[ignore = "needs the local stack (cargo xtask local up)"]
fn s12_two_concurrent_deploys_serialise_on_the_state_lock() {
    support::stack();
    let env = Env::new("cc");
    env.account_layer();
    env.run(&["deploy", "--no-smoke"]).assert_ok("first deploy");
    env.set_var("memory_size", "640");
    let one = env.spawn(&["deploy", "--no-smoke"], Stdio::null());
    let two = env.spawn(&["deploy", "--no-smoke"], Stdio::null());
    let (one, two) = (one.finish(), two.finish());
    let mut applied = 0;
    for run in [&one, &two] {
        eprintln!(
            "concurrent deploy: exit {}, terraform {:?}, error {:?}",
            run.code,
            run.str("terraform"),
            run.str("error")
        );
        match (run.code, run.str("terraform")) {
            (0, "applied") => applied += 1,
            (0, "no changes") => {}
            _ => {
                let error = format!("{}\n{}", run.str("error"), run.stderr);
                assert!(
                    (error.contains("stale") || error.contains("lock"))
                        && error.contains("run the command again"),
                    "a concurrent deploy failed without naming the cause:\n{error}"
                );
            }
        }
        env.assert_nothing_left(run.pid);
    }
    assert!(
        applied >= 1,
        "neither deploy applied:\n{}\n{}",
        one.stderr,
        two.stderr
    );
    assert_eq!(memory(&env), Some(640));
    let after = env.run(&["deploy", "--no-smoke"]);
    after.assert_ok("deploy after the concurrent pair");
    assert_eq!(after.str("terraform"), "no changes");
}

/// Scenarios 13 and 14: Plan exit codes: 2 (changes, applied), 0 (no changes, nothing applied), 1 (a
/// failure, here a variable Terraform's validation refuses: named, nothing applied). A plan
/// file left by a killed run is removed (never applied) and says so.
#[test]
#[ignore = "needs the local stack (cargo xtask local up)"]
fn s13_s14_plan_exit_codes_and_a_leftover_plan_file() {
    support::stack();
    let env = Env::new("pl");
    env.account_layer();
    let leftover = root().join(format!("target/xtask/{0}/{0}-999999999.tfplan", env.name));
    std::fs::create_dir_all(leftover.parent().unwrap()).unwrap();
    std::fs::write(&leftover, "a plan from a run that was killed").unwrap();

    let changes = env.run(&["deploy", "--no-smoke"]);
    changes.assert_ok("deploy with changes (plan exit 2)");
    assert_eq!(changes.str("terraform"), "applied");
    assert!(
        changes.stderr.contains("left by an earlier run") && !leftover.exists(),
        "{}",
        changes.stderr
    );
    env.assert_nothing_left(changes.pid);

    let none = env.run(&["deploy", "--no-smoke"]);
    none.assert_ok("deploy with no changes (plan exit 0)");
    assert_eq!(none.str("terraform"), "no changes");
    assert_eq!(none.outcome("terraform apply"), "skipped");
    env.assert_nothing_left(none.pid);

    // A value only Terraform's validation refuses (the settings check the others first).
    env.set_var("description", &format!("\"{}\"", "x".repeat(300)));
    let failed = env.run(&["deploy", "--no-smoke"]);
    failed.assert_failed(
        "deploy with an invalid variable (plan exit 1)",
        &["terraform plan failed (exit 1)", "description"],
    );
    assert_eq!(failed.outcome("terraform apply"), "absent");
    assert_eq!(memory(&env), Some(512), "something was applied");
    env.assert_nothing_left(failed.pid);
}

/// Scenario 15: An apply that fails partway: Lambda refuses to create the function (as it does when
/// the image is gone) after the log group was created. The stand-in endpoint forwards every
/// other call to the emulator. Exit non-zero, the log group stays in the state, `live` does
/// not move, and the next deploy (the endpoint back to the emulator) converges.
#[test]
#[ignore = "needs the local stack (cargo xtask local up)"]
fn s15_an_apply_that_fails_partway_keeps_state_and_converges() {
    support::stack();
    fn refuse_create_function(head: &str, _body: &[u8]) -> Option<Vec<u8>> {
        head.starts_with("POST /2015-03-31/functions ").then(|| {
            http_answer(
                "400 Bad Request",
                &[
                    ("Content-Type", "application/json"),
                    ("x-amzn-ErrorType", "InvalidParameterValueException"),
                ],
                r#"{"Type":"User","Message":"Source image does not exist. Provide a valid source image."}"#,
            )
        })
    }
    let endpoint = Endpoint::start(refuse_create_function);
    let env = Env::new("pa").external(None, Some(&endpoint.url));
    env.account_layer();
    let failed = env.run(&["deploy", "--no-smoke"]);
    failed.assert_failed(
        "deploy whose function Lambda refuses",
        &["terraform apply failed"],
    );
    assert!(endpoint.faults() >= 1);
    assert!(
        failed.stderr.contains("Source image does not exist"),
        "{}",
        failed.stderr
    );
    assert_eq!(
        env.tag("live"),
        None,
        "live moved although the apply failed"
    );
    let state = state_object(&env);
    assert!(
        state.contains("aws_cloudwatch_log_group") && !state.contains("\"aws_lambda_function\""),
        "the state does not hold exactly what was created:\n{state}"
    );
    env.assert_nothing_left(failed.pid);

    env.edit(
        &format!("endpoint_url = \"{}\"", endpoint.url),
        "endpoint_url = \"http://127.0.0.1:4566\"",
    );
    let converged = env.run(&["deploy", "--no-smoke"]);
    converged.assert_ok("deploy after the failed apply");
    assert_eq!(converged.str("terraform"), "applied");
    let digest = converged.sse("digest");
    assert_eq!(env.lambda_image(), Some(format!("{}@{digest}", env.repo())));
    assert_eq!(env.tag("live").as_deref(), Some(digest));
    env.assert_nothing_left(converged.pid);
    let again = env.run(&["deploy", "--no-smoke"]);
    again.assert_ok("deploy after convergence");
    assert_eq!(again.str("terraform"), "no changes");
}

/// The environment's Terraform state, as the bucket holds it.
fn state_object(env: &Env) -> String {
    let (status, body) = moto(
        "s3",
        "GET",
        &format!("/{}/{}/sse-streaming.tfstate", env.bucket, env.name),
        b"",
    );
    assert_eq!(status, 200);
    String::from_utf8_lossy(&body).into_owned()
}

/// Scenario 16: SIGINT, SIGTERM and SIGHUP during `terraform apply`: forwarded once to terraform,
/// which stops cleanly; xtask exits 128+N; the lock is released, no terraform process is left
/// for the environment, no plan file; the next deploy converges.
#[test]
#[ignore = "needs the local stack (cargo xtask local up)"]
fn s16_signals_during_apply_are_forwarded_and_the_next_deploy_converges() {
    support::stack();
    let env = Env::new("sg");
    env.account_layer();
    env.run(&["deploy", "--no-smoke"]).assert_ok("first deploy");
    for (sig, name, memory_mb) in [
        (libc::SIGINT, "SIGINT", 640),
        (libc::SIGTERM, "SIGTERM", 768),
        (libc::SIGHUP, "SIGHUP", 896),
    ] {
        env.set_var("memory_size", &memory_mb.to_string());
        let running = env.spawn(&["deploy", "--no-smoke"], Stdio::null());
        let terraform = wait_for_apply(&env, running.pid(), Duration::from_secs(300));
        running.signal(sig);
        let run = running.finish();
        assert_eq!(run.code, 128 + sig, "{name}: exit code\n{}", run.stderr);
        assert!(
            run.stderr.contains(&format!("interrupted ({name})"))
                && run
                    .stderr
                    .contains("signal forwarded to the running command"),
            "{name}:\n{}",
            run.stderr
        );
        assert!(
            !Path::new(&format!("/proc/{terraform}")).exists(),
            "{name}: terraform (pid {terraform}) outlived xtask"
        );
        let orphans: Vec<Proc> = processes()
            .into_iter()
            .filter(|p| p.ppid == 1 && p.environ.contains(&env.data_dir().display().to_string()))
            .collect();
        assert!(orphans.is_empty(), "{name}: orphaned terraform processes");
        env.assert_nothing_left(run.pid);

        let next = env.run(&["deploy", "--no-smoke"]);
        next.assert_ok(&format!("deploy after {name}"));
        assert_eq!(memory(&env), Some(memory_mb), "{name}");
        assert_eq!(env.tag("live").as_deref(), Some(next.sse("digest")));
        env.assert_nothing_left(next.pid);
    }
}

/// Scenario 17: A Terraform variable without a value: Terraform is never left waiting for an answer
/// (`-input=false`, stdin closed); the run fails at once, naming the variable.
#[test]
#[ignore = "needs the local stack (cargo xtask local up)"]
fn s17_a_missing_variable_fails_without_a_prompt() {
    support::stack();
    let env = Env::in_local_bucket("mv");
    // The real configuration plus one variable without a default, in a copy beside a copy of
    // the modules it refers to (`../modules`).
    let base = root().join(format!("target/faults/{}-infra", env.name));
    for (from, to) in [
        ("infrastructure/terraform", "terraform"),
        ("infrastructure/modules/function", "modules/function"),
    ] {
        let to = base.join(to);
        std::fs::create_dir_all(&to).unwrap();
        for entry in std::fs::read_dir(root().join(from)).unwrap().flatten() {
            if entry.path().is_file() {
                std::fs::copy(entry.path(), to.join(entry.file_name())).unwrap();
            }
        }
    }
    std::fs::write(
        base.join("terraform/fault.tf"),
        "variable \"fault_required\" {\n  description = \"No default, never set.\"\n  type        = string\n}\n",
    )
    .unwrap();
    let dir = base
        .join("terraform")
        .strip_prefix(root())
        .unwrap()
        .display()
        .to_string();
    let header = format!("[environments.{}]", env.name);
    let text = std::fs::read_to_string(&env.config).unwrap();
    std::fs::write(
        &env.config,
        format!(
            "{text}\n[environments.{}.terraform]\ndir = \"{dir}\"\n",
            env.name
        ),
    )
    .unwrap();
    let _ = header;
    let run = env.run(&["deploy", "--no-smoke"]);
    run.assert_failed("deploy with a variable nobody sets", &["fault_required"]);
    assert!(
        run.stderr.contains("No value for required variable"),
        "{}",
        run.stderr
    );
    assert!(
        run.secs < 120.0,
        "took {:.0}s: waiting for input?",
        run.secs
    );
    env.assert_nothing_left(run.pid);
    let _ = std::fs::remove_dir_all(&base);
}

/// Scenario 19: The registry password never shows: not in any process's argv during the run, not in
/// the output, not in the files the run writes, not in the user's docker configuration (the
/// run's own private configuration is gone afterwards). Every docker process the run starts
/// uses that private configuration.
#[test]
#[ignore = "needs the local stack (cargo xtask local up)"]
fn s19_the_registry_token_never_leaks() {
    support::stack();
    let encoded = aws_smithy_types::base64::encode(format!("AWS:{TOKEN}").as_bytes());
    let home = root().join(format!("target/faults/home-token-{}", nonce()));
    std::fs::create_dir_all(home.join(".docker")).unwrap();
    let user_config = "{\n  \"detachKeys\": \"ctrl-e,e\"\n}\n";
    std::fs::write(home.join(".docker/config.json"), user_config).unwrap();
    let mut env = Env::in_local_bucket("tk");
    env.vars.push(("HOME".into(), home.display().to_string()));

    for round in [
        "first image (build and push)",
        "second image (tags by copy)",
    ] {
        let running = env.spawn(&["image", "--no-smoke"], Stdio::null());
        let pid = running.pid();
        let stop = Arc::new(AtomicBool::new(false));
        let watch = {
            let (stop, token, encoded) = (stop.clone(), TOKEN.to_string(), encoded.clone());
            let log = running.log.clone();
            std::thread::spawn(move || {
                let (mut leaks, mut docker_configs) = (Vec::new(), Vec::new());
                while !stop.load(Ordering::SeqCst) {
                    for p in processes() {
                        if p.cmdline.contains(&token) || p.cmdline.contains(&encoded) {
                            leaks.push(format!("{}: {}", p.pid, p.cmdline));
                        }
                        // Docker commands the runner starts (its first step line is out).
                        let runner = log
                            .lock()
                            .unwrap_or_else(|e| e.into_inner())
                            .contains("==> [");
                        if runner && p.ppid == pid && p.cmdline.starts_with("docker") {
                            let config = p
                                .environ
                                .split('\0')
                                .find_map(|v| v.strip_prefix("DOCKER_CONFIG="))
                                .map(String::from);
                            docker_configs.push((p.cmdline.clone(), config));
                        }
                    }
                    std::thread::sleep(Duration::from_millis(15));
                }
                (leaks, docker_configs)
            })
        };
        let run = running.finish();
        stop.store(true, Ordering::SeqCst);
        let (leaks, docker_configs) = watch.join().unwrap();
        run.assert_ok(round);
        assert!(
            leaks.is_empty(),
            "{round}: the token was on a command line: {leaks:#?}"
        );
        assert!(
            !docker_configs.is_empty(),
            "{round}: no docker process was seen"
        );
        for (cmdline, config) in &docker_configs {
            let config = config.as_deref().unwrap_or("<unset>");
            assert!(
                config.contains(&format!("xtask-docker-{pid}-")),
                "{round}: `{cmdline}` ran with DOCKER_CONFIG={config}"
            );
        }
        let output = format!("{}\n{}", run.json, run.stderr);
        assert!(
            !output.contains(TOKEN) && !output.contains(&encoded),
            "{round}: in the output"
        );
        assert_eq!(
            std::fs::read_to_string(home.join(".docker/config.json")).unwrap(),
            user_config,
            "{round}: the user's docker configuration changed"
        );
        assert!(
            docker_configs_of(pid).is_empty(),
            "{round}: the private configuration is left"
        );
        for file in files_under(&root().join(format!("target/xtask/{}", env.name)))
            .into_iter()
            .chain(
                files_under(&root().join("target/local-stack"))
                    .into_iter()
                    .filter(|f| f.extension().is_some_and(|e| e == "log")),
            )
        {
            let text =
                String::from_utf8_lossy(&std::fs::read(&file).unwrap_or_default()).into_owned();
            assert!(
                !text.contains(TOKEN) && !text.contains(&encoded),
                "{round}: the token is in {}",
                file.display()
            );
        }
    }
    let _ = std::fs::remove_dir_all(&home);
}

fn docker_configs_of(pid: u32) -> Vec<PathBuf> {
    docker_configs(pid)
}

fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        match entry.file_type() {
            // Terraform's provider binaries are large and hold no secrets of ours.
            Ok(t) if t.is_dir() && path.file_name().is_some_and(|n| n != "providers") => {
                files.extend(files_under(&path));
            }
            Ok(t) if t.is_file() => files.push(path),
            _ => {}
        }
    }
    files
}

/// A PATH of the real tools, with some of them replaced by spies.
fn spy_path(name: &str, spies: &[(&str, &str)]) -> (PathBuf, PathBuf) {
    let dir = root().join(format!("target/faults/spy-{name}-{}", nonce()));
    let bin = dir.join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    let log = dir.join("spawned.log");
    for tool in ["git", "docker", "terraform"] {
        let real = which(tool);
        std::os::unix::fs::symlink(&real, bin.join(tool)).unwrap();
    }
    for (tool, script) in spies {
        let path = bin.join(tool);
        let _ = std::fs::remove_file(&path);
        let real = which(tool);
        std::fs::write(
            &path,
            format!(
                "#!/bin/sh\necho {tool} \"$@\" >> {}\nREAL={}\n{script}\n",
                log.display(),
                real.display()
            ),
        )
        .unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    (bin, log)
}

fn which(tool: &str) -> PathBuf {
    std::env::var("PATH")
        .unwrap()
        .split(':')
        .map(|d| Path::new(d).join(tool))
        .find(|p| p.is_file())
        .unwrap_or_else(|| panic!("{tool} is not on PATH"))
}

/// Scenario 20: An old Terraform (1.5.7 where versions.tf asks for >= 1.10) and a missing buildx: each
/// refused in the preflight, named with what to install, before anything runs.
#[test]
#[ignore = "needs the local stack (cargo xtask local up)"]
fn s20_an_old_terraform_or_a_missing_buildx_is_refused_first() {
    support::stack();
    let (bin, log) = spy_path(
        "tf",
        &[(
            "terraform",
            "[ \"$1\" = version ] && { echo 'Terraform v1.5.7'; echo 'on linux_amd64'; exit 0; }\nexit 1",
        )],
    );
    let run = |bin: &Path, args: &[&str]| {
        let out = support::xtask()
            .args(args)
            .args(["--env", "preprod", "--json"])
            .env("PATH", bin)
            .stdin(Stdio::null())
            .output()
            .unwrap();
        Run::new(out, 0, Duration::ZERO)
    };
    let old = run(&bin, &["deploy"]);
    old.assert_failed(
        "deploy with terraform 1.5.7",
        &[
            "terraform 1.5.7",
            "required_version = \">= 1.10\"",
            "infrastructure/terraform/versions.tf:",
            "nothing was run",
        ],
    );
    let spawned = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(
        spawned.lines().all(|l| l == "terraform version"),
        "terraform ran more than its version probe:\n{spawned}"
    );

    let (bin, log) = spy_path(
        "bx",
        &[(
            "docker",
            "[ \"$1\" = buildx ] && { echo \"docker: 'buildx' is not a docker command.\" >&2; exit 1; }\nexec \"$REAL\" \"$@\"",
        )],
    );
    let missing = run(&bin, &["image"]);
    missing.assert_failed(
        "image without buildx",
        &[
            "missing tools, nothing was run",
            "docker buildx",
            "docker-buildx",
        ],
    );
    let spawned = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(
        spawned
            .lines()
            .all(|l| l.starts_with("docker version") || l == "docker buildx version"),
        "docker ran more than its probes:\n{spawned}"
    );
}

/// Point 2b: Ctrl-C at the confirmation prompt (the saved plan exists while it waits) and
/// during the smoke test (a container runs): exit 130, and neither the plan file nor the
/// container nor the private docker configuration is left.
#[test]
#[ignore = "needs the local stack (cargo xtask local up)"]
fn ctrl_c_at_the_prompt_or_in_the_smoke_test_leaves_nothing() {
    support::stack();
    let env = Env::new("cx");
    env.account_layer();
    env.run(&["deploy", "--no-smoke"]).assert_ok("first deploy");

    env.set("protected", "true");
    env.set_var("memory_size", "640");
    let mut asking = env.spawn(&["deploy", "--no-smoke", "--allow-dirty"], Stdio::piped());
    asking.wait_for("Type `yes` to apply", Duration::from_secs(300));
    let plan = root().join(format!(
        "target/xtask/{0}/{0}-{1}.tfplan",
        env.name,
        asking.pid()
    ));
    assert!(plan.exists(), "no saved plan while asking");
    asking.signal(libc::SIGINT);
    let run = asking.finish();
    assert_eq!(run.code, 130, "{}", run.stderr);
    assert!(
        run.stderr
            .contains("at the confirmation: nothing was applied"),
        "{}",
        run.stderr
    );
    assert!(!plan.exists());
    assert_eq!(memory(&env), Some(512));
    env.assert_nothing_left(run.pid);

    env.unset("protected", "true");
    // The smoke record would skip a digest that passed before: force the test to run.
    let _ = std::fs::remove_file(root().join(format!("target/xtask/{}/smoke-passed", env.name)));
    let mut smoking = env.spawn(&["image"], Stdio::null());
    smoking.wait_for(": smoke test", Duration::from_secs(300));
    // Until the container exists.
    let deadline = Instant::now() + Duration::from_secs(60);
    while env.containers().is_empty() {
        assert!(
            Instant::now() < deadline,
            "no smoke-test container appeared"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    smoking.signal(libc::SIGINT);
    let run = smoking.finish();
    assert_eq!(run.code, 130, "{}", run.stderr);
    env.assert_nothing_left(run.pid);
}
