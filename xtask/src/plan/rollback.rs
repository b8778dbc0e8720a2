//! The `rollback` plan: deploy images already in the registry, by tag or digest, with no
//! build; functions not named by `--function` stay as they are.

use anyhow::{Result, bail};

use super::steps::{self, lookup};
use super::{Action, Plan, Slot, Source, Step, release};
use crate::facts::Facts;
use crate::settings::Environment;

#[derive(Debug, Clone, Default)]
pub struct Options {
    /// A tag in each function's repository, or a `sha256:` digest (one function only).
    pub to: Option<String>,
    pub functions: Vec<String>,
    pub yes: bool,
    pub ci: bool,
}

/// `source`: the environment `env` promotes from, whose runs a rollback may also go back to.
pub fn plan(
    env: &Environment,
    source: Option<&Environment>,
    facts: &Facts,
    opts: &Options,
) -> Result<Plan> {
    let chosen = env.select(&opts.functions)?;
    let digest = opts.to.as_deref().filter(|t| t.starts_with("sha256:"));
    if digest.is_some() && chosen.len() != 1 {
        bail!(
            "--to with a digest names one image: pass the one function it belongs to with \
             --function (environment `{}` has {})",
            env.name,
            env.functions.len()
        );
    }
    let mut steps = steps::guards(env, &facts.tools, true);
    steps.extend(steps::init(env, facts));
    let label = opts.to.as_deref().unwrap_or("previous");
    for f in &chosen {
        let repo = env.image_repo(f);
        let target = match digest {
            Some(digest) => format!("{repo}@{digest}"),
            None => format!("{repo}:{label}"),
        };
        let why = format!(
            "{target} is not in the registry: pass --to with a tag or digest that was pushed \
             (see `docker buildx imagetools inspect`)"
        );
        let lookup = lookup(target.clone(), Slot::Digest(f.name.clone()), Some(why));
        let title = format!("{}: rollback target lookup ({label})", f.name);
        steps.push(Step::new(title, lookup));
        steps.push(steps::verify(f, target.into()));
        // An environment that promotes goes back only to a digest it or its source ran.
        if let Some(from) = source {
            let ran = Action::CheckRan {
                function: f.name.clone(),
                places: vec![Source::of(env, f), Source::of(from, f)],
            };
            let (name, here, there) = (&f.name, &env.name, &from.name);
            let title = format!("{name}: ran in `{here}` or `{there}` before");
            steps.push(Step::new(title, ran));
        }
    }
    let confirm = steps::asks(env, opts.yes, opts.ci);
    steps.extend(release::steps(env, facts, &chosen, confirm));
    let functions = steps::planned(env, &chosen, |_| vec![]);
    let cleanup = release::files(env, facts);
    Ok(Plan::new("rollback", env, steps, cleanup, functions))
}
