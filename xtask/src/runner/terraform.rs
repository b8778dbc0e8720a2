//! The runner's Terraform steps: the variable file pinned to the run's digests, the plan with
//! its summary, the apply, the outputs (read from the state object after a plan with no
//! changes), the error hints, and the confirmation prompt.

use std::io::Write;
use std::time::Duration;

use anyhow::{Result, bail};
use serde::Deserialize;

use super::exec::Capture;
use super::{Effect, Reply, Runner};
use crate::aws::Aws;
use crate::cmdline::CmdLine;
use crate::signals;
use crate::tools::terraform::{self, FunctionVars, Outputs};

impl Runner<'_> {
    pub(super) fn write_vars(&mut self, path: &str, functions: &[FunctionVars]) -> Result<()> {
        let mut missing = None;
        let text = terraform::vars_file(functions, |slot| {
            self.slot_value(slot).unwrap_or_else(|e| {
                missing = Some(e);
                String::new()
            })
        });
        if let Some(e) = missing {
            return Err(e);
        }
        self.ask(Effect::WriteFile {
            path: path.to_string(),
            contents: text,
        })?;
        for f in functions {
            if let Some((repo, slot)) = &f.image {
                self.report
                    .info(&format!("{}: {repo}@{}", f.name, self.slot_value(slot)?));
            }
        }
        Ok(())
    }

    pub(super) fn terraform_plan(&mut self, cmd: &CmdLine, show: &CmdLine) -> Result<()> {
        let out = self.run(cmd, 1, Capture::Stream);
        // A signal stopped it: say that, not that the plan failed.
        if let (Err(_), Some(_)) = (&out, self.world.interrupted()) {
            return out.map(drop);
        }
        let code = match &out {
            Ok(_) => 0,
            Err(e) => e
                .downcast_ref::<crate::retry::Failed>()
                .map_or(1, |f| f.code),
        };
        match code {
            0 => {
                self.report.info("no changes: nothing to apply");
                self.state.changes = Some(false);
            }
            2 => {
                self.state.changes = Some(true);
                let json = self.run(show, 1, Capture::Stdout)?;
                for line in terraform::summarize_plan(&json.stdout)? {
                    self.report.info(&line);
                }
            }
            code => bail!(
                "terraform plan failed (exit {code}){}",
                self.terraform_hint(&out.err().map(|e| format!("{e:#}")).unwrap_or_default())
            ),
        }
        Ok(())
    }

    pub(super) fn apply(&mut self, cmd: &CmdLine) -> Result<()> {
        if let Err(e) = self.run(cmd, 1, Capture::Stream) {
            if self.world.interrupted().is_some() {
                return Err(e);
            }
            let code = e
                .downcast_ref::<crate::retry::Failed>()
                .map_or(1, |f| f.code);
            bail!(
                "terraform apply failed (exit {code}); the pushed images stay in place{}",
                self.terraform_hint(&format!("{e:#}"))
            );
        }
        Ok(())
    }

    pub(super) fn outputs(&mut self, cmd: &CmdLine) -> Result<()> {
        let tf = &self.env.terraform;
        let same_root = cmd
            .args
            .iter()
            .any(|a| a.to_string() == format!("-chdir={}", tf.dir));
        let same_region = tf
            .backend
            .get("region")
            .is_none_or(|r| r == &self.env.region);
        let from_state = match (tf.backend.get("bucket"), tf.backend.get("key")) {
            (Some(bucket), Some(key))
                if self.state.changes == Some(false)
                    && same_root
                    && same_region
                    && std::env::var_os("TF_WORKSPACE").is_none() =>
            {
                match self.ask(Effect::StateOutputs {
                    bucket: bucket.clone(),
                    key: key.clone(),
                }) {
                    Ok(Reply::Outputs(outputs)) => outputs,
                    _ => None,
                }
            }
            _ => None,
        };
        let outputs = match from_state {
            Some(outputs) => {
                self.report
                    .info("read from the state object (nothing was applied)");
                outputs
            }
            None => terraform::parse_outputs(&self.run(cmd, 1, Capture::Stdout)?.stdout)?,
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
                "CI: set the GitHub environment `{}` variable AWS_DEPLOY_ROLE_ARN={arn} (region {})",
                self.env.name, self.env.region
            ));
        }
        self.state.outputs = Some(outputs);
        Ok(())
    }

    /// What a failed plan or apply means when terraform's words say (see `failure_hint`).
    fn terraform_hint(&self, stderr: &str) -> String {
        terraform::failure_hint(stderr, &self.env.name, &self.env.terraform.lock_timeout)
            .map(|hint| format!(": {hint}"))
            .unwrap_or_default()
    }
}

/// A state snapshot (format version 4), as far as outputs go.
#[derive(Deserialize)]
struct StateFile {
    version: u32,
    #[serde(default)]
    outputs: Outputs,
}

/// Terraform's outputs after a plan with no changes, from the state object the plan just read
/// (one S3 GetObject), instead of a second `terraform output` process (about a second of
/// start-up and backend setup on the no-change path). Anything unusual reads as `None`, and
/// the caller falls back to `terraform output -json`.
pub(super) fn outputs_from_state(aws: &Aws, bucket: &str, key: &str) -> Option<Outputs> {
    let url = aws.s3_url(bucket, key);
    let got = aws.signed("s3", "GET", &url, b"").ok()?;
    if got.status != 200 {
        return None;
    }
    let state: StateFile = serde_json::from_slice(&got.body).ok()?;
    (state.version == 4).then_some(state.outputs)
}

/// Asks on the terminal; only `yes` goes on. The answer is read on another thread so that a
/// signal stops the wait (the read itself restarts after a signal).
pub(super) fn confirm(prompt: &str) -> Result<bool> {
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
    Ok(answer.trim() == "yes")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_outputs_read_like_terraform_output() {
        let state = r#"{"version":4,"terraform_version":"1.11.4","serial":7,"lineage":"x",
            "outputs":{"function_url":{"value":"https://x.lambda-url/","type":"string"},
                       "memory":{"value":512,"type":"number"}},"resources":[]}"#;
        let parsed: StateFile = serde_json::from_str(state).unwrap();
        assert_eq!(
            parsed.outputs["function_url"].value,
            "https://x.lambda-url/"
        );
        assert_eq!(parsed.outputs["memory"].value, 512);
        let empty: StateFile = serde_json::from_str(r#"{"version":4}"#).unwrap();
        assert!(empty.outputs.is_empty());
    }
}
