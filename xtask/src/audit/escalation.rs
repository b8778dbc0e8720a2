//! IAM policies as Terraform renders them, and the check standing in for parliament's
//! EditExistingLambdaFunctionWithRole, raised for lambda:UpdateFunctionCode on any resource.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Deserializer};
use serde_json::Value;

use super::{join, list};

/// A policy document: its text (what parliament reads) and its statements.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(try_from = "String")]
pub struct Policy {
    pub text: String,
    pub statements: Vec<Statement>,
}

impl TryFrom<String> for Policy {
    type Error = serde_json::Error;
    fn try_from(text: String) -> Result<Policy, serde_json::Error> {
        let mut document: Value = serde_json::from_str(&text)?;
        let statements = list(document["Statement"].take())?;
        Ok(Policy { text, statements })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub enum Effect {
    Allow,
    Deny,
}

fn some_list<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Vec<String>>, D::Error> {
    list(d).map(Some)
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Statement {
    pub sid: Option<String>,
    pub effect: Effect,
    #[serde(default, deserialize_with = "some_list")]
    pub action: Option<Vec<String>>,
    #[serde(default, deserialize_with = "some_list")]
    pub not_action: Option<Vec<String>>,
    #[serde(default, deserialize_with = "some_list")]
    pub resource: Option<Vec<String>>,
    #[serde(default, deserialize_with = "some_list")]
    pub not_resource: Option<Vec<String>>,
    /// operator → condition key → a value or a list of them.
    #[serde(default)]
    pub condition: BTreeMap<String, BTreeMap<String, Value>>,
}

impl Statement {
    fn name(&self) -> String {
        let sid = self.sid.as_ref().map(|sid| format!("statement `{sid}`"));
        sid.unwrap_or_else(|| "a statement without Sid".into())
    }

    /// Whether it allows this concrete action (resources and conditions aside).
    fn allows(&self, action: &str) -> bool {
        self.effect == Effect::Allow
            && match (&self.action, &self.not_action) {
                (Some(patterns), _) => patterns.iter().any(|p| glob(p, action)),
                (None, Some(patterns)) => !patterns.iter().any(|p| glob(p, action)),
                (None, None) => false,
            }
    }
}

/// Actions or resources as listed; a NotAction or NotResource (or none) counts as `*`.
fn listed<'a>(list: &'a Option<Vec<String>>, not: &Option<Vec<String>>) -> Vec<&'a str> {
    match (list, not) {
        (Some(list), None) if !list.is_empty() => list.iter().map(String::as_str).collect(),
        _ => vec!["*"],
    }
}

/// Every function's execution role by function key, as the bootstrap output `execution_roles`.
pub type Roles = BTreeMap<String, ExecutionRole>;

/// One function's execution role.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct ExecutionRole {
    pub function_arn: String,
    pub role_arn: String,
    #[serde(rename = "policy_json")]
    pub policy: Policy,
}

/// IAM's wildcard match (`*` any run, `?` one character), case-insensitive as actions are.
pub fn glob(pattern: &str, text: &str) -> bool {
    fn matches(p: &[u8], t: &[u8]) -> bool {
        match (p.split_first(), t.split_first()) {
            (Some((b'*', rest)), _) => matches(rest, t) || (!t.is_empty() && matches(p, &t[1..])),
            (Some((&pc, p)), Some((&tc, t))) => {
                (pc == b'?' || pc.eq_ignore_ascii_case(&tc)) && matches(p, t)
            }
            (p, t) => p.is_none() && t.is_none(),
        }
    }
    matches(pattern.as_bytes(), text.as_bytes())
}

/// IAM actions that change a role, a policy or who holds one (`iam:PutRolePolicy`, `iam:Put*`).
const IAM_WRITE_FAMILIES: &str = "Put* Attach* Detach* Update* Create* Delete*Policy* \
    Delete*PermissionsBoundary SetDefaultPolicyVersion AddUserToGroup AddRoleToInstanceProfile \
    Tag* Untag* PassRole";

/// Those by name (parliament's IAM table), for a wildcard or NotAction letting one through.
const IAM_WRITES: &str = "AddRoleToInstanceProfile AddUserToGroup AttachGroupPolicy \
    AttachRolePolicy AttachUserPolicy CreateAccessKey CreateGroup CreateInstanceProfile \
    CreateLoginProfile CreatePolicy CreatePolicyVersion CreateRole CreateServiceLinkedRole \
    CreateUser DeleteGroupPolicy DeletePolicy DeletePolicyVersion \
    DeleteRolePermissionsBoundary DeleteRolePolicy DeleteUserPermissionsBoundary \
    DeleteUserPolicy DetachGroupPolicy DetachRolePolicy DetachUserPolicy PassRole \
    PutGroupPolicy PutRolePermissionsBoundary PutRolePolicy PutUserPermissionsBoundary \
    PutUserPolicy SetDefaultPolicyVersion TagPolicy TagRole TagUser UntagPolicy UntagRole \
    UntagUser UpdateAccessKey UpdateAssumeRolePolicy UpdateLoginProfile UpdateRole \
    UpdateRoleDescription";

/// The IAM writes a statement allows, lowercase.
fn iam_writes(st: &Statement) -> BTreeSet<String> {
    let family = |p: &&String| {
        let mut families = IAM_WRITE_FAMILIES.split_whitespace();
        st.effect == Effect::Allow && families.any(|f| glob(&format!("iam:{f}"), p))
    };
    let patterns = st.action.iter().flatten().filter(family).cloned();
    let concrete = IAM_WRITES.split_whitespace().map(|a| format!("iam:{a}"));
    let writes = patterns.chain(concrete.filter(|a| st.allows(a)));
    writes.map(|a| a.to_ascii_lowercase()).collect()
}

pub const UPDATE_FUNCTION_CODE: &str = "lambda:UpdateFunctionCode";
/// What an execution role may do, exactly: write its function's log streams.
const EXECUTION_ACTIONS: &[&str] = &["logs:CreateLogStream", "logs:PutLogEvents"];
/// The service the execution roles may be passed to.
const LAMBDA_SERVICE: &str = "lambda.amazonaws.com";

/// The function an exact `arn:P:lambda:R:A:function:NAME[:QUALIFIER]` names, unqualified.
fn function(arn: &str) -> Option<String> {
    let f: Vec<&str> = arn.split(':').collect();
    let exact = !arn.contains(['*', '?']) && f.iter().all(|part| !part.is_empty());
    let lambda = f.len() >= 7 && (f[0], f[2], f[5]) == ("arn", "lambda", "function");
    (exact && lambda && f.len() <= 8).then(|| f[..7].join(":"))
}

/// The facts that make EditExistingLambdaFunctionWithRole unexploitable here (or every one that
/// does not hold): (1) CI updates the code of the audited functions only, (2) writes nothing in
/// IAM and passes only their roles, to Lambda, (3) each of which only writes its own logs.
pub fn verify_lambda_update(ci: &Policy, roles: &Roles) -> Result<[String; 3], Vec<String>> {
    let mut problems = Vec::new();
    macro_rules! problem {
        ($($why:tt)*) => { problems.push(format!($($why)*)) };
    }
    let arns = roles.values().map(|r| &r.function_arn);
    let audited: BTreeSet<String> = arns.flat_map(|arn| function(arn)).collect();
    let audited_roles: BTreeSet<&str> = roles.values().map(|r| r.role_arn.as_str()).collect();
    let update = UPDATE_FUNCTION_CODE;

    let mut functions = BTreeSet::new();
    let statements = ci.statements.iter();
    let granting: Vec<&Statement> = statements.filter(|st| st.allows(update)).collect();
    if granting.is_empty() {
        problem!("(1) no statement of the CI policy allows {update}");
    }
    for st in granting {
        for resource in listed(&st.resource, &st.not_resource) {
            match function(resource).filter(|arn| audited.contains(arn)) {
                Some(arn) => _ = functions.insert(arn),
                None => problem!(
                    "(1) {} allows {update} on `{resource}`, which is not one of the account \
                     layer's functions (output execution_roles) by its exact ARN, so its role is \
                     not audited",
                    st.name()
                ),
            }
        }
    }

    let mut passed = BTreeSet::new();
    for st in &ci.statements {
        let (name, writes) = (st.name(), iam_writes(st));
        if writes.is_empty() {
            continue;
        } else if writes != BTreeSet::from(["iam:passrole".to_string()]) {
            let writes = writes.into_iter().collect::<Vec<_>>().join(", ");
            problem!("(2) {name} of the CI policy allows IAM writes: {writes}");
            continue;
        }
        let conditions = st.condition.get("StringEquals").into_iter().flatten();
        let mut services: Vec<String> = (conditions)
            .filter(|(key, _)| key.eq_ignore_ascii_case("iam:PassedToService"))
            .flat_map(|(_, v)| v.as_array().cloned().unwrap_or_else(|| vec![v.clone()]))
            .map(|v| v.as_str().map_or_else(|| v.to_string(), str::to_string))
            .collect();
        if services.is_empty() {
            services.push("any service (no StringEquals iam:PassedToService)".into());
        }
        if services != [LAMBDA_SERVICE] {
            let to = services.join(", ");
            problem!("(2) {name} allows iam:PassRole to {to}; only {LAMBDA_SERVICE} is expected");
        }
        for arn in listed(&st.resource, &st.not_resource) {
            if arn.contains(['*', '?']) || !audited_roles.contains(arn) {
                problem!(
                    "(2) {name} allows passing `{arn}`, which is not one of the functions' \
                     execution roles (output execution_roles), so its policy is not audited"
                );
            }
            passed.insert(arn);
        }
    }

    let mut groups = Vec::new();
    for (key, role) in roles {
        let Some(function) = function(&role.function_arn) else {
            let arn = &role.function_arn;
            problem!("(3) execution role of `{key}`: `{arn}` is not an exact function ARN");
            continue;
        };
        let name = function.rsplit(':').next().unwrap_or_default();
        let log_group = function.replacen(":lambda:", ":logs:", 1);
        let log_group = log_group.replacen(":function:", ":log-group:/aws/lambda/", 1);
        let own = [log_group.clone(), format!("{log_group}:*")];
        let statements = role.policy.statements.iter();
        for st in statements.filter(|st| st.effect == Effect::Allow) {
            let at = format!("{} of the execution policy of `{key}`", st.name());
            let expected = |a: &str| EXECUTION_ACTIONS.iter().any(|e| e.eq_ignore_ascii_case(a));
            for action in listed(&st.action, &st.not_action) {
                if !expected(action) {
                    let only = EXECUTION_ACTIONS.join(" and ");
                    problem!("(3) {at} allows `{action}`; only {only} are expected");
                }
            }
            for resource in listed(&st.resource, &st.not_resource) {
                if own.iter().any(|own| own == resource) {
                    groups.push(format!("{key} -> {resource}"));
                } else {
                    problem!(
                        "(3) {at} allows writing `{resource}`, not the log group of its own \
                         function {name}"
                    );
                }
            }
        }
    }

    if !problems.is_empty() {
        return Err(problems);
    }
    let (functions, passed, groups) = (join(functions), join(passed), join(groups));
    let (allowed, lambda) = (EXECUTION_ACTIONS.join(", "), LAMBDA_SERVICE);
    let own = "on its own function's log group";
    Ok([
        format!("(1) {update} only on exact function ARNs: {functions}"),
        format!("(2) no IAM write in the CI policy; iam:PassRole only on {passed} to {lambda}"),
        format!("(3) each execution policy allows only {allowed} {own}: {groups}"),
    ])
}
