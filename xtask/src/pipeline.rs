//! Wiring a command: settings → local stack → facts → plan → runner or printer → report.

use std::path::{Path, PathBuf};
use std::time::SystemTime;

use anyhow::{Context, Result};
use xshell::Shell;

use crate::cli::{BootstrapArgs, Global, ImageArgs, LocalAction, PromoteArgs, RollbackArgs};
use crate::facts::{self, Facts, Tool};
use crate::plan::{self, Plan, steps::ImageOptions};
use crate::report::{Report, RunResult};
use crate::runner::{Runner, cleanup, docker_config::DockerConfig, effects::Real};
use crate::settings::{Environment, Settings};
use crate::signals;
use crate::{local, paths};

const BUILD_TOOLS: [Tool; 4] = [Tool::Git, Tool::Docker, Tool::Buildx, Tool::Terraform];

fn settings(global: &Global) -> Result<Settings> {
    Settings::load(&paths::settings_file(global.config.as_deref())?)
}

fn image_options(args: &ImageArgs) -> plan::image::Options {
    plan::image::Options {
        image: ImageOptions {
            force: args.force,
            allow_dirty: args.allow_dirty,
            no_smoke: args.no_smoke,
        },
        yes: args.yes,
        ci: facts::in_ci(),
        functions: args.functions.clone(),
    }
}

pub fn image(global: &Global, args: ImageArgs) -> Result<()> {
    let settings = settings(global)?;
    let env = settings.environment(&global.env)?;
    let opts = image_options(&args);
    execute(global, env, &BUILD_TOOLS, |facts| {
        plan::image::plan(env, facts, &opts)
    })
}

pub fn deploy(global: &Global, args: ImageArgs) -> Result<()> {
    let settings = settings(global)?;
    let env = settings.environment(&global.env)?;
    let opts = image_options(&args);
    execute(global, env, &BUILD_TOOLS, |facts| {
        plan::deploy::plan(env, facts, &opts)
    })
}

pub fn rollback(global: &Global, args: RollbackArgs) -> Result<()> {
    let settings = settings(global)?;
    let env = settings.environment(&global.env)?;
    let source = env
        .promote_from
        .as_deref()
        .map(|s| settings.environment(s))
        .transpose()?;
    let opts = plan::rollback::Options {
        to: args.to,
        functions: args.functions,
        yes: args.yes,
        ci: facts::in_ci(),
    };
    execute(global, env, &BUILD_TOOLS, |facts| {
        plan::rollback::plan(env, source, facts, &opts)
    })
}

pub fn promote(global: &Global, args: PromoteArgs) -> Result<()> {
    let settings = settings(global)?;
    let source = settings.environment(&args.from)?;
    let target = settings.environment(&args.to)?;
    let opts = plan::promote::Options {
        functions: args.functions,
        yes: args.yes,
        ci: facts::in_ci(),
    };
    execute(global, target, &BUILD_TOOLS, |facts| {
        plan::promote::plan(source, target, facts, &opts)
    })
}

/// `cargo xtask bootstrap`: the account layer, with the same guards, plan, runner and report.
pub fn bootstrap(global: &Global, args: BootstrapArgs) -> Result<()> {
    let settings = settings(global)?;
    let env = settings.environment(&global.env)?;
    let source = env
        .promote_from
        .as_deref()
        .map(|s| settings.environment(s))
        .transpose()?;
    let sh = paths::shell()?;
    let mut report = Report::new(global.json, global.verbose);
    let tf_cli_config = match &env.local {
        // `up` bootstraps a fresh emulator itself; this run then finds no changes.
        Some(_) if !global.dry_run => Some(local_up(&sh, env, &settings)?.tf_cli_config),
        Some(_) => Some(paths::local_tf_cli_config()),
        None => None,
    };
    let tools = match facts::preflight(&sh, &[Tool::Terraform]).and_then(|found| {
        facts::check_terraform_version(&found, Path::new(&env.bootstrap.dir))?;
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
    let plan = plan::bootstrap::plan(env, source, &tools, opts, tf_cli_config.as_deref());
    run_or_print(
        &sh,
        env,
        &mut report,
        &plan,
        global.dry_run,
        &std::process::id().to_string(),
    )
}

/// Brings the local stack up for a local-stack environment. When the emulator is not the
/// instance the account layers last went into (new, recreated or restarted: its state is in
/// memory), the account layer of every local-stack environment is applied to it (the same
/// `bootstrap` plan as on AWS), so that `deploy` finds its state bucket. The instance they
/// went into is never re-bootstrapped.
pub fn local_up(sh: &Shell, env: &Environment, settings: &Settings) -> Result<local::Running> {
    let cfg = local_config(env)?;
    // Tests stand in their own registry or AWS endpoint for a local-stack environment (one
    // that hangs, one that throttles): `up` would move the shared stack to those addresses.
    if std::env::var("XTASK_LOCAL_STACK").is_ok_and(|v| v == "external") {
        return Ok(local::Running {
            tf_cli_config: paths::local_tf_cli_config(),
            fresh_emulator: false,
            moto: None,
        });
    }
    let running = local::up(sh, &cfg)?;
    emulator_sessions(settings, running.fresh_emulator)?;
    if running.fresh_emulator {
        let tools = facts::preflight(sh, &[Tool::Terraform])?;
        for other in settings.environments.values().filter(|e| e.local.is_some()) {
            let name = &other.name;
            eprintln!("  -> the emulator is a new instance: applying `{name}`'s account layer");
            let source = other.promote_from.as_ref();
            let source = source.and_then(|s| settings.environments.get(s));
            let opts = plan::bootstrap::Options {
                yes: true,
                ci: true,
            };
            let rc = Some(running.tf_cli_config.as_path());
            let plan = plan::bootstrap::plan(other, source, &tools, opts, rc);
            // Progress only: the caller's own result is what goes to stdout.
            let mut report = Report::new(true, false);
            let mut world = Real::new(sh, other, true);
            let mut runner = Runner::new(&mut world, other, &mut report);
            let applying = || format!("applying `{name}`'s account layer to the new emulator");
            runner.execute(&plan).with_context(applying)?;
        }
        local::layers_applied(&running)?;
    }
    Ok(running)
}

/// A session in each other emulator account the settings' local environments live in, for
/// Terraform: written when the emulator is new (its sessions died with the old one) or the
/// file is missing.
fn emulator_sessions(settings: &Settings, fresh: bool) -> Result<()> {
    let file = paths::emulator_credentials();
    if !fresh && file.is_file() {
        return Ok(());
    }
    let mut text = String::from(
        "# Written by `cargo xtask local up`: emulator sessions, not AWS credentials.\n",
    );
    let others = settings.environments.values();
    let others = others.filter(|e| e.account_id != crate::settings::EMULATOR_ACCOUNT);
    for (env, local) in others.filter_map(|e| Some((e, e.local.as_ref()?))) {
        let c = crate::aws::Aws::emulator(&local.endpoint_url, &env.region)?
            .assume_account(&env.account_id)?;
        text.push_str(&format!(
            "[xtask-{}]\naws_access_key_id = {}\naws_secret_access_key = {}\naws_session_token = {}\n",
            env.account_id,
            c.access_key_id(),
            c.secret_access_key(),
            c.session_token().unwrap_or_default()
        ));
    }
    std::fs::create_dir_all(paths::stack_dir())?;
    std::fs::write(&file, text).with_context(|| format!("writing {}", file.display()))
}

fn local_config(env: &Environment) -> Result<local::Config> {
    let l = env.local.as_ref().with_context(|| {
        format!(
            "environment `{}` does not run on the local stack (it has no `registry` and \
             `endpoint_url`): use --env local",
            env.name
        )
    })?;
    Ok(local::Config {
        registry: l.registry.clone(),
        endpoint_url: l.endpoint_url.clone(),
        account_id: env.account_id.clone(),
        region: env.region.clone(),
        state_bucket: plan::steps::state_bucket(env),
    })
}

pub fn local(global: &Global, action: LocalAction) -> Result<()> {
    let settings = settings(global)?;
    let env = settings.environment(&global.env)?;
    let cfg = local_config(env)?;
    let sh = paths::shell()?;
    match action {
        LocalAction::Up => local_up(&sh, env, &settings).map(drop),
        LocalAction::Down => local::down(&sh, &cfg),
        LocalAction::Logs { function } => {
            print!("{}", local::logs(&sh, &function)?);
            Ok(())
        }
        LocalAction::Status => {
            if local::status(&sh, &cfg)? {
                Ok(())
            } else {
                anyhow::bail!("the local stack is not healthy: run `cargo xtask local up`")
            }
        }
    }
}

/// Settings are validated before anything runs; then the local stack (for local-stack
/// environments), the tool preflight, the facts, the plan, and the runner or the printer.
fn execute(
    global: &Global,
    env: &Environment,
    tools: &[Tool],
    make_plan: impl FnOnce(&Facts) -> Result<Plan>,
) -> Result<()> {
    let sh = paths::shell()?;
    let mut report = Report::new(global.json, global.verbose);
    let settings = settings(global)?;
    let (tf_cli_config, gathered) = match &env.local {
        Some(_) if !global.dry_run => {
            // `local up` on a healthy stack only checks it (about a second); the read-only
            // facts are gathered meanwhile. Where `up` had to install a tool, they are
            // gathered again once it is there.
            let (up, early) = std::thread::scope(|scope| {
                let up = scope
                    .spawn(|| paths::shell().and_then(|sh| quick_local_up(&sh, env, &settings)));
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
            Some(paths::local_tf_cli_config()),
            gather(&sh, env, tools, Some(&mut report)),
        ),
        None => (
            None,
            gather(&sh, env, tools, global.dry_run.then_some(&mut report)),
        ),
    };
    let (found, (git, contents), builder) = gathered?;
    if !builder.exports_cache {
        report.warn(&format!(
            "the buildx builder (driver `{}`) cannot export a registry cache: building without \
             cache-to (turn on the containerd image store, or use a docker-container builder \
             via the `builder` setting)",
            builder.driver
        ));
    }
    let run = std::process::id().to_string();
    let facts = Facts {
        tools: found,
        git,
        contents,
        builder,
        host: crate::settings::Platform::host(),
        run: run.clone(),
        now: facts::utc_stamp(SystemTime::now()),
        tf_cli_config,
    };
    let plan = make_plan(&facts)?;
    run_or_print(&sh, env, &mut report, &plan, global.dry_run, &run)
}

/// What `gather` reads: the tools found (with versions), git with each function's content,
/// and the builder.
type Gathered = (
    Vec<(Tool, String)>,
    (
        facts::Git,
        std::collections::BTreeMap<String, facts::Content>,
    ),
    facts::Builder,
);

/// `local up`, unless it fully checked this stack minutes ago and every service it started
/// still runs (see `local::TRUSTED`); `cargo xtask local up` always checks everything.
fn quick_local_up(sh: &Shell, env: &Environment, settings: &Settings) -> Result<local::Running> {
    let external = std::env::var("XTASK_LOCAL_STACK").is_ok_and(|v| v == "external");
    let recent = local_config(env)
        .ok()
        .filter(|_| !external)
        .and_then(|cfg| local::recently_healthy(sh, &cfg, local::TRUSTED));
    match recent {
        Some((running, age)) => {
            eprintln!(
                "local stack: fully checked {}s ago, every service still runs (`cargo xtask \
                 local up` checks everything)",
                age.as_secs()
            );
            emulator_sessions(settings, false)?;
            Ok(running)
        }
        None => local_up(sh, env, settings),
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
        facts::check_terraform_version(&found, Path::new(&env.terraform.dir))?;
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
        paths::shell().and_then(|sh| facts::builder(&sh, builder_name.as_deref()))
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
                    target: crate::tools::docker::Builder::Active,
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
    run: &str,
) -> Result<()> {
    if dry_run {
        if report.json {
            report.finish(&RunResult::planned(plan));
        } else {
            print!("{plan}");
            println!("dry run: nothing was executed");
        }
        return Ok(());
    }
    signals::install();
    let (_files, leftovers) = cleanup::Files::new(&plan.cleanup, run);
    for file in leftovers {
        report.warn(&format!(
            "removed {} left by an earlier run that did not finish (it is never applied)",
            file.display()
        ));
    }
    // Every docker command of the run reads and writes the run's private configuration.
    let docker_config = DockerConfig::for_run()?;
    let _docker_env = docker_config
        .as_ref()
        .map(|dc| sh.push_env("DOCKER_CONFIG", dc.path()));
    if docker_config.is_none() {
        report.detail(
            "docker: your config.json names a credential helper, which keeps the registry token",
        );
    }
    let mut world = Real::new(sh, env, report.json);
    let mut runner = Runner::new(&mut world, env, report);
    let result = runner.execute(plan);
    let state = std::mem::take(&mut runner.state);
    if let Err(e) = &result {
        report.error(&format!("{e:#}"));
    }
    let error = result.as_ref().err().map(|e| format!("{e:#}"));
    report.finish(&state.result(plan, error));
    result
}

/// The process exit: the error chain, one cause a line (never Debug, which would add a
/// backtrace), and 128+N when a signal stopped the run, as a shell reports it. An AWS
/// failure is its one-line cause and its fix; `verbose` adds the SDK's own error chain.
pub fn exit(result: Result<()>, verbose: bool) -> std::process::ExitCode {
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err}");
            for cause in err.chain().skip(1) {
                eprintln!("  caused by: {cause}");
            }
            let failures = err
                .chain()
                .filter_map(|e| e.downcast_ref::<crate::aws::Failure>());
            for line in failures.filter(|_| verbose).flat_map(|f| f.detail()) {
                eprintln!("  sdk: {line}");
            }
            match signals::received() {
                Some(sig) => std::process::ExitCode::from(signals::exit_code(sig)),
                None => std::process::ExitCode::FAILURE,
            }
        }
    }
}

/// The settings file a command reads, for modules that need the path itself.
pub fn settings_path(global: &Global) -> Result<PathBuf> {
    paths::settings_file(global.config.as_deref())
}
