//! The images the stack and the app's build need, and offline stand-ins for them. The compose
//! file pins what it pulls by digest (its `${VAR:-default}` values); where an image cannot be
//! pulled, a stand-in from `infrastructure/local/standins/` is built under the real name
//! (without the digest) and passed to compose through the same variable, and used from then on
//! without another pull. The Lambda emulator is built here, tagged by its content.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use xshell::{Shell, cmd};

use super::{bounded, compose, fnv64, project, provision, run, stack_dir, step};
use crate::paths;

const PYTHON: &str = "python:3.13-slim";
/// The app's Dockerfile takes it by tag on the local stack (its `LWA_IMAGE` build argument).
const ADAPTER: &str = "public.ecr.aws/awsguru/aws-lambda-adapter:0.9.1";
const PULL_TIMEOUT: Duration = Duration::from_secs(20);

fn local_dir() -> PathBuf {
    paths::home().join("infrastructure/local")
}

/// The compose file's default for `${var:-default}`: the pinned image.
fn pinned(var: &str) -> Result<String> {
    let text = std::fs::read_to_string(local_dir().join("compose.yaml"))?;
    let start = format!("${{{var}:-");
    let at = text
        .find(&start)
        .with_context(|| format!("compose.yaml has no {start}…}}"))?;
    let rest = &text[at + start.len()..];
    Ok(rest.split('}').next().unwrap_or_default().to_string())
}

/// `Some(true)` for a stand-in built here, `Some(false)` for another image the engine has.
fn present(sh: &Shell, reference: &str) -> Option<bool> {
    let format = "{{index .Config.Labels \"xtask.local-stack.stand-in\"}}";
    let inspect = cmd!(sh, "docker image inspect --format {format} {reference}");
    let label = inspect.quiet().ignore_stderr().read().ok()?;
    Some(label.trim() == "true")
}

/// Tries the real image, bounded, because an offline pull may hang on DNS or TCP.
fn try_pull(reference: &str) -> Result<bool> {
    step(format!(
        "trying `docker pull {reference}` (up to {PULL_TIMEOUT:?})"
    ));
    let mut pull = Command::new("docker");
    pull.args(["pull", "--quiet", reference]);
    Ok(bounded(&mut pull, PULL_TIMEOUT)?.status.success())
}

/// `reference` when the engine has it or can pull it; otherwise its stand-in, built from
/// `dockerfile` on the python stand-in under the same name without the digest.
fn available(sh: &Shell, reference: &str, dockerfile: &str) -> Result<String> {
    let tag = reference.split('@').next().unwrap_or_default();
    if present(sh, reference).is_some() {
        return Ok(reference.to_string());
    }
    if present(sh, tag) == Some(true) {
        return Ok(format!("{tag} (stand-in)"));
    }
    if try_pull(reference)? {
        return Ok(format!("{reference} (pulled)"));
    }
    build_stand_in(sh, tag, dockerfile, &local_dir().join("standins"))?;
    Ok(format!("{tag} (stand-in, built)"))
}

/// Builds `infrastructure/local/standins/<dockerfile>` from `context` as `tag`.
fn build_stand_in(sh: &Shell, tag: &str, dockerfile: &str, context: &Path) -> Result<()> {
    step(format!("building the {tag} stand-in ({dockerfile})"));
    let file = local_dir().join("standins").join(dockerfile);
    cmd!(sh, "docker buildx build --load --provenance=false --quiet --build-arg BASE={PYTHON} --tag {tag} --file {file} {context}")
        .quiet()
        .ignore_stdout()
        .run()
        .with_context(|| format!("building the {tag} stand-in"))
}

/// The Lambda emulator's image, tagged by the content of its build context and its base, so
/// that an edit rebuilds it and an unchanged one is never rebuilt.
fn emulator_image(python: &str) -> Result<String> {
    let dir = local_dir().join("lambda");
    let entries = std::fs::read_dir(&dir).with_context(|| format!("reading {}", dir.display()))?;
    let mut files: Vec<PathBuf> = entries.flatten().map(|e| e.path()).collect();
    files.retain(|p| p.is_file());
    files.sort();
    let mut content = python.as_bytes().to_vec();
    for f in files {
        content.extend(f.file_name().unwrap_or_default().as_encoded_bytes());
        content.extend(std::fs::read(&f)?);
    }
    Ok(format!(
        "xtask-local/lambda-emulator:{:016x}",
        fnv64(&content)
    ))
}

/// The compose variables of the Lambda emulator (all a private emulator needs), building its
/// image when missing: on the pinned base where it can be pulled, on the stand-in where not.
pub(crate) fn emulator_env(sh: &Shell) -> Result<Vec<(String, String)>> {
    let python = match present(sh, PYTHON) {
        Some(true) => PYTHON.to_string(),
        _ => pinned("PYTHON_IMAGE")?,
    };
    let image = emulator_image(&python)?;
    let env = vec![
        ("PYTHON_IMAGE".to_string(), python),
        ("LAMBDA_IMAGE".to_string(), image.clone()),
    ];
    if present(sh, &image).is_none() {
        step(format!("building the Lambda emulator image {image}"));
        let build = compose(&project(), &env, &["build", "--quiet", "lambda"]);
        run(sh, &build).context("building the Lambda emulator image")?;
    }
    Ok(env)
}

/// Makes every image available; returns the report line and the compose variables.
pub(crate) fn ensure(sh: &Shell) -> Result<(String, Vec<(String, String)>)> {
    let mut notes = Vec::new();
    if present(sh, PYTHON).is_none() && !try_pull(PYTHON)? {
        python_stand_in(sh, PYTHON)?;
        notes.push(format!("{PYTHON} (stand-in, built)"));
    }
    let mut env = Vec::new();
    // The adapter only serves the app's build, and its stand-in's compile is the longest step of
    // a first `up`: it runs beside the others (with a shell of its own: a Shell is one thread's).
    let adapter = std::thread::scope(|scope| -> Result<String> {
        let adapter = scope.spawn(|| available(&paths::shell()?, ADAPTER, "adapter.Dockerfile"));
        for (var, file) in [("REGISTRY_IMAGE", "registry"), ("MOTO_IMAGE", "moto")] {
            let note = available(sh, &pinned(var)?, &format!("{file}.Dockerfile"))?;
            env.push((
                var.to_string(),
                note.split(' ').next().unwrap_or_default().into(),
            ));
            notes.push(note);
        }
        env.extend(emulator_env(sh)?);
        notes.push(env[env.len() - 1].1.clone());
        adapter.join().expect("the adapter build does not panic")
    })?;
    notes.push(adapter);
    Ok((notes.join(", "), env))
}

/// `tag` (python:3.13-slim) from a Debian trixie root filesystem (`python.Dockerfile`).
fn python_stand_in(sh: &Shell, tag: &str) -> Result<()> {
    if !provision::possible() {
        bail!(
            "{PYTHON} cannot be pulled and its stand-in needs root on Debian (debootstrap): make \
             a registry reachable or `docker load` the image, then rerun"
        );
    }
    if !provision::installed("debootstrap") {
        provision::install(&["debootstrap".to_string()])?;
    }
    let mirror = provision::mirror_uri()?;
    let (root, context) = (
        stack_dir().join("python-root"),
        stack_dir().join("python-image"),
    );
    // A previous run may have died half-way through debootstrap.
    let clean = || [&root, &context].iter().try_for_each(|d| sh.remove_path(d));
    clean()?;
    step(format!(
        "debootstrap trixie (python3, pip, venv) from {mirror} (~35 s)"
    ));
    let include = "--include=python3,python3-pip,python3-venv,ca-certificates";
    let mut debootstrap = Command::new("debootstrap");
    debootstrap
        .args(["--variant=minbase", include, "trixie"])
        .arg(&root)
        .arg(&mirror);
    provision::logged(&mut debootstrap, "debootstrap")?;
    sh.create_dir(&context)?;
    let host = Path::new("/etc/ssl/certs/ca-certificates.crt");
    let ca = if host.exists() {
        host.to_path_buf()
    } else {
        root.join(host.strip_prefix("/")?)
    };
    sh.copy_file(ca, context.join("host-ca.crt"))?;
    // Caches, docs and man pages are not needed in a base image.
    let mut tar = Command::new("tar");
    tar.args(["--numeric-owner", "-C"])
        .arg(&root)
        .arg("-cf")
        .arg(context.join("root.tar"));
    for skip in [
        "usr/share/doc",
        "usr/share/man",
        "var/lib/apt/lists/*",
        "var/cache/apt/archives/*.deb",
    ] {
        tar.arg(format!("--exclude=./{skip}"));
    }
    provision::logged(tar.arg("."), "debootstrap")?;
    build_stand_in(sh, tag, "python.Dockerfile", &context)?;
    // The image now lives in the engine; the 300 MB tree is only needed to rebuild it.
    Ok(clean()?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_compose_file_pins_what_it_pulls() {
        for var in ["REGISTRY_IMAGE", "MOTO_IMAGE", "PYTHON_IMAGE"] {
            let image = pinned(var).unwrap();
            let digest = image
                .split_once("@sha256:")
                .map(|(_, d)| d)
                .unwrap_or_default();
            assert!(
                digest.len() == 64 && digest.chars().all(|c| c.is_ascii_hexdigit()),
                "{var}: {image}"
            );
        }
        let e = pinned("NO_SUCH_IMAGE").unwrap_err().to_string();
        assert!(e.contains("compose.yaml has no ${NO_SUCH_IMAGE:-…}"), "{e}");
        let a = emulator_image(PYTHON).unwrap();
        assert!(
            a.starts_with("xtask-local/lambda-emulator:") && a != emulator_image("other").unwrap()
        );
    }
}
