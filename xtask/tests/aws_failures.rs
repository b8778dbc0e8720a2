//! First contact with AWS: every class of AWS failure, produced for real with no network and
//! no AWS, through the real xtask binary. Each test asserts the one-line cause, the fix, the
//! exit status, that the run stopped at the failed step with no command run (no docker, no
//! terraform), and that the message stays short without `-v`.
//!
//! The credentials cases use the settings as they ship (`--env prod`) with an empty HOME and
//! shared files in a temp dir; the network cases a settings copy whose region does not exist,
//! a closed loopback port, or a proxy on loopback; the AWS answers come from a stand-in
//! endpoint on loopback (a local-stack environment with `XTASK_LOCAL_STACK=external`, so
//! xtask uses it as it is and never touches the shared stack). Every run starts from an
//! empty environment (only PATH), so the machine's own AWS or proxy settings never leak in.

mod support;

use std::{
    io::{Read, Write},
    net::{TcpListener, TcpStream},
    path::PathBuf,
    sync::{Arc, Mutex},
    time::{Duration, SystemTime},
};

use serde_json::Value;

/// The most a message may take without `-v`: the step, the one-line cause and the fix.
const SHORT: usize = 300;

/// A scratch directory of this test process: short (messages quote its paths), removed
/// when the test ends.
struct Scratch(PathBuf);

impl Scratch {
    fn new(name: &str) -> Scratch {
        let dir = std::env::temp_dir().join(format!("xtask-aws-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("home")).unwrap();
        Scratch(dir)
    }
    fn home(&self) -> PathBuf {
        self.0.join("home")
    }
    fn write(&self, name: &str, text: &str) -> PathBuf {
        let path = self.0.join(name);
        std::fs::write(&path, text).unwrap();
        path
    }
    /// The shipped settings with the first occurrence of each `old` replaced by `new` (the
    /// first environment that has it: `local` before `local-prod`).
    fn settings(&self, edits: &[(&str, &str)]) -> PathBuf {
        let mut text =
            std::fs::read_to_string(support::root().join("infrastructure/environments.toml"))
                .unwrap();
        for (old, new) in edits {
            assert!(text.contains(old), "{old:?} in the settings");
            text = text.replacen(old, new, 1);
        }
        self.write("environments.toml", &text)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

struct Run {
    code: Option<i32>,
    json: Value,
    stderr: String,
}

/// `cargo xtask deploy --env ENV --json` with only PATH, HOME and `vars` in its environment.
fn deploy(env: &str, scratch: &Scratch, config: Option<&PathBuf>, vars: &[(&str, &str)]) -> Run {
    xtask(&["deploy", "--env", env, "--json"], scratch, config, vars)
}

fn xtask(args: &[&str], scratch: &Scratch, config: Option<&PathBuf>, vars: &[(&str, &str)]) -> Run {
    let mut cmd = support::xtask();
    cmd.env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap())
        .env("HOME", scratch.home())
        .args(args)
        .envs(vars.iter().copied())
        .stdin(std::process::Stdio::null());
    if let Some(config) = config {
        cmd.arg("--config").arg(config);
    }
    let out = cmd.output().unwrap();
    Run {
        code: out.status.code(),
        json: serde_json::from_slice(&out.stdout).unwrap_or(Value::Null),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

impl Run {
    /// What the user reads at the end: from the last `error:` line on.
    fn message(&self) -> &str {
        let start = self.stderr.rfind("\nerror: ").map_or(0, |i| i + 1);
        &self.stderr[start..]
    }

    fn line(&self, prefix: &str) -> &str {
        self.message()
            .lines()
            .find_map(|l| l.trim_start().strip_prefix(prefix))
            .unwrap_or_else(|| panic!("no `{prefix}` line in\n{}", self.stderr))
    }

    /// The cause line, after the call that failed.
    fn cause(&self) -> &str {
        self.line("caused by: ")
    }

    fn fix(&self) -> &str {
        self.line("fix: ")
    }

    /// Failed with exit 1 at `step` (no step after it), with no command run, and a short
    /// message without the SDK's Debug output.
    fn assert_stopped_at(&self, step: &str) {
        assert_eq!(self.code, Some(1), "{}", self.stderr);
        assert_eq!(self.json["status"], "failed", "{}", self.json);
        let steps = self.json["steps"]
            .as_array()
            .expect("the result lists its steps");
        let titles: Vec<&str> = steps.iter().filter_map(|s| s["title"].as_str()).collect();
        let last = steps.last().expect("a step ran");
        assert!(
            last["title"].as_str().unwrap_or_default().starts_with(step),
            "the run went on after `{step}`: {titles:?}"
        );
        assert_eq!(last["outcome"], "failed", "{titles:?}");
        let commands = self.json["commands"]
            .as_array()
            .expect("the result lists commands");
        assert!(commands.is_empty(), "commands ran: {commands:?}");
        let message = self.message();
        assert!(
            message.chars().count() < SHORT,
            "{} characters without -v:\n{message}",
            message.chars().count()
        );
        for debug in ["DispatchFailure", "SdkBody", "ConnectorError", "Some("] {
            assert!(!message.contains(debug), "Debug output in\n{message}");
        }
        eprintln!("{message}");
    }
}

/// A local-stack environment of the shipped settings whose AWS endpoint is `url`.
fn local_at(scratch: &Scratch, url: &str) -> PathBuf {
    scratch.settings(&[(
        "endpoint_url = \"http://127.0.0.1:4566\"",
        &format!("endpoint_url = \"{url}\""),
    )])
}

/// A loopback port where nothing listens.
fn closed_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A stand-in on loopback: answers each request with `answer(operation)`, one request per
/// connection, and records the operations it saw (`GetCallerIdentity`, `CONNECT`, …).
struct StandIn {
    url: String,
    seen: Arc<Mutex<Vec<String>>>,
}

impl StandIn {
    fn start(answer: fn(&str) -> Vec<u8>) -> StandIn {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let seen = Arc::new(Mutex::new(Vec::new()));
        let log = seen.clone();
        // The thread ends with the test process.
        std::thread::spawn(move || {
            for client in listener.incoming().flatten() {
                let log = log.clone();
                std::thread::spawn(move || serve(client, answer, &log));
            }
        });
        StandIn { url, seen }
    }
    fn seen(&self, operation: &str) -> usize {
        let seen = self.seen.lock().unwrap();
        seen.iter().filter(|o| *o == operation).count()
    }
}

fn serve(mut client: TcpStream, answer: fn(&str) -> Vec<u8>, log: &Mutex<Vec<String>>) {
    client
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
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
    let head = String::from_utf8_lossy(&buf[..head_end]).to_ascii_lowercase();
    let header = |name: &str| {
        head.lines()
            .find_map(|l| l.strip_prefix(&format!("{name}:")).map(str::trim))
            .map(String::from)
    };
    let length: usize = header("content-length")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    while buf.len() < head_end + length {
        match client.read(&mut chunk) {
            Ok(0) | Err(_) => return,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
    let body = String::from_utf8_lossy(&buf[head_end..]);
    // ECR names the operation in X-Amz-Target, STS (query protocol) in the body.
    let operation = if head.starts_with("connect ") {
        "CONNECT".to_string()
    } else if let Some(target) = header("x-amz-target") {
        target.rsplit('.').next().unwrap_or_default().to_string()
    } else if let Some(action) = body.split('&').find_map(|p| p.strip_prefix("Action=")) {
        action.to_string()
    } else {
        head.lines().next().unwrap_or_default().to_string()
    };
    // Operation names keep their case: match them case-insensitively, record them as AWS
    // spells them.
    let operation = ["GetCallerIdentity", "GetAuthorizationToken", "CONNECT"]
        .into_iter()
        .find(|o| o.eq_ignore_ascii_case(&operation))
        .map_or(operation, String::from);
    log.lock().unwrap().push(operation.clone());
    let answer = answer(&operation);
    let _ = client.write_all(&answer);
    if operation == "CONNECT" && answer.starts_with(b"HTTP/1.1 200") {
        // Behind the tunnel, a plain HTTP server where the client expects TLS: it reads
        // the ClientHello and answers in HTTP.
        let _ = client.read(&mut chunk);
        let _ = client.write_all(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n");
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn http(status: &str, headers: &[(&str, &str)], body: &str) -> Vec<u8> {
    let mut out = format!("HTTP/1.1 {status}\r\nContent-Length: {}\r\n", body.len());
    for (k, v) in headers {
        out.push_str(&format!("{k}: {v}\r\n"));
    }
    out.push_str("Connection: close\r\n\r\n");
    out.push_str(body);
    out.into_bytes()
}

/// STS's answer for the local environment's account.
fn caller_identity() -> Vec<u8> {
    http(
        "200 OK",
        &[("Content-Type", "text/xml")],
        "<GetCallerIdentityResponse xmlns=\"https://sts.amazonaws.com/doc/2011-06-15/\">\
         <GetCallerIdentityResult><Arn>arn:aws:sts::123456789012:assumed-role/ci/job</Arn>\
         <UserId>AROAEXAMPLE:job</UserId><Account>123456789012</Account>\
         </GetCallerIdentityResult><ResponseMetadata><RequestId>1</RequestId>\
         </ResponseMetadata></GetCallerIdentityResponse>",
    )
}

/// An STS (query protocol) error.
fn sts_error(code: &str, message: &str, extra: &[(&str, &str)]) -> Vec<u8> {
    let mut headers = vec![("Content-Type", "text/xml")];
    headers.extend_from_slice(extra);
    http(
        "403 Forbidden",
        &headers,
        &format!(
            "<ErrorResponse xmlns=\"https://sts.amazonaws.com/doc/2011-06-15/\"><Error>\
             <Type>Sender</Type><Code>{code}</Code><Message>{message}</Message></Error>\
             <RequestId>1</RequestId></ErrorResponse>"
        ),
    )
}

/// An ECR (JSON protocol) error.
fn ecr_error(status: &str, code: &str, message: &str) -> Vec<u8> {
    http(
        status,
        &[
            ("Content-Type", "application/x-amz-json-1.1"),
            ("x-amzn-ErrorType", code),
        ],
        &format!(r#"{{"__type":"{code}","message":"{message}"}}"#),
    )
}

/// No request must reach the stand-in beyond the ones a test expects.
fn unexpected() -> Vec<u8> {
    http("500 Internal Server Error", &[], "unexpected request")
}

/// A dummy key pair for the environments that use the standard chain.
const KEYS: [(&str, &str); 2] = [
    ("AWS_ACCESS_KEY_ID", "AKIAIOSFODNN7EXAMPLE"),
    (
        "AWS_SECRET_ACCESS_KEY",
        "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
    ),
];

// ------------------------------------------------------------------------------------------

#[test]
fn no_credentials_names_every_source_tried() {
    let scratch = Scratch::new("nocreds");
    let run = deploy(
        "prod",
        &scratch,
        None,
        &[("AWS_EC2_METADATA_DISABLED", "true")],
    );
    run.assert_stopped_at("account and region check");
    assert_eq!(
        run.cause(),
        "sts GetCallerIdentity failed: no credentials in the environment, ~/.aws/config, \
         ~/.aws/credentials, web identity, container or IMDS (disabled)"
    );
    assert_eq!(
        run.fix(),
        "set AWS_PROFILE (after `aws configure sso`), or AWS_ACCESS_KEY_ID and \
         AWS_SECRET_ACCESS_KEY"
    );

    // `-v` adds the SDK's own chain, one message a line, after the same cause and fix.
    let verbose = xtask(
        &["deploy", "--env", "prod", "--json", "-v"],
        &scratch,
        None,
        &[("AWS_EC2_METADATA_DISABLED", "true")],
    );
    assert_eq!(verbose.cause(), run.cause());
    let sdk: Vec<&str> = verbose
        .message()
        .lines()
        .filter_map(|l| l.strip_prefix("  sdk: "))
        .collect();
    assert_eq!(
        sdk.first(),
        Some(&"dispatch failure"),
        "{}",
        verbose.message()
    );
    assert!(
        sdk.iter()
            .any(|l| l.contains("no providers in chain provided credentials")),
        "{sdk:?}"
    );
    assert!(
        !verbose.message().contains("DispatchFailure("),
        "{}",
        verbose.message()
    );
}

#[test]
fn a_profile_that_does_not_exist_is_named_with_the_files_read() {
    // Shared files that define other profiles.
    let scratch = Scratch::new("profile");
    let config = scratch.write("config", "[profile dev]\nregion = eu-west-1\n");
    let credentials = scratch.write(
        "credentials",
        "[default]\naws_access_key_id = AKIAIOSFODNN7EXAMPLE\naws_secret_access_key = x\n",
    );
    let (config, credentials) = (
        config.display().to_string(),
        credentials.display().to_string(),
    );
    let run = deploy(
        "prod",
        &scratch,
        None,
        &[
            ("AWS_PROFILE", "nosuch"),
            ("AWS_CONFIG_FILE", &config),
            ("AWS_SHARED_CREDENTIALS_FILE", &credentials),
        ],
    );
    run.assert_stopped_at("account and region check");
    assert_eq!(
        run.cause(),
        format!("profile `nosuch` (AWS_PROFILE) is not in {config} or {credentials}")
    );
    assert_eq!(
        run.fix(),
        "set AWS_PROFILE to one of default, dev, or create it (`aws configure sso --profile nosuch`)"
    );

    // No shared files at all, and IMDS not disabled: the SDK alone would go on to IMDS.
    let empty = Scratch::new("profile-none");
    let run = deploy("prod", &empty, None, &[("AWS_PROFILE", "nosuch")]);
    run.assert_stopped_at("account and region check");
    assert_eq!(
        run.cause(),
        "profile `nosuch` (AWS_PROFILE) is not in ~/.aws/config or ~/.aws/credentials"
    );
    assert!(!run.stderr.contains("IMDS"), "{}", run.stderr);
    assert!(
        run.fix().contains("aws configure sso --profile nosuch"),
        "{}",
        run.fix()
    );
}

#[test]
fn an_sso_profile_without_a_session_says_aws_sso_login() {
    let scratch = Scratch::new("sso");
    let config = scratch.write(
        "config",
        "[profile dev]\nsso_session = corp\nsso_account_id = 222222222222\n\
         sso_role_name = Deploy\nregion = eu-west-1\n\n[sso-session corp]\n\
         sso_start_url = https://example.awsapps.com/start\nsso_region = eu-west-1\n",
    );
    let config = config.display().to_string();
    let run = deploy(
        "prod",
        &scratch,
        None,
        &[
            ("AWS_PROFILE", "dev"),
            ("AWS_CONFIG_FILE", &config),
            ("AWS_EC2_METADATA_DISABLED", "true"),
        ],
    );
    run.assert_stopped_at("account and region check");
    assert_eq!(
        run.cause(),
        "sts GetCallerIdentity failed: the SSO session of profile `dev` is missing or has expired"
    );
    assert_eq!(
        run.fix(),
        "run `aws sso login --profile dev`, then run this command again"
    );
}

#[test]
fn an_unresolvable_endpoint_is_a_dns_failure_not_a_credentials_one() {
    let scratch = Scratch::new("dns");
    // A region of valid form that does not exist: its endpoints never resolve. Its source
    // of promotions moves with it (promotion stays within one region).
    let config = scratch.settings(&[
        (
            "account_id = \"111111111111\"\nregion = \"eu-west-1\"",
            "account_id = \"111111111111\"\nregion = \"xx-nowhere-1\"",
        ),
        (
            "account_id = \"222222222222\"\nregion = \"eu-west-1\"",
            "account_id = \"222222222222\"\nregion = \"xx-nowhere-1\"",
        ),
    ]);
    let run = deploy("prod", &scratch, Some(&config), &KEYS);
    run.assert_stopped_at("account and region check");
    assert_eq!(
        run.cause(),
        "sts GetCallerIdentity failed: cannot reach sts.xx-nowhere-1.amazonaws.com: the name \
         does not resolve (DNS)"
    );
    assert_eq!(
        run.fix(),
        "check this machine's DNS and network, and that region `xx-nowhere-1` exists (no \
         proxy variable set)"
    );
    assert!(!run.message().contains("credentials"), "{}", run.message());
}

#[test]
fn an_endpoint_override_on_a_closed_port_is_named_as_such() {
    let scratch = Scratch::new("closed");
    let url = format!("http://127.0.0.1:{}", closed_port());
    let config = local_at(&scratch, &url);
    let run = deploy(
        "local",
        &scratch,
        Some(&config),
        &[("XTASK_LOCAL_STACK", "external")],
    );
    run.assert_stopped_at("account and region check");
    assert_eq!(
        run.cause(),
        format!(
            "sts GetCallerIdentity failed: the endpoint override {url} (`endpoint_url` of \
             `local`) is unreachable: connection refused"
        )
    );
    assert_eq!(
        run.fix(),
        "start the local stack (`cargo xtask local up`), or fix `endpoint_url` of `local` in \
         the settings"
    );
    assert!(!run.message().contains("credentials"), "{}", run.message());
}

#[test]
fn a_proxy_that_refuses_fails_or_breaks_tls_is_named_with_the_proxy_variables() {
    let scratch = Scratch::new("proxy");
    let port = closed_port();
    // A proxy with credentials in its URL: they never show.
    let proxy = format!("http://user:hunter2@127.0.0.1:{port}");
    let mut vars = KEYS.to_vec();
    vars.extend([("HTTPS_PROXY", proxy.as_str()), ("NO_PROXY", "localhost")]);
    let run = deploy("prod", &scratch, None, &vars);
    run.assert_stopped_at("account and region check");
    assert_eq!(
        run.cause(),
        format!(
            "sts GetCallerIdentity failed: cannot reach sts.eu-west-1.amazonaws.com through \
             the proxy http://127.0.0.1:{port}: connection refused"
        )
    );
    assert!(
        run.fix().ends_with(&format!(
            "(set: HTTPS_PROXY=http://127.0.0.1:{port}, NO_PROXY=localhost)"
        )),
        "{}",
        run.fix()
    );
    assert!(!run.stderr.contains("hunter2"), "{}", run.stderr);

    // A proxy that refuses the tunnel.
    let refusing = StandIn::start(|_| http("403 Forbidden", &[], ""));
    let vars = [KEYS[0], KEYS[1], ("https_proxy", refusing.url.as_str())];
    let run = deploy("prod", &scratch, None, &vars);
    run.assert_stopped_at("account and region check");
    assert!(
        run.cause().contains(&format!(
            "through the proxy {}: the proxy refused the tunnel (unsuccessful)",
            refusing.url
        )),
        "{}",
        run.cause()
    );
    assert!(
        run.fix()
            .contains(&format!("(set: https_proxy={})", refusing.url))
    );
    assert!(refusing.seen("CONNECT") >= 1);

    // A proxy that opens the tunnel to something that does not speak TLS.
    let garbage = StandIn::start(|_| b"HTTP/1.1 200 Connection established\r\n\r\n".to_vec());
    let vars = [KEYS[0], KEYS[1], ("HTTPS_PROXY", garbage.url.as_str())];
    let run = deploy("prod", &scratch, None, &vars);
    run.assert_stopped_at("account and region check");
    assert!(
        run.cause().starts_with(
            "sts GetCallerIdentity failed: TLS with sts.eu-west-1.amazonaws.com failed: "
        ),
        "{}",
        run.cause()
    );
    assert!(run.fix().contains("trust store"), "{}", run.fix());
    assert!(
        run.fix().contains(&format!("HTTPS_PROXY={}", garbage.url)),
        "{}",
        run.fix()
    );
}

/// The stand-in answers STS with `answer`; the run stops at the identity check.
fn identity_refused(name: &str, answer: fn(&str) -> Vec<u8>) -> (Run, StandIn) {
    let scratch = Scratch::new(name);
    let stand_in = StandIn::start(answer);
    let config = local_at(&scratch, &stand_in.url);
    let run = deploy(
        "local",
        &scratch,
        Some(&config),
        &[("XTASK_LOCAL_STACK", "external")],
    );
    run.assert_stopped_at("account and region check");
    assert!(stand_in.seen("GetCallerIdentity") >= 1);
    (run, stand_in)
}

#[test]
fn an_expired_token_says_renew_it() {
    let (run, _) = identity_refused("expired", |op| match op {
        "GetCallerIdentity" => sts_error(
            "ExpiredToken",
            "The security token included in the request is expired",
            &[],
        ),
        _ => unexpected(),
    });
    assert_eq!(
        run.cause(),
        "sts GetCallerIdentity failed: ExpiredToken: the session credentials have expired"
    );
    assert!(
        run.fix().starts_with("renew them (`aws sso login`"),
        "{}",
        run.fix()
    );
}

#[test]
fn an_unknown_access_key_says_so() {
    let (run, _) = identity_refused("badkey", |op| match op {
        "GetCallerIdentity" => sts_error(
            "InvalidClientTokenId",
            "The security token included in the request is invalid.",
            &[],
        ),
        _ => unexpected(),
    });
    assert_eq!(
        run.cause(),
        "sts GetCallerIdentity failed: InvalidClientTokenId: AWS does not know this access key \
         id (deleted, inactive, or a typo)"
    );
    assert!(run.fix().contains("AWS_ACCESS_KEY_ID"), "{}", run.fix());
}

#[test]
fn a_wrong_secret_key_is_a_signature_mismatch() {
    let (run, _) = identity_refused("signature", |op| match op {
        "GetCallerIdentity" => sts_error(
            "SignatureDoesNotMatch",
            "The request signature we calculated does not match the signature you provided. \
             Check your AWS Secret Access Key and signing method.",
            &[],
        ),
        _ => unexpected(),
    });
    assert_eq!(
        run.cause(),
        "sts GetCallerIdentity failed: SignatureDoesNotMatch: the secret access key does not \
         belong to the access key id"
    );
    assert!(run.fix().contains("AWS_SECRET_ACCESS_KEY"), "{}", run.fix());
}

#[test]
fn clock_skew_gives_the_local_and_the_server_time() {
    let (run, _) = identity_refused("skew", |op| match op {
        "GetCallerIdentity" => {
            // The server's clock, two hours ahead of this machine's.
            let ahead = SystemTime::now() + Duration::from_secs(2 * 3600);
            let date = http_date(ahead);
            sts_error(
                "RequestTimeTooSkewed",
                "The difference between the request time and the current time is too large.",
                &[("Date", &date)],
            )
        }
        _ => unexpected(),
    });
    let cause = run.cause();
    assert!(
        cause.starts_with(
            "sts GetCallerIdentity failed: RequestTimeTooSkewed: this machine's clock says "
        ),
        "{cause}"
    );
    // Both times, in whole seconds, and how far apart they are (a second may tick between
    // the answer and the message).
    assert!(
        cause.contains(", AWS's ")
            && (cause.ends_with("(2h 0m apart)") || cause.ends_with("(1h 59m apart)")),
        "{cause}"
    );
    assert!(run.fix().contains("set the clock right"), "{}", run.fix());
}

/// `Date`'s format (RFC 7231 IMF-fixdate).
fn http_date(time: SystemTime) -> String {
    use aws_smithy_types::date_time::{DateTime, Format};
    DateTime::from(time).fmt(Format::HttpDate).unwrap()
}

/// The stand-in knows the caller and answers ECR GetAuthorizationToken with `answer`: the
/// run stops at the registry login, before `docker login`.
fn login_refused(name: &str, answer: fn(&str) -> Vec<u8>) -> (Run, StandIn) {
    let scratch = Scratch::new(name);
    let stand_in = StandIn::start(answer);
    let config = local_at(&scratch, &stand_in.url);
    let run = deploy(
        "local",
        &scratch,
        Some(&config),
        &[("XTASK_LOCAL_STACK", "external")],
    );
    run.assert_stopped_at("registry login");
    (run, stand_in)
}

#[test]
fn access_denied_names_the_action_and_the_principal() {
    let (run, _) = login_refused("denied", |op| match op {
        "GetCallerIdentity" => caller_identity(),
        "GetAuthorizationToken" => ecr_error(
            "400 Bad Request",
            "AccessDeniedException",
            "User: arn:aws:sts::123456789012:assumed-role/ci/job is not authorized to perform: \
             ecr:GetAuthorizationToken on resource: * because no identity-based policy allows \
             the ecr:GetAuthorizationToken action",
        ),
        _ => unexpected(),
    });
    assert_eq!(
        run.cause(),
        "ecr GetAuthorizationToken failed: AccessDeniedException: \
         arn:aws:sts::123456789012:assumed-role/ci/job may not call ecr:GetAuthorizationToken"
    );
    assert!(
        run.fix().starts_with("allow it in that principal's policy"),
        "{}",
        run.fix()
    );
}

#[test]
fn throttling_is_retried_by_the_sdk_then_named() {
    let (run, stand_in) = login_refused("throttle", |op| match op {
        "GetCallerIdentity" => caller_identity(),
        "GetAuthorizationToken" => ecr_error(
            "503 Service Unavailable",
            "ThrottlingException",
            "Rate exceeded",
        ),
        _ => unexpected(),
    });
    assert_eq!(
        run.cause(),
        "ecr GetAuthorizationToken failed: ThrottlingException: Rate exceeded (throttled even \
         after the SDK's retries)"
    );
    assert!(
        run.fix().starts_with("wait a minute and run it again"),
        "{}",
        run.fix()
    );
    // The SDK's standard retry mode: three attempts in all.
    assert_eq!(stand_in.seen("GetAuthorizationToken"), 3);
}

/// Credentials of another account than the environment's `account_id` (on the local stack
/// the settings choose the emulator account, so the stand-in answers for another one): the
/// guard refuses before any command, naming both accounts and the setting, and in GitHub
/// Actions as an `::error::` annotation.
#[test]
fn credentials_of_another_account_are_refused_before_any_command() {
    let scratch = Scratch::new("account");
    let stand_in = StandIn::start(|op| match op {
        "GetCallerIdentity" => http(
            "200 OK",
            &[("Content-Type", "text/xml")],
            "<GetCallerIdentityResponse xmlns=\"https://sts.amazonaws.com/doc/2011-06-15/\">\
             <GetCallerIdentityResult><Arn>arn:aws:sts::999999999999:assumed-role/dev/me</Arn>\
             <UserId>AROAEXAMPLE:me</UserId><Account>999999999999</Account>\
             </GetCallerIdentityResult><ResponseMetadata><RequestId>1</RequestId>\
             </ResponseMetadata></GetCallerIdentityResponse>",
        ),
        _ => unexpected(),
    });
    let config = local_at(&scratch, &stand_in.url);
    let external = [("XTASK_LOCAL_STACK", "external")];
    for command in ["image", "deploy"] {
        let run = xtask(
            &[command, "--env", "local", "--json"],
            &scratch,
            Some(&config),
            &external,
        );
        run.assert_stopped_at("account and region check");
        let error = run.json["error"].as_str().unwrap_or_default();
        for needle in ["999999999999", "123456789012", "`account_id`"] {
            assert!(error.contains(needle), "{command}: {needle} not in {error}");
        }
    }
    let actions = [
        ("XTASK_LOCAL_STACK", "external"),
        ("GITHUB_ACTIONS", "true"),
    ];
    let run = xtask(
        &["image", "--env", "local"],
        &scratch,
        Some(&config),
        &actions,
    );
    assert_eq!(run.code, Some(1));
    assert!(
        run.stderr
            .lines()
            .any(|l| l.starts_with("::error::") && l.contains("account_id")),
        "{}",
        run.stderr
    );
    assert_eq!(
        stand_in.seen("GetAuthorizationToken"),
        0,
        "an ECR call was made"
    );
}
