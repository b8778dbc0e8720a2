//! Reproducible images: two clean builds of one commit give one digest.
//!
//! Each build runs the `docker buildx build` line of the `local` environment's image plan
//! (labels, build args, `SOURCE_DATE_EPOCH` from the commit, the OCI export with
//! `rewrite-timestamp=true`) with an emptied builder cache (`docker buildx prune --all`) and
//! without the registry cache, into an OCI archive. When the digests differ, the test names
//! the config fields and the layer entries that differ.

mod support;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;
use xshell::Shell;
use xtask::cmdline::CmdLine;
use xtask::plan::{Action, image};
use xtask::settings::Settings;
use xtask::{facts, paths};

/// The plan's build line, minus the registry cache, exporting to `dest`.
fn clean_build_line(dest: &Path, metadata: &Path) -> CmdLine {
    let sh = Shell::new().unwrap();
    sh.change_dir(support::root());
    let settings = Settings::load(&support::root().join(paths::SETTINGS)).unwrap();
    let env = settings.environment("local").unwrap();
    let facts = facts::Facts {
        tools: vec![],
        git: facts::git(&sh, env).unwrap(),
        builder: facts::builder(&sh, env.builder.as_deref()).unwrap(),
        host_runs: facts::host_runs(env.platform),
    };
    let opts = image::Options {
        force: true,
        ..image::Options::default()
    };
    let plan = image::plan(env, &facts, opts).unwrap();
    let Some(Action::Build { cmd, archive, .. }) = plan
        .steps
        .iter()
        .map(|s| &s.action)
        .find(|a| matches!(a, Action::Build { .. }))
    else {
        panic!("no build step in\n{plan}");
    };
    let archive = archive
        .clone()
        .expect("the local stack's docker driver exports an OCI archive");
    let mut args = Vec::new();
    let mut it = cmd.args.iter();
    while let Some(arg) = it.next() {
        match arg.as_str() {
            // No registry cache: every step runs.
            "--cache-from" | "--cache-to" => {
                it.next();
            }
            "--metadata-file" => {
                it.next();
                args.push(arg.clone());
                args.push(metadata.display().to_string());
            }
            _ => args.push(arg.replace(&archive, &dest.display().to_string())),
        }
    }
    assert!(
        args.iter().any(|a| a.starts_with("SOURCE_DATE_EPOCH=")),
        "{args:?}"
    );
    assert!(
        args.iter().any(|a| a.ends_with(",rewrite-timestamp=true")),
        "{args:?}"
    );
    CmdLine {
        program: cmd.program.clone(),
        args,
        env: vec![],
    }
}

fn run(program: &str, args: &[&str]) -> String {
    let out = Command::new(program)
        .args(args)
        .current_dir(support::root())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{program} {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// One build from an empty builder cache; returns the manifest digest.
fn clean_build(line: &CmdLine, metadata: &Path) -> String {
    run("docker", &["buildx", "prune", "--all", "--force"]);
    let out = Command::new(&line.program)
        .args(&line.args)
        .current_dir(support::root())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{line}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let meta: Value = serde_json::from_str(&std::fs::read_to_string(metadata).unwrap()).unwrap();
    meta["containerimage.digest"].as_str().unwrap().to_string()
}

/// An unpacked OCI archive: its manifest, config and layer blobs.
struct Layout {
    dir: PathBuf,
    manifest: Value,
}

impl Layout {
    fn open(archive: &Path, dir: &Path) -> Layout {
        std::fs::create_dir_all(dir).unwrap();
        run(
            "tar",
            &[
                "-xf",
                &archive.display().to_string(),
                "-C",
                &dir.display().to_string(),
            ],
        );
        let index = read_json(&dir.join("index.json"));
        let digest = index["manifests"][0]["digest"]
            .as_str()
            .unwrap()
            .to_string();
        Layout {
            manifest: read_json(&blob(dir, &digest)),
            dir: dir.to_path_buf(),
        }
    }
    fn config(&self) -> Value {
        read_json(&blob(
            &self.dir,
            self.manifest["config"]["digest"].as_str().unwrap(),
        ))
    }
    fn layers(&self) -> Vec<String> {
        self.manifest["layers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|l| l["digest"].as_str().unwrap().to_string())
            .collect()
    }
    /// `tar -tv` of a layer: mode, owner, size, time and path of each entry.
    fn listing(&self, digest: &str) -> BTreeSet<String> {
        run(
            "tar",
            &[
                "--full-time",
                "-tvzf",
                &blob(&self.dir, digest).display().to_string(),
            ],
        )
        .lines()
        .map(String::from)
        .collect()
    }
    fn unpack(&self, digest: &str, into: &Path) {
        std::fs::create_dir_all(into).unwrap();
        run(
            "tar",
            &[
                "-xzf",
                &blob(&self.dir, digest).display().to_string(),
                "-C",
                &into.display().to_string(),
            ],
        );
    }
}

fn blob(dir: &Path, digest: &str) -> PathBuf {
    dir.join("blobs/sha256")
        .join(digest.trim_start_matches("sha256:"))
}

fn read_json(path: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// Everything that differs between two builds' images, one line each.
fn differences(a: &Layout, b: &Layout, scratch: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let (ca, cb) = (a.config(), b.config());
    for key in ["created", "history", "config", "rootfs"] {
        if ca[key] != cb[key] {
            out.push(format!("config `{key}`: {} vs {}", ca[key], cb[key]));
        }
    }
    let (la, lb) = (a.layers(), b.layers());
    if la.len() != lb.len() {
        out.push(format!("{} layers vs {}", la.len(), lb.len()));
    }
    for (i, (da, db)) in la.iter().zip(&lb).enumerate() {
        if da == db {
            continue;
        }
        out.push(format!("layer {i}: {da} vs {db}"));
        let (ta, tb) = (a.listing(da), b.listing(db));
        for line in ta.symmetric_difference(&tb) {
            let side = if ta.contains(line) { "first" } else { "second" };
            out.push(format!(
                "  layer {i} entry only in the {side} build: {line}"
            ));
        }
        let (ua, ub) = (scratch.join(format!("a{i}")), scratch.join(format!("b{i}")));
        a.unpack(da, &ua);
        b.unpack(db, &ub);
        let diff = Command::new("diff")
            .args(["-r", "--brief", "--no-dereference"])
            .arg(&ua)
            .arg(&ub)
            .output()
            .unwrap();
        for line in String::from_utf8_lossy(&diff.stdout).lines() {
            out.push(format!("  layer {i} content: {line}"));
        }
    }
    out
}

#[test]
#[ignore = "needs the local stack (cargo xtask local up)"]
fn two_clean_builds_of_one_commit_give_one_digest() {
    support::stack();
    let scratch = support::root()
        .join("target/e2e")
        .join(support::unique("reproducible"));
    std::fs::create_dir_all(&scratch).unwrap();
    let mut digests = Vec::new();
    let mut archives = Vec::new();
    for name in ["first", "second"] {
        let archive = scratch.join(format!("{name}.oci.tar"));
        let metadata = scratch.join(format!("{name}.json"));
        let line = clean_build_line(&archive, &metadata);
        let digest = clean_build(&line, &metadata);
        println!("{name} clean build: {digest}");
        println!("  {line}");
        digests.push(digest);
        archives.push(archive);
    }
    if digests[0] != digests[1] {
        let a = Layout::open(&archives[0], &scratch.join("first"));
        let b = Layout::open(&archives[1], &scratch.join("second"));
        let diffs = differences(&a, &b, &scratch.join("layers"));
        panic!(
            "two clean builds differ: {} vs {} (kept in {}):\n{}",
            digests[0],
            digests[1],
            scratch.display(),
            diffs.join("\n")
        );
    }
    println!("reproducible: both clean builds are {}", digests[0]);
    std::fs::remove_dir_all(&scratch).unwrap();
}
