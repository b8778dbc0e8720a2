//! The auditors' verdicts, kept pure: checkov, hadolint and parliament output as the rows of one
//! table, parliament's findings matched against `infrastructure/audit-suppressions.toml`.

mod escalation;
pub mod run;

pub use escalation::*;

use std::collections::BTreeSet;
use std::fmt::Write as _;

use anyhow::{Context, Result, bail};
use serde::{Deserialize, Deserializer};
use serde_json::Value;
use toml::Spanned;

/// checkov's own configuration file, the only place a checkov finding is accepted.
pub const CHECKOV_CONFIG: &str = "infrastructure/checkov.yaml";
/// parliament's issue that no entry may accept.
pub const PRIVILEGE_ESCALATION: &str = "PRIVILEGE_ESCALATION";
/// The one privilege-escalation finding the xtask checks instead of accepting.
pub const LAMBDA_UPDATE_ESCALATION: &str = "EditExistingLambdaFunctionWithRole";

/// A value or a list of them, as IAM and checkov write them.
#[derive(Deserialize)]
#[serde(untagged)]
enum OneOrMany<T> {
    Many(Vec<T>),
    One(T),
}

fn list<'de, D: Deserializer<'de>, T: Deserialize<'de>>(d: D) -> Result<Vec<T>, D::Error> {
    Ok(match OneOrMany::deserialize(d)? {
        OneOrMany::Many(many) => many,
        OneOrMany::One(one) => vec![one],
    })
}

/// One `[[parliament]]` entry (parliament's own config matches locations, not actions).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Entry {
    /// `ci` or `execution` (one entry covers every function's execution policy).
    pub policy: String,
    pub issue: String,
    pub actions: BTreeSet<String>,
    pub reason: String,
    #[serde(skip)]
    pub line: usize,
}

/// The suppression file's entries, checked; `path` only names it in errors.
pub fn suppressions(path: &str, text: &str) -> Result<Vec<Entry>> {
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct File {
        #[serde(default)]
        parliament: Vec<Spanned<Entry>>,
    }
    let why = || format!("{path}: not valid (checkov's findings are in {CHECKOV_CONFIG})");
    let file: File = toml::from_str(text).with_context(why)?;
    let entry = |spanned: Spanned<Entry>| {
        let line = text[..spanned.span().start].matches('\n').count() + 1;
        let mut e = spanned.into_inner();
        let at = format!("{path}:{line}: [[parliament]] entry `{}`", e.issue);
        if e.policy != "ci" && e.policy != "execution" {
            let policy = &e.policy;
            bail!("{at}: policy `{policy}` is not rendered: use \"ci\" or \"execution\"");
        }
        if e.issue.trim().eq_ignore_ascii_case(PRIVILEGE_ESCALATION) {
            bail!(
                "{at}: refused: a {PRIVILEGE_ESCALATION} finding is never suppressible; fix the \
                 policy (the lambda:UpdateFunctionCode finding is checked mechanically by \
                 `cargo xtask ci`, see xtask/src/audit/escalation.rs)"
            );
        }
        if e.actions.is_empty() || e.reason.trim().is_empty() {
            bail!("{at}: `actions` and `reason` must not be empty");
        }
        e.actions = e.actions.iter().map(|a| a.to_ascii_lowercase()).collect();
        e.line = line;
        Ok(e)
    };
    file.parliament.into_iter().map(entry).collect()
}

/// One line of the findings table.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    pub auditor: &'static str,
    pub id: String,
    pub resource: String,
    /// `accepted (line N)` of the suppression file, `verified` or `FAILED`.
    pub verdict: String,
    pub note: String,
}

fn row(auditor: &'static str, id: &str, resource: String, verdict: &str, note: String) -> Row {
    let (id, verdict) = (id.to_string(), verdict.to_string());
    Row {
        auditor,
        id,
        resource,
        verdict,
        note,
    }
}

/// One report of checkov's `--output json` (a list for several frameworks, none if it saw none).
#[derive(Default, Deserialize)]
#[serde(default)]
struct CheckovReport {
    check_type: String,
    results: CheckovResults,
    summary: CheckovSummary,
}

#[derive(Default, Deserialize)]
#[serde(default)]
struct CheckovResults {
    failed_checks: Vec<CheckovCheck>,
}

#[derive(Default, Deserialize)]
#[serde(default)]
struct CheckovCheck {
    check_id: String,
    check_name: String,
    resource: String,
    repo_file_path: String,
}

#[derive(Default, Deserialize)]
#[serde(default)]
struct CheckovSummary {
    skipped: u64,
    parsing_errors: u64,
    resource_count: u64,
}

/// One checkov run: each failed check and inline skip fails; seeing less is an error.
pub fn checkov(what: &str, text: &str) -> Result<Vec<Row>> {
    let reports: Vec<CheckovReport> = list(&mut serde_json::Deserializer::from_str(text))
        .with_context(|| format!("checkov ({what}): unexpected --output json"))?;
    let mut rows = Vec::new();
    for report in reports {
        let (kind, s) = (&report.check_type, &report.summary);
        if s.resource_count == 0 || s.parsing_errors > 0 {
            let (n, bad) = (s.resource_count, s.parsing_errors);
            bail!("checkov ({what}): {n} {kind} resources, {bad} unparsable files: wrong path?");
        }
        if s.skipped > 0 {
            let note = format!(
                "{} check(s) skipped by `#checkov:skip` comments; remove them and accept the \
                 finding in {CHECKOV_CONFIG} instead",
                s.skipped
            );
            let resource = format!("{what} ({kind})");
            rows.push(row("checkov", "inline skip", resource, "FAILED", note));
        }
        for c in report.results.failed_checks {
            let (id, file) = (&c.check_id, c.repo_file_path.trim_start_matches('/'));
            // A Dockerfile's whole-file check is `<path>.`.
            let resource = c.resource.trim_end_matches('.').to_string();
            let note = format!(
                "{id} `{}` in {file}: fix it, or accept it in {CHECKOV_CONFIG} \
                 (`{id}:<path regex>`) with its reason",
                c.check_name
            );
            rows.push(row("checkov", id, resource, "FAILED", note));
        }
    }
    Ok(rows)
}

/// hadolint's `--format json`: every finding fails.
pub fn hadolint(text: &str) -> Result<Vec<Row>> {
    #[derive(Deserialize)]
    struct Finding {
        code: String,
        level: String,
        line: u64,
        message: String,
        file: String,
    }
    let findings: Vec<Finding> =
        serde_json::from_str(text).context("hadolint: unexpected --format json output")?;
    let row = |f: Finding| {
        let (code, message, level) = (&f.code, &f.message, &f.level);
        let note = format!("{code} {message} ({level}): the Dockerfile must be hadolint-clean");
        let resource = format!("{}:{}", f.file, f.line);
        row("hadolint", code, resource, "FAILED", note)
    };
    Ok(findings.into_iter().map(row).collect())
}

/// One parliament finding in the policy `label` names: `ci`, or `execution[<function key>]`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct Finding {
    #[serde(skip)]
    pub label: String,
    pub issue: String,
    pub title: String,
    /// A list of `{action, ...}` for RESOURCE_MISMATCH, anything for others.
    detail: Value,
    location: Location,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
struct Location {
    actions: Vec<String>,
    /// The escalation method, for PRIVILEGE_ESCALATION.
    #[serde(rename = "type")]
    kind: Option<String>,
}

/// parliament's `--json` (one finding a line) on the policy that `label` names.
pub fn parliament(label: &str, text: &str) -> Result<Vec<Finding>> {
    let finding = |line: &str| {
        let mut f: Finding = serde_json::from_str(line)
            .with_context(|| format!("parliament: unexpected --json line: {line}"))?;
        f.label = label.to_string();
        Ok(f)
    };
    let lines = text.lines().filter(|l| !l.trim().is_empty());
    lines.map(finding).collect()
}

/// parliament's findings: each needs an entry listing its actions, or is the verified exception.
pub fn evaluate(findings: &[Finding], entries: &[Entry], ci: &Policy, roles: &Roles) -> Vec<Row> {
    let mut used = vec![false; entries.len()];
    let mut rows = Vec::new();
    for f in findings {
        let (label, policy) = (&f.label, f.label.split('[').next().unwrap_or_default());
        let details = f.detail.as_array().into_iter().flatten();
        let actions: BTreeSet<String> = (f.location.actions.iter().map(String::as_str))
            .chain(details.filter_map(|d| d["action"].as_str()))
            .map(str::to_ascii_lowercase)
            .collect();
        let mut resource = format!("{label}: {}", join(&actions));
        let kind = f.location.kind.as_deref().unwrap_or("?");
        let update = BTreeSet::from([UPDATE_FUNCTION_CODE.to_ascii_lowercase()]);
        let hit = entries.iter().position(|e| {
            let issue = e.issue.eq_ignore_ascii_case(&f.issue);
            e.policy == policy && issue && !actions.is_empty() && actions.is_subset(&e.actions)
        });
        let escalation = f.issue.eq_ignore_ascii_case(PRIVILEGE_ESCALATION);
        let exception = policy == "ci" && kind == LAMBDA_UPDATE_ESCALATION && actions == update;
        let checked = (escalation && exception).then(|| verify_lambda_update(ci, roles));
        // No entry has an escalation's issue: `suppressions` refuses them.
        let note = match (&checked, hit) {
            (Some(Ok(facts)), _) => format!("verified not exploitable: {}", facts.join("; ")),
            (Some(Err(why)), _) => {
                let why = why.join("; ");
                format!("{LAMBDA_UPDATE_ESCALATION} is exploitable as rendered: {why}")
            }
            _ if escalation => format!(
                "{PRIVILEGE_ESCALATION} `{kind}` in the {label} policy cannot be accepted: fix the \
                 policy"
            ),
            (_, Some(_)) => String::new(),
            (_, None) => format!(
                "{} ({}) in the {label} policy: no [[parliament]] entry for this issue lists \
                 every action it names; fix the policy, or add one with its reason",
                f.issue, f.title
            ),
        };
        let verdict = match (&checked, hit) {
            (Some(Ok(_)), _) => "verified".to_string(),
            (None, Some(i)) => {
                used[i] = true;
                format!("accepted (line {})", entries[i].line)
            }
            _ => "FAILED".to_string(),
        };
        if escalation {
            resource += &format!(" ({kind})");
        }
        rows.push(row("parliament", &f.issue, resource, &verdict, note));
    }
    for (e, _) in entries.iter().zip(used).filter(|(_, used)| !used) {
        let (actions, line) = (join(&e.actions), e.line);
        let note =
            format!("stale [[parliament]] entry on line {line} matches no finding: delete it");
        let resource = format!("{}: {actions}", e.policy);
        rows.push(row("suppressions", &e.issue, resource, "FAILED", note));
    }
    rows
}

/// The items, or `nothing`.
fn join<T: AsRef<str>>(items: impl IntoIterator<Item = T>) -> String {
    let items: Vec<String> = items.into_iter().map(|i| i.as_ref().to_string()).collect();
    Some(items.join(", "))
        .filter(|s| !s.is_empty())
        .unwrap_or("nothing".into())
}

/// How many rows have this verdict (`accepted`, `verified`, `FAILED`).
pub fn count(rows: &[Row], verdict: &str) -> usize {
    let matching = rows.iter().filter(|r| r.verdict.starts_with(verdict));
    matching.count()
}

/// The table, a line per verified or failed row saying why, and the counts.
pub fn render(rows: &[Row]) -> String {
    let header = ["auditor", "id", "resource", "verdict"].map(str::to_string);
    let cells = |r: &Row| [r.auditor, &r.id, &r.resource, &r.verdict].map(str::to_string);
    let mut table = vec![header];
    table.extend(rows.iter().map(cells));
    let mut widths = [0; 3];
    for row in &table {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = cell.chars().count().max(*width);
        }
    }
    let [w0, w1, w2] = widths;
    let mut out = String::new();
    for [auditor, id, resource, verdict] in &table {
        let _ = writeln!(out, "{auditor:<w0$}  {id:<w1$}  {resource:<w2$}  {verdict}");
    }
    for r in rows.iter().filter(|r| !r.note.is_empty()) {
        let failed = if r.verdict == "FAILED" { "FAILED " } else { "" };
        let (auditor, id, resource, note) = (r.auditor, &r.id, &r.resource, &r.note);
        let _ = writeln!(out, "{failed}{auditor} {id} {resource}: {note}");
    }
    let (accepted, verified) = (count(rows, "accepted"), count(rows, "verified"));
    let (n, failed) = (rows.len(), count(rows, "FAILED"));
    out += &format!("{n} rows: {accepted} accepted, {verified} verified, {failed} FAILED\n");
    out
}

#[cfg(test)]
mod tests;
