//! Every ECR call: the login token, the repository and image lookups, the one image write
//! (PutImage, for retags and the local stack's mirror into the emulator) and the scan of a
//! pushed digest (basic or enhanced scanning).

use anyhow::{Context, Result};
use aws_sdk_ecr::operation::{
    describe_image_scan_findings::DescribeImageScanFindingsError as ScanError,
    describe_images::DescribeImagesError, describe_repositories::DescribeRepositoriesError,
    put_image::PutImageError, start_image_scan::StartImageScanError,
};
use aws_sdk_ecr::types::{EnhancedImageScanFinding, ImageDetail, ImageIdentifier};
use aws_sdk_ecr::types::{ImageScanFinding, ScanStatus};

use super::{Aws, Secret, Token};
use crate::scan::{Finding, Severity};

/// Where the registry's scan of one digest stands.
#[derive(Debug, Clone, PartialEq)]
pub enum ScanState {
    /// No scan of this digest: start one.
    NotFound,
    /// Queued or running (ECR's status): ask again later.
    Pending(String),
    /// Findings are final (basic scanning) or current (enhanced scanning, `ACTIVE`).
    Complete(Vec<Finding>),
    /// The scan cannot give findings: status and ECR's description.
    Failed(String),
}

/// `reference`: a tag, or a digest.
fn image(reference: &str) -> ImageIdentifier {
    let id = ImageIdentifier::builder();
    match reference.starts_with("sha256:") {
        true => id.image_digest(reference).build(),
        false => id.image_tag(reference).build(),
    }
}

impl Aws {
    fn ecr(&self) -> aws_sdk_ecr::Client {
        aws_sdk_ecr::Client::new(&self.config)
    }

    /// ECR GetAuthorizationToken: the registry's user and password. The SDK retries
    /// throttling with backoff itself (standard retry mode).
    pub fn login_token(&self) -> Result<Token> {
        let get = self.ecr().get_authorization_token().send();
        let out = self.call("ecr GetAuthorizationToken", get)?;
        let data = out.authorization_data().first();
        let data = data.context("ECR returned no authorization data")?;
        let token = data.authorization_token().unwrap_or_default();
        let decoded = aws_smithy_types::base64::decode(token).ok();
        let text = decoded.and_then(|bytes| String::from_utf8(bytes).ok());
        let decoded = Secret::new(text.unwrap_or_default());
        let pair = decoded.expose().split_once(':');
        let (username, password) = pair.context("ECR's token is not base64 of user:password")?;
        Ok(Token {
            username: username.to_string(),
            password: Secret::new(password.to_string()),
            proxy_endpoint: data.proxy_endpoint().unwrap_or_default().to_string(),
        })
    }

    pub fn repository_exists(&self, name: &str) -> Result<bool> {
        let describe = self.ecr().describe_repositories().repository_names(name);
        let call = format!("ecr DescribeRepositories {name}");
        let missing = DescribeRepositoriesError::is_repository_not_found_exception;
        let out = self.call_or(&call, describe.send(), missing)?;
        Ok(out.is_some_and(|out| !out.repositories().is_empty()))
    }

    /// ECR DescribeImages of `id` (a tag or a digest) in `registry` (or this account's).
    fn describe(&self, registry: Option<&str>, repo: &str, id: &str) -> Result<Vec<ImageDetail>> {
        let (ecr, registry) = (self.ecr(), registry.map(String::from));
        let describe = ecr.describe_images().set_registry_id(registry);
        let describe = describe.repository_name(repo).image_ids(image(id)).send();
        let missing = DescribeImagesError::is_image_not_found_exception;
        let call = format!("ecr DescribeImages {repo}@{id}");
        let out = self.call_or(&call, describe, missing)?;
        Ok(out.map(|o| o.image_details().to_vec()).unwrap_or_default())
    }

    /// The digest ECR has under `reference` (a tag, or a digest to check it exists).
    pub fn image_digest(&self, repository: &str, reference: &str) -> Result<Option<String>> {
        let found = self.describe(None, repository, reference)?;
        let digest = found.first().and_then(|d| d.image_digest());
        Ok(digest.map(String::from))
    }

    /// The tags `digest` carries in `repo` of `registry`.
    pub fn image_tags(&self, registry: &str, repo: &str, digest: &str) -> Result<Vec<String>> {
        let found = self.describe(Some(registry), repo, digest)?;
        Ok(found.iter().flat_map(|d| d.image_tags()).cloned().collect())
    }

    /// ECR PutImage of `manifest` under each of `tags` (untagged when there is none): the one
    /// image write. An image that already has a tag is fine. An empty `media_type` lets ECR
    /// read it from the manifest.
    pub fn put_manifest(
        &self,
        repository: &str,
        manifest: &str,
        media_type: &str,
        digest: &str,
        tags: &[String],
    ) -> Result<()> {
        let media_type = (!media_type.is_empty()).then(|| media_type.to_string());
        for tag in tags.iter().map(Some).chain(tags.is_empty().then_some(None)) {
            let put = self.ecr().put_image().repository_name(repository);
            let put = put.image_manifest(manifest).image_digest(digest);
            let put = put.set_image_tag(tag.cloned());
            let put = put.set_image_manifest_media_type(media_type.clone()).send();
            let call = format!("ecr PutImage {repository}:{}", tag.map_or(digest, |t| t));
            self.call_or(&call, put, PutImageError::is_image_already_exists_exception)?;
        }
        Ok(())
    }

    /// ECR DescribeImageScanFindings for `digest`, every page (the SDK's paginator).
    pub fn scan_findings(&self, repository: &str, digest: &str) -> Result<ScanState> {
        let call = format!("ecr DescribeImageScanFindings {repository}@{digest}");
        let describe = self.ecr().describe_image_scan_findings();
        let describe = describe.repository_name(repository).image_id(image(digest));
        let mut pages = describe.into_paginator().send();
        let mut findings = Vec::new();
        while let Some(page) = self.runtime.block_on(pages.next()) {
            let missing = ScanError::is_scan_not_found_exception;
            let Some(out) = self.call_or(&call, std::future::ready(page), missing)? else {
                return Ok(ScanState::NotFound);
            };
            let status = out.image_scan_status();
            let described = status.and_then(|s| s.description()).unwrap_or_default();
            match status.and_then(|s| s.status()) {
                Some(ScanStatus::Complete | ScanStatus::Active) => {}
                Some(s @ (ScanStatus::InProgress | ScanStatus::Pending)) => {
                    return Ok(ScanState::Pending(s.as_str().to_string()));
                }
                other => {
                    let status = other.map_or("no status", |s| s.as_str());
                    return Ok(ScanState::Failed(format!("{status}: {described}")));
                }
            }
            if let Some(page) = out.image_scan_findings() {
                findings.extend(page.findings().iter().map(basic));
                findings.extend(page.enhanced_findings().iter().map(enhanced));
            }
        }
        Ok(ScanState::Complete(findings))
    }

    /// ECR StartImageScan. A scan already run today (`LimitExceededException`) is fine: its
    /// findings are what the gate reads.
    pub fn start_scan(&self, repository: &str, digest: &str) -> Result<()> {
        let start = self.ecr().start_image_scan().repository_name(repository);
        let start = start.image_id(image(digest)).send();
        let call = format!("ecr StartImageScan {repository}@{digest}");
        let limit = StartImageScanError::is_limit_exceeded_exception;
        self.call_or(&call, start, limit).map_err(|failure| {
            failure.or_fix(
                "turn on scanning for the repository (scan on push, or the registry's enhanced \
                 scanning), or set scan.fail_on = \"never\" for this environment",
            )
        })?;
        Ok(())
    }
}

/// `name version`, or the name alone.
fn package(name: Option<&str>, version: Option<&str>) -> Option<String> {
    let name = name?;
    Some(version.map_or(name.to_string(), |v| format!("{name} {v}")))
}

fn basic(f: &ImageScanFinding) -> Finding {
    let attr = |key: &str| f.attributes().iter().find(|a| a.key() == key)?.value();
    Finding {
        id: f.name().unwrap_or("unnamed finding").to_string(),
        severity: Severity::from_ecr(f.severity().map_or("", |s| s.as_str())),
        package: package(attr("package_name"), attr("package_version")),
    }
}

fn enhanced(f: &EnhancedImageScanFinding) -> Finding {
    let details = f.package_vulnerability_details();
    let id = details.and_then(|d| d.vulnerability_id()).or(f.title());
    let first = details.and_then(|d| d.vulnerable_packages().first());
    Finding {
        id: id.unwrap_or("unnamed finding").to_string(),
        severity: Severity::from_ecr(f.severity().unwrap_or_default()),
        package: first.and_then(|p| package(p.name(), p.version())),
    }
}

#[cfg(test)]
mod tests {
    use aws_sdk_ecr::types::{
        Attribute, FindingSeverity, PackageVulnerabilityDetails, VulnerablePackage,
    };

    use super::*;

    #[test]
    fn basic_and_enhanced_findings_read_the_same() {
        let b = ImageScanFinding::builder()
            .name("CVE-9999-9999")
            .severity(FindingSeverity::High)
            .attributes(
                Attribute::builder()
                    .key("package_name")
                    .value("moto_fake")
                    .build()
                    .unwrap(),
            )
            .attributes(
                Attribute::builder()
                    .key("package_version")
                    .value("9.9.9")
                    .build()
                    .unwrap(),
            )
            .build();
        assert_eq!(
            basic(&b),
            Finding {
                id: "CVE-9999-9999".into(),
                severity: Severity::High,
                package: Some("moto_fake 9.9.9".into()),
            }
        );
        let e = EnhancedImageScanFinding::builder()
            .severity("UNTRIAGED")
            .title("CVE-2024-1 - openssl")
            .package_vulnerability_details(
                PackageVulnerabilityDetails::builder()
                    .vulnerability_id("CVE-2024-1")
                    .vulnerable_packages(
                        VulnerablePackage::builder()
                            .name("openssl")
                            .version("3.0.1")
                            .build(),
                    )
                    .build(),
            )
            .build();
        assert_eq!(
            enhanced(&e),
            Finding {
                id: "CVE-2024-1".into(),
                severity: Severity::Undefined,
                package: Some("openssl 3.0.1".into()),
            }
        );
    }
}
