//! The runner's Terraform steps (plan with its summary, outputs, error hints), the
//! confirmation prompt, and local file steps.

use std::io::Write;
use std::time::Duration;

use anyhow::{Result, bail};

use super::Runner;
use super::exec::Capture;
use super::signals;
use crate::cmdline::CmdLine;
use crate::tools::terraform;

impl Runner<'_> {
    pub(super) fn terraform_plan(&mut self, cmd: &CmdLine, show: &CmdLine) -> Result<()> {
        let line = self.resolve(cmd)?;
        let out = self.run_once(&line, Capture::Stream)?;
        match out.code {
            0 => {
                self.report.info("no changes: nothing to apply");
                self.state.changes = Some(false);
            }
            2 => {
                self.state.changes = Some(true);
                let show = self.resolve(show)?;
                let json = self.run_once(&show, Capture::Stdout)?;
                for line in terraform::summarize_plan(&json.stdout)? {
                    self.report.info(&line);
                }
            }
            code => bail!(
                "terraform plan failed (exit {code}){}",
                self.terraform_hint(&out.stderr_tail)
            ),
        }
        Ok(())
    }

    pub(super) fn outputs(&mut self, cmd: &CmdLine) -> Result<()> {
        let outputs = match self.outputs_from_state(cmd) {
            Some(outputs) => {
                self.report
                    .info("read from the state object (nothing was applied)");
                outputs
            }
            None => {
                let line = self.resolve(cmd)?;
                let out = self.run_once(&line, Capture::Stdout)?;
                terraform::parse_outputs(&out.stdout)?
            }
        };
        // Every short value (names, ARNs, URLs); rendered policies stay in `output -json`.
        for (key, output) in &outputs {
            if let Some(v) = output
                .value
                .as_str()
                .filter(|v| v.len() <= 200 && !v.contains('\n'))
            {
                self.report.info(&format!("{key}: {v}"));
            }
        }
        if let Some(arn) = outputs
            .get("deploy_role_arn")
            .and_then(|o| o.value.as_str())
        {
            self.report.info(&format!(
                "CI: set the GitHub environment `{}` variable AWS_DEPLOY_ROLE_ARN={arn} \
                 (region {})",
                self.env.name, self.env.region
            ));
        }
        self.state.outputs = Some(outputs);
        Ok(())
    }

    /// What a failed plan or apply means when terraform's words say (see `failure_hint`).
    pub(super) fn terraform_hint(&self, stderr_tail: &[String]) -> String {
        terraform::failure_hint(
            &stderr_tail.join("\n"),
            &self.env.name,
            &self.env.terraform.lock_timeout,
        )
        .map(|hint| format!(": {hint}"))
        .unwrap_or_default()
    }
}

/// Copies a directory tree (files and directories; configuration only, no special files).
pub(super) fn copy_dir(from: &std::path::Path, to: &std::path::Path) -> std::io::Result<()> {
    std::fs::create_dir_all(to)?;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let target = to.join(entry.file_name());
        if entry.file_type()?.is_dir() {
            copy_dir(&entry.path(), &target)?;
        } else {
            std::fs::copy(entry.path(), target)?;
        }
    }
    Ok(())
}

/// Asks on the terminal; only `yes` goes on. The answer is read on another thread so that a
/// signal stops the wait (the read itself restarts after a signal).
pub(super) fn confirm(prompt: &str) -> Result<()> {
    eprint!("    {prompt} Type `yes` to apply: ");
    let _ = std::io::stderr().flush();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut answer = String::new();
        let read = std::io::stdin().read_line(&mut answer);
        let _ = tx.send(read.map(|_| answer));
    });
    let answer = loop {
        if let Some(sig) = signals::received() {
            eprintln!();
            bail!(
                "interrupted ({}) at the confirmation: nothing was applied",
                signals::name(sig)
            );
        }
        match rx.recv_timeout(Duration::from_millis(100)) {
            // A signal wins over an answer that came with it (a pipe closed by whoever sent
            // the signal reads as an empty answer).
            Ok(_) if signals::received().is_some() => {}
            Ok(read) => break read?,
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {}
            Err(e) => return Err(e.into()),
        }
    };
    // A terminal echoed the newline; piped input did not.
    if !std::io::IsTerminal::is_terminal(&std::io::stdin()) {
        eprintln!();
    }
    if answer.trim() != "yes" {
        bail!("not confirmed: nothing was applied (pass --yes to skip the question)");
    }
    Ok(())
}
