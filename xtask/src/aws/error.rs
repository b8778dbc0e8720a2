//! The error every AWS call returns: [`classify`] reads what the call saw ([`Seen`]) and what
//! the chain read ([`Setup`]); [`explain`] gives the class's one-line cause and fix. The SDK's
//! own chain is kept for `-v` only.

use std::error::Error as StdError;
use std::fmt;
use std::io::ErrorKind;
use std::time::{SystemTime, UNIX_EPOCH};

use aws_config::imds::client::error::ImdsError;
use aws_credential_types::provider::error::CredentialsError;
use aws_smithy_runtime_api::client::dns::ResolveDnsError;
use aws_smithy_runtime_api::client::result::{ConnectorError, SdkError};
use aws_smithy_runtime_api::http::Response;
use aws_smithy_types::date_time::{DateTime, Format};
use aws_smithy_types::error::metadata::ProvideErrorMetadata;

use super::setup::{Setup, Via, host};

/// What went wrong, one class per cause a user can act on (the texts quote what [`Seen`]
/// holds: the code, the message, the server's clock).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Class {
    NoCredentials,
    MissingProfile,
    SsoLogin,
    Expired,
    UnknownKey,
    Signature,
    ClockSkew,
    AccessDenied,
    /// Still throttled (or unavailable) after the SDK's retries.
    Throttled,
    /// No answer came back.
    Network(Net),
    /// The credentials provider failed another way (credential_process, an assumed role).
    Credentials,
    /// Any other answer from AWS.
    Service,
    Other,
}

/// How a request failed to get an answer (`Tunnel`: the proxy refused to open one).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Net {
    Dns,
    Refused,
    Tls,
    Timeout,
    Tunnel,
    Other,
}

/// What a failed call saw: AWS's code and message, the status and `Date` (the server's
/// clock), whether the SDK's operation timeout ran out, and the error whose sources tell.
#[derive(Default)]
pub struct Seen<'a> {
    pub code: Option<&'a str>,
    pub message: Option<&'a str>,
    pub status: Option<u16>,
    pub date: Option<&'a str>,
    pub timed_out: bool,
    pub error: Option<&'a (dyn StdError + 'static)>,
}

/// An SDK operation's error.
pub trait OpError: ProvideErrorMetadata + StdError + 'static {}
impl<E: ProvideErrorMetadata + StdError + 'static> OpError for E {}

impl<'a> Seen<'a> {
    pub fn sdk<E: OpError>(e: &'a SdkError<E, Response>) -> Seen<'a> {
        let raw = e.raw_response();
        Seen {
            code: e.code(),
            message: e.message(),
            status: raw.map(|r| r.status().as_u16()),
            date: raw.and_then(|r| r.headers().get("date")),
            timed_out: matches!(e, SdkError::TimeoutError(_)),
            error: Some(e),
        }
    }

    pub fn error(e: Dyn<'a>) -> Seen<'a> {
        let error = Some(e);
        Seen {
            error,
            ..Seen::default()
        }
    }
}

type Dyn<'a> = &'a (dyn StdError + 'static);

/// One error and each error after it, looking inside `io::Error`s, whose `source()` skips
/// their payload.
fn chain(top: Dyn<'_>) -> impl Iterator<Item = Dyn<'_>> {
    std::iter::successors(Some(top), |&e| match e.downcast_ref::<std::io::Error>() {
        Some(io) => io.get_ref().map(|inner| inner as Dyn<'_>),
        None => e.source(),
    })
}

/// What happened, from the error code first (AWS answered), then the error's sources.
pub fn classify(seen: &Seen<'_>, setup: &Setup) -> Class {
    if let Some(code) = seen.code {
        let message = seen.message.unwrap_or_default();
        // SigV4 names a signature out of date with the code of a wrong one.
        let stale = message.contains("Signature expired") || message.contains("Signature not yet");
        // Query services (STS, S3) and JSON services (ECR) spell the same condition differently.
        return match code {
            "ExpiredToken" | "ExpiredTokenException" | "TokenRefreshRequired" => Class::Expired,
            "InvalidClientTokenId" | "UnrecognizedClientException" => Class::UnknownKey,
            "InvalidAccessKeyId" | "InvalidToken" => Class::UnknownKey,
            "RequestTimeTooSkewed" | "RequestExpired" | "RequestInTheFuture" => Class::ClockSkew,
            "SignatureDoesNotMatch" | "InvalidSignatureException" if stale => Class::ClockSkew,
            "IncompleteSignature" if stale => Class::ClockSkew,
            "SignatureDoesNotMatch" | "InvalidSignatureException" => Class::Signature,
            "IncompleteSignature" => Class::Signature,
            "AccessDenied" | "AccessDeniedException" => Class::AccessDenied,
            "UnauthorizedOperation" => Class::AccessDenied,
            "Throttling" | "ThrottlingException" | "ThrottledException" => Class::Throttled,
            "TooManyRequestsException" | "RequestLimitExceeded" | "SlowDown" => Class::Throttled,
            "RequestThrottled" | "RequestThrottledException" => Class::Throttled,
            "ServiceUnavailable" | "ServiceUnavailableException" => Class::Throttled,
            _ => Class::Service,
        };
    }
    let errors: Vec<_> = seen.error.into_iter().flat_map(chain).collect();
    let missing = setup.missing_profile();
    if let Some(at) = errors.iter().position(|e| e.is::<CredentialsError>()) {
        // Only the provider's own calls, below it, say whether a connection failed.
        let below = &errors[at + 1..];
        return match errors[at].downcast_ref::<CredentialsError>() {
            Some(CredentialsError::CredentialsNotLoaded(_)) if missing => Class::MissingProfile,
            Some(CredentialsError::CredentialsNotLoaded(_)) => Class::NoCredentials,
            // IMDS answered, but with an error: no other source had credentials either.
            _ if below.iter().any(|e| e.is::<ImdsError>()) => Class::NoCredentials,
            _ => match network(below, false) {
                Some(kind) => Class::Network(kind),
                None if setup.profile.sso => Class::SsoLogin,
                None if missing => Class::MissingProfile,
                None => Class::Credentials,
            },
        };
    }
    match (network(&errors, seen.timed_out), seen.status) {
        (Some(kind), _) => Class::Network(kind),
        (None, Some(429 | 503)) => Class::Throttled,
        (None, Some(300..)) => Class::Service,
        _ => Class::Other,
    }
}

/// A connection that failed: the connector's error and what lies below it. Typed errors
/// where they exist (the connector's timeout, DNS resolver errors, io error kinds), otherwise
/// the fixed messages of hyper-util (`dns error`, `tunnel error: …`) and of the TLS layer.
fn network(errors: &[Dyn<'_>], timed_out: bool) -> Option<Net> {
    if timed_out {
        return Some(Net::Timeout);
    }
    let at = errors.iter().position(|e| e.is::<ConnectorError>())?;
    let connector = errors[at].downcast_ref::<ConnectorError>()?;
    let below = &errors[at..];
    let says = |prefix: &str| below.iter().any(|e| e.to_string().starts_with(prefix));
    let io = below
        .iter()
        .find_map(|e| e.downcast_ref::<std::io::Error>());
    let refused = io.is_some_and(|e| e.kind() == ErrorKind::ConnectionRefused);
    Some(match io.map(std::io::Error::kind) {
        _ if connector.is_timeout() => Net::Timeout,
        _ if says("dns error") || below.iter().any(|e| e.is::<ResolveDnsError>()) => Net::Dns,
        _ if says("tunnel error") && !refused => Net::Tunnel,
        _ if says("TLS handshake failed") => Net::Tls,
        Some(ErrorKind::ConnectionRefused) => Net::Refused,
        Some(ErrorKind::TimedOut) => Net::Timeout,
        Some(_) => Net::Other,
        None if connector.is_io() => Net::Other,
        None => return None,
    })
}

/// Every message, one `key: text` a line. [`explain`] picks a cause and a fix and fills in
/// their `{names}`; `{what}` is the text of the [`Net`] kind.
const TEXTS: &str = "\
no-credentials: no credentials in the environment, {config}, {credentials}, web identity, \
    container or IMDS{imds}
ci-credentials: give the job aws-actions/configure-aws-credentials (and `id-token: write`) \
    before this step
credentials: set AWS_PROFILE (after `aws configure sso`), or AWS_ACCESS_KEY_ID and \
    AWS_SECRET_ACCESS_KEY
missing-profile: profile `{name}` (AWS_PROFILE) is not in {config} or {credentials}
create-profile: create it (`aws configure sso --profile {name}`) or unset AWS_PROFILE
choose-profile: set AWS_PROFILE to one of {known}, or create it (`aws configure sso --profile \
    {name}`)
sso: the SSO session of profile `{name}` is missing or has expired
login: run {login}, then run this command again
expired: {code}: the session credentials have expired
renew: renew them ({login}, or a new session from your identity provider) and run it again
unknown-key: {code}: AWS does not know this access key id (deleted, inactive, or a typo)
current-key: use a current key: check AWS_ACCESS_KEY_ID or the profile's aws_access_key_id \
    (`aws configure list`)
signature: {code}: the secret access key does not belong to the access key id
secret-key: check AWS_SECRET_ACCESS_KEY or the profile's aws_secret_access_key (the whole \
    key, no spaces or quotes)
skew: {code}: this machine's clock ({ours}) is too far from AWS's
clocks: {code}: this machine's clock says {ours}, AWS's {theirs} ({apart} apart)
clock: set the clock right (`timedatectl set-ntp true`), then run it again
denied: {code}: these credentials may not make this call
allow: use credentials whose policy allows it
denied-named: {code}: {principal} may not call {action}
allow-named: allow it in that principal's policy (CI's deploy role: infrastructure/bootstrap)
throttled: {code}: {message} (throttled even after the SDK's retries)
wait: wait a minute and run it again; if it keeps happening, look for jobs that call it in a \
    loop
provider: loading the credentials of profile `{name}` failed: {reason}
profile: check that profile in {config} or {credentials} (`aws configure list`)
code: {code}
service: {code}: {message}
override: the endpoint override {url} ({set_by}) is unreachable: {what}
unset: unset {set_by}, or start what it points at
local-stack: start the local stack (`cargo xtask local up`), or fix {set_by} in the settings
proxy: cannot reach {host} through the proxy {proxy}: {what}
check-proxy: check that proxy or NO_PROXY ({proxies})
tls: TLS with {host} failed: {reason}
trust: an intercepting proxy's CA must be in the system trust store ({proxies})
unreachable: cannot reach {host}: {what}
dns: check this machine's DNS and network, and that region `{region}` exists ({proxies})
network: check the network path to AWS (VPN, firewall, VPC endpoint) ({proxies})
Dns: the name does not resolve (DNS)
Refused: connection refused
Tls: the TLS handshake failed ({reason})
Timeout: no answer in time
Tunnel: the proxy refused the tunnel ({tunnel})
Other: {reason}
";

/// The text of `key` in [`TEXTS`], or `{key}` for the tests to see.
fn text(key: &str) -> String {
    let line = TEXTS
        .lines()
        .find_map(|l| l.strip_prefix(key)?.strip_prefix(": "));
    line.map_or_else(|| format!("{{{key}}}"), String::from)
}

/// `template` with each `{name}` replaced by its value.
fn fill(template: &str, value: impl Fn(&str) -> String) -> String {
    let mut parts = template.split('{');
    let mut out = parts.next().unwrap_or_default().to_string();
    for part in parts {
        let (name, rest) = part.split_once('}').unwrap_or((part, ""));
        out = out + &value(name) + rest;
    }
    out
}

/// The one-line cause and the fix of `class`, for a call to `service` (or to `url`). No fix
/// when the class has none of its own (the call site may give one).
pub fn explain(
    class: Class,
    seen: &Seen<'_>,
    setup: &Setup,
    service: &str,
    url: Option<&str>,
    now: SystemTime,
) -> (String, Option<String>) {
    let (p, message) = (&setup.profile, seen.message.unwrap_or_default());
    // "User: arn:aws:… is not authorized to perform: ecr:… on resource: …"
    let after = |mark: &str| message.split_once(mark).map(|(_, rest)| rest);
    let principal = after("User: ").and_then(|r| r.split_once(" is not authorized"));
    let action = after("to perform: ").and_then(|r| r.split_whitespace().next());
    let theirs = seen
        .date
        .and_then(|d| DateTime::from_str(d, Format::HttpDate).ok());
    let (url, via) = setup.endpoint(service, url);
    let (cause, fix) = match class {
        Class::NoCredentials if setup.github => ("no-credentials", "ci-credentials"),
        Class::NoCredentials => ("no-credentials", "credentials"),
        Class::MissingProfile if p.known.is_empty() => ("missing-profile", "create-profile"),
        Class::MissingProfile => ("missing-profile", "choose-profile"),
        Class::SsoLogin => ("sso", "login"),
        Class::Expired => ("expired", "renew"),
        Class::UnknownKey => ("unknown-key", "current-key"),
        Class::Signature => ("signature", "secret-key"),
        Class::ClockSkew if theirs.is_some() => ("clocks", "clock"),
        Class::ClockSkew => ("skew", "clock"),
        Class::AccessDenied if principal.is_some() && action.is_some() => {
            ("denied-named", "allow-named")
        }
        Class::AccessDenied => ("denied", "allow"),
        Class::Throttled => ("throttled", "wait"),
        Class::Credentials => ("provider", "profile"),
        Class::Service if message.is_empty() => ("code", ""),
        Class::Service => ("service", ""),
        Class::Other => ("Other", ""),
        Class::Network(_) => match &via {
            Via::Override(by) if by.starts_with("AWS_ENDPOINT_URL") => ("override", "unset"),
            Via::Override(_) => ("override", "local-stack"),
            // The fix names the variable, with every other proxy variable set.
            Via::Proxy(_) if class != Class::Network(Net::Tls) => ("proxy", "check-proxy"),
            _ if class == Class::Network(Net::Tls) => ("tls", "trust"),
            _ if class == Class::Network(Net::Dns) => ("unreachable", "dns"),
            _ => ("unreachable", "network"),
        },
    };
    // Whole seconds, as the `Date` header has them.
    let secs = now.duration_since(UNIX_EPOCH).unwrap_or_default().as_secs() as i64;
    // The last message of the chain that says something (io errors repeat their payload).
    let reason = seen.error.into_iter().flat_map(chain).last();
    let reason = reason.map_or("no reason given".into(), |e| e.to_string());
    let value = |name: &str| match name {
        "code" => match (seen.code, seen.status) {
            (Some(code), _) => code.to_string(),
            (None, status) => format!("HTTP {}", status.unwrap_or_default()),
        },
        "message" if message.is_empty() => "AWS is overloaded".into(),
        "message" => message.into(),
        "reason" => reason.clone(),
        "tunnel" => reason.trim_start_matches("tunnel error: ").into(),
        "name" => p.name.clone(),
        "known" => p.known[..p.known.len().min(5)].join(", "),
        "login" if p.explicit => format!("`aws sso login --profile {}`", p.name),
        "login" => "`aws sso login`".into(),
        "config" => setup.config_file.clone(),
        "credentials" => setup.credentials_file.clone(),
        "imds" => if setup.imds_disabled {
            " (disabled)"
        } else {
            ""
        }
        .into(),
        "ours" => stamp(DateTime::from_secs(secs)),
        "theirs" => theirs.map(stamp).unwrap_or_default(),
        "apart" => span(theirs.map_or(0, |t| t.secs().abs_diff(secs))),
        "principal" => principal.map(|(p, _)| p.to_string()).unwrap_or_default(),
        "action" => action.unwrap_or_default().into(),
        "url" => url.trim_end_matches('/').into(),
        "host" => host(&url).into(),
        "set_by" | "proxy" => match &via {
            Via::Override(by) | Via::Proxy(by) => by.clone(),
            Via::Direct => String::new(),
        },
        "proxies" => setup.proxies(),
        "region" => setup.region.clone(),
        // Left as it is, for the tests to see.
        _ => format!("{{{name}}}"),
    };
    let kind = match class {
        Class::Network(kind) => format!("{kind:?}"),
        _ => String::new(),
    };
    let cause = text(cause).replace("{what}", &text(&kind));
    (
        fill(&cause, value),
        (!fix.is_empty()).then(|| fill(&text(fix), value)),
    )
}

fn stamp(time: DateTime) -> String {
    time.fmt(Format::DateTime).unwrap_or_default()
}

fn span(s: u64) -> String {
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m {}s", s / 60, s % 60),
        _ => format!("{}h {}m", s / 3600, s % 3600 / 60),
    }
}

/// A failed AWS call: one line saying why, and what to do (`Display` shows both), and the
/// SDK's error chain for `-v` ([`Failure::detail`]).
#[derive(Debug)]
pub struct Failure {
    /// `CALL failed: cause`, or the cause alone for a failure found before any call.
    cause: String,
    fix: Option<String>,
    detail: Vec<String>,
}

impl Failure {
    /// Explains what `call` (`SERVICE Operation target`, to the service or to `url`) saw.
    pub fn new(setup: &Setup, call: &str, class: Class, url: Option<&str>, seen: &Seen) -> Failure {
        let service = call.split(' ').next().unwrap_or_default();
        let (mut cause, fix) = explain(class, seen, setup, service, url, SystemTime::now());
        if !call.is_empty() {
            cause = format!("{call} failed: {cause}");
        }
        let detail = seen.error.into_iter().flat_map(chain);
        let mut detail: Vec<_> = detail.map(|e| e.to_string()).collect();
        detail.dedup();
        Failure { cause, fix, detail }
    }

    /// The call site's fix, for the classes that have none of their own.
    pub fn or_fix(mut self, fix: impl Into<String>) -> Failure {
        self.fix.get_or_insert_with(|| fix.into());
        self
    }

    /// The SDK's error chain, outermost first, one message each (what `-v` prints).
    pub fn detail(&self) -> &[String] {
        &self.detail
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.fix {
            Some(fix) => write!(f, "{}\n  fix: {fix}", self.cause),
            None => f.write_str(&self.cause),
        }
    }
}

impl StdError for Failure {}

#[cfg(test)]
mod tests {
    use std::io;

    use aws_credential_types::provider::error::CredentialsError;
    use aws_sdk_sts::operation::get_caller_identity::GetCallerIdentityError;
    use aws_smithy_runtime_api::client::result::{ConnectorError, SdkError};
    use aws_smithy_runtime_api::http::Response;
    use aws_smithy_runtime_api::http::StatusCode;
    use aws_smithy_types::body::SdkBody;
    use aws_smithy_types::error::ErrorMetadata;

    use super::super::setup::Profile;
    use super::*;

    type StsError = SdkError<GetCallerIdentityError, Response>;

    /// An error with a fixed message and an optional source, as hyper-util's are.
    #[derive(Debug)]
    struct Msg(&'static str, Option<Box<dyn StdError + Send + Sync>>);
    impl fmt::Display for Msg {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str(self.0)
        }
    }
    impl StdError for Msg {
        fn source(&self) -> Option<&(dyn StdError + 'static)> {
            self.1.as_deref().map(|e| e as &(dyn StdError + 'static))
        }
    }

    fn prod() -> Setup {
        Setup {
            region: "eu-west-1".into(),
            config_file: "~/.aws/config".into(),
            credentials_file: "~/.aws/credentials".into(),
            ..Setup::default()
        }
    }

    fn profile(name: &str, exists: bool, sso: bool) -> Setup {
        Setup {
            profile: Profile {
                name: name.into(),
                explicit: true,
                exists,
                sso,
                known: vec!["default".into(), "dev".into()],
            },
            ..prod()
        }
    }

    /// The SDK's shape of a failure before the request: credentials, or the connection.
    fn dispatch(source: impl StdError + Send + Sync + 'static, io: bool) -> StsError {
        let source = Box::new(source);
        SdkError::dispatch_failure(if io {
            ConnectorError::io(source)
        } else {
            ConnectorError::other(source, None)
        })
    }

    fn answer(status: u16, code: &str, message: &str, date: Option<&str>) -> StsError {
        let meta = ErrorMetadata::builder().code(code).message(message).build();
        let mut raw = Response::new(StatusCode::try_from(status).unwrap(), SdkBody::empty());
        if let Some(date) = date {
            raw.headers_mut().insert("date", date.to_string());
        }
        SdkError::service_error(GetCallerIdentityError::generic(meta), raw)
    }

    fn class(e: &StsError, setup: &Setup) -> Class {
        classify(&Seen::sdk(e), setup)
    }

    fn text(e: &StsError, setup: &Setup) -> (String, Option<String>) {
        let seen = Seen::sdk(e);
        explain(
            classify(&seen, setup),
            &seen,
            setup,
            "sts",
            None,
            UNIX_EPOCH,
        )
    }

    fn failed(call: &str, e: &StsError) -> Failure {
        let seen = Seen::sdk(e);
        Failure::new(&prod(), call, classify(&seen, &prod()), None, &seen)
    }

    #[test]
    fn the_chain_finding_nothing_names_every_source() {
        let e = dispatch(CredentialsError::not_loaded("no providers in chain"), false);
        let setup = Setup {
            imds_disabled: true,
            ..prod()
        };
        assert_eq!(class(&e, &setup), Class::NoCredentials);
        let (cause, fix) = text(&e, &setup);
        assert_eq!(
            cause,
            "no credentials in the environment, ~/.aws/config, ~/.aws/credentials, web \
             identity, container or IMDS (disabled)"
        );
        assert!(fix.unwrap().contains("AWS_PROFILE"));
        let ci = Setup {
            github: true,
            ..prod()
        };
        assert!(
            text(&e, &ci)
                .1
                .unwrap()
                .contains("configure-aws-credentials")
        );
    }

    #[test]
    fn a_missing_profile_an_sso_profile_and_other_profile_failures() {
        let not_loaded = dispatch(CredentialsError::not_loaded("no profiles"), false);
        let missing = profile("nosuch", false, false);
        assert_eq!(class(&not_loaded, &missing), Class::MissingProfile);
        let (cause, fix) = text(&not_loaded, &missing);
        assert_eq!(
            cause,
            "profile `nosuch` (AWS_PROFILE) is not in ~/.aws/config or ~/.aws/credentials"
        );
        assert!(
            fix.unwrap()
                .starts_with("set AWS_PROFILE to one of default, dev")
        );

        // The token cache file is missing: an io error, but no connection failed.
        let missing_file = io::Error::new(io::ErrorKind::NotFound, "No such file or directory");
        let token = CredentialsError::provider_error(Msg(
            "failed to load the cached SSO token",
            Some(Box::new(missing_file)),
        ));
        let sso = profile("dev", true, true);
        let e = dispatch(token, false);
        assert_eq!(class(&e, &sso), Class::SsoLogin);
        assert_eq!(
            text(&e, &sso).1.unwrap(),
            "run `aws sso login --profile dev`, then run this command again"
        );

        let process = CredentialsError::provider_error(Msg("credential_process exited 1", None));
        let e = dispatch(process, false);
        let process = profile("dev", true, false);
        assert_eq!(class(&e, &process), Class::Credentials);
        assert_eq!(
            text(&e, &process).0,
            "loading the credentials of profile `dev` failed: credential_process exited 1"
        );

        // An SSO portal that cannot be reached is the network's fault, not the session's.
        let dns = Msg(
            "dns error",
            Some(Box::new(io::Error::other("failed to lookup"))),
        );
        let portal = CredentialsError::provider_error(ConnectorError::io(Box::new(dns)));
        let e = dispatch(portal, false);
        assert_eq!(class(&e, &sso), Class::Network(Net::Dns));
    }

    #[test]
    fn error_codes_of_query_and_json_services_name_one_class_each() {
        let setup = prod();
        let cases = [
            ("ExpiredToken", "", Class::Expired),
            ("ExpiredTokenException", "", Class::Expired),
            ("InvalidClientTokenId", "", Class::UnknownKey),
            ("UnrecognizedClientException", "", Class::UnknownKey),
            ("SignatureDoesNotMatch", "Check your key", Class::Signature),
            ("InvalidSignatureException", "", Class::Signature),
            (
                "InvalidSignatureException",
                "Signature expired: 20261202T040000Z is now earlier than 20261202T041500Z",
                Class::ClockSkew,
            ),
            ("ThrottlingException", "Rate exceeded", Class::Throttled),
            ("SlowDown", "", Class::Throttled),
            ("ValidationError", "bad", Class::Service),
        ];
        for (code, message, expected) in cases {
            let e = answer(400, code, message, None);
            assert_eq!(class(&e, &setup), expected, "{code}");
            // Every cause names the code AWS answered.
            assert!(
                text(&e, &setup).0.starts_with(&format!("{code}: ")),
                "{code}"
            );
        }
        assert_eq!(
            text(
                &answer(400, "ThrottlingException", "Rate exceeded", None),
                &setup
            )
            .0,
            "ThrottlingException: Rate exceeded (throttled even after the SDK's retries)"
        );
        let denied = answer(
            400,
            "AccessDeniedException",
            "User: arn:aws:sts::1:assumed-role/ci/job is not authorized to perform: \
             ecr:GetAuthorizationToken on resource: * because no identity-based policy allows it",
            None,
        );
        assert_eq!(
            text(&denied, &setup).0,
            "AccessDeniedException: arn:aws:sts::1:assumed-role/ci/job may not call \
             ecr:GetAuthorizationToken"
        );
        // S3's bare "Access Denied" names neither.
        let bare = answer(403, "AccessDenied", "Access Denied", None);
        assert_eq!(
            text(&bare, &setup).0,
            "AccessDenied: these credentials may not make this call"
        );
    }

    #[test]
    fn clock_skew_shows_both_clocks_from_the_date_header() {
        let e = answer(
            403,
            "RequestTimeTooSkewed",
            "too large",
            Some("Thu, 01 Jan 1970 01:30:00 GMT"),
        );
        let (cause, fix) = text(&e, &prod());
        assert_eq!(
            cause,
            "RequestTimeTooSkewed: this machine's clock says 1970-01-01T00:00:00Z, AWS's \
             1970-01-01T01:30:00Z (1h 30m apart)"
        );
        assert!(fix.unwrap().contains("set the clock right"));
        let unknown = answer(403, "RequestTimeTooSkewed", "", None);
        assert_eq!(
            text(&unknown, &prod()).0,
            "RequestTimeTooSkewed: this machine's clock (1970-01-01T00:00:00Z) is too far from \
             AWS's"
        );
    }

    #[test]
    fn connection_failures_name_the_endpoint_and_never_credentials() {
        let setup = prod();
        let refused = dispatch(io::Error::from(io::ErrorKind::ConnectionRefused), true);
        let dns = dispatch(
            Msg(
                "dns error",
                Some(Box::new(io::Error::other("Name or service not known"))),
            ),
            true,
        );
        let tls = dispatch(
            Msg(
                "TLS handshake failed",
                Some(Box::new(Msg(
                    "invalid peer certificate: UnknownIssuer",
                    None,
                ))),
            ),
            true,
        );
        let tunnel = dispatch(Msg("tunnel error: unsuccessful", None), true);
        let timeout = SdkError::<GetCallerIdentityError, Response>::dispatch_failure(
            ConnectorError::timeout(Box::new(Msg("connect timed out", None))),
        );
        let operation = StsError::timeout_error(Msg("operation timed out", None));
        for (e, kind) in [
            (&refused, Net::Refused),
            (&dns, Net::Dns),
            (&tls, Net::Tls),
            (&tunnel, Net::Tunnel),
            (&timeout, Net::Timeout),
            (&operation, Net::Timeout),
        ] {
            assert_eq!(class(e, &setup), Class::Network(kind));
            let (cause, fix) = text(e, &setup);
            let both = format!("{cause} {}", fix.unwrap_or_default());
            assert!(both.contains("sts.eu-west-1.amazonaws.com"), "{both}");
            assert!(both.contains("no proxy variable set"), "{both}");
            assert!(!both.contains("credentials"), "{both}");
        }
        assert_eq!(
            text(&tls, &setup).0,
            "TLS with sts.eu-west-1.amazonaws.com failed: invalid peer certificate: UnknownIssuer"
        );
        assert_eq!(
            text(&dns, &setup).1.unwrap(),
            "check this machine's DNS and network, and that region `eu-west-1` exists (no \
             proxy variable set)"
        );
    }

    #[test]
    fn proxies_and_endpoint_overrides_are_named_where_they_apply() {
        let vars = |pairs: &[(&str, &str)]| Setup {
            vars: pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            ..prod()
        };
        let refused = dispatch(io::Error::from(io::ErrorKind::ConnectionRefused), true);
        let proxied = vars(&[
            ("HTTPS_PROXY", "http://proxy:3128"),
            ("NO_PROXY", ".internal"),
        ]);
        assert_eq!(
            text(&refused, &proxied).0,
            "cannot reach sts.eu-west-1.amazonaws.com through the proxy http://proxy:3128: \
             connection refused"
        );
        assert!(
            text(&refused, &proxied)
                .1
                .unwrap()
                .ends_with("(set: HTTPS_PROXY=http://proxy:3128, NO_PROXY=.internal)")
        );
        // NO_PROXY lists the host's domain: direct.
        let bypassed = vars(&[
            ("https_proxy", "http://proxy:3128"),
            ("no_proxy", "amazonaws.com"),
        ]);
        assert_eq!(
            text(&refused, &bypassed).0,
            "cannot reach sts.eu-west-1.amazonaws.com: connection refused"
        );
        // HTTP_PROXY is for plain http only.
        let http_only = vars(&[("HTTP_PROXY", "http://proxy:3128")]);
        assert!(!text(&refused, &http_only).0.contains("through the proxy"));

        let overridden = vars(&[
            ("AWS_ENDPOINT_URL", "http://127.0.0.1:1"),
            ("AWS_ENDPOINT_URL_STS", "http://127.0.0.1:2"),
        ]);
        let (cause, fix) = text(&refused, &overridden);
        assert_eq!(
            cause,
            "the endpoint override http://127.0.0.1:2 (AWS_ENDPOINT_URL_STS) is unreachable: \
             connection refused"
        );
        assert_eq!(
            fix.unwrap(),
            "unset AWS_ENDPOINT_URL_STS, or start what it points at"
        );
        let local = Setup {
            local: Some((
                "http://127.0.0.1:4566".into(),
                "`endpoint_url` of `local`".into(),
            )),
            ..prod()
        };
        assert!(
            text(&refused, &local)
                .1
                .unwrap()
                .contains("cargo xtask local up")
        );
    }

    #[test]
    fn statuses_without_a_code() {
        let seen = |status| Seen {
            status: Some(status),
            ..Seen::default()
        };
        assert_eq!(classify(&seen(503), &prod()), Class::Throttled);
        assert_eq!(classify(&seen(500), &prod()), Class::Service);
        let (cause, fix) = explain(Class::Service, &seen(500), &prod(), "s3", None, UNIX_EPOCH);
        assert_eq!((cause.as_str(), fix), ("HTTP 500", None));
    }

    #[test]
    fn a_failure_shows_its_cause_and_fix_and_keeps_the_chain_for_verbose() {
        let e = dispatch(CredentialsError::not_loaded("no providers in chain"), false);
        let failure = failed("sts GetCallerIdentity", &e);
        let shown = failure.to_string();
        assert!(
            shown.starts_with("sts GetCallerIdentity failed: no credentials in"),
            "{shown}"
        );
        assert!(shown.contains("\n  fix: set AWS_PROFILE"), "{shown}");
        assert_eq!(failure.detail()[0], "dispatch failure");
        assert!(
            failure
                .detail()
                .iter()
                .any(|l| l.contains("no providers in chain"))
        );
        assert!(!format!("{failure:?}").contains("SdkBody"));
        // A call site's fix only where the class has none.
        let other = answer(400, "ValidationError", "bad", None);
        let failure = failed("ecr X", &other).or_fix("do Y");
        assert_eq!(
            failure.to_string(),
            "ecr X failed: ValidationError: bad\n  fix: do Y"
        );
        let kept = failed("ecr X", &e).or_fix("do Y");
        assert!(!kept.to_string().contains("do Y"));
    }

    #[test]
    fn every_case_has_its_text_with_every_name_filled_in() {
        let nets = [
            Net::Dns,
            Net::Refused,
            Net::Tls,
            Net::Timeout,
            Net::Tunnel,
            Net::Other,
        ];
        let mut classes = vec![
            Class::NoCredentials,
            Class::MissingProfile,
            Class::SsoLogin,
            Class::Expired,
            Class::UnknownKey,
            Class::Signature,
            Class::ClockSkew,
            Class::AccessDenied,
            Class::Throttled,
            Class::Credentials,
            Class::Service,
            Class::Other,
        ];
        classes.extend(nets.map(Class::Network));
        let with = |vars: &[(&str, &str)]| Setup {
            vars: vars
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            ..profile("dev", false, false)
        };
        let local = Setup {
            local: Some((
                "http://127.0.0.1:4566".into(),
                "`endpoint_url` of `local`".into(),
            )),
            ..prod()
        };
        let setups = [
            prod(),
            Setup {
                github: true,
                imds_disabled: true,
                ..prod()
            },
            Setup {
                profile: Profile {
                    explicit: true,
                    ..Profile::default()
                },
                ..prod()
            },
            with(&[("HTTPS_PROXY", "http://proxy:3128")]),
            with(&[("AWS_ENDPOINT_URL", "http://127.0.0.1:1")]),
            local,
        ];
        let message = "User: arn:aws:iam::1:user/u is not authorized to perform: ecr:X on *";
        for date in [None, Some("Thu, 01 Jan 1970 00:00:05 GMT")] {
            for (code, message) in [(None, None), (Some("Code"), Some(message))] {
                let seen = Seen {
                    code,
                    message,
                    date,
                    status: Some(500),
                    ..Seen::default()
                };
                for (class, setup) in classes
                    .iter()
                    .flat_map(|c| setups.iter().map(move |s| (c, s)))
                {
                    let (cause, fix) = explain(*class, &seen, setup, "sts", None, UNIX_EPOCH);
                    let both = format!("{cause} | {}", fix.unwrap_or_default());
                    // A missing text or name shows as `{key}`.
                    assert!(!both.contains('{'), "{class:?}: {both}");
                }
            }
        }
    }
}
