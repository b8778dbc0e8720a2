//! The supply-chain steps of the image plan: the emulator mirror (local stack) and the scan
//! gate, which every `image` and `deploy` runs after the manifest verification.

use super::{Action, DIGEST, Step};
use crate::facts::Git;
use crate::scan::{FailOn, Policy};
use crate::settings::Environment;

/// Local-stack environments only: the emulator's ECR gets the pushed manifest under the
/// push's tags, so the scan and the ECR retag run against it as against ECR.
pub(super) fn mirror(env: &Environment, git: &Git) -> Option<Step> {
    env.local.as_ref()?;
    let tags = super::image::tags(env, git)
        .iter()
        .filter_map(|t| t.rsplit_once(':').map(|(_, tag)| tag.to_string()))
        .collect();
    Some(Step::new(
        "mirror the image into the emulator's ECR (local stack)",
        Action::MirrorToEmulator {
            repository: env.repository.clone(),
            tags,
        },
    ))
}

/// The scan gate, or a note when `scan.fail_on = "never"` turns it off.
pub(super) fn gate(env: &Environment) -> Step {
    let title = format!("image scan gate (fail on {})", env.scan.fail_on);
    match env.scan.fail_on {
        FailOn::Never => Step::new(
            title,
            Action::Note("skipped: scan.fail_on = \"never\" in the settings".into()),
        ),
        FailOn::At(_) => Step::new(
            title,
            Action::ScanGate {
                repository: env.repository.clone(),
                policy: env.scan.clone(),
            },
        ),
    }
}

/// The dry run's lines for the gate.
pub(super) fn describe(repository: &str, policy: &Policy) -> Vec<String> {
    let mut lines = vec![
        format!(
            "aws ecr describe-image-scan-findings --repository-name {repository} \
             --image-id imageDigest={DIGEST}   (start-image-scan when there is none; wait up \
             to {}s)",
            policy.timeout.as_secs()
        ),
        format!(
            "refuse findings at or above {} unless allowed ({} allow-list entries)",
            policy.fail_on,
            policy.allow.len()
        ),
    ];
    for a in &policy.allow {
        lines.push(format!(
            "  allow {} until {}: {}",
            a.id, a.expires, a.reason
        ));
    }
    lines
}
