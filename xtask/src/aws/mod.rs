//! AWS calls through the SDK (STS here, ECR in `ecr`) and SigV4-signed requests for the few
//! S3 and IAM calls; every failure is classified and explained (`error`). Credentials come
//! from the standard chain and requests take the environment's proxy, as the aws CLI does,
//! except on the local stack: the emulator on loopback gets fixed dummy keys and no proxy,
//! so a developer's real credentials are never sent there.

use std::future::Future;
use std::time::{Duration, SystemTime};

use anyhow::{Context, Result, bail};
use aws_config::{BehaviorVersion, Region, SdkConfig, timeout::TimeoutConfig};
use aws_credential_types::provider::{ProvideCredentials, SharedCredentialsProvider};
use aws_sdk_ecr::config::{Credentials, SharedHttpClient};
use aws_sdk_ecr::error::SdkError;
use aws_sigv4::http_request as sigv4;
use aws_smithy_http_client::Connector;
use aws_smithy_runtime_api::client::http::{HttpConnector, HttpConnectorSettings};
use aws_smithy_runtime_api::client::{orchestrator::HttpResponse, result::ConnectorError};
use aws_smithy_types::byte_stream::ByteStream;
use tokio::runtime::{Builder, Runtime};

mod ecr;
mod error;
mod setup;

use crate::http::Response;
use crate::secret::Secret;
use crate::settings::{EMULATOR_KEYS, Environment};
pub use ecr::ScanState;
pub use error::{Class, Failure, Net};
use error::{OpError, Seen, classify};
use setup::Setup;

/// How long a connection may take to open, and a whole call (with the SDK's retries).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
const OPERATION_TIMEOUT: Duration = Duration::from_secs(60);

/// What S3 says about a bucket, as seen by these credentials.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Bucket {
    Exists,
    Missing,
    ElsewhereIn(String),
    /// Another account's, or these credentials may not see it.
    Forbidden,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub account: String,
    pub arn: String,
}

/// `Secret`'s Debug keeps the password out of any Debug output.
#[derive(Debug, Clone)]
pub struct Token {
    pub username: String,
    pub password: Secret,
    /// `https://ACCOUNT.dkr.ecr.REGION.amazonaws.com`.
    pub proxy_endpoint: String,
}

pub struct Aws {
    runtime: Runtime,
    config: SdkConfig,
    /// The local stack's emulator.
    emulator: Option<String>,
    /// The region the credential chain chose before xtask pinned the environment's.
    pub chain_region: Option<String>,
    setup: Setup,
    /// The connection pool of [`Aws::signed`] requests.
    connector: Connector,
}

/// What an SDK call gives.
type Sent<T, E> = std::result::Result<T, SdkError<E, HttpResponse>>;

impl Aws {
    pub fn connect(env: &Environment) -> Result<Aws> {
        if let Some(local) = env
            .local
            .as_ref()
            .filter(|_| env.account_id != crate::settings::EMULATOR_ACCOUNT)
        {
            return Aws::emulator_account(&local.endpoint_url, &env.region, &env.account_id);
        }
        let set_by = format!("`endpoint_url` of `{}`", env.name);
        let local = env.local.as_ref().map(|l| (l.endpoint_url.clone(), set_by));
        Aws::load(&env.region, local)
    }

    /// The local stack's AWS emulator: fixed dummy keys, and `region` is the only one.
    pub fn emulator(endpoint_url: &str, region: &str) -> Result<Aws> {
        let set_by = "the local stack's `endpoint_url`".to_string();
        Aws::load(region, Some((endpoint_url.to_string(), set_by)))
    }

    /// The emulator as another of its accounts: the dummy keys assume a role there, as a
    /// second AWS account's credentials would (the emulator keeps each account apart).
    pub fn emulator_account(endpoint_url: &str, region: &str, account: &str) -> Result<Aws> {
        let base = Aws::emulator(endpoint_url, region)?;
        let c = base.assume_account(account)?;
        let config = base
            .config
            .to_builder()
            .credentials_provider(SharedCredentialsProvider::new(c))
            .build();
        Ok(Aws { config, ..base })
    }

    /// Credentials of a session in another emulator account (which the emulator knows that
    /// account by, for as long as it runs).
    pub fn assume_account(&self, account: &str) -> Result<Credentials> {
        let role = format!("arn:aws:iam::{account}:role/xtask-local-stack");
        let sts = aws_sdk_sts::Client::new(&self.config);
        let assume = sts.assume_role().role_arn(&role).role_session_name("xtask");
        let out = self.call(&format!("sts AssumeRole {role}"), assume.send())?;
        let Some(c) = out.credentials() else {
            bail!("AssumeRole returned no credentials")
        };
        let token = Some(c.session_token().to_string());
        Ok(Credentials::new(
            c.access_key_id(),
            c.secret_access_key(),
            token,
            None,
            "xtask-local-account",
        ))
    }

    fn load(region: &str, local: Option<(String, String)>) -> Result<Aws> {
        let runtime = Builder::new_current_thread().enable_all().build()?;
        let setup = runtime.block_on(Setup::read(region, local.clone()));
        // The SDK treats a profile missing from files that define no profile at all as no
        // configuration and goes on to IMDS; the aws CLI says the profile is not there.
        if setup.missing_profile() {
            let failure = Failure::new(&setup, "", Class::MissingProfile, None, &Seen::default());
            return Err(failure.into());
        }
        let (on_aws, region) = (local.is_none(), Region::new(region.to_string()));
        let timeouts = TimeoutConfig::builder().connect_timeout(CONNECT_TIMEOUT);
        let timeouts = timeouts.operation_timeout(OPERATION_TIMEOUT).build();
        let loader = aws_config::defaults(BehaviorVersion::latest()).timeout_config(timeouts);
        let mut loader = loader.http_client(http_client(on_aws));
        if let Some((url, _)) = &local {
            let keys = keys(EMULATOR_KEYS.0, EMULATOR_KEYS.1, None);
            loader = loader
                .region(region.clone())
                .endpoint_url(url)
                .credentials_provider(keys);
        }
        // Elsewhere the standard chain decides credentials and region; the region it picked is
        // kept so the identity check can refuse a mismatch, then pinned to the settings'.
        let config = runtime.block_on(loader.load());
        let chain_region = config.region().filter(|_| on_aws).map(|r| r.to_string());
        let config = config.into_builder().region(region).build();
        let settings = HttpConnectorSettings::builder().connect_timeout(CONNECT_TIMEOUT);
        let connector =
            crate::http::connector(Some(&settings.build()), config.sleep_impl(), on_aws);
        let emulator = local.map(|(url, _)| url.trim_end_matches('/').to_string());
        Ok(Aws {
            runtime,
            config,
            emulator,
            chain_region,
            setup,
            connector,
        })
    }

    /// The failure of `call` (`SERVICE Operation target`), to the service or to `url`.
    fn failure(&self, call: &str, url: Option<&str>, seen: &Seen<'_>) -> Failure {
        Failure::new(&self.setup, call, classify(seen, &self.setup), url, seen)
    }

    /// Runs one SDK call.
    fn call<T, E: OpError>(&self, call: &str, sent: impl Future<Output = Sent<T, E>>) -> Result<T> {
        let sent = self.runtime.block_on(sent);
        Ok(sent.map_err(|e| self.failure(call, None, &Seen::sdk(&e)))?)
    }

    /// [`Aws::call`], with `None` for a service error that `expected` accepts.
    fn call_or<T, E: OpError>(
        &self,
        call: &str,
        sent: impl Future<Output = Sent<T, E>>,
        expected: fn(&E) -> bool,
    ) -> Result<Option<T>, Failure> {
        match self.runtime.block_on(sent) {
            Ok(out) => Ok(Some(out)),
            Err(e) if e.as_service_error().is_some_and(expected) => Ok(None),
            Err(e) => Err(self.failure(call, None, &Seen::sdk(&e))),
        }
    }

    pub fn identity(&self) -> Result<Identity> {
        let sts = aws_sdk_sts::Client::new(&self.config);
        let out = self.call("sts GetCallerIdentity", sts.get_caller_identity().send())?;
        let account = out.account().unwrap_or_default().to_string();
        Ok(Identity {
            account,
            arn: out.arn().unwrap_or_default().into(),
        })
    }

    /// S3 HeadBucket on `name`, with the same credentials and region as every other call.
    pub fn bucket(&self, name: &str) -> Result<Bucket> {
        let (call, url) = (format!("s3 HeadBucket {name}"), self.s3_url(name, ""));
        let response = self.send(&call, "HEAD", &url, b"")?;
        let region = response.header("x-amz-bucket-region");
        let elsewhere = region.filter(|r| *r != self.setup.region);
        Ok(match (response.status, elsewhere) {
            (200, _) => Bucket::Exists,
            (404, _) => Bucket::Missing,
            (301 | 400, Some(other)) => Bucket::ElsewhereIn(other.to_string()),
            (403, _) => Bucket::Forbidden,
            (status, _) => {
                let seen = Seen {
                    status: Some(status),
                    ..Seen::default()
                };
                return Err(self.failure(&call, Some(&url), &seen).into());
            }
        })
    }

    /// Path-style on the emulator, virtual-hosted on AWS (bucket names are DNS-safe).
    pub fn s3_url(&self, bucket: &str, key: &str) -> String {
        match &self.emulator {
            Some(endpoint) => format!("{endpoint}/{bucket}/{key}"),
            None => format!(
                "https://{bucket}.s3.{}.amazonaws.com/{key}",
                self.setup.region
            ),
        }
    }

    pub fn emulator_url(&self, path: &str) -> Option<String> {
        self.emulator.as_ref().map(|e| format!("{e}{path}"))
    }

    /// A SigV4-signed request, for S3 (and IAM in the tests): aws-sdk-s3 and aws-sdk-iam,
    /// the SDK's largest crates, would weigh on every cold build. Only no answer fails.
    pub fn signed(&self, service: &str, method: &str, url: &str, body: &[u8]) -> Result<Response> {
        self.send(&format!("{service} {method} {url}"), method, url, body)
    }

    fn send(&self, call: &str, method: &str, url: &str, body: &[u8]) -> Result<Response> {
        let service = call.split(' ').next().unwrap_or_default();
        let fail = |seen: Seen<'_>| self.failure(call, Some(url), &seen);
        let provider = self.config.credentials_provider();
        let provider = provider.context("no credentials provider")?;
        let credentials = self.runtime.block_on(provider.provide_credentials());
        let identity = credentials.map_err(|e| fail(Seen::error(&e)))?.into();
        let mut settings = sigv4::SigningSettings::default();
        if service == "s3" {
            settings.payload_checksum_kind = sigv4::PayloadChecksumKind::XAmzSha256;
        }
        // IAM is a global service, signed for us-east-1.
        let region = if service == "iam" {
            "us-east-1"
        } else {
            &self.setup.region
        };
        let params = aws_sigv4::sign::v4::SigningParams::builder().identity(&identity);
        let params = params.region(region).name(service).settings(settings);
        let params = params.time(SystemTime::now()).build()?.into();
        // A body is a query API's form.
        let form = [("content-type", "application/x-www-form-urlencoded")];
        let headers = &form[..usize::from(!body.is_empty())];
        let signable = sigv4::SignableBody::Bytes(body);
        let signable = sigv4::SignableRequest::new(method, url, headers.iter().copied(), signable)?;
        let (instructions, _) = sigv4::sign(signable, &params)?.into_parts();
        let mut request = http::Request::builder().method(method).uri(url);
        for (k, v) in headers {
            request = request.header(*k, *v);
        }
        let mut request = request.body(body.to_vec().into())?;
        instructions.apply_to_request_http1x(&mut request);
        let pending = self.connector.call(request.try_into()?);
        // The timer needs the runtime: made inside it.
        let answer = async { tokio::time::timeout(Duration::from_secs(30), pending).await };
        let answer = self.runtime.block_on(answer);
        let answer = answer.unwrap_or_else(|late| Err(ConnectorError::timeout(late.into())));
        let response = answer.map_err(|e| fail(Seen::error(&e)))?;
        let status = response.status().as_u16();
        let headers = response.headers().iter();
        let headers = headers
            .map(|(k, v)| (k.to_ascii_lowercase(), v.into()))
            .collect();
        let body = ByteStream::new(response.into_body()).collect();
        let body = self
            .runtime
            .block_on(body)
            .map(|b| b.to_vec())
            .unwrap_or_default();
        Ok(Response {
            status,
            headers,
            body,
        })
    }
}

/// Fixed keys: the emulator's, or a role's assumed on it.
fn keys(id: &str, secret: &str, token: Option<&str>) -> SharedCredentialsProvider {
    let token = token.map(String::from);
    SharedCredentialsProvider::new(Credentials::new(id, secret, token, None, "xtask-local"))
}

/// The SDK keeps one connector (one connection pool) per connector settings.
fn http_client(proxy: bool) -> SharedHttpClient {
    aws_smithy_http_client::Builder::new().build_with_connector_fn(move |settings, components| {
        crate::http::connector(settings, components.and_then(|c| c.sleep_impl()), proxy)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_never_show_in_debug() {
        let token = Token {
            username: "AWS".into(),
            password: Secret::new("hunter2-password".into()),
            proxy_endpoint: "https://x".into(),
        };
        let shown = format!("{token:?} {:?}", token.password);
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(shown.contains("<redacted>"));
    }

    /// A loopback stand-in that answers each request with `answer` and hands back what it
    /// received, one request per connection.
    fn stand_in(answer: &'static str) -> (String, std::sync::mpsc::Receiver<String>) {
        use std::io::{Read, Write};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for mut client in listener.incoming().flatten() {
                let mut buf = [0u8; 8192];
                let n = client.read(&mut buf).unwrap_or(0);
                let _ = tx.send(String::from_utf8_lossy(&buf[..n]).to_ascii_lowercase());
                let _ = client.write_all(answer.as_bytes());
            }
        });
        (url, rx)
    }

    #[test]
    fn signed_requests_carry_sigv4_and_return_any_answer() {
        let (url, seen) = stand_in(
            "HTTP/1.1 301 Moved Permanently\r\nx-amz-bucket-region: eu-west-1\r\n\
             Content-Length: 2\r\nConnection: close\r\n\r\nno",
        );
        let aws = Aws::emulator(&format!("{url}/"), "us-east-1").unwrap();
        assert_eq!(aws.s3_url("b", "k"), format!("{url}/b/k"));
        assert_eq!(
            aws.bucket("b").unwrap(),
            Bucket::ElsewhereIn("eu-west-1".into())
        );
        let head = seen.recv().unwrap();
        assert!(head.starts_with("head /b/ http/1.1"), "{head}");
        assert!(
            head.contains("authorization: aws4-hmac-sha256 credential=testing/")
                && head.contains("/us-east-1/s3/aws4_request")
                && head.contains("x-amz-content-sha256: "),
            "{head}"
        );
        let got = aws
            .signed("iam", "POST", &format!("{url}/"), b"Action=GetRole")
            .unwrap();
        assert_eq!((got.status, got.text().as_str()), (301, "no"));
        let post = seen.recv().unwrap();
        assert!(post.contains("/us-east-1/iam/aws4_request"), "{post}");
        assert!(
            post.contains("content-type: application/x-www-form-urlencoded"),
            "{post}"
        );
        assert!(post.ends_with("action=getrole"), "{post}");
    }

    #[test]
    fn a_signed_request_without_an_answer_is_a_classified_failure() {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let aws = Aws::emulator(&format!("http://127.0.0.1:{port}"), "us-east-1").unwrap();
        let failed = aws.bucket("b").unwrap_err().to_string();
        assert_eq!(
            failed,
            format!(
                "s3 HeadBucket b failed: the endpoint override http://127.0.0.1:{port} (the local \
                 stack's `endpoint_url`) is unreachable: connection refused\n  fix: start the \
                 local stack (`cargo xtask local up`), or fix the local stack's `endpoint_url` in \
                 the settings"
            )
        );
        let (url, _seen) = stand_in("HTTP/1.1 503 Slow Down\r\nContent-Length: 0\r\n\r\n");
        let aws = Aws::emulator(&url, "us-east-1").unwrap();
        let failed = aws.bucket("b").unwrap_err().to_string();
        assert!(
            failed.starts_with("s3 HeadBucket b failed: HTTP 503: AWS is overloaded"),
            "{failed}"
        );
    }
}
