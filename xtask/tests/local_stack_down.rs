//! `cargo xtask local down` stops every process `local up` recorded, and closes its ports.
//!
//! No test stops a stack it did not start: this one runs only when the caller says the stack
//! is its own to stop (`XTASK_TEST_MAY_STOP_STACK=1`, which `cargo xtask ci` sets for the stack
//! it brought up), and it brings the stack back up afterwards, unless
//! `XTASK_LOCAL_DOWN_NO_RESTORE=1`. It is ignored by a plain `cargo test`.

use std::process::Stdio;
use std::time::Duration;

mod support;

use support::stack_file;

/// A process is alive if it has a command line (zombies and dead pids have none).
fn alive(pid: u32) -> bool {
    std::fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|c| !c.is_empty())
}

fn port_open(hostport: &str) -> bool {
    let addr = hostport.parse().unwrap();
    std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(500)).is_ok()
}

fn xtask(args: &[&str]) {
    let out = support::xtask()
        .args(args)
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
#[ignore = "needs the local stack (cargo xtask local up)"]
fn down_stops_every_recorded_process() {
    assert_eq!(
        std::env::var("XTASK_TEST_MAY_STOP_STACK").as_deref(),
        Ok("1"),
        "refusing to stop a local stack this test run did not start: `cargo xtask ci` runs this \
         test for the stack it brought up (or set XTASK_TEST_MAY_STOP_STACK=1 if the stack is \
         yours to stop)"
    );
    let stack = support::stack();
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
