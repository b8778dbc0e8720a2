//! `cargo xtask bench --suite deploy`: what a no-change `deploy` costs over the one thing it
//! cannot avoid, a `terraform plan` of the same configuration with the same variables.
//!
//! A fresh local-stack environment (its own state bucket, repository and function) is
//! bootstrapped and deployed once, then deployed once more to settle (the init key and the
//! smoke record are written by the first runs). Each round then times a whole
//! `cargo xtask deploy` that finds nothing to change, and the bare `terraform plan` command
//! line that deploy runs, with the same environment, in alternating order so that drift on a
//! noisy machine hits both. The medians and their ratio are recorded under `target/bench/`.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Instant, SystemTime};

use anyhow::{Context, Result, bail};
use serde_json::{Value, json};

use super::stats::median;
use crate::cli::Global;
use crate::facts::utc_stamp;
use crate::pipeline::{load_settings, local_config, shell};
use crate::plan::RUN;
use crate::plan::deploy::terraform_env;
use crate::settings::Settings;
use crate::tools::terraform;
use crate::{paths, pipeline};

pub fn run(global: &Global, runs: u32) -> Result<()> {
    let settings = load_settings(global)?;
    let base = settings.environment(&global.env)?;
    local_config(base).with_context(|| {
        format!(
            "bench runs on the local stack only; `{}` is not a local-stack environment",
            base.name
        )
    })?;
    let sh = shell()?;
    let running = pipeline::local_up(&sh, base)?;
    let stamp = utc_stamp(SystemTime::now());
    let dir = paths::root().join("target/bench");
    sh.create_dir(&dir)?;

    // A fresh environment: `bd-` and the time's digits keep the name valid and unique.
    let digits: String = stamp.chars().filter(char::is_ascii_digit).collect();
    let name = format!("bd{}", &digits[digits.len().saturating_sub(12)..]);
    let config = dir.join(format!("deploy-settings-{stamp}.toml"));
    sh.write_file(
        &config,
        fresh_environment(&settings.path, &base.name, &name)?,
    )?;
    let derived = Settings::load(&config)?;
    let env = derived.environment(&name)?;
    let exe = std::env::current_exe()?;

    eprintln!("setting up environment `{name}`: bootstrap, first deploy, settling deploy");
    xtask(&exe, &config, &name, &["bootstrap", "--yes"])?;
    xtask(&exe, &config, &name, &["deploy"])?;
    let settled = xtask(&exe, &config, &name, &["deploy"])?;
    let image_uri = settled["image_uri"]
        .as_str()
        .context("deploy reported no image_uri")?
        .to_string();

    let tf_env = terraform_env(env, Some(&running.tf_cli_config));
    let plan = terraform::plan(env, &tf_env, &image_uri).resolve(&[(RUN, "bench")]);
    let plan_file = paths::plan_file(&env.name, "bench");
    let bare_plan = || -> Result<f64> {
        let started = Instant::now();
        let out = Command::new(&plan.program)
            .args(&plan.args)
            .envs(plan.env.iter().map(|(k, v)| (k, v)))
            .current_dir(paths::root())
            .stdin(Stdio::null())
            .output()?;
        let secs = started.elapsed().as_secs_f64();
        let _ = std::fs::remove_file(&plan_file);
        // -detailed-exitcode: 0 is "no changes", the case being measured.
        if out.status.code() != Some(0) {
            bail!(
                "`{plan}` exited with {:?} (expected 0, no changes):\n{}",
                out.status.code(),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok(secs)
    };

    let (mut deploys, mut plans) = (Vec::new(), Vec::new());
    for round in 1..=runs {
        let time_deploy = || -> Result<f64> {
            let started = Instant::now();
            let result = xtask(&exe, &config, &name, &["deploy"])?;
            let secs = started.elapsed().as_secs_f64();
            if result["terraform"] != "no changes" || result["image"] == "built" {
                bail!("round {round}: the deploy was not a no-change deploy: {result}");
            }
            Ok(secs)
        };
        let (d, p) = if round % 2 == 1 {
            let d = time_deploy()?;
            (d, bare_plan()?)
        } else {
            let p = bare_plan()?;
            (time_deploy()?, p)
        };
        eprintln!("round {round}/{runs}: deploy, no change {d:6.2}s   terraform plan {p:6.2}s");
        deploys.push(d);
        plans.push(p);
    }

    // Each deploy serves the function under the local Lambda emulator; the bench's stops.
    if let Some(function) = settled["function_name"].as_str() {
        let _ = crate::local::lambda::unserve(&sh, function);
    }
    let (d, p) = (median(&deploys), median(&plans));
    let ratio = (d / p * 1000.0).round() / 1000.0;
    let record = json!({
        "recorded": stamp,
        "environment": name,
        "runs": runs,
        "host": {"cores": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0)},
        "plan_command": plan.to_string(),
        "scenarios": [
            {"scenario": "deploy, no change", "seconds": deploys, "median": d},
            {"scenario": "terraform plan, same variables", "seconds": plans, "median": p},
        ],
        "ratio": ratio,
    });
    let file = dir.join(format!("deploy-{stamp}.json"));
    sh.write_file(&file, serde_json::to_string_pretty(&record)? + "\n")?;
    println!("no-change deploy against a bare terraform plan, median of {runs} rounds:");
    println!("  {:<32} {:>7.2}s", "deploy, no change", d);
    println!("  {:<32} {:>7.2}s", "terraform plan, same variables", p);
    println!("  {:<32} {:>7.2}x", "ratio", ratio);
    println!(
        "recorded in {}",
        file.strip_prefix(paths::root()).unwrap_or(&file).display()
    );
    Ok(())
}

/// The settings with a copy of `base`'s tables under `name`, and a state bucket of its own
/// (the account layer that `bootstrap` applies creates it).
fn fresh_environment(path: &Path, base: &str, name: &str) -> Result<String> {
    let text = std::fs::read_to_string(path)?;
    let settings = Settings::parse(path, &text)?;
    let bucket = settings
        .environment(base)?
        .terraform
        .backend
        .get("bucket")
        .cloned()
        .context("the environment has no state bucket")?;
    let mut copy = String::new();
    let mut in_base = false;
    for line in text.lines() {
        let header = line.trim();
        if header.starts_with('[') {
            let table = header.trim_matches(['[', ']']);
            in_base = table == format!("environments.{base}")
                || table.starts_with(&format!("environments.{base}."));
        }
        if in_base {
            let line = line
                .replace(
                    &format!("[environments.{base}"),
                    &format!("[environments.{name}"),
                )
                .replace(&format!("\"{bucket}\""), &format!("\"{name}-tfstate\""));
            copy.push_str(&line);
            copy.push('\n');
        }
    }
    Ok(format!("{text}\n# bench: a fresh copy of `{base}`\n{copy}"))
}

/// Runs `xtask ARGS --env NAME --config CONFIG --json` and returns its JSON result.
fn xtask(exe: &Path, config: &Path, name: &str, args: &[&str]) -> Result<Value> {
    let out = Command::new(exe)
        .args(args)
        .args(["--env", name, "--json", "--config"])
        .arg(config)
        .current_dir(paths::root())
        .stdin(Stdio::null())
        .output()?;
    if !out.status.success() {
        bail!(
            "`xtask {}` failed:\n{}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    serde_json::from_slice(&out.stdout).context("xtask printed no JSON result")
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
        assert_eq!(fresh.repository, "bd123-sse-streaming-lambda");
        assert_eq!(fresh.local, base.local);
        assert_eq!(fresh.build_args, base.build_args);
        assert_eq!(
            base.terraform.backend["bucket"],
            "local-sse-streaming-tfstate"
        );
    }
}
