//! `cargo xtask bench`: timings of `image` on the local stack, every scenario measured against
//! a clean-build baseline in the same run, because these machines are noisy. Results are
//! recorded as JSON under `target/bench/`. `--suite deploy` times the no-change deploy against
//! a bare `terraform plan` (see `bench/deploy.rs`).

mod deploy;
mod stats;

use stats::median;

use std::{
    path::Path,
    process::{Command, Stdio},
    time::{Instant, SystemTime},
};

use anyhow::{Context, Result, bail};
use serde_json::json;
use xshell::cmd;

use crate::aws::Aws;
use crate::cli::{BenchArgs, BenchSuite, Global};
use crate::facts::utc_stamp;
use crate::paths;
use crate::pipeline::{load_settings, local_config, shell};

/// What one round measures, in order. Each is a whole `cargo xtask image` as a user runs it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Scenario {
    /// Empty builder cache, empty repository: every layer is built, pip installs from PyPI.
    Clean,
    /// Builder cache pruned, the registry cache from the clean build imported.
    RegistryCache,
    /// Builder cache warm: what a developer's second build costs.
    LocalCache,
    /// The content tag is already pushed: nothing is built.
    Skip,
}

impl Scenario {
    const ALL: [Scenario; 4] = [
        Scenario::Clean,
        Scenario::RegistryCache,
        Scenario::LocalCache,
        Scenario::Skip,
    ];
    fn name(self) -> &'static str {
        match self {
            Scenario::Clean => "clean build (baseline)",
            Scenario::RegistryCache => "rebuild, registry cache only",
            Scenario::LocalCache => "rebuild, warm builder",
            Scenario::Skip => "no change (skipped)",
        }
    }
    fn prune_first(self) -> bool {
        matches!(self, Scenario::Clean | Scenario::RegistryCache)
    }
    fn args(self) -> &'static [&'static str] {
        match self {
            Scenario::Skip => &["image", "--no-smoke"],
            _ => &["image", "--force", "--no-smoke"],
        }
    }
}

pub fn run(global: &Global, args: BenchArgs) -> Result<()> {
    if args.suite == BenchSuite::Deploy {
        return deploy::run(global, args.runs);
    }
    let settings = load_settings(global)?;
    let env = settings.environment(&global.env)?;
    local_config(env).with_context(|| {
        format!(
            "bench runs on the local stack only; `{}` is not a local-stack environment",
            env.name
        )
    })?;
    let sh = shell()?;
    crate::pipeline::local_up(&sh, env)?;
    let aws = Aws::connect(env)?;
    let exe = std::env::current_exe()?;
    let stamp = utc_stamp(SystemTime::now());
    let dir = paths::root().join("target/bench");
    sh.create_dir(&dir)?;

    let mut samples: Vec<(Scenario, Vec<f64>)> =
        Scenario::ALL.iter().map(|&s| (s, vec![])).collect();
    for round in 1..=args.runs {
        // A fresh repository per round, so the clean build finds no registry cache.
        let repository = format!(
            "bench-{}-{round}-{}",
            stamp.to_ascii_lowercase(),
            env.repository
        );
        aws.create_repository(&repository)?;
        let config = dir.join(format!("settings-{stamp}-{round}.toml"));
        sh.write_file(
            &config,
            derived_settings(&settings.path, &env.name, &repository)?,
        )?;
        for (scenario, times) in &mut samples {
            if scenario.prune_first() {
                cmd!(sh, "docker buildx prune --all --force")
                    .quiet()
                    .ignore_stdout()
                    .run()?;
            }
            let secs = time_image(&exe, &config, &env.name, scenario.args())
                .with_context(|| format!("round {round}: {}", scenario.name()))?;
            eprintln!(
                "round {round}/{}: {:<30} {secs:6.1}s",
                args.runs,
                scenario.name()
            );
            times.push(secs);
        }
    }

    let baseline = median(&samples[0].1);
    let rows: Vec<_> = samples
        .iter()
        .map(|(scenario, times)| {
            let m = median(times);
            json!({
                "scenario": scenario.name(),
                "seconds": times,
                "median": m,
                "vs_baseline": (m / baseline * 1000.0).round() / 1000.0,
            })
        })
        .collect();
    let record = json!({
        "recorded": stamp,
        "environment": env.name,
        "runs": args.runs,
        "host": {"cores": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0)},
        "scenarios": rows,
    });
    let file = dir.join(format!("image-{stamp}.json"));
    sh.write_file(&file, serde_json::to_string_pretty(&record)? + "\n")?;

    println!(
        "cargo xtask image on the local stack, median of {} rounds:",
        args.runs
    );
    println!("  {:<30} {:>8} {:>12}", "scenario", "median", "vs baseline");
    for row in &rows {
        println!(
            "  {:<30} {:>7.1}s {:>11.1}%",
            row["scenario"].as_str().unwrap_or_default(),
            row["median"].as_f64().unwrap_or_default(),
            row["vs_baseline"].as_f64().unwrap_or_default() * 100.0
        );
    }
    println!(
        "recorded in {}",
        file.strip_prefix(paths::root()).unwrap_or(&file).display()
    );
    Ok(())
}

/// The settings file with the environment's repository replaced, so a round starts empty.
fn derived_settings(path: &Path, env: &str, repository: &str) -> Result<String> {
    let text = std::fs::read_to_string(path)?;
    let header = format!("[environments.{env}]");
    let Some(at) = text.find(&header) else {
        bail!("{} has no {header} table", path.display());
    };
    let end = at + header.len();
    Ok(format!(
        "{}\nrepository = \"{repository}\"{}",
        &text[..end],
        &text[end..]
    ))
}

fn time_image(exe: &Path, config: &Path, env: &str, args: &[&str]) -> Result<f64> {
    let started = Instant::now();
    let out = Command::new(exe)
        .args(args)
        .args(["--env", env, "--json", "--config"])
        .arg(config)
        .current_dir(paths::root())
        .stdin(Stdio::null())
        .output()?;
    let secs = started.elapsed().as_secs_f64();
    if !out.status.success() {
        bail!(
            "`xtask {}` failed:\n{}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(secs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn medians() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&[4.0, 1.0, 2.0, 3.0]), 2.5);
    }

    #[test]
    fn derived_settings_override_only_the_repository() {
        let path = paths::root().join(paths::SETTINGS);
        let text = derived_settings(&path, "local", "bench-x").unwrap();
        let settings = crate::settings::Settings::parse(&path, &text).unwrap();
        let local = settings.environment("local").unwrap();
        assert_eq!(local.repository, "bench-x");
        let original = crate::settings::Settings::load(&path).unwrap();
        let mut expected = original.environment("local").unwrap().clone();
        expected.repository = "bench-x".into();
        assert_eq!(local, &expected);
    }
}
