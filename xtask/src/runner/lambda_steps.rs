//! The steps that run an image under the Lambda emulator (`local::lambda`): the smoke test,
//! read through the emulated Function URL, and on the local stack, serving what was deployed.

use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result};

use super::Runner;
use super::exec::{self, Capture};
use super::retry::TRIES;
use crate::cmdline::{CONTAINER, CmdLine, DIGEST, IMAGE_COMMAND, LAMBDA_API};
use crate::local::lambda::{self, Emulator};
use crate::plan::SmokeLines;
use crate::settings::Platform;
use crate::smoke;
use crate::tools::docker;

/// The smoke test's stream: events one second apart, so that a buffered response (everything
/// at the end) cannot pass for an incremental one.
const COUNT: u32 = 3;
const INTERVAL: f64 = 1.0;

/// A function name no other run uses: a failed run's queued invokes never reach the next one.
fn smoke_function(env: &str) -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or_default();
    format!("xtask-smoke-{env}-{}-{}", std::process::id(), nanos / 1000)
}

impl Runner<'_> {
    pub(super) fn smoke(&mut self, image: &str, lines: &SmokeLines) -> Result<()> {
        let image = image.replace(DIGEST, self.state.digest.as_deref().unwrap_or(""));
        self.smoke_under_emulator(lines)
            .with_context(|| format!("smoke test of {image} under the Lambda emulator"))
    }

    fn smoke_under_emulator(&mut self, lines: &SmokeLines) -> Result<()> {
        let pull = self.resolve(&lines.pull)?;
        self.run_with_retry(&pull, TRIES, Capture::Quiet)?;
        let inspect = self.resolve(&lines.inspect)?;
        let config = self.run_with_retry(&inspect, 1, Capture::Lookup)?;
        let command = docker::parse_image_command(&config.stdout)?;

        let emulator = Emulator::shared_or_private(self.sh)?;
        if emulator.is_private() {
            self.report
                .info("no local stack Lambda emulator here: started a private one for this test");
        }
        let function = smoke_function(&self.env.name);
        let _routed = emulator.register(&function)?;
        let api = emulator.runtime_api();
        let fill = |cmd: &CmdLine| -> Result<CmdLine> {
            Ok(self
                .resolve(cmd)?
                .resolve(&[(CONTAINER, &function), (LAMBDA_API, &api)]))
        };
        let run = fill(&lines.run)?.splice(IMAGE_COMMAND, &command);
        let logs = fill(&lines.logs)?;
        let remove = fill(&lines.remove)?;
        // Queued before the container exists and removed by name, so a signal or a failure
        // from here on (even a `docker run` that created it and then failed) still removes it.
        self.deferred.push(remove.clone());
        let url = emulator.function_url(&function);
        let result = self
            .run_with_retry(&run, 1, Capture::Stdout)
            .and_then(|_| self.read_through(&url));
        if result.is_err() {
            if let Ok(out) = self.run_once(&logs, Capture::Quiet) {
                self.report.info(&format!(
                    "container logs:\n{}\n{}",
                    out.stdout,
                    out.stderr_tail.join("\n")
                ));
            }
        }
        self.record(&remove);
        let _ = exec::run_cleanup(self.sh, &remove);
        self.deferred.forget(&remove);
        result
    }

    /// `/health`, then a stream through the Function URL; records how long the first event
    /// and the whole stream took.
    fn read_through(&mut self, url: &str) -> Result<()> {
        let seen = smoke::check(url, lambda::READY, COUNT, INTERVAL)?;
        self.report.info(&format!("Function URL {url}"));
        self.report.info(&format!("/health: {}", seen.health));
        self.report.info(&format!(
            "/stream?count={COUNT}&interval={INTERVAL}: ids {:?}, first event after {:.3}s, \
             {:.3}s in all",
            seen.ids,
            seen.first_event.as_secs_f64(),
            seen.total.as_secs_f64()
        ));
        Ok(())
    }

    /// Serves the function Terraform reports, as the AWS emulator's Lambda API describes it,
    /// under the stack's Lambda emulator, and prints its Function URL.
    pub(super) fn serve_local(
        &mut self,
        endpoint_url: &str,
        region: &str,
        platform: Platform,
    ) -> Result<()> {
        let name = self
            .state
            .outputs
            .as_ref()
            .and_then(|o| o.get("function_name"))
            .and_then(|o| o.value.as_str())
            .map(str::to_string)
            .context("terraform output names no function_name: nothing to serve")?;
        let function = lambda::deployed(endpoint_url, region, &name)?;
        self.report.info(&format!(
            "the emulator's Lambda API: {name} runs {} ({} MB, timeout {} s)",
            function.image, function.memory_size, function.timeout
        ));
        let outcome = lambda::serve(self.sh, &function, platform)
            .with_context(|| format!("serving {name} under the Lambda emulator"))?;
        for line in &outcome.executed {
            self.report.detail(&format!("$ {line}"));
            self.state.executed.push(line.clone());
        }
        let digest = &outcome.served.digest;
        self.report
            .info(&match (outcome.unchanged, &outcome.replaced) {
                (true, _) => format!("already serving {digest}"),
                (false, Some(old)) => format!("switched from {old} to {digest}"),
                (false, None) => format!("serving {digest}"),
            });
        let url = &outcome.served.url;
        self.report.info(&format!("local function url: {url}"));
        self.report
            .info(&format!("try: curl -N '{url}/stream?count=10&interval=1'"));
        Ok(())
    }
}
