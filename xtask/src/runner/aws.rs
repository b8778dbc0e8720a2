//! The runner's guards that talk to AWS: the account and region check, the repositories, the
//! registry login (token over stdin) and the state bucket.

use anyhow::{Result, bail};

use super::exec::Capture;
use super::{Effect, Reply, Runner};
use crate::aws::Bucket;
use crate::cmdline::CmdLine;
use crate::plan::Source;
use crate::retry::{self, Failure};

impl Runner<'_> {
    pub(super) fn check_identity(&mut self, account_id: &str, region: &str) -> Result<()> {
        let env = self.env;
        if env.local.is_none() {
            if let Some((key, _)) =
                std::env::vars().find(|(k, _)| k.starts_with("AWS_ENDPOINT_URL"))
            {
                bail!(
                    "{key} is set, which would send `{}`'s AWS calls to another endpoint: \
                     unset it (only local-stack environments use an endpoint override)",
                    env.name
                );
            }
        }
        // The region first: a mismatch is refused before any call leaves this machine.
        if env.local.is_none() {
            let Reply::Region(chain) = self.ask(Effect::ChainRegion)? else {
                bail!("the region check got no region");
            };
            if let Some(chain) = chain.filter(|c| c != region) {
                bail!(
                    "refusing to act: the AWS configuration selects region {chain}, but \
                     `region` for environment `{}` is {region} in the settings; set \
                     AWS_REGION={region} (or the profile's region) or fix the settings",
                    env.name
                );
            }
        }
        let Reply::Identity(identity) = self.ask(Effect::Identity)? else {
            bail!("the identity check got no identity");
        };
        if identity.account != account_id {
            bail!(
                "refusing to act: the credentials belong to account {} ({}), but `account_id` \
                 for environment `{}` is {account_id} in the settings; use credentials for \
                 {account_id} or fix the settings",
                identity.account,
                identity.arn,
                env.name
            );
        }
        self.report.info(&format!(
            "account {} ({}), region {region}",
            identity.account, identity.arn
        ));
        Ok(())
    }

    pub(super) fn check_repositories(&mut self, names: &[String], required: bool) -> Result<()> {
        let Reply::Names(missing) = self.ask(Effect::MissingRepositories(names.to_vec()))? else {
            bail!("the repository lookup got no answer");
        };
        if !missing.is_empty() && required {
            bail!(
                "ECR repositories {} do not exist in account {} ({}): run `cargo xtask deploy \
                 --env {}` first (it creates them)",
                missing.join(", "),
                self.env.account_id,
                self.env.region,
                self.env.name
            );
        }
        self.report.info(&if missing.is_empty() {
            "every repository exists".to_string()
        } else {
            format!(
                "first deploy of {}: their repositories do not exist yet",
                missing.join(", ")
            )
        });
        self.state.missing_repositories = Some(missing);
        Ok(())
    }

    pub(super) fn login(
        &mut self,
        registry: &str,
        cmd: &CmdLine,
        source: Option<&Source>,
    ) -> Result<()> {
        let Reply::Token(token) = self.ask(Effect::LoginToken {
            source: source.cloned(),
        })?
        else {
            bail!("the login got no token");
        };
        if self.env.local.is_none() && source.is_none() {
            let endpoint = token.proxy_endpoint.trim_start_matches("https://");
            if endpoint != registry {
                bail!(
                    "ECR hands out a token for {endpoint}, but the settings point at \
                     {registry}: check `account_id` and `region` for `{}`",
                    self.env.name
                );
            }
        }
        let line = self.resolve(cmd)?;
        let out = self.run_resolved(line, 1, Capture::Quiet, Some(token.password.clone()));
        if let Err(e) = out {
            let tail = e
                .downcast_ref::<retry::Failed>()
                .map(|f| f.tail.clone())
                .unwrap_or_else(|| format!("{e:#}"));
            bail!(
                "docker login to {registry} failed: {}\n{tail}",
                login_hint(registry, &tail, self.env.local.is_some())
            );
        }
        self.report
            .info(&format!("logged in to {registry} as {}", token.username));
        Ok(())
    }

    pub(super) fn check_bucket(
        &mut self,
        bucket: &str,
        local_state: Option<&str>,
        required: bool,
    ) -> Result<()> {
        let env = self.env;
        let Reply::Bucket(found) = self.ask(Effect::Bucket(bucket.to_string()))? else {
            bail!("the bucket lookup got no answer");
        };
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

/// What a failed `docker login` means, from docker's own words: nothing listens, or something
/// accepts connections and never answers (docker gives up after its own deadline).
fn login_hint(registry: &str, tail: &str, local: bool) -> String {
    let check = if local {
        "check the local stack with `cargo xtask local status`"
    } else {
        "check the network path to ECR (proxy, VPC endpoint, firewall)"
    };
    let lower = tail.to_ascii_lowercase();
    if lower.contains("connection refused") {
        format!("nothing answers at {registry} (connection refused): {check}; nothing else was run")
    } else if lower.contains("deadline exceeded") || lower.contains("timeout") {
        format!(
            "{registry} did not answer in time: it accepts connections but does not respond \
             (a hung or overloaded registry); {check}; nothing else was run"
        )
    } else if retry::classify(tail) == Failure::Auth {
        "the registry refused the ECR token: the token is for another registry, or the \
         credentials lack ecr:GetAuthorizationToken"
            .to_string()
    } else {
        format!("{check}; nothing else was run")
    }
}

#[cfg(test)]
mod tests {
    use super::login_hint;

    #[test]
    fn login_failures_name_their_cause() {
        let refused = "Error response from daemon: Get \"http://127.0.0.1:5099/v2/\": dial tcp \
                       127.0.0.1:5099: connect: connection refused";
        assert!(login_hint("127.0.0.1:5099", refused, true).contains("nothing answers at"));
        let hung = "Error response from daemon: Get \"http://127.0.0.1:5011/v2/\": context \
                    deadline exceeded";
        let hint = login_hint("127.0.0.1:5011", hung, true);
        assert!(
            hint.contains("did not answer in time") && hint.contains("local status"),
            "{hint}"
        );
        assert!(
            login_hint("x", "unauthorized: authentication required", false)
                .contains("refused the ECR token")
        );
    }
}
