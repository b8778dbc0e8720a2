use super::*;

/// The CI policy as the bootstrap root renders it for the auditors (prod settings,
/// allow_public_function_url = true, two functions, a promotion source, emulator account
/// and region), trimmed to the statements the checks read.
const CI: &str = r#"{"Version": "2012-10-17", "Statement": [
  {"Sid": "EcrLogin", "Effect": "Allow", "Action": "ecr:GetAuthorizationToken", "Resource": "*"},
  {"Sid": "EcrRepositoryPolicy", "Effect": "Allow", "Action": ["ecr:SetRepositoryPolicy", "ecr:GetRepositoryPolicy", "ecr:DeleteRepositoryPolicy"], "Resource": ["arn:aws:ecr:us-east-1:123456789012:repository/prod-sse-streaming-lambda", "arn:aws:ecr:us-east-1:123456789012:repository/prod-audit-second-lambda"]},
  {"Sid": "PromotionSourceRead", "Effect": "Allow", "Action": ["ecr:GetDownloadUrlForLayer", "ecr:DescribeImages", "ecr:BatchGetImage"], "Resource": ["arn:aws:ecr:us-east-1:111111111111:repository/preprod-sse-streaming-lambda", "arn:aws:ecr:us-east-1:111111111111:repository/preprod-audit-second-lambda"]},
  {"Sid": "LambdaFunction", "Effect": "Allow", "Action": ["lambda:UpdateFunctionConfiguration", "lambda:UpdateFunctionCode", "lambda:GetFunction", "lambda:CreateFunction"], "Resource": ["arn:aws:lambda:us-east-1:123456789012:function:prod-sse-streaming-lambda", "arn:aws:lambda:us-east-1:123456789012:function:prod-audit-second-lambda"]},
  {"Sid": "LambdaPublicUrlPermission", "Effect": "Allow", "Action": ["lambda:RemovePermission", "lambda:GetPolicy", "lambda:AddPermission"], "Resource": ["arn:aws:lambda:us-east-1:123456789012:function:prod-sse-streaming-lambda", "arn:aws:lambda:us-east-1:123456789012:function:prod-audit-second-lambda"]},
  {"Sid": "PassExecutionRoleToLambda", "Effect": "Allow", "Action": "iam:PassRole", "Resource": ["arn:aws:iam::123456789012:role/prod-sse-streaming-exec", "arn:aws:iam::123456789012:role/prod-audit-second-exec"], "Condition": {"StringEquals": {"iam:PassedToService": "lambda.amazonaws.com"}}},
  {"Sid": "ReadExecutionRole", "Effect": "Allow", "Action": "iam:GetRole", "Resource": ["arn:aws:iam::123456789012:role/prod-sse-streaming-exec", "arn:aws:iam::123456789012:role/prod-audit-second-exec"]},
  {"Sid": "LogGroupRead", "Effect": "Allow", "Action": "logs:DescribeLogGroups", "Resource": "arn:aws:logs:us-east-1:123456789012:log-group:*"},
  {"Sid": "StateObject", "Effect": "Allow", "Action": ["s3:PutObject", "s3:GetObject"], "Resource": "arn:aws:s3:::prod-sse-streaming-tfstate/prod/sse-streaming.tfstate"}
]}"#;

/// One function's execution policy as rendered (`name` is the function's name stem).
fn execution_json(name: &str) -> String {
    format!(
        r#"{{"Version": "2012-10-17", "Statement": [{{"Sid": "WriteOwnLogGroup", "Effect": "Allow", "Action": ["logs:PutLogEvents", "logs:CreateLogStream"], "Resource": "arn:aws:logs:us-east-1:123456789012:log-group:/aws/lambda/prod-{name}-lambda:*"}}]}}"#
    )
}

/// parliament's output for the rendered CI policy, verbatim.
const PARLIAMENT_CI: &str = r#"{"issue": "CREDENTIALS_EXPOSURE", "title": "Credentials exposure", "severity": "MEDIUM", "description": "Policy grants access to API calls that can return credentials to the user", "detail": "", "location": {"actions": ["ecr:getauthorizationtoken"], "filepath": "<stdin>"}}
{"issue": "PERMISSIONS_MANAGEMENT_ACTIONS", "title": "Permissions management actions", "severity": "MEDIUM", "description": "Allows the principal to modify IAM, RAM, identity-based policies, or resource based policies.", "detail": "", "location": {"actions": ["lambda:addpermission", "ecr:setrepositorypolicy", "lambda:removepermission", "iam:passrole"], "filepath": "<stdin>"}}
{"issue": "PRIVILEGE_ESCALATION", "title": "Privilege escalation", "severity": "HIGH", "description": "Actions contain a combination of Privilege Escalation actions established by Rhino Security Labs", "detail": "", "location": {"type": "EditExistingLambdaFunctionWithRole", "actions": ["lambda:updatefunctioncode"], "filepath": "<stdin>"}}
{"issue": "RESOURCE_MISMATCH", "title": "No resources match for the given action", "severity": "MEDIUM", "description": "", "detail": [{"action": "logs:DescribeLogGroups", "required_format": "*"}], "location": {"line": 163, "column": 5, "filepath": "<stdin>"}}
"#;

const SUPPRESSIONS: &str = r#"# header
[[parliament]]
policy = "ci"
issue = "CREDENTIALS_EXPOSURE"
actions = ["ecr:getauthorizationtoken"]
reason = "docker login"

[[parliament]]
policy = "ci"
issue = "PERMISSIONS_MANAGEMENT_ACTIONS"
actions = ["iam:PassRole", "ecr:SetRepositoryPolicy", "lambda:addpermission", "lambda:removepermission"]
reason = "scoped"

[[parliament]]
policy = "ci"
issue = "RESOURCE_MISMATCH"
actions = ["logs:describeloggroups"]
reason = "parliament's table"
"#;

/// checkov's report shape (`--compact --quiet --output json`), trimmed to the fields read:
/// what is left after its config file skipped the accepted checks.
const CHECKOV_TF: &str = r#"{"check_type": "terraform", "results": {"failed_checks": []}, "summary": {"passed": 101, "failed": 0, "skipped": 0, "parsing_errors": 0, "resource_count": 19, "checkov_version": "3.3.30"}}"#;

const CHECKOV_DOCKER: &str = r#"{"check_type": "dockerfile", "results": {"failed_checks": []}, "summary": {"passed": 83, "failed": 0, "skipped": 0, "parsing_errors": 0, "resource_count": 1, "checkov_version": "3.3.30"}}"#;

/// A finding its config does not skip (a bucket added to the application root).
const CHECKOV_TF_FAILED: &str = r#"{"check_type": "terraform", "results": {"failed_checks": [
  {"check_id": "CKV_AWS_18", "check_name": "Ensure the S3 bucket has access logging enabled", "resource": "aws_s3_bucket.x", "file_path": "/terraform/x.tf", "repo_file_path": "/terraform/x.tf", "file_line_range": [1, 3]}
]}, "summary": {"passed": 101, "failed": 1, "skipped": 0, "parsing_errors": 0, "resource_count": 20, "checkov_version": "3.3.30"}}"#;

fn policy(text: &str) -> Policy {
    Policy::try_from(text.to_string()).unwrap()
}

/// The CI policy with one statement's JSON appended.
fn ci_with(statement: &str) -> Policy {
    let at = CI.rfind(']').unwrap();
    policy(&format!("{},{statement}{}", &CI[..at], &CI[at..]))
}

fn role(stem: &str, policy_json: &str) -> ExecutionRole {
    ExecutionRole {
        function_arn: format!("arn:aws:lambda:us-east-1:123456789012:function:prod-{stem}-lambda"),
        role_arn: format!("arn:aws:iam::123456789012:role/prod-{stem}-exec"),
        policy: policy(policy_json),
    }
}

/// Both functions' execution roles as rendered, by function key.
fn roles() -> Roles {
    ["sse-streaming", "audit-second"]
        .map(|key| (key.to_string(), role(key, &execution_json(key))))
        .into()
}

/// parliament's findings on the rendered CI policy.
fn ci_findings() -> Vec<Finding> {
    parliament("ci", PARLIAMENT_CI).unwrap()
}

/// The rows of the rendered policies' parliament findings.
fn evaluated(ci: &Policy, roles: &Roles) -> Vec<Row> {
    evaluate(&ci_findings(), &suppressions(), ci, roles)
}

fn suppressions() -> Vec<Entry> {
    super::suppressions("s.toml", SUPPRESSIONS).unwrap()
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
    assert_eq!(s.len(), 3);
    // The line of the entry's `[[parliament]]` header.
    assert_eq!(s[0].line, 2, "{:?}", s[0]);
    assert_eq!(s[0].policy, "ci");
    // Lowercased.
    assert!(s[1].actions.contains("iam:passrole"));
}

#[test]
fn the_projects_suppression_file_parses() {
    let path = crate::paths::root().join(crate::paths::AUDIT_SUPPRESSIONS);
    let text = std::fs::read_to_string(&path).unwrap();
    let s = super::suppressions(crate::paths::AUDIT_SUPPRESSIONS, &text).unwrap();
    assert!(!s.is_empty());
    assert!(
        !s.iter()
            .any(|e| e.issue.eq_ignore_ascii_case(PRIVILEGE_ESCALATION))
    );
}

/// checkov's config has no field for a reason, so each entry carries it as the comment
/// right above it; an entry without one fails here.
#[test]
fn every_checkov_skip_has_its_reason_above_it() {
    let text = std::fs::read_to_string(crate::paths::root().join(CHECKOV_CONFIG)).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    let entries: Vec<usize> = (0..lines.len())
        .filter(|&i| lines[i].trim_start().starts_with("- "))
        .collect();
    assert!(entries.len() >= 10, "{CHECKOV_CONFIG}: {entries:?}");
    for i in entries {
        assert!(
            i > 0 && lines[i - 1].trim_start().starts_with('#'),
            "{CHECKOV_CONFIG}:{}: `{}` needs its reason as a comment right above it",
            i + 1,
            lines[i].trim()
        );
    }
    assert!(text.contains("\nskip-check:\n"), "{CHECKOV_CONFIG}");
}

#[test]
fn a_privilege_escalation_entry_is_refused() {
    let text = "[[parliament]]\npolicy = \"ci\"\nissue = \"PRIVILEGE_ESCALATION\"\n\
                actions = [\"lambda:updatefunctioncode\"]\nreason = \"needed\"\n";
    let err = super::suppressions("s.toml", text).unwrap_err().to_string();
    assert!(err.contains("s.toml:1:"), "{err}");
    assert!(err.contains("never suppressible"), "{err}");
}

#[test]
fn unknown_keys_policies_and_checkov_entries_are_refused() {
    let typo =
        "[[parliament]]\npolicy = \"ci\"\nissues = \"X\"\nactions = [\"a:b\"]\nreason = \"r\"\n";
    assert!(super::suppressions("s.toml", typo).is_err());
    let policy =
        "[[parliament]]\npolicy = \"deploy\"\nissue = \"X\"\nactions = [\"a:b\"]\nreason = \"r\"\n";
    let err = super::suppressions("s.toml", policy)
        .unwrap_err()
        .to_string();
    assert!(err.contains("\"ci\" or \"execution\""), "{err}");
    let checkov = "[[checkov]]\nid = \"CKV_AWS_18\"\nroots = [\"bootstrap\"]\nresources = [\"r\"]\nreason = \"r\"\n";
    let err = super::suppressions("s.toml", checkov).unwrap_err();
    let err = format!("{err:#}");
    assert!(
        err.contains(CHECKOV_CONFIG) && err.contains("unknown field `checkov`"),
        "{err}"
    );
}

#[test]
fn checkov_findings_name_resource_and_file() {
    let f = checkov("x", CHECKOV_TF_FAILED).unwrap();
    assert_eq!((f[0].auditor, &*f[0].id), ("checkov", "CKV_AWS_18"));
    assert_eq!(f[0].resource, "aws_s3_bucket.x");
    assert_eq!(f[0].verdict, "FAILED");
    assert!(f[0].note.contains(" in terraform/x.tf: "), "{f:?}");
    // Clean scans are no rows.
    assert_eq!(checkov("x", CHECKOV_TF).unwrap(), []);
    assert_eq!(checkov("Dockerfile", CHECKOV_DOCKER).unwrap(), []);
    let docker = r#"{"check_type": "dockerfile", "results": {"failed_checks": [
      {"check_id": "CKV_DOCKER_2", "check_name": "HEALTHCHECK", "resource": "src/lambdas/sse_streaming/Dockerfile.", "repo_file_path": "/src/lambdas/sse_streaming/Dockerfile"}
    ]}, "summary": {"passed": 49, "failed": 1, "skipped": 0, "parsing_errors": 0, "resource_count": 1}}"#;
    let d = checkov("x", docker).unwrap();
    assert_eq!(d[0].resource, "src/lambdas/sse_streaming/Dockerfile");
    // A list (several frameworks) parses too.
    let both = format!("[{CHECKOV_TF_FAILED}, {docker}]");
    assert_eq!(checkov("x", &both).unwrap().len(), 2);
}

#[test]
fn checkov_that_saw_nothing_or_could_not_parse_is_an_error() {
    let empty = r#"{"passed": 0, "failed": 0, "skipped": 0, "parsing_errors": 0, "resource_count": 0, "checkov_version": "3.3.30"}"#;
    assert!(checkov("x", empty).is_err());
    let broken = CHECKOV_TF.replace("\"parsing_errors\": 0", "\"parsing_errors\": 1");
    assert!(checkov("x", &broken).is_err());
}

#[test]
fn an_inline_checkov_skip_fails() {
    let skipped = CHECKOV_TF.replace("\"skipped\": 0", "\"skipped\": 1");
    let mut rows = checkov("infrastructure", &skipped).unwrap();
    rows.extend(evaluated(&policy(CI), &roles()));
    let text = render(&rows);
    assert_eq!(count(&rows, "FAILED"), 1, "{text}");
    assert!(text.contains("#checkov:skip"), "{text}");
}

#[test]
fn a_checkov_finding_its_config_does_not_skip_fails() {
    let mut rows = checkov("infrastructure", CHECKOV_TF_FAILED).unwrap();
    rows.extend(evaluated(&policy(CI), &roles()));
    let text = render(&rows);
    assert_eq!(count(&rows, "FAILED"), 1, "{text}");
    assert!(
        text.contains(
            "CKV_AWS_18 `Ensure the S3 bucket has access logging enabled` in terraform/x.tf"
        ),
        "{text}"
    );
    assert!(
        text.contains("infrastructure/checkov.yaml (`CKV_AWS_18:<path regex>`)"),
        "{text}"
    );
}

#[test]
fn the_rendered_policies_pass_with_one_verified_escalation() {
    let rows = evaluated(&policy(CI), &roles());
    let text = render(&rows);
    assert_eq!(count(&rows, "FAILED"), 0, "{text}");
    assert_eq!(count(&rows, "accepted"), 3, "{text}");
    assert_eq!(count(&rows, "verified"), 1, "{text}");
    assert!(
        text.ends_with("\n4 rows: 3 accepted, 1 verified, 0 FAILED\n"),
        "{text}"
    );
    assert!(text.contains("verified not exploitable: (1) lambda:UpdateFunctionCode only on exact function ARNs: arn:aws:lambda:us-east-1:123456789012:function:prod-audit-second-lambda, arn:aws:lambda:us-east-1:123456789012:function:prod-sse-streaming-lambda;"), "{text}");
    assert!(text.contains("iam:PassRole only on arn:aws:iam::123456789012:role/prod-audit-second-exec, arn:aws:iam::123456789012:role/prod-sse-streaming-exec to lambda.amazonaws.com"), "{text}");
    assert!(text.contains("(3) each execution policy allows only logs:CreateLogStream, logs:PutLogEvents on its own function's log group: audit-second -> arn:aws:logs:us-east-1:123456789012:log-group:/aws/lambda/prod-audit-second-lambda:*, sse-streaming -> arn:aws:logs:us-east-1:123456789012:log-group:/aws/lambda/prod-sse-streaming-lambda:*"), "{text}");
}

#[test]
fn a_wildcard_function_arn_fails_the_escalation_check() {
    let ci = ci_with(
        r#"{"Sid": "AnyFunction", "Effect": "Allow", "Action": "lambda:Update*", "Resource": "arn:aws:lambda:us-east-1:123456789012:function:prod-*"}"#,
    );
    let problems = verify_lambda_update(&ci, &roles()).unwrap_err();
    assert!(
        problems[0].contains("`arn:aws:lambda:us-east-1:123456789012:function:prod-*`"),
        "{problems:?}"
    );
    let rows = evaluated(&ci, &roles());
    assert_eq!(count(&rows, "FAILED"), 1, "{}", render(&rows));
    assert_eq!(count(&rows, "verified"), 0);
}

#[test]
fn update_function_code_on_a_function_without_an_audited_role_fails() {
    let ci = ci_with(
        r#"{"Sid": "Other", "Effect": "Allow", "Action": "lambda:UpdateFunctionCode", "Resource": "arn:aws:lambda:us-east-1:123456789012:function:admin-tool"}"#,
    );
    let problems = verify_lambda_update(&ci, &roles()).unwrap_err();
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert!(
        problems[0].starts_with("(1) statement `Other`")
            && problems[0].contains("not one of the account layer's functions"),
        "{problems:?}"
    );
    // A version or alias of an audited function is that function.
    let qualified = ci_with(
        r#"{"Sid": "Live", "Effect": "Allow", "Action": "lambda:UpdateFunctionCode", "Resource": "arn:aws:lambda:us-east-1:123456789012:function:prod-sse-streaming-lambda:live"}"#,
    );
    assert!(verify_lambda_update(&qualified, &roles()).is_ok());
}

#[test]
fn lambda_star_on_star_fails_the_escalation_check() {
    let ci = ci_with(r#"{"Effect": "Allow", "Action": "*", "Resource": "*"}"#);
    let problems = verify_lambda_update(&ci, &roles()).unwrap_err();
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
    let mut r = roles();
    r.insert("sse-streaming".into(), role("sse-streaming", extra));
    let problems = verify_lambda_update(&policy(CI), &r).unwrap_err();
    assert!(
        problems
            .iter()
            .any(|p| p.contains("`sse-streaming`") && p.contains("`s3:GetObject`")),
        "{problems:?}"
    );
    let rows = evaluated(&policy(CI), &r);
    assert_eq!(count(&rows, "FAILED"), 1, "{}", render(&rows));
}

#[test]
fn another_log_group_in_the_execution_policy_fails() {
    let other =
        execution_json("sse-streaming").replace("prod-sse-streaming-lambda", "other-function");
    let mut r = roles();
    r.insert("sse-streaming".into(), role("sse-streaming", &other));
    let problems = verify_lambda_update(&policy(CI), &r).unwrap_err();
    assert!(problems[0].starts_with("(3)"), "{problems:?}");
}

#[test]
fn an_execution_policy_writing_another_functions_log_group_fails() {
    // The second function's role may write the first one's log group: each role gets
    // its own function's group only, even among the audited functions.
    let mut r = roles();
    r.insert(
        "audit-second".into(),
        role("audit-second", &execution_json("sse-streaming")),
    );
    let problems = verify_lambda_update(&policy(CI), &r).unwrap_err();
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert!(
        problems[0].starts_with("(3) statement `WriteOwnLogGroup` of the execution policy of `audit-second` allows writing `arn:aws:logs:us-east-1:123456789012:log-group:/aws/lambda/prod-sse-streaming-lambda:*`, not the log group of its own function prod-audit-second-lambda"),
        "{problems:?}"
    );
}

#[test]
fn put_role_policy_in_the_ci_policy_fails_the_escalation_check() {
    let ci = ci_with(
        r#"{"Sid": "Oops", "Effect": "Allow", "Action": "iam:PutRolePolicy", "Resource": "arn:aws:iam::123456789012:role/prod-sse-streaming-exec"}"#,
    );
    let problems = verify_lambda_update(&ci, &roles()).unwrap_err();
    assert_eq!(
        problems,
        ["(2) statement `Oops` of the CI policy allows IAM writes: iam:putrolepolicy"]
    );
    let rows = evaluated(&ci, &roles());
    assert_eq!(count(&rows, "FAILED"), 1, "{}", render(&rows));
}

#[test]
fn iam_wildcards_and_not_action_count_as_iam_writes() {
    for statement in [
        r#"{"Effect": "Allow", "Action": "iam:*", "Resource": "*"}"#,
        r#"{"Effect": "Allow", "Action": "iam:Attach*", "Resource": "*"}"#,
        r#"{"Effect": "Allow", "NotAction": "s3:*", "Resource": "arn:aws:iam::123456789012:role/x"}"#,
    ] {
        let problems = verify_lambda_update(&ci_with(statement), &roles());
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
    let problems = verify_lambda_update(&policy(&unscoped), &roles()).unwrap_err();
    assert!(problems[0].contains("iam:PassedToService"), "{problems:?}");
    let any_role = CI.replace(
        "\"arn:aws:iam::123456789012:role/prod-audit-second-exec\"], \"Condition\"",
        "\"arn:aws:iam::123456789012:role/*\"], \"Condition\"",
    );
    let problems = verify_lambda_update(&policy(&any_role), &roles()).unwrap_err();
    assert!(problems[0].contains("role/*"), "{problems:?}");
}

#[test]
fn pass_role_of_a_role_without_an_audited_policy_fails() {
    let ci = ci_with(
        r#"{"Sid": "PassAdmin", "Effect": "Allow", "Action": "iam:PassRole", "Resource": "arn:aws:iam::123456789012:role/admin", "Condition": {"StringEquals": {"iam:PassedToService": "lambda.amazonaws.com"}}}"#,
    );
    let problems = verify_lambda_update(&ci, &roles()).unwrap_err();
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert!(
        problems[0].starts_with("(2) statement `PassAdmin` allows passing `arn:aws:iam::123456789012:role/admin`, which is not one of the functions' execution roles"),
        "{problems:?}"
    );
}

#[test]
fn not_resource_and_not_action_count_as_everything() {
    let not_resource = ci_with(
        r#"{"Sid": "AllButOne", "Effect": "Allow", "Action": "lambda:UpdateFunctionCode", "NotResource": "arn:aws:lambda:us-east-1:123456789012:function:prod-sse-streaming-lambda"}"#,
    );
    let problems = verify_lambda_update(&not_resource, &roles()).unwrap_err();
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert!(
        problems[0]
            .starts_with("(1) statement `AllButOne` allows lambda:UpdateFunctionCode on `*`"),
        "{problems:?}"
    );
    let not_action = r#"{"Version": "2012-10-17", "Statement": [{"Sid": "AllButLogs", "Effect": "Allow", "NotAction": "logs:DeleteLogGroup", "Resource": "arn:aws:logs:us-east-1:123456789012:log-group:/aws/lambda/prod-sse-streaming-lambda:*"}]}"#;
    let mut r = roles();
    r.insert("sse-streaming".into(), role("sse-streaming", not_action));
    let problems = verify_lambda_update(&policy(CI), &r).unwrap_err();
    assert_eq!(
        problems,
        [
            "(3) statement `AllButLogs` of the execution policy of `sse-streaming` allows `*`; only logs:CreateLogStream and logs:PutLogEvents are expected"
        ]
    );
}

#[test]
fn an_empty_resource_list_counts_as_everything() {
    let ci = ci_with(
        r#"{"Sid": "Empty", "Effect": "Allow", "Action": "lambda:UpdateFunctionCode", "Resource": []}"#,
    );
    let problems = verify_lambda_update(&ci, &roles()).unwrap_err();
    assert!(
        problems[0].starts_with("(1) statement `Empty` allows lambda:UpdateFunctionCode on `*`"),
        "{problems:?}"
    );
}

#[test]
fn a_wildcard_function_arn_in_the_roles_audits_nothing() {
    // Were `prod-*` taken as an audited function, CI could update any function matching it.
    let wildcard = "arn:aws:lambda:us-east-1:123456789012:function:prod-*";
    let mut r = roles();
    r.get_mut("sse-streaming").unwrap().function_arn = wildcard.into();
    let ci = ci_with(&format!(
        r#"{{"Sid": "Any", "Effect": "Allow", "Action": "lambda:UpdateFunctionCode", "Resource": "{wildcard}"}}"#
    ));
    let problems = verify_lambda_update(&ci, &r).unwrap_err();
    assert!(
        problems
            .iter()
            .any(|p| p.starts_with("(1) statement `Any`")),
        "{problems:?}"
    );
    assert!(
        problems.contains(&format!(
            "(3) execution role of `sse-streaming`: `{wildcard}` is not an exact function ARN"
        )),
        "{problems:?}"
    );
}

#[test]
fn a_ci_policy_without_update_function_code_fails_the_check() {
    let ci = policy(&CI.replace("\"lambda:UpdateFunctionCode\", ", ""));
    let problems = verify_lambda_update(&ci, &roles()).unwrap_err();
    assert_eq!(
        problems,
        ["(1) no statement of the CI policy allows lambda:UpdateFunctionCode"]
    );
}

#[test]
fn pass_role_to_a_service_other_than_lambda_fails() {
    let ci = policy(&CI.replace(
        r#""iam:PassedToService": "lambda.amazonaws.com""#,
        r#""iam:PassedToService": ["lambda.amazonaws.com", "ec2.amazonaws.com"]"#,
    ));
    let problems = verify_lambda_update(&ci, &roles()).unwrap_err();
    assert_eq!(
        problems,
        [
            "(2) statement `PassExecutionRoleToLambda` allows iam:PassRole to lambda.amazonaws.com, ec2.amazonaws.com; only lambda.amazonaws.com is expected"
        ]
    );
}

#[test]
fn other_escalations_fail_whatever_the_suppressions_say() {
    let mut findings = ci_findings();
    findings.extend(parliament("ci", r#"{"issue": "PRIVILEGE_ESCALATION", "location": {"type": "PassExistingRoleToNewLambdaThenInvoke", "actions": ["iam:passrole", "lambda:createfunction", "lambda:invokefunction"]}}"#).unwrap());
    let rows = evaluate(&findings, &suppressions(), &policy(CI), &roles());
    let text = render(&rows);
    assert_eq!(count(&rows, "FAILED"), 1, "{text}");
    assert!(
        text.contains("(PassExistingRoleToNewLambdaThenInvoke): PRIVILEGE_ESCALATION"),
        "{text}"
    );
}

#[test]
fn findings_of_an_execution_policy_need_an_execution_entry() {
    let mut findings = ci_findings();
    findings.extend(parliament("execution[audit-second]", r#"{"issue": "CREDENTIALS_EXPOSURE", "title": "Credentials exposure", "location": {"actions": ["ecr:getauthorizationtoken"]}}"#).unwrap());
    let rows = evaluate(&findings, &suppressions(), &policy(CI), &roles());
    let text = render(&rows);
    assert_eq!(count(&rows, "FAILED"), 1, "{text}");
    assert!(
        text.contains("in the execution[audit-second] policy: no [[parliament]] entry"),
        "{text}"
    );
}

#[test]
fn unmatched_findings_and_stale_entries_fail() {
    let mut s = suppressions();
    // A finding naming an action the entry does not list is not accepted, and the entry
    // then matches nothing.
    s[1].actions.remove("lambda:addpermission");
    let rows = evaluate(&ci_findings(), &s, &policy(CI), &roles());
    let text = render(&rows);
    assert_eq!(count(&rows, "FAILED"), 2, "{text}");
    assert!(
        text.contains("stale [[parliament]] entry on line 8 matches no finding"),
        "{text}"
    );
}

#[test]
fn hadolint_findings_fail() {
    let mut rows = hadolint(r#"[{"code":"DL3008","column":1,"file":"Dockerfile","level":"warning","line":2,"message":"Pin versions in apt get install."}]"#).unwrap();
    assert!(hadolint("[]").unwrap().is_empty());
    rows.extend(evaluated(&policy(CI), &roles()));
    let text = render(&rows);
    assert_eq!(count(&rows, "FAILED"), 1, "{text}");
    assert!(text.contains("hadolint    DL3008"), "{text}");
    assert!(
        text.contains("FAILED hadolint DL3008 Dockerfile:2: DL3008 Pin versions"),
        "{text}"
    );
}
