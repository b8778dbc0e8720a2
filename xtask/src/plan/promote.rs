//! The `promote` plan: the digest that is `live` in the source environment, copied registry to
//! registry into the target's repository as `promoted-from-<source>-<time>` (no build),
//! checked to be that very digest, passed through the target's scan gate, then released there.

use anyhow::{Result, bail};

use super::steps::{self, lookup};
use super::{Action, Plan, Slot, Source, Step, release};
use crate::facts::Facts;
use crate::settings::{Environment, Function};

#[derive(Debug, Clone, Default)]
pub struct Options {
    pub functions: Vec<String>,
    pub yes: bool,
    pub ci: bool,
}

pub fn plan(
    source: &Environment,
    target: &Environment,
    facts: &Facts,
    opts: &Options,
) -> Result<Plan> {
    let (from, to) = (&source.name, &target.name);
    if target.promote_from.as_ref() != Some(from) {
        bail!(
            "`{to}` does not promote from `{from}`: set promote_from = \"{from}\" under \
             [environments.{to}] in the settings (its account layer then grants the reads it \
             needs; run `cargo xtask bootstrap` for both environments)"
        );
    }
    let chosen = target.select(&opts.functions)?;
    let tag = format!("promoted-from-{from}-{}", facts.now);
    let place = |f: &Function| {
        let s = source.functions.iter().find(|s| s.name == f.name);
        let s = s.expect("settings check that a promotion's source has its functions");
        Source::of(source, s)
    };
    let mut steps = steps::guards(target, &facts.tools, true);
    if source.registry() != target.registry() {
        steps.push(steps::login(target, chosen.first().map(|f| place(f))));
    }
    for f in &chosen {
        let place = place(f);
        let live = format!("{}/{}:live", place.registry, place.repository);
        let why = format!(
            "`{}` has no live image in `{from}` ({live} is missing): deploy it there first",
            f.name
        );
        let lookup = lookup(live, Slot::Digest(f.name.clone()), Some(why));
        let title = format!("{}: the image live in `{from}`", f.name);
        steps.push(Step::new(title, lookup));
        let ran = Action::CheckRan {
            function: f.name.clone(),
            places: vec![place],
        };
        let title = format!("{}: `{from}` has deployed it", f.name);
        steps.push(Step::new(title, ran));
    }
    steps.extend(steps::init(target, facts));
    let confirm = steps::asks(target, opts.yes, opts.ci);
    steps.extend(steps::repositories(target, facts, confirm));
    for f in &chosen {
        let copy = Action::CopyImage {
            function: f.name.clone(),
            from: place(f),
            repository: f.repository.clone(),
            tag: tag.clone(),
        };
        let title = format!("{}: copy the image from `{from}` (no build)", f.name);
        steps.push(Step::new(title, copy));
        steps.push(steps::verify(f, steps::pinned(target, f)));
        steps.extend(steps::mirror(target, f, vec![tag.clone()]));
        steps.push(steps::scan_gate(target, f));
    }
    steps.extend(release::steps(target, facts, &chosen, confirm));
    let functions = steps::planned(target, &chosen, |_| vec![tag.clone()]);
    let mut cleanup = release::files(target, facts);
    cleanup.push(steps::repositories_file(target, facts));
    Ok(Plan::new("promote", target, steps, cleanup, functions))
}
