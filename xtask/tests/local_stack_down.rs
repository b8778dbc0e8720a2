//! `cargo xtask local down` stops every process `local up` recorded, and closes its ports.
//!
//! The test brings the stack back up afterwards (other tests and people share
//! it), unless `XTASK_LOCAL_DOWN_NO_RESTORE=1`. Without a running stack it
//! skips, except under `CI=true` or `XTASK_E2E_REQUIRED=1`, where that is a failure.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use serde::Deserialize;

#[derive(Debug, Deserialize)]
struct Stack {
    registry: String,
    endpoint_url: String,
    pids: std::collections::BTreeMap<String, u32>,
}

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

fn stack_file() -> PathBuf {
    repo_root().join("target/local-stack/stack.json")
}

/// A process is alive if it has a command line (zombies and dead pids have none).
fn alive(pid: u32) -> bool {
    std::fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|c| !c.is_empty())
}

fn port_open(hostport: &str) -> bool {
    let addr = hostport.parse().unwrap();
    std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(500)).is_ok()
}

fn xtask(args: &[&str]) {
    let out = Command::new(env!("CARGO_BIN_EXE_xtask"))
        .args(args)
        .current_dir(repo_root())
        .stdin(Stdio::null())
        .output()
        .unwrap();
    println!("{}", String::from_utf8_lossy(&out.stdout));
    eprintln!("{}", String::from_utf8_lossy(&out.stderr));
    assert!(
        out.status.success(),
        "xtask {args:?} failed ({}):\n{}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn down_stops_every_recorded_process() {
    let stack: Stack = match std::fs::read_to_string(stack_file()) {
        Ok(text) => serde_json::from_str(&text).unwrap(),
        Err(e) if required() => {
            panic!(
                "the local stack is not up ({}: {e}); CI runs `cargo xtask local up` first",
                stack_file().display()
            )
        }
        Err(e) => {
            eprintln!(
                "skipped: run `cargo xtask local up` ({}: {e})",
                stack_file().display()
            );
            return;
        }
    };
    let running: Vec<(&String, &u32)> = stack.pids.iter().filter(|(_, p)| alive(**p)).collect();
    assert!(
        !running.is_empty(),
        "stack.json lists no live process: {:?}",
        stack.pids
    );

    xtask(&["local", "down"]);

    for (name, pid) in &stack.pids {
        assert!(
            !alive(*pid),
            "{name} (pid {pid}) still runs after `local down`"
        );
    }
    let endpoint = stack
        .endpoint_url
        .trim_start_matches("http://")
        .trim_end_matches('/');
    assert!(
        !port_open(&stack.registry),
        "registry {} still accepts connections",
        stack.registry
    );
    assert!(
        !port_open(endpoint),
        "emulator {endpoint} still accepts connections"
    );
    assert!(
        !stack_file().exists(),
        "stack.json still claims a running stack"
    );
    // Idempotent: a second down finds nothing to stop and succeeds.
    xtask(&["local", "down"]);

    if std::env::var("XTASK_LOCAL_DOWN_NO_RESTORE").as_deref() != Ok("1") {
        xtask(&["local", "up"]);
        xtask(&["local", "status"]);
    }
}

/// Under CI (`CI=true`) or `cargo xtask ci` (`XTASK_E2E_REQUIRED=1`) a missing stack is a failure.
fn required() -> bool {
    matches!(std::env::var("CI").as_deref(), Ok("true" | "1"))
        || std::env::var("XTASK_E2E_REQUIRED").as_deref() == Ok("1")
}
