//! The runner's steps that talk to AWS or the registry API: the account and region guard,
//! the repository check, the registry login (token over stdin) and tag copies.

use anyhow::{Context, Result, bail};

use super::Runner;
use super::exec::{self, Capture};
use crate::cmdline::CmdLine;
use crate::retag;

impl Runner<'_> {
    pub(super) fn check_repository(&mut self, name: &str, required: bool) -> Result<()> {
        let exists = self.aws()?.repository_exists(name)?;
        self.state.repository_missing = Some(!exists);
        if !exists && required {
            bail!(
                "ECR repository `{name}` does not exist in account {} ({}): run \
                 `cargo xtask deploy --env {}` first (it creates the repository)",
                self.env.account_id,
                self.env.region,
                self.env.name
            );
        }
        self.report.info(if exists {
            "the repository exists"
        } else {
            "the repository does not exist yet: first deploy"
        });
        Ok(())
    }

    pub(super) fn login(&mut self, registry: &str, cmd: &CmdLine) -> Result<()> {
        let token = self.aws()?.login_token()?;
        if self.env.local.is_none() {
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
        self.record(&line);
        let out = exec::run(
            self.sh,
            &line,
            Some(&token.password),
            Capture::Quiet,
            self.report.json,
        )?;
        if out.code != 0 {
            let tail = out.stderr_tail.join("\n");
            bail!(
                "docker login to {registry} failed: {}\n{tail}",
                login_hint(registry, &tail, self.env.local.is_some())
            );
        }
        self.report
            .info(&format!("logged in to {registry} as {}", token.username));
        self.login = Some(token);
        Ok(())
    }

    /// New tags for an image in the registry, without changing its digest (see `retag`).
    pub(super) fn copy_tags(
        &mut self,
        repository: &str,
        digest: &str,
        tags: &[String],
    ) -> Result<()> {
        let env = self.env;
        if let Some(local) = &env.local {
            let token = self
                .login
                .as_ref()
                .context("registry login must come before tagging")?;
            let target = retag::Target::Oci {
                registry: &local.registry,
                username: &token.username,
                password: &token.password,
            };
            retag::copy_tags(&target, repository, digest, tags)?;
            self.copy_tags_emulator(repository, digest, tags)
        } else {
            retag::copy_tags(&retag::Target::Ecr(self.aws()?), repository, digest, tags)
        }
    }

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
        let aws = self.aws()?;
        if env.local.is_none() {
            if let Some(chain) = aws.chain_region.as_deref() {
                if chain != region {
                    bail!(
                        "refusing to act: the AWS configuration selects region {chain}, but \
                         `region` for environment `{}` is {region} in the settings; set \
                         AWS_REGION={region} (or the profile's region) or fix the settings",
                        env.name
                    );
                }
            }
        }
        let identity = aws.identity()?;
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
    } else if super::retry::classify(tail) == super::retry::Failure::Auth {
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
