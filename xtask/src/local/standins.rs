//! Offline stand-ins for the public base images, loaded into the engine under
//! their real names so the real Dockerfile builds unchanged without a registry.
//!
//! Each is built once: an image already in the engine (stand-in or real) is
//! kept, and a real image that can be pulled makes its stand-in unnecessary.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use xshell::{Shell, cmd};

use super::{Ctx, Health, apt, step};

pub(crate) const PYTHON: &str = "python:3.13-slim";
pub(crate) const ADAPTER: &str = "public.ecr.aws/awsguru/aws-lambda-adapter:0.9.1";
const ADAPTER_CRATE: &str = "lambda_web_adapter";
const ADAPTER_VERSION: &str = "0.9.1";
/// Marks images built here, so `status` can tell a stand-in from the real image.
const LABEL: &str = "xtask.local-stack.stand-in";
const PULL_TIMEOUT: Duration = Duration::from_secs(20);

/// A `cargo install` of the adapter running in the background.
/// Dropping it unfinished (`up` failed elsewhere) kills the build rather than
/// leaving an orphan compiler running.
pub(crate) struct AdapterBuild {
    child: Child,
    log: PathBuf,
    done: bool,
}

fn image_present(sh: &Shell, name: &str) -> bool {
    let fmt = "{{.Id}}";
    cmd!(sh, "docker image inspect --format {fmt} {name}")
        .quiet()
        .ignore_stdout()
        .ignore_stderr()
        .run()
        .is_ok()
}

fn describe(sh: &Shell, name: &str) -> String {
    let fmt = format!("{{{{index .Config.Labels \"{LABEL}\"}}}} {{{{.Size}}}}");
    match cmd!(sh, "docker image inspect --format {fmt} {name}")
        .quiet()
        .ignore_stderr()
        .read()
    {
        Ok(out) => {
            let mut parts = out.split_whitespace();
            let (kind, size) = match (parts.next(), parts.next()) {
                (Some("true"), Some(size)) => ("stand-in", size),
                (Some(size), None) => ("real image", size),
                (_, size) => ("real image", size.unwrap_or("0")),
            };
            let mb = size.parse::<u64>().unwrap_or(0) / 1_000_000;
            format!("{name} ({kind}, {mb} MB)")
        }
        Err(_) => format!("{name} MISSING"),
    }
}

/// Tries the real image, bounded, because an offline pull may hang on DNS or TCP.
fn try_pull(ctx: &Ctx<'_>, name: &str) -> anyhow::Result<bool> {
    step(format!(
        "trying `docker pull {name}` (up to {PULL_TIMEOUT:?})"
    ));
    let log = File::options()
        .create(true)
        .append(true)
        .open(ctx.paths.log("standins"))?;
    let mut child = Command::new("docker")
        .args(["pull", "--quiet", name])
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .spawn()
        .context("running docker pull")?;
    let started = Instant::now();
    loop {
        if let Some(status) = child.try_wait()? {
            return Ok(status.success());
        }
        if started.elapsed() > PULL_TIMEOUT {
            let _ = child.kill();
            let _ = child.wait();
            return Ok(false);
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn adapter_binary(ctx: &Ctx<'_>) -> PathBuf {
    ctx.paths.adapter_root().join("bin").join("lambda-adapter")
}

/// Starts `cargo install lambda_web_adapter` in the background when its
/// image is not in the engine and the binary is not built yet.
pub(crate) fn start_adapter_build(ctx: &Ctx<'_>) -> anyhow::Result<Option<AdapterBuild>> {
    if adapter_binary(ctx).exists() || image_present(ctx.sh, ADAPTER) {
        return Ok(None);
    }
    std::fs::create_dir_all(&ctx.paths.dir)?;
    let log = ctx.paths.log("adapter-build");
    let out = File::create(&log)?;
    // `cargo xtask` sets CARGO to the cargo that runs it; use the same toolchain.
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let child = Command::new(cargo)
        .args([
            "install",
            ADAPTER_CRATE,
            "--version",
            ADAPTER_VERSION,
            "--locked",
            "--root",
        ])
        .arg(ctx.paths.adapter_root())
        // A fixed target dir lets an interrupted build resume instead of starting over.
        .env("CARGO_TARGET_DIR", ctx.paths.dir.join("adapter-target"))
        .stdin(Stdio::null())
        .stdout(out.try_clone()?)
        .stderr(out)
        .spawn()
        .context("starting cargo install lambda_web_adapter")?;
    step(format!(
        "building lambda-adapter {ADAPTER_VERSION} in the background (cargo install, ~2.5 min; log {})",
        log.display()
    ));
    Ok(Some(AdapterBuild {
        child,
        log,
        done: false,
    }))
}

impl Drop for AdapterBuild {
    fn drop(&mut self) {
        if !self.done {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

impl AdapterBuild {
    fn wait(mut self) -> anyhow::Result<()> {
        step("waiting for the lambda-adapter build");
        let status = self.child.wait()?;
        self.done = true;
        if !status.success() {
            bail!(
                "cargo install {ADAPTER_CRATE} {ADAPTER_VERSION} failed ({status}); last lines of {}:\n{}",
                self.log.display(),
                super::process::tail(&self.log, 20)
            );
        }
        Ok(())
    }

    fn cancel(self) {
        // Drop kills it.
    }
}

fn ensure_adapter(ctx: &Ctx<'_>, build: Option<AdapterBuild>) -> anyhow::Result<()> {
    let sh = ctx.sh;
    if image_present(sh, ADAPTER) || try_pull(ctx, ADAPTER)? {
        if let Some(b) = build {
            b.cancel();
        }
        return Ok(());
    }
    let build = match build {
        Some(b) => Some(b),
        None if adapter_binary(ctx).exists() => None,
        None => start_adapter_build(ctx)?,
    };
    let t = Instant::now();
    if let Some(b) = build {
        b.wait()?;
        step(format!(
            "lambda-adapter built ({:.0}s after waiting began)",
            t.elapsed().as_secs_f64()
        ));
    }
    // The build tree (~240 MB) only served to resume an interrupted build.
    sh.remove_path(ctx.paths.dir.join("adapter-target"))?;
    let context = ctx.paths.standins().join("adapter-context");
    sh.remove_path(&context)?;
    sh.create_dir(&context)?;
    sh.copy_file(adapter_binary(ctx), context.join("lambda-adapter"))?;
    sh.write_file(
        context.join("Dockerfile"),
        format!(
            "# Offline stand-in for {ADAPTER}, generated by `cargo xtask local up`.\n\
             FROM scratch\nLABEL {LABEL}=true\nCOPY lambda-adapter /lambda-adapter\n\
             ENTRYPOINT [\"/lambda-adapter\"]\n"
        ),
    )?;
    step(format!("building the {ADAPTER} stand-in image"));
    cmd!(
        sh,
        "docker buildx build --load --provenance=false --quiet --tag {ADAPTER} {context}"
    )
    .quiet()
    .ignore_stdout()
    .run()
    .context("building the lambda-adapter stand-in image")?;
    Ok(())
}

fn ensure_python(ctx: &mut Ctx<'_>) -> anyhow::Result<()> {
    let sh = ctx.sh;
    if image_present(sh, PYTHON) || try_pull(ctx, PYTHON)? {
        return Ok(());
    }
    if !apt::can_install() {
        bail!(
            "{PYTHON} cannot be pulled and its stand-in needs root on Debian (debootstrap); make \
             the registry reachable or `docker load` the image, then rerun"
        );
    }
    if process_missing("debootstrap") {
        ctx.apt
            .install(sh, &["debootstrap"])
            .context("installing debootstrap")?;
    }
    let mirror = apt::mirror_uri()?;
    let root = ctx.paths.standins().join("python-root");
    // A previous run may have died half-way through debootstrap.
    sh.remove_path(&root)?;
    sh.create_dir(&root)?;
    let t = Instant::now();
    step(format!(
        "debootstrap trixie (python3, pip, venv) from {mirror} (~35 s)"
    ));
    let log = File::options()
        .create(true)
        .append(true)
        .open(ctx.paths.log("standins"))?;
    let status = Command::new("debootstrap")
        .args([
            "--variant=minbase",
            "--include=python3,python3-pip,python3-venv,ca-certificates",
        ])
        .arg("trixie")
        .arg(&root)
        .arg(&mirror)
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .status()
        .context("running debootstrap")?;
    if !status.success() {
        bail!(
            "debootstrap failed ({status}); see {}:\n{}",
            ctx.paths.log("standins").display(),
            super::process::tail(&ctx.paths.log("standins"), 15)
        );
    }
    step(format!(
        "debootstrap done in {:.0}s; adjusting the root",
        t.elapsed().as_secs_f64()
    ));
    adjust_python_root(sh, &root)?;
    import(&root, PYTHON)?;
    // The image now lives in the engine; the 300 MB tree is only needed to rebuild it.
    sh.remove_path(&root)?;
    Ok(())
}

fn process_missing(program: &str) -> bool {
    super::process::which(program).is_none()
}

/// Makes the debootstrapped tree behave like python:3.13-slim where the Dockerfile cares.
fn adjust_python_root(sh: &Shell, root: &Path) -> anyhow::Result<()> {
    // TLS to PyPI goes through an intercepting CA that only the host trusts;
    // keep a copy where update-ca-certificates (run by apt in image builds) will keep it.
    let host_bundle = Path::new("/etc/ssl/certs/ca-certificates.crt");
    if host_bundle.exists() {
        sh.copy_file(host_bundle, root.join("etc/ssl/certs/ca-certificates.crt"))?;
        sh.create_dir(root.join("usr/local/share/ca-certificates"))?;
        sh.copy_file(
            host_bundle,
            root.join("usr/local/share/ca-certificates/host-bundle.crt"),
        )?;
    }
    // The official image's Python is not Debian-managed, so `pip install` works system-wide.
    for entry in std::fs::read_dir(root.join("usr/lib"))?.flatten() {
        if entry.file_name().to_string_lossy().starts_with("python3") {
            let _ = std::fs::remove_file(entry.path().join("EXTERNALLY-MANAGED"));
        }
    }
    let bin = root.join("usr/local/bin");
    sh.create_dir(&bin)?;
    for (link, target) in [("python", "/usr/bin/python3"), ("pip", "/usr/bin/pip3")] {
        let _ = std::fs::remove_file(bin.join(link));
        std::os::unix::fs::symlink(target, bin.join(link))?;
    }
    // Size: caches, docs and man pages are not needed in a base image.
    for dir in [
        "var/cache/apt/archives",
        "var/lib/apt/lists",
        "usr/share/doc",
        "usr/share/man",
        "usr/share/info",
        "var/log",
    ] {
        let dir = root.join(dir);
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for e in entries.flatten() {
            if e.file_name() == "partial" || e.file_name() == "lock" {
                continue;
            }
            sh.remove_path(e.path())?;
        }
    }
    for f in [
        "var/cache/apt/pkgcache.bin",
        "var/cache/apt/srcpkgcache.bin",
    ] {
        let _ = std::fs::remove_file(root.join(f));
    }
    Ok(())
}

/// `tar -C root -c . | docker import … - name`, piped without a shell.
fn import(root: &Path, name: &str) -> anyhow::Result<()> {
    step(format!("importing the tree as {name}"));
    let mut tar = Command::new("tar")
        .args(["--numeric-owner", "-C"])
        .arg(root)
        .args(["-c", "."])
        .stdout(Stdio::piped())
        .stdin(Stdio::null())
        .spawn()
        .context("running tar")?;
    let tar_out = tar.stdout.take().context("tar stdout")?;
    let import = Command::new("docker")
        .args(["import"])
        .args([
            "-c",
            "ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        ])
        .args(["-c", "ENV LANG=C.UTF-8"])
        // pip from PyPI (e.g. upgraded inside a venv) uses certifi instead of
        // the system store, which lacks the host's intercepting CA.
        .args(["-c", "ENV PIP_CERT=/etc/ssl/certs/ca-certificates.crt"])
        .args(["-c", &format!("LABEL {LABEL}=true")])
        .args(["-c", "CMD [\"python3\"]", "-", name])
        .stdin(tar_out)
        .stdout(Stdio::null())
        .output()
        .context("running docker import")?;
    let tar_status = tar.wait()?;
    if !tar_status.success() {
        bail!("tar of {} failed ({tar_status})", root.display());
    }
    if !import.status.success() {
        bail!(
            "docker import {name} failed: {}",
            String::from_utf8_lossy(&import.stderr).trim()
        );
    }
    Ok(())
}

pub(crate) fn ensure(ctx: &mut Ctx<'_>, build: Option<AdapterBuild>) -> anyhow::Result<Health> {
    let started = Instant::now();
    ensure_python(ctx).with_context(|| format!("base image {PYTHON}"))?;
    ensure_adapter(ctx, build).with_context(|| format!("base image {ADAPTER}"))?;
    Ok(Health {
        name: "base-images",
        address: "docker engine".into(),
        healthy: true,
        health: format!(
            "{}, {}",
            describe(ctx.sh, PYTHON),
            describe(ctx.sh, ADAPTER)
        ),
        elapsed: started.elapsed(),
    })
}

pub(crate) fn status(ctx: &Ctx<'_>) -> Health {
    let started = Instant::now();
    let healthy = image_present(ctx.sh, PYTHON) && image_present(ctx.sh, ADAPTER);
    Health {
        name: "base-images",
        address: "docker engine".into(),
        healthy,
        health: format!(
            "{}, {}",
            describe(ctx.sh, PYTHON),
            describe(ctx.sh, ADAPTER)
        ),
        elapsed: started.elapsed(),
    }
}
