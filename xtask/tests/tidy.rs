//! Checks of the source tree itself, in the spirit of rust-analyzer's `tidy`: the module graph
//! has one direction (a layer order written once, below), the plans share their step builders
//! instead of importing each other, every module says what it is for, and `xtask/src` stays
//! within its size budget. Each failure says what to fix.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// The crate's top-level modules, lowest first. A module may use only modules of lower layers.
const LAYERS: &[&[&str]] = &[
    &["paths", "secret", "cmdline", "cli", "scan", "signals"],
    &["settings", "retry", "http"],
    &["tools", "smoke"],
    &["aws", "facts", "registry"],
    &["local"],
    &["plan"],
    &["report"],
    &["runner"],
    &["pipeline", "audit"],
    &["bench", "ci"],
];

/// Within `plan/`: what each command's plan may use besides the shared `steps` (and the
/// types in `plan/mod.rs`).
const PLAN_USES: &[(&str, &[&str])] = &[
    ("steps", &[]),
    ("release", &["steps"]),
    ("image", &["steps"]),
    ("deploy", &["steps", "release", "image"]),
    ("rollback", &["steps", "release"]),
    ("promote", &["steps", "release"]),
    ("bootstrap", &["steps"]),
];

/// Non-test lines of `xtask/src` (rustfmt's layout, comments included): a ratchet at today's
/// size, so the source can only shrink. The structure issue's target is 10,000; lower this
/// number with every change that removes lines, never raise it.
const BUDGET: usize = 12_450;

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

/// Every source file with its non-test text: test modules (`#[cfg(test)]` to the end of the
/// file, or a `tests.rs` of their own) are left out.
fn sources() -> Vec<(PathBuf, String)> {
    fn walk(dir: &Path, out: &mut Vec<(PathBuf, String)>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                walk(&path, out);
            } else if path.extension().is_some_and(|e| e == "rs")
                && path.file_name().is_some_and(|n| n != "tests.rs")
            {
                let text = std::fs::read_to_string(&path).unwrap();
                let end = text.find("\n#[cfg(test)]").map_or(text.len(), |i| i + 1);
                out.push((path, text[..end].to_string()));
            }
        }
    }
    let mut out = vec![];
    walk(&src(), &mut out);
    out.sort();
    out
}

/// The top-level module a file belongs to, and its path below it.
fn module(path: &Path) -> (String, Vec<String>) {
    let rel = path.strip_prefix(src()).unwrap().with_extension("");
    let parts: Vec<String> = rel
        .iter()
        .map(|p| p.to_string_lossy().into_owned())
        .collect();
    (parts[0].clone(), parts[1..].to_vec())
}

/// `crate::NAME` references in `text` (also `crate::{A, B::c}`), with their lines: the
/// module and the whole path.
fn uses(text: &str) -> Vec<(usize, String, String)> {
    uses_of(text, "crate::")
}

/// [`uses`] for any path prefix (`crate::`, `super::`).
fn uses_of(text: &str, prefix: &str) -> Vec<(usize, String, String)> {
    let mut out = vec![];
    let mut rest = text;
    let mut offset = 0;
    while let Some(at) = rest.find(prefix) {
        let line = text[..offset + at].matches('\n').count() + 1;
        for path in paths(&rest[at + prefix.len()..]) {
            let name = path.split("::").next().unwrap_or_default().to_string();
            out.push((line, name, path));
        }
        offset += at + prefix.len();
        rest = &text[offset..];
    }
    out
}

/// The paths a use tree at the start of `text` names: `a::b`, or `a::{b, c::{d, e}}` as
/// `a::b`, `a::c::d` and `a::c::e`.
fn paths(text: &str) -> Vec<String> {
    let head: String = text
        .chars()
        .take_while(|c| c.is_alphanumeric() || *c == '_' || *c == ':')
        .collect();
    let Some(inner) = text[head.len()..].strip_prefix('{') else {
        return vec![head].into_iter().filter(|h| !h.is_empty()).collect();
    };
    let (mut depth, mut start, mut out) = (0, 0, vec![]);
    for (i, c) in inner.char_indices() {
        match c {
            '{' => depth += 1,
            '}' if depth == 0 => {
                out.push(&inner[start..i]);
                break;
            }
            '}' => depth -= 1,
            ',' if depth == 0 => {
                out.push(&inner[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    out.iter()
        .flat_map(|item| paths(item.trim()))
        .map(|p| format!("{head}{p}"))
        .collect()
}

fn layer(module: &str) -> Option<usize> {
    LAYERS.iter().position(|l| l.contains(&module))
}

/// The violations of the layer order in `files`.
fn layering(files: &[(PathBuf, String)]) -> Vec<String> {
    let mut problems = vec![];
    for (path, text) in files {
        let (from, sub) = module(path);
        if from == "lib" || from == "main" {
            continue;
        }
        let Some(own) = layer(&from) else {
            problems.push(format!(
                "{}: module `{from}` is in no layer: add it to LAYERS in xtask/tests/tidy.rs",
                path.display()
            ));
            continue;
        };
        for (line, to, full) in uses(text) {
            if to == from {
                if from == "plan" {
                    problems.extend(plan_rule(path, line, &sub, &full));
                }
                continue;
            }
            match layer(&to) {
                Some(l) if l < own => {}
                _ => problems.push(format!(
                    "{}:{line}: `{from}` uses `crate::{full}`, but `{to}` is not in a lower layer than `{from}`: \
                     move the shared code down, or reconsider the layer order in xtask/tests/tidy.rs",
                    path.display()
                )),
            }
        }
    }
    problems
}

fn plan_rule(path: &Path, line: usize, sub: &[String], full: &str) -> Option<String> {
    let from = sub.first().map(String::as_str).unwrap_or("mod");
    let to = full.strip_prefix("plan::")?.split("::").next()?;
    let allowed = PLAN_USES
        .iter()
        .find(|(p, _)| *p == from)
        .map_or(&[][..], |(_, a)| *a);
    let module_types = !PLAN_USES.iter().any(|(p, _)| *p == to);
    (to != from && !module_types && !allowed.contains(&to)).then(|| {
        format!(
            "{}:{line}: plan `{from}` uses plan `{to}`: commands share builders through plan/steps.rs \
             (or plan/release.rs), not through each other",
            path.display()
        )
    })
}

/// Cycles among the submodules of one module (`runner/aws.rs` → `runner/scan.rs` → back),
/// through `crate::top::sub` or `super::sub`. A module's own `mod.rs` is the parent that
/// declares them, so uses of it and from it are not edges.
fn sibling_cycles(files: &[(PathBuf, String)]) -> Vec<String> {
    let node = |path: &Path| {
        let (top, sub) = module(path);
        let first = sub.first().filter(|s| *s != "mod")?;
        Some(format!("{top}/{first}"))
    };
    let nodes: Vec<String> = files.iter().filter_map(|(p, _)| node(p)).collect();
    let mut edges: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (path, text) in files {
        let (Some(from), (top, _)) = (node(path), module(path)) else {
            continue;
        };
        let crate_uses = uses(text).into_iter().filter(|(_, m, _)| *m == top);
        let crate_uses =
            crate_uses.filter_map(|(_, _, full)| Some(full.split("::").nth(1)?.to_string()));
        let super_uses = uses_of(text, "super::").into_iter().map(|(_, m, _)| m);
        for sub in crate_uses.chain(super_uses) {
            let to = format!("{top}/{sub}");
            if to != from && nodes.contains(&to) {
                let out = edges.entry(from.clone()).or_default();
                if !out.contains(&to) {
                    out.push(to);
                }
            }
        }
    }
    // Depth-first from every node; a path that reaches a node already on it is a cycle.
    fn walk(
        at: &str,
        edges: &BTreeMap<String, Vec<String>>,
        path: &mut Vec<String>,
        found: &mut Vec<String>,
    ) {
        if let Some(start) = path.iter().position(|p| p == at) {
            let mut cycle = path[start..].to_vec();
            cycle.push(at.to_string());
            // Each cycle once: reported from its smallest node.
            if cycle[0] == *cycle[..cycle.len() - 1].iter().min().unwrap() {
                found.push(cycle.join(" → "));
            }
            return;
        }
        path.push(at.to_string());
        for next in edges.get(at).into_iter().flatten() {
            walk(next, edges, path, found);
        }
        path.pop();
    }
    let mut found = vec![];
    for start in edges.keys() {
        walk(start, &edges, &mut vec![], &mut found);
    }
    found.sort();
    found.dedup();
    found
        .into_iter()
        .map(|c| {
            format!(
                "submodule cycle {c}: move what both need into one of them, or into a leaf \
                 they both use"
            )
        })
        .collect()
}

#[test]
fn the_module_graph_has_one_direction() {
    let files = sources();
    let mut problems = layering(&files);
    problems.extend(sibling_cycles(&files));
    assert!(problems.is_empty(), "\n{}", problems.join("\n"));
}

#[test]
fn the_cycle_check_finds_a_cycle_through_super_and_crate_paths() {
    let file = |rel: &str, text: &str| (src().join(rel), text.to_string());
    let problems = sibling_cycles(&[
        file("runner/aws.rs", "use super::scan::Gate;\n"),
        file("runner/scan.rs", "use crate::runner::{tags, Runner};\n"),
        file("runner/tags.rs", "use super::{aws::Ecr, Step};\n"),
        file("runner/mod.rs", "mod aws;\nuse self::scan::Gate;\n"),
        file("local/lambda.rs", "use super::images;\n"),
        file("local/images.rs", "use crate::paths;\n"),
    ]);
    assert_eq!(
        problems.len(),
        1,
        "one cycle, found once, and none through mod.rs: {problems:#?}"
    );
    assert!(
        problems[0]
            .starts_with("submodule cycle runner/aws → runner/scan → runner/tags → runner/aws"),
        "{problems:#?}"
    );
}

#[test]
fn the_layer_check_fails_on_an_upward_use_and_a_plan_cycle() {
    let file = |rel: &str, text: &str| (src().join(rel), text.to_string());
    let problems = layering(&[
        file("settings/mod.rs", "use crate::runner::Runner;\n"),
        file("plan/image.rs", "use crate::plan::deploy::plan;\n"),
        file(
            "plan/deploy.rs",
            "use crate::plan::image::Options;\nuse crate::tools::docker;\n",
        ),
        file("brand_new.rs", "use crate::paths;\n"),
    ]);
    assert_eq!(problems.len(), 3, "{problems:#?}");
    assert!(problems[0].contains("settings/mod.rs:1: `settings` uses `crate::runner::Runner`"));
    assert!(problems[1].contains("plan `image` uses plan `deploy`"));
    assert!(problems[2].contains("module `brand_new` is in no layer"));
}

#[test]
fn every_module_says_what_it_is_for() {
    let missing: Vec<String> = sources()
        .iter()
        .filter(|(_, text)| !text.trim_start().starts_with("//!"))
        .map(|(p, _)| {
            format!(
                "{}: start the file with a `//!` line saying what the module is for",
                p.display()
            )
        })
        .collect();
    assert!(missing.is_empty(), "\n{}", missing.join("\n"));
}

#[test]
fn the_tool_names_no_function_and_no_project() {
    let settings = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../infrastructure/environments.toml"),
    )
    .unwrap();
    let mut names: Vec<String> = settings
        .lines()
        .filter_map(|l| {
            l.strip_prefix("[functions.")?
                .strip_suffix(']')
                .map(|n| n.split('.').next().unwrap().to_string())
        })
        .collect();
    names.extend(settings.lines().filter_map(|l| {
        Some(
            l.strip_prefix("project = \"")?
                .trim_end_matches('"')
                .to_string(),
        )
    }));
    names.sort();
    names.dedup();
    assert!(names.len() >= 2, "{names:?}");
    let mut found = vec![];
    for (path, text) in sources() {
        for (i, line) in text.lines().enumerate() {
            for name in &names {
                // A one-word name such as `status` is also an ordinary word: only its uses as a
                // name (a path, a resource name) count. A compound name counts anywhere.
                let mut spellings = vec![
                    format!("lambdas/{name}"),
                    format!("-{name}\""),
                    format!("\"{name}-"),
                    format!("-{name}-"),
                ];
                if name.contains('-') {
                    spellings.extend([name.clone(), name.replace('-', "_")]);
                }
                if spellings.iter().any(|s| line.contains(s.as_str())) {
                    found.push(format!(
                        "{}:{}: names `{name}`: {}",
                        path.display(),
                        i + 1,
                        line.trim()
                    ));
                }
            }
        }
    }
    assert!(
        found.is_empty(),
        "xtask must stay general; functions and the project are settings:\n{}",
        found.join("\n")
    );
}

#[test]
fn the_source_stays_within_its_budget() {
    let mut sizes: BTreeMap<usize, Vec<String>> = BTreeMap::new();
    let mut total = 0;
    for (path, text) in sources() {
        let n = text.lines().count();
        total += n;
        sizes.entry(n).or_default().push(path.display().to_string());
    }
    let largest: Vec<String> = sizes
        .iter()
        .rev()
        .take(5)
        .flat_map(|(n, p)| p.iter().map(move |p| format!("{n} {p}")))
        .collect();
    assert!(
        total <= BUDGET,
        "xtask/src has {total} non-test lines, over the budget of {BUDGET}: a file past about 500 lines \
         is two concerns; the largest:\n{}",
        largest.join("\n")
    );
}
