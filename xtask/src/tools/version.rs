//! Version constraints as Terraform writes them (`required_version = ">= 1.10, < 2.0"`), so the
//! preflight can refuse a Terraform that the configuration would refuse anyway, before `init`.
//! No I/O: the caller reads `versions.tf` and the tool's version.

use std::cmp::Ordering;
use std::fmt;

use anyhow::{Result, bail};

/// A release number, `1.11.4`; a pre-release (`1.12.0-beta1`) sorts before its release.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Version {
    parts: Vec<u64>,
    pre: Option<String>,
}

impl Version {
    /// `1.11.4`, `v1.11.4`, `1.10`, `1.12.0-beta1`.
    pub fn parse(text: &str) -> Option<Version> {
        let text = text.trim().trim_start_matches('v');
        let (numbers, pre) = match text.split_once('-') {
            Some((n, p)) => (n, Some(p.to_string())),
            None => (text, None),
        };
        let parts: Option<Vec<u64>> = numbers.split('.').map(|p| p.parse().ok()).collect();
        let parts = parts.filter(|p| !p.is_empty() && p.len() <= 3)?;
        Some(Version { parts, pre })
    }

    fn part(&self, i: usize) -> u64 {
        self.parts.get(i).copied().unwrap_or(0)
    }
}

impl Ord for Version {
    fn cmp(&self, other: &Self) -> Ordering {
        (0..3)
            .map(|i| self.part(i).cmp(&other.part(i)))
            .find(|o| o.is_ne())
            .unwrap_or_else(|| match (&self.pre, &other.pre) {
                (None, None) => Ordering::Equal,
                (Some(_), None) => Ordering::Less,
                (None, Some(_)) => Ordering::Greater,
                (Some(a), Some(b)) => a.cmp(b),
            })
    }
}

impl PartialOrd for Version {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let parts: Vec<String> = self.parts.iter().map(u64::to_string).collect();
        f.write_str(&parts.join("."))?;
        if let Some(pre) = &self.pre {
            write!(f, "-{pre}")?;
        }
        Ok(())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    Eq,
    Ne,
    Gt,
    Ge,
    Lt,
    Le,
    /// `~> 1.2` allows 1.x from 1.2; `~> 1.2.3` allows 1.2.x from 1.2.3.
    Pessimistic,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Constraint {
    op: Op,
    version: Version,
}

impl Constraint {
    fn allows(&self, v: &Version) -> bool {
        let c = &self.version;
        match self.op {
            Op::Eq => v == c,
            Op::Ne => v != c,
            Op::Gt => v > c,
            Op::Ge => v >= c,
            Op::Lt => v < c,
            Op::Le => v <= c,
            Op::Pessimistic => {
                // The last given part may grow; the ones before it are fixed.
                let fixed = c.parts.len().saturating_sub(1).max(1);
                v >= c && (0..fixed).all(|i| v.part(i) == c.part(i))
            }
        }
    }
}

/// A comma-separated list of constraints; a version must satisfy each.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Requirement {
    text: String,
    constraints: Vec<Constraint>,
}

impl Requirement {
    pub fn parse(text: &str) -> Result<Requirement> {
        let mut constraints = Vec::new();
        for item in text.split(',') {
            let item = item.trim();
            let (op, rest) = [
                ("~>", Op::Pessimistic),
                (">=", Op::Ge),
                ("<=", Op::Le),
                ("!=", Op::Ne),
                (">", Op::Gt),
                ("<", Op::Lt),
                ("=", Op::Eq),
            ]
            .iter()
            .find_map(|(sym, op)| item.strip_prefix(sym).map(|rest| (*op, rest)))
            .unwrap_or((Op::Eq, item));
            let Some(version) = Version::parse(rest) else {
                bail!("`{item}` in \"{text}\" is not a version constraint");
            };
            constraints.push(Constraint { op, version });
        }
        Ok(Requirement {
            text: text.to_string(),
            constraints,
        })
    }

    pub fn allows(&self, v: &Version) -> bool {
        self.constraints.iter().all(|c| c.allows(v))
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
        let end = rest.find('"')?;
        Some((rest[..end].to_string(), i + 1))
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
