//! The external auditors' verdicts, kept pure: checkov, hadolint and parliament output parsed
//! into types, matched against `infrastructure/audit-suppressions.toml` (the only place a
//! finding is accepted), and the mechanical check that stands in for a suppression of
//! parliament's one unavoidable privilege-escalation finding. `ci.rs` runs the tools and
//! prints what this module decides.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::{self, Write as _};

use anyhow::{Context, Result, bail};
use serde::Deserialize;
use toml::Spanned;

// ---------------------------------------------------------------------------------------------
// The suppression file.

/// The two rendered policies parliament audits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum PolicyName {
    /// The CI policy (bootstrap output `ci_policy_json`), which the deploy role carries.
    Ci,
    /// The function's execution role policy (bootstrap output `execution_policy_json`).
    Execution,
}

impl PolicyName {
    pub fn as_str(self) -> &'static str {
        match self {
            PolicyName::Ci => "ci",
            PolicyName::Execution => "execution",
        }
    }
}

impl fmt::Display for PolicyName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// parliament's issue that no entry may accept.
pub const PRIVILEGE_ESCALATION: &str = "PRIVILEGE_ESCALATION";

/// The one privilege-escalation finding the xtask checks instead of accepting.
pub const LAMBDA_UPDATE_ESCALATION: &str = "EditExistingLambdaFunctionWithRole";

/// One `[[checkov]]` entry.
#[derive(Debug, Clone, PartialEq)]
pub struct CheckovEntry {
    pub id: String,
    pub roots: Vec<String>,
    pub resources: Vec<String>,
    pub reason: String,
    /// Line of the entry in the file, for stale-entry messages.
    pub line: usize,
}

/// One `[[parliament]]` entry; `actions` are lowercase.
#[derive(Debug, Clone, PartialEq)]
pub struct ParliamentEntry {
    pub policy: PolicyName,
    pub issue: String,
    pub actions: BTreeSet<String>,
    pub reason: String,
    pub line: usize,
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct Suppressions {
    pub checkov: Vec<CheckovEntry>,
    pub parliament: Vec<ParliamentEntry>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    #[serde(default)]
    checkov: Vec<Spanned<RawCheckov>>,
    #[serde(default)]
    parliament: Vec<Spanned<RawParliament>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCheckov {
    id: String,
    roots: Vec<String>,
    resources: Vec<String>,
    reason: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawParliament {
    policy: String,
    issue: String,
    actions: Vec<String>,
    reason: String,
}

/// 1-based line of a byte offset.
fn line_of(text: &str, offset: usize) -> usize {
    text.get(..offset).unwrap_or(text).matches('\n').count() + 1
}

impl Suppressions {
    /// Parses and checks the file; `path` only names it in errors.
    pub fn parse(path: &str, text: &str) -> Result<Suppressions> {
        let raw: RawFile = toml::from_str(text).with_context(|| format!("{path}: not valid"))?;
        let mut out = Suppressions::default();
        for entry in raw.checkov {
            let line = line_of(text, entry.span().start);
            let e = entry.into_inner();
            let at = || format!("{path}:{line}: [[checkov]] entry `{}`", e.id);
            if e.id.trim().is_empty() || e.roots.is_empty() || e.resources.is_empty() {
                bail!("{}: id, roots and resources must not be empty", at());
            }
            if e.reason.trim().is_empty() {
                bail!("{}: `reason` must say why the finding is accepted", at());
            }
            out.checkov.push(CheckovEntry {
                id: e.id,
                roots: e.roots,
                resources: e.resources,
                reason: e.reason,
                line,
            });
        }
        for entry in raw.parliament {
            let line = line_of(text, entry.span().start);
            let e = entry.into_inner();
            let at = || format!("{path}:{line}: [[parliament]] entry `{}`", e.issue);
            let policy = match e.policy.as_str() {
                "ci" => PolicyName::Ci,
                "execution" => PolicyName::Execution,
                other => bail!(
                    "{}: policy `{other}` is not one of the rendered policies: use \"ci\" or \"execution\"",
                    at()
                ),
            };
            if e.issue.trim().eq_ignore_ascii_case(PRIVILEGE_ESCALATION) {
                bail!(
                    "{}: refused: a {PRIVILEGE_ESCALATION} finding is never suppressible; fix the policy \
                     (the lambda:UpdateFunctionCode finding is checked mechanically by \
                     `cargo xtask ci`, see xtask/src/audit.rs)",
                    at()
                );
            }
            if e.actions.is_empty() || e.reason.trim().is_empty() {
                bail!("{}: `actions` and `reason` must not be empty", at());
            }
            out.parliament.push(ParliamentEntry {
                policy,
                issue: e.issue,
                actions: e.actions.iter().map(|a| a.to_ascii_lowercase()).collect(),
                reason: e.reason,
                line,
            });
        }
        Ok(out)
    }
}

// ---------------------------------------------------------------------------------------------
// checkov (`--output json`).

/// checkov prints one report object per framework, a list of them for several frameworks,
/// and a bare summary when it found nothing to scan.
#[derive(Deserialize)]
#[serde(untagged)]
enum CheckovOutput {
    Many(Vec<CheckovItem>),
    One(CheckovItem),
}

#[derive(Deserialize)]
#[serde(untagged)]
enum CheckovItem {
    Report(CheckovReport),
    Empty(CheckovSummary),
}

#[derive(Debug, Deserialize)]
pub struct CheckovReport {
    pub check_type: String,
    pub results: CheckovResults,
    pub summary: CheckovSummary,
}

#[derive(Debug, Deserialize)]
pub struct CheckovResults {
    #[serde(default)]
    pub failed_checks: Vec<CheckovCheck>,
}

#[derive(Debug, Deserialize)]
pub struct CheckovCheck {
    pub check_id: String,
    #[serde(default)]
    pub check_name: String,
    pub resource: String,
    /// Relative to the directory checkov ran in, with a leading `/`.
    #[serde(default)]
    pub repo_file_path: String,
    #[serde(default)]
    pub file_line_range: Vec<u64>,
}

#[derive(Debug, Deserialize)]
pub struct CheckovSummary {
    pub passed: u64,
    pub failed: u64,
    pub skipped: u64,
    pub parsing_errors: u64,
    pub resource_count: u64,
}

/// A failed checkov check, or the inline skips of one report.
#[derive(Debug, Clone, PartialEq)]
pub struct CheckovFinding {
    /// `terraform`, `bootstrap` (the directory under `infrastructure/`) or `dockerfile`.
    pub root: String,
    pub id: String,
    /// As checkov names it; for a Dockerfile `<path>.<INSTRUCTION>`, or `<path>` for a check
    /// of the whole file (checkov's trailing `.` dropped).
    pub resource: String,
    pub name: String,
    /// `#checkov:skip` comments found (the check is then `inline skip`): forbidden, because
    /// the suppression file is the only place a finding is accepted.
    pub inline_skips: u64,
}

/// The root a finding belongs to: the directory under `infrastructure/`, or `dockerfile`.
fn checkov_root(check_type: &str, repo_file_path: &str) -> String {
    if check_type == "dockerfile" {
        return "dockerfile".into();
    }
    let path = repo_file_path.trim_start_matches('/');
    let under = path.strip_prefix("infrastructure/").unwrap_or(path);
    match under.split_once('/') {
        Some((root, _)) => root.to_string(),
        None => under.to_string(),
    }
}

/// Every failed check of one checkov run. A scan that found nothing, or could not parse a
/// file, is an error: it would otherwise pass by seeing less.
pub fn parse_checkov(what: &str, text: &str) -> Result<Vec<CheckovFinding>> {
    let output: CheckovOutput = serde_json::from_str(text)
        .with_context(|| format!("checkov ({what}): unexpected --output json"))?;
    let items = match output {
        CheckovOutput::Many(items) => items,
        CheckovOutput::One(item) => vec![item],
    };
    let mut findings = Vec::new();
    for item in items {
        let report = match item {
            CheckovItem::Report(report) => report,
            CheckovItem::Empty(summary) => bail!(
                "checkov ({what}) scanned no resources ({} checks passed, {} failed): is the \
                 path right?",
                summary.passed,
                summary.failed
            ),
        };
        if report.summary.parsing_errors > 0 {
            bail!(
                "checkov ({what}) could not parse {} file(s) of framework {}",
                report.summary.parsing_errors,
                report.check_type
            );
        }
        if report.summary.resource_count == 0 {
            bail!(
                "checkov ({what}) found no {} resources: is the path right?",
                report.check_type
            );
        }
        if report.summary.skipped > 0 {
            findings.push(CheckovFinding {
                root: checkov_root(&report.check_type, ""),
                id: "inline skip".into(),
                resource: format!("{what} ({})", report.check_type),
                name: String::new(),
                inline_skips: report.summary.skipped,
            });
        }
        for check in report.results.failed_checks {
            findings.push(CheckovFinding {
                root: checkov_root(&report.check_type, &check.repo_file_path),
                id: check.check_id,
                resource: check.resource.trim_end_matches('.').to_string(),
                name: check.check_name,
                inline_skips: 0,
            });
        }
    }
    Ok(findings)
}

// ---------------------------------------------------------------------------------------------
// hadolint (`--format json`).

#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct HadolintFinding {
    pub code: String,
    pub level: String,
    pub line: u64,
    pub message: String,
    pub file: String,
}

pub fn parse_hadolint(text: &str) -> Result<Vec<HadolintFinding>> {
    serde_json::from_str(text).context("hadolint: unexpected --format json output")
}

// ---------------------------------------------------------------------------------------------
// parliament (`--json`: one finding per line).

#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct ParliamentFinding {
    pub issue: String,
    #[serde(default)]
    pub title: String,
    #[serde(default)]
    pub severity: String,
    #[serde(default)]
    pub detail: Detail,
    #[serde(default)]
    pub location: Location,
}

/// `detail` is a list of `{action, ...}` for some auditors (RESOURCE_MISMATCH), a string or
/// anything else for others.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(untagged)]
pub enum Detail {
    Entries(Vec<DetailEntry>),
    Other(serde_json::Value),
}

impl Default for Detail {
    fn default() -> Self {
        Detail::Other(serde_json::Value::Null)
    }
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct DetailEntry {
    #[serde(default)]
    pub action: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
pub struct Location {
    #[serde(default)]
    pub actions: Vec<String>,
    /// The escalation method, for PRIVILEGE_ESCALATION.
    #[serde(rename = "type", default)]
    pub kind: Option<String>,
}

impl ParliamentFinding {
    /// Every action the finding names (`location.actions` and each detail's `action`),
    /// lowercase.
    pub fn actions(&self) -> BTreeSet<String> {
        let mut actions: BTreeSet<String> = self
            .location
            .actions
            .iter()
            .map(|a| a.to_ascii_lowercase())
            .collect();
        if let Detail::Entries(entries) = &self.detail {
            actions.extend(
                entries
                    .iter()
                    .filter_map(|e| e.action.as_deref())
                    .map(str::to_ascii_lowercase),
            );
        }
        actions
    }
}

pub fn parse_parliament(text: &str) -> Result<Vec<ParliamentFinding>> {
    text.lines()
        .filter(|line| !line.trim().is_empty())
        .map(|line| {
            serde_json::from_str(line)
                .with_context(|| format!("parliament: unexpected --json line: {line}"))
        })
        .collect()
}

// ---------------------------------------------------------------------------------------------
// IAM policy documents, as Terraform's aws_iam_policy_document renders them.

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(untagged)]
pub enum OneOrMany<T> {
    One(T),
    Many(Vec<T>),
}

impl<T> OneOrMany<T> {
    pub fn iter(&self) -> std::slice::Iter<'_, T> {
        match self {
            OneOrMany::One(one) => std::slice::from_ref(one).iter(),
            OneOrMany::Many(many) => many.iter(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct PolicyDocument {
    #[serde(default)]
    pub version: Option<String>,
    pub statement: OneOrMany<Statement>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub enum Effect {
    Allow,
    Deny,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Statement {
    #[serde(default)]
    pub sid: Option<String>,
    pub effect: Effect,
    #[serde(default)]
    pub action: Option<OneOrMany<String>>,
    #[serde(default)]
    pub not_action: Option<OneOrMany<String>>,
    #[serde(default)]
    pub resource: Option<OneOrMany<String>>,
    #[serde(default)]
    pub not_resource: Option<OneOrMany<String>>,
    /// operator → condition key → values.
    #[serde(default)]
    pub condition: BTreeMap<String, BTreeMap<String, OneOrMany<serde_json::Value>>>,
}

impl PolicyDocument {
    pub fn parse(what: &str, text: &str) -> Result<PolicyDocument> {
        serde_json::from_str(text).with_context(|| format!("{what}: not an IAM policy document"))
    }
}

impl Statement {
    fn name(&self) -> String {
        match &self.sid {
            Some(sid) => format!("statement `{sid}`"),
            None => "a statement without Sid".into(),
        }
    }

    /// Whether this statement allows `action` (a concrete action name), by its Action or
    /// NotAction patterns. Resources and conditions are not considered.
    fn allows(&self, action: &str) -> bool {
        if self.effect != Effect::Allow {
            return false;
        }
        match (&self.action, &self.not_action) {
            (Some(patterns), _) => patterns.iter().any(|p| glob(p, action)),
            (None, Some(patterns)) => !patterns.iter().any(|p| glob(p, action)),
            (None, None) => false,
        }
    }
}

/// IAM's wildcard match: `*` any run of characters, `?` one; case-insensitive (action names
/// are).
fn glob(pattern: &str, text: &str) -> bool {
    let p: Vec<char> = pattern.to_ascii_lowercase().chars().collect();
    let t: Vec<char> = text.to_ascii_lowercase().chars().collect();
    let (mut pi, mut ti) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == t[ti]) {
            pi += 1;
            ti += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some((pi, ti));
            pi += 1;
        } else if let Some((sp, st)) = star {
            pi = sp + 1;
            ti = st + 1;
            star = Some((sp, st + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&c| c == '*')
}

fn has_wildcard(s: &str) -> bool {
    s.contains('*') || s.contains('?')
}

// ---------------------------------------------------------------------------------------------
// The verified exception: parliament's EditExistingLambdaFunctionWithRole.
//
// parliament raises it for any policy that holds lambda:UpdateFunctionCode, whatever the
// resource (community_auditors/privilege_escalation.py compares action names only). The risk
// it names is running code as a more privileged role than the caller's. That needs a function
// whose role has more rights than the caller, or a way to change a role. The check below
// passes only when the rendered policies rule both out.

/// IAM actions that change a role, a policy or who holds one, as patterns: a policy action
/// these match (`iam:PutRolePolicy`, `iam:Put*`) is an IAM write.
const IAM_WRITE_FAMILIES: &[&str] = &[
    "iam:Put*",
    "iam:Attach*",
    "iam:Detach*",
    "iam:Update*",
    "iam:Create*",
    "iam:Delete*Policy*",
    "iam:Delete*PermissionsBoundary",
    "iam:SetDefaultPolicyVersion",
    "iam:AddUserToGroup",
    "iam:AddRoleToInstanceProfile",
    "iam:Tag*",
    "iam:Untag*",
    "iam:PassRole",
];

/// The concrete actions of those families that bear on roles and policies (from parliament's
/// own IAM action table), so that a wildcard (`iam:*`, `*`) or a NotAction that lets one
/// through is caught too.
const IAM_WRITES: &[&str] = &[
    "iam:AddRoleToInstanceProfile",
    "iam:AddUserToGroup",
    "iam:AttachGroupPolicy",
    "iam:AttachRolePolicy",
    "iam:AttachUserPolicy",
    "iam:CreateAccessKey",
    "iam:CreateGroup",
    "iam:CreateInstanceProfile",
    "iam:CreateLoginProfile",
    "iam:CreatePolicy",
    "iam:CreatePolicyVersion",
    "iam:CreateRole",
    "iam:CreateServiceLinkedRole",
    "iam:CreateUser",
    "iam:DeleteGroupPolicy",
    "iam:DeletePolicy",
    "iam:DeletePolicyVersion",
    "iam:DeleteRolePermissionsBoundary",
    "iam:DeleteRolePolicy",
    "iam:DeleteUserPermissionsBoundary",
    "iam:DeleteUserPolicy",
    "iam:DetachGroupPolicy",
    "iam:DetachRolePolicy",
    "iam:DetachUserPolicy",
    "iam:PassRole",
    "iam:PutGroupPolicy",
    "iam:PutRolePermissionsBoundary",
    "iam:PutRolePolicy",
    "iam:PutUserPermissionsBoundary",
    "iam:PutUserPolicy",
    "iam:SetDefaultPolicyVersion",
    "iam:TagPolicy",
    "iam:TagRole",
    "iam:TagUser",
    "iam:UntagPolicy",
    "iam:UntagRole",
    "iam:UntagUser",
    "iam:UpdateAccessKey",
    "iam:UpdateAssumeRolePolicy",
    "iam:UpdateLoginProfile",
    "iam:UpdateRole",
    "iam:UpdateRoleDescription",
];

const UPDATE_FUNCTION_CODE: &str = "lambda:UpdateFunctionCode";

/// What the execution role may do, exactly: write its function's log streams.
const EXECUTION_ACTIONS: &[&str] = &["logs:CreateLogStream", "logs:PutLogEvents"];

/// An exact (wildcard-free) Lambda function ARN, `arn:P:lambda:R:A:function:NAME[:QUALIFIER]`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct FunctionArn {
    partition: String,
    region: String,
    account: String,
    name: String,
}

impl FunctionArn {
    fn parse(arn: &str) -> Option<FunctionArn> {
        if has_wildcard(arn) {
            return None;
        }
        let parts: Vec<&str> = arn.split(':').collect();
        match parts.as_slice() {
            [
                "arn",
                partition,
                "lambda",
                region,
                account,
                "function",
                name,
                rest @ ..,
            ] if rest.len() <= 1
                && [partition, region, account, name]
                    .iter()
                    .all(|p| !p.is_empty())
                && rest.iter().all(|q| !q.is_empty()) =>
            {
                Some(FunctionArn {
                    partition: partition.to_string(),
                    region: region.to_string(),
                    account: account.to_string(),
                    name: name.to_string(),
                })
            }
            _ => None,
        }
    }

    /// The function's own log group, `/aws/lambda/NAME`, in its region and account.
    fn log_group(&self) -> String {
        format!(
            "arn:{}:logs:{}:{}:log-group:/aws/lambda/{}",
            self.partition, self.region, self.account, self.name
        )
    }
}

/// An exact IAM role ARN, `arn:P:iam::A:role/PATH/NAME`.
fn exact_role_arn(arn: &str) -> bool {
    let parts: Vec<&str> = arn.split(':').collect();
    !has_wildcard(arn)
        && matches!(parts.as_slice(),
            ["arn", partition, "iam", "", account, role]
                if !partition.is_empty() && !account.is_empty()
                    && role.strip_prefix("role/").is_some_and(|name| !name.is_empty()))
}

/// `iam:PassRole` with exact role ARNs and a `StringEquals` `iam:PassedToService` condition
/// naming exact services: the passed role's ARNs and the services, or why not.
fn pass_role_scope(st: &Statement) -> Result<(Vec<String>, Vec<String>), String> {
    if st.not_resource.is_some() {
        return Err(format!("{} passes roles by NotResource", st.name()));
    }
    let roles: Vec<String> = st.resource.iter().flat_map(|r| r.iter()).cloned().collect();
    if roles.is_empty() || !roles.iter().all(|r| exact_role_arn(r)) {
        return Err(format!(
            "{} allows iam:PassRole on {} rather than exact role ARNs",
            st.name(),
            roles.join(", ")
        ));
    }
    let services: Vec<String> = st
        .condition
        .get("StringEquals")
        .into_iter()
        .flat_map(|keys| keys.iter())
        .filter(|(key, _)| key.eq_ignore_ascii_case("iam:PassedToService"))
        .flat_map(|(_, values)| values.iter())
        .map(|v| {
            v.as_str()
                .map(str::to_string)
                .unwrap_or_else(|| v.to_string())
        })
        .collect();
    if services.is_empty() || services.iter().any(|s| has_wildcard(s)) {
        return Err(format!(
            "{} allows iam:PassRole without a StringEquals iam:PassedToService condition naming exact services",
            st.name()
        ));
    }
    Ok((roles, services))
}

/// The IAM writes a statement allows: its own action patterns that fall in a write family,
/// and the concrete writes its patterns (or NotAction) let through.
fn iam_writes(st: &Statement) -> BTreeSet<String> {
    let mut hits = BTreeSet::new();
    if st.effect != Effect::Allow {
        return hits;
    }
    for pattern in st.action.iter().flat_map(|a| a.iter()) {
        if IAM_WRITE_FAMILIES
            .iter()
            .any(|family| glob(family, pattern))
        {
            hits.insert(pattern.to_ascii_lowercase());
        }
    }
    for action in IAM_WRITES {
        if st.allows(action) {
            hits.insert(action.to_ascii_lowercase());
        }
    }
    hits
}

/// The three facts that make parliament's EditExistingLambdaFunctionWithRole unexploitable
/// here, each checked on the rendered policies; or every fact that does not hold.
///
/// 1. Every statement of the CI policy that allows lambda:UpdateFunctionCode names exact
///    function ARNs: CI can only put new code into the functions it deploys.
/// 2. The CI policy allows no IAM write that could change a role or policy; iam:PassRole only
///    on exact role ARNs, to services named by an iam:PassedToService condition.
/// 3. The execution policy allows only logs:CreateLogStream and logs:PutLogEvents, on the log
///    group of one of those functions: code running as the function gains nothing CI lacks.
pub fn verify_lambda_update(
    ci: &PolicyDocument,
    execution: &PolicyDocument,
) -> Result<[String; 3], Vec<String>> {
    let mut problems = Vec::new();

    // 1. Exact function ARNs.
    let mut functions: BTreeSet<FunctionArn> = BTreeSet::new();
    let mut granting = 0;
    for st in ci
        .statement
        .iter()
        .filter(|st| st.allows(UPDATE_FUNCTION_CODE))
    {
        granting += 1;
        if st.not_resource.is_some() {
            problems.push(format!(
                "(1) {} allows {UPDATE_FUNCTION_CODE} by NotResource",
                st.name()
            ));
        }
        let resources: Vec<&String> = st.resource.iter().flat_map(|r| r.iter()).collect();
        if resources.is_empty() && st.not_resource.is_none() {
            problems.push(format!("(1) {} names no resource", st.name()));
        }
        for resource in resources {
            match FunctionArn::parse(resource) {
                Some(arn) => {
                    functions.insert(arn);
                }
                None => problems.push(format!(
                    "(1) {} allows {UPDATE_FUNCTION_CODE} on `{resource}`, not an exact function ARN",
                    st.name()
                )),
            }
        }
    }
    if granting == 0 {
        problems.push(format!(
            "(1) no statement of the CI policy allows {UPDATE_FUNCTION_CODE}"
        ));
    }

    // 2. No IAM writes; PassRole only scoped.
    let mut passes = Vec::new();
    for st in ci.statement.iter() {
        let writes = iam_writes(st);
        if writes.is_empty() {
            continue;
        }
        if writes.len() == 1 && writes.contains("iam:passrole") {
            match pass_role_scope(st) {
                Ok((roles, services)) => {
                    passes.push(format!("{} to {}", roles.join(", "), services.join(", ")))
                }
                Err(problem) => problems.push(format!("(2) {problem}")),
            }
        } else {
            let writes: Vec<String> = writes.into_iter().collect();
            problems.push(format!(
                "(2) {} of the CI policy allows IAM writes: {}",
                st.name(),
                writes.join(", ")
            ));
        }
    }

    // 3. The execution role writes only its own function's log group.
    let mut allowed: BTreeSet<String> = BTreeSet::new();
    let mut groups: BTreeSet<String> = BTreeSet::new();
    let own: BTreeSet<String> = functions
        .iter()
        .flat_map(|f| [f.log_group(), format!("{}:*", f.log_group())])
        .collect();
    for st in execution
        .statement
        .iter()
        .filter(|st| st.effect == Effect::Allow)
    {
        if st.not_action.is_some() || st.not_resource.is_some() {
            problems.push(format!(
                "(3) {} of the execution policy uses NotAction/NotResource",
                st.name()
            ));
            continue;
        }
        for action in st.action.iter().flat_map(|a| a.iter()) {
            match EXECUTION_ACTIONS
                .iter()
                .find(|a| a.eq_ignore_ascii_case(action))
            {
                Some(a) => {
                    allowed.insert(a.to_string());
                }
                None => problems.push(format!(
                    "(3) {} of the execution policy allows `{action}`; only {} are expected",
                    st.name(),
                    EXECUTION_ACTIONS.join(" and ")
                )),
            }
        }
        let resources: Vec<&String> = st.resource.iter().flat_map(|r| r.iter()).collect();
        if resources.is_empty() {
            problems.push(format!("(3) {} names no resource", st.name()));
        }
        for resource in resources {
            if own.contains(resource) {
                groups.insert(resource.clone());
            } else {
                problems.push(format!(
                    "(3) {} of the execution policy allows writing `{resource}`, not the log group of {}",
                    st.name(),
                    functions
                        .iter()
                        .map(|f| f.name.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ));
            }
        }
    }

    if !problems.is_empty() {
        return Err(problems);
    }
    let arns: Vec<String> = functions
        .iter()
        .map(|f| {
            format!(
                "arn:{}:lambda:{}:{}:function:{}",
                f.partition, f.region, f.account, f.name
            )
        })
        .collect();
    Ok([
        format!(
            "(1) {UPDATE_FUNCTION_CODE} only on exact function ARNs: {}",
            arns.join(", ")
        ),
        format!(
            "(2) no IAM write in the CI policy; iam:PassRole only on {}",
            if passes.is_empty() {
                "nothing".to_string()
            } else {
                passes.join("; ")
            }
        ),
        format!(
            "(3) the execution policy allows only {} on {}",
            allowed.into_iter().collect::<Vec<_>>().join(", "),
            groups.into_iter().collect::<Vec<_>>().join(", ")
        ),
    ])
}

// ---------------------------------------------------------------------------------------------
// Evaluation.

/// Everything the auditors reported, parsed.
#[derive(Debug, Clone)]
pub struct Inputs {
    pub checkov: Vec<CheckovFinding>,
    pub hadolint: Vec<HadolintFinding>,
    pub parliament: Vec<(PolicyName, ParliamentFinding)>,
    pub ci_policy: PolicyDocument,
    pub execution_policy: PolicyDocument,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Verdict {
    /// Matched the suppression file's entry on this line.
    Accepted {
        line: usize,
    },
    /// The privilege-escalation exception, with its facts.
    Verified(String),
    Failed(String),
}

impl Verdict {
    fn word(&self) -> &'static str {
        match self {
            Verdict::Accepted { .. } => "accepted",
            Verdict::Verified(_) => "verified",
            Verdict::Failed(_) => "FAILED",
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    pub auditor: &'static str,
    pub id: String,
    pub resource: String,
    pub verdict: Verdict,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Outcome {
    pub rows: Vec<Row>,
}

/// Matches every finding against the suppressions, checks the one exception, and turns
/// entries that matched nothing into failures.
pub fn evaluate(inputs: &Inputs, suppressions: &Suppressions) -> Outcome {
    let mut rows = Vec::new();
    let mut used_checkov = vec![false; suppressions.checkov.len()];
    let mut used_parliament = vec![false; suppressions.parliament.len()];

    for f in &inputs.checkov {
        let verdict = if f.inline_skips > 0 {
            Verdict::Failed(format!(
                "{} check(s) skipped by `#checkov:skip` comments; remove them and add entries to \
                 the suppression file instead",
                f.inline_skips
            ))
        } else {
            let hit = suppressions.checkov.iter().position(|e| {
                e.id == f.id && e.roots.contains(&f.root) && e.resources.contains(&f.resource)
            });
            match hit {
                Some(i) => {
                    used_checkov[i] = true;
                    Verdict::Accepted {
                        line: suppressions.checkov[i].line,
                    }
                }
                None => Verdict::Failed(format!(
                    "{} `{}`: no [[checkov]] entry with this id, root and resource; fix it, or \
                     add one with its reason",
                    f.id, f.name
                )),
            }
        };
        rows.push(Row {
            auditor: "checkov",
            id: f.id.clone(),
            resource: format!("{}: {}", f.root, f.resource),
            verdict,
        });
    }

    for f in &inputs.hadolint {
        rows.push(Row {
            auditor: "hadolint",
            id: f.code.clone(),
            resource: format!("{}:{}", f.file, f.line),
            verdict: Verdict::Failed(format!(
                "{} {} ({}): the Dockerfile must be hadolint-clean",
                f.code, f.message, f.level
            )),
        });
    }

    for (policy, f) in &inputs.parliament {
        let actions = f.actions();
        let listed = actions.iter().cloned().collect::<Vec<_>>().join(", ");
        let mut resource = format!(
            "{policy}: {}",
            if listed.is_empty() { "-" } else { &listed }
        );
        let verdict = if f.issue.eq_ignore_ascii_case(PRIVILEGE_ESCALATION) {
            let kind = f.location.kind.as_deref().unwrap_or("?");
            resource = format!("{resource} ({kind})");
            let expected = BTreeSet::from([UPDATE_FUNCTION_CODE.to_ascii_lowercase()]);
            if *policy == PolicyName::Ci && kind == LAMBDA_UPDATE_ESCALATION && actions == expected
            {
                match verify_lambda_update(&inputs.ci_policy, &inputs.execution_policy) {
                    Ok(facts) => {
                        Verdict::Verified(format!("verified not exploitable: {}", facts.join("; ")))
                    }
                    Err(problems) => Verdict::Failed(format!(
                        "{LAMBDA_UPDATE_ESCALATION} is exploitable as rendered: {}",
                        problems.join("; ")
                    )),
                }
            } else {
                Verdict::Failed(format!(
                    "{PRIVILEGE_ESCALATION} `{kind}` in the {policy} policy cannot be accepted: fix \
                     the policy"
                ))
            }
        } else {
            let hit = suppressions.parliament.iter().position(|e| {
                e.policy == *policy
                    && e.issue.eq_ignore_ascii_case(&f.issue)
                    && !actions.is_empty()
                    && actions.is_subset(&e.actions)
            });
            match hit {
                Some(i) => {
                    used_parliament[i] = true;
                    Verdict::Accepted {
                        line: suppressions.parliament[i].line,
                    }
                }
                None => Verdict::Failed(format!(
                    "{} ({}) in the {policy} policy: no [[parliament]] entry for this issue lists \
                     every action it names; fix the policy, or add one with its reason",
                    f.issue, f.title
                )),
            }
        };
        rows.push(Row {
            auditor: "parliament",
            id: f.issue.clone(),
            resource,
            verdict,
        });
    }

    for (e, used) in suppressions.checkov.iter().zip(&used_checkov) {
        if !used {
            rows.push(Row {
                auditor: "suppressions",
                id: e.id.clone(),
                resource: format!("{}: {}", e.roots.join(","), e.resources.join(",")),
                verdict: Verdict::Failed(format!(
                    "stale [[checkov]] entry on line {}: it matches no finding; delete it",
                    e.line
                )),
            });
        }
    }
    for (e, used) in suppressions.parliament.iter().zip(&used_parliament) {
        if !used {
            rows.push(Row {
                auditor: "suppressions",
                id: e.issue.clone(),
                resource: format!(
                    "{}: {}",
                    e.policy,
                    e.actions.iter().cloned().collect::<Vec<_>>().join(",")
                ),
                verdict: Verdict::Failed(format!(
                    "stale [[parliament]] entry on line {}: it matches no finding; delete it",
                    e.line
                )),
            });
        }
    }
    Outcome { rows }
}

impl Outcome {
    pub fn count(&self, word: &str) -> usize {
        self.rows
            .iter()
            .filter(|r| r.verdict.word() == word)
            .count()
    }

    pub fn failed(&self) -> usize {
        self.count("FAILED")
    }

    /// The findings table, then one line per verified exception and per failure.
    pub fn render(&self) -> String {
        let headers = ["auditor", "id", "resource", "verdict"];
        let cells: Vec<[String; 4]> = self
            .rows
            .iter()
            .map(|r| {
                let verdict = match &r.verdict {
                    Verdict::Accepted { line } => format!("accepted (line {line})"),
                    other => other.word().to_string(),
                };
                [
                    r.auditor.to_string(),
                    r.id.clone(),
                    r.resource.clone(),
                    verdict,
                ]
            })
            .collect();
        let mut widths = headers.map(str::len);
        for row in &cells {
            for (w, cell) in widths.iter_mut().zip(row) {
                *w = (*w).max(cell.chars().count());
            }
        }
        let mut out = String::new();
        let mut line = |cols: [&str; 4]| {
            let _ = writeln!(
                out,
                "{:<w0$}  {:<w1$}  {:<w2$}  {}",
                cols[0],
                cols[1],
                cols[2],
                cols[3],
                w0 = widths[0],
                w1 = widths[1],
                w2 = widths[2]
            );
        };
        line(headers);
        for row in &cells {
            line([&row[0], &row[1], &row[2], &row[3]]);
        }
        for r in &self.rows {
            match &r.verdict {
                Verdict::Verified(text) => {
                    let _ = writeln!(out, "{} {} {}: {text}", r.auditor, r.id, r.resource);
                }
                Verdict::Failed(text) => {
                    let _ = writeln!(out, "FAILED {} {} {}: {text}", r.auditor, r.id, r.resource);
                }
                Verdict::Accepted { .. } => {}
            }
        }
        let _ = writeln!(
            out,
            "{} rows: {} accepted, {} verified, {} FAILED",
            self.rows.len(),
            self.count("accepted"),
            self.count("verified"),
            self.failed()
        );
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The CI and execution policies as the bootstrap root renders them (prod settings,
    /// allow_public_function_url = true, emulator account and region).
    const CI: &str = r#"{"Version": "2012-10-17", "Statement": [
      {"Sid": "EcrLogin", "Effect": "Allow", "Action": "ecr:GetAuthorizationToken", "Resource": "*"},
      {"Sid": "EcrRepositoryPolicyForLambda", "Effect": "Allow", "Action": ["ecr:SetRepositoryPolicy", "ecr:GetRepositoryPolicy"], "Resource": "arn:aws:ecr:us-east-1:123456789012:repository/prod-sse-streaming-lambda"},
      {"Sid": "LambdaFunction", "Effect": "Allow", "Action": ["lambda:UpdateFunctionConfiguration", "lambda:UpdateFunctionCode", "lambda:GetFunction", "lambda:CreateFunction"], "Resource": "arn:aws:lambda:us-east-1:123456789012:function:prod-sse-streaming-lambda"},
      {"Sid": "LambdaPublicUrlPermission", "Effect": "Allow", "Action": ["lambda:RemovePermission", "lambda:GetPolicy", "lambda:AddPermission"], "Resource": "arn:aws:lambda:us-east-1:123456789012:function:prod-sse-streaming-lambda"},
      {"Sid": "PassExecutionRoleToLambda", "Effect": "Allow", "Action": "iam:PassRole", "Resource": "arn:aws:iam::123456789012:role/prod-sse-streaming-exec", "Condition": {"StringEquals": {"iam:PassedToService": "lambda.amazonaws.com"}}},
      {"Sid": "ReadExecutionRole", "Effect": "Allow", "Action": "iam:GetRole", "Resource": "arn:aws:iam::123456789012:role/prod-sse-streaming-exec"},
      {"Sid": "LogGroupRead", "Effect": "Allow", "Action": "logs:DescribeLogGroups", "Resource": "arn:aws:logs:us-east-1:123456789012:log-group:*"},
      {"Sid": "StateObject", "Effect": "Allow", "Action": ["s3:PutObject", "s3:GetObject"], "Resource": "arn:aws:s3:::prod-sse-streaming-tfstate/prod/sse-streaming.tfstate"}
    ]}"#;

    const EXECUTION: &str = r#"{"Version": "2012-10-17", "Statement": [{"Sid": "WriteOwnLogGroup", "Effect": "Allow", "Action": ["logs:PutLogEvents", "logs:CreateLogStream"], "Resource": "arn:aws:logs:us-east-1:123456789012:log-group:/aws/lambda/prod-sse-streaming-lambda:*"}]}"#;

    /// parliament's output for the CI policy above, verbatim.
    const PARLIAMENT_CI: &str = r#"{"issue": "CREDENTIALS_EXPOSURE", "title": "Credentials exposure", "severity": "MEDIUM", "description": "Policy grants access to API calls that can return credentials to the user", "detail": "", "location": {"actions": ["ecr:getauthorizationtoken"], "filepath": "<stdin>"}}
{"issue": "PERMISSIONS_MANAGEMENT_ACTIONS", "title": "Permissions management actions", "severity": "MEDIUM", "description": "Allows the principal to modify IAM, RAM, identity-based policies, or resource based policies.", "detail": "", "location": {"actions": ["iam:passrole", "lambda:addpermission", "lambda:removepermission", "ecr:setrepositorypolicy"], "filepath": "<stdin>"}}
{"issue": "PRIVILEGE_ESCALATION", "title": "Privilege escalation", "severity": "HIGH", "description": "Actions contain a combination of Privilege Escalation actions established by Rhino Security Labs", "detail": "", "location": {"type": "EditExistingLambdaFunctionWithRole", "actions": ["lambda:updatefunctioncode"], "filepath": "<stdin>"}}
{"issue": "RESOURCE_MISMATCH", "title": "No resources match for the given action", "severity": "MEDIUM", "description": "", "detail": [{"action": "logs:DescribeLogGroups", "required_format": "*"}], "location": {"line": 123, "column": 5, "filepath": "<stdin>"}}
"#;

    const SUPPRESSIONS: &str = r#"# header
[[checkov]]
id = "CKV_AWS_136"
roots = ["terraform"]
resources = ["aws_ecr_repository.this"]
reason = "AES-256 default"

[[checkov]]
id = "CKV_DOCKER_2"
roots = ["dockerfile"]
resources = ["src/lambdas/sse_streaming/Dockerfile"]
reason = "Lambda ignores HEALTHCHECK"

[[parliament]]
policy = "ci"
issue = "CREDENTIALS_EXPOSURE"
actions = ["ecr:getauthorizationtoken"]
reason = "docker login"

[[parliament]]
policy = "ci"
issue = "PERMISSIONS_MANAGEMENT_ACTIONS"
actions = ["iam:passrole", "ecr:setrepositorypolicy", "lambda:addpermission", "lambda:removepermission"]
reason = "scoped"

[[parliament]]
policy = "ci"
issue = "RESOURCE_MISMATCH"
actions = ["logs:describeloggroups"]
reason = "parliament's table"
"#;

    /// checkov's report shape (`--compact --quiet --output json`), trimmed to the fields read.
    const CHECKOV_TF: &str = r#"{"check_type": "terraform", "results": {"failed_checks": [
      {"check_id": "CKV_AWS_136", "check_name": "Ensure that ECR repositories are encrypted using KMS", "resource": "aws_ecr_repository.this", "file_path": "/terraform/ecr.tf", "repo_file_path": "/infrastructure/terraform/ecr.tf", "file_line_range": [1, 16]}
    ]}, "summary": {"passed": 88, "failed": 1, "skipped": 0, "parsing_errors": 0, "resource_count": 18, "checkov_version": "3.3.30"}}"#;

    const CHECKOV_DOCKER: &str = r#"{"check_type": "dockerfile", "results": {"failed_checks": [
      {"check_id": "CKV_DOCKER_2", "check_name": "Ensure that HEALTHCHECK instructions have been added to container images", "resource": "src/lambdas/sse_streaming/Dockerfile.", "file_path": "src/lambdas/sse_streaming/Dockerfile", "repo_file_path": "/src/lambdas/sse_streaming/Dockerfile", "file_line_range": [1, 62]}
    ]}, "summary": {"passed": 49, "failed": 1, "skipped": 0, "parsing_errors": 0, "resource_count": 1, "checkov_version": "3.3.30"}}"#;

    fn policy(text: &str) -> PolicyDocument {
        PolicyDocument::parse("test", text).unwrap()
    }

    /// The CI policy with one statement's JSON appended.
    fn ci_with(statement: &str) -> PolicyDocument {
        let at = CI.rfind(']').unwrap();
        policy(&format!("{},{statement}{}", &CI[..at], &CI[at..]))
    }

    fn inputs(ci: PolicyDocument, execution: PolicyDocument) -> Inputs {
        let mut checkov = parse_checkov("infrastructure", CHECKOV_TF).unwrap();
        checkov.extend(parse_checkov("Dockerfile", CHECKOV_DOCKER).unwrap());
        Inputs {
            checkov,
            hadolint: parse_hadolint("[]").unwrap(),
            parliament: parse_parliament(PARLIAMENT_CI)
                .unwrap()
                .into_iter()
                .map(|f| (PolicyName::Ci, f))
                .collect(),
            ci_policy: ci,
            execution_policy: execution,
        }
    }

    fn suppressions() -> Suppressions {
        Suppressions::parse("s.toml", SUPPRESSIONS).unwrap()
    }

    #[test]
    fn glob_matches_like_iam() {
        assert!(glob("lambda:*", "lambda:UpdateFunctionCode"));
        assert!(glob("*", "iam:PutRolePolicy"));
        assert!(glob("LAMBDA:update*code", "lambda:UpdateFunctionCode"));
        assert!(glob("iam:Delete*Policy*", "iam:DeleteRolePolicy"));
        assert!(glob("iam:Put*", "iam:Put*"));
        assert!(glob("s3:?etObject", "s3:GetObject"));
        assert!(!glob("iam:Put*", "iam:*"));
        assert!(!glob("lambda:Get*", "lambda:UpdateFunctionCode"));
        assert!(!glob("iam:PassRole", "iam:PassRoles"));
    }

    #[test]
    fn suppression_file_parses_with_lines() {
        let s = suppressions();
        assert_eq!(s.checkov.len(), 2);
        // The line of the entry's `[[checkov]]` header.
        assert_eq!(s.checkov[0].line, 2, "{:?}", s.checkov[0]);
        assert_eq!(s.parliament[0].policy, PolicyName::Ci);
        assert!(s.parliament[1].actions.contains("iam:passrole"));
    }

    #[test]
    fn the_projects_suppression_file_parses() {
        let path = crate::paths::root().join(crate::paths::AUDIT_SUPPRESSIONS);
        let text = std::fs::read_to_string(&path).unwrap();
        let s = Suppressions::parse(crate::paths::AUDIT_SUPPRESSIONS, &text).unwrap();
        assert!(s.checkov.iter().any(|e| e.roots == ["dockerfile"]));
        assert!(
            !s.parliament
                .iter()
                .any(|e| e.issue.eq_ignore_ascii_case(PRIVILEGE_ESCALATION))
        );
    }

    #[test]
    fn a_privilege_escalation_entry_is_refused() {
        let text = "[[parliament]]\npolicy = \"ci\"\nissue = \"PRIVILEGE_ESCALATION\"\n\
                    actions = [\"lambda:updatefunctioncode\"]\nreason = \"needed\"\n";
        let err = Suppressions::parse("s.toml", text).unwrap_err().to_string();
        assert!(err.contains("s.toml:1:"), "{err}");
        assert!(err.contains("never suppressible"), "{err}");
    }

    #[test]
    fn unknown_keys_and_policies_are_refused() {
        let typo = "[[checkov]]\nid = \"X\"\nroot = [\"terraform\"]\nresources = [\"r\"]\nreason = \"r\"\n";
        assert!(Suppressions::parse("s.toml", typo).is_err());
        let policy = "[[parliament]]\npolicy = \"deploy\"\nissue = \"X\"\nactions = [\"a:b\"]\nreason = \"r\"\n";
        let err = Suppressions::parse("s.toml", policy)
            .unwrap_err()
            .to_string();
        assert!(err.contains("\"ci\" or \"execution\""), "{err}");
    }

    #[test]
    fn checkov_roots_and_dockerfile_resources() {
        let f = parse_checkov("x", CHECKOV_TF).unwrap();
        assert_eq!(f[0].root, "terraform");
        assert_eq!(f[0].resource, "aws_ecr_repository.this");
        let d = parse_checkov("x", CHECKOV_DOCKER).unwrap();
        assert_eq!(d[0].root, "dockerfile");
        assert_eq!(d[0].resource, "src/lambdas/sse_streaming/Dockerfile");
        assert_eq!(
            checkov_root("terraform", "/infrastructure/bootstrap/state-bucket.tf"),
            "bootstrap"
        );
        // A list (several frameworks) parses too.
        let both = format!("[{CHECKOV_TF}, {CHECKOV_DOCKER}]");
        assert_eq!(parse_checkov("x", &both).unwrap().len(), 2);
    }

    #[test]
    fn checkov_that_saw_nothing_or_could_not_parse_is_an_error() {
        let empty = r#"{"passed": 0, "failed": 0, "skipped": 0, "parsing_errors": 0, "resource_count": 0, "checkov_version": "3.3.30"}"#;
        assert!(parse_checkov("x", empty).is_err());
        let broken = CHECKOV_TF.replace("\"parsing_errors\": 0", "\"parsing_errors\": 1");
        assert!(parse_checkov("x", &broken).is_err());
    }

    #[test]
    fn an_inline_checkov_skip_fails() {
        let skipped = CHECKOV_TF.replace("\"skipped\": 0", "\"skipped\": 1");
        let mut i = inputs(policy(CI), policy(EXECUTION));
        i.checkov = parse_checkov("infrastructure", &skipped).unwrap();
        i.checkov
            .extend(parse_checkov("Dockerfile", CHECKOV_DOCKER).unwrap());
        let out = evaluate(&i, &suppressions());
        assert_eq!(out.failed(), 1, "{}", out.render());
        assert!(out.render().contains("#checkov:skip"));
    }

    #[test]
    fn the_rendered_policies_pass_with_one_verified_escalation() {
        let out = evaluate(&inputs(policy(CI), policy(EXECUTION)), &suppressions());
        let text = out.render();
        assert_eq!(out.failed(), 0, "{text}");
        assert_eq!(out.count("accepted"), 5, "{text}");
        assert_eq!(out.count("verified"), 1, "{text}");
        assert!(text.contains("verified not exploitable: (1) lambda:UpdateFunctionCode only on exact function ARNs: arn:aws:lambda:us-east-1:123456789012:function:prod-sse-streaming-lambda"), "{text}");
        assert!(text.contains("iam:PassRole only on arn:aws:iam::123456789012:role/prod-sse-streaming-exec to lambda.amazonaws.com"), "{text}");
        assert!(text.contains("(3) the execution policy allows only logs:CreateLogStream, logs:PutLogEvents on arn:aws:logs:us-east-1:123456789012:log-group:/aws/lambda/prod-sse-streaming-lambda:*"), "{text}");
    }

    #[test]
    fn a_wildcard_function_arn_fails_the_escalation_check() {
        let ci = ci_with(
            r#"{"Sid": "AnyFunction", "Effect": "Allow", "Action": "lambda:Update*", "Resource": "arn:aws:lambda:us-east-1:123456789012:function:prod-*"}"#,
        );
        let problems = verify_lambda_update(&ci, &policy(EXECUTION)).unwrap_err();
        assert!(
            problems[0].contains("`arn:aws:lambda:us-east-1:123456789012:function:prod-*`"),
            "{problems:?}"
        );
        let out = evaluate(&inputs(ci, policy(EXECUTION)), &suppressions());
        assert_eq!(out.failed(), 1, "{}", out.render());
        assert_eq!(out.count("verified"), 0);
    }

    #[test]
    fn lambda_star_on_star_fails_the_escalation_check() {
        let ci = ci_with(r#"{"Effect": "Allow", "Action": "*", "Resource": "*"}"#);
        let problems = verify_lambda_update(&ci, &policy(EXECUTION)).unwrap_err();
        assert!(
            problems.iter().any(|p| p.starts_with("(1)")),
            "{problems:?}"
        );
        assert!(
            problems.iter().any(|p| p.starts_with("(2)")),
            "{problems:?}"
        );
    }

    #[test]
    fn an_extra_execution_permission_fails_the_escalation_check() {
        let extra = r#"{"Version": "2012-10-17", "Statement": [
          {"Sid": "WriteOwnLogGroup", "Effect": "Allow", "Action": ["logs:PutLogEvents", "logs:CreateLogStream"], "Resource": "arn:aws:logs:us-east-1:123456789012:log-group:/aws/lambda/prod-sse-streaming-lambda:*"},
          {"Sid": "ReadState", "Effect": "Allow", "Action": "s3:GetObject", "Resource": "arn:aws:s3:::prod-sse-streaming-tfstate/*"}]}"#;
        let problems = verify_lambda_update(&policy(CI), &policy(extra)).unwrap_err();
        assert!(
            problems.iter().any(|p| p.contains("`s3:GetObject`")),
            "{problems:?}"
        );
        let out = evaluate(&inputs(policy(CI), policy(extra)), &suppressions());
        assert_eq!(out.failed(), 1, "{}", out.render());
    }

    #[test]
    fn another_log_group_in_the_execution_policy_fails() {
        let other = EXECUTION.replace("prod-sse-streaming-lambda", "other-function");
        let problems = verify_lambda_update(&policy(CI), &policy(&other)).unwrap_err();
        assert!(problems[0].starts_with("(3)"), "{problems:?}");
    }

    #[test]
    fn put_role_policy_in_the_ci_policy_fails_the_escalation_check() {
        let ci = ci_with(
            r#"{"Sid": "Oops", "Effect": "Allow", "Action": "iam:PutRolePolicy", "Resource": "arn:aws:iam::123456789012:role/prod-sse-streaming-exec"}"#,
        );
        let problems = verify_lambda_update(&ci, &policy(EXECUTION)).unwrap_err();
        assert_eq!(
            problems,
            ["(2) statement `Oops` of the CI policy allows IAM writes: iam:putrolepolicy"]
        );
        let out = evaluate(&inputs(ci, policy(EXECUTION)), &suppressions());
        assert_eq!(out.failed(), 1, "{}", out.render());
    }

    #[test]
    fn iam_wildcards_and_not_action_count_as_iam_writes() {
        for statement in [
            r#"{"Effect": "Allow", "Action": "iam:*", "Resource": "*"}"#,
            r#"{"Effect": "Allow", "Action": "iam:Attach*", "Resource": "*"}"#,
            r#"{"Effect": "Allow", "NotAction": "s3:*", "Resource": "arn:aws:iam::123456789012:role/x"}"#,
        ] {
            let problems = verify_lambda_update(&ci_with(statement), &policy(EXECUTION));
            assert!(
                problems.is_err_and(|p| p.iter().any(|p| p.starts_with("(2)"))),
                "{statement}"
            );
        }
    }

    #[test]
    fn pass_role_needs_an_exact_role_and_the_service_condition() {
        let unscoped = CI.replace(
            r#""Condition": {"StringEquals": {"iam:PassedToService": "lambda.amazonaws.com"}}"#,
            r#""Condition": {}"#,
        );
        let problems = verify_lambda_update(&policy(&unscoped), &policy(EXECUTION)).unwrap_err();
        assert!(problems[0].contains("iam:PassedToService"), "{problems:?}");
        let any_role = CI.replace(
            "\"arn:aws:iam::123456789012:role/prod-sse-streaming-exec\", \"Condition\"",
            "\"arn:aws:iam::123456789012:role/*\", \"Condition\"",
        );
        let problems = verify_lambda_update(&policy(&any_role), &policy(EXECUTION)).unwrap_err();
        assert!(problems[0].contains("role/*"), "{problems:?}");
    }

    #[test]
    fn other_escalations_fail_whatever_the_suppressions_say() {
        let mut i = inputs(policy(CI), policy(EXECUTION));
        i.parliament.push((
            PolicyName::Ci,
            parse_parliament(r#"{"issue": "PRIVILEGE_ESCALATION", "location": {"type": "PassExistingRoleToNewLambdaThenInvoke", "actions": ["iam:passrole", "lambda:createfunction", "lambda:invokefunction"]}}"#)
                .unwrap()
                .remove(0),
        ));
        let out = evaluate(&i, &suppressions());
        assert_eq!(out.failed(), 1, "{}", out.render());
        assert!(
            out.render()
                .contains("(PassExistingRoleToNewLambdaThenInvoke): PRIVILEGE_ESCALATION")
        );
    }

    #[test]
    fn unmatched_findings_and_stale_entries_fail() {
        let mut s = suppressions();
        // The resource differs: the finding is not accepted and the entry is stale.
        s.checkov[0].resources = vec!["aws_ecr_repository.other".into()];
        // A finding naming an action the entry does not list is not accepted either.
        s.parliament[1].actions.remove("lambda:addpermission");
        let out = evaluate(&inputs(policy(CI), policy(EXECUTION)), &s);
        let text = out.render();
        assert_eq!(out.failed(), 4, "{text}");
        assert!(text.contains("stale [[checkov]] entry on line 2"), "{text}");
        assert!(
            text.contains("stale [[parliament]] entry on line"),
            "{text}"
        );
    }

    #[test]
    fn hadolint_findings_fail() {
        let mut i = inputs(policy(CI), policy(EXECUTION));
        i.hadolint = parse_hadolint(r#"[{"code":"DL3008","column":1,"file":"Dockerfile","level":"warning","line":2,"message":"Pin versions in apt get install."}]"#).unwrap();
        let out = evaluate(&i, &suppressions());
        assert_eq!(out.failed(), 1);
        assert!(
            out.render().contains("hadolint    DL3008"),
            "{}",
            out.render()
        );
    }
}
