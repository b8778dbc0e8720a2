//! `cargo xtask local down` removes every container, network and volume the stack made (the
//! compose project's, and the function containers on its network), and its ports close; and an
//! emulator restarted behind xtask's back (its state is in memory) gets its account layers again.
//!
//! No test removes a stack it did not start: this one runs only when the caller says the stack
//! is its own to remove (`XTASK_TEST_MAY_STOP_STACK=1`, which `cargo xtask ci` sets for the stack
//! it brought up), and it brings the stack back up afterwards, unless
//! `XTASK_LOCAL_DOWN_NO_RESTORE=1`. It is ignored by a plain `cargo test`.

use std::process::{Command, Stdio};
use std::time::Duration;

mod support;

use support::stack_file;

fn port_open(hostport: &str) -> bool {
    let addr = hostport.parse().unwrap();
    std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(500)).is_ok()
}

fn xtask(args: &[&str]) -> String {
    let out = support::xtask()
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    eprintln!("{}", String::from_utf8_lossy(&out.stderr));
    assert!(
        out.status.success(),
        "xtask {args:?} failed ({}):\n{}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn docker(args: &[&str]) -> Vec<String> {
    let out = Command::new("docker").args(args).output().unwrap();
    assert!(
        out.status.success(),
        "docker {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_string)
        .collect()
}

/// The project's containers, networks and volumes, as `(kind, name)`.
fn left(project: &str) -> Vec<(String, String)> {
    let label = format!("label=com.docker.compose.project={project}");
    let mut all = Vec::new();
    for (kind, args) in [
        (
            "container",
            vec!["ps", "--all", "--format", "{{.Names}}", "--filter", &label],
        ),
        (
            "network",
            vec!["network", "ls", "--format", "{{.Name}}", "--filter", &label],
        ),
        (
            "volume",
            vec!["volume", "ls", "--format", "{{.Name}}", "--filter", &label],
        ),
    ] {
        all.extend(docker(&args).into_iter().map(|n| (kind.to_string(), n)));
    }
    all
}

fn may_stop_the_stack() {
    assert_eq!(
        std::env::var("XTASK_TEST_MAY_STOP_STACK").as_deref(),
        Ok("1"),
        "refusing to stop a local stack this test run did not start: `cargo xtask ci` runs this \
         test for the stack it brought up (or set XTASK_TEST_MAY_STOP_STACK=1 if the stack is \
         yours to stop)"
    );
}

#[test]
#[ignore = "needs the local stack (cargo xtask local up)"]
fn an_emulator_restarted_outside_xtask_gets_its_account_layers_again() {
    use xtask::aws::{Aws, Bucket};
    may_stop_the_stack();
    let stack = support::stack();
    let aws = Aws::emulator(&stack.endpoint_url, &stack.region).unwrap();
    let buckets = [
        "local-sse-streaming-tfstate",
        "local-prod-sse-streaming-tfstate",
    ];
    // As its restart policy or a restarted engine would: same container, empty state.
    let moto = format!("{}-moto-1", stack.project);
    docker(&["restart", &moto]);
    let health = ["inspect", "--format", "{{.State.Health.Status}}", &moto];
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    while docker(&health) != ["healthy"] {
        assert!(
            std::time::Instant::now() < deadline,
            "{moto} is not healthy"
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    assert_eq!(
        aws.bucket(buckets[0]).unwrap(),
        Bucket::Missing,
        "not emptied"
    );

    let first = xtask(&["local", "up"]);
    for env in ["local", "local-prod"] {
        let line = format!("applying `{env}`'s account layer");
        assert!(first.contains(&line), "no `{line}`:\n{first}");
    }
    for bucket in buckets {
        assert_eq!(aws.bucket(bucket).unwrap(), Bucket::Exists, "{bucket}");
    }
    let again = xtask(&["local", "up"]);
    assert!(!again.contains("account layer"), "applied twice:\n{again}");
}

#[test]
#[ignore = "needs the local stack (cargo xtask local up)"]
fn down_removes_every_container_network_and_volume_of_the_stack() {
    may_stop_the_stack();
    let stack = support::stack();
    // A function container on the stack's network, as `deploy` leaves one.
    let function = format!("{}-fn-down-test", stack.project);
    docker(&[
        "run",
        "--detach",
        "--name",
        &function,
        "--network",
        &stack.network,
        "--label",
        "xtask.lambda-function=down-test",
        "python:3.13-slim",
        "sleep",
        "600",
    ]);
    let before = left(&stack.project);
    for kind in ["container", "network", "volume"] {
        assert!(
            before.iter().any(|(k, _)| k == kind),
            "no {kind} before `down`: {before:?}"
        );
    }

    xtask(&["local", "down"]);

    assert_eq!(left(&stack.project), [], "left after `local down`");
    let function_left = docker(&[
        "ps",
        "--all",
        "--quiet",
        "--filter",
        &format!("name=^{function}$"),
    ]);
    assert!(
        function_left.is_empty(),
        "the function container {function} is still there"
    );
    let endpoint = stack
        .endpoint_url
        .trim_start_matches("http://")
        .trim_end_matches('/');
    let lambda = stack.lambda_url.trim_start_matches("http://");
    for addr in [stack.registry.as_str(), endpoint, lambda] {
        assert!(!port_open(addr), "{addr} still accepts connections");
    }
    assert!(
        !stack_file().exists(),
        "the stack record still claims a running stack"
    );
    // Idempotent: a second down finds nothing and succeeds.
    xtask(&["local", "down"]);

    if std::env::var("XTASK_LOCAL_DOWN_NO_RESTORE").as_deref() != Ok("1") {
        xtask(&["local", "up"]);
        xtask(&["local", "status"]);
    }
}
