//! Output sinks: terminal lines, GitHub Actions groups and files, and `--json`.
//!
//! Progress always goes to stderr, so stdout carries only the result: a short summary, or
//! with `--json` one JSON document.

use std::{
    fs::OpenOptions,
    io::Write as _,
    time::{Duration, Instant},
};

use serde_json::{Value, json};

use crate::plan::Plan;
use crate::tools::terraform::Outputs;

/// The result fields a human summary and the GitHub step summary show, in order.
const SUMMARY_KEYS: [&str; 9] = [
    "image_uri",
    "digest",
    "reproducible",
    "image",
    "terraform",
    "function_name",
    "function_url",
    "deploy_role_arn",
    "region",
];

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

    pub fn elapsed(&self) -> Duration {
        self.started.elapsed()
    }

    /// The final result: summary lines (or JSON) on stdout, and in GitHub Actions the step
    /// summary and outputs.
    pub fn finish(&self, result: &Value) {
        if self.json {
            println!(
                "{}",
                serde_json::to_string_pretty(result).unwrap_or_default()
            );
        } else {
            let get = |k: &str| result.get(k).and_then(Value::as_str).unwrap_or("");
            println!();
            println!(
                "{} {} --env {} in {:.1}s",
                if get("status") == "ok" {
                    "OK"
                } else {
                    "FAILED"
                },
                get("command"),
                get("env"),
                self.elapsed().as_secs_f64()
            );
            for key in SUMMARY_KEYS {
                if !get(key).is_empty() {
                    println!("  {key:<14} {}", get(key));
                }
            }
            if let Some(tags) = result.get("tags").and_then(Value::as_array) {
                for tag in tags {
                    println!("  {:<14} {}", "tag", tag.as_str().unwrap_or_default());
                }
            }
        }
        if self.github {
            self.github_files(result);
        }
    }

    fn github_files(&self, result: &Value) {
        let get = |k: &str| {
            result
                .get(k)
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string()
        };
        if let Ok(path) = std::env::var("GITHUB_OUTPUT") {
            let mut lines = String::new();
            for key in [
                "digest",
                "image_uri",
                "function_name",
                "function_url",
                "deploy_role_arn",
            ] {
                let value = get(key);
                if !value.is_empty() {
                    lines.push_str(&format!("{key}={value}\n"));
                }
            }
            append(&path, &lines);
        }
        if let Ok(path) = std::env::var("GITHUB_STEP_SUMMARY") {
            let mut md = format!(
                "### cargo xtask {} --env {}: {}\n\n| | |\n|---|---|\n",
                get("command"),
                get("env"),
                get("status")
            );
            for key in SUMMARY_KEYS {
                let value = get(key);
                if !value.is_empty() {
                    md.push_str(&format!("| {key} | `{value}` |\n"));
                }
            }
            if let Some(steps) = result.get("steps").and_then(Value::as_array) {
                md.push_str("\n| step | outcome | seconds |\n|---|---|---|\n");
                for s in steps {
                    md.push_str(&format!(
                        "| {} | {} | {} |\n",
                        s["title"].as_str().unwrap_or_default(),
                        s["outcome"].as_str().unwrap_or_default(),
                        s["seconds"]
                    ));
                }
            }
            if let Some(scan) = result.get("scan").filter(|s| !s.is_null()) {
                md.push_str(&crate::scan::markdown(scan));
            }
            append(&path, &md);
        }
    }
}

/// What a finished run learned, as the JSON result needs it.
#[derive(Debug, Clone, Copy)]
pub struct Ran<'a> {
    pub digest: Option<&'a str>,
    pub built: bool,
    pub changes: Option<bool>,
    pub outputs: Option<&'a Outputs>,
    pub executed: &'a [String],
    pub records: &'a [StepRecord],
    /// The scan gate's verdict, when the plan had one.
    pub scan: Option<&'a Value>,
    /// `from commit <sha> (SOURCE_DATE_EPOCH=<n>)`, read from the image's labels.
    pub reproducible: Option<&'a str>,
}

/// The JSON result of a run, or of a dry run (`ran` is `None`).
pub fn result_json(
    plan: &Plan,
    ran: Option<Ran<'_>>,
    status: &str,
    error: Option<String>,
) -> Value {
    let digest = ran.and_then(|r| r.digest);
    let output = |k: &str| {
        ran.and_then(|r| r.outputs)
            .and_then(|o| o.get(k))
            .and_then(|o| o.value.as_str())
            .map(str::to_string)
    };
    json!({
        "command": plan.command,
        "env": plan.env,
        "status": status,
        "dry_run": ran.is_none(),
        "error": error,
        "digest": digest,
        "image_uri": digest.map(|d| format!("{}@{d}", plan.image_repo)),
        "tags": plan.tags,
        "image": ran.map(|r| if r.built { "built" } else if r.digest.is_some() { "skipped: already in the registry" } else { "" }),
        "terraform": ran.and_then(|r| r.changes).map(|c| if c { "applied" } else { "no changes" }),
        "function_name": output("function_name"),
        "function_url": output("function_url"),
        "deploy_role_arn": output("deploy_role_arn"),
        "region": output("region"),
        "commands": match ran {
            Some(r) => r.executed.to_vec(),
            None => plan.command_lines(),
        },
        "steps": ran.map(|r| step_json(r.records)),
        "scan": ran.and_then(|r| r.scan),
        "reproducible": ran.and_then(|r| r.reproducible),
    })
}

pub fn step_json(records: &[StepRecord]) -> Value {
    Value::Array(
        records
            .iter()
            .map(|r| {
                let (outcome, detail) = match &r.outcome {
                    Outcome::Done => ("ok", String::new()),
                    Outcome::Skipped(why) => ("skipped", why.clone()),
                    Outcome::Failed(why) => ("failed", why.clone()),
                };
                json!({
                    "title": r.title,
                    "outcome": outcome,
                    "detail": detail,
                    "seconds": (r.elapsed.as_secs_f64() * 10.0).round() / 10.0,
                })
            })
            .collect(),
    )
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
