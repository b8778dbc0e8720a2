//! Registry-side writes: new tags for an image already pushed, by copying its manifest byte
//! for byte, so the digest can never change.
//!
//! `docker buildx imagetools create` wraps a single manifest in a new index unless the buildx
//! is new enough to know `--prefer-index=false`, and copying through the engine depends on the
//! engine's image store. Both fail silently in some setups; a manifest copy does not. ECR
//! takes it as `BatchGetImage` + `PutImage`, its documented way to retag; the local stack's
//! registry takes the OCI distribution API over loopback HTTP, with the same credentials that
//! the emulator's `GetAuthorizationToken` hands out.

use std::time::Duration;

use anyhow::{Context, Result, bail};

use crate::aws::Aws;
use crate::http;
use crate::secret::Secret;
use crate::tools::docker::MANIFEST_TYPES;

/// Where the manifest copy goes.
pub enum Target<'a> {
    Ecr(&'a Aws),
    /// An OCI registry on loopback, `host:port`, with basic auth.
    Oci {
        registry: &'a str,
        username: &'a str,
        password: &'a Secret,
    },
}

/// Points each tag of `repository` at the manifest `digest` already holds.
pub fn copy_tags(
    target: &Target<'_>,
    repository: &str,
    digest: &str,
    tags: &[String],
) -> Result<()> {
    match target {
        Target::Ecr(aws) => aws.put_tags(repository, digest, tags),
        Target::Oci {
            registry,
            username,
            password,
        } => {
            let auth = basic_auth(username, password);
            let (body, media_type) =
                read_manifest(registry, username, password, repository, digest)?;
            let base = format!("http://{registry}/v2/{repository}/manifests");
            let timeout = Duration::from_secs(30);
            for tag in tags {
                let put = request(
                    "PUT",
                    &format!("{base}/{tag}"),
                    &[
                        ("Authorization", auth.expose()),
                        ("Content-Type", &media_type),
                    ],
                    &body,
                    timeout,
                )
                .with_context(|| format!("tagging {repository}:{tag} on {registry}"))?;
                if !(200..300).contains(&put.status) {
                    bail!(
                        "{registry} refused tag {tag}: HTTP {} {}",
                        put.status,
                        put.text()
                    );
                }
            }
            Ok(())
        }
    }
}

/// The digest `repository:tag` names now, or `None` when there is no such tag. Reads only.
pub fn tag_digest(target: &Target<'_>, repository: &str, tag: &str) -> Result<Option<String>> {
    match target {
        Target::Ecr(aws) => aws.image_digest(repository, tag),
        Target::Oci {
            registry,
            username,
            password,
        } => {
            let auth = basic_auth(username, password);
            let accept = MANIFEST_TYPES.join(", ");
            let got = request(
                "GET",
                &format!("http://{registry}/v2/{repository}/manifests/{tag}"),
                &[("Authorization", auth.expose()), ("Accept", &accept)],
                b"",
                Duration::from_secs(30),
            )
            .with_context(|| format!("reading {repository}:{tag} from {registry}"))?;
            match got.status {
                200 => Ok(got.header("docker-content-digest").map(str::to_string)),
                404 => Ok(None),
                status => bail!("{registry} answered {status} for {repository}:{tag}"),
            }
        }
    }
}

/// One registry request, tried again (3 tries, doubling waits) when the connection fails or
/// the registry answers 429 or 5xx: a registry busy with a concurrent push of the same image
/// answers 500 for a moment. Other answers are the caller's to judge.
fn request(
    method: &str,
    url: &str,
    headers: &[(&str, &str)],
    body: &[u8],
    timeout: Duration,
) -> Result<http::Response> {
    let mut wait = Duration::from_millis(500);
    for attempt in 1.. {
        let result = http::request(method, url, headers, body, timeout);
        let transient = match &result {
            Ok(r) => r.status == 429 || (500..600).contains(&r.status),
            Err(_) => true,
        };
        if !transient || attempt == 3 {
            return result;
        }
        std::thread::sleep(wait);
        wait *= 2;
    }
    unreachable!("the loop returns by the third try")
}

fn basic_auth(username: &str, password: &Secret) -> Secret {
    Secret::new(format!(
        "Basic {}",
        aws_smithy_types::base64::encode(format!("{username}:{}", password.expose()).as_bytes())
    ))
}

/// The manifest bytes and media type of `repository@reference` on a loopback OCI registry.
pub fn read_manifest(
    registry: &str,
    username: &str,
    password: &Secret,
    repository: &str,
    reference: &str,
) -> Result<(Vec<u8>, String)> {
    let auth = basic_auth(username, password);
    let accept = MANIFEST_TYPES.join(", ");
    let got = request(
        "GET",
        &format!("http://{registry}/v2/{repository}/manifests/{reference}"),
        &[("Authorization", auth.expose()), ("Accept", &accept)],
        b"",
        Duration::from_secs(30),
    )
    .with_context(|| format!("reading manifest {reference} from {registry}"))?;
    if got.status != 200 {
        bail!(
            "{registry} answered {} for manifest {repository}@{reference}",
            got.status
        );
    }
    let media_type = got.header("content-type").unwrap_or_default().to_string();
    if !MANIFEST_TYPES.contains(&media_type.as_str()) {
        bail!("{registry} served {repository}@{reference} as {media_type:?}, not a manifest");
    }
    Ok((got.body, media_type))
}
