//! Retry policy: which failures are worth another try, decided from structured evidence in a
//! command's error output (HTTP status lines, registry error codes, connection errors), never
//! from a bare number that a progress line such as `#8 0.503` may contain.

use std::time::{Duration, Instant};

use anyhow::{Result, bail};

/// Tries of a retryable step, the first included.
pub const TRIES: u32 = 3;

/// The one backoff: [`TRIES`] tries, the wait doubling from `first`, cut short by a signal.
/// `run` answers its result and whether a failure is worth another try.
pub fn with_backoff<T>(first: Duration, mut run: impl FnMut() -> (Result<T>, bool)) -> Result<T> {
    let mut wait = first;
    for n in 1.. {
        let (result, transient) = run();
        if !transient || n == TRIES || crate::signals::received().is_some() {
            return result;
        }
        pause(wait)?;
        wait *= 2;
    }
    unreachable!("the loop returns by the last try")
}

/// Sleeps, waking early to stop when a signal arrives.
pub fn pause(total: Duration) -> Result<()> {
    let until = Instant::now() + total;
    while Instant::now() < until {
        if let Some(sig) = crate::signals::received() {
            bail!("interrupted ({}) while waiting", crate::signals::name(sig));
        }
        std::thread::sleep(Duration::from_millis(50).min(total));
    }
    Ok(())
}

/// What a failed command's error output says about the failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// The reference is not in the registry: an answer, not an error.
    NotFound,
    /// Credentials or permissions: another try cannot help.
    Auth,
    /// The network or the server hiccuped: another try may succeed.
    Transient,
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

const AUTH_ERRORS: [&str; 5] = [
    "unauthorized",
    "denied",
    "authentication required",
    "forbidden",
    "no basic auth credentials",
];

const NOT_FOUND: [&str; 3] = [": not found", "manifest unknown", "name unknown"];

pub fn classify(text: &str) -> Failure {
    let lower = text.to_ascii_lowercase();
    if NOT_FOUND.iter().any(|p| lower.contains(p)) {
        return Failure::NotFound;
    }
    if AUTH_ERRORS.iter().any(|p| lower.contains(p)) || http_status(&lower) == Some(401) {
        return Failure::Auth;
    }
    if CONNECTION_ERRORS.iter().any(|p| lower.contains(p))
        || TRANSIENT_CODES.iter().any(|c| text.contains(c))
        || http_status(&lower).is_some_and(|s| matches!(s, 429 | 500 | 502 | 503 | 504))
    {
        return Failure::Transient;
    }
    Failure::Permanent
}

/// An HTTP status named as one: `status: 503`, `status code 503`, `HTTP 503`, `HTTP/1.1 503`,
/// `unexpected status: 503 Service Unavailable`, or `503 Service Unavailable` with its reason.
fn http_status(lower: &str) -> Option<u16> {
    let words: Vec<&str> = lower
        .split(|c: char| c.is_whitespace() || ",;()".contains(c))
        .filter(|w| !w.is_empty())
        .collect();
    words.iter().enumerate().find_map(|(i, word)| {
        let status = word.parse().ok().filter(|s| (100..600).contains(s))?;
        let before = if i > 0 { words[i - 1] } else { "" };
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
        (named || reason).then_some(status)
    })
}

/// A command that exited non-zero, with what its error output says.
#[derive(Debug)]
pub struct Failed {
    pub line: String,
    pub code: i32,
    pub tail: String,
    pub failure: Failure,
}

impl Failed {
    pub fn new(line: &crate::cmdline::Resolved, code: i32, stderr_tail: &[String]) -> Failed {
        let tail = stderr_tail.join("\n");
        Failed {
            line: line.to_string(),
            code,
            failure: classify(&tail),
            tail,
        }
    }
}

impl std::fmt::Display for Failed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (line, code, tail) = (&self.line, self.code, &self.tail);
        write!(f, "`{line}` exited with {code}:\n{tail}")
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
            (
                "AccessDeniedException: not authorized to perform ecr:PutImage",
                Auth,
            ),
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
}
