//! `docker` and `docker buildx` command lines.

use crate::plan::CmdLine;
use crate::settings::Platform;

/// `docker login` reading the password from stdin, never from argv.
pub fn login(registry: &str) -> CmdLine {
    CmdLine::new("docker").args(["login", "--username", "AWS", "--password-stdin", registry])
}

/// Reads a tag or digest from the registry: prints the manifest descriptor and image config
/// as JSON. A missing reference exits non-zero with "not found".
pub fn inspect(reference: &str) -> CmdLine {
    CmdLine::new("docker").args([
        "buildx",
        "imagetools",
        "inspect",
        reference,
        "--format",
        "{{json .}}",
    ])
}

/// Everything that decides one `docker buildx build`.
#[derive(Debug, Clone, PartialEq)]
pub struct Build<'a> {
    pub builder: Option<&'a str>,
    pub platform: Platform,
    pub dockerfile: &'a str,
    pub context: &'a str,
    pub labels: Vec<(String, String)>,
    pub build_args: Vec<(String, String)>,
    /// `REPO:buildcache`; the cache is imported always, exported when the builder can.
    pub cache_ref: String,
    pub export_cache: bool,
    pub metadata_file: &'a str,
    pub tags: Vec<String>,
}

pub fn build(b: &Build<'_>) -> CmdLine {
    let mut cmd = CmdLine::new("docker").args(["buildx", "build"]);
    if let Some(builder) = b.builder {
        cmd = cmd.args(["--builder", builder]);
    }
    cmd = cmd
        .args(["--platform", b.platform.docker()])
        // Lambda rejects an image index, and attestations turn the push into one.
        .args(["--provenance=false", "--sbom=false"])
        .args(["--file", b.dockerfile]);
    for (key, value) in &b.labels {
        cmd = cmd.arg("--label").arg(format!("{key}={value}"));
    }
    for (key, value) in &b.build_args {
        cmd = cmd.arg("--build-arg").arg(format!("{key}={value}"));
    }
    cmd = cmd
        .arg("--cache-from")
        .arg(format!("type=registry,ref={}", b.cache_ref));
    if b.export_cache {
        cmd = cmd.arg("--cache-to").arg(format!(
            "type=registry,ref={},mode=max,image-manifest=true,oci-mediatypes=true",
            b.cache_ref
        ));
    }
    cmd = cmd.args(["--metadata-file", b.metadata_file]);
    for tag in &b.tags {
        cmd = cmd.args(["--tag", tag]);
    }
    cmd.args(["--push", b.context])
}

/// Runs the image detached, its port 8080 published on a free loopback port.
pub fn run_detached(image: &str, platform: Platform) -> CmdLine {
    CmdLine::new("docker").args([
        "run",
        "--detach",
        "--platform",
        platform.docker(),
        "--publish",
        "127.0.0.1::8080",
        image,
    ])
}

pub fn port(container: &str) -> CmdLine {
    CmdLine::new("docker").args(["port", container, "8080/tcp"])
}

pub fn logs(container: &str) -> CmdLine {
    CmdLine::new("docker").args(["logs", container])
}

pub fn remove(container: &str) -> CmdLine {
    CmdLine::new("docker").args(["rm", "--force", container])
}
