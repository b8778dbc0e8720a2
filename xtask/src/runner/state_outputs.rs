//! Terraform's outputs after a plan that found no changes, read from the state object the plan
//! just read (one S3 GetObject) instead of a second `terraform output` process, which costs
//! about a second of start-up and backend setup on the no-change path. Anything unusual (a
//! workspace, a backend in another region, an unreadable object) falls back to
//! `terraform output -json`.

use serde::Deserialize;

use super::Runner;
use crate::cmdline::CmdLine;
use crate::tools::terraform::Outputs;

/// A state snapshot (format version 4), as far as outputs go.
#[derive(Deserialize)]
struct StateFile {
    version: u32,
    #[serde(default)]
    outputs: Outputs,
}

impl Runner<'_> {
    pub(super) fn outputs_from_state(&mut self, cmd: &CmdLine) -> Option<Outputs> {
        let env = self.env;
        let tf = &env.terraform;
        let same_root = cmd.args.iter().any(|a| a == &format!("-chdir={}", tf.dir));
        let same_region = tf.backend.get("region").is_none_or(|r| r == &env.region);
        if self.state.changes != Some(false)
            || !same_root
            || !same_region
            || std::env::var_os("TF_WORKSPACE").is_some()
        {
            return None;
        }
        let bucket = tf.backend.get("bucket")?;
        let key = tf.backend.get("key")?;
        let aws = self.aws().ok()?;
        let url = aws
            .emulator_url(&format!("/{bucket}/{key}"))
            .unwrap_or_else(|| format!("https://{bucket}.s3.{}.amazonaws.com/{key}", env.region));
        let got = aws.signed("s3", "GET", &url, b"").ok()?;
        if got.status != 200 {
            return None;
        }
        let state: StateFile = serde_json::from_str(&got.body).ok()?;
        (state.version == 4).then_some(state.outputs)
    }
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
