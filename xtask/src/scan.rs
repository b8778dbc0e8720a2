//! The scan gate's decisions, kept pure: severities, the `scan.fail_on` threshold, the
//! allow-list and its expiry dates, and the findings table. The runner (`runner/scan.rs`)
//! fetches the findings from ECR; everything it decides with them is here.

use std::fmt;
use std::time::{Duration, SystemTime};

use aws_smithy_types::date_time::{DateTime, Format};
use serde_json::{Value, json};

/// ECR's severities, worst first. Inspector's `UNTRIAGED` and anything unknown count as
/// `UNDEFINED`, the lowest.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Severity {
    Undefined,
    Informational,
    Low,
    Medium,
    High,
    Critical,
}

impl Severity {
    pub const ALL: [Severity; 6] = [
        Severity::Critical,
        Severity::High,
        Severity::Medium,
        Severity::Low,
        Severity::Informational,
        Severity::Undefined,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Severity::Critical => "CRITICAL",
            Severity::High => "HIGH",
            Severity::Medium => "MEDIUM",
            Severity::Low => "LOW",
            Severity::Informational => "INFORMATIONAL",
            Severity::Undefined => "UNDEFINED",
        }
    }

    /// A severity as ECR (basic or enhanced scanning) reports it.
    pub fn from_ecr(text: &str) -> Severity {
        Severity::ALL
            .into_iter()
            .find(|s| s.name().eq_ignore_ascii_case(text))
            .unwrap_or(Severity::Undefined)
    }
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// `scan.fail_on`: the least severe finding that blocks a deployment, or `never`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailOn {
    At(Severity),
    Never,
}

impl FailOn {
    /// The settings' spelling: a severity in capitals, or `never`.
    pub fn parse(text: &str) -> Option<FailOn> {
        if text == "never" {
            return Some(FailOn::Never);
        }
        Severity::ALL
            .into_iter()
            .find(|s| s.name() == text)
            .map(FailOn::At)
    }

    pub fn blocks(self, severity: Severity) -> bool {
        match self {
            FailOn::At(threshold) => severity >= threshold,
            FailOn::Never => false,
        }
    }

    /// The accepted values, for error messages.
    pub fn choices() -> String {
        let mut names: Vec<&str> = Severity::ALL.iter().map(|s| s.name()).collect();
        names.push("never");
        names.join(", ")
    }
}

impl fmt::Display for FailOn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FailOn::At(s) => write!(f, "{s}"),
            FailOn::Never => f.write_str("never"),
        }
    }
}

/// A calendar date, `YYYY-MM-DD` (UTC). Kept as its text: ISO dates order as strings do.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Date(String);

impl Date {
    /// A real date in exactly the form `YYYY-MM-DD` (so `2027-02-30` and `2027-2-3` fail).
    pub fn parse(text: &str) -> Option<Date> {
        let shape = text.len() == 10
            && text.bytes().enumerate().all(|(i, b)| match i {
                4 | 7 => b == b'-',
                _ => b.is_ascii_digit(),
            });
        if !shape {
            return None;
        }
        DateTime::from_str(&format!("{text}T00:00:00Z"), Format::DateTime).ok()?;
        Some(Date(text.to_string()))
    }

    /// The UTC date at `time`.
    pub fn at(time: SystemTime) -> Date {
        let secs = time
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap_or(Duration::ZERO)
            .as_secs();
        let text = DateTime::from_secs(secs as i64)
            .fmt(Format::DateTime)
            .unwrap_or_else(|_| "1970-01-01T00:00:00Z".into());
        Date(text[..10].to_string())
    }

    pub fn today() -> Date {
        Date::at(SystemTime::now())
    }
}

impl fmt::Display for Date {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// One `[[environments.NAME.scan.allow]]` entry: a finding accepted until `expires` (the last
/// day it counts, inclusive), with the reason on record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Allow {
    pub id: String,
    pub reason: String,
    pub expires: Date,
}

impl Allow {
    pub fn expired(&self, today: &Date) -> bool {
        *today > self.expires
    }
}

/// `[scan]` of one environment, defaults applied.
#[derive(Debug, Clone, PartialEq)]
pub struct Policy {
    pub fail_on: FailOn,
    /// How long to wait for the registry's scan of the pushed digest.
    pub timeout: Duration,
    pub allow: Vec<Allow>,
}

/// One finding as ECR reports it (basic scanning's `findings` or enhanced `enhancedFindings`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    /// The vulnerability id: `CVE-…`, `GHSA-…`, or the finding's name.
    pub id: String,
    pub severity: Severity,
    /// `name version` of the affected package, when the scanner says.
    pub package: Option<String>,
}

/// What happens to one finding.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// At or above the threshold and not allowed: the deployment is refused.
    Blocks,
    /// At or above the threshold, accepted by an allow-list entry until its date.
    Allowed { reason: String, expires: Date },
    /// Below the threshold: reported only.
    Below,
}

/// The gate's verdict on one scan.
#[derive(Debug, Clone, PartialEq)]
pub struct Verdict {
    pub fail_on: FailOn,
    /// Worst first, then by id.
    pub rows: Vec<(Finding, Decision)>,
    /// Entries past their date: treated as absent, and warned about.
    pub expired: Vec<Allow>,
    /// Live entries that matched no finding of this image.
    pub unused: Vec<Allow>,
}

/// Decides every finding against the threshold and the allow-list, as of `today`.
pub fn evaluate(findings: &[Finding], policy: &Policy, today: &Date) -> Verdict {
    let (expired, live): (Vec<&Allow>, Vec<&Allow>) =
        policy.allow.iter().partition(|a| a.expired(today));
    let mut rows: Vec<(Finding, Decision)> = findings
        .iter()
        .map(|f| {
            let decision = if !policy.fail_on.blocks(f.severity) {
                Decision::Below
            } else {
                match live.iter().find(|a| a.id == f.id) {
                    Some(a) => Decision::Allowed {
                        reason: a.reason.clone(),
                        expires: a.expires.clone(),
                    },
                    None => Decision::Blocks,
                }
            };
            (f.clone(), decision)
        })
        .collect();
    rows.sort_by(|(a, _), (b, _)| b.severity.cmp(&a.severity).then(a.id.cmp(&b.id)));
    let unused = live
        .into_iter()
        .filter(|a| !findings.iter().any(|f| f.id == a.id))
        .cloned()
        .collect();
    Verdict {
        fail_on: policy.fail_on,
        rows,
        expired: expired.into_iter().cloned().collect(),
        unused,
    }
}

impl Verdict {
    pub fn blocking(&self) -> Vec<&Finding> {
        self.rows
            .iter()
            .filter(|(_, d)| *d == Decision::Blocks)
            .map(|(f, _)| f)
            .collect()
    }

    /// `HIGH 1, LOW 3`, worst first; `none` for a clean image.
    pub fn counts(&self) -> String {
        let counts: Vec<String> = Severity::ALL
            .iter()
            .filter_map(|s| {
                let n = self.rows.iter().filter(|(f, _)| f.severity == *s).count();
                (n > 0).then(|| format!("{s} {n}"))
            })
            .collect();
        if counts.is_empty() {
            "none".into()
        } else {
            counts.join(", ")
        }
    }

    /// The findings table for the step's output, one line per finding.
    pub fn table(&self) -> Vec<String> {
        if self.rows.is_empty() {
            return vec!["no findings".into()];
        }
        let width = self
            .rows
            .iter()
            .map(|(f, _)| f.id.len())
            .max()
            .unwrap_or(0)
            .max(2);
        let mut lines = vec![format!(
            "{:<width$}  {:<13}  {:<24}  decision",
            "id", "severity", "package"
        )];
        for (f, d) in &self.rows {
            lines.push(format!(
                "{:<width$}  {:<13}  {:<24}  {}",
                f.id,
                f.severity.name(),
                f.package.as_deref().unwrap_or("-"),
                describe(d)
            ));
        }
        lines
    }

    /// Warnings to print: expired allow-list entries.
    pub fn warnings(&self, env: &str) -> Vec<String> {
        self.expired
            .iter()
            .map(|a| {
                format!(
                    "scan.allow entry `{}` of environment `{env}` expired on {}: it no longer \
                     allows the finding (renew `expires` with a reason, or remove the entry)",
                    a.id, a.expires
                )
            })
            .collect()
    }

    /// The refusal, naming each blocking finding and the settings that change the outcome.
    pub fn refusal(&self, env: &str, image: &str) -> Option<String> {
        let blocking = self.blocking();
        if blocking.is_empty() {
            return None;
        }
        let ids: Vec<String> = blocking
            .iter()
            .map(|f| format!("{} ({})", f.id, f.severity))
            .collect();
        Some(format!(
            "refusing to deploy {image}: the registry's scan found {} at or above \
             scan.fail_on = \"{}\" for environment `{env}`: {}. Fix the image (update the base \
             image or the package), or accept a finding until a date with \
             [[environments.{env}.scan.allow]] id = \"{}\" reason = \"…\" expires = \"YYYY-MM-DD\", \
             or change scan.fail_on",
            if blocking.len() == 1 {
                "1 finding".to_string()
            } else {
                format!("{} findings", blocking.len())
            },
            self.fail_on,
            ids.join(", "),
            blocking[0].id
        ))
    }

    /// The machine-readable form, which the report turns into the job summary's table.
    pub fn json(&self) -> Value {
        json!({
            "fail_on": self.fail_on.to_string(),
            "counts": self.counts(),
            "findings": self.rows.iter().map(|(f, d)| json!({
                "id": f.id,
                "severity": f.severity.name(),
                "package": f.package,
                "decision": describe(d),
            })).collect::<Vec<_>>(),
            "expired_allow": self.expired.iter().map(|a| &a.id).collect::<Vec<_>>(),
        })
    }
}

fn describe(decision: &Decision) -> String {
    match decision {
        Decision::Blocks => "BLOCKS".into(),
        Decision::Allowed { reason, expires } => format!("allowed until {expires}: {reason}"),
        Decision::Below => "below threshold".into(),
    }
}

/// The job summary's findings table (Markdown), from [`Verdict::json`].
pub fn markdown(scan: &Value) -> String {
    let text = |v: &Value, k: &str| v[k].as_str().unwrap_or("-").replace('|', "\\|");
    let mut md = format!(
        "\n#### Image scan: {} (fail on {})\n\n",
        text(scan, "counts"),
        text(scan, "fail_on")
    );
    let findings = scan["findings"].as_array().cloned().unwrap_or_default();
    if !findings.is_empty() {
        md.push_str("| id | severity | package | decision |\n|---|---|---|---|\n");
        for f in &findings {
            md.push_str(&format!(
                "| {} | {} | {} | {} |\n",
                text(f, "id"),
                text(f, "severity"),
                text(f, "package"),
                text(f, "decision")
            ));
        }
    }
    for id in scan["expired_allow"].as_array().into_iter().flatten() {
        md.push_str(&format!(
            "\nExpired allow-list entry (ignored): `{}`\n",
            id.as_str().unwrap_or_default()
        ));
    }
    md
}

#[cfg(test)]
mod tests {
    use super::*;

    fn finding(id: &str, severity: Severity) -> Finding {
        Finding {
            id: id.into(),
            severity,
            package: Some("openssl 3.0.1".into()),
        }
    }

    fn allow(id: &str, expires: &str) -> Allow {
        Allow {
            id: id.into(),
            reason: "no fix upstream; not reachable".into(),
            expires: Date::parse(expires).unwrap(),
        }
    }

    fn policy(fail_on: &str, allow: Vec<Allow>) -> Policy {
        Policy {
            fail_on: FailOn::parse(fail_on).unwrap(),
            timeout: Duration::from_secs(600),
            allow,
        }
    }

    #[test]
    fn thresholds_block_at_and_above() {
        let high = FailOn::parse("HIGH").unwrap();
        assert!(high.blocks(Severity::Critical));
        assert!(high.blocks(Severity::High));
        assert!(!high.blocks(Severity::Medium));
        assert!(
            FailOn::parse("UNDEFINED")
                .unwrap()
                .blocks(Severity::Undefined)
        );
        assert!(!FailOn::Never.blocks(Severity::Critical));
        for bad in ["high", "SEVERE", "", "Never"] {
            assert_eq!(FailOn::parse(bad), None, "{bad}");
        }
        assert_eq!(Severity::from_ecr("UNTRIAGED"), Severity::Undefined);
        assert_eq!(Severity::from_ecr("critical"), Severity::Critical);
    }

    #[test]
    fn dates_are_validated() {
        for good in ["2027-01-31", "2028-02-29", "1999-12-31"] {
            assert!(Date::parse(good).is_some(), "{good}");
        }
        for bad in [
            "2027-02-30",
            "2027-13-01",
            "2027-2-3",
            "27-01-31",
            "2027/01/31",
            "2027-01-31T00:00:00Z",
            "2027-00-10",
            "2027-02-29",
        ] {
            assert!(Date::parse(bad).is_none(), "{bad}");
        }
        let t = SystemTime::UNIX_EPOCH + Duration::from_secs(1_795_781_045);
        assert_eq!(Date::at(t).to_string(), "2026-11-27");
    }

    #[test]
    fn an_allow_list_entry_counts_through_its_last_day() {
        let entry = allow("CVE-1", "2027-01-31");
        assert!(!entry.expired(&Date::parse("2027-01-30").unwrap()));
        assert!(!entry.expired(&Date::parse("2027-01-31").unwrap()));
        assert!(entry.expired(&Date::parse("2027-02-01").unwrap()));
    }

    #[test]
    fn high_blocks_allowed_passes_expired_blocks_again() {
        let findings = [
            finding("CVE-9999-9999", Severity::High),
            finding("CVE-2020-1", Severity::Low),
        ];
        let today = Date::parse("2027-01-15").unwrap();

        let blocked = evaluate(&findings, &policy("HIGH", vec![]), &today);
        assert_eq!(blocked.blocking().len(), 1);
        let msg = blocked.refusal("prod", "r@sha256:aa").unwrap();
        assert!(
            msg.contains("CVE-9999-9999 (HIGH)")
                && msg.contains("scan.fail_on = \"HIGH\"")
                && msg.contains("[[environments.prod.scan.allow]]"),
            "{msg}"
        );
        assert_eq!(blocked.rows[1].1, Decision::Below);

        let allowed = evaluate(
            &findings,
            &policy("HIGH", vec![allow("CVE-9999-9999", "2027-01-31")]),
            &today,
        );
        assert!(allowed.refusal("prod", "r").is_none());
        assert!(allowed.expired.is_empty() && allowed.unused.is_empty());
        assert!(allowed.table()[1].contains("allowed until 2027-01-31"));

        let expired = evaluate(
            &findings,
            &policy("HIGH", vec![allow("CVE-9999-9999", "2027-01-14")]),
            &today,
        );
        assert!(expired.refusal("prod", "r").is_some());
        let warnings = expired.warnings("prod");
        assert!(
            warnings.len() == 1 && warnings[0].contains("expired on 2027-01-14"),
            "{warnings:?}"
        );
        assert_eq!(expired.json()["expired_allow"][0], "CVE-9999-9999");
    }

    #[test]
    fn critical_lets_high_through_and_never_blocks_nothing() {
        let findings = [finding("CVE-9999-9999", Severity::High)];
        let today = Date::parse("2027-01-15").unwrap();
        assert!(
            evaluate(&findings, &policy("CRITICAL", vec![]), &today)
                .refusal("local", "r")
                .is_none()
        );
        assert!(
            evaluate(&findings, &policy("never", vec![]), &today)
                .refusal("local", "r")
                .is_none()
        );
        let clean = evaluate(
            &[],
            &policy("LOW", vec![allow("CVE-1", "2030-01-01")]),
            &today,
        );
        assert_eq!(clean.counts(), "none");
        assert_eq!(clean.table(), ["no findings"]);
        assert_eq!(clean.unused.len(), 1);
    }

    #[test]
    fn the_table_lists_worst_first_and_renders_as_markdown() {
        let findings = [
            finding("CVE-2", Severity::Low),
            finding("CVE-1", Severity::Critical),
            finding("CVE-3", Severity::Low),
        ];
        let v = evaluate(
            &findings,
            &policy("CRITICAL", vec![]),
            &Date::parse("2027-01-01").unwrap(),
        );
        let ids: Vec<&str> = v.rows.iter().map(|(f, _)| f.id.as_str()).collect();
        assert_eq!(ids, ["CVE-1", "CVE-2", "CVE-3"]);
        assert_eq!(v.counts(), "CRITICAL 1, LOW 2");
        let md = markdown(&v.json());
        assert!(
            md.contains("#### Image scan: CRITICAL 1, LOW 2 (fail on CRITICAL)"),
            "{md}"
        );
        assert!(
            md.contains("| CVE-1 | CRITICAL | openssl 3.0.1 | BLOCKS |"),
            "{md}"
        );
    }
}
