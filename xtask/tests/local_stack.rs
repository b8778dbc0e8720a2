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
