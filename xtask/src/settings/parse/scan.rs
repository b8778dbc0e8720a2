//! `[scan]`: the image scan gate's threshold, wait and allow-list, validated with positions.

use std::time::Duration;

use anyhow::Result;
use serde::Deserialize;
use toml::Spanned;

use super::{Cx, RawEnv, valid_duration};
use crate::scan::{Allow, Date, FailOn, Policy, Severity};

/// Without a `[scan]` table: block CRITICAL findings, wait up to ten minutes for the scan.
const DEFAULT_FAIL_ON: FailOn = FailOn::At(Severity::Critical);
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(600);

#[derive(Deserialize, Default, Clone)]
#[serde(deny_unknown_fields)]
pub(super) struct RawScan {
    fail_on: Option<Spanned<String>>,
    timeout: Option<Spanned<String>>,
    allow: Option<Vec<Spanned<RawAllow>>>,
}

#[derive(Deserialize, Clone)]
#[serde(deny_unknown_fields)]
struct RawAllow {
    id: Option<Spanned<String>>,
    reason: Option<Spanned<String>>,
    /// A string `"2027-01-31"` or a TOML date `2027-01-31`.
    expires: Option<Spanned<toml::Value>>,
}

impl Cx<'_> {
    /// `fail_on` and `timeout` override the defaults'; `allow` lists add up (defaults first).
    pub(super) fn scan(&self, defaults: &RawEnv, raw: &RawEnv) -> Result<Policy> {
        let def = defaults.scan.clone().unwrap_or_default();
        let own = raw.scan.clone().unwrap_or_default();
        let fail_on = match own.fail_on.or(def.fail_on) {
            None => DEFAULT_FAIL_ON,
            Some(value) => FailOn::parse(value.get_ref()).ok_or_else(|| {
                self.error(
                    value.span().start,
                    "scan.fail_on",
                    format_args!(
                        "`{}` is not a severity: use one of {}",
                        value.get_ref(),
                        FailOn::choices()
                    ),
                )
            })?,
        };
        let timeout = match own.timeout.or(def.timeout) {
            None => DEFAULT_TIMEOUT,
            Some(value) => duration(value.get_ref()).ok_or_else(|| {
                self.error(
                    value.span().start,
                    "scan.timeout",
                    format_args!(
                        "`{}` is not a positive duration such as 30s, 10m or 1h",
                        value.get_ref()
                    ),
                )
            })?,
        };
        let mut allow: Vec<Allow> = Vec::new();
        for entry in def.allow.iter().chain(own.allow.iter()).flatten() {
            let entry_at = entry.span().start;
            let raw = entry.get_ref();
            let text = |field: &Option<Spanned<String>>, key: &str| -> Result<Spanned<String>> {
                match field {
                    Some(v) if !v.get_ref().trim().is_empty() => Ok(v.clone()),
                    Some(v) => Err(self.error(v.span().start, key, "must not be empty")),
                    None => Err(self.error(
                        entry_at,
                        key,
                        "missing: every [[scan.allow]] entry needs id, reason and expires",
                    )),
                }
            };
            let id = text(&raw.id, "scan.allow.id")?;
            if id.get_ref().chars().any(char::is_whitespace) {
                return Err(self.error(
                    id.span().start,
                    "scan.allow.id",
                    format_args!(
                        "`{}` is not a finding id (such as CVE-2024-12345)",
                        id.get_ref()
                    ),
                ));
            }
            if allow.iter().any(|a| a.id == *id.get_ref()) {
                return Err(self.error(
                    id.span().start,
                    "scan.allow.id",
                    format_args!("`{}` is listed twice", id.get_ref()),
                ));
            }
            let reason = text(&raw.reason, "scan.allow.reason")?;
            let expires = raw.expires.as_ref().ok_or_else(|| {
                self.error(
                    entry_at,
                    "scan.allow.expires",
                    "missing: every [[scan.allow]] entry needs id, reason and expires",
                )
            })?;
            let date_text = match expires.get_ref() {
                toml::Value::String(s) => s.clone(),
                toml::Value::Datetime(d) => d.to_string(),
                other => format!("a {}", other.type_str()),
            };
            let expires_on = Date::parse(&date_text).ok_or_else(|| {
                self.error(
                    expires.span().start,
                    "scan.allow.expires",
                    format_args!("`{date_text}` is not a date YYYY-MM-DD (the last day it counts)"),
                )
            })?;
            allow.push(Allow {
                id: id.into_inner(),
                reason: reason.into_inner(),
                expires: expires_on,
            });
        }
        Ok(Policy {
            fail_on,
            timeout,
            allow,
        })
    }
}

/// `30s`, `10m`, `1h` as a duration; zero is not a wait.
fn duration(text: &str) -> Option<Duration> {
    if !valid_duration(text) {
        return None;
    }
    let (digits, unit) = text.split_at(text.len() - 1);
    let n: u64 = digits.parse().ok()?;
    let secs = match unit {
        "s" => n,
        "m" => n.checked_mul(60)?,
        _ => n.checked_mul(3600)?,
    };
    (secs > 0).then(|| Duration::from_secs(secs))
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use crate::settings::Settings;

    use super::*;

    const BASE: &str = r#"
[defaults]
region = "eu-west-1"
repository = "{env}-sse-streaming-lambda"
platform = "linux/amd64"
build_context = "src"
dockerfile = "src/Dockerfile"
[defaults.terraform]
dir = "infrastructure/terraform"
lock_timeout = "5m"
[defaults.terraform.backend]
bucket = "{env}-state"
[defaults.scan]
fail_on = "CRITICAL"
[environments.prod]
account_id = "222222222222"
"#;

    fn parse(extra: &str) -> Result<Settings> {
        Settings::parse(Path::new("environments.toml"), &format!("{BASE}{extra}"))
    }

    fn err(extra: &str) -> String {
        format!("{:#}", parse(extra).unwrap_err())
    }

    #[test]
    fn scan_settings_merge_and_default() {
        let s = parse("[environments.prod.scan]\nfail_on = \"HIGH\"\ntimeout = \"2m\"\n").unwrap();
        let scan = &s.environments["prod"].scan;
        assert_eq!(scan.fail_on, FailOn::At(Severity::High));
        assert_eq!(scan.timeout, Duration::from_secs(120));
        let s = parse("").unwrap();
        assert_eq!(s.environments["prod"].scan.fail_on, DEFAULT_FAIL_ON);
        assert_eq!(s.environments["prod"].scan.timeout, DEFAULT_TIMEOUT);
    }

    #[test]
    fn allow_lists_add_up_and_take_strings_or_dates() {
        let s = parse(
            "[[defaults.scan.allow]]\nid = \"CVE-1\"\nreason = \"r\"\nexpires = \"2027-01-31\"\n\
             [[environments.prod.scan.allow]]\nid = \"CVE-2\"\nreason = \"r2\"\nexpires = 2027-02-28\n",
        )
        .unwrap();
        let allow = &s.environments["prod"].scan.allow;
        assert_eq!(allow.len(), 2);
        assert_eq!(allow[0].id, "CVE-1");
        assert_eq!(allow[1].expires, Date::parse("2027-02-28").unwrap());
    }

    #[test]
    fn bad_scan_settings_name_line_column_and_key() {
        let e = err("[environments.prod.scan]\nfail_on = \"high\"\n");
        assert!(
            e.contains("environments.toml:18:11")
                && e.contains("`scan.fail_on`")
                && e.contains("CRITICAL, HIGH, MEDIUM, LOW, INFORMATIONAL, UNDEFINED, never"),
            "{e}"
        );
        let e = err("[environments.prod.scan]\ntimeout = \"0m\"\n");
        assert!(e.contains(":18:11") && e.contains("`scan.timeout`"), "{e}");
        let entry = |body: &str| format!("[[environments.prod.scan.allow]]\n{body}");
        let e = err(&entry(
            "id = \"CVE-1\"\nreason = \"r\"\nexpires = \"2027-02-30\"\n",
        ));
        assert!(
            e.contains(":20:11") && e.contains("`scan.allow.expires`") && e.contains("2027-02-30"),
            "{e}"
        );
        let e = err(&entry(
            "id = \"CVE-1\"\nreason = \"r\"\nexpires = 2027-01-31T10:00:00Z\n",
        ));
        assert!(e.contains("`scan.allow.expires`"), "{e}");
        let e = err(&entry("id = \"CVE-1\"\nexpires = \"2027-01-31\"\n"));
        assert!(
            e.contains("`scan.allow.reason`") && e.contains("needs id, reason and expires"),
            "{e}"
        );
        let e = err(&entry(
            "id = \"CVE-1\"\nreason = \" \"\nexpires = \"2027-01-31\"\n",
        ));
        assert!(
            e.contains(":19:10") && e.contains("must not be empty"),
            "{e}"
        );
        let e = err(&entry(
            "id = \"CVE-1\"\nreason = \"r\"\nexpires = \"2027-01-31\"\nurl = \"x\"\n",
        ));
        assert!(e.contains("unknown field `url`"), "{e}");
        let twice = entry("id = \"CVE-1\"\nreason = \"r\"\nexpires = \"2027-01-31\"\n");
        let e = err(&format!("{twice}{twice}"));
        assert!(e.contains(":22:6") && e.contains("listed twice"), "{e}");
    }
}
