//! `CmdLine`: one external command as data, printed exactly as xshell prints a `Cmd`, so a dry
//! run, a log line and a test agree. An argument may hold a typed [`Slot`], a value only the
//! run learns (the digest a build produced): the runner fills it, a dry run prints it.

use std::fmt;

/// A value known only at run time.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Slot {
    /// A function's image in this run: built, found, or the rollback or promotion target.
    Digest(String),
    /// The digest a function's `live` tag named before this run.
    Live(String),
    /// The account layer's root, or on a first run its private copy on local state.
    BootstrapRoot,
    /// The Lambda emulator's Runtime API, `HOST:PORT/.rt` (see `local::lambda`).
    LambdaApi,
    LambdaNetwork,
    /// The image's ENTRYPOINT and CMD: one argument in a plan, several at run time.
    ImageCommand,
}

impl fmt::Display for Slot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Slot::Digest(function) => write!(f, "<digest:{function}>"),
            Slot::Live(function) => write!(f, "<live:{function}>"),
            Slot::BootstrapRoot => f.write_str("<bootstrap-root>"),
            Slot::LambdaApi => f.write_str("<lambda-api>"),
            Slot::LambdaNetwork => f.write_str("<lambda-network>"),
            Slot::ImageCommand => f.write_str("<image-command>"),
        }
    }
}

/// One argument: text, slots, or both (`repo@<digest:fn>`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Arg(Vec<Part>);

#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Text(String),
    Slot(Slot),
}

impl Arg {
    /// This argument followed by `next` (text, a slot or another argument), in one argument.
    pub fn then(mut self, next: impl Into<Arg>) -> Arg {
        self.0.extend(next.into().0);
        self
    }
}

impl From<Slot> for Arg {
    fn from(slot: Slot) -> Arg {
        Arg(vec![Part::Slot(slot)])
    }
}

impl<T: Into<String>> From<T> for Arg {
    fn from(text: T) -> Arg {
        Arg(vec![Part::Text(text.into())])
    }
}

impl fmt::Display for Arg {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for part in &self.0 {
            match part {
                Part::Text(t) => f.write_str(t)?,
                Part::Slot(s) => write!(f, "{s}")?,
            }
        }
        Ok(())
    }
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct CmdLine {
    pub program: String,
    pub args: Vec<Arg>,
    /// Extra environment for this command only. Never holds a secret.
    pub env: Vec<(String, String)>,
}

/// A command with every slot filled: what actually runs.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Resolved {
    pub program: String,
    pub args: Vec<String>,
    pub env: Vec<(String, String)>,
}

impl CmdLine {
    pub fn new(program: &str) -> CmdLine {
        CmdLine {
            program: program.to_string(),
            ..CmdLine::default()
        }
    }
    pub fn arg(mut self, arg: impl Into<Arg>) -> CmdLine {
        self.args.push(arg.into());
        self
    }
    pub fn args<I: IntoIterator<Item = S>, S: Into<Arg>>(mut self, args: I) -> CmdLine {
        self.args.extend(args.into_iter().map(Into::into));
        self
    }
    pub fn env(mut self, env: &[(String, String)]) -> CmdLine {
        self.env.extend(env.iter().cloned());
        self
    }
    /// Fills every slot through `fill`, which gives one value per slot, or several for an
    /// argument that is the slot alone (the image's command); an unknown slot is an error.
    pub fn resolve<E>(
        &self,
        mut fill: impl FnMut(&Slot) -> Result<Vec<String>, E>,
    ) -> Result<Resolved, E> {
        let mut args = Vec::with_capacity(self.args.len());
        for arg in &self.args {
            if let [Part::Slot(slot)] = arg.0.as_slice() {
                args.extend(fill(slot)?);
                continue;
            }
            let mut text = String::new();
            for part in &arg.0 {
                match part {
                    Part::Text(t) => text.push_str(t),
                    Part::Slot(s) => text.push_str(&fill(s)?.join(" ")),
                }
            }
            args.push(text);
        }
        let (program, env) = (self.program.clone(), self.env.clone());
        Ok(Resolved { program, args, env })
    }
    /// The command as it runs when it holds no slot (`None` otherwise).
    pub fn plain(&self) -> Option<Resolved> {
        self.resolve(|_| Err(())).ok()
    }
}

impl Resolved {
    /// The xshell command, rooted at the shell's directory (the repository root).
    pub fn to_cmd<'a>(&self, sh: &'a xshell::Shell) -> xshell::Cmd<'a> {
        let mut cmd = sh.cmd(&self.program).args(&self.args);
        for (key, value) in &self.env {
            cmd = cmd.env(key, value);
        }
        cmd
    }
}

/// Printed exactly as xshell prints a `Cmd`.
impl fmt::Display for Resolved {
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

/// Slots print as themselves, `<digest:NAME>`.
impl fmt::Display for CmdLine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let shown = self.resolve(|slot| Ok::<_, fmt::Error>(vec![slot.to_string()]))?;
        shown.fmt(f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_print_like_xshell_and_slots_resolve() {
        let sh = xshell::Shell::new().unwrap();
        let digest = Slot::Digest("web".into());
        let line = CmdLine::new("docker")
            .args(["buildx", "build", "--label", "a b"])
            .arg(Arg::from("x@").then(digest.clone()))
            .arg(Arg::from(Slot::ImageCommand));
        assert_eq!(
            line.to_string(),
            "docker buildx build --label \"a b\" x@<digest:web> <image-command>"
        );
        assert!(line.plain().is_none(), "a line with slots is not plain");
        let resolved = line
            .resolve(|slot| match slot {
                Slot::Digest(_) => Ok(vec!["sha256:ab".to_string()]),
                Slot::ImageCommand => Ok(vec!["python".into(), "-m x".into()]),
                other => Err(format!("{other} unknown")),
            })
            .unwrap();
        assert_eq!(
            resolved.to_string(),
            "docker buildx build --label \"a b\" x@sha256:ab python \"-m x\""
        );
        assert_eq!(resolved.to_string(), resolved.to_cmd(&sh).to_string());
        let err = CmdLine::new("x")
            .arg(Arg::from(Slot::LambdaApi))
            .resolve(|s| Err::<Vec<String>, _>(format!("{s} unknown")))
            .unwrap_err();
        assert_eq!(err, "<lambda-api> unknown");
    }
}
