//! The whole local stack as a normal user in the `docker` group: `local up`, `deploy` and the
//! Function URL work, and nothing under /etc, /usr or /opt changes.
//!
//! The test runs as root, with the engine already running (provisioning an engine on a fresh
//! machine legitimately writes /etc). It creates the user, lets the `docker` group write
//! `target/local-stack` and `target/xtask` for the test's length, and runs the already-built
//! xtask as that user on a compose project and ports of its own, so the running stack is left
//! alone. The repository's git objects are root's: the user's git writes its own objects beside
//! them (`GIT_OBJECT_DIRECTORY`, the originals as alternates), as a checkout of its own would.
//! Afterwards the project is removed (`local down`, as the user) and so is the user.

mod support;

use std::net::TcpListener;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

fn run(cmd: &mut Command) -> Output {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed ({}):\n{}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Everything the test changed outside its own user, undone on drop, also after a failure.
struct Fixture {
    user: String,
    project: String,
    env_name: String,
    /// `127.0.0.1:<its registry port>/`.
    registry_prefix: String,
    env: Vec<(String, String)>,
    scratch: PathBuf,
    /// Directories whose group and mode were changed: (path, gid, mode).
    opened: Vec<(PathBuf, u32, u32)>,
    created: Vec<PathBuf>,
}

impl Fixture {
    /// xtask as the user, with exactly `env`.
    fn xtask(&self, args: &[&str]) -> Output {
        let mut cmd = Command::new("setpriv");
        cmd.args([
            "--reuid",
            &self.user,
            "--regid",
            &self.user,
            "--init-groups",
            "env",
            "-i",
        ])
        .args(self.env.iter().map(|(k, v)| format!("{k}={v}")))
        .arg(env!("CARGO_BIN_EXE_xtask"))
        .args(args)
        .current_dir(support::root())
        .stdin(Stdio::null());
        cmd.output().unwrap()
    }
}

impl Drop for Fixture {
    fn drop(&mut self) {
        let down = self.xtask(&["local", "down", "--env", &self.env_name]);
        if !down.status.success() {
            eprintln!(
                "local down as {}: {}",
                self.user,
                String::from_utf8_lossy(&down.stderr)
            );
        }
        for path in &self.created {
            let _ = std::fs::remove_dir_all(path).or_else(|_| std::fs::remove_file(path));
        }
        for (path, gid, mode) in &self.opened {
            let _ = std::os::unix::fs::chown(path, None, Some(*gid));
            let _ = std::fs::set_permissions(path, std::fs::Permissions::from_mode(*mode));
        }
        // The images its deploy built and pulled, by their registry's address.
        let listed = Command::new("docker")
            .args(["image", "ls", "--format", "{{.Repository}}:{{.Tag}}"])
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
            .unwrap_or_default();
        let mine: Vec<&str> = listed
            .lines()
            .filter(|l| l.starts_with(&self.registry_prefix))
            .collect();
        if !mine.is_empty() {
            let _ = Command::new("docker")
                .args(["image", "rm"])
                .args(&mine)
                .output();
        }
        let _ = Command::new("userdel")
            .args(["--remove", &self.user])
            .output();
        let _ = std::fs::remove_dir_all(&self.scratch);
    }
}

/// Files under /etc, /usr and /opt modified after `marker`.
fn changed_since(marker: &Path) -> Vec<String> {
    let out = Command::new("find")
        .args(["/etc", "/usr", "/opt", "-newer"])
        .arg(marker)
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_string)
        .collect()
}

#[test]
#[ignore = "needs the local stack's engine and root, to create the user"]
fn a_docker_group_member_runs_the_stack_and_deploys_writing_nothing_outside_the_repository() {
    let uid = std::fs::read_to_string("/proc/self/status")
        .unwrap()
        .lines()
        .find_map(|l| {
            l.strip_prefix("Uid:")
                .map(|r| r.split_whitespace().next().unwrap_or("").to_string())
        })
        .unwrap();
    assert_eq!(
        uid, "0",
        "this test creates a user: run it as root (as `cargo xtask ci` does)"
    );
    run(Command::new("docker").args(["info", "--format", "{{.ServerVersion}}"]));

    let n = std::process::id() % 100_000;
    let user = format!("xtask-user-{n}");
    let project = format!("xtask-nonroot-{n}");
    let env_name = format!("nonroot-{n}");
    run(Command::new("useradd").args([
        "--create-home",
        "--groups",
        "docker",
        "--shell",
        "/bin/sh",
        &user,
    ]));
    let scratch = std::env::temp_dir().join(format!("xtask-nonroot-{n}"));
    std::fs::create_dir_all(&scratch).unwrap();
    std::fs::set_permissions(&scratch, std::fs::Permissions::from_mode(0o755)).unwrap();

    // Its own ports, in a copy of the settings the user can read.
    let (registry, moto, lambda) = (free_port(), free_port(), free_port());
    let registry_2 = free_port();
    // `local-prod` too, which a fresh emulator's account layers include: its own name (whose
    // directory under target/xtask is the user's) and bucket.
    let prod_name = format!("{env_name}-p");
    let real =
        std::fs::read_to_string(support::root().join("infrastructure/environments.toml")).unwrap();
    let settings = real
        .replace(
            "[environments.local]",
            &format!("[environments.{env_name}]"),
        )
        .replace(
            "[environments.local.",
            &format!("[environments.{env_name}."),
        )
        .replace(
            "promote_from = \"local\"",
            &format!("promote_from = \"{env_name}\""),
        )
        .replace(
            "[environments.local-prod]",
            &format!("[environments.{prod_name}]"),
        )
        .replace(
            "[environments.local-prod.",
            &format!("[environments.{prod_name}."),
        )
        .replace(
            "bucket = \"local-prod-sse-streaming-tfstate\"",
            &format!("bucket = \"{prod_name}-sse-streaming-tfstate\""),
        )
        .replace("127.0.0.1:5051", &format!("127.0.0.1:{registry_2}"))
        .replace("127.0.0.1:5050", &format!("127.0.0.1:{registry}"))
        .replace("127.0.0.1:4566", &format!("127.0.0.1:{moto}"));
    let config = scratch.join("environments.toml");
    std::fs::write(&config, settings).unwrap();

    let common = String::from_utf8(
        run(Command::new("git")
            .args(["rev-parse", "--path-format=absolute", "--git-common-dir"])
            .current_dir(support::root()))
        .stdout,
    )
    .unwrap();
    let objects = scratch.join("git-objects");
    std::fs::create_dir_all(&objects).unwrap();
    run(Command::new("chown").args([&format!("{user}:{user}"), objects.to_str().unwrap()]));
    let home = format!("/home/{user}");
    let env: Vec<(String, String)> = [
        ("HOME", home.as_str()),
        ("USER", user.as_str()),
        ("PATH", "/usr/local/bin:/usr/bin:/bin"),
        ("XTASK_LOCAL_PROJECT", project.as_str()),
        ("XTASK_CONFIG", config.to_str().unwrap()),
        ("REGISTRY_PORT", &registry.to_string()),
        ("REGISTRY_2_PORT", &registry_2.to_string()),
        ("MOTO_PORT", &moto.to_string()),
        ("LAMBDA_PORT", &lambda.to_string()),
        ("GIT_OBJECT_DIRECTORY", objects.to_str().unwrap()),
        (
            "GIT_ALTERNATE_OBJECT_DIRECTORIES",
            &format!("{}/objects", common.trim()),
        ),
        ("GIT_CONFIG_COUNT", "1"),
        ("GIT_CONFIG_KEY_0", "safe.directory"),
        ("GIT_CONFIG_VALUE_0", "*"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();

    let docker_gid =
        String::from_utf8(run(Command::new("getent").args(["group", "docker"])).stdout).unwrap();
    let docker_gid: u32 = docker_gid.split(':').nth(2).unwrap().parse().unwrap();
    let mut fixture = Fixture {
        user: user.clone(),
        project: project.clone(),
        env_name: env_name.clone(),
        registry_prefix: format!("127.0.0.1:{registry}/"),
        env,
        scratch: scratch.clone(),
        opened: vec![],
        created: vec![
            support::root().join(format!("target/xtask/{env_name}")),
            support::root().join(format!("target/xtask/{prod_name}")),
            support::root().join(format!("target/local-stack/stack-{project}.json")),
            support::root().join(format!("target/local-stack/emulator-credentials-{project}")),
        ],
    };
    for dir in ["target", "target/local-stack", "target/xtask"] {
        let path = support::root().join(dir);
        std::fs::create_dir_all(&path).unwrap();
        let meta = std::fs::metadata(&path).unwrap();
        fixture
            .opened
            .push((path.clone(), meta.gid(), meta.mode() & 0o7777));
        std::os::unix::fs::chown(&path, None, Some(docker_gid)).unwrap();
        std::fs::set_permissions(
            &path,
            std::fs::Permissions::from_mode(meta.mode() & 0o7777 | 0o070),
        )
        .unwrap();
    }

    // From here on, nothing may change under /etc, /usr or /opt (mtimes have 1 s granularity
    // on some file systems, hence the pause).
    let marker = scratch.join("marker");
    std::fs::write(&marker, "").unwrap();
    std::thread::sleep(Duration::from_millis(1100));

    let up = fixture.xtask(&["local", "up", "--env", &env_name]);
    let up_log = String::from_utf8_lossy(&up.stderr).into_owned();
    assert!(up.status.success(), "local up as {user}:\n{up_log}");
    assert!(
        up_log.contains(&format!("local stack `{project}` up")),
        "{up_log}"
    );

    let deploy = fixture.xtask(&["--json", "deploy", "--env", &env_name]);
    let deploy_log = String::from_utf8_lossy(&deploy.stderr).into_owned();
    assert!(deploy.status.success(), "deploy as {user}:\n{deploy_log}");
    let result: xtask::report::RunResult = serde_json::from_slice(&deploy.stdout)
        .unwrap_or_else(|e| panic!("deploy --json: {e}:\n{deploy_log}"));
    let sse = result.functions.iter().find(|f| f.name == "sse-streaming");
    let url = sse
        .and_then(|f| f.local_url.clone())
        .unwrap_or_else(|| panic!("no local url for sse-streaming: {result:?}"));
    assert!(
        url.starts_with(&format!("http://127.0.0.1:{lambda}/lambda-url/")),
        "{url}"
    );
    let check = xtask::settings::Smoke {
        path: "/stream?count=3&interval=1".into(),
        expect: xtask::settings::Expect::Sse,
    };
    let seen = xtask::smoke::check(&url, Duration::from_secs(30), &check).unwrap();
    assert_eq!(seen.ids, [1, 2, 3]);
    eprintln!(
        "as {user}: {url} streamed {:?}, first event after {:.3}s",
        seen.ids,
        seen.first_event.as_secs_f64()
    );

    let status = fixture.xtask(&["local", "status", "--env", &env_name]);
    assert!(
        status.status.success(),
        "local status as {user}:\n{}",
        String::from_utf8_lossy(&status.stderr)
    );

    let changed = changed_since(&marker);
    assert!(
        changed.is_empty(),
        "changed under /etc, /usr or /opt while {user} ran the stack:\n{}",
        changed.join("\n")
    );

    // `local down` as the user removes its project, containers, network and volumes.
    let down = fixture.xtask(&["local", "down", "--env", &env_name]);
    assert!(
        down.status.success(),
        "local down as {user}:\n{}",
        String::from_utf8_lossy(&down.stderr)
    );
    let label = format!("label=com.docker.compose.project={}", fixture.project);
    for what in [
        &["ps", "--all", "--quiet", "--filter", &label][..],
        &["network", "ls", "--quiet", "--filter", &label],
        &["volume", "ls", "--quiet", "--filter", &label],
    ] {
        let out = run(Command::new("docker").args(what));
        assert!(
            out.stdout.is_empty(),
            "docker {what:?} still lists: {}",
            String::from_utf8_lossy(&out.stdout)
        );
    }
}
