//! IAM policy documents as Terraform renders them, and the mechanical check that stands in
//! for a suppression of parliament's one unavoidable privilege-escalation finding.

use std::collections::{BTreeMap, BTreeSet};

use anyhow::{Context, Result};
use serde::Deserialize;

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
pub(crate) fn glob(pattern: &str, text: &str) -> bool {
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

pub(crate) fn has_wildcard(s: &str) -> bool {
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
pub(crate) const IAM_WRITE_FAMILIES: &[&str] = &[
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
pub(crate) const IAM_WRITES: &[&str] = &[
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

pub(crate) const UPDATE_FUNCTION_CODE: &str = "lambda:UpdateFunctionCode";

/// What the execution role may do, exactly: write its function's log streams.
pub(crate) const EXECUTION_ACTIONS: &[&str] = &["logs:CreateLogStream", "logs:PutLogEvents"];

/// An exact (wildcard-free) Lambda function ARN, `arn:P:lambda:R:A:function:NAME[:QUALIFIER]`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct FunctionArn {
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
pub(crate) fn exact_role_arn(arn: &str) -> bool {
    let parts: Vec<&str> = arn.split(':').collect();
    !has_wildcard(arn)
        && matches!(parts.as_slice(),
            ["arn", partition, "iam", "", account, role]
                if !partition.is_empty() && !account.is_empty()
                    && role.strip_prefix("role/").is_some_and(|name| !name.is_empty()))
}

/// `iam:PassRole` with exact role ARNs and a `StringEquals` `iam:PassedToService` condition
/// naming exact services: the passed role's ARNs and the services, or why not.
pub(crate) fn pass_role_scope(st: &Statement) -> Result<(Vec<String>, Vec<String>), String> {
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
pub(crate) fn iam_writes(st: &Statement) -> BTreeSet<String> {
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
