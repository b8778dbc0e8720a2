//! Bad input fails before anything runs: each case names its cause, exits non-zero, starts no
//! subprocess and makes no AWS call.
//!
//! The xtask binary runs with a PATH holding only recording stand-ins named after every tool
//! it could start, and with its AWS endpoint pointed at a listener that records connections.
//! These stand-ins are spies, never used where a tool's real behaviour is tested.

use std::{
    net::TcpListener,
    os::unix::fs::PermissionsExt,
    path::{Path, PathBuf},
    process::Command,
};

struct Sandbox {
    dir: PathBuf,
    log: PathBuf,
    listener: TcpListener,
}

impl Sandbox {
    fn new(name: &str) -> Sandbox {
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("bad-input-{name}"));
        let _ = std::fs::remove_dir_all(&dir);
        let bin = dir.join("bin");
        std::fs::create_dir_all(&bin).unwrap();
        let log = dir.join("spawned.log");
        for tool in [
            "docker",
            "git",
            "terraform",
            "aws",
            "python3",
            "moto_server",
            "apt-get",
            "cargo",
        ] {
            let path = bin.join(tool);
            std::fs::write(
                &path,
                format!(
                    "#!/bin/sh\necho {tool} \"$@\" >> {}\nexit 1\n",
                    log.display()
                ),
            )
            .unwrap();
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        }
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        Sandbox { dir, log, listener }
    }

    fn config(&self, text: &str) -> PathBuf {
        let path = self.dir.join("environments.toml");
        std::fs::write(&path, text).unwrap();
        path
    }

    /// Runs xtask; returns (exit code, stderr).
    fn run(&self, args: &[&str]) -> (i32, String) {
        let endpoint = format!("http://{}", self.listener.local_addr().unwrap());
        let out = Command::new(env!("CARGO_BIN_EXE_xtask"))
            .args(args)
            .env_clear()
            .env("PATH", self.dir.join("bin"))
            .env("HOME", &self.dir)
            .env("AWS_ENDPOINT_URL", &endpoint)
            .current_dir(&self.dir)
            .output()
            .unwrap();
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stderr).to_string(),
        )
    }

    fn assert_nothing_happened(&self) {
        let spawned = std::fs::read_to_string(&self.log).unwrap_or_default();
        assert!(spawned.is_empty(), "subprocesses were started:\n{spawned}");
        assert!(self.listener.accept().is_err(), "an AWS call was made");
    }
}

fn real_settings() -> String {
    std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../infrastructure/environments.toml"),
    )
    .unwrap()
}

fn case(name: &str, text: &str, args: &[&str], expected: &[&str]) {
    let sandbox = Sandbox::new(name);
    let config = sandbox.config(text);
    let mut argv: Vec<&str> = args.to_vec();
    let config = config.display().to_string();
    argv.extend(["--config", &config]);
    let (code, stderr) = sandbox.run(&argv);
    assert_ne!(code, 0, "{name}: exit code 0\n{stderr}");
    for needle in expected {
        assert!(
            stderr.contains(needle),
            "{name}: {needle:?} not in\n{stderr}"
        );
    }
    sandbox.assert_nothing_happened();
}

#[test]
fn malformed_toml_names_file_line_and_column() {
    let text = real_settings().replace("[environments.prod]", "[environments.prod");
    case(
        "syntax",
        &text,
        &["deploy", "--env", "prod"],
        &["environments.toml:", "unclosed table"],
    );
}

#[test]
fn type_errors_name_the_key() {
    let text = real_settings().replace("protected = true", "protected = \"yes\"");
    // The line of the bad value, wherever the settings file puts it; the value starts at 13.
    let line = 1 + text
        .lines()
        .position(|l| l == "protected = \"yes\"")
        .expect("prod sets protected");
    case(
        "type",
        &text,
        &["deploy", "--env", "prod", "--dry-run"],
        &[
            &format!("environments.toml:{line}:13"),
            "protected = \"yes\"",
            "expected a boolean",
        ],
    );
}

#[test]
fn unknown_keys_are_refused() {
    let text = real_settings().replace("protected = true", "protected = true\nprotectd = true");
    case(
        "unknown-key",
        &text,
        &["image", "--env", "prod"],
        &["unknown field `protectd`"],
    );
}

#[test]
fn bad_account_ids_are_refused() {
    let text = real_settings().replace("\"222222222222\"", "\"2222\"");
    case(
        "account",
        &text,
        &["deploy", "--env", "prod"],
        &["`account_id`", "exactly 12 digits"],
    );
}

#[test]
fn bad_regions_are_refused() {
    let text = real_settings().replace("region = \"us-east-1\"", "region = \"moon-1\"");
    case("region", &text, &["deploy"], &["`region`", "moon-1"]);
}

#[test]
fn bad_environment_names_are_refused() {
    let text = real_settings().replace("[environments.preprod]", "[environments.Pre_Prod]");
    case(
        "env-name",
        &text,
        &["image", "--env", "prod"],
        &["Pre_Prod", "^[a-z][a-z0-9-]{0,31}$"],
    );
}

#[test]
fn unknown_environments_list_the_valid_ones() {
    case(
        "unknown-env",
        &real_settings(),
        &["deploy", "--env", "staging"],
        &[
            "unknown environment `staging`",
            "local, local-prod, preprod, prod",
        ],
    );
}

#[test]
fn a_missing_settings_file_says_how_to_point_at_one() {
    let sandbox = Sandbox::new("missing-file");
    let (code, stderr) = sandbox.run(&["deploy", "--config", "nope.toml"]);
    assert_ne!(code, 0);
    assert!(
        stderr.contains("nope.toml") && stderr.contains("--config"),
        "{stderr}"
    );
    sandbox.assert_nothing_happened();
}

#[test]
fn missing_tools_are_all_reported_in_one_message() {
    let sandbox = Sandbox::new("tools");
    // An empty PATH: every probe fails to start, and nothing else may run.
    let config = sandbox.config(&real_settings());
    let out = Command::new(env!("CARGO_BIN_EXE_xtask"))
        .args(["deploy", "--env", "preprod", "--config"])
        .arg(&config)
        .env_clear()
        .env("PATH", sandbox.dir.join("empty"))
        .env("HOME", &sandbox.dir)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    for tool in ["- git:", "- docker:", "- docker buildx:", "- terraform:"] {
        assert!(stderr.contains(tool), "{tool} not reported:\n{stderr}");
    }
    assert!(stderr.contains("nothing was run"), "{stderr}");
    sandbox.assert_nothing_happened();
}

#[test]
fn hostile_or_path_like_environment_names_run_nothing() {
    // What a workflow input could carry into `--env`: shell syntax, a path, an empty name.
    for (i, name) in ["prod;rm -rf /", "../x", "prod/../../etc", "$(id)", ""]
        .into_iter()
        .enumerate()
    {
        case(
            &format!("hostile-env-{i}"),
            &real_settings(),
            &["deploy", "--env", name],
            &[
                &format!("unknown environment `{name}`"),
                "local, local-prod, preprod, prod",
            ],
        );
    }
}
