//! The scan gate: a bounded wait for the registry's scan of a function's digest (one backoff,
//! cut short by a signal), then the verdict. The decisions live in `crate::scan`; this file
//! fetches, waits and reports.

use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use super::{Effect, Reply, Runner};
use crate::aws::ScanState;
use crate::scan::{self, Date, Policy};

/// First wait between two reads of a pending scan; it doubles up to [`POLL_MAX`].
const POLL_FIRST: Duration = Duration::from_secs(2);
const POLL_MAX: Duration = Duration::from_secs(15);

impl Runner<'_> {
    /// Waits for the registry's scan of the function's digest, prints the findings, and
    /// refuses the ones at or above the threshold that the allow-list does not accept.
    pub(super) fn scan_gate(
        &mut self,
        function: &str,
        repository: &str,
        policy: &Policy,
    ) -> Result<()> {
        let digest = self
            .state
            .digest(function)
            .context("no digest to scan")?
            .to_string();
        let image = format!("{repository}@{digest}");
        let started = Instant::now();
        let mut waited = Duration::ZERO;
        let mut wait = POLL_FIRST;
        let mut started_scan = false;
        let target = || (repository.to_string(), digest.clone());
        let findings = loop {
            let (repository, digest) = target();
            let Reply::Scan(state) = self.ask(Effect::ScanFindings { repository, digest })? else {
                bail!("the scan lookup got no answer");
            };
            match state {
                ScanState::Complete(findings) => break findings,
                ScanState::NotFound if !started_scan => {
                    self.report
                        .info("no scan of this digest yet: ecr StartImageScan");
                    let (repository, digest) = target();
                    self.ask(Effect::StartScan { repository, digest })?;
                    started_scan = true;
                    continue;
                }
                ScanState::NotFound => self.report.detail("scan requested, not listed yet"),
                ScanState::Pending(status) => self.report.detail(&format!("scan {status}")),
                ScanState::Failed(why) => bail!(
                    "the registry could not scan {image} ({why}): nothing was deployed; \
                     rebuild on a supported base image, or set scan.fail_on = \"never\" for \
                     environment `{}` to deploy unscanned",
                    self.env.name
                ),
            }
            // Bounded by the waits themselves, so the bound holds whatever the clock says.
            if waited + wait > policy.timeout {
                bail!(
                    "the registry's scan of {image} did not finish within {}s: nothing was \
                     deployed; run again later (the image stays pushed) or raise scan.timeout \
                     for environment `{}`",
                    policy.timeout.as_secs(),
                    self.env.name
                );
            }
            self.ask(Effect::Sleep(wait))
                .context("waiting for the image scan: nothing was deployed")?;
            waited += wait;
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
        self.state.function(function).scan = Some(verdict.report());
        match verdict.refusal(&self.env.name, &image) {
            Some(message) => bail!(message),
            None => Ok(()),
        }
    }
}
