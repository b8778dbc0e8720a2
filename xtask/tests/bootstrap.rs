//! `cargo xtask bootstrap` against the local stack: the account layer applied for real by
//! Terraform to the emulator, read back through the emulator's S3 and IAM APIs; a second run
//! changes nothing; and `deploy` refuses, with no side effect, when the state bucket is
//! missing. Each test uses a fresh environment name and bucket.

mod support;

use std::path::PathBuf;
use std::process::Output;

use xtask::aws::Aws;

/// A settings copy with one fresh local-stack environment and its own state bucket.
struct Env {
    name: String,
    bucket: String,
    config: PathBuf,
}

impl Env {
    fn new(extra: &str) -> Env {
        let name = support::unique("bs").replace('-', "");
        let name = format!("bs{}", &name[name.len() - 9..]);
        let bucket = format!("{name}-sse-streaming-tfstate");
        let real =
            std::fs::read_to_string(support::root().join("infrastructure/environments.toml"))
                .unwrap();
        let text = real
            .replace("[environments.local]", &format!("[environments.{name}]"))
            .replace("[environments.local.", &format!("[environments.{name}."))
            .replace(
                "promote_from = \"local\"",
                &format!("promote_from = \"{name}\""),
            )
            .replace(
                "bucket = \"local-sse-streaming-tfstate\"",
                &format!("bucket = \"{bucket}\""),
            )
            + extra.replace("ENV", &name).as_str();
        let dir = support::root().join("target/e2e");
        std::fs::create_dir_all(&dir).unwrap();
        let config = dir.join(format!("{name}.toml"));
        std::fs::write(&config, text).unwrap();
        Env {
            name,
            bucket,
            config,
        }
    }

    fn xtask(&self, args: &[&str]) -> Output {
        let out = support::xtask()
            .args(args)
            .args(["--env", &self.name, "--config"])
            .arg(&self.config)
            .output()
            .unwrap();
        eprintln!(
            "--- xtask {args:?} exit {:?}\n{}\n{}",
            out.status.code(),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        out
    }
}

fn emulator() -> Aws {
    let stack = support::stack();
    Aws::emulator(&stack.endpoint_url, &stack.region).unwrap()
}

fn s3(aws: &Aws, path: &str) -> String {
    let url = aws.emulator_url(path).unwrap();
    let r = aws.signed("s3", "GET", &url, b"").unwrap();
    assert_eq!(r.status, 200, "GET {path}: {}", r.text());
    r.text()
}

#[test]
#[ignore = "needs the local stack (cargo xtask local up)"]
fn bootstrap_applies_the_account_layer_then_finds_it_in_place() {
    support::stack();
    let env = Env::new(
        "\n[environments.ENV.bootstrap.vars]\ngithub_repository = \"example-org/sse-streaming\"\n",
    );
    let first = env.xtask(&["bootstrap"]);
    assert!(first.status.success(), "first bootstrap failed");
    let stderr = String::from_utf8_lossy(&first.stderr);
    assert!(stderr.contains("terraform init (local state)"), "{stderr}");
    assert!(stderr.contains("terraform init -migrate-state"), "{stderr}");

    let aws = emulator();
    let bucket = &env.bucket;
    let versioning = s3(&aws, &format!("/{bucket}?versioning"));
    assert!(
        versioning.contains("<Status>Enabled</Status>"),
        "{versioning}"
    );
    let encryption = s3(&aws, &format!("/{bucket}?encryption"));
    assert!(
        encryption.contains("<SSEAlgorithm>AES256</SSEAlgorithm>")
            || encryption.contains("<SSEAlgorithm>aws:kms</SSEAlgorithm>"),
        "{encryption}"
    );
    let block = s3(&aws, &format!("/{bucket}?publicAccessBlock"));
    for setting in [
        "BlockPublicAcls",
        "IgnorePublicAcls",
        "BlockPublicPolicy",
        "RestrictPublicBuckets",
    ] {
        assert!(
            block.contains(&format!("<{setting}>true</{setting}>"))
                || block.contains(&format!("<{setting}>True</{setting}>")),
            "{setting} is not on: {block}"
        );
    }
    // (The deny-without-TLS bucket policy is off on the emulator, which speaks plain HTTP.)
    // (No lifecycle rule on the emulator: its state resets on `local down`, and the provider
    // waits about a minute after creating one. On AWS it is always there.)
    // The bootstrap's own state moved into the bucket it created.
    let state = aws
        .signed(
            "s3",
            "HEAD",
            &aws.emulator_url(&format!("/{bucket}/{}/bootstrap.tfstate", env.name))
                .unwrap(),
            b"",
        )
        .unwrap();
    assert_eq!(state.status, 200, "no bootstrap state object in the bucket");
    assert!(
        !support::root()
            .join("infrastructure/bootstrap/local_backend_override.tf")
            .exists(),
        "the local-backend override outlived the run"
    );

    // The deploy role trusts exactly this repository's environment.
    let role = format!("{}-sse-streaming-deploy", env.name);
    let iam = aws
        .signed(
            "iam",
            "POST",
            &aws.emulator_url("/").unwrap(),
            format!("Action=GetRole&RoleName={role}&Version=2010-05-08").as_bytes(),
        )
        .unwrap();
    assert_eq!(iam.status, 200, "GetRole {role}: {}", iam.text());
    let trust = percent_decode(&iam.text());
    assert!(
        trust.contains(&format!(
            "repo:example-org/sse-streaming:environment:{}",
            env.name
        )),
        "trust policy: {trust}"
    );
    assert!(trust.contains("sts:AssumeRoleWithWebIdentity"), "{trust}");

    let second = env.xtask(&["bootstrap", "--json"]);
    assert!(second.status.success(), "second bootstrap failed");
    let stderr = String::from_utf8_lossy(&second.stderr);
    assert!(
        stderr.contains("no changes"),
        "the second run must say it changed nothing: {stderr}"
    );
    let json: serde_json::Value = serde_json::from_slice(&second.stdout).unwrap();
    let outcome = |title: &str| {
        json["steps"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["title"] == title)
            .map(|s| s["outcome"].as_str().unwrap().to_string())
    };
    assert_eq!(
        outcome("terraform init (local state)").as_deref(),
        Some("skipped")
    );
    assert_eq!(
        outcome("terraform apply (saved plan)").as_deref(),
        Some("skipped")
    );
    assert_eq!(json["terraform"], "no changes", "{json}");
    assert!(
        json["outputs"]["deploy_role_arn"]
            .as_str()
            .is_some_and(|arn| arn.ends_with(&format!(":role/{role}"))),
        "the result names the role CI assumes: {json}"
    );
}

#[test]
#[ignore = "needs the local stack (cargo xtask local up)"]
fn deploy_without_a_state_bucket_stops_with_the_bootstrap_hint_and_runs_no_terraform() {
    support::stack();
    let env = Env::new("");
    let data_dir = support::root().join(format!("target/xtask/{}", env.name));
    let out = env.xtask(&["deploy", "--verbose"]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!(
            "run `cargo xtask bootstrap --env {}` with administrator credentials first",
            env.name
        )),
        "{stderr}"
    );
    assert!(!stderr.contains("$ terraform"), "terraform ran: {stderr}");
    // Only the registry login ran (into the run's private docker config, removed at exit).
    assert!(
        stderr
            .lines()
            .filter(|l| l.trim_start().starts_with("$ docker"))
            .all(|l| l.contains("$ docker login ")),
        "docker built or pushed: {stderr}"
    );
    assert!(
        !data_dir.join("terraform").exists(),
        "terraform was initialised in {}",
        data_dir.display()
    );
    let aws = emulator();
    assert!(
        !aws.repository_exists(&format!("{}-sse-streaming-lambda", env.name))
            .unwrap(),
        "an ECR repository was created"
    );
    assert_eq!(
        aws.bucket(&env.bucket).unwrap(),
        xtask::aws::Bucket::Missing,
        "the bucket appeared"
    );
}

/// IAM returns the trust policy URL-encoded inside XML.
fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            if let Ok(b) = u8::from_str_radix(&text[i + 1..i + 3], 16) {
                out.push(b);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}
