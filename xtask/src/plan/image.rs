//! The `image` plan: the guards, the first deploy's repositories, then one bake of every
//! function whose content tag is missing and the checks of each function's image.

use anyhow::Result;

use super::steps::{self, ImageOptions};
use super::{Action, Plan, Step};
use crate::facts::Facts;
use crate::settings::Environment;

#[derive(Debug, Clone, Default)]
pub struct Options {
    pub image: ImageOptions,
    pub yes: bool,
    pub ci: bool,
    /// `--function`: the functions to build (all when empty).
    pub functions: Vec<String>,
}

pub fn plan(env: &Environment, facts: &Facts, opts: &Options) -> Result<Plan> {
    let functions = env.select(&opts.functions)?;
    let mut steps = steps::guards(env, &facts.tools, true);
    // An environment that runs only promoted images never builds.
    if let Some(from) = &env.promote_from {
        let name = &env.name;
        let why = format!(
            "`{name}` runs only images that `{from}` has run (promote_from = \"{from}\"), so \
             nothing is built here: run `cargo xtask promote --from {from} --to {name}` (or \
             `cargo xtask rollback --env {name} --to sha256:...` for an image either ran)"
        );
        steps.push(Step::new("build", Action::Refuse(why)));
        return Ok(Plan::new("image", env, steps, vec![], vec![]));
    }
    // `image` may be the first command in an environment: it creates the repositories as
    // `deploy` does.
    steps.extend(steps::init(env, facts));
    let confirm = steps::asks(env, opts.yes, opts.ci);
    steps.extend(steps::repositories(env, facts, confirm));
    steps.extend(steps::image(env, facts, &functions, opts.image)?);
    let cleanup = vec![steps::repositories_file(env, facts)];
    let planned = steps::planned(env, &functions, |f| steps::tags(facts, &f.name));
    Ok(Plan::new("image", env, steps, cleanup, planned))
}
