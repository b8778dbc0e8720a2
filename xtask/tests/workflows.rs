//! Tests that hold the GitHub Actions workflows to the real CLI, the settings and the hardening rules.
//!
//! The workflows run `cargo xtask …` lines that nothing else compiles: a renamed flag or
//! environment would only fail during a deploy. These tests parse every such line with the
//! real clap CLI, check each `--env` against infrastructure/environments.toml, and check
//! the deploy jobs' shape (environment, concurrency, minimal permissions, OIDC) and the
//! hardening that actionlint and zizmor do not enforce (SHA pins with a version comment).
//!
//! The YAML reader below is deliberately small: it reads the block subset the workflows are
//! written in and rejects anything else (anchors, tags, nested flow collections) with the
//! line number, so a construct it does not know fails the test instead of being misread.
//! It keeps each scalar's trailing comment, which a serde YAML parser drops and the SHA-pin
//! check needs.

use std::collections::BTreeMap;
use std::path::Path;

use clap::Parser;

use xtask::cli::{Cli, Command};
use xtask::paths;
use xtask::settings::Settings;

// ---------------------------------------------------------------------------------------------
// A minimal block-YAML reader.

#[derive(Debug, Clone, PartialEq)]
enum Node {
    Scalar(Scalar),
    Seq(Vec<Node>),
    /// Keys in file order; duplicate keys are rejected.
    Map(Vec<(String, Node)>),
}

#[derive(Debug, Clone, PartialEq)]
struct Scalar {
    value: String,
    /// The text after `#` on the scalar's line, trimmed.
    comment: Option<String>,
    /// 1-based line number.
    line: usize,
}

impl Node {
    fn get(&self, key: &str) -> Option<&Node> {
        match self {
            Node::Map(entries) => entries.iter().find(|(k, _)| k == key).map(|(_, v)| v),
            _ => None,
        }
    }

    fn str(&self) -> Option<&str> {
        match self {
            Node::Scalar(s) => Some(&s.value),
            _ => None,
        }
    }

    fn get_str(&self, key: &str) -> Option<&str> {
        self.get(key).and_then(Node::str)
    }

    fn entries(&self) -> &[(String, Node)] {
        match self {
            Node::Map(entries) => entries,
            _ => &[],
        }
    }

    fn items(&self) -> &[Node] {
        match self {
            Node::Seq(items) => items,
            _ => &[],
        }
    }
}

struct Reader {
    /// Raw lines; a sequence item's `- ` is blanked out in place so that its mapping
    /// reads like any other block mapping.
    lines: Vec<String>,
    pos: usize,
}

type ParseResult<T> = Result<T, String>;

fn parse_yaml(text: &str) -> ParseResult<Node> {
    let mut reader = Reader {
        lines: text.lines().map(str::to_owned).collect(),
        pos: 0,
    };
    reader.skip_blank();
    let Some(indent) = reader.current_indent() else {
        return Ok(Node::Map(Vec::new()));
    };
    if indent != 0 {
        return Err(format!(
            "line {}: the document must start at column 1",
            reader.pos + 1
        ));
    }
    let node = reader.block(0)?;
    reader.skip_blank();
    if reader.pos < reader.lines.len() {
        return Err(format!("line {}: unexpected indentation", reader.pos + 1));
    }
    Ok(node)
}

fn indent_of(line: &str) -> usize {
    line.len() - line.trim_start_matches(' ').len()
}

/// Splits `text` into its content and its trailing comment: a `#` at the start or after
/// whitespace, outside quotes.
fn split_comment(text: &str) -> (&str, Option<&str>) {
    let mut quote = None;
    let mut prev_space = true;
    for (i, c) in text.char_indices() {
        match quote {
            Some(q) if c == q => quote = None,
            Some(_) => {}
            None if c == '"' || c == '\'' => quote = Some(c),
            None if c == '#' && prev_space => {
                return (text[..i].trim_end(), Some(text[i + 1..].trim()));
            }
            None => {}
        }
        prev_space = c == ' ' || c == '\t';
    }
    (text.trim_end(), None)
}

/// The byte offset of the `:` that ends a mapping key (followed by a space or the end), outside quotes.
fn key_colon(text: &str) -> Option<usize> {
    let mut quote = None;
    let bytes = text.as_bytes();
    for (i, c) in text.char_indices() {
        match quote {
            Some(q) if c == q => quote = None,
            Some(_) => {}
            None if (c == '"' || c == '\'') && i == 0 => quote = Some(c),
            None if c == ':' && (i + 1 == bytes.len() || bytes[i + 1] == b' ') => return Some(i),
            None => {}
        }
    }
    None
}

fn is_seq_item(content: &str) -> bool {
    content == "-" || content.starts_with("- ")
}

fn unquote(text: &str, line: usize) -> ParseResult<String> {
    let text = text.trim();
    if let Some(inner) = text.strip_prefix('\'') {
        let inner = inner
            .strip_suffix('\'')
            .ok_or_else(|| format!("line {line}: unterminated single-quoted string"))?;
        return Ok(inner.replace("''", "'"));
    }
    if let Some(inner) = text.strip_prefix('"') {
        let inner = inner
            .strip_suffix('"')
            .ok_or_else(|| format!("line {line}: unterminated double-quoted string"))?;
        let mut out = String::new();
        let mut chars = inner.chars();
        while let Some(c) = chars.next() {
            if c != '\\' {
                out.push(c);
                continue;
            }
            match chars.next() {
                Some('n') => out.push('\n'),
                Some('t') => out.push('\t'),
                Some(c @ ('"' | '\\' | '/')) => out.push(c),
                other => return Err(format!("line {line}: unsupported escape \\{other:?}")),
            }
        }
        return Ok(out);
    }
    if let Some(c) = text.chars().next().filter(|c| "&*!%@`".contains(*c)) {
        return Err(format!(
            "line {line}: `{c}` (anchor, alias, tag or reserved indicator) is not supported here"
        ));
    }
    Ok(text.to_owned())
}

impl Reader {
    fn skip_blank(&mut self) {
        while self.pos < self.lines.len() {
            let trimmed = self.lines[self.pos].trim();
            if trimmed.is_empty() || trimmed.starts_with('#') {
                self.pos += 1;
            } else {
                break;
            }
        }
    }

    fn current_indent(&self) -> Option<usize> {
        self.lines.get(self.pos).map(|l| indent_of(l))
    }

    fn content(&self) -> &str {
        self.lines[self.pos].trim_start_matches(' ')
    }

    /// A mapping or a sequence whose first line is the current one, at `indent`.
    fn block(&mut self, indent: usize) -> ParseResult<Node> {
        if self.lines[self.pos].starts_with('\t') {
            return Err(format!("line {}: tabs are not indentation", self.pos + 1));
        }
        if is_seq_item(self.content()) {
            self.seq(indent)
        } else {
            self.map(indent)
        }
    }

    fn seq(&mut self, indent: usize) -> ParseResult<Node> {
        let mut items = Vec::new();
        loop {
            self.skip_blank();
            if self.current_indent() != Some(indent) || !is_seq_item(self.content()) {
                break;
            }
            let line = self.pos + 1;
            let after_dash = self.content()[1..].to_owned();
            let rest = after_dash.trim_start_matches(' ').to_owned();
            let (body, comment) = split_comment(&rest);
            if body.is_empty() {
                self.pos += 1;
                items.push(self.nested(indent, line, comment)?);
            } else if key_colon(body).is_some() {
                // `- key: value`: the item is a mapping whose first key sits after the dash.
                let column = indent + 1 + (after_dash.len() - rest.len());
                self.lines[self.pos] = format!("{}{}", " ".repeat(column), rest);
                items.push(self.map(column)?);
            } else {
                self.pos += 1;
                items.push(self.inline(body, comment, line)?);
            }
        }
        Ok(Node::Seq(items))
    }

    fn map(&mut self, indent: usize) -> ParseResult<Node> {
        let mut entries: Vec<(String, Node)> = Vec::new();
        loop {
            self.skip_blank();
            match self.current_indent() {
                Some(i) if i == indent && !is_seq_item(self.content()) => {}
                Some(i) if i > indent => {
                    return Err(format!("line {}: unexpected indentation", self.pos + 1));
                }
                _ => break,
            }
            let line = self.pos + 1;
            let content = self.content().to_owned();
            let colon = key_colon(&content)
                .ok_or_else(|| format!("line {line}: expected `key: value`, found `{content}`"))?;
            let key = unquote(&content[..colon], line)?;
            if entries.iter().any(|(k, _)| *k == key) {
                return Err(format!("line {line}: duplicate key `{key}`"));
            }
            let (value, comment) = split_comment(content[colon + 1..].trim_start());
            self.pos += 1;
            let node = if value.is_empty() {
                self.nested(indent, line, comment)?
            } else if value == "|" || value == "|-" || value == ">" || value == ">-" {
                self.block_scalar(indent, line, value.starts_with('>'))
            } else {
                self.inline(value, comment, line)?
            };
            entries.push((key, node));
        }
        Ok(Node::Map(entries))
    }

    /// The value of a key (or item) that has nothing after its `:` (or `-`).
    fn nested(&mut self, indent: usize, line: usize, comment: Option<&str>) -> ParseResult<Node> {
        self.skip_blank();
        match self.current_indent() {
            Some(i) if i > indent => self.block(i),
            // YAML lets a mapping's sequence value start at the key's own indentation.
            Some(i) if i == indent && is_seq_item(self.content()) => self.seq(i),
            _ => Ok(Node::Scalar(Scalar {
                value: String::new(),
                comment: comment.map(str::to_owned),
                line,
            })),
        }
    }

    fn block_scalar(&mut self, indent: usize, line: usize, folded: bool) -> Node {
        let mut body: Vec<&str> = Vec::new();
        let mut text_indent = None;
        while let Some(raw) = self.lines.get(self.pos) {
            let blank = raw.trim().is_empty();
            if !blank && indent_of(raw) <= indent {
                break;
            }
            let strip = *text_indent.get_or_insert(if blank { usize::MAX } else { indent_of(raw) });
            body.push(if blank {
                ""
            } else {
                &raw[strip.min(raw.len())..]
            });
            self.pos += 1;
        }
        while body.last() == Some(&"") {
            body.pop();
        }
        let value = body.join(if folded { " " } else { "\n" });
        Node::Scalar(Scalar {
            value,
            comment: None,
            line,
        })
    }

    fn inline(&self, value: &str, comment: Option<&str>, line: usize) -> ParseResult<Node> {
        let flow = |inner: &str| -> Vec<String> {
            inner
                .split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
                .collect()
        };
        let nested = |inner: &str| inner.contains(['[', ']', '{', '}']);
        if let Some(inner) = value.strip_prefix('[') {
            let inner = inner
                .strip_suffix(']')
                .filter(|i| !nested(i))
                .ok_or_else(|| {
                    format!("line {line}: only a one-line flow sequence of scalars is supported")
                })?;
            let items = flow(inner)
                .iter()
                .map(|item| {
                    Ok(Node::Scalar(Scalar {
                        value: unquote(item, line)?,
                        comment: None,
                        line,
                    }))
                })
                .collect::<ParseResult<_>>()?;
            return Ok(Node::Seq(items));
        }
        if let Some(inner) = value.strip_prefix('{').filter(|v| !v.starts_with('{')) {
            let inner = inner
                .strip_suffix('}')
                .filter(|i| !nested(i))
                .ok_or_else(|| {
                    format!("line {line}: only a one-line flow mapping of scalars is supported")
                })?;
            let mut entries = Vec::new();
            for entry in flow(inner) {
                let colon = key_colon(&entry)
                    .ok_or_else(|| format!("line {line}: expected `key: value` in `{value}`"))?;
                entries.push((
                    unquote(&entry[..colon], line)?,
                    Node::Scalar(Scalar {
                        value: unquote(&entry[colon + 1..], line)?,
                        comment: None,
                        line,
                    }),
                ));
            }
            return Ok(Node::Map(entries));
        }
        Ok(Node::Scalar(Scalar {
            value: unquote(value, line)?,
            comment: comment.map(str::to_owned),
            line,
        }))
    }
}

// ---------------------------------------------------------------------------------------------
// The checks.

/// One `cargo xtask …` line of a `run:` script, parsed with the real CLI.
#[derive(Debug)]
struct XtaskRun {
    /// Index of the step in its job.
    step: usize,
    line: usize,
    command: String,
    env: String,
}

/// The subcommand's name as a developer types it.
fn command_name(command: &Command) -> &'static str {
    match command {
        Command::Image(_) => "image",
        Command::Deploy(_) => "deploy",
        Command::Rollback(_) => "rollback",
        Command::Local(_) => "local",
        Command::Ci(_) => "ci",
        Command::Bench(_) => "bench",
    }
}

/// Every `cargo xtask` line in a `run:` script, checked against the CLI and the settings.
fn xtask_runs(
    where_: &str,
    step: usize,
    script: &Scalar,
    settings: &Settings,
    problems: &mut Vec<String>,
) -> Vec<XtaskRun> {
    let mut runs = Vec::new();
    for (offset, text) in script.value.lines().enumerate() {
        let line = script.line + offset + usize::from(script.value.contains('\n'));
        let text = text.trim();
        let Some(args) = text.strip_prefix("cargo xtask") else {
            if text.contains("cargo xtask") {
                problems.push(format!(
                    "{where_} line {line}: `cargo xtask` must start its own line: `{text}`"
                ));
            }
            continue;
        };
        // Arguments, never shell: a quote, a variable or an operator would make the argv
        // below differ from what the runner's shell executes.
        if args.contains(|c: char| "'\"$`\\|&;<>(){}*?#~".contains(c)) {
            problems.push(format!(
                "{where_} line {line}: keep `{text}` to plain words (no quoting, variables or shell operators)"
            ));
            continue;
        }
        let argv = std::iter::once("cargo xtask").chain(args.split_whitespace());
        match Cli::try_parse_from(argv) {
            Ok(cli) => {
                let env = cli.global.env.clone();
                if !settings.environments.contains_key(&env) {
                    problems.push(format!(
                        "{where_} line {line}: `{text}`: environment `{env}` is not in {} (known: {})",
                        paths::SETTINGS,
                        settings
                            .environments
                            .keys()
                            .cloned()
                            .collect::<Vec<_>>()
                            .join(", ")
                    ));
                }
                runs.push(XtaskRun {
                    step,
                    line,
                    command: command_name(&cli.command).to_owned(),
                    env,
                });
            }
            Err(err) => problems.push(format!(
                "{where_} line {line}: `{text}` does not parse with the xtask CLI: {}",
                err.render().to_string().trim()
            )),
        }
    }
    runs
}

fn is_sha_pin(uses: &str) -> bool {
    let Some((action, reference)) = uses.split_once('@') else {
        return false;
    };
    let mut parts = action.split('/');
    let owner_repo = matches!((parts.next(), parts.next()), (Some(o), Some(r)) if !o.is_empty() && !r.is_empty());
    owner_repo
        && reference.len() == 40
        && reference
            .chars()
            .all(|c| c.is_ascii_digit() || ('a'..='f').contains(&c))
}

/// A trailing comment that names the version the SHA is: `v4.2.2`, `v1`.
fn is_version_comment(comment: Option<&str>) -> bool {
    comment
        .and_then(|c| c.split_whitespace().next())
        .and_then(|word| word.strip_prefix('v'))
        .is_some_and(|rest| rest.starts_with(|c: char| c.is_ascii_digit()))
}

/// `permissions:` as `scope -> access`; `read-all`/`write-all` are rejected by the callers.
fn permissions(node: &Node) -> BTreeMap<String, String> {
    node.entries()
        .iter()
        .map(|(k, v)| (k.clone(), v.str().unwrap_or_default().to_owned()))
        .collect()
}

fn job_environment(job: &Node) -> Option<&str> {
    let env = job.get("environment")?;
    env.str().or_else(|| env.get_str("name"))
}

/// Everything wrong with one workflow file; empty when it is fine.
fn check_workflow(file: &str, text: &str, settings: &Settings) -> Vec<String> {
    let mut problems = Vec::new();
    let doc = match parse_yaml(text) {
        Ok(doc) => doc,
        Err(err) => return vec![format!("{file}: {err}")],
    };

    // Least privilege at the top: nothing, or `contents: read`.
    match doc.get("permissions") {
        None => problems.push(format!(
            "{file}: no top-level `permissions:`; use `permissions: {{}}` or `contents: read`"
        )),
        Some(node) => {
            let perms = permissions(node);
            let minimal = matches!(node, Node::Map(_))
                && perms.iter().all(|(k, v)| k == "contents" && v == "read");
            if !minimal {
                problems.push(format!(
                    "{file}: top-level permissions must be `{{}}` or `contents: read`, found {perms:?}"
                ));
            }
        }
    }

    let Some(jobs) = doc.get("jobs").filter(|j| matches!(j, Node::Map(_))) else {
        problems.push(format!("{file}: no `jobs:` mapping"));
        return problems;
    };
    for (job_id, job) in jobs.entries() {
        let where_ = format!("{file} job `{job_id}`");
        let mut runs = Vec::new();
        for (index, step) in job
            .get("steps")
            .map(Node::items)
            .unwrap_or_default()
            .iter()
            .enumerate()
        {
            if let Some(Node::Scalar(uses)) = step.get("uses") {
                if !is_sha_pin(&uses.value) {
                    problems.push(format!(
                        "{where_} line {}: `{}` must be pinned to a full 40-hex commit SHA",
                        uses.line, uses.value
                    ));
                }
                if !is_version_comment(uses.comment.as_deref()) {
                    problems.push(format!(
                        "{where_} line {}: `{}` needs its version in a trailing comment (`# v4.2.2`)",
                        uses.line, uses.value
                    ));
                }
                if uses.value.starts_with("actions/checkout@")
                    && step
                        .get("with")
                        .and_then(|w| w.get_str("persist-credentials"))
                        != Some("false")
                {
                    problems.push(format!(
                        "{where_} line {}: checkout needs `with: persist-credentials: false`",
                        uses.line
                    ));
                }
            }
            if let Some(Node::Scalar(script)) = step.get("run") {
                if script.value.contains("${{") {
                    problems.push(format!(
                        "{where_} line {}: `${{{{ … }}}}` inside `run:`; pass the value through `env:`",
                        script.line
                    ));
                }
                runs.extend(xtask_runs(&where_, index, script, settings, &mut problems));
            }
        }

        let environment = job_environment(job);
        let deploys = runs.iter().any(|r| {
            matches!(r.command.as_str(), "image" | "deploy" | "rollback") && r.env != "local"
        });
        if environment.is_none() && !deploys {
            // Not a deploy job: it may read, never write or mint OIDC tokens.
            if let Some(node) = job.get("permissions") {
                let perms = permissions(node);
                if !matches!(node, Node::Map(_)) || perms.values().any(|v| v != "read") {
                    problems.push(format!(
                        "{where_}: a job that does not deploy may only read, found {perms:?}"
                    ));
                }
            }
            continue;
        }
        check_deploy_job(&where_, job, environment, &runs, settings, &mut problems);
    }
    problems
}

fn check_deploy_job(
    where_: &str,
    job: &Node,
    environment: Option<&str>,
    runs: &[XtaskRun],
    settings: &Settings,
    problems: &mut Vec<String>,
) {
    let Some(env) = environment else {
        problems.push(format!(
            "{where_}: deploys without `environment:`; the OIDC role trusts only `environment:<env>`"
        ));
        return;
    };
    if !settings.environments.contains_key(env) {
        problems.push(format!(
            "{where_}: GitHub environment `{env}` is not an environment in {}",
            paths::SETTINGS
        ));
    }
    // The deploy role's trust condition is `repo:<owner>/<repo>:environment:<env>`, so the job's
    // GitHub Environment and the settings environment must be the same name.
    for run in runs {
        if run.env != env {
            problems.push(format!(
                "{where_} line {}: `cargo xtask {}` acts on `{}` but the job's environment is `{env}`",
                run.line, run.command, run.env
            ));
        }
    }
    let step_of = |command: &str| runs.iter().find(|r| r.command == command).map(|r| r.step);
    let (image, deploy) = (step_of("image"), step_of("deploy"));
    // A job that only rolls back deploys an image that is already pushed.
    let rollback_only =
        image.is_none() && deploy.is_none() && runs.iter().any(|r| r.command == "rollback");
    if !rollback_only && !matches!((image, deploy), (Some(i), Some(d)) if i < d) {
        problems.push(format!(
            "{where_}: a deploy job runs `cargo xtask image --env {env}`, then `cargo xtask deploy --env {env}`"
        ));
    }
    let steps = job.get("steps").map(Node::items).unwrap_or_default();
    if let Some(image) = step_of("image") {
        if steps[image].get_str("id") != Some("image") {
            problems.push(format!(
                "{where_}: the `cargo xtask image` step needs `id: image`"
            ));
        }
        for output in ["digest", "image_uri"] {
            let expected = format!("${{{{ steps.image.outputs.{output} }}}}");
            if job.get("outputs").and_then(|o| o.get_str(output)) != Some(expected.as_str()) {
                problems.push(format!(
                    "{where_}: job output `{output}` must be `{expected}`"
                ));
            }
        }
    }

    let concurrency = job.get("concurrency");
    let group = concurrency.and_then(|c| c.get_str("group"));
    let cancel = concurrency.and_then(|c| c.get_str("cancel-in-progress"));
    if group != Some(format!("deploy-{env}").as_str()) || cancel != Some("false") {
        problems.push(format!(
            "{where_}: needs `concurrency: {{ group: deploy-{env}, cancel-in-progress: false }}`, found group {group:?}, cancel-in-progress {cancel:?}"
        ));
    }

    let perms = job.get("permissions").map(permissions).unwrap_or_default();
    let expected: BTreeMap<String, String> = [("contents", "read"), ("id-token", "write")]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
    if perms != expected {
        problems.push(format!(
            "{where_}: permissions must be exactly `id-token: write` and `contents: read`, found {perms:?}"
        ));
    }

    let aws = steps.iter().find(|s| {
        s.get_str("uses")
            .is_some_and(|u| u.starts_with("aws-actions/configure-aws-credentials@"))
    });
    match aws.and_then(|s| s.get("with")) {
        None => problems.push(format!(
            "{where_}: no `aws-actions/configure-aws-credentials` step (OIDC) with `with:`"
        )),
        Some(with) => {
            if !with
                .get_str("role-to-assume")
                .is_some_and(|r| r.starts_with("${{ vars.") || r.starts_with("${{ env."))
            {
                problems.push(format!(
                    "{where_}: `role-to-assume` must come from a variable (`${{{{ vars.AWS_DEPLOY_ROLE_ARN }}}}`)"
                ));
            }
            for key in [
                "aws-access-key-id",
                "aws-secret-access-key",
                "aws-session-token",
            ] {
                if with.get(key).is_some() {
                    problems.push(format!(
                        "{where_}: `{key}`: deploy through OIDC, never long-lived keys"
                    ));
                }
            }
            let region = settings.environments.get(env).map(|e| e.region.as_str());
            if with.get_str("aws-region") != region {
                problems.push(format!(
                    "{where_}: `aws-region` is {:?} but {} says {region:?} for `{env}`",
                    with.get_str("aws-region"),
                    paths::SETTINGS
                ));
            }
        }
    }

    // A protected environment (prod) is deployed by hand only, never by a push.
    if settings.environments.get(env).is_some_and(|e| e.protected) {
        let condition = job.get_str("if").unwrap_or_default();
        if !condition.contains("github.event_name == 'workflow_dispatch'") {
            problems.push(format!(
                "{where_}: `{env}` is protected; the job's `if:` must require `github.event_name == 'workflow_dispatch'`, found `{condition}`"
            ));
        }
    }
}

// ---------------------------------------------------------------------------------------------

fn settings() -> Settings {
    let path = paths::root().join(paths::SETTINGS);
    let text = std::fs::read_to_string(&path).unwrap();
    Settings::parse(Path::new(paths::SETTINGS), &text).unwrap()
}

fn workflow(name: &str) -> (String, String) {
    let file = format!("{}/{name}", paths::WORKFLOWS_DIR);
    let text = std::fs::read_to_string(paths::root().join(&file))
        .unwrap_or_else(|e| panic!("cannot read {file}: {e}"));
    (file, text)
}

fn assert_clean(problems: &[String]) {
    assert!(problems.is_empty(), "\n{}\n", problems.join("\n"));
}

#[test]
fn deploy_workflow_is_valid() {
    let (file, text) = workflow("deploy.yml");
    assert_clean(&check_workflow(&file, &text, &settings()));
}

#[test]
fn ci_workflow_is_valid() {
    let (file, text) = workflow("ci.yml");
    assert_clean(&check_workflow(&file, &text, &settings()));
}

#[test]
fn deploy_workflow_deploys_preprod_on_push_and_prod_by_hand() {
    let (_, text) = workflow("deploy.yml");
    let doc = parse_yaml(&text).unwrap();
    let on = doc.get("on").unwrap();
    let branches: Vec<_> = on
        .get("push")
        .and_then(|p| p.get("branches"))
        .unwrap()
        .items()
        .iter()
        .filter_map(Node::str)
        .collect();
    assert_eq!(branches, ["main"]);
    assert!(on.get("workflow_dispatch").is_some());
    let jobs = doc.get("jobs").unwrap();
    let mut by_env = BTreeMap::new();
    for (_, job) in jobs.entries() {
        by_env.insert(
            job_environment(job).unwrap(),
            job.get_str("if").unwrap_or_default(),
        );
    }
    assert_eq!(
        by_env.keys().copied().collect::<Vec<_>>(),
        ["preprod", "prod"]
    );
    assert!(by_env["preprod"].contains("github.event_name == 'push'"));
    assert!(by_env["prod"].contains("github.event_name == 'workflow_dispatch'"));
    assert!(by_env["prod"].contains("inputs.environment == 'prod'"));
    assert!(!by_env["prod"].contains("'push'"));
}

#[test]
fn ci_workflow_runs_cargo_xtask_ci() {
    let (_, text) = workflow("ci.yml");
    let doc = parse_yaml(&text).unwrap();
    let on = doc.get("on").unwrap();
    assert!(on.get("pull_request").is_some() && on.get("push").is_some());
    let runs: Vec<_> = doc
        .get("jobs")
        .unwrap()
        .entries()
        .iter()
        .flat_map(|(_, job)| job.get("steps").map(Node::items).unwrap_or_default())
        .filter_map(|step| step.get_str("run"))
        .collect();
    assert_eq!(runs, ["cargo xtask ci"]);
}

/// Each mutation of deploy.yml must be caught, and by the right message: this is what keeps a
/// renamed flag or environment from surfacing only during a deploy.
#[test]
fn checks_catch_broken_workflows() {
    let (file, text) = workflow("deploy.yml");
    let settings = settings();
    let cases: &[(&str, &str, &str)] = &[
        // A deploy job without its `deploy` step.
        (
            "      - id: deploy\n        run: cargo xtask deploy --env preprod\n",
            "",
            "then `cargo xtask deploy --env preprod`",
        ),
        // A renamed flag in the CLI is the same as a wrong flag here.
        (
            "--env prod",
            "--environment prod",
            "does not parse with the xtask CLI",
        ),
        (
            "cargo xtask deploy --env preprod",
            "cargo xtask ship --env preprod",
            "does not parse with the xtask CLI",
        ),
        (
            "cargo xtask image --env prod",
            "cargo xtask image --env staging",
            "environment `staging` is not in",
        ),
        (
            "cargo xtask image --env prod",
            "cargo xtask image --env \"$ENV\"",
            "plain words",
        ),
        (
            "name: prod",
            "name: production",
            "the job's environment is `production`",
        ),
        ("group: deploy-prod", "group: deploy", "concurrency"),
        (
            "cancel-in-progress: false",
            "cancel-in-progress: true",
            "cancel-in-progress",
        ),
        (
            "      contents: read\n    outputs",
            "      contents: write\n    outputs",
            "exactly `id-token: write`",
        ),
        (
            "role-to-assume: ${{ vars.AWS_DEPLOY_ROLE_ARN }}",
            "role-to-assume: arn:aws:iam::1:role/x",
            "must come from a variable",
        ),
        (
            "role-to-assume: ${{ vars.AWS_DEPLOY_ROLE_ARN }}",
            "aws-access-key-id: AKIA",
            "never long-lived keys",
        ),
        (
            "permissions: {}",
            "permissions: write-all",
            "top-level permissions",
        ),
        (
            "persist-credentials: false",
            "persist-credentials: true",
            "persist-credentials: false",
        ),
        (" # v3.10.0", "", "trailing comment"),
        ("@b5ca514318bd6ebac0fb2aedd5d36ec1b5c232a2", "@v3", "40-hex"),
        (
            "run: cargo xtask image --env preprod",
            "run: cargo xtask image --env ${{ inputs.environment }}",
            "inside `run:`",
        ),
        (
            "aws-region: eu-west-1",
            "aws-region: us-east-1",
            "`aws-region`",
        ),
        (
            "github.event_name == 'workflow_dispatch' && ",
            "",
            "is protected",
        ),
        (
            "      id-token: write\n",
            "",
            "exactly `id-token: write` and `contents: read`",
        ),
        ("id: image", "id: build", "needs `id: image`"),
    ];
    assert_clean(&check_workflow(&file, &text, &settings));
    for (from, to, expected) in cases {
        assert!(
            text.contains(from),
            "deploy.yml no longer contains `{from}`; update this case"
        );
        let broken = text.replacen(from, to, 1);
        let problems = check_workflow(&file, &broken, &settings);
        assert!(
            problems.iter().any(|p| p.contains(expected)),
            "replacing `{from}` with `{to}` should report `{expected}`, got:\n{}",
            problems.join("\n")
        );
    }
}

#[test]
fn yaml_reader_reads_the_workflow_subset_and_rejects_the_rest() {
    let text = "\
# a comment
on:
  push:
    branches: [main, 'release']
permissions: {}
jobs:
  a:
    concurrency: { group: deploy-x, cancel-in-progress: false }
    steps:
      - uses: o/r@0123 # v1.2.3
        with:
          k: \"quoted # not a comment\"
      -   id: two
          run: |
            first line

            second ${{ x }}
      - run: >-
          folded
          text
    list:
    - x
    - 'it''s'
  b:
";
    let doc = parse_yaml(text).unwrap();
    let push = doc.get("on").unwrap().get("push").unwrap();
    let branches: Vec<_> = push
        .get("branches")
        .unwrap()
        .items()
        .iter()
        .filter_map(Node::str)
        .collect();
    assert_eq!(branches, ["main", "release"]);
    assert_eq!(doc.get("permissions"), Some(&Node::Map(Vec::new())));
    let a = doc.get("jobs").unwrap().get("a").unwrap();
    assert_eq!(
        a.get("concurrency").unwrap().get_str("cancel-in-progress"),
        Some("false")
    );
    let steps = a.get("steps").unwrap().items();
    assert_eq!(steps.len(), 3);
    let Some(Node::Scalar(uses)) = steps[0].get("uses") else {
        panic!("uses is a scalar")
    };
    assert_eq!(
        (uses.value.as_str(), uses.comment.as_deref(), uses.line),
        ("o/r@0123", Some("v1.2.3"), 10)
    );
    assert_eq!(
        steps[0].get("with").unwrap().get_str("k"),
        Some("quoted # not a comment")
    );
    assert_eq!(steps[1].get_str("id"), Some("two"));
    assert_eq!(
        steps[1].get_str("run"),
        Some("first line\n\nsecond ${{ x }}")
    );
    assert_eq!(steps[2].get_str("run"), Some("folded text"));
    let list: Vec<_> = a
        .get("list")
        .unwrap()
        .items()
        .iter()
        .filter_map(Node::str)
        .collect();
    assert_eq!(list, ["x", "it's"]);
    assert_eq!(doc.get("jobs").unwrap().get_str("b"), Some(""));

    for bad in [
        "a: &anchor 1\n",
        "a: *alias\n",
        "a: [1, [2]]\n",
        "a: 1\na: 2\n",
        "a:\n  b: 1\n   c: 2\n",
        "a: \"open\n",
        "just a line\n",
    ] {
        assert!(parse_yaml(bad).is_err(), "should reject {bad:?}");
    }
}
