//! `cargo xtask bench`: timings of `image` on the local stack, every scenario measured against
//! a clean build in the same run, because these machines are noisy; `--suite deploy` times the
//! no-change deploy against a bare `terraform plan` (`bench/deploy.rs`). Results are recorded as
//! JSON under `target/bench/`. Each image round builds in a scratch clone of the repository (so
//! the one-file change never touches the tracked tree), into repositories of its own (so a clean
//! build finds no registry cache), with the builder cache pruned where a scenario says so.

mod deploy;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Instant, SystemTime};

use anyhow::{Context, Result, bail};
use serde_json::json;
use xshell::{Shell, cmd};

use crate::cli::{BenchArgs, BenchSuite, Global};
use crate::facts::utc_stamp;
use crate::report::{RunResult, Status};
use crate::settings::Settings;
use crate::{local, paths, pipeline};

/// The median of the samples (the mean of the middle two for an even count).
pub(crate) fn median(values: &[f64]) -> f64 {
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    match v.len() {
        0 => 0.0,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}

/// What both suites start from: the settings, the running stack, the run's stamp and
/// `target/bench/`.
struct Bench {
    settings: Settings,
    env: String,
    sh: Shell,
    running: local::Running,
    stamp: String,
    dir: PathBuf,
}

impl Bench {
    fn new(global: &Global) -> Result<Bench> {
        let settings = Settings::load(&pipeline::settings_path(global)?)?;
        let env = settings.environment(&global.env)?;
        if env.local.is_none() {
            let name = &env.name;
            bail!("bench runs on the local stack only; `{name}` is not a local-stack environment");
        }
        let sh = paths::shell()?;
        let running = pipeline::local_up(&sh, env, &settings)?;
        let (env, dir) = (env.name.clone(), paths::root().join("target/bench"));
        sh.create_dir(&dir)?;
        let stamp = utc_stamp(SystemTime::now()).to_ascii_lowercase();
        Ok(Bench {
            settings,
            env,
            sh,
            running,
            stamp,
            dir,
        })
    }

    /// `target/bench/<name>-<stamp>.<ext>`.
    fn file(&self, name: &str, ext: &str) -> PathBuf {
        self.dir.join(format!("{name}-{}.{ext}", self.stamp))
    }

    /// Writes `record`, with the run's stamp, rounds and host, to `<name>-<stamp>.json`.
    fn record(&self, name: &str, runs: u32, mut record: serde_json::Value) -> Result<()> {
        let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
        record["host"] = json!({ "cores": cores });
        (record["recorded"], record["runs"]) = (self.stamp.clone().into(), runs.into());
        let (file, text) = (
            self.file(name, "json"),
            serde_json::to_string_pretty(&record)?,
        );
        self.sh.write_file(&file, text + "\n")?;
        let shown = file.strip_prefix(paths::root()).unwrap_or(&file).display();
        println!("recorded in {shown}");
        Ok(())
    }
}

/// Runs `xtask ARGS --env ENV --json --config CONFIG` in the repository `root`; its time and
/// its result, which must be a success.
fn xtask(root: &Path, config: &Path, env: &str, args: &[&str]) -> Result<(f64, RunResult)> {
    let started = Instant::now();
    let out = Command::new(std::env::current_exe()?)
        .args(args)
        .args(["--env", env, "--json", "--config"])
        .arg(config)
        .env("XTASK_ROOT", root)
        .current_dir(root)
        .stdin(Stdio::null())
        .output()?;
    let secs = started.elapsed().as_secs_f64();
    let args = args.join(" ");
    if !out.status.success() {
        bail!(
            "`xtask {args}` failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let result: RunResult =
        serde_json::from_slice(&out.stdout).context("xtask printed no JSON result")?;
    if result.status != Status::Ok {
        bail!("`xtask {args}` reported {:?}", result.status);
    }
    Ok((secs, result))
}

/// The digest a run's result names for `function`.
fn digest(result: &RunResult, function: &str) -> String {
    let found = result.functions.iter().find(|f| f.name == function);
    found.and_then(|f| f.digest.clone()).unwrap_or_default()
}

/// `a / b` to three decimals.
fn ratio(a: f64, b: f64) -> f64 {
    (a / b * 1000.0).round() / 1000.0
}

/// Prints each scenario's median and its share of the first's; the rows of the record.
fn table(names: &[&str], samples: &[Vec<f64>]) -> Vec<serde_json::Value> {
    println!("  {:<48} {:>8} {:>12}", "scenario", "median", "vs first");
    let first = median(&samples[0]);
    let rows = names.iter().zip(samples).map(|(name, times)| {
        let (m, vs) = (median(times), ratio(median(times), first));
        println!("  {name:<48} {m:>7.2}s {:>11.1}%", vs * 100.0);
        json!({"scenario": name, "seconds": times, "median": m, "vs_baseline": vs})
    });
    rows.collect()
}

/// The scenarios, in the order a round runs them.
const SCENARIOS: [&str; 5] = [
    "clean: every function in one bake (baseline)",
    "clean: the functions one after the other",
    "rebuild, builder pruned, registry cache",
    "rebuild, warm builder, one file changed",
    "no change (every build skipped)",
];

pub fn run(global: &Global, args: BenchArgs) -> Result<()> {
    let bench = Bench::new(global)?;
    if args.suite == BenchSuite::Deploy {
        return deploy::run(&bench, args.runs);
    }
    let tree = bench.dir.join(format!("tree-{}", bench.stamp));
    let root = paths::root();
    cmd!(bench.sh, "git clone --quiet --local {root} {tree}").run()?;
    let result = rounds(&bench, &tree, args.runs);
    let _ = std::fs::remove_dir_all(&tree);
    let (samples, digests) = result?;

    println!(
        "cargo xtask image on the local stack, median of {} rounds:",
        args.runs
    );
    let rows = table(&SCENARIOS, &samples);
    let reproducible = digests.iter().all(|(a, b)| a == b);
    let yes = if reproducible { "yes" } else { "NO" };
    println!("  two clean builds of one commit gave one digest per function: {yes}");
    let env = bench.settings.environment(&bench.env)?;
    bench.record(
        "image",
        args.runs,
        json!({
            "environment": env.name,
            "functions": env.functions.iter().map(|f| &f.name).collect::<Vec<_>>(),
            "scenarios": rows,
            "bake_vs_one_after_the_other": ratio(median(&samples[0]), median(&samples[1])),
            "two_clean_builds_one_digest": reproducible,
            "clean_digests": digests,
        }),
    )
}

type Samples = (Vec<Vec<f64>>, Vec<(String, String)>);

fn rounds(bench: &Bench, tree: &Path, runs: u32) -> Result<Samples> {
    let env = bench.settings.environment(&bench.env)?;
    let functions: Vec<String> = env.functions.iter().map(|f| f.name.clone()).collect();
    let first = env.functions.first().context("no function")?;
    let prune = cmd!(bench.sh, "docker buildx prune --all --force");
    let prune = prune.quiet().ignore_stdout();
    let prune = || prune.run();
    let (mut samples, mut digests) = (vec![vec![]; SCENARIOS.len()], vec![]);
    for round in 1..=runs {
        // Two fresh environments (own repositories and state): the bake's, the one-by-one's.
        let config = |set: &str| -> Result<(PathBuf, String)> {
            let path = tree.join(format!("target/bench-{set}-{round}.toml"));
            let name = format!("b{}-{set}{round}", bench.stamp);
            let text = renamed(&bench.settings.path, &env.name, &name)?;
            std::fs::create_dir_all(path.parent().expect("a file in target/"))?;
            std::fs::write(&path, text)?;
            Ok((path, name))
        };
        let (baked, single) = (config("a")?, config("b")?);
        let image = |(config, name): &(PathBuf, String), extra: &[&str]| {
            let args = [&["image", "--no-smoke"], extra].concat();
            xtask(tree, config, name, &args)
        };
        prune()?;
        let (t, bake) = image(&baked, &["--force"])?;
        let mut times = vec![t];
        prune()?;
        let mut one_by_one = 0.0;
        for name in &functions {
            let (t, r) = image(&single, &["--force", "--function", name])?;
            one_by_one += t;
            digests.push((digest(&bake, name), digest(&r, name)));
        }
        times.push(one_by_one);
        prune()?;
        times.push(image(&baked, &["--force"])?.0);
        // A real change to one function's code: its layer rebuilds, the rest is cached.
        let changed = tree.join(&first.build_context).join("handler.py");
        let text = std::fs::read_to_string(&changed)?;
        std::fs::write(&changed, format!("{text}\n# bench round {round}\n"))?;
        times.push(image(&baked, &[])?.0);
        times.push(image(&baked, &[])?.0);
        std::fs::write(&changed, text)?;
        for (i, t) in times.iter().enumerate() {
            eprintln!("round {round}/{runs}: {:<48} {t:6.2}s", SCENARIOS[i]);
            samples[i].push(*t);
        }
    }
    Ok((samples, digests))
}

/// The settings with `env` renamed `name` (its repositories, state key and data directory
/// follow its name).
fn renamed(path: &Path, env: &str, name: &str) -> Result<String> {
    let mut text = std::fs::read_to_string(path)?;
    for (old, new) in [
        ("[environments.", "]"),
        ("[environments.", "."),
        ("promote_from = \"", "\""),
    ] {
        text = text.replace(&format!("{old}{env}{new}"), &format!("{old}{name}{new}"));
    }
    Ok(text)
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
    fn bench_settings_rename_only_the_environment() {
        let path = paths::root().join(paths::SETTINGS);
        let text = renamed(&path, "local", "bx-a1").unwrap();
        let derived = Settings::parse(&path, &text).unwrap();
        let original = Settings::load(&path).unwrap();
        assert!(derived.environment("local").is_err());
        let (got, want) = (
            derived.environment("bx-a1").unwrap(),
            original.environment("local").unwrap(),
        );
        for (g, w) in got.functions.iter().zip(&want.functions) {
            assert_eq!(g.repository, w.repository.replacen("local", "bx-a1", 1));
        }
        assert_eq!(
            got.terraform.backend.get("key").unwrap(),
            "bx-a1/sse-streaming.tfstate"
        );
        assert_eq!(
            derived.environment("prod").unwrap(),
            original.environment("prod").unwrap()
        );
    }
}
