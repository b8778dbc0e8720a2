//! Integration tests against the running local stack (`cargo xtask local up`):
//! registry login with the emulator's ECR token, push, digest read-back and a
//! registry-cache round trip; and a real Terraform apply/destroy against the emulator.
//!
//! Nothing is faked: the tests read `target/local-stack/stack.json` and drive
//! docker, buildx and terraform, and call the emulator through xtask's own SDK client.
//! They are ignored by a plain `cargo test`; `cargo xtask ci` runs them.

mod support;

use support::Stack;
use xtask::aws::Aws;

use std::path::PathBuf;
use std::process::{Command, Output, Stdio};

fn unique(prefix: &str) -> String {
    support::unique(prefix)
}

/// The emulator's SDK client, as `cargo xtask` builds it.
fn emulator(stack: &Stack) -> Aws {
    Aws::emulator(&stack.endpoint_url, &stack.region).unwrap()
}

/// (user, password) from the emulator's ECR GetAuthorizationToken.
fn ecr_login(stack: &Stack) -> (String, String) {
    let token = emulator(stack).login_token().unwrap();
    (token.username, token.password.expose().to_string())
}

/// Runs a command, failing the test with its output if it fails.
fn run(cmd: &mut Command) -> Output {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed ({}):\n{}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// A scratch directory removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(prefix: &str) -> Self {
        let dir = std::env::temp_dir().join(unique(prefix));
        std::fs::create_dir_all(&dir).unwrap();
        Self(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// How a RUN/COPY step of a `--progress=plain` build was satisfied.
#[derive(Debug, PartialEq, Eq)]
enum Outcome {
    /// BuildKit printed `#N CACHED`.
    Cached,
    /// No execution, only its layer blobs downloaded: BuildKit shows a step whose
    /// result comes from a remote cache this way when the exported image needs
    /// the layer itself (it prints no CACHED for it).
    LoadedFromCache,
    Executed,
}

/// Each RUN/COPY step (`#N [i/n] RUN …`) of a plain-progress log, with its outcome.
fn steps(plain: &str) -> Vec<(String, String, Outcome)> {
    let mut steps: Vec<(String, String)> = Vec::new();
    for line in plain.lines() {
        let Some((id, rest)) = line.split_once(' ') else {
            continue;
        };
        let what = rest
            .strip_prefix('[')
            .and_then(|r| r.split_once("] "))
            .map(|(_, w)| w);
        if let Some(what) = what.filter(|w| w.starts_with("RUN ") || w.starts_with("COPY ")) {
            if id.starts_with('#') && !steps.iter().any(|(i, _)| i == id) {
                steps.push((id.to_string(), what.to_string()));
            }
        }
    }
    steps
        .into_iter()
        .map(|(id, what)| {
            let body: Vec<&str> = plain
                .lines()
                .filter_map(|l| {
                    l.strip_prefix(id.as_str())
                        .and_then(|r| r.strip_prefix(' '))
                })
                .filter(|r| !r.starts_with('['))
                .collect();
            // Process output lines start with a timestamp ("#8 0.213 ok").
            let ran = body.iter().any(|r| {
                r.split_whitespace()
                    .next()
                    .is_some_and(|t| t.parse::<f64>().is_ok())
            });
            let blobs = body
                .iter()
                .any(|r| r.starts_with("sha256:") || r.starts_with("extracting sha256:"));
            let outcome = if body.iter().any(|r| r.trim() == "CACHED") {
                Outcome::Cached
            } else if blobs && !ran {
                Outcome::LoadedFromCache
            } else {
                Outcome::Executed
            };
            (id, what, outcome)
        })
        .collect()
}

#[test]
#[ignore = "needs the local stack (cargo xtask local up)"]
fn registry_login_push_digest_and_cache_round_trip() {
    let stack = support::stack();
    // A private docker config keeps the test's login out of the user's ~/.docker.
    let docker_config = TempDir::new("xtask-test-docker-config");
    let docker = || {
        let mut c = Command::new("docker");
        c.env("DOCKER_CONFIG", &docker_config.0);
        c
    };

    let (user, password) = ecr_login(&stack);
    assert_eq!(user, "AWS");
    let mut login = docker()
        .args([
            "login",
            "--username",
            &user,
            "--password-stdin",
            &stack.registry,
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    {
        use std::io::Write;
        let mut stdin = login.stdin.take().unwrap();
        stdin.write_all(password.as_bytes()).unwrap();
    }
    let out = login.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "docker login: {}",
        String::from_utf8_lossy(&out.stderr)
    );

    let repo = format!("{}/{}", stack.registry, unique("xtask-test/cache"));
    let cache_ref = format!("type=registry,ref={repo}:buildcache");
    let context = TempDir::new("xtask-test-context");
    // The unique marker makes the first build miss any earlier cache, so the
    // export is real and the CACHED steps can only come from the registry.
    let marker = unique("built");
    std::fs::write(
        context.0.join("Dockerfile"),
        format!(
            "FROM python:3.13-slim\nRUN echo {marker} > /built.txt && python3 -c \"print('ok')\"\n\
             COPY hello.txt /hello.txt\n"
        ),
    )
    .unwrap();
    std::fs::write(context.0.join("hello.txt"), "hello\n").unwrap();
    let metadata = context.0.join("metadata.json");

    let tag = format!("{repo}:v1");
    run(docker()
        .args([
            "buildx",
            "build",
            "--push",
            "--provenance=false",
            "--progress=plain",
        ])
        .args([
            "--cache-to",
            &format!("{cache_ref},mode=max,image-manifest=true,oci-mediatypes=true"),
            "--metadata-file",
            metadata.to_str().unwrap(),
            "--tag",
            &tag,
            context.0.to_str().unwrap(),
        ]));
    let meta: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&metadata).unwrap()).unwrap();
    let built = meta["containerimage.digest"]
        .as_str()
        .expect("metadata has containerimage.digest");

    let inspect = run(docker().args(["buildx", "imagetools", "inspect", &tag]));
    let inspect = String::from_utf8_lossy(&inspect.stdout);
    let pushed = inspect
        .lines()
        .find_map(|l| l.strip_prefix("Digest:"))
        .map(str::trim)
        .unwrap_or_else(|| panic!("no Digest in imagetools inspect output:\n{inspect}"));
    assert_eq!(
        pushed, built,
        "the registry holds a different digest than the build produced"
    );

    // Empty the builder (and drop the local copy), so only the registry cache can help.
    let prune = || {
        run(docker().args(["buildx", "prune", "-af"]));
        let _ = docker().args(["image", "rm", &tag]).output();
    };
    let rebuild = |output: &[&str]| {
        let out = run(docker()
            .args(["buildx", "build", "--provenance=false", "--progress=plain"])
            .args(["--cache-from", &cache_ref])
            .args(output)
            .arg(&context.0));
        let plain = String::from_utf8_lossy(&out.stderr).into_owned();
        let steps = steps(&plain);
        assert!(
            steps.len() >= 2,
            "expected a RUN and a COPY step in:\n{plain}"
        );
        (steps, plain)
    };

    // The strict check: rebuilding the graph from the registry cache alone
    // runs nothing, and BuildKit marks every step CACHED.
    prune();
    let (cache_only, plain) = rebuild(&["--output", "type=cacheonly"]);
    for (id, what, outcome) in &cache_only {
        assert_eq!(
            *outcome,
            Outcome::Cached,
            "step {id} `{what}` after the prune:\n{plain}"
        );
    }

    // The pipeline's path: the same rebuild exporting an image. The final
    // layer must then be fetched, which BuildKit shows as blob downloads
    // instead of CACHED; what matters is that no step executes.
    prune();
    let v2 = format!("{repo}:v2");
    let (exported, plain) = rebuild(&["--tag", &v2]);
    for (id, what, outcome) in &exported {
        assert_ne!(
            *outcome,
            Outcome::Executed,
            "step {id} `{what}` ran again:\n{plain}"
        );
    }
    println!(
        "{} RUN/COPY steps CACHED from {cache_ref}; with image export: {:?}",
        cache_only.len(),
        exported
            .iter()
            .map(|(_, w, o)| format!("{w}: {o:?}"))
            .collect::<Vec<_>>()
    );
    let _ = docker().args(["image", "rm", &v2]).output();
}

#[test]
#[ignore = "needs the local stack (cargo xtask local up)"]
fn terraform_applies_and_destroys_an_ecr_repository() {
    let stack = support::stack();
    let dir = TempDir::new("xtask-test-terraform");
    let name = unique("xtask-test-repo");
    std::fs::write(
        dir.0.join("main.tf"),
        format!(
            r#"terraform {{
  required_providers {{
    aws = {{
      source  = "hashicorp/aws"
      version = ">= 5.0, < 6.0"
    }}
  }}
}}

# Endpoints come from AWS_ENDPOINT_URL; the emulator accepts any key.
provider "aws" {{
  region                      = "{region}"
  access_key                  = "testing"
  secret_key                  = "testing"
  skip_credentials_validation = true
  skip_metadata_api_check     = true
  skip_requesting_account_id  = true
}}

resource "aws_ecr_repository" "this" {{
  name         = "{name}"
  force_delete = true
}}

output "repository_url" {{
  value = aws_ecr_repository.this.repository_url
}}
"#,
            region = stack.region,
        ),
    )
    .unwrap();
    let terraform = |args: &[&str]| {
        let mut c = Command::new("terraform");
        c.current_dir(&dir.0)
            .args(args)
            .env("TF_CLI_CONFIG_FILE", &stack.tf_cli_config)
            .env("AWS_ENDPOINT_URL", &stack.endpoint_url)
            .env("AWS_ACCESS_KEY_ID", "testing")
            .env("AWS_SECRET_ACCESS_KEY", "testing")
            .env("AWS_REGION", &stack.region)
            .env("TF_IN_AUTOMATION", "1")
            .env("TF_INPUT", "0");
        run(&mut c)
    };
    terraform(&["init", "-no-color"]);
    terraform(&["apply", "-auto-approve", "-no-color"]);

    let aws = emulator(&stack);
    assert!(
        aws.repository_exists(&name).unwrap(),
        "DescribeRepositories finds no {name} after apply"
    );
    let url = terraform(&["output", "-raw", "repository_url"]);
    assert!(String::from_utf8_lossy(&url.stdout).ends_with(&format!("/{name}")));

    terraform(&["destroy", "-auto-approve", "-no-color"]);
    assert!(
        !aws.repository_exists(&name).unwrap(),
        "repository {name} still exists after destroy"
    );
}

#[test]
fn classifies_plain_progress() {
    let plain = "#5 [1/3] FROM docker.io/library/python:3.13-slim\n\
                 #6 [2/3] RUN echo x\n#6 CACHED\n\
                 #7 [3/3] COPY hello.txt /hello.txt\n#7 sha256:ab 108B / 108B 0.0s done\n#7 DONE 0.1s\n\
                 #8 [2/2] RUN python3 -c print\n#8 0.213 ok\n#8 DONE 0.3s\n\
                 #9 [3/3] COPY a /a\n#9 DONE 0.0s\n";
    let outcomes: Vec<Outcome> = steps(plain).into_iter().map(|(_, _, o)| o).collect();
    assert_eq!(
        outcomes,
        [
            Outcome::Cached,
            Outcome::LoadedFromCache,
            Outcome::Executed,
            Outcome::Executed
        ]
    );
}

#[test]
#[ignore = "needs the local stack (cargo xtask local up)"]
fn head_bucket_is_signed_and_tells_missing_from_present() {
    use xtask::aws::Bucket;
    let stack = support::stack();
    let aws = emulator(&stack);
    assert_eq!(
        aws.bucket("local-sse-streaming-tfstate").unwrap(),
        Bucket::Exists
    );
    assert_eq!(
        aws.bucket(&unique("no-such-bucket")).unwrap(),
        Bucket::Missing
    );
}

/// A second Docker engine on this machine, for the `builder` setting's docker-context path:
/// its own dockerd (own socket, data and exec roots) on the machine's containerd under its own
/// namespaces, on a bridge of its own with NAT rules of its own (so RUN steps reach PyPI as
/// on the main engine, whose iptables chains it never touches: `--iptables=false`), and a
/// docker context naming it. Its pushes come from the dockerd process itself, on the host's
/// network, so they reach the registry on 127.0.0.1. Drop stops it and removes the context,
/// the containerd namespaces, the rules, the bridge and the directories, also on failure.
struct SecondEngine {
    /// The context's name, and the containerd namespace's.
    name: String,
    dir: PathBuf,
    bridge: String,
    subnet: String,
    /// `iptables` rules added, each as (table, chain, rule).
    rules: Vec<(&'static str, &'static str, Vec<String>)>,
    child: Option<std::process::Child>,
}

impl SecondEngine {
    fn new() -> SecondEngine {
        let name = unique("bld");
        // A short path: the engine's unix sockets live under it (108 bytes at most).
        let dir = PathBuf::from("/tmp").join(&name);
        std::fs::create_dir_all(&dir).unwrap();
        let routes = run(Command::new("ip").args(["-4", "route", "show"]));
        let routes = String::from_utf8_lossy(&routes.stdout).into_owned();
        let third = (200..=254)
            .find(|n| !routes.contains(&format!("172.31.{n}.")))
            .expect("a free 172.31.x.0/24 for the second engine's bridge");
        let mut engine = SecondEngine {
            bridge: format!("bldbr{}", std::process::id() % 100_000),
            subnet: format!("172.31.{third}.0/24"),
            name,
            dir,
            rules: Vec::new(),
            child: None,
        };
        let bridge = engine.bridge.clone();
        run(Command::new("ip").args(["link", "add", &bridge, "type", "bridge"]));
        let address = format!("172.31.{third}.1/24");
        run(Command::new("ip").args(["addr", "add", &address, "dev", &bridge]));
        run(Command::new("ip").args(["link", "set", &bridge, "up"]));
        let words = |s: &str| -> Vec<String> {
            let rule = s.replace("BRIDGE", &bridge);
            let rule = rule.replace("SUBNET", &engine.subnet.clone());
            let mut rule: Vec<String> = rule.split_whitespace().map(String::from).collect();
            rule.extend(["-m", "comment", "--comment"].map(String::from));
            rule.push(engine.name.clone());
            rule
        };
        let rules = [
            (
                "nat",
                "POSTROUTING",
                words("-s SUBNET ! -o BRIDGE -j MASQUERADE"),
            ),
            ("filter", "FORWARD", words("-i BRIDGE -j ACCEPT")),
            (
                "filter",
                "FORWARD",
                words("-o BRIDGE -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT"),
            ),
        ];
        for (table, chain, rule) in rules {
            // Inserted first: the main engine's FORWARD policy is DROP.
            run(Command::new("iptables")
                .args(["-t", table, "-I", chain, "1"])
                .args(&rule));
            engine.rules.push((table, chain, rule));
        }
        engine
    }

    fn socket(&self) -> String {
        format!("unix://{}/docker.sock", self.dir.display())
    }

    /// Starts dockerd, on the containerd image store or on the classic one, and waits until
    /// it answers.
    fn start(&mut self, containerd_store: bool) {
        let config = self.dir.join("daemon.json");
        let features =
            serde_json::json!({"features": {"containerd-snapshotter": containerd_store}});
        std::fs::write(&config, features.to_string()).unwrap();
        let log = std::fs::File::create(self.dir.join("dockerd.log")).unwrap();
        let path = |p: &str| self.dir.join(p).display().to_string();
        let child = Command::new("dockerd")
            .args(["--host", &self.socket(), "--data-root", &path("data")])
            .args([
                "--exec-root",
                &path("exec"),
                "--pidfile",
                &path("docker.pid"),
            ])
            .args(["--config-file", &path("daemon.json")])
            .args(["--containerd", "/run/containerd/containerd.sock"])
            .args(["--containerd-namespace", &self.name])
            .args([
                "--containerd-plugins-namespace",
                &format!("{}-plugins", self.name),
            ])
            .args([
                "--bridge",
                &self.bridge,
                "--iptables=false",
                "--ip-masq=false",
            ])
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("dockerd on PATH");
        self.child = Some(child);
        let started = std::time::Instant::now();
        loop {
            let up = Command::new("docker")
                .args([
                    "--host",
                    &self.socket(),
                    "version",
                    "--format",
                    "{{.Server.Version}}",
                ])
                .output()
                .is_ok_and(|o| o.status.success());
            if up {
                break;
            }
            let exited = self.child.as_mut().unwrap().try_wait().unwrap();
            assert!(
                exited.is_none() && started.elapsed().as_secs() < 90,
                "the second dockerd did not come up ({exited:?}):\n{}",
                std::fs::read_to_string(self.dir.join("dockerd.log")).unwrap_or_default()
            );
            std::thread::sleep(std::time::Duration::from_millis(300));
        }
        eprintln!(
            "second engine up in {:.1}s (containerd store: {containerd_store})",
            started.elapsed().as_secs_f64()
        );
    }

    /// SIGTERM, then SIGKILL after 30 s.
    fn stop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
        let started = std::time::Instant::now();
        while child.try_wait().ok().flatten().is_none() {
            if started.elapsed().as_secs() > 30 {
                let _ = child.kill();
                let _ = child.wait();
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(200));
        }
    }

    /// `docker --context NAME ARGS`.
    fn docker(&self, args: &[&str]) -> Output {
        run(Command::new("docker")
            .args(["--context", &self.name])
            .args(args))
    }

    /// What remains of the engine in the machine's containerd, removed: the namespaces hold
    /// its images, snapshots and leases, which its directories do not.
    fn purge_containerd(&self) {
        let ctr = |ns: &str, args: &[&str]| {
            Command::new("ctr")
                .args(["-n", ns])
                .args(args)
                .stderr(Stdio::null())
                .output()
                .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
                .unwrap_or_default()
        };
        for ns in [
            self.name.clone(),
            format!("{}_history", self.name),
            format!("{}-plugins", self.name),
        ] {
            for kind in ["leases", "containers", "images", "content"] {
                let ids = ctr(&ns, &[kind, "ls", "-q"]);
                let ids: Vec<&str> = ids.split_whitespace().collect();
                if !ids.is_empty() {
                    let rm = if kind == "images" {
                        vec!["rm", "--sync"]
                    } else {
                        vec!["rm"]
                    };
                    ctr(&ns, &[[kind].as_slice(), &rm, &ids].concat());
                }
            }
            let _ = Command::new("ctr")
                .args(["namespaces", "rm", &ns])
                .stderr(Stdio::null())
                .output();
        }
    }
}

impl Drop for SecondEngine {
    fn drop(&mut self) {
        self.stop();
        let _ = Command::new("docker")
            .args(["context", "rm", "--force", &self.name])
            .output();
        // What the CLI kept of the context: buildx's activity record and refs, and the
        // context directories when no other context is left in them.
        let config = std::env::var_os("DOCKER_CONFIG")
            .map(PathBuf::from)
            .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".docker")));
        if let Some(config) = config {
            let _ = std::fs::remove_file(config.join("buildx/activity").join(&self.name));
            let _ = std::fs::remove_dir_all(config.join("buildx/refs").join(&self.name));
            let _ = std::fs::remove_dir(config.join("contexts/meta"));
            let _ = std::fs::remove_dir(config.join("contexts"));
        }
        self.purge_containerd();
        for (table, chain, rule) in &self.rules {
            let _ = Command::new("iptables")
                .args(["-t", table, "-D", chain])
                .args(rule)
                .output();
        }
        let _ = Command::new("ip")
            .args(["link", "del", &self.bridge])
            .output();
        let _ = Command::new("umount")
            .args(["--recursive", "--lazy"])
            .arg(self.dir.join("exec"))
            .stderr(Stdio::null())
            .output();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// `cargo xtask image --json` on an environment whose `builder` is the docker context of a
/// second engine on this machine: the bake runs there (`docker --context NAME buildx bake`),
/// both functions' images reach the registry on 127.0.0.1, and the cache-export check asks
/// that engine, not the local one (shown with the second engine first on the classic image
/// store, which cannot export a registry cache while the main engine can).
#[test]
#[ignore = "needs the local stack (cargo xtask local up)"]
fn a_docker_context_builder_bakes_on_the_second_engine() {
    const FUNCTIONS: [(&str, &str); 2] = [
        ("sse-streaming", "sse-streaming-lambda"),
        ("status", "status"),
    ];
    let stack = support::stack();
    let mut engine = SecondEngine::new();
    let context = engine.name.clone();
    engine.start(false);
    run(Command::new("docker").args([
        "context",
        "create",
        &context,
        "--docker",
        &format!("host={}", engine.socket()),
    ]));

    let env = unique("bld");
    let settings = support::settings_for(&env, &stack).replace(
        &format!("[environments.{env}]\n"),
        &format!("[environments.{env}]\nbuilder = \"{context}\"\n"),
    );
    assert!(settings.contains(&format!("builder = \"{context}\"")));
    let dir = support::root().join("target/e2e");
    std::fs::create_dir_all(&dir).unwrap();
    let config = dir.join(format!("{env}.toml"));
    std::fs::write(&config, settings).unwrap();
    let image = |extra: &[&str]| {
        support::Run::of(
            support::xtask()
                // The shared stack is running: xtask checks it, never brings it up.
                .env("XTASK_LOCAL_STACK", "external")
                .args(["image", "--env", &env, "--config"])
                .arg(&config)
                .arg("--json")
                .args(extra),
        )
    };
    let no_cache_export = "cannot export a registry cache";

    // The classic image store: the second engine cannot export a registry cache, the main
    // engine (containerd image store) can. The preflight must say so of the second.
    let main_status =
        run(Command::new("docker").args(["info", "--format", "{{json .DriverStatus}}"]));
    assert!(
        String::from_utf8_lossy(&main_status.stdout).contains("io.containerd.snapshotter"),
        "the main engine runs the containerd image store"
    );
    let dry = image(&["--dry-run"]);
    dry.assert_ok("image --dry-run on the classic second engine");
    assert!(
        dry.stderr.contains(&format!(
            "the buildx builder (driver `docker`) {no_cache_export}"
        )),
        "the preflight did not check the second engine's image store:\n{}",
        dry.stderr
    );
    let bake = format!("docker --context {context} buildx bake --file ");
    assert!(
        dry.result.commands.iter().any(|c| c.starts_with(&bake)),
        "{:#?}",
        dry.result.commands
    );

    // The containerd image store, with the offline stand-ins the build args name.
    engine.stop();
    engine.start(true);
    let toml =
        std::fs::read_to_string(support::root().join("infrastructure/environments.toml")).unwrap();
    let args = toml
        .split("[environments.local.build_args]")
        .nth(1)
        .unwrap();
    let bases: Vec<String> = args
        .lines()
        .skip(1)
        .take_while(|l| !l.trim().is_empty() && !l.starts_with('['))
        .filter_map(|l| Some(l.split_once('=')?.1.trim().trim_matches('"').to_string()))
        .collect();
    assert_eq!(bases.len(), 2, "PYTHON_IMAGE and LWA_IMAGE: {bases:?}");
    let mut save = Command::new("docker")
        .arg("save")
        .args(&bases)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let load = Command::new("docker")
        .args(["--context", &context, "load"])
        .stdin(save.stdout.take().unwrap())
        .output()
        .unwrap();
    assert!(
        save.wait().unwrap().success() && load.status.success(),
        "{load:?}"
    );
    let before = engine.docker(&["buildx", "du"]);
    let before = String::from_utf8_lossy(&before.stdout).into_owned();

    let built = image(&[]);
    built.assert_ok("image on the second engine");
    assert!(
        !built.stderr.contains(no_cache_export),
        "the second engine now exports a cache:\n{}",
        built.stderr
    );
    assert_eq!(built.step("docker buildx bake (push)"), "ok");
    let bakes: Vec<&String> = built
        .result
        .commands
        .iter()
        .filter(|c| c.contains("buildx bake"))
        .collect();
    assert!(
        bakes.len() == 1 && bakes[0].starts_with(&bake),
        "one bake, on the second engine: {bakes:#?}"
    );

    // The second engine did the build: its build cache, empty before, now holds it, and its
    // image store the pushed images, by digest.
    let after = engine.docker(&["buildx", "du"]);
    let after = String::from_utf8_lossy(&after.stdout).into_owned();
    assert!(
        after.lines().count() > before.lines().count() + 2,
        "before:\n{before}\nafter:\n{after}"
    );
    // The image exporter names what it pushed in the engine it ran on: the second engine has
    // each function's tags, the main one none of them (its smoke test pulls by digest only).
    let format = ["image", "ls", "--digests", "--format"];
    let format = [format.as_slice(), &["{{.Repository}}:{{.Tag}} {{.Digest}}"]].concat();
    let images = engine.docker(&format);
    let images = String::from_utf8_lossy(&images.stdout).into_owned();
    let main_images = run(Command::new("docker").args(&format));
    let main_images = String::from_utf8_lossy(&main_images.stdout).into_owned();
    for (function, repo) in FUNCTIONS {
        let digest = built.digest(function);
        assert_eq!(
            built.function(function).image.as_deref(),
            Some("built"),
            "{function}"
        );
        let repo = format!("{}/{env}-{repo}", stack.registry);
        let tags = &built.function(function).tags;
        assert!(!tags.is_empty(), "{function}: no tags");
        for tag in tags {
            assert!(
                images
                    .lines()
                    .any(|l| l == format!("{repo}:{tag} {digest}")),
                "{repo}:{tag} ({digest}) is not in the second engine's image store:\n{images}"
            );
        }
        let tagged_on_main = main_images
            .lines()
            .filter(|l| {
                l.starts_with(&format!("{repo}:")) && !l.starts_with(&format!("{repo}:<none>"))
            })
            .collect::<Vec<_>>();
        assert!(
            tagged_on_main.is_empty(),
            "the main engine has {tagged_on_main:?}"
        );
        let inspect = support::docker()
            .args([
                "buildx",
                "imagetools",
                "inspect",
                &format!("{repo}@{digest}"),
            ])
            .args(["--format", "{{json .Manifest}}"])
            .output()
            .unwrap();
        assert!(
            inspect.status.success(),
            "{repo}@{digest} is not in the registry: {inspect:?}"
        );
        let manifest: serde_json::Value = serde_json::from_slice(&inspect.stdout).unwrap();
        assert_eq!(manifest["digest"], digest.as_str(), "{repo}");
        eprintln!("{function}: {repo}@{digest}");
    }
    for step in &built.result.steps {
        eprintln!("  {:>6.1}s {} {}", step.seconds, step.outcome, step.title);
    }
    eprintln!(
        "dry run {:.1}s, image on the second engine {:.1}s; its build cache:\n{after}",
        dry.secs, built.secs
    );
    // The smoke tests' pulls into the main engine (by digest, this run's repositories only).
    for line in main_images
        .lines()
        .filter(|l| l.contains(&format!("/{env}-")))
    {
        if let Some((name, digest)) = line.split_once(' ') {
            let repo = name.rsplit_once(':').map_or(name, |(r, _)| r);
            let _ = Command::new("docker")
                .args(["image", "rm", &format!("{repo}@{digest}")])
                .output();
        }
    }
    let _ = std::fs::remove_file(&config);
}
