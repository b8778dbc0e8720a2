//! The external auditors' verdicts, kept pure: checkov, hadolint and parliament output parsed
//! into types, matched against `infrastructure/audit-suppressions.toml` (the only place a
//! finding is accepted), and the mechanical check that stands in for a suppression of
//! parliament's one unavoidable privilege-escalation finding. `ci.rs` runs the tools and
//! prints what this module decides.

mod parse;
mod policy;
pub mod run;

pub use parse::*;
pub use policy::*;

use std::collections::BTreeSet;
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
pub(crate) struct RawFile {
    #[serde(default)]
    checkov: Vec<Spanned<RawCheckov>>,
    #[serde(default)]
    parliament: Vec<Spanned<RawParliament>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawCheckov {
    id: String,
    roots: Vec<String>,
    resources: Vec<String>,
    reason: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawParliament {
    policy: String,
    issue: String,
    actions: Vec<String>,
    reason: String,
}

/// 1-based line of a byte offset.
pub(crate) fn line_of(text: &str, offset: usize) -> usize {
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
