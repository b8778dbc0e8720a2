//! The scan gate's decisions, kept pure: severities, the `scan.fail_on` threshold, the
//! allow-list and its expiry dates, and the findings table. The runner (`runner/scan.rs`)
//! fetches the findings from ECR; everything it decides with them is here.

use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_smithy_types::date_time::{DateTime, Format};
use serde::{Deserialize, Serialize};

/// ECR's severities, least severe first. Inspector's `UNTRIAGED` and anything unknown count as
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

use Severity::*;

impl Severity {
    /// Worst first.
    pub const ALL: [Severity; 6] = [Critical, High, Medium, Low, Informational, Undefined];

    pub fn name(self) -> &'static str {
        let names = "UNDEFINED INFORMATIONAL LOW MEDIUM HIGH CRITICAL";
        names.split(' ').nth(self as usize).unwrap_or_default()
    }

    /// A severity as ECR (basic or enhanced scanning) reports it.
    pub fn from_ecr(text: &str) -> Severity {
        let named = |s: &Severity| s.name().eq_ignore_ascii_case(text);
        Severity::ALL.into_iter().find(named).unwrap_or(Undefined)
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
        let at = Severity::ALL.into_iter().find(|s| s.name() == text);
        at.map(FailOn::At)
            .or((text == "never").then_some(FailOn::Never))
    }

    pub fn blocks(self, severity: Severity) -> bool {
        matches!(self, FailOn::At(threshold) if severity >= threshold)
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
        let fits = |(c, m): (char, char)| if m == 'd' { c.is_ascii_digit() } else { c == m };
        let shape = text.len() == 10 && text.chars().zip("dddd-dd-dd".chars()).all(fits);
        let real = DateTime::from_str(&format!("{text}T00:00:00Z"), Format::DateTime).is_ok();
        (shape && real).then(|| Date(text.to_string()))
    }

    /// The UTC date at `time`.
    pub fn at(time: SystemTime) -> Date {
        let secs = time.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
        let text = DateTime::from_secs(secs as i64).fmt(Format::DateTime);
        Date(text.unwrap_or_else(|_| "1970-01-01".into())[..10].to_string())
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

impl fmt::Display for Decision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Decision::Blocks => f.write_str("BLOCKS"),
            Decision::Allowed { reason, expires } => write!(f, "allowed until {expires}: {reason}"),
            Decision::Below => f.write_str("below threshold"),
        }
    }
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
    let (expired, live): (Vec<Allow>, Vec<Allow>) =
        policy.allow.iter().cloned().partition(|a| a.expired(today));
    let decide = |f: &Finding| match live.iter().find(|a| a.id == f.id) {
        _ if !policy.fail_on.blocks(f.severity) => Decision::Below,
        Some(a) => Decision::Allowed {
            reason: a.reason.clone(),
            expires: a.expires.clone(),
        },
        None => Decision::Blocks,
    };
    let mut rows: Vec<(Finding, Decision)> =
        findings.iter().map(|f| (f.clone(), decide(f))).collect();
    rows.sort_by(|(a, _), (b, _)| b.severity.cmp(&a.severity).then(a.id.cmp(&b.id)));
    let found = |a: &Allow| findings.iter().any(|f| f.id == a.id);
    let unused = live.into_iter().filter(|a| !found(a)).collect();
    Verdict {
        fail_on: policy.fail_on,
        rows,
        expired,
        unused,
    }
}

impl Verdict {
    pub fn blocking(&self) -> Vec<&Finding> {
        let blocks = self.rows.iter().filter(|(_, d)| *d == Decision::Blocks);
        blocks.map(|(f, _)| f).collect()
    }

    /// `HIGH 1, LOW 3`, worst first; `none` for a clean image.
    pub fn counts(&self) -> String {
        let count = |s: &Severity| {
            let n = self.rows.iter().filter(|(f, _)| f.severity == *s).count();
            (n > 0).then(|| format!("{s} {n}"))
        };
        let counts: Vec<String> = Severity::ALL.iter().filter_map(count).collect();
        let none = counts.is_empty();
        if none {
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
        let report = self.report();
        let width = report
            .findings
            .iter()
            .map(|f| f.id.len())
            .max()
            .unwrap_or(0);
        let line = |[id, severity, package, decision]: [&str; 4]| {
            format!(
                "{id:<w$}  {severity:<13}  {package:<24}  {decision}",
                w = width.max(2)
            )
        };
        let mut lines = vec![line(["id", "severity", "package", "decision"])];
        for f in &report.findings {
            let package = f.package.as_deref().unwrap_or("-");
            lines.push(line([&f.id, &f.severity, package, &f.decision]));
        }
        lines
    }

    /// Warnings to print: expired allow-list entries.
    pub fn warnings(&self, env: &str) -> Vec<String> {
        let warning = |a: &Allow| {
            format!(
                "scan.allow entry `{}` of environment `{env}` expired on {}: it no longer \
                 allows the finding (renew `expires` with a reason, or remove the entry)",
                a.id, a.expires
            )
        };
        self.expired.iter().map(warning).collect()
    }

    /// The refusal, naming each blocking finding and the settings that change the outcome.
    pub fn refusal(&self, env: &str, image: &str) -> Option<String> {
        let blocking = self.blocking();
        let first = &blocking.first()?.id;
        let id = |f: &&Finding| format!("{} ({})", f.id, f.severity);
        let ids: Vec<String> = blocking.iter().map(id).collect();
        let (n, ids, fail_on) = (blocking.len(), ids.join(", "), self.fail_on);
        let findings = format!("{n} finding{}", if n == 1 { "" } else { "s" });
        Some(format!(
            "refusing to deploy {image}: the registry's scan found {findings} at or above \
             scan.fail_on = \"{fail_on}\" for environment `{env}`: {ids}. Fix the image (update \
             the base image or the package), or accept a finding until a date with \
             [[environments.{env}.scan.allow]] id = \"{first}\" reason = \"…\" expires = \
             \"YYYY-MM-DD\", or change scan.fail_on"
        ))
    }

    /// The typed form that the result carries and the job summary renders.
    pub fn report(&self) -> Report {
        let row = |(f, d): &(Finding, Decision)| Row {
            id: f.id.clone(),
            severity: f.severity.name().to_string(),
            package: f.package.clone(),
            decision: d.to_string(),
        };
        Report {
            fail_on: self.fail_on.to_string(),
            counts: self.counts(),
            findings: self.rows.iter().map(row).collect(),
            expired_allow: self.expired.iter().map(|a| a.id.clone()).collect(),
        }
    }
}

/// One scan as the result reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Report {
    pub fail_on: String,
    pub counts: String,
    pub findings: Vec<Row>,
    pub expired_allow: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Row {
    pub id: String,
    pub severity: String,
    pub package: Option<String>,
    pub decision: String,
}

impl Report {
    /// The job summary's findings table (Markdown).
    pub fn markdown(&self, function: &str) -> String {
        let cell = |text: &str| text.replace('|', "\\|");
        let (counts, fail_on) = (cell(&self.counts), cell(&self.fail_on));
        let mut md = format!("\n#### Image scan of {function}: {counts} (fail on {fail_on})\n\n");
        if !self.findings.is_empty() {
            md.push_str("| id | severity | package | decision |\n|---|---|---|---|\n");
        }
        for f in &self.findings {
            let package = f.package.as_deref().unwrap_or("-");
            let cells = [&f.id, &f.severity, package, &f.decision].map(cell);
            md.push_str(&format!("| {} |\n", cells.join(" | ")));
        }
        for id in &self.expired_allow {
            md.push_str(&format!("\nExpired allow-list entry (ignored): `{id}`\n"));
        }
        md
    }
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
        assert_eq!(expired.report().expired_allow, ["CVE-9999-9999"]);
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
        let md = v.report().markdown("web");
        assert!(
            md.contains("#### Image scan of web: CRITICAL 1, LOW 2 (fail on CRITICAL)"),
            "{md}"
        );
        assert!(
            md.contains("| CVE-1 | CRITICAL | openssl 3.0.1 | BLOCKS |"),
            "{md}"
        );
    }
}
