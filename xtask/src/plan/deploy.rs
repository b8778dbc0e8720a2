//! The `deploy` plan: the `image` plan of the chosen functions (the others stay on their
//! `live` image), then the release: a Terraform plan and apply pinned to every digest, and the
//! deployment tags.

use anyhow::Result;

use super::image::{self, Options};
use super::{Plan, release, steps};
use crate::facts::Facts;
use crate::settings::Environment;

pub fn plan(env: &Environment, facts: &Facts, opts: &Options) -> Result<Plan> {
    let mut plan = image::plan(env, facts, opts)?;
    plan.command = "deploy";
    // An environment that promotes refuses to build: the plan ends there.
    if env.promote_from.is_none() {
        let chosen = env.select(&opts.functions)?;
        let confirm = steps::asks(env, opts.yes, opts.ci);
        let release = release::steps(env, facts, &chosen, confirm);
        plan.steps.extend(release);
    }
    plan.cleanup.splice(0..0, release::files(env, facts));
    Ok(plan)
}
