//! `CmdLine`: one external command as data (program, arguments, environment), printed exactly
//! as xshell prints a `Cmd`, so a dry run, a log line and a test agree. Plans and tool modules
//! build them; the runner fills the placeholders and runs them. Depends on neither.

use std::fmt;

// Values known only at run time, written into command lines as named placeholders.
/// The digest the build reported, or the one already in the registry.
pub const DIGEST: &str = "<digest>";
/// The digest the `live` tag pointed at before this deploy.
pub const LIVE_DIGEST: &str = "<live-digest>";
/// The name of the container the smoke test runs, which is also its function's name in the
/// Lambda emulator (unique per run).
pub const CONTAINER: &str = "<container>";
/// The Lambda emulator's Runtime API, `HOST:PORT/.rt` (see `local::lambda`).
pub const LAMBDA_API: &str = "<lambda-api>";
/// The image's ENTRYPOINT and CMD: one argument in a plan, spliced into several at run time.
pub const IMAGE_COMMAND: &str = "<image-command>";
/// UTC time when the step runs, as `YYYYMMDDTHHMMSSZ`.
pub const NOW: &str = "<now>";
/// This run's id (the xtask process id): files one run owns, such as its saved plan, are
/// named with it, so concurrent runs of one environment never share them.
pub const RUN: &str = "<run>";
/// The account layer's Terraform directory: the real root, or on a first run its private copy
/// with local state (see `tools::bootstrap`); known once the state bucket has been looked up.
pub const BOOTSTRAP_ROOT: &str = "<bootstrap-root>";

/// One external command: program, arguments and environment, with placeholders.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct CmdLine {
    pub program: String,
    pub args: Vec<String>,
    /// Extra environment for this command only. Never holds a secret.
    pub env: Vec<(String, String)>,
}

impl CmdLine {
    pub fn new(program: &str) -> CmdLine {
        CmdLine {
            program: program.to_string(),
            ..CmdLine::default()
        }
    }
    pub fn arg(mut self, arg: impl Into<String>) -> CmdLine {
        self.args.push(arg.into());
        self
    }
    pub fn args<I: IntoIterator<Item = S>, S: Into<String>>(mut self, args: I) -> CmdLine {
        self.args.extend(args.into_iter().map(Into::into));
        self
    }
    pub fn env(mut self, env: &[(String, String)]) -> CmdLine {
        self.env.extend(env.iter().cloned());
        self
    }
    /// Replaces each placeholder by its value.
    pub fn resolve(&self, values: &[(&str, &str)]) -> CmdLine {
        let fill = |s: &String| {
            values
                .iter()
                .fold(s.clone(), |acc, (name, value)| acc.replace(name, value))
        };
        CmdLine {
            program: self.program.clone(),
            args: self.args.iter().map(fill).collect(),
            env: self.env.iter().map(|(k, v)| (k.clone(), fill(v))).collect(),
        }
    }
    /// The xshell command, rooted at the shell's directory (the repository root).
    pub fn to_cmd<'a>(&self, sh: &'a xshell::Shell) -> xshell::Cmd<'a> {
        let mut cmd = sh.cmd(&self.program).args(&self.args);
        for (key, value) in &self.env {
            cmd = cmd.env(key, value);
        }
        cmd
    }
    /// Replaces the argument that is exactly `name` by `values`, several arguments in its place.
    pub fn splice(&self, name: &str, values: &[String]) -> CmdLine {
        let mut args = Vec::with_capacity(self.args.len() + values.len());
        for arg in &self.args {
            if arg == name {
                args.extend(values.iter().cloned());
            } else {
                args.push(arg.clone());
            }
        }
        CmdLine {
            args,
            ..self.clone()
        }
    }
    pub fn placeholders(&self) -> Vec<&'static str> {
        [
            DIGEST,
            LIVE_DIGEST,
            NOW,
            CONTAINER,
            LAMBDA_API,
            IMAGE_COMMAND,
            RUN,
            BOOTSTRAP_ROOT,
        ]
        .into_iter()
        .filter(|p| self.args.iter().any(|a| a.contains(p)))
        .collect()
    }
}

/// Printed exactly as xshell prints a `Cmd`, so a dry run, a log line and a test agree.
impl fmt::Display for CmdLine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.program)?;
        for arg in &self.args {
            if arg.chars().any(|c| c.is_ascii_whitespace()) {
                write!(f, " \"{}\"", arg.escape_default())?;
            } else {
                write!(f, " {arg}")?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cmdline_display_matches_xshell() {
        let sh = xshell::Shell::new().unwrap();
        let line = CmdLine::new("docker").args(["buildx", "build", "--label", "a b", "x=<digest>"]);
        assert_eq!(line.to_string(), line.to_cmd(&sh).to_string());
        assert_eq!(
            line.to_string(),
            "docker buildx build --label \"a b\" x=<digest>"
        );
        let resolved = line.resolve(&[(DIGEST, "sha256:ab")]);
        assert_eq!(resolved.args[4], "x=sha256:ab");
        assert_eq!(line.placeholders(), [DIGEST]);
        assert!(resolved.placeholders().is_empty());
        let spliced = CmdLine::new("sh")
            .args(["-c", "x", IMAGE_COMMAND])
            .splice(IMAGE_COMMAND, &["python".into(), "-m x".into()]);
        assert_eq!(spliced.to_string(), "sh -c x python \"-m x\"");
    }
}
