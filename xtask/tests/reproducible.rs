//! Reproducible images: one commit gives one digest.
//!
//! Each build runs the SSE function's `docker buildx bake` target of the `local` environment's
//! image plan (labels, build args, `SOURCE_DATE_EPOCH` from the commit, OCI media types)
//! without the registry cache, exported to an OCI archive instead of pushed.
//! - Two builds from an emptied builder cache (`docker buildx prune --all`) give one digest.
//! - A build that reuses layers cached *before* its commit, from a context whose files are
//!   older than the commit, gives the digest of a clean build of that commit; and a change to
//!   `handler.py` alone reuses the dependency layer.
//!
//! When the digests differ, the tests name the config fields and the layer entries that differ.

mod support;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::Value;
use xshell::Shell;
use xtask::plan::{Action, image, steps::ImageOptions};
use xtask::settings::Settings;
use xtask::tools::docker::{self, BakeTarget};
use xtask::{facts, paths};

/// The tests of this file prune the builder cache, so they run one at a time.
static SERIAL: Mutex<()> = Mutex::new(());

/// The plan's bake target of the SSE function, as `image` would build it.
fn plan_target() -> BakeTarget {
    let sh = Shell::new().unwrap();
    sh.change_dir(support::root());
    let settings = Settings::load(&support::root().join(paths::SETTINGS)).unwrap();
    let env = settings.environment("local").unwrap();
    let (git, contents) = facts::git(&sh, env).unwrap();
    let facts = facts::Facts {
        tools: vec![],
        git,
        contents,
        builder: facts::builder(&sh, env.builder.as_deref()).unwrap(),
        host: None,
        run: "reproducible".into(),
        now: "20260101T000000Z".into(),
        tf_cli_config: None,
    };
    let opts = image::Options {
        image: ImageOptions {
            force: true,
            ..ImageOptions::default()
        },
        ..image::Options::default()
    };
    let plan = image::plan(env, &facts, &opts).unwrap();
    let targets = plan.steps.iter().find_map(|s| match &s.action {
        Action::Bake { targets, .. } => Some(targets.clone()),
        _ => None,
    });
    let targets = targets.unwrap_or_else(|| panic!("no bake step in\n{plan}"));
    let target = targets.into_iter().find(|t| t.name == "sse-streaming");
    let target = target.expect("the bake builds the SSE function");
    assert!(target.args.contains_key("SOURCE_DATE_EPOCH"), "{target:?}");
    target
}

/// One build of `target`: an OCI archive at `dest` instead of the push, no registry cache, the
/// plan's exporter options kept. The bake file and its metadata go next to `dest`.
struct Build {
    target: BakeTarget,
    dest: PathBuf,
    extra: Vec<String>,
}

impl Build {
    fn new(target: &BakeTarget, dest: &Path) -> Build {
        let mut target = target.clone();
        target.cache_from.clear();
        target.cache_to.clear();
        target.tags.clear();
        let options: Vec<String> = target.output[0]
            .split(',')
            .filter(|o| !["type=", "push=", "dest="].iter().any(|k| o.starts_with(k)))
            .map(String::from)
            .collect();
        let dest_text = dest.display();
        target.output = vec![format!("type=oci,dest={dest_text},{}", options.join(","))];
        Build {
            target,
            dest: dest.to_path_buf(),
            extra: vec![],
        }
    }

    fn epoch(&self) -> u64 {
        self.target.args["SOURCE_DATE_EPOCH"].parse().unwrap()
    }

    /// This build for another commit time and another context (with its `Dockerfile`).
    fn variant(&self, epoch: u64, context: &Path, dest: &Path, extra: &[&str]) -> Build {
        let mut b = Build::new(&self.target, dest);
        b.target.context = context.display().to_string();
        b.target.dockerfile = "Dockerfile".into();
        b.target
            .args
            .insert("SOURCE_DATE_EPOCH".into(), epoch.to_string());
        b.extra = extra.iter().map(|a| a.to_string()).collect();
        b
    }

    /// Runs the bake; the manifest digest and the plain progress.
    fn run(&self) -> (String, String) {
        let file = self.dest.with_extension("bake.json");
        let metadata = self.dest.with_extension("metadata.json");
        std::fs::write(&file, docker::bake_file([&self.target].into_iter())).unwrap();
        let out = Command::new("docker")
            .args(["buildx", "bake", "--progress=plain", "--file"])
            .arg(&file)
            .arg("--metadata-file")
            .arg(&metadata)
            .args(&self.extra)
            .current_dir(support::root())
            .output()
            .unwrap();
        let progress = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(out.status.success(), "{self}\n{progress}");
        let meta: Value =
            serde_json::from_str(&std::fs::read_to_string(&metadata).unwrap()).unwrap();
        let digest = meta[&self.target.name]["containerimage.digest"].as_str();
        (digest.unwrap().to_string(), progress)
    }
}

impl std::fmt::Display for Build {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let t = &self.target;
        let (context, dockerfile) = (&t.context, &t.dockerfile);
        write!(
            f,
            "bake {context} {dockerfile} {:?} {:?}",
            t.output, self.extra
        )
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
fn clean_build(build: &Build) -> String {
    run("docker", &["buildx", "prune", "--all", "--force"]);
    build.run().0
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
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    support::stack();
    let scratch = support::root()
        .join("target/e2e")
        .join(support::unique("reproducible"));
    std::fs::create_dir_all(&scratch).unwrap();
    let mut digests = Vec::new();
    let mut archives = Vec::new();
    for name in ["first", "second"] {
        let archive = scratch.join(format!("{name}.oci.tar"));
        let build = Build::new(&plan_target(), &archive);
        let digest = clean_build(&build);
        println!("{name} clean build: {digest}");
        println!("  {build}");
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

/// A time older than any commit, for context files as an old checkout (or a local copy that
/// keeps times) leaves them: 2001-09-09.
const OLD_MTIME: &str = "@1000000000";

/// The build context and Dockerfile of `target`, copied into `to` (as `to/Dockerfile`). The
/// copies' times are the copy's time unless `mtime` sets them (`touch -d` syntax).
fn copy_context(target: &BakeTarget, to: &Path, mtime: Option<&str>) {
    let context = support::root().join(&target.context);
    assert!(context.is_dir(), "{target:?}");
    let file = context.join(&target.dockerfile);
    std::fs::create_dir_all(to).unwrap();
    let mut copied = Vec::new();
    for entry in std::fs::read_dir(&context).unwrap() {
        let entry = entry.unwrap();
        if entry.file_type().unwrap().is_file() {
            std::fs::copy(entry.path(), to.join(entry.file_name())).unwrap();
            copied.push(to.join(entry.file_name()));
        }
    }
    std::fs::copy(&file, to.join("Dockerfile")).unwrap();
    copied.push(to.join("Dockerfile"));
    if let Some(mtime) = mtime {
        let mut args = vec!["-h".to_string(), "-d".to_string(), mtime.to_string()];
        args.extend(copied.iter().map(|p| p.display().to_string()));
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        run("touch", &args);
    }
}

/// Whether the plain progress shows the step whose line contains `step` as `CACHED`. Panics
/// when there is no such step.
fn cached(progress: &str, step: &str) -> bool {
    let id = progress
        .lines()
        .find(|l| l.starts_with('#') && l.contains(step))
        .and_then(|l| l.split_whitespace().next())
        .unwrap_or_else(|| panic!("no step `{step}` in the progress:\n{progress}"));
    progress
        .lines()
        .any(|l| l.trim_end() == format!("{id} CACHED"))
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// The dependency install of the Dockerfile, as plain progress prints it.
const PIP_STEP: &str = "RUN python -m pip install";

#[test]
#[ignore = "needs the local stack (cargo xtask local up)"]
fn a_build_from_an_older_cache_gives_the_clean_build_digest() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    support::stack();
    let scratch = support::root()
        .join("target/e2e")
        .join(support::unique("reproducible-cache"));
    std::fs::create_dir_all(&scratch).unwrap();
    let paths = |name: &str| {
        (
            scratch.join(format!("{name}.oci.tar")),
            scratch.join(format!("{name}-context")),
        )
    };

    // A: the previous commit's build (its commit time T1 is the plan's, HEAD's), from an
    // empty builder cache, which then holds layers whose files carry A's build time.
    // The plan's line, computed once (each computation hashes the tree through git).
    let (archive_a, context_a) = paths("a");
    let target = plan_target();
    let line = Build::new(&target, &archive_a);
    let t1 = line.epoch();
    copy_context(&target, &context_a, None);
    run("docker", &["buildx", "prune", "--all", "--force"]);
    let (digest_a, _) = line.variant(t1, &context_a, &archive_a, &[]).run();
    println!("A: previous commit (SOURCE_DATE_EPOCH={t1}), empty cache: {digest_a}");

    // The next commit: its time T2 is later than every file A wrote.
    let t2 = now() + 1;
    std::thread::sleep(Duration::from_secs(2));
    assert!(t1 < t2, "HEAD's commit time {t1} is in the future");

    // B: T2, reusing A's cache, from a context whose files are older than both commits.
    let (archive_b, context_b) = paths("b");
    copy_context(&target, &context_b, Some(OLD_MTIME));
    let line_b = line.variant(t2, &context_b, &archive_b, &[]);
    let (digest_b, progress_b) = line_b.run();
    println!("B: SOURCE_DATE_EPOCH={t2}, A's cache, context files from {OLD_MTIME}: {digest_b}");
    println!("  {line_b}");
    assert!(
        cached(&progress_b, PIP_STEP),
        "B did not reuse A's dependency layer (did another run prune the builder cache?):\n\
         {progress_b}"
    );

    // C: T2, clean: no builder cache and no cached step, from a fresh copy of the context.
    let (archive_c, context_c) = paths("c");
    copy_context(&target, &context_c, None);
    let line_c = line.variant(t2, &context_c, &archive_c, &["--no-cache"]);
    run("docker", &["buildx", "prune", "--all", "--force"]);
    let (digest_c, progress_c) = line_c.run();
    println!("C: SOURCE_DATE_EPOCH={t2}, clean: {digest_c}");
    println!("  {line_c}");
    assert!(!cached(&progress_c, PIP_STEP), "{progress_c}");

    if digest_b != digest_c {
        let b = Layout::open(&archive_b, &scratch.join("b"));
        let c = Layout::open(&archive_c, &scratch.join("c"));
        let diffs = differences(&b, &c, &scratch.join("layers"));
        panic!(
            "the build from an older cache differs from the clean build: {digest_b} vs \
             {digest_c} (kept in {}):\n{}",
            scratch.display(),
            diffs.join("\n")
        );
    }
    println!("reproducible: B (older cache, old context times) = C (clean) = {digest_c}");

    // D: a change to handler.py alone, with C's cache: the dependency step is cached and the
    // image differs from C's in exactly one layer, the handler's.
    let (archive_d, context_d) = paths("d");
    copy_context(&target, &context_d, None);
    let handler = context_d.join("handler.py");
    let text = std::fs::read_to_string(&handler).unwrap();
    std::fs::write(
        &handler,
        format!("{text}\n# a change to the handler only\n"),
    )
    .unwrap();
    let (digest_d, progress_d) = line.variant(t2, &context_d, &archive_d, &[]).run();
    println!("D: handler.py changed, C's cache: {digest_d}");
    assert_ne!(digest_d, digest_c);
    assert!(
        cached(&progress_d, PIP_STEP),
        "a change to handler.py reinstalled the dependencies:\n{progress_d}"
    );
    let c = Layout::open(&archive_c, &scratch.join("c"));
    let d = Layout::open(&archive_d, &scratch.join("d"));
    let (lc, ld) = (c.layers(), d.layers());
    assert_eq!(lc.len(), ld.len(), "{lc:?}\n{ld:?}");
    let changed: Vec<usize> = (0..lc.len()).filter(|&i| lc[i] != ld[i]).collect();
    assert_eq!(changed.len(), 1, "layers that changed: {changed:?}");
    let listing = d.listing(&ld[changed[0]]);
    assert!(
        listing.iter().any(|l| l.ends_with(" app/handler.py"))
            && !listing.iter().any(|l| l.contains(" opt/")),
        "the changed layer is not the handler's alone:\n{listing:#?}"
    );
    let deps = lc
        .iter()
        .position(|l| c.listing(l).iter().any(|e| e.contains(" opt/deps/")))
        .expect("a layer with /opt/deps");
    assert_ne!(deps, changed[0]);
    println!(
        "handler-only change: the dependency step was CACHED; layer {deps} (/opt/deps, {}) is \
         shared; only layer {} (app/handler.py) differs",
        lc[deps], changed[0]
    );
    std::fs::remove_dir_all(&scratch).unwrap();
}
