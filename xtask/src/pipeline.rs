//! `image`, `deploy`, `rollback`, `bootstrap` and `local`: settings → facts → plan → runner →
//! report.

use std::path::PathBuf;

use anyhow::{Context, Result};
use xshell::Shell;

use crate::cli::{BootstrapArgs, DeployArgs, Global, ImageArgs, LocalAction, RollbackArgs};
use crate::facts::Facts;
use crate::facts::{self, Tool};
use crate::plan::{self, Plan, deploy::DeployOptions, image};
use crate::report::{Report, result_json};
use crate::runner::{Runner, signals};
use crate::settings::{Environment, Settings};
use crate::{local, paths};

/// One shell rooted at the repository; every path is relative to it.
pub fn shell() -> Result<Shell> {
    let sh = Shell::new()?;
    sh.change_dir(paths::root());
    Ok(sh)
}

/// `--config` is relative to where the user ran the command; the default to the repository.
pub fn load_settings(global: &Global) -> Result<Settings> {
    let path = match &global.config {
        Some(path) => std::env::current_dir()?.join(path),
        None => paths::root().join(paths::SETTINGS),
    };
    Settings::load(&path)
}

pub fn local_config(env: &Environment) -> Option<local::Config> {
    env.local.as_ref().map(|l| local::Config {
        registry: l.registry.clone(),
        endpoint_url: l.endpoint_url.clone(),
        account_id: env.account_id.clone(),
        region: env.region.clone(),
        state_bucket: env
            .terraform
            .backend
            .get("bucket")
            .cloned()
            .unwrap_or_default(),
    })
}

pub fn image(global: &Global, args: ImageArgs) -> Result<()> {
    execute(
        global,
        &[Tool::Git, Tool::Docker, Tool::Buildx, Tool::Terraform],
        |env, facts, _| {
            let opts = image::Options {
                confirm_bootstrap: env.protected && !args.yes && !facts::in_ci(),
                ..image_options(&args)
            };
            image::plan(env, facts, opts)
        },
    )
}

pub fn deploy(global: &Global, args: DeployArgs) -> Result<()> {
    let opts = DeployOptions {
        image: image_options(&args.image),
        yes: args.image.yes,
        ci: facts::in_ci(),
    };
    execute(
        global,
        &[Tool::Git, Tool::Docker, Tool::Buildx, Tool::Terraform],
        |env, facts, tf| plan::deploy::plan(env, facts, opts, tf),
    )
}

pub fn rollback(global: &Global, args: RollbackArgs) -> Result<()> {
    let opts = DeployOptions {
        yes: args.yes,
        ci: facts::in_ci(),
        ..DeployOptions::default()
    };
    execute(
        global,
        &[Tool::Git, Tool::Docker, Tool::Buildx, Tool::Terraform],
        |env, facts, tf| {
            Ok(plan::rollback::plan(
                env,
                facts,
                args.to.as_deref(),
                opts,
                tf,
            ))
        },
    )
}

/// `cargo xtask bootstrap`: the account layer, with the same guards, plan, runner and report.
pub fn bootstrap(global: &Global, args: BootstrapArgs) -> Result<()> {
    let settings = load_settings(global)?;
    let env = settings.environment(&global.env)?;
    let sh = shell()?;
    let mut report = Report::new(global.json, global.verbose);
    let tf_cli_config = match local_config(env) {
        // `up` bootstraps a fresh emulator itself; this run then finds no changes.
        Some(_) if !global.dry_run => Some(local_up(&sh, env)?.tf_cli_config),
        Some(_) => Some(paths::root().join(paths::LOCAL_TF_CLI_CONFIG)),
        None => None,
    };
    let tools = match facts::preflight(&sh, &[Tool::Terraform]).and_then(|found| {
        facts::check_terraform_version(&found, std::path::Path::new(&env.bootstrap.dir))?;
        Ok(found)
    }) {
        Ok(found) => found,
        Err(e) if global.dry_run => {
            report.warn(&format!("{e:#} (the dry run goes on)"));
            vec![]
        }
        Err(e) => return Err(e),
    };
    let opts = plan::bootstrap::Options {
        yes: args.yes,
        ci: facts::in_ci(),
    };
    let plan = plan::bootstrap::plan(env, &tools, opts, tf_cli_config.as_deref());
    run_or_print(&sh, env, &mut report, &plan, global.dry_run)
}

/// Brings the local stack up for a local-stack environment. When `up` started the emulator,
/// its state is empty: the account layer is applied to it (the same `bootstrap` plan as on
/// AWS), so that `deploy` finds its state bucket. A running emulator is never re-bootstrapped.
pub fn local_up(sh: &Shell, env: &Environment) -> Result<local::Running> {
    let cfg = local_config(env).with_context(|| {
        format!(
            "environment `{}` does not run on the local stack (it has no `registry` and \
             `endpoint_url`): use --env local",
            env.name
        )
    })?;
    // Tests stand in their own registry or AWS endpoint for a local-stack environment (one
    // that hangs, one that throttles): `up` would move the shared stack to those addresses.
    if std::env::var("XTASK_LOCAL_STACK").is_ok_and(|v| v == "external") {
        return Ok(local::Running {
            registry: cfg.registry,
            endpoint_url: cfg.endpoint_url,
            tf_cli_config: paths::root().join(paths::LOCAL_TF_CLI_CONFIG),
            fresh_emulator: false,
        });
    }
    let running = local::up(sh, &cfg)?;
    if running.fresh_emulator {
        eprintln!("  -> the emulator started empty: applying the account layer (bootstrap)");
        let tools = facts::preflight(sh, &[Tool::Terraform])?;
        let opts = plan::bootstrap::Options {
            yes: true,
            ci: true,
        };
        let plan = plan::bootstrap::plan(env, &tools, opts, Some(&running.tf_cli_config));
        // Progress only: the caller's own result is what goes to stdout.
        let mut report = Report::new(true, false);
        let mut runner = Runner::new(sh, env, &mut report);
        runner
            .execute(&plan)
            .context("applying the account layer to the fresh emulator")?;
    }
    Ok(running)
}

pub fn local(global: &Global, action: LocalAction) -> Result<()> {
    let settings = load_settings(global)?;
    let env = settings.environment(&global.env)?;
    let cfg = local_config(env).with_context(|| {
        format!(
            "environment `{}` does not run on the local stack (it has no `registry` and \
             `endpoint_url`): use --env local",
            env.name
        )
    })?;
    let sh = shell()?;
    match action {
        LocalAction::Up => local_up(&sh, env).map(drop),
        LocalAction::Down => local::down(&sh, &cfg),
        LocalAction::Status => {
            if local::status(&sh, &cfg)? {
                Ok(())
            } else {
                anyhow::bail!("the local stack is not healthy: run `cargo xtask local up`")
            }
        }
    }
}

fn image_options(args: &ImageArgs) -> image::Options {
    image::Options {
        force: args.force,
        allow_dirty: args.allow_dirty,
        no_smoke: args.no_smoke,
        confirm_bootstrap: false,
    }
}

/// Settings are validated before anything runs; then the local stack (for local-stack
/// environments), the tool preflight, the facts, the plan, and the runner or the printer.
fn execute(
    global: &Global,
    tools: &[Tool],
    make_plan: impl FnOnce(&Environment, &Facts, Option<&std::path::Path>) -> Result<Plan>,
) -> Result<()> {
    let settings = load_settings(global)?;
    let env = settings.environment(&global.env)?;
    let sh = shell()?;
    let mut report = Report::new(global.json, global.verbose);

    let (tf_cli_config, gathered): (Option<PathBuf>, _) = match local_config(env) {
        Some(_) if !global.dry_run => {
            // `local up` on a healthy stack only checks it (about a second); the read-only
            // facts are gathered meanwhile. Where `up` had to install a tool, they are
            // gathered again once it is there.
            let (up, early) = std::thread::scope(|scope| {
                let up = scope.spawn(|| shell().and_then(|sh| quick_local_up(&sh, env)));
                let early = gather(&sh, env, tools, None);
                (up.join().expect("local up does not panic"), early)
            });
            let running = up?;
            let gathered = match early {
                Ok(gathered) => Ok(gathered),
                Err(_) => gather(&sh, env, tools, None),
            };
            (Some(running.tf_cli_config), gathered)
        }
        Some(_) => (
            Some(paths::root().join(paths::LOCAL_TF_CLI_CONFIG)),
            gather(&sh, env, tools, Some(&mut report)),
        ),
        None => (
            None,
            gather(&sh, env, tools, global.dry_run.then_some(&mut report)),
        ),
    };
    let (found, git, builder) = gathered?;
    if !builder.exports_cache {
        report.warn(&format!(
            "the active buildx builder (driver `{}`) cannot export a registry cache: building \
             without --cache-to (turn on the containerd image store, or use a docker-container \
             builder via the `builder` setting)",
            builder.driver
        ));
    }
    let facts = Facts {
        tools: found,
        git,
        builder,
        host_runs: facts::host_runs(env.platform),
    };
    let plan = make_plan(env, &facts, tf_cli_config.as_deref())?;
    run_or_print(&sh, env, &mut report, &plan, global.dry_run)
}

/// What `gather` reads: the tools found (with versions), git, and the builder.
type Gathered = (Vec<(Tool, String)>, facts::Git, facts::Builder);

/// `local up`, unless it fully checked this stack minutes ago and every process it started
/// still runs (see `local::TRUSTED`); `cargo xtask local up` always checks everything.
fn quick_local_up(sh: &Shell, env: &Environment) -> Result<local::Running> {
    let external = std::env::var("XTASK_LOCAL_STACK").is_ok_and(|v| v == "external");
    let recent = local_config(env)
        .filter(|_| !external)
        .and_then(|cfg| local::recently_healthy(sh, &cfg, local::TRUSTED));
    match recent {
        Some((running, age)) => {
            eprintln!(
                "local stack: fully checked {}s ago, every process still runs (`cargo xtask \
                 local up` checks everything)",
                age.as_secs()
            );
            Ok(running)
        }
        None => local_up(sh, env),
    }
}

/// The tool preflight, git and the builder: read-only facts. With `dry_run` (a report to warn
/// on), a missing tool or engine is a warning and the dry run goes on with what is known.
fn gather(
    sh: &Shell,
    env: &Environment,
    tools: &[Tool],
    mut dry_run: Option<&mut Report>,
) -> Result<Gathered> {
    let found = match facts::preflight(sh, tools).and_then(|found| {
        facts::check_terraform_version(&found, std::path::Path::new(&env.terraform.dir))?;
        Ok(found)
    }) {
        Ok(found) => found,
        Err(e) => match dry_run.as_deref_mut() {
            Some(report) => {
                report.warn(&format!("{e:#} (the dry run goes on)"));
                vec![]
            }
            None => return Err(e),
        },
    };
    // The builder probe (a docker round trip) runs while git hashes the tree.
    let builder_name = env.builder.clone();
    let builder_probe = std::thread::spawn(move || {
        shell().and_then(|sh| facts::builder(&sh, builder_name.as_deref()))
    });
    let git = facts::git(sh, env)?;
    let builder = match builder_probe
        .join()
        .expect("the builder probe does not panic")
    {
        Ok(builder) => builder,
        Err(e) => match dry_run {
            Some(report) => {
                report.warn(&format!("{e:#}: assuming the builder can export a cache"));
                facts::Builder {
                    exports_cache: true,
                    driver: "unknown".into(),
                }
            }
            None => return Err(e),
        },
    };
    Ok((found, git, builder))
}

/// The runner, or with `--dry-run` the printer: both go through the one plan.
fn run_or_print(
    sh: &Shell,
    env: &Environment,
    report: &mut Report,
    plan: &Plan,
    dry_run: bool,
) -> Result<()> {
    if dry_run {
        if report.json {
            report.finish(&result_json(plan, None, "planned", None));
        } else {
            print!("{plan}");
            println!("dry run: nothing was executed");
        }
        return Ok(());
    }
    let mut runner = Runner::new(sh, env, report);
    let result = runner.execute(plan);
    let state = std::mem::take(&mut runner.state);
    let (status, error) = match &result {
        Ok(()) => ("ok", None),
        Err(e) => ("failed", Some(format!("{e:#}"))),
    };
    if let Err(e) = &result {
        report.error(&format!("{e:#}"));
    }
    report.finish(&result_json(plan, Some(state.ran()), status, error));
    result
}

/// The process exit: the error chain, one cause a line (never Debug, which would add a
/// backtrace), and 128+N when a signal stopped the run, as a shell reports it.
pub fn exit(result: Result<()>) -> std::process::ExitCode {
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err}");
            for cause in err.chain().skip(1) {
                eprintln!("  caused by: {cause}");
            }
            match signals::received() {
                Some(sig) => std::process::ExitCode::from(signals::exit_code(sig)),
                None => std::process::ExitCode::FAILURE,
            }
        }
    }
}
