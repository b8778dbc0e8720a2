//! The runner's steps for the account layer: the state-bucket check that `deploy` runs before
//! `terraform init`, and that `bootstrap` uses to tell a first run from a later one.

use anyhow::{Result, bail};

use super::Runner;
use crate::aws::Bucket;

impl Runner<'_> {
    pub(super) fn check_bucket(
        &mut self,
        bucket: &str,
        local_state: Option<&str>,
        required: bool,
    ) -> Result<()> {
        let env = self.env;
        let found = self.aws()?.bucket(bucket)?;
        let hint = format!(
            "run `cargo xtask bootstrap --env {}` with administrator credentials first",
            env.name
        );
        match (&found, required) {
            (Bucket::Exists, _) => self.report.info(&format!("s3://{bucket} exists")),
            (Bucket::Missing, true) => bail!(
                "the Terraform state bucket `{bucket}` does not exist in account {} ({}): \
                 nothing was changed; {hint}",
                env.account_id,
                env.region
            ),
            (Bucket::Missing, false) => self
                .report
                .info(&format!("s3://{bucket} does not exist yet: first run")),
            (Bucket::ElsewhereIn(other), _) => bail!(
                "the state bucket `{bucket}` is in region {other}, but `region` for `{}` is {}: \
                 fix terraform.backend.bucket or region in the settings",
                env.name,
                env.region
            ),
            (Bucket::Forbidden, _) => bail!(
                "the state bucket `{bucket}` exists but these credentials may not read it (it \
                 belongs to another account, or they lack s3:ListBucket): use the environment's \
                 credentials, or choose another terraform.backend.bucket"
            ),
        }
        // A first run that stopped before moving its state into the bucket left the state on
        // disk: the next run goes on from there instead of planning everything again.
        let leftover =
            local_state.is_some_and(|path| std::fs::metadata(path).is_ok_and(|m| m.len() > 0));
        if leftover && found == Bucket::Exists {
            self.report
                .info("a local state from an interrupted first run exists: going on from it");
        }
        self.state.first_bootstrap = Some(found == Bucket::Missing || leftover);
        Ok(())
    }
}
