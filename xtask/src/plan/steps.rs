//! The step builders every command shares: the guards, Terraform's init, plan and apply, the
//! first deploy's repositories and the image steps. A leaf: it imports no other plan.

use anyhow::{Result, bail};

use super::{Action, Arg, CmdLine, Planned, Slot, SmokeLines, Source, Step, When};
use crate::facts::{Facts, Tool};
use crate::paths;
use crate::scan::FailOn;
use crate::settings::{Environment, Function};
use crate::tools::{docker, terraform};

/// What `image` and `deploy` take from the command line.
#[derive(Debug, Clone, Copy, Default)]
pub struct ImageOptions {
    pub force: bool,
    pub allow_dirty: bool,
    pub no_smoke: bool,
}

/// Protected environments ask before they change anything, unless `--yes` or CI (where the
/// pipeline's approval gate decides): the one place this rule lives.
pub fn asks(env: &Environment, yes: bool, ci: bool) -> bool {
    env.protected && !yes && !ci
}

/// The tools found, the account and region check, and with `login` the registry login:
/// before any Terraform, so a registry that is down stops the run with nothing changed.
pub fn guards(env: &Environment, tools: &[(Tool, String)], login: bool) -> Vec<Step> {
    let tools: Vec<String> = tools
        .iter()
        .map(|(t, v)| format!("{} {v}", t.name()))
        .collect();
    let identity = Action::CheckIdentity {
        account_id: env.account_id.clone(),
        region: env.region.clone(),
    };
    let found = Action::Note(format!("found {}", tools.join(", ")));
    let mut steps = vec![
        Step::new("tool preflight", found),
        Step::new("account and region check", identity),
    ];
    steps.extend(login.then(|| self::login(env, None)));
    steps
}

/// `docker login` to the environment's registry, or to `source`'s (promotion's).
pub fn login(env: &Environment, source: Option<Source>) -> Step {
    let (what, registry) = match &source {
        Some(s) => ("source registry", s.registry.clone()),
        None => ("registry", env.registry()),
    };
    let title = format!("{what} login ({registry})");
    let cmd = docker::login(&registry);
    let login = Action::Login {
        registry,
        cmd,
        source,
    };
    Step::new(title, login)
}

/// The state bucket the settings name (validated to be present).
pub fn state_bucket(env: &Environment) -> String {
    let bucket = env.terraform.backend.get("bucket");
    bucket.cloned().unwrap_or_default()
}

pub fn tf_env(env: &Environment, facts: &Facts) -> Vec<(String, String)> {
    terraform::terraform_env(env, facts.tf_cli_config.as_deref())
}

pub fn run(title: impl Into<String>, cmd: CmdLine, when: When) -> Step {
    Step::new(title, Action::Run { cmd, retry: false }).when(when)
}

/// The state bucket (the account layer must exist first, or `init` would fail half-way), then
/// `terraform init`.
pub fn init(env: &Environment, facts: &Facts) -> Vec<Step> {
    let bucket = Action::CheckBucket {
        bucket: state_bucket(env),
        local_state: None,
        required: true,
    };
    let title = format!("state bucket exists ({})", state_bucket(env));
    let init = terraform::init(env, &tf_env(env, facts));
    vec![
        Step::new(title, bucket),
        run("terraform init", init, When::InitStale),
    ]
}

/// `terraform plan`; when it finds changes, the question `ask` and the saved plan's apply.
pub fn plan_apply(title: &str, [cmd, show, apply]: [CmdLine; 3], ask: Option<String>) -> Vec<Step> {
    let mut steps = vec![Step::new(title, Action::TerraformPlan { cmd, show })];
    steps.extend(ask.map(|prompt| {
        Step::new("confirmation", Action::Confirm { prompt }).when(When::ChangesPlanned)
    }));
    let apply = Step::new("terraform apply (saved plan)", Action::Apply { cmd: apply });
    steps.push(apply.when(When::ChangesPlanned));
    steps
}

/// Every function of the environment for the application root; `images`: each pinned to its
/// digest slot (all but the ECR-only apply).
pub fn function_vars(env: &Environment, images: bool) -> Vec<terraform::FunctionVars> {
    env.functions
        .iter()
        .map(|f| terraform::FunctionVars::new(env, f, env.readers.clone(), images))
        .collect()
}

/// The variable file of the first deploy's ECR-only apply.
pub fn repositories_file(env: &Environment, facts: &Facts) -> String {
    terraform::vars_path(env, &format!("{}-repositories", facts.run))
}

/// The repository lookup and, on a first deploy of any function, the targeted apply that
/// creates the missing ones (asking first where `confirm`): `image` works on a fresh environment.
pub fn repositories(env: &Environment, facts: &Facts, confirm: bool) -> Vec<Step> {
    let (tf_env, file) = (tf_env(env, facts), repositories_file(env, facts));
    let all: Vec<&Function> = env.functions.iter().collect();
    let missing = When::RepositoriesMissing;
    let lookup = Action::CheckRepositories {
        names: env.functions.iter().map(|f| f.repository.clone()).collect(),
        required: false,
    };
    let mut steps = vec![Step::new("ECR repository lookup", lookup)];
    if confirm {
        let name = &env.name;
        let prompt = format!(
            "create the missing ECR repositories of protected environment `{name}` (targeted \
             terraform apply)?"
        );
        let ask = Action::Confirm { prompt };
        steps.push(Step::new("confirmation (ECR repositories)", ask).when(missing.clone()));
    }
    let vars = Action::WriteVars {
        path: file.clone(),
        functions: function_vars(env, false),
    };
    let title = "ECR repositories (first deploy: targeted apply)";
    steps.push(Step::new(title, vars).when(missing.clone()));
    let title = "ECR repositories: moved resources into the state (apply -refresh-only)";
    let refresh = terraform::refresh_only(env, &tf_env, &file);
    steps.push(run(title, refresh, When::SomeRepositoriesMissing));
    let create = terraform::create_repositories(env, &tf_env, &all, &file);
    let title = "ECR repositories: terraform apply -target";
    steps.push(run(title, create, missing));
    steps
}

/// The content tag of a function: `src-<12 hex>` for a clean tree, `dirty-<12 hex>` otherwise.
pub fn content_tag(facts: &Facts, function: &str) -> String {
    let content = &facts.contents[function];
    let prefix = if content.dirty { "dirty" } else { "src" };
    format!("{prefix}-{}", &content.hash[..12])
}

/// The tags every push of `function` carries: the content tag first, then `git-<sha>` for
/// clean trees, then `latest`.
pub fn tags(facts: &Facts, function: &str) -> Vec<String> {
    let mut tags = vec![content_tag(facts, function)];
    if !facts.contents[function].dirty {
        tags.push(format!("git-{}", facts.git.short));
    }
    tags.push("latest".into());
    tags
}

/// `functions` for the result, each with the tags the plan writes.
pub fn planned(
    env: &Environment,
    functions: &[&Function],
    tags: impl Fn(&Function) -> Vec<String>,
) -> Vec<Planned> {
    functions
        .iter()
        .map(|f| Planned {
            name: f.name.clone(),
            image_repo: env.image_repo(f),
            tags: tags(f),
        })
        .collect()
}

/// Reads `reference` from the registry into `sets`; a missing one is refused with `required`.
pub fn lookup(reference: String, sets: Slot, required: Option<String>) -> Action {
    Action::Lookup {
        cmd: docker::inspect(&reference),
        reference,
        sets,
        required,
    }
}

/// Points bare `tags` at the digest in `slot`, in order, then reads each back.
pub fn retag(env: &Environment, f: &Function, slot: Slot, tags: Vec<String>) -> Action {
    let repo = env.image_repo(f);
    let verify = tags.iter().map(|t| docker::inspect(&format!("{repo}:{t}")));
    Action::Retag {
        function: f.name.clone(),
        repository: f.repository.clone(),
        slot,
        verify: verify.collect(),
        tags,
    }
}

pub fn pinned(env: &Environment, f: &Function) -> Arg {
    Arg::from(format!("{}@", env.image_repo(f))).then(Slot::Digest(f.name.clone()))
}

/// The images of `functions`: content-tag lookups, one bake of the missing ones, then the
/// checks of each.
pub fn image(
    env: &Environment,
    facts: &Facts,
    functions: &[&Function],
    opts: ImageOptions,
) -> Result<Vec<Step>> {
    let mut steps = vec![];
    for f in functions {
        let content = content_tag(facts, &f.name);
        if facts.contents[&f.name].dirty && env.protected && !opts.allow_dirty {
            bail!(
                "refusing to build from a dirty working tree for protected environment `{}`: \
                 commit or stash the changes under {} (or pass --allow-dirty to push a `{content}` \
                 image)",
                env.name,
                f.build_context,
            );
        }
        steps.push(if opts.force {
            let note = Action::Note("skipped: --force rebuilds".into());
            Step::new(format!("{}: content tag lookup", f.name), note)
        } else {
            let reference = format!("{}:{content}", env.image_repo(f));
            let title = format!("{}: content tag lookup ({content})", f.name);
            Step::new(title, lookup(reference, Slot::Digest(f.name.clone()), None))
        });
    }
    let file = |name: &str| {
        let file = paths::env_dir(&env.name).join(format!("{name}-{}.json", facts.run));
        file.display().to_string()
    };
    let (file, metadata) = (file("bake"), file("bake-metadata"));
    let bake = Action::Bake {
        cmd: docker::bake(&facts.builder.target, &file, &metadata),
        file,
        metadata,
        targets: functions.iter().map(|f| target(env, facts, f)).collect(),
    };
    steps.push(Step::new("docker buildx bake (push)", bake).when(When::AnyImageMissing));
    for f in functions {
        steps.extend(checks(env, facts, f, opts));
    }
    Ok(steps)
}

fn target(env: &Environment, facts: &Facts, f: &Function) -> docker::BakeTarget {
    let (git, repo) = (&facts.git, env.image_repo(f));
    let label = |k: &str, v: &String| (format!("org.opencontainers.image.{k}"), v.clone());
    let mut labels = vec![label("revision", &git.head)];
    labels.push(label("created", &git.commit_time));
    labels.extend(git.source_url.as_ref().map(|url| label("source", url)));
    let tags = tags(facts, &f.name);
    let tags = tags.iter().map(|t| format!("{repo}:{t}")).collect();
    docker::bake_target(&docker::Build {
        name: &f.name,
        platform: f.platform,
        dockerfile: &f.dockerfile,
        context: &f.build_context,
        labels,
        build_args: f.build_args.clone().into_iter().collect(),
        cache_ref: format!("{repo}:buildcache"),
        export_cache: facts.builder.exports_cache,
        tags,
        source_date_epoch: git.source_date_epoch(),
    })
}

/// After the bake: the function's manifest, mirror, scan gate, smoke test and tags.
fn checks(env: &Environment, facts: &Facts, f: &Function, opts: ImageOptions) -> Vec<Step> {
    let name = &f.name;
    let content_ref = format!("{}:{}", env.image_repo(f), content_tag(facts, name));
    let mut steps = vec![verify(f, content_ref.into())];
    // Also when the build was skipped: the emulator forgets its images on `local down`, and
    // an image pushed earlier must pass today's gate (an allow-list entry may have expired).
    steps.extend(mirror(env, f, tags(facts, name)));
    steps.push(scan_gate(env, f));
    steps.push(smoke(env, facts, f, opts));
    // A bake writes every tag; when the build was skipped, the others are written here, so
    // the tags reported are the tags in the registry.
    let others: Vec<String> = tags(facts, name).into_iter().skip(1).collect();
    let title = format!("{name}: tag the existing image ({})", others.join(", "));
    let retag = retag(env, f, Slot::Digest(name.clone()), others);
    steps.push(Step::new(title, retag).when(When::ImageFound(name.clone())));
    steps
}

/// The reference must be the function's digest, as a single image manifest for its platform.
pub fn verify(f: &Function, reference: Arg) -> Step {
    let verify = Action::VerifyManifest {
        function: f.name.clone(),
        cmd: docker::inspect_arg(reference.clone()),
        reference,
        platform: f.platform,
    };
    Step::new(format!("{}: manifest verification", f.name), verify)
}

/// On the local stack: the image copied into the emulator's ECR under `tags`.
pub fn mirror(env: &Environment, f: &Function, tags: Vec<String>) -> Option<Step> {
    let mirror = Action::MirrorToEmulator {
        function: f.name.clone(),
        repository: f.repository.clone(),
        tags,
    };
    let title = "mirror the image into the emulator's ECR (local stack)";
    env.local
        .as_ref()
        .map(|_| Step::new(format!("{}: {title}", f.name), mirror))
}

/// The scan gate, or a note when `scan.fail_on = "never"` turns it off.
pub fn scan_gate(env: &Environment, f: &Function) -> Step {
    let action = match env.scan.fail_on {
        FailOn::Never => Action::Note("skipped: scan.fail_on = \"never\" in the settings".into()),
        FailOn::At(_) => Action::ScanGate {
            function: f.name.clone(),
            repository: f.repository.clone(),
            policy: env.scan.clone(),
        },
    };
    let title = format!("{}: image scan gate (fail on {})", f.name, env.scan.fail_on);
    Step::new(title, action)
}

/// The smoke test: the image runs as Lambda runs it, under the Lambda emulator, and its check
/// is read through the emulated Function URL. Also when the build was skipped: an image pushed
/// by a run whose test failed must not pass unchecked the next time.
pub fn smoke(env: &Environment, facts: &Facts, f: &Function, opts: ImageOptions) -> Step {
    let title = format!("{}: smoke test", f.name);
    let skip = if opts.no_smoke {
        Some("--no-smoke".to_string())
    } else if !env.smoke_test {
        Some("smoke_test = false in the settings".into())
    } else if facts.host != Some(f.platform) {
        Some(format!("{} images do not run on this machine", f.platform))
    } else {
        None
    };
    let Some(check) = f.smoke.clone().filter(|_| skip.is_none()) else {
        let why = skip.unwrap_or_else(|| format!("[functions.{}.smoke] is not set", f.name));
        return Step::new(title, Action::Note(format!("skipped: {why}")));
    };
    let container = format!("xtask-smoke-{}-{}-{}", env.name, f.name, facts.run);
    let image = pinned(env, f);
    let run = docker::run_lambda(&docker::LambdaContainer {
        name: &container,
        image: image.clone(),
        platform: f.platform,
        memory_mb: f.memory_size,
        network: Slot::LambdaNetwork.into(),
        labels: docker::lambda_labels(&container),
        env: docker::lambda_environment(&container, f.memory_size, &env.region),
        env_file: None,
        command: vec![Slot::ImageCommand.into()],
    });
    let lines = Box::new(SmokeLines {
        pull: docker::pull(image.clone(), f.platform),
        inspect: docker::image_config(image),
        run,
        logs: docker::logs(&container),
        remove: docker::remove(&container),
    });
    let smoke = Action::Smoke {
        function: f.name.clone(),
        container,
        check,
        lines,
    };
    Step::new(title, smoke)
}
