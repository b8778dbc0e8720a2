//! The release, shared by `deploy`, `rollback` and `promote`: the variable file pinned to every
//! function's digest, a Terraform plan and apply, the deployment tags of each function that
//! moved (`live` last) and, on the local stack, the functions served.

use super::steps::{self, lookup, retag};
use super::{Action, Slot, Step, When};
use crate::facts::Facts;
use crate::settings::{Environment, Function};
use crate::tools::terraform;

/// The saved plan and the variable file, which the runner deletes at the end.
pub fn files(env: &Environment, facts: &Facts) -> Vec<String> {
    vec![
        terraform::plan_file(env, &facts.run),
        terraform::vars_path(env, &facts.run),
    ]
}

/// The release of `moving`; every other function keeps the image its `live` tag names.
pub fn steps(env: &Environment, facts: &Facts, moving: &[&Function], confirm: bool) -> Vec<Step> {
    let live = |f: &Function| format!("{}:live", env.image_repo(f));
    let mut out = vec![];
    for f in env.functions.iter().filter(|f| !moving.contains(f)) {
        let why = format!(
            "`{}` has never been deployed to `{}` (no `live` tag): deploy it first, without \
             --function",
            f.name, env.name
        );
        let lookup = lookup(live(f), Slot::Digest(f.name.clone()), Some(why));
        let title = format!("{}: stays on its live image", f.name);
        out.push(Step::new(title, lookup));
    }
    for f in moving {
        let lookup = lookup(live(f), Slot::Live(f.name.clone()), None);
        let title = format!("{}: current deployment lookup (live tag)", f.name);
        out.push(Step::new(title, lookup));
    }
    let (tf_env, run) = (steps::tf_env(env, facts), &facts.run);
    let path = terraform::vars_path(env, run);
    let commands = [
        terraform::plan(env, &tf_env, run, &path),
        terraform::show(env, &tf_env, run),
        terraform::apply(env, &tf_env, run),
    ];
    let functions = steps::function_vars(env, true);
    let vars = Action::WriteVars { path, functions };
    let title = "terraform variables (every function pinned to its digest)";
    out.push(Step::new(title, vars));
    let name = &env.name;
    let ask = confirm.then(|| format!("apply these changes to protected environment `{name}`?"));
    out.extend(steps::plan_apply("terraform plan", commands, ask));
    // `live` is the commit point, written last: `previous` (the image `live` named) first,
    // then `deployed-<time>`, then `live`. Whatever fails partway, `live` still names the old
    // image, so the next run (even with no changes to apply) writes them all again.
    for f in moving {
        let name = f.name.clone();
        let previous = retag(env, f, Slot::Live(name.clone()), vec!["previous".into()]);
        let title = format!("{name}: keep the previous image as the rollback target");
        out.push(Step::new(title, previous).when(When::PreviousMoves(name.clone())));
        let tags = vec![format!("deployed-{}", facts.now), "live".into()];
        let mark = retag(env, f, Slot::Digest(name.clone()), tags);
        let title = format!("{name}: mark the deployed image");
        out.push(Step::new(title, mark).when(When::LiveMoves(name)));
    }
    let cmd = terraform::output(env, &tf_env);
    out.push(Step::new("terraform outputs", Action::Outputs { cmd }));
    // On the local stack the functions really run: the URLs printed at the end answer.
    if let Some(local) = &env.local {
        let functions = env.functions.iter().map(|f| (f.name.clone(), f.platform));
        let serve = Action::ServeLocal {
            endpoint_url: local.endpoint_url.clone(),
            region: env.region.clone(),
            functions: functions.collect(),
        };
        let title = "serve the functions locally (Lambda emulator)";
        out.push(Step::new(title, serve));
    }
    out
}
