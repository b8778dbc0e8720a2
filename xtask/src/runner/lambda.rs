//! The steps that run an image under the Lambda emulator: the smoke test, read through the
//! emulated Function URL, and on the local stack, serving what was deployed.

use anyhow::{Context, Result, bail};

use super::exec::Capture;
use super::{Effect, Reply, Runner};
use crate::cmdline::Slot;
use crate::plan::SmokeLines;
use crate::retry::TRIES;
use crate::settings::{Expect, Platform, Smoke};
use crate::tools::docker;

impl Runner<'_> {
    pub(super) fn smoke(
        &mut self,
        function: &str,
        container: &str,
        check: &Smoke,
        lines: &SmokeLines,
    ) -> Result<()> {
        let image = lines
            .pull
            .args
            .last()
            .map(ToString::to_string)
            .unwrap_or_default();
        self.smoke_under_emulator(function, container, check, lines)
            .with_context(|| {
                let digest = self.state.digest(function).unwrap_or("?");
                format!(
                    "smoke test of {} under the Lambda emulator",
                    image.replace(&Slot::Digest(function.into()).to_string(), digest)
                )
            })
    }

    fn smoke_under_emulator(
        &mut self,
        function: &str,
        container: &str,
        check: &Smoke,
        lines: &SmokeLines,
    ) -> Result<()> {
        self.run(&lines.pull, TRIES, Capture::Quiet)?;
        let config = self.run(&lines.inspect, 1, Capture::Lookup)?;
        let command = docker::parse_image_command(&config.stdout)?;
        let timeout = self
            .env
            .functions
            .iter()
            .find(|f| f.name == function)
            .map_or(60, |f| f.timeout);
        let Reply::Route { api, url, network } = self.ask(Effect::Route {
            function: container.to_string(),
            timeout,
        })?
        else {
            bail!("the Lambda emulator gave no route");
        };
        let fill = |slot: &Slot| -> Result<Vec<String>> {
            match slot {
                Slot::LambdaApi => Ok(vec![api.clone()]),
                Slot::LambdaNetwork => Ok(vec![network.clone()]),
                Slot::ImageCommand => Ok(command.clone()),
                other => self.slot_value(other).map(|v| vec![v]),
            }
        };
        let run = lines.run.resolve(fill)?;
        let logs = self.resolve(&lines.logs)?;
        let remove = self.resolve(&lines.remove)?;
        // Queued before the container exists and removed by name, so a signal or a failure
        // from here on (even a `docker run` that created it and then failed) still removes it.
        self.deferred.push(remove.clone());
        let result = self
            .run_resolved(run, 1, Capture::Stdout, None)
            .and_then(|_| self.read_through(&url, check));
        if result.is_err() {
            if let Ok(out) = self.run_resolved(logs, 1, Capture::Quiet, None) {
                self.report.info(&format!(
                    "container logs:\n{}\n{}",
                    out.stdout,
                    out.stderr_tail.join("\n")
                ));
            }
        }
        self.deferred.retain(|d| d != &remove);
        self.state.executed.push(remove.to_string());
        let _ = self.ask(Effect::Cleanup(remove));
        let _ = self.ask(Effect::Unroute {
            function: container.to_string(),
        });
        result
    }

    /// `/health`, then the check through the Function URL; says how long it took.
    fn read_through(&mut self, url: &str, check: &Smoke) -> Result<()> {
        let Reply::Seen(seen) = self.ask(Effect::Probe {
            url: url.to_string(),
            check: check.clone(),
        })?
        else {
            bail!("the probe saw nothing");
        };
        self.report.info(&format!("Function URL {url}"));
        self.report.info(&format!("/health: {}", seen.health));
        match check.expect {
            Expect::Sse => self.report.info(&format!(
                "{}: ids {:?}, first event after {:.3}s, {:.3}s in all",
                check.path,
                seen.ids,
                seen.first_event.as_secs_f64(),
                seen.total.as_secs_f64()
            )),
            Expect::Json(_) => self.report.info(&format!(
                "{}: {} in {:.3}s",
                check.path,
                seen.body,
                seen.total.as_secs_f64()
            )),
        }
        Ok(())
    }

    /// Serves every function Terraform reports, as the AWS emulator's Lambda API describes
    /// it, under the stack's Lambda emulator, and prints each local URL.
    pub(super) fn serve_local(
        &mut self,
        endpoint_url: &str,
        region: &str,
        functions: &[(String, Platform)],
    ) -> Result<()> {
        let outputs = self.state.outputs.clone().unwrap_or_default();
        let deployed = outputs
            .get("functions")
            .map(|o| o.value.clone())
            .context("terraform output names no `functions`: nothing to serve")?;
        for (name, platform) in functions {
            let function_name = deployed[name.as_str()]["function_name"]
                .as_str()
                .with_context(|| format!("terraform output `functions` has no {name}"))?
                .to_string();
            let Reply::Served(served) = self.ask(Effect::Serve {
                endpoint_url: endpoint_url.to_string(),
                region: region.to_string(),
                function_name: function_name.clone(),
                platform: *platform,
            })?
            else {
                bail!("serving {name} answered nothing");
            };
            for line in &served.executed {
                self.report.detail(&format!("$ {line}"));
                self.state.executed.push(line.clone());
            }
            let digest = &served.digest;
            self.report
                .info(&match (served.unchanged, &served.replaced) {
                    (true, _) => format!("{name}: already serving {digest}"),
                    (false, Some(old)) => format!("{name}: switched from {old} to {digest}"),
                    (false, None) => format!("{name}: serving {digest}"),
                });
            self.report
                .info(&format!("{name}: local url {}", served.url));
            self.state.function(name).local_url = Some(served.url);
        }
        Ok(())
    }
}
