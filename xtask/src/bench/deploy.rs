//! `cargo xtask bench --suite deploy`: what a no-change `deploy` costs over the one thing it
//! cannot avoid, a `terraform plan` of the same configuration with the same variables. A fresh
//! local-stack environment is bootstrapped and deployed once, then once more to settle (the init
//! key and the smoke record are written by the first runs); each round then times a deploy
//! that finds nothing to change and the bare `terraform plan` line that deploy runs, in
//! alternating order so that drift on a noisy machine hits both.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Instant;

use anyhow::{Context, Result, bail};
use serde_json::json;

use super::{Bench, digest, median, ratio, table, xtask};
use crate::cmdline::Slot;
use crate::settings::Settings;
use crate::tools::terraform;
use crate::{paths, plan::steps};

pub(super) fn run(bench: &Bench, runs: u32) -> Result<()> {
    // A fresh environment: `bd` and the time's digits keep the name valid and unique.
    let digits: String = bench.stamp.chars().filter(char::is_ascii_digit).collect();
    let name = format!("bd{}", &digits[digits.len().saturating_sub(12)..]);
    let config = bench.file("deploy-settings", "toml");
    let text = fresh_environment(&bench.settings.path, &bench.env, &name)?;
    bench.sh.write_file(&config, text)?;
    let derived = Settings::load(&config)?;
    let env = derived.environment(&name)?;
    let root = paths::root();
    let deploy = || xtask(&root, &config, &name, &["deploy"]);

    eprintln!("setting up environment `{name}`: bootstrap, first deploy, settling deploy");
    xtask(&root, &config, &name, &["bootstrap", "--yes"])?;
    deploy()?;
    let (_, settled) = deploy()?;
    // The same variable file the deploy writes, with the digests it deployed.
    let vars = bench.file("deploy-vars", "tfvars.json");
    let text = terraform::vars_file(&steps::function_vars(env, true), |slot| match slot {
        Slot::Digest(function) => digest(&settled, function),
        _ => String::new(),
    });
    bench.sh.write_file(&vars, text)?;
    let tf_env = terraform::terraform_env(env, Some(&bench.running.tf_cli_config));
    let plan = terraform::plan(env, &tf_env, "bench", &vars.display().to_string());
    let plan = plan.plain().context("the plan line holds no slot")?;
    let bare_plan = || -> Result<f64> {
        let started = Instant::now();
        let mut command = Command::new(&plan.program);
        let command = command.args(&plan.args).envs(plan.env.iter().cloned());
        let out = command.current_dir(&root).stdin(Stdio::null()).output()?;
        let secs = started.elapsed().as_secs_f64();
        let _ = std::fs::remove_file(paths::plan_file(&env.name, "bench"));
        // -detailed-exitcode: 0 is "no changes", the case being measured.
        if out.status.code() != Some(0) {
            let (code, stderr) = (out.status.code(), String::from_utf8_lossy(&out.stderr));
            bail!("`{plan}` exited with {code:?} (expected 0, no changes):\n{stderr}");
        }
        Ok(secs)
    };

    let mut samples = vec![vec![]; 2];
    for round in 1..=runs {
        let time_deploy = || -> Result<f64> {
            let (secs, result) = deploy()?;
            let built = result
                .functions
                .iter()
                .any(|f| f.image.as_deref() == Some("built"));
            if result.terraform.as_deref() != Some("no changes") || built {
                bail!("round {round}: the deploy was not a no-change deploy: {result:?}");
            }
            Ok(secs)
        };
        let (d, p) = match round % 2 {
            1 => (time_deploy()?, bare_plan()?),
            _ => {
                let p = bare_plan()?;
                (time_deploy()?, p)
            }
        };
        eprintln!("round {round}/{runs}: deploy, no change {d:6.2}s   terraform plan {p:6.2}s");
        samples[0].push(d);
        samples[1].push(p);
    }

    // Each deploy serves the functions under the local Lambda emulator; the bench's stop.
    for function in settled
        .functions
        .iter()
        .filter_map(|f| f.function_name.as_ref())
    {
        let _ = crate::local::lambda::unserve(&bench.sh, function);
    }
    let _ = std::fs::remove_file(&vars);
    println!("no-change deploy against a bare terraform plan, median of {runs} rounds:");
    let rows = table(
        &["deploy, no change", "terraform plan, same variables"],
        &samples,
    );
    let ratio = ratio(median(&samples[0]), median(&samples[1]));
    println!("  deploy / terraform plan: {ratio:.2}x");
    bench.record(
        "deploy",
        runs,
        json!({
            "environment": name,
            "plan_command": plan.to_string(), "scenarios": rows, "ratio": ratio,
        }),
    )
}

/// The settings with a copy of `base`'s tables under `name`, and a state bucket of its own
/// (the account layer that `bootstrap` applies creates it).
fn fresh_environment(path: &Path, base: &str, name: &str) -> Result<String> {
    let text = std::fs::read_to_string(path)?;
    let settings = Settings::parse(path, &text)?;
    let bucket = settings.environment(base)?.terraform.backend.get("bucket");
    let bucket = bucket.context("the environment has no state bucket")?;
    let (from, to) = (
        format!("[environments.{base}"),
        format!("[environments.{name}"),
    );
    let mut copy = String::new();
    let mut in_base = false;
    for line in text.lines() {
        let header = line.trim();
        if header.starts_with('[') {
            let table = header.trim_matches(['[', ']']).strip_prefix(&from[1..]);
            in_base = table.is_some_and(|rest| rest.is_empty() || rest.starts_with('.'));
        }
        if in_base {
            let line = line.replace(&from, &to);
            copy += &line.replace(&format!("\"{bucket}\""), &format!("\"{name}-tfstate\""));
            copy.push('\n');
        }
    }
    Ok(format!("{text}\n# bench: a fresh copy of `{base}`\n{copy}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_fresh_environment_copies_the_base_with_its_own_bucket() {
        let path = paths::root().join(paths::SETTINGS);
        let text = fresh_environment(&path, "local", "bd123").unwrap();
        let settings = Settings::parse(&path, &text).unwrap();
        let base = settings.environment("local").unwrap();
        let fresh = settings.environment("bd123").unwrap();
        assert_eq!(fresh.terraform.backend["bucket"], "bd123-tfstate");
        assert_eq!(fresh.functions[0].repository, "bd123-sse-streaming-lambda");
        assert_eq!(fresh.local, base.local);
        assert_eq!(fresh.functions[0].build_args, base.functions[0].build_args);
        assert_eq!(
            base.terraform.backend["bucket"],
            "local-sse-streaming-tfstate"
        );
        assert!(settings.environment("local-prod").unwrap().name == "local-prod");
    }
}
