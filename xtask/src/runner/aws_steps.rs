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
            bail!(
                "docker login to {registry} failed:\n{}",
                out.stderr_tail.join("\n")
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
