//! AWS calls through the SDK: caller identity, ECR repository lookups and the ECR login token.
//!
//! Credentials come from the standard chain (environment, profiles, SSO, web identity). The
//! local stack is the one exception: it talks to the emulator with fixed dummy keys, so a
//! developer's real credentials are never sent there.

use std::{fmt, time::Duration};

use anyhow::{Context, Result, bail};
use aws_config::{BehaviorVersion, Region, SdkConfig, timeout::TimeoutConfig};
use aws_sdk_ecr::error::DisplayErrorContext;
use aws_smithy_http_client::tls;

mod ecr_images;

pub use crate::secret::Secret;
use crate::settings::{EMULATOR_KEYS, Environment};
pub use ecr_images::ScanState;

/// The answer to a [`Aws::signed`] request.
#[derive(Debug, Clone)]
pub struct Signed {
    pub status: u16,
    /// Header names in lower case.
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Signed {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// What S3 says about a bucket, as seen by these credentials.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Bucket {
    Exists,
    Missing,
    /// It exists, in another region.
    ElsewhereIn(String),
    /// It exists but these credentials may not see it (another account's, or no permission).
    Forbidden,
}

pub struct Aws {
    runtime: tokio::runtime::Runtime,
    config: SdkConfig,
    /// The emulator's base URL, for local-stack environments.
    emulator: Option<String>,
    /// The region the credential chain chose before xtask pinned the environment's.
    pub chain_region: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub account: String,
    pub arn: String,
}

pub struct Token {
    pub username: String,
    pub password: Secret,
    /// `https://ACCOUNT.dkr.ecr.REGION.amazonaws.com`.
    pub proxy_endpoint: String,
}

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Token")
            .field("username", &self.username)
            .field("password", &self.password)
            .field("proxy_endpoint", &self.proxy_endpoint)
            .finish()
    }
}

impl Aws {
    pub fn connect(env: &Environment) -> Result<Aws> {
        match &env.local {
            Some(local) => Aws::emulator(&local.endpoint_url, &env.region),
            None => Aws::load(&env.region, None),
        }
    }

    /// The local stack's AWS emulator: fixed dummy keys, and `region` is the only one.
    pub fn emulator(endpoint_url: &str, region: &str) -> Result<Aws> {
        Aws::load(region, Some(endpoint_url))
    }

    fn load(region: &str, emulator: Option<&str>) -> Result<Aws> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let http = aws_smithy_http_client::Builder::new()
            .tls_provider(tls::Provider::Rustls(
                tls::rustls_provider::CryptoMode::Ring,
            ))
            .build_https();
        let timeouts = TimeoutConfig::builder()
            .connect_timeout(Duration::from_secs(5))
            .operation_timeout(Duration::from_secs(60))
            .build();
        let (config, chain_region) = runtime.block_on(async {
            let loader = aws_config::defaults(BehaviorVersion::latest())
                .http_client(http)
                .timeout_config(timeouts);
            match emulator {
                Some(endpoint_url) => {
                    let config = loader
                        .region(Region::new(region.to_string()))
                        .endpoint_url(endpoint_url)
                        .credentials_provider(aws_sdk_ecr::config::Credentials::new(
                            EMULATOR_KEYS.0,
                            EMULATOR_KEYS.1,
                            None,
                            None,
                            "xtask-local-stack",
                        ))
                        .load()
                        .await;
                    (config, None)
                }
                // The standard chain decides credentials and region; the region it picked is
                // kept so the identity check can refuse a mismatch, then pinned to the settings'.
                None => {
                    let config = loader.load().await;
                    let chain_region = config.region().map(ToString::to_string);
                    let config = config
                        .into_builder()
                        .region(Region::new(region.to_string()))
                        .build();
                    (config, chain_region)
                }
            }
        });
        Ok(Aws {
            runtime,
            config,
            emulator: emulator.map(str::to_string),
            chain_region,
        })
    }

    pub fn identity(&self) -> Result<Identity> {
        let sts = aws_sdk_sts::Client::new(&self.config);
        let out = self.runtime.block_on(sts.get_caller_identity().send()).map_err(|e| {
            let expired = service_code(&e).is_some_and(|c| c.contains("Expired"));
            anyhow::anyhow!(
                "sts GetCallerIdentity failed: {}\n  fix: {}provide credentials through the \
                 standard chain (AWS_PROFILE, `aws sso login`, or environment variables; in \
                 GitHub Actions aws-actions/configure-aws-credentials)",
                brief(&e),
                if expired {
                    "the credentials have expired: renew them (`aws sso login`, a new session) or "
                } else {
                    ""
                }
            )
        })?;
        Ok(Identity {
            account: out.account().unwrap_or_default().to_string(),
            arn: out.arn().unwrap_or_default().to_string(),
        })
    }

    /// Creates a repository outside Terraform: only the benchmark's throw-away repositories
    /// on the local stack use it.
    pub fn create_repository(&self, name: &str) -> Result<()> {
        let ecr = aws_sdk_ecr::Client::new(&self.config);
        self.runtime
            .block_on(ecr.create_repository().repository_name(name).send())
            .map_err(|e| {
                anyhow::anyhow!(
                    "ecr CreateRepository {name} failed: {}",
                    DisplayErrorContext(&e)
                )
            })?;
        Ok(())
    }

    pub fn repository_exists(&self, name: &str) -> Result<bool> {
        let ecr = aws_sdk_ecr::Client::new(&self.config);
        match self
            .runtime
            .block_on(ecr.describe_repositories().repository_names(name).send())
        {
            Ok(out) => Ok(!out.repositories().is_empty()),
            Err(e)
                if e.as_service_error()
                    .is_some_and(|s| s.is_repository_not_found_exception()) =>
            {
                Ok(false)
            }
            Err(e) => Err(anyhow::anyhow!(
                "ecr DescribeRepositories {name} failed: {}",
                DisplayErrorContext(&e)
            )),
        }
    }

    /// ECR's retag: the manifest of `digest`, put again under each tag. A tag that already
    /// points there is fine.
    pub fn put_tags(&self, repository: &str, digest: &str, tags: &[String]) -> Result<()> {
        use aws_sdk_ecr::types::ImageIdentifier;
        let ecr = aws_sdk_ecr::Client::new(&self.config);
        let id = ImageIdentifier::builder().image_digest(digest).build();
        let mut get = ecr
            .batch_get_image()
            .repository_name(repository)
            .image_ids(id);
        for media_type in crate::tools::docker::MANIFEST_TYPES {
            get = get.accepted_media_types(media_type);
        }
        let out = self.runtime.block_on(get.send()).map_err(|e| {
            anyhow::anyhow!(
                "ecr BatchGetImage {repository}@{digest} failed: {}",
                DisplayErrorContext(&e)
            )
        })?;
        let image = out
            .images()
            .first()
            .with_context(|| format!("ECR has no image {repository}@{digest}"))?;
        let manifest = image.image_manifest().context("ECR returned no manifest")?;
        for tag in tags {
            let put = ecr
                .put_image()
                .repository_name(repository)
                .image_manifest(manifest)
                .set_image_manifest_media_type(image.image_manifest_media_type().map(String::from))
                .image_digest(digest)
                .image_tag(tag);
            match self.runtime.block_on(put.send()) {
                Ok(_) => {}
                Err(e)
                    if e.as_service_error()
                        .is_some_and(|s| s.is_image_already_exists_exception()) => {}
                Err(e) => bail!(
                    "ecr PutImage {repository}:{tag} failed: {}",
                    DisplayErrorContext(&e)
                ),
            }
        }
        Ok(())
    }

    /// S3 HeadBucket on `name`, with the same credentials and region as every other call.
    pub fn bucket(&self, name: &str) -> Result<Bucket> {
        let region = self.region();
        // Path-style on the emulator, virtual-hosted on AWS (bucket names are DNS-safe).
        let url = match &self.emulator {
            Some(endpoint) => format!("{}/{name}", endpoint.trim_end_matches('/')),
            None => format!("https://{name}.s3.{region}.amazonaws.com/"),
        };
        let response = self
            .signed("s3", "HEAD", &url, b"")
            .with_context(|| format!("s3 HeadBucket {name}"))?;
        Ok(match response.status {
            200 => Bucket::Exists,
            404 => Bucket::Missing,
            301 | 400 => match response.header("x-amz-bucket-region") {
                Some(other) if other != region => Bucket::ElsewhereIn(other.to_string()),
                _ => bail!("s3 HeadBucket {name} answered HTTP {}", response.status),
            },
            403 => Bucket::Forbidden,
            status => bail!("s3 HeadBucket {name} answered HTTP {status}"),
        })
    }

    fn region(&self) -> String {
        self.config
            .region()
            .map(ToString::to_string)
            .unwrap_or_default()
    }

    /// The URL of a service on the emulator, or `None` on AWS.
    pub fn emulator_url(&self, path: &str) -> Option<String> {
        self.emulator
            .as_ref()
            .map(|e| format!("{}{path}", e.trim_end_matches('/')))
    }

    /// One request signed with SigV4 and sent through the SDK's own connector, for the few
    /// calls to services whose SDK crates are not compiled in (S3 HeadBucket here; the tests
    /// read S3 and IAM settings back through the emulator with it). Compiling aws-sdk-s3 and
    /// aws-sdk-iam for a handful of requests would add the SDK's largest crates to every
    /// cold build.
    pub fn signed(&self, service: &str, method: &str, url: &str, body: &[u8]) -> Result<Signed> {
        use aws_credential_types::provider::ProvideCredentials;
        use aws_sigv4::http_request::{
            PayloadChecksumKind, SignableBody, SignableRequest, SigningSettings, sign,
        };
        use aws_smithy_runtime_api::client::http::HttpConnector;
        use aws_smithy_types::body::SdkBody;

        let region = self.region();
        let provider = self
            .config
            .credentials_provider()
            .context("no AWS credentials provider is configured")?;
        let credentials = self
            .runtime
            .block_on(provider.provide_credentials())
            .map_err(|e| anyhow::anyhow!("loading AWS credentials: {}", DisplayErrorContext(&e)))?;
        let identity = credentials.into();
        let mut settings = SigningSettings::default();
        if service == "s3" {
            settings.payload_checksum_kind = PayloadChecksumKind::XAmzSha256;
        }
        // IAM is a global service, signed for us-east-1.
        let signing_region = if service == "iam" {
            "us-east-1"
        } else {
            &region
        };
        let params = aws_sigv4::sign::v4::SigningParams::builder()
            .identity(&identity)
            .region(signing_region)
            .name(service)
            .time(std::time::SystemTime::now())
            .settings(settings)
            .build()
            .context("signing parameters")?
            .into();
        let content_type = [("content-type", "application/x-www-form-urlencoded")];
        let headers = if body.is_empty() {
            &content_type[..0]
        } else {
            &content_type[..]
        };
        let signable = SignableRequest::new(
            method,
            url,
            headers.iter().copied(),
            SignableBody::Bytes(body),
        )
        .context("signing the request")?;
        let (instructions, _signature) = sign(signable, &params)
            .context("signing the request")?
            .into_parts();
        let mut request = http::Request::builder().method(method).uri(url);
        for (k, v) in headers {
            request = request.header(*k, *v);
        }
        let mut request = request
            .body(SdkBody::from(body.to_vec()))
            .context("building the request")?;
        instructions.apply_to_request_http1x(&mut request);
        let request = aws_smithy_runtime_api::http::Request::try_from(request)
            .context("building the request")?;
        let connector = aws_smithy_http_client::Connector::builder()
            .tls_provider(tls::Provider::Rustls(
                tls::rustls_provider::CryptoMode::Ring,
            ))
            .build();
        let response = self
            .runtime
            .block_on(async {
                let response =
                    tokio::time::timeout(Duration::from_secs(30), connector.call(request)).await;
                match response {
                    Err(_) => Err(anyhow::anyhow!("no answer within 30s")),
                    Ok(Err(e)) => Err(anyhow::anyhow!("{}", DisplayErrorContext(&e))),
                    Ok(Ok(response)) => {
                        let status = response.status().as_u16();
                        let headers = response
                            .headers()
                            .iter()
                            .map(|(k, v)| (k.to_ascii_lowercase(), v.to_string()))
                            .collect();
                        let bytes =
                            aws_smithy_types::byte_stream::ByteStream::new(response.into_body())
                                .collect()
                                .await
                                .map(|b| b.into_bytes().to_vec())
                                .unwrap_or_default();
                        Ok(Signed {
                            status,
                            headers,
                            body: String::from_utf8_lossy(&bytes).into_owned(),
                        })
                    }
                }
            })
            .with_context(|| format!("{service} {method} {url}"))?;
        Ok(response)
    }

    pub fn login_token(&self) -> Result<Token> {
        let ecr = aws_sdk_ecr::Client::new(&self.config);
        let out = self
            .runtime
            .block_on(ecr.get_authorization_token().send())
            .map_err(|e| {
                // The SDK has already retried throttling with backoff (standard retry mode).
                let throttled = service_code(&e).is_some_and(|c| c.contains("Throttl"));
                let hint = if throttled {
                    "\n  fix: ECR is throttling this account's GetAuthorizationToken calls (the \
                     SDK retried with backoff): wait a minute and run it again; if it keeps \
                     happening, look for jobs that log in in a loop"
                } else {
                    ""
                };
                anyhow::anyhow!("ecr GetAuthorizationToken failed: {}{hint}", brief(&e))
            })?;
        let data = out
            .authorization_data()
            .first()
            .context("ECR returned no authorization data")?;
        let encoded = data
            .authorization_token()
            .context("ECR returned an empty token")?;
        let decoded = Secret::new(
            String::from_utf8(
                aws_smithy_types::base64::decode(encoded).context("ECR token is not base64")?,
            )
            .context("ECR token is not UTF-8")?,
        );
        let Some((username, password)) = decoded.expose().split_once(':') else {
            bail!("ECR token is not of the form user:password");
        };
        Ok(Token {
            username: username.to_string(),
            password: Secret::new(password.to_string()),
            proxy_endpoint: data.proxy_endpoint().unwrap_or_default().to_string(),
        })
    }
}

/// The service's error code (`ExpiredToken`, `ThrottlingException`), when AWS sent one.
fn service_code<E, R>(e: &aws_sdk_ecr::error::SdkError<E, R>) -> Option<&str>
where
    E: aws_sdk_ecr::error::ProvideErrorMetadata,
{
    e.as_service_error().and_then(|s| s.code())
}

/// `CODE: message` for a service error; the whole context (connection errors, timeouts)
/// otherwise, where the chain is what says what happened.
fn brief<E, R>(e: &aws_sdk_ecr::error::SdkError<E, R>) -> String
where
    E: aws_sdk_ecr::error::ProvideErrorMetadata + std::error::Error + 'static,
    R: fmt::Debug,
{
    match e.as_service_error() {
        Some(s) if s.code().is_some() => format!(
            "{}: {}",
            s.code().unwrap_or_default(),
            s.message().unwrap_or("(no message)")
        ),
        _ => DisplayErrorContext(e).to_string(),
    }
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
}
