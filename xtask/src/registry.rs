//! The OCI distribution API, on ECR and on the local registry: new tags by copying a manifest
//! byte for byte, so the digest never changes (`imagetools create` wraps a single manifest in
//! a new index on older buildx; a copy through the engine depends on its image store), and
//! promotion's copy between registries, blobs first, checked against the digest at each step.

use std::time::Duration;

use anyhow::{Context, Result, bail};
use serde::Deserialize;
use sha2::Digest as _;

use crate::http::{self, Headers, Response};
use crate::retry;
use crate::secret::Secret;
use crate::tools::docker::{IMAGE_MANIFESTS, MANIFEST_TYPES};

/// One registry, with the credentials of a login.
pub struct Registry {
    /// `http://127.0.0.1:5001` or `https://<account>.dkr.ecr.<region>.amazonaws.com`.
    base: String,
    auth: Secret,
}

const TIMEOUT: Duration = Duration::from_secs(60);

impl Registry {
    /// `host` is `host:port`; loopback registries speak plain HTTP, every other one HTTPS.
    pub fn new(host: &str, username: &str, password: &Secret) -> Registry {
        let local = host.starts_with("127.") || host.starts_with("localhost");
        let scheme = if local { "http" } else { "https" };
        let basic = aws_smithy_types::base64::encode(format!("{username}:{}", password.expose()));
        Registry {
            base: format!("{scheme}://{host}"),
            auth: Secret::new(format!("Basic {basic}")),
        }
    }

    fn send(&self, method: &str, url: &str, headers: Headers, body: &[u8]) -> Result<Response> {
        let mut all = vec![("Authorization", self.auth.expose())];
        all.extend_from_slice(headers);
        send(method, url, &all, body)
    }

    fn url(&self, repository: &str, kind: &str, reference: &str) -> String {
        format!("{}/v2/{repository}/{kind}/{reference}", self.base)
    }

    /// The manifest bytes and media type of `repository@reference`, or `None` when missing.
    pub fn manifest(&self, repository: &str, reference: &str) -> Result<Option<(Vec<u8>, String)>> {
        let accept = MANIFEST_TYPES.join(", ");
        let url = self.url(repository, "manifests", reference);
        let got = self.send("GET", &url, &[("Accept", &accept)], b"");
        let got = got.with_context(|| format!("reading {repository}:{reference}"))?;
        match (got.status, got.text()) {
            (200, _) => {}
            (404, _) => return Ok(None),
            (status, text) => {
                bail!("the registry answered {status} for {repository}:{reference}: {text}")
            }
        }
        let media_type = got.header("content-type").unwrap_or_default().to_string();
        if !MANIFEST_TYPES.contains(&media_type.as_str()) {
            bail!("{repository}:{reference} is served as {media_type:?}, not a manifest");
        }
        Ok(Some((got.body, media_type)))
    }

    /// The digest `repository:tag` names now, or `None` when there is no such tag.
    pub fn tag_digest(&self, repository: &str, tag: &str) -> Result<Option<String>> {
        let manifest = self.manifest(repository, tag)?;
        Ok(manifest.map(|(body, _)| sha256(&body)))
    }

    /// Puts `manifest` under `reference` and checks the registry stored it byte for byte.
    fn put_manifest(
        &self,
        repository: &str,
        reference: &str,
        manifest: &[u8],
        media_type: &str,
    ) -> Result<()> {
        let url = self.url(repository, "manifests", reference);
        let put = self.send("PUT", &url, &[("Content-Type", media_type)], manifest);
        let put = put.with_context(|| format!("tagging {repository}:{reference}"))?;
        let (status, text) = (put.status, put.text());
        if !(200..300).contains(&status) {
            bail!("the registry refused {repository}:{reference}: HTTP {status} {text}");
        }
        let expected = sha256(manifest);
        let stored = put.header("docker-content-digest");
        if let Some(stored) = stored.filter(|d| *d != expected) {
            bail!("the registry stored {repository}:{reference} as {stored}, not {expected}");
        }
        Ok(())
    }

    /// Points each tag of `repository` at the manifest `digest` already holds.
    pub fn copy_tags(&self, repository: &str, digest: &str, tags: &[String]) -> Result<()> {
        let found = self.manifest(repository, digest)?;
        let (manifest, media_type) =
            found.with_context(|| format!("{repository}@{digest} is not in the registry"))?;
        for tag in tags {
            self.put_manifest(repository, tag, &manifest, &media_type)?;
        }
        Ok(())
    }

    fn has_blob(&self, repository: &str, digest: &str) -> Result<bool> {
        let head = self.send("HEAD", &self.url(repository, "blobs", digest), &[], b"")?;
        Ok(head.status == 200)
    }

    /// A blob, following the registry's redirect (ECR sends layers from S3) without sending
    /// the registry's credentials there.
    fn blob(&self, repository: &str, digest: &str) -> Result<Vec<u8>> {
        let got = self.send("GET", &self.url(repository, "blobs", digest), &[], b"")?;
        let got = match (got.status, got.header("location")) {
            (300..=399, Some(location)) => send("GET", location, &[], b"")?,
            _ => got,
        };
        let status = got.status;
        if status != 200 {
            bail!("the registry answered {status} for blob {digest} of {repository}");
        }
        if sha256(&got.body) != digest {
            bail!("blob {digest} of {repository} arrived with other contents");
        }
        Ok(got.body)
    }

    /// A monolithic upload: start a session, then put the whole blob with its digest.
    fn upload(&self, repository: &str, digest: &str, blob: &[u8]) -> Result<()> {
        let start = self.send("POST", &self.url(repository, "blobs", "uploads/"), &[], b"")?;
        let status = start.status;
        let location = match start.header("location").filter(|_| status == 202) {
            Some(path) if path.starts_with('/') => format!("{}{path}", self.base),
            Some(url) => url.to_string(),
            None => bail!("the registry refused an upload to {repository}: HTTP {status}"),
        };
        let sep = if location.contains('?') { '&' } else { '?' };
        let url = format!("{location}{sep}digest={digest}");
        let octets = [("Content-Type", "application/octet-stream")];
        let put = self.send("PUT", &url, &octets, blob)?;
        let (status, text) = (put.status, put.text());
        if status != 201 {
            bail!("the registry refused blob {digest} for {repository}: HTTP {status} {text}");
        }
        Ok(())
    }
}

/// Requests that fail to connect, or that the registry answers with 429 or 5xx (a registry busy
/// with a concurrent push of the same image answers 500 for a moment), are tried again with
/// the one backoff, which a signal cuts short.
fn send(method: &str, url: &str, headers: Headers, body: &[u8]) -> Result<Response> {
    retry::with_backoff(Duration::from_millis(500), || {
        let result = http::request(method, url, headers, body, TIMEOUT);
        let transient = result
            .as_ref()
            .map_or(true, |r| r.status == 429 || r.status >= 500);
        (result, transient)
    })
}

/// The blobs a single image manifest names.
#[derive(Deserialize)]
struct ImageManifest {
    config: Blob,
    layers: Vec<Blob>,
}

#[derive(Deserialize)]
struct Blob {
    digest: String,
}

/// Copies `from_repository@digest` with its blobs into `to_repository` under `tag`, and
/// refuses anything whose bytes are not that digest.
pub fn copy_image(
    from: &Registry,
    from_repository: &str,
    to: &Registry,
    to_repository: &str,
    digest: &str,
    tag: &str,
) -> Result<()> {
    let (manifest, media_type) = from
        .manifest(from_repository, digest)?
        .with_context(|| format!("{from_repository}@{digest} is not in the source registry"))?;
    if sha256(&manifest) != digest {
        bail!("the source registry served {from_repository}@{digest} with other contents");
    }
    if !IMAGE_MANIFESTS.contains(&media_type.as_str()) {
        bail!("{from_repository}@{digest} is a {media_type}, not a single image manifest");
    }
    let parsed: ImageManifest =
        serde_json::from_slice(&manifest).context("the image manifest is not the expected JSON")?;
    for blob in std::iter::once(&parsed.config).chain(&parsed.layers) {
        if !to.has_blob(to_repository, &blob.digest)? {
            let bytes = from.blob(from_repository, &blob.digest)?;
            to.upload(to_repository, &blob.digest, &bytes)?;
        }
    }
    to.put_manifest(to_repository, tag, &manifest, &media_type)?;
    match to.tag_digest(to_repository, tag)? {
        Some(copied) if copied == digest => Ok(()),
        other => bail!("after the copy {to_repository}:{tag} is {other:?}, not {digest}: refused"),
    }
}

/// `sha256:<hex>` of some bytes: a manifest's or a blob's digest.
pub fn sha256(bytes: &[u8]) -> String {
    let hash = sha2::Sha256::digest(bytes);
    let hex: String = hash.iter().map(|b| format!("{b:02x}")).collect();
    format!("sha256:{hex}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digests_are_sha256_of_the_bytes() {
        assert_eq!(
            sha256(b""),
            "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }

    #[test]
    fn loopback_registries_speak_http_and_the_rest_https() {
        let secret = Secret::new("pw".into());
        assert!(
            Registry::new("127.0.0.1:5001", "AWS", &secret)
                .base
                .starts_with("http://")
        );
        assert!(
            Registry::new("1.dkr.ecr.eu-west-1.amazonaws.com", "AWS", &secret)
                .base
                .starts_with("https://")
        );
        let shown = format!("{:?}", Registry::new("127.0.0.1:5001", "AWS", &secret).auth);
        assert!(!shown.contains("pw"), "{shown}");
    }
}
