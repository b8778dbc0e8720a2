//! ECR image calls beyond the retag: the scan of a pushed digest (basic or enhanced
//! scanning), starting one, and the image writes and lookups that mirror the local registry's
//! images into the emulator's ECR so the same calls run on the local stack.

use anyhow::{Context, Result, bail};
use aws_sdk_ecr::error::DisplayErrorContext;
use aws_sdk_ecr::types::{EnhancedImageScanFinding, ImageIdentifier, ImageScanFinding, ScanStatus};

use super::Aws;
use crate::scan::{Finding, Severity};

/// Where the registry's scan of one digest stands.
#[derive(Debug, Clone, PartialEq)]
pub enum ScanState {
    /// No scan of this digest: start one.
    NotFound,
    /// Queued or running: ask again later. Holds ECR's status.
    Pending(String),
    /// Findings are final (basic scanning) or current (enhanced scanning, `ACTIVE`).
    Complete(Vec<Finding>),
    /// The scan cannot give findings: status and ECR's description.
    Failed(String),
}

impl Aws {
    fn ecr(&self) -> aws_sdk_ecr::Client {
        aws_sdk_ecr::Client::new(&self.config)
    }

    /// ECR DescribeImageScanFindings for `digest`, every page.
    pub fn scan_findings(&self, repository: &str, digest: &str) -> Result<ScanState> {
        let ecr = self.ecr();
        let id = ImageIdentifier::builder().image_digest(digest).build();
        let mut findings = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let call = ecr
                .describe_image_scan_findings()
                .repository_name(repository)
                .image_id(id.clone())
                .set_next_token(token.clone());
            let out = match self.runtime.block_on(call.send()) {
                Ok(out) => out,
                Err(e)
                    if e.as_service_error()
                        .is_some_and(|s| s.is_scan_not_found_exception()) =>
                {
                    return Ok(ScanState::NotFound);
                }
                Err(e) => bail!(
                    "ecr DescribeImageScanFindings {repository}@{digest} failed: {}",
                    DisplayErrorContext(&e)
                ),
            };
            let status = out.image_scan_status();
            let described = status.and_then(|s| s.description()).unwrap_or_default();
            match status.and_then(|s| s.status()) {
                Some(ScanStatus::Complete | ScanStatus::Active) => {}
                Some(s @ (ScanStatus::InProgress | ScanStatus::Pending)) => {
                    return Ok(ScanState::Pending(s.as_str().to_string()));
                }
                Some(other) => {
                    return Ok(ScanState::Failed(format!(
                        "{}: {described}",
                        other.as_str()
                    )));
                }
                None => return Ok(ScanState::Failed(format!("no status: {described}"))),
            }
            if let Some(page) = out.image_scan_findings() {
                findings.extend(page.findings().iter().map(basic));
                findings.extend(page.enhanced_findings().iter().map(enhanced));
            }
            token = out.next_token().map(String::from);
            if token.is_none() {
                return Ok(ScanState::Complete(findings));
            }
        }
    }

    /// ECR StartImageScan. A scan already run today (`LimitExceededException`) is fine: its
    /// findings are what the gate reads.
    pub fn start_scan(&self, repository: &str, digest: &str) -> Result<()> {
        let id = ImageIdentifier::builder().image_digest(digest).build();
        let call = self
            .ecr()
            .start_image_scan()
            .repository_name(repository)
            .image_id(id);
        match self.runtime.block_on(call.send()) {
            Ok(_) => Ok(()),
            Err(e)
                if e.as_service_error()
                    .is_some_and(|s| s.is_limit_exceeded_exception()) =>
            {
                Ok(())
            }
            Err(e) => bail!(
                "ecr StartImageScan {repository}@{digest} failed: {}\n  fix: turn on scanning \
                 for the repository (scan on push, or the registry's enhanced scanning), or set \
                 scan.fail_on = \"never\" for this environment",
                DisplayErrorContext(&e)
            ),
        }
    }

    /// ECR PutImage of manifest bytes read elsewhere, under `tag` (or untagged). An image
    /// that already has this tag is fine.
    pub fn put_manifest(
        &self,
        repository: &str,
        manifest: &str,
        media_type: &str,
        digest: &str,
        tag: Option<&str>,
    ) -> Result<()> {
        let put = self
            .ecr()
            .put_image()
            .repository_name(repository)
            .image_manifest(manifest)
            .image_manifest_media_type(media_type)
            .image_digest(digest)
            .set_image_tag(tag.map(String::from));
        match self.runtime.block_on(put.send()) {
            Ok(_) => Ok(()),
            Err(e)
                if e.as_service_error()
                    .is_some_and(|s| s.is_image_already_exists_exception()) =>
            {
                Ok(())
            }
            Err(e) => bail!(
                "ecr PutImage {repository}:{} failed: {}",
                tag.unwrap_or(digest),
                DisplayErrorContext(&e)
            ),
        }
    }

    /// The digest ECR has under `reference` (a tag, or a digest to check it exists).
    pub fn image_digest(&self, repository: &str, reference: &str) -> Result<Option<String>> {
        let id = if reference.starts_with("sha256:") {
            ImageIdentifier::builder().image_digest(reference).build()
        } else {
            ImageIdentifier::builder().image_tag(reference).build()
        };
        let call = self
            .ecr()
            .batch_get_image()
            .repository_name(repository)
            .image_ids(id);
        let out = self.runtime.block_on(call.send()).map_err(|e| {
            anyhow::anyhow!(
                "ecr BatchGetImage {repository}:{reference} failed: {}",
                DisplayErrorContext(&e)
            )
        })?;
        match out.images().first() {
            Some(image) => Ok(Some(
                image
                    .image_id()
                    .and_then(|id| id.image_digest())
                    .context("ECR returned an image without a digest")?
                    .to_string(),
            )),
            None => Ok(None),
        }
    }
}

fn basic(f: &ImageScanFinding) -> Finding {
    let attr = |key: &str| {
        f.attributes()
            .iter()
            .find(|a| a.key() == key)
            .and_then(|a| a.value())
    };
    Finding {
        id: f.name().unwrap_or("unnamed finding").to_string(),
        severity: Severity::from_ecr(f.severity().map(|s| s.as_str()).unwrap_or_default()),
        package: attr("package_name").map(|name| match attr("package_version") {
            Some(version) => format!("{name} {version}"),
            None => name.to_string(),
        }),
    }
}

fn enhanced(f: &EnhancedImageScanFinding) -> Finding {
    let details = f.package_vulnerability_details();
    Finding {
        id: details
            .and_then(|d| d.vulnerability_id())
            .or(f.title())
            .unwrap_or("unnamed finding")
            .to_string(),
        severity: Severity::from_ecr(f.severity().unwrap_or_default()),
        package: details
            .and_then(|d| d.vulnerable_packages().first())
            .and_then(|p| {
                p.name().map(|name| match p.version() {
                    Some(version) => format!("{name} {version}"),
                    None => name.to_string(),
                })
            }),
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
