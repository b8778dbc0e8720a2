//! Retry policy: which failures are worth another try, decided from structured evidence in a
//! command's error output (HTTP status lines, registry error codes, connection errors), never
//! from a bare number that a progress line such as `#8 0.503` may contain.

use std::time::Duration;

use anyhow::Result;
use xshell::Shell;

use super::exec::{self, Capture, Output};
use super::signals;
use crate::cmdline::CmdLine;
use crate::report::Report;

/// Tries of a retryable step, the first included.
pub const TRIES: u32 = 3;

/// What a failed command's error output says about the failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// The reference is not in the registry: an answer, not an error.
    NotFound,
    /// Credentials or permissions: another try cannot help.
    Auth,
    /// The network or the server hiccuped: another try may succeed.
    Transient,
    /// Anything else, such as a failing build step.
    Permanent,
}

/// Distribution-spec and ECR error codes that mean "try again".
const TRANSIENT_CODES: [&str; 6] = [
    "TOOMANYREQUESTS",
    "BLOB_UPLOAD_UNKNOWN",
    "UNAVAILABLE",
    "ThrottlingException",
    "ServiceUnavailableException",
    "RequestTimeout",
];

/// Connection-level errors as Go's net/http and curl print them.
const CONNECTION_ERRORS: [&str; 8] = [
    "connection refused",
    "connection reset by peer",
    "i/o timeout",
    "tls handshake timeout",
    "unexpected eof",
    "broken pipe",
    "context deadline exceeded",
    "server closed idle connection",
];

const AUTH_ERRORS: [&str; 6] = [
    "unauthorized",
    "denied",
    "authentication required",
    "forbidden",
    "no basic auth credentials",
    "accessdenied",
];

const NOT_FOUND: [&str; 3] = [": not found", "manifest unknown", "name unknown"];

/// HTTP statuses worth another try.
const RETRY_STATUSES: [u16; 5] = [429, 500, 502, 503, 504];

pub fn classify(text: &str) -> Failure {
    let lower = text.to_ascii_lowercase();
    if NOT_FOUND.iter().any(|p| lower.contains(p)) {
        return Failure::NotFound;
    }
    if AUTH_ERRORS.iter().any(|p| lower.contains(p)) || http_status(&lower) == Some(401) {
        return Failure::Auth;
    }
    let transient = CONNECTION_ERRORS.iter().any(|p| lower.contains(p))
        || TRANSIENT_CODES.iter().any(|c| text.contains(c))
        || http_status(&lower).is_some_and(|s| RETRY_STATUSES.contains(&s));
    if transient {
        Failure::Transient
    } else {
        Failure::Permanent
    }
}

/// An HTTP status named as one: `status: 503`, `status code 503`, `HTTP 503`, `HTTP/1.1 503`,
/// `unexpected status: 503 Service Unavailable`, or `503 Service Unavailable` with its reason.
fn http_status(lower: &str) -> Option<u16> {
    let words: Vec<&str> = lower
        .split(|c: char| c.is_whitespace() || c == ',' || c == ';' || c == '(' || c == ')')
        .filter(|w| !w.is_empty())
        .collect();
    for (i, word) in words.iter().enumerate() {
        let Ok(status) = word.parse::<u16>() else {
            continue;
        };
        if !(100..600).contains(&status) {
            continue;
        }
        let before = i.checked_sub(1).map(|j| words[j]).unwrap_or("");
        let after = words.get(i + 1).copied().unwrap_or("");
        let named = matches!(before, "status:" | "status" | "code" | "code:" | "http")
            || before.starts_with("http/");
        let reason = matches!(
            (status, after),
            (429, "too")
                | (500, "internal")
                | (502, "bad")
                | (503, "service")
                | (504, "gateway")
                | (401, "unauthorized")
        );
        if named || reason {
            return Some(status);
        }
    }
    None
}

/// Runs `line`; transient failures are tried again, up to `tries`, with doubling waits.
pub fn run(
    sh: &Shell,
    report: &mut Report,
    line: &CmdLine,
    tries: u32,
    backoff: Duration,
    capture: Capture,
) -> Result<Output> {
    let mut attempt = 1;
    loop {
        report.detail(&format!("$ {line}"));
        let out = exec::run(sh, line, None, capture, report.json)?;
        if out.code == 0 {
            return Ok(out);
        }
        let tail = out.stderr_tail.join("\n");
        let failure = classify(&tail);
        let error = anyhow::Error::new(Failed {
            line: line.to_string(),
            code: out.code,
            tail,
            failure,
        });
        if attempt >= tries || failure != Failure::Transient || signals::received().is_some() {
            return Err(error);
        }
        let wait = backoff * 2u32.pow(attempt - 1);
        report.warn(&format!(
            "attempt {attempt}/{tries} failed with a transient error; retrying in {:.1}s",
            wait.as_secs_f64()
        ));
        std::thread::sleep(wait);
        attempt += 1;
    }
}

/// A command that exited non-zero, with what its error output says.
#[derive(Debug)]
pub struct Failed {
    pub line: String,
    pub code: i32,
    pub tail: String,
    pub failure: Failure,
}

impl std::fmt::Display for Failed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "`{}` exited with {}:\n{}",
            self.line, self.code, self.tail
        )
    }
}

impl std::error::Error for Failed {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_are_classified_on_evidence() {
        use Failure::*;
        let cases = [
            (
                "dial tcp 127.0.0.1:5000: connect: connection refused",
                Transient,
            ),
            (
                "received unexpected HTTP status: 503 Service Unavailable",
                Transient,
            ),
            ("failed to push: unexpected status code 502", Transient),
            (
                "toomanyrequests: Rate exceeded (TOOMANYREQUESTS)",
                Transient,
            ),
            (
                "blob upload unknown to registry BLOB_UPLOAD_UNKNOWN",
                Transient,
            ),
            ("Error: HTTP/1.1 429 Too Many Requests", Transient),
            ("unauthorized: authentication required", Auth),
            ("denied: requested access to the resource is denied", Auth),
            ("invalid reference format", Permanent),
            // buildx progress lines carry timings that look like statuses.
            (
                "#8 0.503 Collecting fastapi==0.115\n#8 ERROR: process \"/bin/sh -c pip install\" did not complete successfully: exit code: 1",
                Permanent,
            ),
            (
                "#12 502.1 done\nERROR: failed to solve: process did not complete successfully: exit code: 2",
                Permanent,
            ),
            ("ERROR: 127.0.0.1:5000/x:src-1: not found", NotFound),
        ];
        for (text, want) in cases {
            assert_eq!(classify(text), want, "{text}");
        }
    }

    /// A command that counts its runs in `counter` and fails with `error` until run `ok_on`.
    fn flaky(counter: &std::path::Path, error: &str, ok_on: u32) -> CmdLine {
        let script = format!(
            "n=$(($(cat {c} 2>/dev/null || echo 0) + 1)); echo $n > {c}; \
             [ $n -ge {ok_on} ] || {{ echo '{error}' >&2; exit 1; }}",
            c = counter.display()
        );
        CmdLine::new("sh").args(["-c", &script])
    }

    #[test]
    fn transient_failures_are_retried_and_others_are_not() {
        let sh = Shell::new().unwrap();
        let mut report = Report::new(false, false);
        let dir = std::env::temp_dir().join(format!("xtask-retry-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let count = |name: &str| -> u32 {
            std::fs::read_to_string(dir.join(name))
                .unwrap()
                .trim()
                .parse()
                .unwrap()
        };
        let fast = Duration::from_millis(1);
        let mut attempt = |name: &str, error: &str, ok_on: u32| {
            run(
                &sh,
                &mut report,
                &flaky(&dir.join(name), error, ok_on),
                TRIES,
                fast,
                Capture::Quiet,
            )
        };

        let err = attempt("a", "dial tcp 127.0.0.1:5000: connection refused", 99).unwrap_err();
        assert_eq!(count("a"), 3, "three tries, then the last error");
        assert!(format!("{err:#}").contains("connection refused"), "{err:#}");

        assert!(attempt("b", "unauthorized: authentication required", 99).is_err());
        assert_eq!(count("b"), 1, "auth errors are not retried");

        assert!(attempt("c", "503 Service Unavailable", 2).is_ok());
        assert_eq!(count("c"), 2);

        let err = attempt(
            "d",
            "#8 0.503 ERROR: process did not complete successfully",
            99,
        )
        .unwrap_err();
        assert_eq!(
            count("d"),
            1,
            "a build failure is not retried for a timing that looks like 503"
        );
        assert_eq!(
            err.downcast_ref::<Failed>().unwrap().failure,
            Failure::Permanent
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
