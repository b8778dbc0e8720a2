use super::parse::valid_region;
use super::*;

const FILE: &str = include_str!("../../../infrastructure/environments.toml");

fn parse(text: &str) -> Result<Settings> {
    Settings::parse(Path::new("environments.toml"), text)
}

fn err(text: &str) -> String {
    format!("{:#}", parse(text).unwrap_err())
}

const MINIMAL: &str = r#"project = "demo"
[functions.web]
build_context = "src/lambdas/sse_streaming"
dockerfile = "src/lambdas/sse_streaming/Dockerfile"
invoke_mode = "RESPONSE_STREAM"
[defaults]
region = "eu-west-1"
[defaults.bootstrap]
dir = "infrastructure/bootstrap"
[defaults.terraform]
dir = "infrastructure/terraform"
lock_timeout = "5m"
[defaults.terraform.backend]
bucket = "{env}-state"
[environments.prod]
account_id = "222222222222"
"#;

/// The line of the first occurrence of `needle` in `text`, 1-based.
fn line_of(text: &str, needle: &str) -> usize {
    text[..text.find(needle).unwrap()].matches('\n').count() + 1
}

#[test]
fn the_real_file_parses_and_merges_function_values_per_environment() {
    let settings = parse(FILE).unwrap();
    assert_eq!(
        settings.environments.keys().collect::<Vec<_>>(),
        ["local", "local-prod", "preprod", "prod"]
    );
    let prod = settings.environment("prod").unwrap();
    assert!(prod.protected);
    assert_eq!(prod.project, "sse-streaming");
    assert_eq!(prod.promote_from.as_deref(), Some("preprod"));
    let names: Vec<&str> = prod.functions.iter().map(|f| f.name.as_str()).collect();
    assert_eq!(names, ["sse-streaming", "status"]);
    let sse = &prod.functions[0];
    assert_eq!(sse.repository, "prod-sse-streaming-lambda");
    assert_eq!(sse.function_name, "prod-sse-streaming-lambda");
    assert_eq!(sse.execution_role, "prod-sse-streaming-exec");
    assert_eq!(
        sse.memory_size, 1024,
        "prod overrides the function's memory"
    );
    assert_eq!(sse.invoke_mode, InvokeMode::ResponseStream);
    let status = &prod.functions[1];
    assert_eq!(
        status.repository, "prod-status",
        "the default is {{env}}-{{function}}"
    );
    assert_eq!(status.execution_role, "prod-status-exec");
    assert_eq!(status.invoke_mode, InvokeMode::Buffered);
    assert_eq!(
        status.smoke.as_ref().unwrap().expect,
        Expect::Json([("status".to_string(), "ok".to_string())].into())
    );
    let preprod = settings.environment("preprod").unwrap();
    assert_eq!(preprod.functions[0].memory_size, 512);
    assert_eq!(
        preprod.readers,
        ["arn:aws:iam::222222222222:role/prod-sse-streaming-deploy"],
        "prod promotes from preprod, so prod's deploy role may read preprod's images"
    );
    let local = settings.environment("local").unwrap();
    assert_eq!(local.registry(), "127.0.0.1:5050");
    assert_eq!(
        local.functions[1].build_args["PYTHON_IMAGE"], "python:3.13-slim",
        "the environment's build args reach every function"
    );
}

#[test]
fn unknown_environments_and_functions_list_the_valid_ones() {
    let settings = parse(FILE).unwrap();
    let e = format!("{:#}", settings.environment("staging").unwrap_err());
    assert!(
        e.contains("unknown environment `staging`")
            && e.contains("local, local-prod, preprod, prod"),
        "{e}"
    );
    let prod = settings.environment("prod").unwrap();
    let e = format!("{:#}", prod.select(&["nope".into()]).unwrap_err());
    assert!(
        e.contains("unknown function `nope`") && e.contains("sse-streaming, status"),
        "{e}"
    );
    let text = FILE.replace(
        "[environments.prod.function.sse-streaming]",
        "[environments.prod.function.sse]",
    );
    let e = err(&text);
    let line = line_of(&text, "[environments.prod.function.sse]");
    assert!(
        e.contains(&format!("environments.toml:{line}:")) && e.contains("unknown function `sse`"),
        "{e}"
    );
    let text = MINIMAL.to_string() + "functions = [\"web\", \"api\"]\n";
    let e = err(&text);
    assert!(
        e.contains(":17:21") && e.contains("unknown function `api`"),
        "{e}"
    );
}

#[test]
fn an_environment_can_leave_a_function_out() {
    let text = FILE.replace(
        "region = \"eu-west-1\"\nprotected = true",
        "region = \"eu-west-1\"\nprotected = true\nfunctions = [\"sse-streaming\"]",
    );
    let settings = parse(&text).unwrap();
    let names: Vec<&str> = settings.environments["prod"]
        .functions
        .iter()
        .map(|f| f.name.as_str())
        .collect();
    assert_eq!(names, ["sse-streaming"]);
    assert_eq!(settings.environments["preprod"].functions.len(), 2);
}

#[test]
fn tables_merge_key_by_key_but_smoke_and_stream_tables_replace() {
    let text = MINIMAL.to_string()
        + "[functions.web.smoke]\npath = \"/status\"\nexpect = \"json\"\nfields = { a = \"b\" }\n\
           [functions.web.environment]\nA1 = \"{env}-x\"\nB1 = \"b\"\n\
           [defaults.function.web]\nmemory_size = 1024\n\
           [environments.prod.function.web]\ntimeout = 30\n\
           [environments.prod.function.web.environment]\nB1 = \"c\"\n\
           [environments.prod.function.web.smoke]\npath = \"/stream\"\nexpect = \"sse\"\n";
    let settings = parse(&text).unwrap();
    let web = &settings.environments["prod"].functions[0];
    assert_eq!(
        (web.memory_size, web.timeout),
        (1024, 30),
        "[defaults.function.NAME] applies"
    );
    assert_eq!(web.environment["A1"], "prod-x");
    assert_eq!(web.environment["B1"], "c", "the environment's value wins");
    let smoke = web.smoke.as_ref().unwrap();
    assert_eq!(
        (smoke.path.as_str(), &smoke.expect),
        ("/stream", &Expect::Sse),
        "no `fields` left"
    );
}

#[test]
fn two_functions_cannot_share_a_repository() {
    let text = FILE.replace(
        "invoke_mode = \"BUFFERED\"\n",
        "invoke_mode = \"BUFFERED\"\nrepository = \"{env}-sse-streaming-lambda\"\n",
    );
    let e = err(&text);
    let line = line_of(
        &text,
        "repository = \"{env}-sse-streaming-lambda\"\ndescription = \"Status",
    );
    assert!(
        e.contains(&format!(":{line}:"))
            && e.contains("both use repository `local-sse-streaming-lambda`"),
        "{e}"
    );
}

#[test]
fn a_missing_dockerfile_and_a_contradicting_invoke_mode_are_refused_with_their_lines() {
    let text = MINIMAL.replace("sse_streaming/Dockerfile", "nope/Dockerfile");
    let e = err(&text);
    assert!(
        e.contains(":4:14") && e.contains("`src/lambdas/nope/Dockerfile` cannot be read"),
        "{e}"
    );
    let text = MINIMAL.replace("\"RESPONSE_STREAM\"", "\"BUFFERED\"");
    let e = err(&text);
    let dockerfile =
        std::fs::read_to_string(crate::paths::root().join("src/lambdas/sse_streaming/Dockerfile"))
            .unwrap();
    let declared = line_of(&dockerfile, "AWS_LWA_INVOKE_MODE=");
    assert!(
        e.contains(":5:15")
            && e.contains(&format!(
                "contradicts src/lambdas/sse_streaming/Dockerfile:{declared}"
            ))
            && e.contains("AWS_LWA_INVOKE_MODE=RESPONSE_STREAM"),
        "{e}"
    );
}

#[test]
fn streaming_functions_refuse_compression() {
    let text = MINIMAL.to_string()
        + "[functions.web.environment]\nAWS_LWA_ENABLE_COMPRESSION = \"true\"\n";
    let e = err(&text);
    assert!(
        e.contains(":18:1") && e.contains("batches a stream's events"),
        "{e}"
    );
}

#[test]
fn reserved_variables_and_bad_values_are_refused() {
    let e = err(&(MINIMAL.to_string()
        + "[functions.web.environment]\nAWS_LWA_INVOKE_MODE = \"buffered\"\n"));
    assert!(e.contains("derived by xtask from invoke_mode"), "{e}");
    let e = err(&MINIMAL.replace(
        "invoke_mode = \"RESPONSE_STREAM\"",
        "invoke_mode = \"RESPONSE_STREAM\"\nmemory_size = 64",
    ));
    assert!(e.contains(":6:15") && e.contains("128 to 10240 MB"), "{e}");
    let e = err(&MINIMAL.replace(
        "invoke_mode = \"RESPONSE_STREAM\"",
        "invoke_mode = \"STREAM\"",
    ));
    assert!(e.contains("use RESPONSE_STREAM or BUFFERED"), "{e}");
}

#[test]
fn terraform_vars_moved_to_the_functions() {
    let e = err(&(MINIMAL.to_string() + "[environments.prod.terraform.vars]\nmemory_size = 512\n"));
    assert!(
        e.contains("moved to") && e.contains("[environments.ENV.function.NAME]"),
        "{e}"
    );
}

#[test]
fn promotion_needs_an_environment_of_the_same_region() {
    let text = MINIMAL.to_string() + "promote_from = \"nope\"\n";
    assert!(err(&text).contains("`nope` is not an environment"));
    let two = MINIMAL.to_string()
        + "[environments.dev]\naccount_id = \"111111111111\"\nregion = \"us-east-1\"\n"
        + "[environments.prod.function.web]\n";
    let text = two.replace(
        "account_id = \"222222222222\"",
        "account_id = \"222222222222\"\npromote_from = \"dev\"",
    );
    let e = err(&text);
    assert!(
        e.contains("ECR replication") && e.contains("us-east-1"),
        "{e}"
    );
    let ok = text.replace("region = \"us-east-1\"", "region = \"eu-west-1\"");
    let settings = parse(&ok).unwrap();
    assert_eq!(
        settings.environments["dev"].readers,
        ["arn:aws:iam::222222222222:role/prod-demo-deploy"]
    );
}

#[test]
fn unknown_keys_are_errors_with_position() {
    let e = err(&MINIMAL.replace(
        "account_id = \"222222222222\"",
        "account_id = \"222222222222\"\nregoin = \"x\"",
    ));
    assert!(e.contains("environments.toml:17:1"), "{e}");
    assert!(e.contains("unknown field `regoin`"), "{e}");
}

#[test]
fn account_ids_are_twelve_digits() {
    for bad in ["22222222222", "2222222222222", "22222222222a"] {
        let e = err(&MINIMAL.replace("222222222222", bad));
        assert!(e.contains("environments.toml:16:14"), "{e}");
        assert!(
            e.contains("`account_id`") && e.contains("exactly 12 digits"),
            "{e}"
        );
    }
}

#[test]
fn regions_must_look_like_regions() {
    for bad in [
        "eu-west",
        "europe-west-1",
        "EU-WEST-1",
        "eu--1",
        "eu-west-1a",
    ] {
        let e = err(&MINIMAL.replace("\"eu-west-1\"", &format!("\"{bad}\"")));
        assert!(e.contains(":7:10") && e.contains("`region`"), "{bad}: {e}");
    }
    for good in [
        "us-east-1",
        "us-gov-west-1",
        "ap-southeast-2",
        "il-central-1",
    ] {
        assert!(valid_region(good), "{good}");
    }
}

#[test]
fn names_are_checked() {
    for bad in [
        "Prod",
        "1prod",
        "prod_eu",
        "a-very-long-environment-name-that-is-too-long",
    ] {
        let e = err(&MINIMAL.replace("[environments.prod]", &format!("[environments.{bad}]")));
        assert!(
            e.contains("must match ^[a-z][a-z0-9-]{0,31}$"),
            "{bad}: {e}"
        );
    }
    let e = err(&MINIMAL.replace("[functions.web]", "[functions.Web]"));
    assert!(e.contains("`functions`") && e.contains("name `Web`"), "{e}");
}

#[test]
fn syntax_and_type_errors_name_line_column_and_key() {
    let e = err(&MINIMAL.replace("lock_timeout = \"5m\"", "lock_timeout = 5"));
    assert!(
        e.contains("environments.toml:12:16") && e.contains("lock_timeout = 5"),
        "{e}"
    );
    let e = err(&MINIMAL.replace("[defaults.terraform]", "[defaults.terraform"));
    assert!(
        e.contains("environments.toml:10:20") && e.contains("unclosed table"),
        "{e}"
    );
}

#[test]
fn local_keys_go_together_and_stay_on_loopback() {
    let base = MINIMAL.to_string() + "registry = \"127.0.0.1:5050\"\n";
    assert!(err(&base).contains("go together"));
    let remote = base.clone() + "endpoint_url = \"http://10.0.0.1:4566\"\n";
    assert!(err(&remote).contains("loopback http URL"));
    let ok = base + "endpoint_url = \"http://127.0.0.1:4566\"\n";
    assert!(parse(&ok).unwrap().environments["prod"].local.is_some());
    let shared = MINIMAL.replace(
        "[defaults.bootstrap]",
        "endpoint_url = \"http://127.0.0.1:1\"\n[defaults.bootstrap]",
    );
    assert!(
        err(&shared).contains("not to [defaults]"),
        "{}",
        err(&shared)
    );
}

#[test]
fn reserved_bootstrap_vars_and_a_missing_bucket_are_refused() {
    let text = MINIMAL.to_string() + "[environments.prod.bootstrap.vars]\nfunctions = \"x\"\n";
    assert!(err(&text).contains("`functions` is set by xtask"));
    let e = err(&MINIMAL.replace("bucket = \"{env}-state\"", ""));
    assert!(e.contains("terraform.backend.bucket"), "{e}");
}

#[test]
fn streams_hand_over_before_the_deadline_and_the_timeout_leaves_room_for_it() {
    let settings = parse(FILE).unwrap();
    let sse = &settings.environments["prod"].functions[0];
    assert_eq!(sse.environment["SSE_HANDOVER_MARGIN_SECONDS"], "5");
    assert_eq!(sse.environment["SSE_HEARTBEAT_SECONDS"], "15");
    assert_eq!(
        sse.environment["SSE_MAX_STREAM_SECONDS"], "60",
        "the function's timeout"
    );
    let text = FILE.replace(
        "memory_size = 512\ntimeout = 60",
        "memory_size = 512\ntimeout = 19",
    );
    let e = err(&text);
    let line = line_of(&text, "timeout = 19");
    assert!(
        e.contains(&format!(":{line}:11"))
            && e.contains("less than stream.handover_margin (5 s) plus one heartbeat (15 s)"),
        "{e}"
    );
    let text = FILE.replace(
        "[functions.status.smoke]",
        "[functions.status.stream]\n[functions.status.smoke]",
    );
    assert!(err(&text).contains("only a RESPONSE_STREAM function streams"));
}

/// The scan table (`[scan]`): its merge and the errors of its entries.
mod scan {
    use std::time::Duration;

    use super::*;
    use crate::scan::{Date, FailOn, Severity};

    const BASE: &str = r#"project = "demo"
[functions.web]
build_context = "src/lambdas/sse_streaming"
dockerfile = "src/lambdas/sse_streaming/Dockerfile"
invoke_mode = "RESPONSE_STREAM"
[defaults]
region = "eu-west-1"
[defaults.bootstrap]
dir = "infrastructure/bootstrap"
[defaults.terraform]
dir = "infrastructure/terraform"
lock_timeout = "5m"
[defaults.terraform.backend]
bucket = "{env}-state"
[defaults.scan]
fail_on = "CRITICAL"
[environments.prod]
account_id = "222222222222"
"#;

    fn parse(extra: &str) -> Result<Settings> {
        Settings::parse(Path::new("environments.toml"), &format!("{BASE}{extra}"))
    }

    fn err(extra: &str) -> String {
        format!("{:#}", parse(extra).unwrap_err())
    }

    #[test]
    fn scan_settings_merge_and_default() {
        let s = parse("[environments.prod.scan]\nfail_on = \"HIGH\"\ntimeout = \"2m\"\n").unwrap();
        let scan = &s.environments["prod"].scan;
        assert_eq!(scan.fail_on, FailOn::At(Severity::High));
        assert_eq!(scan.timeout, Duration::from_secs(120));
        let s = parse("").unwrap();
        assert_eq!(
            s.environments["prod"].scan.fail_on,
            FailOn::At(Severity::Critical)
        );
        assert_eq!(
            s.environments["prod"].scan.timeout,
            Duration::from_secs(600)
        );
    }

    #[test]
    fn allow_lists_add_up_and_take_strings_or_dates() {
        let s = parse(
            "[[defaults.scan.allow]]\nid = \"CVE-1\"\nreason = \"r\"\nexpires = \"2027-01-31\"\n\
             [[environments.prod.scan.allow]]\nid = \"CVE-2\"\nreason = \"r2\"\nexpires = 2027-02-28\n",
        )
        .unwrap();
        let allow = &s.environments["prod"].scan.allow;
        assert_eq!(allow.len(), 2);
        assert_eq!(allow[0].id, "CVE-1");
        assert_eq!(allow[1].expires, Date::parse("2027-02-28").unwrap());
    }

    #[test]
    fn bad_scan_settings_name_line_column_and_key() {
        let e = err("[environments.prod.scan]\nfail_on = \"high\"\n");
        assert!(
            e.contains("environments.toml:20:11")
                && e.contains("`scan.fail_on`")
                && e.contains("CRITICAL, HIGH, MEDIUM, LOW, INFORMATIONAL, UNDEFINED, never"),
            "{e}"
        );
        let e = err("[environments.prod.scan]\ntimeout = \"0m\"\n");
        assert!(e.contains(":20:11") && e.contains("`scan.timeout`"), "{e}");
        let entry = |body: &str| format!("[[environments.prod.scan.allow]]\n{body}");
        let e = err(&entry(
            "id = \"CVE-1\"\nreason = \"r\"\nexpires = \"2027-02-30\"\n",
        ));
        assert!(
            e.contains(":22:11") && e.contains("`scan.allow.expires`") && e.contains("2027-02-30"),
            "{e}"
        );
        let e = err(&entry(
            "id = \"CVE-1\"\nreason = \"r\"\nexpires = 2027-01-31T10:00:00Z\n",
        ));
        assert!(e.contains("`scan.allow.expires`"), "{e}");
        let e = err(&entry("id = \"CVE-1\"\nexpires = \"2027-01-31\"\n"));
        assert!(
            e.contains("`scan.allow.reason`") && e.contains("needs id, reason and expires"),
            "{e}"
        );
        let e = err(&entry(
            "id = \"CVE-1\"\nreason = \" \"\nexpires = \"2027-01-31\"\n",
        ));
        assert!(
            e.contains(":21:10") && e.contains("must not be empty"),
            "{e}"
        );
        let e = err(&entry(
            "id = \"CVE-1\"\nreason = \"r\"\nexpires = \"2027-01-31\"\nurl = \"x\"\n",
        ));
        assert!(e.contains("unknown field `url`"), "{e}");
        let twice = entry("id = \"CVE-1\"\nreason = \"r\"\nexpires = \"2027-01-31\"\n");
        let e = err(&format!("{twice}{twice}"));
        assert!(e.contains(":24:6") && e.contains("listed twice"), "{e}");
    }
}
