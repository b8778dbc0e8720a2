//! The runner's supply-chain steps: the emulator mirror of the local registry's images, the
//! ECR copy of deployment tags on the emulator, and the scan gate. The decisions live in
//! `crate::scan`; this file fetches, waits and reports.

use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use super::{Runner, signals};
use crate::aws::ScanState;
use crate::scan::{self, Date, Policy};
use crate::tools::docker::Inspected;
use crate::{facts, retag};

/// First wait between two reads of a pending scan; it doubles up to [`POLL_MAX`].
const POLL_FIRST: Duration = Duration::from_secs(2);
const POLL_MAX: Duration = Duration::from_secs(15);

impl Runner<'_> {
    /// Local stack: puts the run's manifest, byte for byte from the loopback registry, into
    /// the emulator's ECR under each tag.
    pub(super) fn mirror(&mut self, repository: &str, tags: &[String]) -> Result<()> {
        let digest = self.state.digest.clone().context("no digest to mirror")?;
        self.mirror_manifest(repository, &digest, tags)?;
        self.report.info(&format!(
            "the emulator's ECR has {repository}@{digest} as {}",
            tags.join(", ")
        ));
        Ok(())
    }

    fn mirror_manifest(&mut self, repository: &str, digest: &str, tags: &[String]) -> Result<()> {
        let local = self
            .env
            .local
            .as_ref()
            .context("only local-stack environments have an emulator to mirror into")?;
        let token = self
            .login
            .as_ref()
            .context("registry login must come before the mirror")?;
        let (manifest, media_type) = retag::read_manifest(
            &local.registry,
            &token.username,
            &token.password,
            repository,
            digest,
        )?;
        let manifest = String::from_utf8(manifest).context("the manifest is not UTF-8 JSON")?;
        let aws = self.aws()?;
        if tags.is_empty() {
            return aws.put_manifest(repository, &manifest, &media_type, digest, None);
        }
        for tag in tags {
            aws.put_manifest(repository, &manifest, &media_type, digest, Some(tag))?;
        }
        Ok(())
    }

    /// Local stack: the deployment tags also go through ECR BatchGetImage + PutImage on the
    /// emulator (the path real ECR takes), then are read back through ECR.
    pub(super) fn copy_tags_emulator(
        &mut self,
        repository: &str,
        digest: &str,
        tags: &[String],
    ) -> Result<()> {
        // An emulator restarted since the push has forgotten the image (a rollback builds
        // nothing, so no mirror step ran in this run).
        if self.aws()?.image_digest(repository, digest)?.is_none() {
            self.mirror_manifest(repository, digest, &[])?;
        }
        let aws = self.aws()?;
        aws.put_tags(repository, digest, tags)?;
        for tag in tags {
            let found = aws.image_digest(repository, tag)?;
            if found.as_deref() != Some(digest) {
                bail!(
                    "the emulator's ECR has {repository}:{tag} at {found:?}, not {digest} after \
                     PutImage"
                );
            }
        }
        Ok(())
    }

    /// Records, for the summary, the commit the image was built from and that commit's time:
    /// with them anyone can rebuild the digest (README, "Rebuilding a deployed image").
    pub(super) fn note_source(&mut self, found: &Inspected) {
        let epoch = found.created.as_deref().and_then(facts::source_date_epoch);
        if let (Some(revision), Some(epoch)) = (&found.revision, epoch) {
            let line = format!("from commit {revision} (SOURCE_DATE_EPOCH={epoch})");
            self.report.info(&format!("reproducible {line}"));
            self.state.reproducible = Some(line);
        }
    }

    /// Waits for the registry's scan of the run's digest, prints the findings, and refuses
    /// the ones at or above the threshold that the allow-list does not accept.
    pub(super) fn scan_gate(&mut self, repository: &str, policy: &Policy) -> Result<()> {
        let digest = self.state.digest.clone().context("no digest to scan")?;
        let image = format!("{}@{digest}", self.env.image_repo());
        let started = Instant::now();
        let mut wait = POLL_FIRST;
        let mut started_scan = false;
        let findings = loop {
            let state = self.aws()?.scan_findings(repository, &digest)?;
            match state {
                ScanState::Complete(findings) => break findings,
                ScanState::NotFound if !started_scan => {
                    self.report
                        .info("no scan of this digest yet: ecr StartImageScan");
                    self.aws()?.start_scan(repository, &digest)?;
                    started_scan = true;
                    continue;
                }
                ScanState::NotFound => {
                    self.report.detail("scan requested, not listed yet");
                }
                ScanState::Pending(status) => {
                    self.report.detail(&format!("scan {status}"));
                }
                ScanState::Failed(why) => bail!(
                    "the registry could not scan {image} ({why}): nothing was deployed; \
                     rebuild on a supported base image, or set scan.fail_on = \"never\" for \
                     environment `{}` to deploy unscanned",
                    self.env.name
                ),
            }
            if started.elapsed() + wait > policy.timeout {
                bail!(
                    "the registry's scan of {image} did not finish within {}s: nothing was \
                     deployed; run again later (the image stays pushed) or raise scan.timeout \
                     for environment `{}`",
                    policy.timeout.as_secs(),
                    self.env.name
                );
            }
            pause(wait)?;
            wait = (wait * 2).min(POLL_MAX);
        };
        let verdict = scan::evaluate(&findings, policy, &Date::today());
        for warning in verdict.warnings(&self.env.name) {
            self.report.warn(&warning);
        }
        self.report.info(&format!(
            "scan of {digest}: {} (fail on {}, {:.0}s)",
            verdict.counts(),
            policy.fail_on,
            started.elapsed().as_secs_f64()
        ));
        for line in verdict.table() {
            self.report.info(&format!("  {line}"));
        }
        for unused in &verdict.unused {
            self.report.detail(&format!(
                "allow-list entry {} matches no finding of this image",
                unused.id
            ));
        }
        let refusal = verdict.refusal(&self.env.name, &image);
        self.state.scan = Some(verdict.json());
        match refusal {
            Some(message) => bail!(message),
            None => Ok(()),
        }
    }
}

/// Sleeps, waking early to stop when a signal arrives.
fn pause(total: Duration) -> Result<()> {
    let until = Instant::now() + total;
    while Instant::now() < until {
        if let Some(sig) = signals::received() {
            bail!(
                "interrupted ({}) while waiting for the image scan: nothing was deployed",
                signals::name(sig)
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Ok(())
}
