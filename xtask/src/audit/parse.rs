//! The auditors' output as types: checkov (`--output json`), hadolint (`--format json`) and
//! parliament (`--json`).

use std::collections::BTreeSet;

use anyhow::{Context, Result, bail};
use serde::Deserialize;

// ---------------------------------------------------------------------------------------------
// checkov (`--output json`).

/// checkov prints one report object per framework, a list of them for several frameworks,
/// and a bare summary when it found nothing to scan.
#[derive(Deserialize)]
#[serde(untagged)]
pub(crate) enum CheckovOutput {
    Many(Vec<CheckovItem>),
    One(CheckovItem),
}

#[derive(Deserialize)]
#[serde(untagged)]
pub(crate) enum CheckovItem {
    Report(CheckovReport),
    Empty(CheckovSummary),
}

#[derive(Debug, Deserialize)]
pub struct CheckovReport {
    pub check_type: String,
    pub results: CheckovResults,
    pub summary: CheckovSummary,
}

#[derive(Debug, Deserialize)]
pub struct CheckovResults {
    #[serde(default)]
    pub failed_checks: Vec<CheckovCheck>,
}

#[derive(Debug, Deserialize)]
pub struct CheckovCheck {
    pub check_id: String,
    #[serde(default)]
    pub check_name: String,
    pub resource: String,
    /// Relative to the directory checkov ran in, with a leading `/`.
    #[serde(default)]
    pub repo_file_path: String,
    #[serde(default)]
    pub file_line_range: Vec<u64>,
}

#[derive(Debug, Deserialize)]
pub struct CheckovSummary {
    pub passed: u64,
    pub failed: u64,
    pub skipped: u64,
    pub parsing_errors: u64,
    pub resource_count: u64,
}

/// A failed checkov check, or the inline skips of one report.
#[derive(Debug, Clone, PartialEq)]
pub struct CheckovFinding {
    /// `terraform`, `bootstrap` (the directory under `infrastructure/`) or `dockerfile`.
    pub root: String,
    pub id: String,
    /// As checkov names it; for a Dockerfile `<path>.<INSTRUCTION>`, or `<path>` for a check
    /// of the whole file (checkov's trailing `.` dropped).
    pub resource: String,
    pub name: String,
    /// `#checkov:skip` comments found (the check is then `inline skip`): forbidden, because
    /// the suppression file is the only place a finding is accepted.
    pub inline_skips: u64,
}

/// The root a finding belongs to: the directory under `infrastructure/`, or `dockerfile`.
pub(crate) fn checkov_root(check_type: &str, repo_file_path: &str) -> String {
    if check_type == "dockerfile" {
        return "dockerfile".into();
    }
    let path = repo_file_path.trim_start_matches('/');
    let under = path.strip_prefix("infrastructure/").unwrap_or(path);
    match under.split_once('/') {
        Some((root, _)) => root.to_string(),
        None => under.to_string(),
    }
}

/// Every failed check of one checkov run. A scan that found nothing, or could not parse a
/// file, is an error: it would otherwise pass by seeing less.
pub fn parse_checkov(what: &str, text: &str) -> Result<Vec<CheckovFinding>> {
    let output: CheckovOutput = serde_json::from_str(text)
        .with_context(|| format!("checkov ({what}): unexpected --output json"))?;
    let items = match output {
        CheckovOutput::Many(items) => items,
        CheckovOutput::One(item) => vec![item],
    };
    let mut findings = Vec::new();
    for item in items {
        let report = match item {
            CheckovItem::Report(report) => report,
            CheckovItem::Empty(summary) => bail!(
                "checkov ({what}) scanned no resources ({} checks passed, {} failed): is the \
                 path right?",
                summary.passed,
                summary.failed
            ),
        };
        if report.summary.parsing_errors > 0 {
            bail!(
                "checkov ({what}) could not parse {} file(s) of framework {}",
                report.summary.parsing_errors,
                report.check_type
            );
        }
        if report.summary.resource_count == 0 {
            bail!(
                "checkov ({what}) found no {} resources: is the path right?",
                report.check_type
            );
        }
        if report.summary.skipped > 0 {
            findings.push(CheckovFinding {
                root: checkov_root(&report.check_type, ""),
                id: "inline skip".into(),
                resource: format!("{what} ({})", report.check_type),
                name: String::new(),
                inline_skips: report.summary.skipped,
            });
        }
        for check in report.results.failed_checks {
            findings.push(CheckovFinding {
                root: checkov_root(&report.check_type, &check.repo_file_path),
                id: check.check_id,
                resource: check.resource.trim_end_matches('.').to_string(),
                name: check.check_name,
                inline_skips: 0,
            });
        }
    }
    Ok(findings)
}

// ---------------------------------------------------------------------------------------------
// hadolint (`--format json`).

#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct HadolintFinding {
    pub code: String,
    pub level: String,
    pub line: u64,
    pub message: String,
    pub file: String,
}

pub fn parse_hadolint(text: &str) -> Result<Vec<HadolintFinding>> {
    serde_json::from_str(text).context("hadolint: unexpected --format json output")
}

// ---------------------------------------------------------------------------------------------
// parliament (`--json`: one finding per line).

#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct ParliamentFinding {
    pub issue: String,
    #[serde(default)]
    pub title: String,
    #[serde(default)]
    pub severity: String,
    #[serde(default)]
    pub detail: Detail,
    #[serde(default)]
    pub location: Location,
}

/// `detail` is a list of `{action, ...}` for some auditors (RESOURCE_MISMATCH), a string or
/// anything else for others.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(untagged)]
pub enum Detail {
    Entries(Vec<DetailEntry>),
    Other(serde_json::Value),
}

impl Default for Detail {
    fn default() -> Self {
        Detail::Other(serde_json::Value::Null)
    }
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct DetailEntry {
    #[serde(default)]
    pub action: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
pub struct Location {
    #[serde(default)]
    pub actions: Vec<String>,
    /// The escalation method, for PRIVILEGE_ESCALATION.
    #[serde(rename = "type", default)]
    pub kind: Option<String>,
}

impl ParliamentFinding {
    /// Every action the finding names (`location.actions` and each detail's `action`),
    /// lowercase.
    pub fn actions(&self) -> BTreeSet<String> {
        let mut actions: BTreeSet<String> = self
            .location
            .actions
            .iter()
            .map(|a| a.to_ascii_lowercase())
            .collect();
        if let Detail::Entries(entries) = &self.detail {
            actions.extend(
                entries
                    .iter()
                    .filter_map(|e| e.action.as_deref())
                    .map(str::to_ascii_lowercase),
            );
        }
        actions
    }
}

pub fn parse_parliament(text: &str) -> Result<Vec<ParliamentFinding>> {
    text.lines()
        .filter(|line| !line.trim().is_empty())
        .map(|line| {
            serde_json::from_str(line)
                .with_context(|| format!("parliament: unexpected --json line: {line}"))
        })
        .collect()
}
