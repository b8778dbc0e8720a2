//! Tests that hold the GitHub Actions workflows to the real CLI, the settings and the hardening rules.
//!
//! The workflows run `cargo xtask …` lines that nothing else compiles: a renamed flag or
//! environment would only fail during a deploy. These tests parse every such line with the
//! real clap CLI, check each `--env` against infrastructure/environments.toml, and check
//! the deploy jobs' shape (environment, concurrency, minimal permissions, OIDC, the region
//! against the settings) and the hardening that actionlint and zizmor do not enforce (SHA pins
//! with a version comment). A job that calls a reusable workflow of this repository
//! (`uses: ./.github/workflows/NAME.yml`) is checked as the called jobs run for it: its
//! `with:` inputs replace `${{ inputs.NAME }}`, and `"$NAME"` in a `cargo xtask` line takes
//! its value from the step's `env:`.
//!
//! The YAML reader below is deliberately small: it reads the block subset the workflows are
//! written in and rejects anything else (anchors, tags, nested flow collections) with the
//! line number, so a construct it does not know fails the test instead of being misread.
//! It keeps each scalar's trailing comment, which a serde YAML parser drops and the SHA-pin
//! check needs.

use std::collections::BTreeMap;

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
    /// `promote --from`.
    from: Option<String>,
}

/// The subcommand's name as a developer types it.
fn command_name(command: &Command) -> &'static str {
    match command {
        Command::Image(_) => "image",
        Command::Deploy(_) => "deploy",
        Command::Rollback(_) => "rollback",
        Command::Promote(_) => "promote",
        Command::Bootstrap(_) => "bootstrap",
        Command::Local(_) => "local",
        Command::Ci(_) => "ci",
        Command::Bench(_) => "bench",
    }
}

/// What a `run:` script finds in its environment: the job's `env:`, overlaid by the step's.
type EnvVars = BTreeMap<String, String>;

/// A value the test can put on a command line: known before the run, and one shell word.
fn is_plain_word(value: &str) -> bool {
    !value.is_empty()
        && value
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./:=@+,".contains(c))
}

/// Replaces each `"$NAME"` (or `"${NAME}"`) word with the value `env:` gives NAME, so that a
/// reusable workflow can pass its inputs to `cargo xtask` without `${{ }}` in `run:`. Any other
/// use of a variable is left in place for the plain-words check to report.
fn expand_vars(args: &str, vars: &EnvVars) -> Result<String, String> {
    let mut words = Vec::new();
    for word in args.split_whitespace() {
        let name = word
            .strip_prefix("\"$")
            .and_then(|w| w.strip_suffix('"'))
            .map(|n| {
                n.strip_prefix('{')
                    .and_then(|n| n.strip_suffix('}'))
                    .unwrap_or(n)
            })
            .filter(|n| !n.is_empty() && n.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'));
        let Some(name) = name else {
            words.push(word.to_owned());
            continue;
        };
        let value = vars
            .get(name)
            .ok_or_else(|| format!("`${name}` is not set in the job's or the step's `env:`"))?;
        if !is_plain_word(value) {
            return Err(format!(
                "`${name}` is `{value}`, which is not known before the run; set it to a literal, or to an input of a reusable workflow (`${{{{ inputs.NAME }}}}`) that every caller gives literally"
            ));
        }
        words.push(value.clone());
    }
    Ok(words.join(" "))
}

/// A mapping of scalars, as `key -> value` (`env:`, `with:`, `permissions:`).
fn scalars(node: Option<&Node>) -> BTreeMap<String, String> {
    node.map(Node::entries)
        .unwrap_or_default()
        .iter()
        .map(|(k, v)| (k.clone(), v.str().unwrap_or_default().to_owned()))
        .collect()
}

/// Every `cargo xtask` line in a `run:` script, checked against the CLI and the settings.
fn xtask_runs(
    where_: &str,
    step: usize,
    script: &Scalar,
    vars: &EnvVars,
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
        let args = match expand_vars(args, vars) {
            Ok(args) => args,
            Err(err) => {
                problems.push(format!("{where_} line {line}: `{text}`: {err}"));
                continue;
            }
        };
        // Arguments, never shell: a quote, a variable or an operator would make the argv
        // below differ from what the runner's shell executes.
        if args.contains(|c: char| "'\"$`\\|&;<>(){}*?#~".contains(c)) {
            problems.push(format!(
                "{where_} line {line}: keep `{text}` to plain words and `\"$NAME\"` from `env:` (no other quoting, variables or shell operators)"
            ));
            continue;
        }
        let argv = std::iter::once("cargo xtask").chain(args.split_whitespace());
        match Cli::try_parse_from(argv) {
            Ok(cli) => {
                let (env, from) = match &cli.command {
                    Command::Promote(p) => (p.to.clone(), Some(p.from.clone())),
                    _ => (cli.global.env.clone(), None),
                };
                if let Err(err) = settings.environment(&env) {
                    problems.push(format!("{where_} line {line}: `{text}`: {err:#}"));
                }
                if let Some(from) = from.as_deref().filter(|f| settings.environment(f).is_err()) {
                    problems.push(format!("{where_} line {line}: `{text}`: unknown environment `{from}`"));
                }
                runs.push(XtaskRun {
                    step,
                    line,
                    command: command_name(&cli.command).to_owned(),
                    env,
                    from,
                });
            }
            Err(err) => problems.push(format!(
                "{where_} line {line}: `{text}` (`cargo xtask {args}`) does not parse with the xtask CLI: {}",
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
    scalars(Some(node))
}

/// Exactly what a deploy needs: an OIDC token, and the code.
fn deploy_permissions() -> BTreeMap<String, String> {
    [("contents", "read"), ("id-token", "write")]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
}

fn job_environment(job: &Node) -> Option<&str> {
    let env = job.get("environment")?;
    env.str().or_else(|| env.get_str("name"))
}

/// The events that start a workflow: `on: push`, `on: [push, …]` or `on: { push: …, … }`.
fn triggers(doc: &Node) -> Vec<&str> {
    match doc.get("on") {
        Some(Node::Scalar(s)) => vec![s.value.as_str()],
        Some(Node::Seq(items)) => items.iter().filter_map(Node::str).collect(),
        Some(Node::Map(entries)) => entries.iter().map(|(k, _)| k.as_str()).collect(),
        None => Vec::new(),
    }
}

/// The `on: workflow_call:` block of a reusable workflow.
fn workflow_call(doc: &Node) -> Option<&Node> {
    doc.get("on").and_then(|on| on.get("workflow_call"))
}

/// Replaces each `${{ inputs.NAME }}` with the caller's value: a reusable workflow's job as
/// it runs for one caller.
fn substitute(node: &Node, inputs: &BTreeMap<String, String>) -> Node {
    match node {
        Node::Scalar(s) => {
            let mut value = String::new();
            let mut rest = s.value.as_str();
            while let Some(start) = rest.find("${{") {
                let Some(len) = rest[start..].find("}}") else {
                    break;
                };
                let expression = rest[start + 3..start + len].trim();
                value.push_str(&rest[..start]);
                match expression
                    .strip_prefix("inputs.")
                    .and_then(|n| inputs.get(n))
                {
                    Some(input) => value.push_str(input),
                    // Inside a larger expression an input becomes a quoted literal, so a
                    // condition such as `inputs.x == ''` can be decided for this caller.
                    None => {
                        let mut expr = expression.to_string();
                        for (name, input) in inputs {
                            expr = expr.replace(&format!("inputs.{name}"), &format!("'{input}'"));
                        }
                        value.push_str(&format!("${{{{ {expr} }}}}"));
                    }
                }
                rest = &rest[start + len + 2..];
            }
            value.push_str(rest);
            Node::Scalar(Scalar { value, ..s.clone() })
        }
        Node::Seq(items) => Node::Seq(items.iter().map(|n| substitute(n, inputs)).collect()),
        Node::Map(entries) => Node::Map(
            entries
                .iter()
                .map(|(k, v)| (k.clone(), substitute(v, inputs)))
                .collect(),
        ),
    }
}

/// Workflow files by path (`.github/workflows/NAME.yml`).
type Files = BTreeMap<String, String>;

/// Everything wrong with a set of workflow files; empty when they are fine. Jobs that call a
/// reusable workflow of the set are checked as the called jobs run for them, with their inputs.
fn check_workflows(files: &Files, settings: &Settings) -> Vec<String> {
    let mut problems = Vec::new();
    let mut docs = BTreeMap::new();
    for (file, text) in files {
        match parse_yaml(text) {
            Ok(doc) => {
                docs.insert(file.as_str(), doc);
            }
            Err(err) => problems.push(format!("{file}: {err}")),
        }
    }

    let mut called = Vec::new();
    for (file, doc) in &docs {
        check_top_permissions(file, doc, &mut problems);
        let reusable = workflow_call(doc).is_some();
        if reusable {
            check_workflow_call(file, doc, &mut problems);
        }
        let Some(jobs) = doc.get("jobs").filter(|j| matches!(j, Node::Map(_))) else {
            problems.push(format!("{file}: no `jobs:` mapping"));
            continue;
        };
        for (job_id, job) in jobs.entries() {
            let where_ = format!("{file} job `{job_id}`");
            check_hardening(&where_, job, &mut problems);
            if reusable {
                // Checked once per caller, with that caller's inputs.
                continue;
            }
            if let Some(uses) = job.get_str("uses") {
                called.extend(check_call(
                    &where_,
                    job,
                    uses,
                    &docs,
                    settings,
                    &mut problems,
                ));
                continue;
            }
            let runs = job_runs(&where_, job, settings, &mut problems);
            check_job(
                &where_,
                job,
                job.get_str("if"),
                &runs,
                settings,
                &mut problems,
            );
        }
    }
    for (file, doc) in &docs {
        if workflow_call(doc).is_some() && !called.contains(file) {
            problems.push(format!(
                "{file}: a reusable workflow that no workflow here calls, so nothing checks its jobs"
            ));
        }
    }
    problems
}

/// Least privilege at the top: nothing, or `contents: read`.
fn check_top_permissions(file: &str, doc: &Node, problems: &mut Vec<String>) {
    match doc.get("permissions") {
        None => problems.push(format!(
            "{file}: no top-level `permissions:`; use `permissions: {{}}` or `contents: read`"
        )),
        Some(node) => {
            let perms = permissions(node);
            let minimal = matches!(node, Node::Map(_))
                && perms.iter().all(|(k, v)| k == "contents" && v == "read");
            if !minimal {
                let found = node
                    .str()
                    .map_or_else(|| format!("{perms:?}"), str::to_owned);
                problems.push(format!(
                    "{file}: top-level permissions must be `{{}}` or `contents: read`, found `{found}`"
                ));
            }
        }
    }
}

/// A reusable workflow: started only by its callers, with declared, typed inputs, and the
/// deploy job's outputs passed on to the caller.
fn check_workflow_call(file: &str, doc: &Node, problems: &mut Vec<String>) {
    let on = triggers(doc);
    if on != ["workflow_call"] {
        problems.push(format!(
            "{file}: a reusable workflow must be started only by `workflow_call` (its jobs are checked with their callers' inputs), found {on:?}"
        ));
    }
    let call = workflow_call(doc).unwrap();
    for (name, input) in call.get("inputs").map(Node::entries).unwrap_or_default() {
        if !matches!(input.get_str("type"), Some("string" | "boolean" | "number")) {
            problems.push(format!(
                "{file}: input `{name}` needs `type: string`, `boolean` or `number`"
            ));
        }
        if input.get_str("description").unwrap_or_default().is_empty() {
            problems.push(format!("{file}: input `{name}` needs a `description`"));
        }
        if input.get_str("required") != Some("true") && input.get("default").is_none() {
            problems.push(format!(
                "{file}: input `{name}` must be `required: true` or have a `default`"
            ));
        }
    }
    // The caller's job outputs are the workflow's outputs, so the deploy job's must pass through.
    let jobs = doc.get("jobs").map(Node::entries).unwrap_or_default();
    for (job_id, job) in jobs {
        if job.get("environment").is_none() || job.get("outputs").is_none() {
            continue;
        }
        for output in ["digest", "image_uri"] {
            let expected = format!("${{{{ jobs.{job_id}.outputs.{output} }}}}");
            let value = call
                .get("outputs")
                .and_then(|o| o.get(output))
                .and_then(|o| o.get_str("value"));
            if value != Some(expected.as_str()) {
                problems.push(format!(
                    "{file}: `on.workflow_call.outputs.{output}.value` must be `{expected}`, found {value:?}"
                ));
            }
        }
    }
}

/// The rules for every job's steps, whoever calls it: SHA pins, checkout without credentials,
/// and no `${{ }}` in shell code.
fn check_hardening(where_: &str, job: &Node, problems: &mut Vec<String>) {
    for step in job.get("steps").map(Node::items).unwrap_or_default() {
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
        }
    }
}

/// The `cargo xtask` lines of a job's steps, each with the variables its step sees.
fn job_runs(
    where_: &str,
    job: &Node,
    settings: &Settings,
    problems: &mut Vec<String>,
) -> Vec<XtaskRun> {
    let job_vars = scalars(job.get("env"));
    let mut runs = Vec::new();
    for (index, step) in job
        .get("steps")
        .map(Node::items)
        .unwrap_or_default()
        .iter()
        .enumerate()
    {
        if step.get_str("if").and_then(static_condition) == Some(false) {
            continue;
        }
        if let Some(Node::Scalar(script)) = step.get("run") {
            let mut vars = job_vars.clone();
            vars.extend(scalars(step.get("env")));
            runs.extend(xtask_runs(where_, index, script, &vars, settings, problems));
        }
    }
    runs
}

/// A condition of literals only, `${{ 'a' == 'b' }}` or `!=`, decided; `None` for the rest.
fn static_condition(condition: &str) -> Option<bool> {
    let expr = condition
        .trim()
        .strip_prefix("${{")?
        .strip_suffix("}}")?
        .trim();
    let (op, equal) = if expr.contains("==") {
        ("==", true)
    } else {
        ("!=", false)
    };
    let (a, b) = expr.split_once(op)?;
    let literal = |s: &str| {
        let s = s.trim();
        s.strip_prefix('\'')?.strip_suffix('\'').map(str::to_owned)
    };
    Some((literal(a)? == literal(b)?) == equal)
}

fn deploys(runs: &[XtaskRun]) -> bool {
    runs.iter().any(|r| {
        matches!(
            r.command.as_str(),
            "image" | "deploy" | "rollback" | "promote"
        ) && r.env != "local"
    })
}

/// A job with steps. `condition` is its `if:`, with its caller's when it is called.
fn check_job(
    where_: &str,
    job: &Node,
    condition: Option<&str>,
    runs: &[XtaskRun],
    settings: &Settings,
    problems: &mut Vec<String>,
) {
    let environment = job_environment(job);
    if environment.is_none() && !deploys(runs) {
        // Not a deploy job: it may read, never write or mint OIDC tokens.
        if let Some(node) = job.get("permissions") {
            let perms = permissions(node);
            if !matches!(node, Node::Map(_)) || perms.values().any(|v| v != "read") {
                problems.push(format!(
                    "{where_}: a job that does not deploy may only read, found {perms:?}"
                ));
            }
        }
        return;
    }
    check_deploy_job(
        where_,
        job,
        environment,
        condition,
        runs,
        settings,
        problems,
    );
}

/// A job that calls a reusable workflow of this repository (`uses: ./.github/workflows/…`):
/// its inputs against the declared ones, no secrets, its permissions, and each called job as
/// it runs with these inputs. Returns the called file.
fn check_call<'a>(
    where_: &str,
    job: &Node,
    uses: &str,
    docs: &BTreeMap<&'a str, Node>,
    settings: &Settings,
    problems: &mut Vec<String>,
) -> Option<&'a str> {
    let local = uses
        .strip_prefix("./")
        .filter(|p| p.starts_with(&format!("{}/", paths::WORKFLOWS_DIR)));
    let Some(path) = local else {
        problems.push(format!(
            "{where_}: `uses: {uses}`: only reusable workflows of this repository (`./{}/NAME.yml`) can be checked here",
            paths::WORKFLOWS_DIR
        ));
        return None;
    };
    let Some((&file, callee)) = docs.get_key_value(path) else {
        problems.push(format!("{where_}: `uses: {uses}`: no such workflow"));
        return None;
    };
    let Some(call) = workflow_call(callee) else {
        problems.push(format!(
            "{where_}: `uses: {uses}`: {file} has no `on: workflow_call`"
        ));
        return Some(file);
    };

    let declared = call.get("inputs");
    let mut inputs = BTreeMap::new();
    if let Some(with) = job.get("with") {
        if !matches!(with, Node::Map(_)) {
            problems.push(format!("{where_}: `with:` must be a mapping of inputs"));
        }
        for (name, value) in with.entries() {
            if declared.and_then(|d| d.get(name)).is_none() {
                let known: Vec<&str> = declared
                    .map(Node::entries)
                    .unwrap_or_default()
                    .iter()
                    .map(|(k, _)| k.as_str())
                    .collect();
                problems.push(format!(
                    "{where_}: `with: {name}` is not an input of {file} (inputs: {})",
                    known.join(", ")
                ));
            }
            let value = value.str().unwrap_or_default();
            if value.contains("${{") {
                problems.push(format!(
                    "{where_}: input `{name}` is `{value}`; give it literally, so these tests can check what {file} does with it"
                ));
            }
            inputs.insert(name.clone(), value.to_owned());
        }
    }
    for (name, input) in declared.map(Node::entries).unwrap_or_default() {
        if inputs.contains_key(name) {
            continue;
        }
        if let Some(default) = input.get_str("default") {
            inputs.insert(name.clone(), default.to_owned());
        } else if input.get_str("required") == Some("true") {
            problems.push(format!(
                "{where_}: misses the required input `{name}` of {file}"
            ));
        }
    }
    if job.get_str("secrets") == Some("inherit") {
        problems.push(format!(
            "{where_}: `secrets: inherit` hands every secret of the repository to {file}; pass only the ones it needs"
        ));
    }

    let mut deploy = false;
    for (callee_id, callee_job) in callee.get("jobs").map(Node::entries).unwrap_or_default() {
        let callee_where = format!("{file} job `{callee_id}` (called by {where_})");
        let instance = substitute(callee_job, &inputs);
        let runs = job_runs(&callee_where, &instance, settings, problems);
        let condition = match (job.get_str("if"), instance.get_str("if")) {
            (Some(outer), Some(inner)) => Some(format!("({outer}) && ({inner})")),
            (outer, inner) => outer.or(inner).map(str::to_owned),
        };
        deploy |= job_environment(&instance).is_some() || deploys(&runs);
        check_job(
            &callee_where,
            &instance,
            condition.as_deref(),
            &runs,
            settings,
            problems,
        );
    }

    // The caller's permissions are all the called workflow can have.
    let perms = job.get("permissions").map(permissions).unwrap_or_default();
    if deploy {
        if job.get("secrets").is_some() {
            problems.push(format!(
                "{where_}: `secrets:` on a deploy; it authenticates through OIDC and needs no secrets"
            ));
        }
        if perms != deploy_permissions() {
            problems.push(format!(
                "{where_}: calls a deploy job; permissions must be exactly `id-token: write` and `contents: read` (all that {file} can have), found {perms:?}"
            ));
        }
    } else if perms.values().any(|v| v != "read") {
        problems.push(format!(
            "{where_}: a job that does not deploy may only read, found {perms:?}"
        ));
    }
    Some(file)
}

fn check_deploy_job(
    where_: &str,
    job: &Node,
    environment: Option<&str>,
    condition: Option<&str>,
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
    let promoted_from = settings
        .environment(env)
        .ok()
        .and_then(|e| e.promote_from.clone());
    let promotes: Vec<&XtaskRun> = runs.iter().filter(|r| r.command == "promote").collect();
    match &promoted_from {
        // An environment that runs only what another ran is promoted, and never builds.
        Some(source) => {
            if image.is_some() || deploy.is_some() {
                problems.push(format!(
                    "{where_}: `{env}` has promote_from = \"{source}\": it is only ever promoted (`cargo xtask promote --from {source} --to {env}`), never built or deployed"
                ));
            }
            if !promotes
                .iter()
                .any(|r| r.from.as_deref() == Some(source.as_str()))
            {
                problems.push(format!(
                    "{where_}: `{env}` has promote_from = \"{source}\": the job runs `cargo xtask promote --from {source} --to {env}`"
                ));
            }
        }
        None => {
            // A job that only rolls back deploys an image that is already pushed.
            let rollback_only =
                image.is_none() && deploy.is_none() && runs.iter().any(|r| r.command == "rollback");
            if !rollback_only && !matches!((image, deploy), (Some(i), Some(d)) if i < d) {
                problems.push(format!(
                    "{where_}: a deploy job runs `cargo xtask image --env {env}`, then `cargo xtask deploy --env {env}`"
                ));
            }
            if let Some(r) = promotes.first() {
                problems.push(format!(
                    "{where_}: promotes into `{env}`, whose settings have no promote_from = \"{}\"",
                    r.from.as_deref().unwrap_or_default()
                ));
            }
        }
    }
    let steps = job.get("steps").map(Node::items).unwrap_or_default();
    if let Some(image) = image {
        if steps[image].get_str("id") != Some("image") {
            problems.push(format!(
                "{where_}: the `cargo xtask image` step needs `id: image`"
            ));
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
    if perms != deploy_permissions() {
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
            // The job runs in the GitHub Environment `env`, so `vars.` reads that environment's
            // variable: each environment's own role.
            let role = with.get_str("role-to-assume");
            if role != Some("${{ vars.AWS_DEPLOY_ROLE_ARN }}") {
                problems.push(format!(
                    "{where_}: `role-to-assume` must come from the environment's variable (`${{{{ vars.AWS_DEPLOY_ROLE_ARN }}}}`), found {role:?}"
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
            let region = settings.environment(env).ok().map(|e| e.region.as_str());
            let aws_region = with.get_str("aws-region");
            if region.is_some() && aws_region != region {
                problems.push(format!(
                    "{where_}: `aws-region` is {aws_region:?} but {} says {region:?} for `{env}`",
                    paths::SETTINGS
                ));
            }
        }
    }

    // A protected environment (prod) is reached only from main: by hand, or by promotion
    // after its source environment's job (see `prod_is_promoted_after_preprod`).
    if settings.environments.get(env).is_some_and(|e| e.protected) {
        let condition = condition.unwrap_or_default();
        if !condition.contains("github.ref == 'refs/heads/main'") {
            problems.push(format!(
                "{where_}: `{env}` is protected; the job's `if:` must require `github.ref == 'refs/heads/main'`, found `{condition}`"
            ));
        }
    }
}

// ---------------------------------------------------------------------------------------------

fn settings() -> Settings {
    let text = std::fs::read_to_string(paths::root().join(paths::SETTINGS)).unwrap();
    // Parsed under its path from the root, which is how the messages name it.
    Settings::parse(std::path::Path::new(paths::SETTINGS), &text).unwrap()
}

/// Every workflow file, by its path from the repository root.
fn workflows() -> Files {
    let dir = paths::root().join(paths::WORKFLOWS_DIR);
    let mut files = Files::new();
    for entry in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("cannot read {dir:?}: {e}")) {
        let name = entry.unwrap().file_name().to_string_lossy().into_owned();
        if name.ends_with(".yml") || name.ends_with(".yaml") {
            let file = format!("{}/{name}", paths::WORKFLOWS_DIR);
            let text = std::fs::read_to_string(paths::root().join(&file))
                .unwrap_or_else(|e| panic!("cannot read {file}: {e}"));
            files.insert(file, text);
        }
    }
    files
}

fn workflow(name: &str) -> String {
    let file = format!("{}/{name}", paths::WORKFLOWS_DIR);
    workflows()
        .remove(&file)
        .unwrap_or_else(|| panic!("no {file}"))
}

fn assert_clean(problems: &[String]) {
    assert!(problems.is_empty(), "\n{}\n", problems.join("\n"));
}

#[test]
fn workflows_are_valid() {
    let files = workflows();
    for name in ["ci.yml", "deploy.yml", "deploy-env.yml"] {
        assert!(
            files.contains_key(&format!("{}/{name}", paths::WORKFLOWS_DIR)),
            "{name} is missing"
        );
    }
    assert_clean(&check_workflows(&files, &settings()));
}

#[test]
fn prod_is_promoted_after_preprod_and_never_built() {
    let doc = parse_yaml(&workflow("deploy.yml")).unwrap();
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
    let jobs = doc.get("jobs").unwrap();
    let mut by_env = BTreeMap::new();
    for (id, job) in jobs.entries() {
        // One job definition for every environment.
        assert_eq!(
            job.get_str("uses"),
            Some("./.github/workflows/deploy-env.yml")
        );
        let with = job.get("with").unwrap();
        by_env.insert(with.get_str("environment").unwrap(), (id.as_str(), job));
    }
    assert_eq!(
        by_env.keys().copied().collect::<Vec<_>>(),
        ["preprod", "prod"]
    );
    let (preprod_id, preprod) = by_env["preprod"];
    assert_eq!(
        preprod.get("with").unwrap().get_str("promote-from"),
        None,
        "preprod builds"
    );
    let (_, prod) = by_env["prod"];
    assert_eq!(
        prod.get("with").unwrap().get_str("promote-from"),
        Some("preprod")
    );
    assert_eq!(
        prod.get_str("needs"),
        Some(preprod_id),
        "prod waits for preprod's job"
    );
    assert_eq!(
        settings()
            .environment("prod")
            .unwrap()
            .promote_from
            .as_deref(),
        Some("preprod")
    );
    // As called for prod, the job runs promote and nothing that builds.
    let called = parse_yaml(&workflow("deploy-env.yml")).unwrap();
    let inputs: BTreeMap<String, String> = [
        ("environment", "prod"),
        ("aws-region", "eu-west-1"),
        ("promote-from", "preprod"),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    let job = substitute(&called.get("jobs").unwrap().entries()[0].1, &inputs);
    let mut problems = vec![];
    let runs = job_runs("prod", &job, &settings(), &mut problems);
    assert_clean(&problems);
    let commands: Vec<(&str, &str, Option<&str>)> = runs
        .iter()
        .map(|r| (r.command.as_str(), r.env.as_str(), r.from.as_deref()))
        .collect();
    assert_eq!(commands, [("promote", "prod", Some("preprod"))]);
}

/// The region is written once per environment, in the settings; each call of the deploy job
/// repeats it as an input, and this holds the two together.
#[test]
fn deploy_regions_are_the_settings_regions() -> anyhow::Result<()> {
    let settings = settings();
    let doc = parse_yaml(&workflow("deploy.yml")).unwrap();
    let jobs = doc.get("jobs").unwrap().entries();
    assert!(!jobs.is_empty());
    for (job_id, job) in jobs {
        let with = job.get("with").unwrap();
        let env = with.get_str("environment").unwrap();
        assert_eq!(
            with.get_str("aws-region"),
            Some(settings.environment(env)?.region.as_str()),
            "deploy.yml job `{job_id}`: `aws-region` is not `region` of `{env}` in {}",
            paths::SETTINGS
        );
    }
    let called = parse_yaml(&workflow("deploy-env.yml")).unwrap();
    let aws = called.get("jobs").unwrap().entries()[0]
        .1
        .get("steps")
        .unwrap()
        .items()
        .iter()
        .find_map(|s| s.get("with").and_then(|w| w.get_str("aws-region")));
    assert_eq!(aws, Some("${{ inputs.aws-region }}"));
    Ok(())
}

#[test]
fn ci_workflow_runs_cargo_xtask_ci() {
    let doc = parse_yaml(&workflow("ci.yml")).unwrap();
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

/// Each mutation of deploy.yml or deploy-env.yml must be caught, and by the right message: this
/// is what keeps a renamed flag, environment or region from surfacing only during a deploy.
#[test]
fn checks_catch_broken_workflows() {
    let files = workflows();
    let settings = settings();
    const CALLER: &str = "deploy.yml";
    const CALLED: &str = "deploy-env.yml";
    let cases: &[(&str, &str, &str, &str)] = &[
        // A deploy job without its `deploy` step.
        (
            CALLED,
            "      - id: deploy\n        if: ${{ inputs.promote-from == '' }}\n        env:\n          DEPLOY_ENV: ${{ inputs.environment }}\n        run: cargo xtask deploy --env \"$DEPLOY_ENV\"\n",
            "",
            "then `cargo xtask deploy --env preprod`",
        ),
        // A renamed flag in the CLI is the same as a wrong flag here; clap names the right one.
        (
            CALLED,
            "--env \"$DEPLOY_ENV\"",
            "--environment \"$DEPLOY_ENV\"",
            "tip: a similar argument exists: '--env'",
        ),
        (
            CALLED,
            "run: cargo xtask deploy --env",
            "run: cargo xtask ship --env",
            "does not parse with the xtask CLI",
        ),
        (
            CALLER,
            "environment: prod\n",
            "environment: staging\n",
            "unknown environment `staging`",
        ),
        (
            CALLED,
            "--env \"$DEPLOY_ENV\"",
            "--env $DEPLOY_ENV",
            "plain words",
        ),
        (
            CALLED,
            "--env \"$DEPLOY_ENV\"",
            "--env \"$ENVIRONMENT\"",
            "`$ENVIRONMENT` is not set",
        ),
        (
            CALLED,
            "          DEPLOY_ENV: ${{ inputs.environment }}\n",
            "          DEPLOY_ENV: ${{ github.event.inputs.environment }}\n",
            "not known before the run",
        ),
        (
            CALLED,
            "name: ${{ inputs.environment }}",
            "name: prod",
            "the job's environment is `prod`",
        ),
        (
            CALLED,
            "group: deploy-${{ inputs.environment }}",
            "group: deploy",
            "concurrency",
        ),
        (
            CALLED,
            "cancel-in-progress: false",
            "cancel-in-progress: true",
            "cancel-in-progress",
        ),
        (
            CALLED,
            "      contents: read\n    steps",
            "      contents: write\n    steps",
            "exactly `id-token: write`",
        ),
        (
            CALLED,
            "      id-token: write\n",
            "",
            "exactly `id-token: write` and `contents: read`",
        ),
        (
            CALLER,
            "      contents: read\n    uses",
            "      contents: write\n    uses",
            "calls a deploy job; permissions must be exactly",
        ),
        (
            CALLER,
            "      id-token: write\n",
            "",
            "calls a deploy job; permissions must be exactly",
        ),
        (
            CALLED,
            "role-to-assume: ${{ vars.AWS_DEPLOY_ROLE_ARN }}",
            "role-to-assume: arn:aws:iam::1:role/x",
            "must come from the environment's variable",
        ),
        (
            CALLED,
            "role-to-assume: ${{ vars.AWS_DEPLOY_ROLE_ARN }}",
            "role-to-assume: ${{ vars.AWS_ROLE_ARN }}",
            "must come from the environment's variable",
        ),
        (
            CALLED,
            "role-to-assume: ${{ vars.AWS_DEPLOY_ROLE_ARN }}",
            "aws-access-key-id: AKIA",
            "never long-lived keys",
        ),
        (
            CALLER,
            "permissions: {}",
            "permissions: write-all",
            "top-level permissions",
        ),
        (
            CALLED,
            "permissions: {}",
            "permissions: write-all",
            "top-level permissions",
        ),
        (
            CALLED,
            "persist-credentials: false",
            "persist-credentials: true",
            "persist-credentials: false",
        ),
        (CALLED, " # v3.10.0", "", "trailing comment"),
        (
            CALLED,
            "@b5ca514318bd6ebac0fb2aedd5d36ec1b5c232a2",
            "@v3",
            "40-hex",
        ),
        (
            CALLED,
            "run: cargo xtask image --env \"$DEPLOY_ENV\"",
            "run: cargo xtask image --env ${{ inputs.environment }}",
            "inside `run:`",
        ),
        // The region: each call's input is the environment's `region` in the settings.
        (
            CALLER,
            "aws-region: eu-west-1",
            "aws-region: us-east-1",
            "`aws-region` is Some(\"us-east-1\") but infrastructure/environments.toml says Some(\"eu-west-1\") for `preprod`",
        ),
        (
            CALLER,
            "aws-region: eu-west-1",
            "aws-region: ${{ vars.AWS_REGION }}",
            "give it literally",
        ),
        (
            CALLER,
            "      aws-region: eu-west-1\n",
            "",
            "misses the required input `aws-region`",
        ),
        (
            CALLER,
            "      aws-region: eu-west-1\n",
            "      aws-region: eu-west-1\n      region: eu-west-1\n",
            "`with: region` is not an input",
        ),
        (
            CALLED,
            "aws-region: ${{ inputs.aws-region }}",
            "aws-region: us-east-1",
            "`aws-region` is Some(\"us-east-1\")",
        ),
        (
            CALLER,
            "    uses: ./.github/workflows/deploy-env.yml\n",
            "    uses: ./.github/workflows/deploy-env.yml\n    secrets: inherit\n",
            "`secrets: inherit`",
        ),
        (
            CALLER,
            "uses: ./.github/workflows/deploy-env.yml",
            "uses: ./.github/workflows/deploy-any.yml",
            "no such workflow",
        ),
        (
            CALLED,
            "on:\n  workflow_call:\n",
            "on:\n  push:\n  workflow_call:\n",
            "started only by `workflow_call`",
        ),
        (CALLED, "type: string", "type: text", "needs `type: string`"),
        (
            CALLED,
            "        required: true\n",
            "",
            "must be `required: true` or have a `default`",
        ),
        (
            CALLER,
            "    if: github.ref == 'refs/heads/main'\n",
            "",
            "is protected",
        ),
        // prod runs only what preprod ran: never built, always promoted from preprod.
        (
            CALLER,
            "      promote-from: preprod\n",
            "",
            "it is only ever promoted",
        ),
        (
            CALLER,
            "      promote-from: preprod\n",
            "      promote-from: local\n",
            "the job runs `cargo xtask promote --from preprod --to prod`",
        ),
        (
            CALLER,
            "      aws-region: eu-west-1\n\n  prod:",
            "      aws-region: eu-west-1\n      promote-from: prod\n\n  prod:",
            "whose settings have no promote_from",
        ),
        (CALLED, "id: image", "id: build", "needs `id: image`"),
    ];
    assert_clean(&check_workflows(&files, &settings));
    for (name, from, to, expected) in cases {
        let file = format!("{}/{name}", paths::WORKFLOWS_DIR);
        let text = &files[&file];
        assert!(
            text.contains(from),
            "{name} no longer contains `{from}`; update this case"
        );
        let mut broken = files.clone();
        broken.insert(file, text.replacen(from, to, 1));
        let problems = check_workflows(&broken, &settings);
        assert!(
            problems.iter().any(|p| p.contains(expected)),
            "replacing `{from}` with `{to}` in {name} should report `{expected}`, got:\n{}",
            problems.join("\n")
        );
    }
    // Without its callers a reusable workflow is unchecked, and that is reported.
    let mut alone = files.clone();
    alone.remove(&format!("{}/{CALLER}", paths::WORKFLOWS_DIR));
    assert!(
        check_workflows(&alone, &settings)
            .iter()
            .any(|p| p.contains("no workflow here calls"))
    );
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
