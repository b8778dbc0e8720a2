//! The run's typed result and its sinks: progress lines on stderr, then the summary on stdout
//! (or with `--json` one [`RunResult`] document), and in GitHub Actions the step summary and
//! the job outputs. Everything shown is rendered from the result, which holds only what the
//! run produced: a failed run lists the step that failed and what came before it, never a tag,
//! digest or URL it did not make.

use std::collections::BTreeMap;
use std::fs::OpenOptions;
use std::io::Write as _;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::plan::Plan;

pub struct Report {
    pub json: bool,
    pub github: bool,
    pub verbose: bool,
    started: Instant,
    warned: Vec<String>,
}

/// How one step ended.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    Done,
    Skipped(String),
    Failed(String),
}

#[derive(Debug, Clone)]
pub struct StepRecord {
    pub title: String,
    pub outcome: Outcome,
    pub elapsed: Duration,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Ok,
    Failed,
    Planned,
}

/// The machine-readable result of one command.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunResult {
    pub command: String,
    pub env: String,
    pub status: Status,
    pub error: Option<String>,
    pub functions: Vec<FunctionResult>,
    /// `applied` or `no changes`, when Terraform planned.
    pub terraform: Option<String>,
    /// Terraform's short string outputs (names, ARNs, URLs) of the root it ran.
    pub outputs: BTreeMap<String, String>,
    pub steps: Vec<StepResult>,
    /// Every command line executed (or, for a dry run, planned), in order.
    pub commands: Vec<String>,
}

/// One function, as far as the run got with it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct FunctionResult {
    pub name: String,
    /// `built`, or where the image came from (`found <reference>`, `copied from <env>`).
    pub image: Option<String>,
    pub digest: Option<String>,
    pub image_uri: Option<String>,
    /// Tags the run wrote or read back at the digest.
    pub tags: Vec<String>,
    pub function_name: Option<String>,
    /// The Function URL Terraform reports.
    pub function_url: Option<String>,
    /// Local stack: the URL that answers for the function on this machine.
    pub local_url: Option<String>,
    pub scan: Option<crate::scan::Report>,
    /// `from commit <sha> (SOURCE_DATE_EPOCH=<n>)`, read from the image's labels.
    pub reproducible: Option<String>,
    /// `<env> since <time>`: where the image ran before it came here.
    pub ran: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StepResult {
    pub title: String,
    /// `ok`, `skipped` or `failed`.
    pub outcome: String,
    pub detail: String,
    pub seconds: f64,
}

impl RunResult {
    /// A dry run: the plan's command lines, nothing done.
    pub fn planned(plan: &Plan) -> RunResult {
        RunResult {
            command: plan.command.to_string(),
            env: plan.env.clone(),
            status: Status::Planned,
            error: None,
            functions: plan
                .functions
                .iter()
                .map(|f| FunctionResult {
                    name: f.name.clone(),
                    ..FunctionResult::default()
                })
                .collect(),
            terraform: None,
            outputs: BTreeMap::new(),
            steps: vec![],
            commands: plan.command_lines(),
        }
    }

    /// The human summary: one line for the run, then each function's facts.
    pub fn summary(&self, elapsed: Duration) -> Vec<String> {
        let status = match self.status {
            Status::Ok => "OK",
            Status::Failed => "FAILED",
            Status::Planned => "PLANNED",
        };
        let mut lines = vec![format!(
            "{status} {} --env {} in {:.1}s",
            self.command,
            self.env,
            elapsed.as_secs_f64()
        )];
        if let Some(step) = self.steps.iter().find(|s| s.outcome == "failed") {
            lines.push(format!("  failed at     {}", step.title));
        }
        if let Some(t) = &self.terraform {
            lines.push(format!("  terraform     {t}"));
        }
        for f in &self.functions {
            if let (Some(digest), Some(ran)) = (&f.digest, &f.ran) {
                let (source, since) = ran.split_once(" since ").unwrap_or((ran, "?"));
                lines.push(format!(
                    "  {} runs {digest} ({}) that {source} has run since {since}",
                    self.env, f.name
                ));
            }
        }
        for f in &self.functions {
            lines.push(format!("  {}", f.name));
            for (key, value) in f.rows() {
                lines.push(format!("    {key:<14} {value}"));
            }
        }
        for (key, value) in &self.outputs {
            if ["deploy_role_arn", "region", "state_bucket"].contains(&key.as_str()) {
                lines.push(format!("  {key:<16} {value}"));
            }
        }
        lines
    }
}

impl FunctionResult {
    /// The facts a summary shows, in order, only those the run produced.
    fn rows(&self) -> Vec<(&'static str, String)> {
        let mut rows = vec![];
        let mut add = |key, value: &Option<String>| {
            if let Some(v) = value {
                rows.push((key, v.clone()));
            }
        };
        add("image", &self.image);
        add("image_uri", &self.image_uri);
        add("reproducible", &self.reproducible);
        add("ran in", &self.ran);
        add("function", &self.function_name);
        add("function_url", &self.function_url);
        add("local url", &self.local_url);
        if let Some(scan) = &self.scan {
            rows.push((
                "scan",
                format!("{} (fail on {})", scan.counts, scan.fail_on),
            ));
        }
        for tag in &self.tags {
            rows.push(("tag", tag.clone()));
        }
        rows
    }
}

impl Report {
    pub fn new(json: bool, verbose: bool) -> Report {
        Report {
            json,
            github: crate::facts::in_github_actions(),
            verbose,
            started: Instant::now(),
            warned: Vec::new(),
        }
    }

    pub fn step_start(&self, index: usize, total: usize, title: &str) {
        if self.github {
            eprintln!("::group::[{index}/{total}] {title}");
        } else {
            eprintln!("==> [{index}/{total}] {title}");
        }
    }

    pub fn step_end(&self, record: &StepRecord) {
        let secs = record.elapsed.as_secs_f64();
        match &record.outcome {
            Outcome::Done => eprintln!("    ok ({secs:.1}s)"),
            Outcome::Skipped(why) => eprintln!("    skipped: {why}"),
            Outcome::Failed(_) => eprintln!("    failed ({secs:.1}s)"),
        }
        if self.github {
            eprintln!("::endgroup::");
        }
    }

    pub fn info(&self, line: &str) {
        eprintln!("    {line}");
    }

    pub fn detail(&self, line: &str) {
        if self.verbose {
            eprintln!("    {line}");
        }
    }

    /// Prints a warning once per distinct text.
    pub fn warn(&mut self, message: &str) {
        if self.warned.iter().any(|w| w == message) {
            return;
        }
        self.warned.push(message.to_string());
        if self.github {
            eprintln!("::warning::{}", escape_command(message));
        } else {
            eprintln!("warning: {message}");
        }
    }

    pub fn error(&self, message: &str) {
        if self.github {
            eprintln!("::error::{}", escape_command(message));
        }
    }

    /// The final result: the summary (or JSON) on stdout, and in GitHub Actions the step
    /// summary and outputs.
    pub fn finish(&self, result: &RunResult) {
        if self.json {
            println!(
                "{}",
                serde_json::to_string_pretty(result).unwrap_or_default()
            );
        } else {
            println!();
            for line in result.summary(self.started.elapsed()) {
                println!("{line}");
            }
        }
        if self.github {
            if let Ok(path) = std::env::var("GITHUB_OUTPUT") {
                append(&path, &github_outputs(result));
            }
            if let Ok(path) = std::env::var("GITHUB_STEP_SUMMARY") {
                append(&path, &step_summary(result, self.started.elapsed()));
            }
        }
    }
}

/// `$GITHUB_OUTPUT` lines: per function `<name>_digest`, `<name>_image_uri`,
/// `<name>_function_url`, and the account layer's `deploy_role_arn`.
pub fn github_outputs(result: &RunResult) -> String {
    let mut lines = String::new();
    for f in &result.functions {
        let key = f.name.replace('-', "_");
        for (suffix, value) in [
            ("digest", &f.digest),
            ("image_uri", &f.image_uri),
            ("function_name", &f.function_name),
            ("function_url", &f.function_url),
        ] {
            if let Some(v) = value {
                lines.push_str(&format!("{key}_{suffix}={v}\n"));
            }
        }
    }
    if let Some(arn) = result.outputs.get("deploy_role_arn") {
        lines.push_str(&format!("deploy_role_arn={arn}\n"));
    }
    lines
}

/// `$GITHUB_STEP_SUMMARY`: the summary, the steps, and each scan's findings.
pub fn step_summary(result: &RunResult, elapsed: Duration) -> String {
    let summary = result.summary(elapsed);
    let mut md = format!(
        "### cargo xtask {} --env {}: {}\n\n```\n{}\n```\n",
        result.command,
        result.env,
        summary[0],
        summary[1..].join("\n")
    );
    if !result.steps.is_empty() {
        md.push_str("\n| step | outcome | seconds |\n|---|---|---|\n");
        for s in &result.steps {
            md.push_str(&format!(
                "| {} | {} | {} |\n",
                s.title, s.outcome, s.seconds
            ));
        }
    }
    for f in &result.functions {
        if let Some(scan) = &f.scan {
            md.push_str(&scan.markdown(&f.name));
        }
    }
    md
}

fn append(path: &str, text: &str) {
    if let Ok(mut file) = OpenOptions::new().create(true).append(true).open(path) {
        let _ = file.write_all(text.as_bytes());
    }
}

/// GitHub workflow commands end at a newline; `%`, CR and LF must be escaped.
fn escape_command(text: &str) -> String {
    text.replace('%', "%25")
        .replace('\r', "%0D")
        .replace('\n', "%0A")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn workflow_commands_are_escaped() {
        assert_eq!(escape_command("a\nb%c"), "a%0Ab%25c");
    }
}
