//! Version constraints as Terraform writes them (`required_version = ">= 1.10, < 2.0"`), so the
//! preflight can refuse a Terraform that the configuration would refuse anyway, before `init`.
//! No I/O: the caller reads `versions.tf` and the tool's version.

use std::cmp::Ordering;
use std::fmt;

use anyhow::{Result, bail};

/// A release number, `1.11.4`, `v1.11.4` or `1.10` (`1.10.0`); a pre-release (`1.12.0-beta1`)
/// sorts before its release.
#[derive(Debug, Clone)]
pub struct Version {
    parts: Vec<u64>,
    pre: Option<String>,
}

impl Version {
    pub fn parse(text: &str) -> Option<Version> {
        let text = text.trim().trim_start_matches('v');
        let (numbers, pre) = match text.split_once('-') {
            Some((numbers, pre)) => (numbers, Some(pre.to_string())),
            None => (text, None),
        };
        let parts: Option<Vec<u64>> = numbers.split('.').map(|p| p.parse().ok()).collect();
        let parts = parts.filter(|p| p.len() <= 3)?;
        Some(Version { parts, pre })
    }

    /// What orders versions: the three numbers, then a release after its pre-releases.
    fn key(&self) -> ([u64; 3], bool, Option<&str>) {
        let part = |i| self.parts.get(i).copied().unwrap_or(0);
        let release = self.pre.is_none();
        ([part(0), part(1), part(2)], release, self.pre.as_deref())
    }
}

impl Ord for Version {
    fn cmp(&self, other: &Self) -> Ordering {
        self.key().cmp(&other.key())
    }
}

impl PartialOrd for Version {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl PartialEq for Version {
    fn eq(&self, other: &Self) -> bool {
        self.key() == other.key()
    }
}

impl Eq for Version {}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let parts: Vec<String> = self.parts.iter().map(u64::to_string).collect();
        let pre = self.pre.as_ref().map(|pre| format!("-{pre}"));
        write!(f, "{}{}", parts.join("."), pre.unwrap_or_default())
    }
}

/// A comma-separated list of constraints (`~> 1.2` allows 1.x from 1.2, `~> 1.2.3` 1.2.x
/// from 1.2.3); a version must satisfy each.
#[derive(Debug, Clone)]
pub struct Requirement {
    text: String,
    constraints: Vec<(&'static str, Version)>,
}

impl Requirement {
    pub fn parse(text: &str) -> Result<Requirement> {
        let mut constraints = Vec::new();
        for item in text.split(',').map(str::trim) {
            let ops = ["~>", ">=", "<=", "!=", ">", "<", "="];
            let op = ops
                .into_iter()
                .find_map(|op| Some((op, item.strip_prefix(op)?)));
            let (op, version) = op.unwrap_or(("=", item));
            let Some(version) = Version::parse(version) else {
                bail!("`{item}` in \"{text}\" is not a version constraint");
            };
            constraints.push((op, version));
        }
        Ok(Requirement {
            text: text.to_string(),
            constraints,
        })
    }

    pub fn allows(&self, v: &Version) -> bool {
        self.constraints.iter().all(|(op, c)| match *op {
            "=" => v == c,
            "!=" => v != c,
            ">" => v > c,
            ">=" => v >= c,
            "<" => v < c,
            "<=" => v <= c,
            // `~>`: the last given part may grow; the ones before it are fixed.
            _ => {
                let fixed = c.parts.len().saturating_sub(1).max(1);
                v >= c && v.key().0[..fixed] == c.key().0[..fixed]
            }
        })
    }
}

impl fmt::Display for Requirement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

/// The `required_version` string of a `terraform { }` block, with its 1-based line, if any.
/// Comments (`#`, `//`) are skipped; the value is the first quoted string after `=`.
pub fn required_version(tf: &str) -> Option<(String, usize)> {
    tf.lines().enumerate().find_map(|(i, line)| {
        let line = line.trim();
        if line.starts_with('#') || line.starts_with("//") {
            return None;
        }
        let rest = line.strip_prefix("required_version")?.trim_start();
        let rest = rest.strip_prefix('=')?.trim_start().strip_prefix('"')?;
        Some((rest[..rest.find('"')?].to_string(), i + 1))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn allows(req: &str, v: &str) -> bool {
        Requirement::parse(req)
            .unwrap()
            .allows(&Version::parse(v).unwrap())
    }

    #[test]
    fn constraints_follow_terraform() {
        assert!(allows(">= 1.10", "1.11.4"));
        assert!(allows(">= 1.10", "1.10.0"));
        assert!(!allows(">= 1.10", "1.5.7"));
        assert!(!allows(">= 1.10", "1.9.8"));
        assert!(allows("~> 1.10", "1.99.0"));
        assert!(!allows("~> 1.10", "2.0.0"));
        assert!(!allows("~> 1.10", "1.9.0"));
        assert!(allows("~> 1.10.2", "1.10.9"));
        assert!(!allows("~> 1.10.2", "1.11.0"));
        assert!(!allows("~> 1.10.2", "1.10.1"));
        assert!(allows("= 1.11.4", "1.11.4"));
        assert!(allows("1.11.4", "1.11.4"));
        assert!(!allows("=1.11.4", "1.11.5"));
        assert!(allows(">= 1.10, < 2.0", "1.11.4"));
        assert!(!allows(">= 1.10, < 1.11", "1.11.4"));
        assert!(allows("> 1.10, != 1.11.3", "1.11.4"));
        assert!(!allows("!= 1.11.4", "1.11.4"));
        assert!(allows("<= 1.11", "1.11.0"));
        assert!(allows("= 1.11", "1.11.0"), "a missing part is 0");
        assert!(!allows("!= 1.11", "1.11.0"));
        assert!(
            !allows(">= 1.12", "1.12.0-beta1"),
            "pre-releases come first"
        );
        assert!(Requirement::parse(">= one").is_err());
        assert!(Requirement::parse(">= 1.10,").is_err());
    }

    #[test]
    fn versions_parse() {
        assert_eq!(Version::parse("v1.5.7").unwrap().to_string(), "1.5.7");
        assert_eq!(
            Version::parse("1.12.0-rc1").unwrap().to_string(),
            "1.12.0-rc1"
        );
        assert!(Version::parse("Terraform").is_none());
        assert!(Version::parse("1.2.3.4").is_none());
    }

    #[test]
    fn required_version_is_read_from_the_terraform_block() {
        let tf =
            "terraform {\n  # required_version = \"0.1\"\n  required_version = \">= 1.10\"\n}\n";
        assert_eq!(required_version(tf), Some((">= 1.10".to_string(), 3)));
        assert_eq!(required_version("terraform {}\n"), None);
        let real = include_str!("../../../infrastructure/terraform/versions.tf");
        let (req, _) = required_version(real).expect("versions.tf has required_version");
        Requirement::parse(&req).unwrap();
    }
}
