//! `docker` and `docker buildx` command lines.

use anyhow::{Context, Result, bail};
use serde::Deserialize;

use crate::cmdline::CmdLine;
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
    /// The commit time: BuildKit stamps it into the image config and history, and an export
    /// with `rewrite-timestamp=true` clamps every newer file time in the layers to it, so
    /// clean builds of one commit give one digest.
    pub source_date_epoch: Option<i64>,
    pub export: Export<'a>,
}

/// How the image leaves the builder for the registry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Export<'a> {
    /// BuildKit pushes it, file times rewritten: any driver but `docker` (docker-container,
    /// remote, kubernetes; CI's setup-buildx builder).
    Registry,
    /// The `docker` driver forces `unpack`, which conflicts with `rewrite-timestamp`: an OCI
    /// archive with rewritten times instead, then [`load`] and [`push`], which keep the
    /// manifest byte for byte on the containerd image store.
    OciArchive(&'a str),
    /// The `docker` driver on the classic image store, whose push rewrites layers anyway:
    /// `--push`, with times as built (not reproducible).
    Push,
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
    if let Some(epoch) = b.source_date_epoch {
        cmd = cmd
            .arg("--build-arg")
            .arg(format!("SOURCE_DATE_EPOCH={epoch}"));
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
    match b.export {
        Export::Registry => cmd.args(["--output", "type=registry,rewrite-timestamp=true"]),
        Export::OciArchive(dest) => cmd
            .arg("--output")
            .arg(format!("type=oci,dest={dest},rewrite-timestamp=true")),
        Export::Push => cmd.arg("--push"),
    }
    .arg(b.context)
}

/// Loads an OCI archive into the engine, under the names it was built with.
pub fn load(archive: &str) -> CmdLine {
    CmdLine::new("docker").args(["load", "--input", archive])
}

/// Pushes one tag from the engine.
pub fn push(reference: &str) -> CmdLine {
    CmdLine::new("docker").args(["push", reference])
}

/// How Lambda starts an image, run by `/bin/sh` inside the container: the extension in
/// `/opt/extensions` in the background (Lambda starts extensions before the runtime), then the
/// image's own ENTRYPOINT and CMD, which become `"$@"`.
pub const LAMBDA_INIT: &str = "/opt/extensions/lambda-adapter & exec \"$@\"";

/// A function container under the Lambda emulator (see `local::lambda`).
#[derive(Debug, Clone, PartialEq)]
pub struct LambdaContainer<'a> {
    /// The container's name.
    pub name: &'a str,
    pub image: &'a str,
    pub platform: Platform,
    /// The function's memory size: the container's memory limit, as on Lambda.
    pub memory_mb: u32,
    /// `--label KEY=VALUE`, so the stack can tell its containers apart.
    pub labels: Vec<(String, String)>,
    /// `--env KEY=VALUE`: what Lambda sets (never a secret).
    pub env: Vec<(String, String)>,
    /// `--env-file`: the function's own variables, kept out of argv.
    pub env_file: Option<&'a str>,
    /// The image's ENTRYPOINT followed by its CMD (or the `<image-command>` placeholder).
    pub command: Vec<String>,
}

/// Runs a function container detached, the way Lambda runs an image: a read-only root with a
/// writable `/tmp`, the memory limit, no published port (clients go through the emulator's
/// Function URL), and the adapter started as an extension beside the image's own command.
pub fn run_lambda(c: &LambdaContainer<'_>) -> CmdLine {
    let mut cmd = CmdLine::new("docker").args([
        "run",
        "--detach",
        "--name",
        c.name,
        "--platform",
        c.platform.docker(),
        "--read-only",
        "--tmpfs",
        "/tmp",
        "--memory",
    ]);
    cmd = cmd.arg(format!("{}m", c.memory_mb));
    for (key, value) in &c.labels {
        cmd = cmd.arg("--label").arg(format!("{key}={value}"));
    }
    for (key, value) in &c.env {
        cmd = cmd.arg("--env").arg(format!("{key}={value}"));
    }
    if let Some(file) = c.env_file {
        cmd = cmd.args(["--env-file", file]);
    }
    cmd.args(["--entrypoint", "/bin/sh", c.image, "-c", LAMBDA_INIT, "sh"])
        .args(c.command.iter().cloned())
}

/// Fetches the image into the engine (a no-op when it is already there).
pub fn pull(image: &str, platform: Platform) -> CmdLine {
    CmdLine::new("docker").args(["pull", "--quiet", "--platform", platform.docker(), image])
}

/// Prints the image's configuration (ENTRYPOINT, CMD, ENV) as JSON.
pub fn image_config(image: &str) -> CmdLine {
    CmdLine::new("docker").args(["image", "inspect", "--format", "{{json .Config}}", image])
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct ImageConfigJson {
    entrypoint: Option<Vec<String>>,
    cmd: Option<Vec<String>>,
}

/// The command an image runs (ENTRYPOINT then CMD), from [`image_config`]'s output.
pub fn parse_image_command(text: &str) -> Result<Vec<String>> {
    let config: ImageConfigJson = serde_json::from_str(text.trim())
        .context("docker image inspect printed no image configuration JSON")?;
    let command: Vec<String> = config
        .entrypoint
        .unwrap_or_default()
        .into_iter()
        .chain(config.cmd.unwrap_or_default())
        .collect();
    if command.is_empty() {
        bail!("the image has neither ENTRYPOINT nor CMD: Lambda would have nothing to run");
    }
    Ok(command)
}

/// Prints the default bridge network's IPAM configuration (subnet, gateway) as JSON.
pub fn bridge_config() -> CmdLine {
    CmdLine::new("docker").args([
        "network",
        "inspect",
        "bridge",
        "--format",
        "{{json .IPAM.Config}}",
    ])
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct IpamConfig {
    #[serde(default)]
    gateway: String,
}

/// The host's IPv4 address on the default bridge (docker0), from [`bridge_config`]'s output:
/// the address containers reach the host on.
pub fn parse_bridge_gateway(text: &str) -> Result<std::net::Ipv4Addr> {
    let configs: Vec<IpamConfig> = serde_json::from_str(text.trim())
        .context("docker network inspect bridge printed no IPAM JSON")?;
    configs
        .iter()
        .find_map(|c| c.gateway.parse().ok())
        .with_context(|| format!("the bridge network has no IPv4 gateway: {}", text.trim()))
}

/// Whether a container runs, as `true`/`false` (fails when there is no such container).
pub fn running(container: &str) -> CmdLine {
    CmdLine::new("docker").args([
        "container",
        "inspect",
        "--format",
        "{{.State.Running}}",
        container,
    ])
}

/// Stops a container gracefully (SIGTERM, then SIGKILL after `seconds`), so open streams end
/// with the app's `shutdown` event.
pub fn stop(container: &str, seconds: u32) -> CmdLine {
    CmdLine::new("docker").args(["stop", "--time", &seconds.to_string(), container])
}

pub fn logs(container: &str) -> CmdLine {
    CmdLine::new("docker").args(["logs", container])
}

pub fn remove(container: &str) -> CmdLine {
    CmdLine::new("docker").args(["rm", "--force", container])
}

/// Every manifest kind a single-platform image or an index can have.
pub const MANIFEST_TYPES: [&str; 4] = [
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.v2+json",
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
];

/// The single-image manifest kinds Lambda accepts.
pub const IMAGE_MANIFESTS: [&str; 2] = [MANIFEST_TYPES[0], MANIFEST_TYPES[1]];

/// A reference as the registry describes it.
#[derive(Debug, Clone, PartialEq)]
pub struct Inspected {
    pub media_type: String,
    pub digest: String,
    pub architecture: Option<String>,
    pub os: Option<String>,
    /// A single image's `org.opencontainers.image.revision` label: the commit it was built from.
    pub revision: Option<String>,
    /// Its `org.opencontainers.image.created` label: that commit's time.
    pub created: Option<String>,
}

/// What `imagetools inspect --format '{{json .}}'` prints, as far as xtask reads it.
#[derive(Deserialize)]
struct InspectJson {
    name: Option<String>,
    manifest: Option<Descriptor>,
    /// For an index this is a map of platforms, not one config: only a single image's is read.
    image: Option<serde_json::Value>,
}

#[derive(Deserialize)]
struct Descriptor {
    #[serde(rename = "mediaType")]
    media_type: String,
    digest: Option<String>,
}

#[derive(Deserialize)]
struct ImageConfig {
    architecture: Option<String>,
    os: Option<String>,
    config: Option<RunConfig>,
}

#[derive(Deserialize)]
struct RunConfig {
    #[serde(rename = "Labels")]
    labels: Option<std::collections::BTreeMap<String, String>>,
}

/// Parses `docker buildx imagetools inspect REF --format '{{json .}}'`.
pub fn parse_inspect(text: &str) -> Result<Inspected> {
    let parsed: InspectJson = serde_json::from_str(text)
        .context("imagetools inspect printed no JSON (or not the expected shape)")?;
    let manifest = parsed
        .manifest
        .context("imagetools inspect printed no manifest descriptor")?;
    let digest = manifest
        .digest
        .or_else(|| {
            parsed
                .name
                .as_deref()
                .and_then(|n| n.split_once('@'))
                .map(|(_, d)| d.to_string())
        })
        .context("imagetools inspect gave no digest")?;
    // An index's `image` maps platforms to configs; it then has no single architecture.
    let config = parsed
        .image
        .and_then(|v| serde_json::from_value::<ImageConfig>(v).ok());
    let label = |key: &str| {
        config
            .as_ref()
            .and_then(|c| c.config.as_ref())
            .and_then(|c| c.labels.as_ref())
            .and_then(|l| l.get(key).cloned())
    };
    Ok(Inspected {
        media_type: manifest.media_type,
        digest,
        architecture: config.as_ref().and_then(|c| c.architecture.clone()),
        os: config.as_ref().and_then(|c| c.os.clone()),
        revision: label("org.opencontainers.image.revision"),
        created: label("org.opencontainers.image.created"),
    })
}

/// Lambda takes a single-platform image manifest, for its architecture, with the pushed digest.
pub fn verify_manifest(found: &Inspected, expected_digest: &str, platform: Platform) -> Result<()> {
    if !IMAGE_MANIFESTS.contains(&found.media_type.as_str()) {
        bail!(
            "the registry holds a {} (not a single image manifest): Lambda rejects image indexes; \
             build with --provenance=false --sbom=false and a single --platform",
            found.media_type
        );
    }
    if found.digest != expected_digest {
        bail!(
            "the registry's digest {} is not the one the build reported ({expected_digest}): \
             another push raced this one or the registry rewrote the manifest",
            found.digest
        );
    }
    if found.architecture.as_deref() != Some(platform.oci_arch())
        || found.os.as_deref() != Some("linux")
    {
        bail!(
            "the image is for {}/{}, but the settings' platform is {platform}",
            found.os.as_deref().unwrap_or("?"),
            found.architecture.as_deref().unwrap_or("?")
        );
    }
    Ok(())
}

/// What buildx's `--metadata-file` holds, as far as xtask reads it.
#[derive(Deserialize)]
pub struct BuildMetadata {
    #[serde(rename = "containerimage.digest")]
    pub digest: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manifests_are_checked() {
        let good = Inspected {
            media_type: "application/vnd.oci.image.manifest.v1+json".into(),
            digest: "sha256:aa".into(),
            architecture: Some("amd64".into()),
            os: Some("linux".into()),
            revision: None,
            created: None,
        };
        verify_manifest(&good, "sha256:aa", Platform::Amd64).unwrap();
        let e = verify_manifest(&good, "sha256:bb", Platform::Amd64)
            .unwrap_err()
            .to_string();
        assert!(e.contains("not the one the build reported"), "{e}");
        let e = verify_manifest(&good, "sha256:aa", Platform::Arm64)
            .unwrap_err()
            .to_string();
        assert!(e.contains("platform is linux/arm64"), "{e}");
        let index = Inspected {
            media_type: "application/vnd.oci.image.index.v1+json".into(),
            ..good
        };
        let e = verify_manifest(&index, "sha256:aa", Platform::Amd64)
            .unwrap_err()
            .to_string();
        assert!(e.contains("Lambda rejects image indexes"), "{e}");
    }

    #[test]
    fn lambda_containers_run_like_lambda() {
        let line = run_lambda(&LambdaContainer {
            name: "fn-1",
            image: "r/x@sha256:aa",
            platform: Platform::Amd64,
            memory_mb: 512,
            labels: vec![("xtask.function".into(), "fn-1".into())],
            env: vec![("AWS_LAMBDA_FUNCTION_NAME".into(), "fn-1".into())],
            env_file: Some("/s/fn-1.env"),
            command: vec!["python".into(), "-m".into(), "uvicorn".into()],
        });
        assert_eq!(
            line.to_string(),
            "docker run --detach --name fn-1 --platform linux/amd64 --read-only --tmpfs /tmp \
             --memory 512m --label xtask.function=fn-1 --env AWS_LAMBDA_FUNCTION_NAME=fn-1 \
             --env-file /s/fn-1.env --entrypoint /bin/sh r/x@sha256:aa \
             -c \"/opt/extensions/lambda-adapter & exec \\\"$@\\\"\" sh python -m uvicorn"
        );
        assert_eq!(line.args[line.args.len() - 5], LAMBDA_INIT);
    }

    #[test]
    fn image_commands_and_bridge_addresses_parse() {
        let config = r#"{"Cmd":["python","-m","uvicorn"],"Entrypoint":null,"Env":["A=1"]}"#;
        assert_eq!(
            parse_image_command(config).unwrap(),
            ["python", "-m", "uvicorn"]
        );
        let both = r#"{"Cmd":["x"],"Entrypoint":["/entry"]}"#;
        assert_eq!(parse_image_command(both).unwrap(), ["/entry", "x"]);
        let e = parse_image_command(r#"{"Cmd":null}"#)
            .unwrap_err()
            .to_string();
        assert!(e.contains("neither ENTRYPOINT nor CMD"), "{e}");
        let ipam = r#"[{"Subnet":"fd00::/64","Gateway":"fd00::1"},{"Subnet":"172.17.0.0/16","Gateway":"172.17.0.1"}]"#;
        assert_eq!(
            parse_bridge_gateway(ipam).unwrap().to_string(),
            "172.17.0.1"
        );
        assert!(parse_bridge_gateway(r#"[{"Subnet":"172.17.0.0/16"}]"#).is_err());
    }

    #[test]
    fn inspect_output_parses_for_images_and_indexes() {
        let image = r#"{"name":"r/x:t","manifest":{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:aa","size":1},"image":{"architecture":"amd64","os":"linux","config":{}}}"#;
        let got = parse_inspect(image).unwrap();
        assert_eq!(got.digest, "sha256:aa");
        assert_eq!(got.revision, None);
        let labelled = image.replace(
            r#""config":{}"#,
            r#""config":{"Labels":{"org.opencontainers.image.revision":"abc","org.opencontainers.image.created":"2026-11-27T12:00:00Z"}}"#,
        );
        let got = parse_inspect(&labelled).unwrap();
        assert_eq!(got.revision.as_deref(), Some("abc"));
        assert_eq!(got.created.as_deref(), Some("2026-11-27T12:00:00Z"));
        assert_eq!(got.architecture.as_deref(), Some("amd64"));
        let index = r#"{"name":"r/x:t","manifest":{"mediaType":"application/vnd.oci.image.index.v1+json","digest":"sha256:bb","manifests":[]},"image":{"linux/amd64":{"architecture":"amd64"}}}"#;
        let got = parse_inspect(index).unwrap();
        assert_eq!(got.media_type, "application/vnd.oci.image.index.v1+json");
        assert_eq!(got.architecture, None);
        assert!(
            parse_inspect(r#"{"name":"x"}"#).is_err(),
            "no manifest is an error, not an empty string"
        );
        assert!(parse_inspect("not json").is_err());
    }
}
