//! Spawning one command and capturing its output as bytes.
//!
//! Children may print anything (pip and apt output inside a build, a Latin-1 byte from a
//! provider), so output is read as bytes and decoded lossily, and the child is always waited
//! for: a reader never stops early and leaves the child to die of SIGPIPE.

use std::collections::VecDeque;
use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Command, Stdio};

use anyhow::{Context, Result, bail};
use xshell::Shell;

use crate::cmdline::Resolved;
use crate::secret::Secret;
use crate::signals;

/// Where a command's output goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Capture {
    /// Output streams to the terminal (stdout to stderr under `--json`).
    Stream,
    /// Stdout is captured and returned, stderr streams.
    Stdout,
    /// Stdout captured, stderr kept only to classify failures: registry reads.
    Lookup,
    /// Nothing is shown.
    Quiet,
}

#[derive(Debug, Clone)]
pub struct Output {
    pub code: i32,
    pub stdout: String,
    /// The last lines of stderr, for error messages and failure classification.
    pub stderr_tail: Vec<String>,
}

const TAIL_LINES: usize = 40;

/// Runs `line` to completion, in its own process group so that a terminal's Ctrl-C reaches
/// only xtask, which forwards it (see `signals`). `stdin`, when given, is written to the
/// child's stdin and closed; it is the only way a secret reaches a child.
pub fn run(
    sh: &Shell,
    line: &Resolved,
    stdin: Option<&Secret>,
    capture: Capture,
) -> Result<Output> {
    if let Some(sig) = signals::received() {
        bail!(
            "interrupted ({}): `{}` was not started",
            signals::name(sig),
            line.program
        );
    }
    let out = spawn_and_wait(sh, line, stdin, capture, true)?;
    if let Some(sig) = signals::received() {
        bail!(
            "interrupted ({}): `{}` was stopped and has exited (exit {})",
            signals::name(sig),
            line.program,
            out.code
        );
    }
    Ok(out)
}

/// Runs a cleanup command (removing a container the run started) even after a signal: the
/// run is stopping, and this is what stopping cleanly means. The signal that stopped the run
/// is not passed on to it (it would stop the cleanup itself). Its output is not shown.
pub fn run_cleanup(sh: &Shell, line: &Resolved) -> Result<Output> {
    spawn_and_wait(sh, line, None, Capture::Quiet, false)
}

fn spawn_and_wait(
    sh: &Shell,
    line: &Resolved,
    stdin: Option<&Secret>,
    capture: Capture,
    forward: bool,
) -> Result<Output> {
    use std::os::unix::process::CommandExt;
    let mut command: Command = line.to_cmd(sh).into();
    command.process_group(0);
    command.stdin(if stdin.is_some() {
        Stdio::piped()
    } else {
        Stdio::null()
    });
    command.stdout(match capture {
        Capture::Stdout | Capture::Lookup | Capture::Quiet => Stdio::piped(),
        // Progress goes to stderr whatever the output is: stdout carries only the result, and
        // a reader that stops early (`| head`) cannot kill a terraform apply with SIGPIPE.
        Capture::Stream => Stdio::from(std::io::stderr()),
    });
    command.stderr(Stdio::piped());
    let blocked = signals::Blocked::new();
    let mut child = command.spawn().with_context(|| {
        format!(
            "cannot start `{}`: is it installed and on PATH?",
            line.program
        )
    })?;
    let forwarding = forward.then(|| signals::Forwarding::to(child.id(), &blocked));
    drop(blocked);

    if let (Some(secret), Some(mut pipe)) = (stdin, child.stdin.take()) {
        // A child that exits without reading its stdin is reported by its exit code.
        let _ = pipe.write_all(secret.expose().as_bytes());
    }
    let echo = matches!(capture, Capture::Stream | Capture::Stdout);
    let stderr = child.stderr.take().expect("stderr is piped");
    let tail = std::thread::spawn(move || read_lines(stderr, echo));
    let mut stdout = Vec::new();
    if let Some(mut pipe) = child.stdout.take() {
        // Read to the end whatever happens, so the child never meets a closed pipe.
        let _ = pipe.read_to_end(&mut stdout);
    }
    let status = child.wait().context("waiting for the command")?;
    drop(forwarding);
    let stderr_tail: Vec<String> = tail.join().unwrap_or_default().into();
    use std::os::unix::process::ExitStatusExt;
    Ok(Output {
        code: status
            .code()
            .unwrap_or_else(|| 128 + status.signal().unwrap_or(0)),
        stdout: String::from_utf8_lossy(&stdout).into_owned(),
        stderr_tail,
    })
}

/// Reads every line as bytes until EOF, echoing to stderr if asked, and keeps the last ones.
fn read_lines(pipe: impl Read, echo: bool) -> VecDeque<String> {
    let mut reader = BufReader::new(pipe);
    let mut tail = VecDeque::new();
    let mut buf = Vec::new();
    loop {
        buf.clear();
        match reader.read_until(b'\n', &mut buf) {
            Ok(0) => break,
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            // The pipe broke: nothing more will come, and the child is waited for anyway.
            Err(_) => break,
        }
        let line = String::from_utf8_lossy(&buf);
        let line = line.trim_end_matches(['\n', '\r']);
        if echo {
            eprintln!("{line}");
        }
        if tail.len() == TAIL_LINES {
            tail.pop_front();
        }
        tail.push_back(line.to_string());
    }
    tail
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cmdline::CmdLine;

    #[test]
    fn odd_bytes_do_not_kill_the_child() {
        // A Latin-1 byte, then more output than a pipe buffer holds: a reader that stopped at
        // the first invalid line would leave the child to die of SIGPIPE.
        let sh = Shell::new().unwrap();
        let script = "printf 'caf\\351\\n' >&2; i=0; while [ $i -lt 3000 ]; do \
                      echo \"line $i of filler text to fill the pipe buffer\" >&2; i=$((i+1)); done; \
                      printf 'caf\\351 stdout\\n'; exit 3";
        let line = CmdLine::new("sh").args(["-c", script]).plain().unwrap();
        let out = run(&sh, &line, None, Capture::Quiet).unwrap();
        assert_eq!(out.code, 3, "the child ran to its own exit code");
        assert_eq!(out.stdout, "caf\u{fffd} stdout\n");
        assert_eq!(out.stderr_tail.len(), TAIL_LINES);
        assert!(out.stderr_tail.last().unwrap().contains("line 2999"));
    }

    #[test]
    fn secrets_go_over_stdin() {
        let sh = Shell::new().unwrap();
        let line = CmdLine::new("sh")
            .args(["-c", "read x; [ \"$x\" = s3cret ] && echo ok"])
            .plain()
            .unwrap();
        let secret = Secret::new("s3cret\n".into());
        let out = run(&sh, &line, Some(&secret), Capture::Quiet).unwrap();
        assert_eq!((out.code, out.stdout.as_str()), (0, "ok\n"));
    }
}
