//! `docker` and `docker buildx` command lines, the bake file, and what the registry and the
//! engine print, parsed. No I/O happens here.

use std::collections::BTreeMap;

use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::cmdline::{Arg, CmdLine, Slot};
use crate::settings::Platform;

/// `docker` and `words`: a subcommand and fixed flags, none with a space.
fn docker(words: &str) -> CmdLine {
    CmdLine::new("docker").args(words.split_whitespace())
}

/// `docker login` reading the password from stdin, never from argv.
pub fn login(registry: &str) -> CmdLine {
    docker("login --username AWS --password-stdin").arg(registry)
}

/// Reads a tag or digest from the registry: prints the manifest descriptor and image config
/// as JSON. A missing reference exits non-zero with "not found".
pub fn inspect(reference: &str) -> CmdLine {
    inspect_arg(reference.into())
}

/// [`inspect`] of a reference that may hold a slot (`repo@<digest:NAME>`).
pub fn inspect_arg(reference: Arg) -> CmdLine {
    let cmd = docker("buildx imagetools inspect").arg(reference);
    cmd.args(["--format", "{{json .}}"])
}

/// One function's build, as a target of the bake file (`docker buildx bake --print` names
/// every key). Serialized as buildx reads it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct BakeTarget {
    /// The function: the target's name, and the key of its digest in the metadata file.
    #[serde(skip)]
    pub name: String,
    pub context: String,
    /// Relative to `context` (or absolute when the Dockerfile lies outside it).
    pub dockerfile: String,
    pub platforms: Vec<String>,
    pub args: BTreeMap<String, String>,
    pub labels: BTreeMap<String, String>,
    pub tags: Vec<String>,
    pub cache_from: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub cache_to: Vec<String>,
    pub output: Vec<String>,
    /// Lambda rejects an image index, and attestations turn the push into one.
    pub attest: Vec<String>,
}

/// Everything that decides one function's build.
#[derive(Debug, Clone)]
pub struct Build<'a> {
    pub name: &'a str,
    pub platform: Platform,
    pub dockerfile: &'a str,
    pub context: &'a str,
    pub labels: Vec<(String, String)>,
    pub build_args: Vec<(String, String)>,
    /// `REPO:buildcache`; the cache is imported always, exported when the builder can.
    pub cache_ref: String,
    pub export_cache: bool,
    pub tags: Vec<String>,
    /// The commit time: BuildKit stamps it into the image config and history. Every file the
    /// Dockerfiles add has the fixed time 0, so one commit gives one digest from any cache.
    pub source_date_epoch: Option<i64>,
}

pub fn bake_target(b: &Build<'_>) -> BakeTarget {
    let dockerfile = match b.dockerfile.strip_prefix(&format!("{}/", b.context)) {
        Some(inside) => inside.to_string(),
        None => crate::paths::root()
            .join(b.dockerfile)
            .display()
            .to_string(),
    };
    let mut args: BTreeMap<String, String> = b.build_args.iter().cloned().collect();
    let epoch = b
        .source_date_epoch
        .map(|e| ("SOURCE_DATE_EPOCH".to_string(), e.to_string()));
    args.extend(epoch);
    let cache = format!("type=registry,ref={}", b.cache_ref);
    let export = format!("{cache},mode=max,image-manifest=true,oci-mediatypes=true");
    BakeTarget {
        name: b.name.to_string(),
        context: b.context.to_string(),
        dockerfile,
        platforms: vec![b.platform.docker().to_string()],
        args,
        labels: b.labels.iter().cloned().collect(),
        tags: b.tags.clone(),
        cache_from: vec![cache],
        cache_to: b.export_cache.then_some(export).into_iter().collect(),
        // The image exporter pushes the manifest as built, on every driver: no OCI archive,
        // no `docker load`, no second push. OCI media types, like the registry cache.
        output: vec!["type=image,push=true,oci-mediatypes=true".into()],
        attest: ["provenance", "sbom"]
            .map(|a| format!("type={a},disabled=true"))
            .into(),
    }
}

/// The bake file for `targets`: one group, `default`, of all of them.
pub fn bake_file<'a>(targets: impl Iterator<Item = &'a BakeTarget> + Clone) -> String {
    let names: Vec<&str> = targets.clone().map(|t| t.name.as_str()).collect();
    let targets: BTreeMap<&str, &BakeTarget> = targets.map(|t| (t.name.as_str(), t)).collect();
    let file = serde_json::json!({
        "group": { "default": { "targets": names } },
        "target": targets,
    });
    serde_json::to_string_pretty(&file).unwrap_or_default()
}

/// Where a build runs: the active builder, a named buildx builder, or another engine's
/// default builder through its docker context (buildx refuses `--builder` for those).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Builder {
    Active,
    Named(String),
    Context(String),
}

/// `docker buildx bake` of the file's default group, digests to `metadata`.
pub fn bake(builder: &Builder, file: &str, metadata: &str) -> CmdLine {
    let (context, named) = match builder {
        Builder::Active => (vec![], vec![]),
        Builder::Named(name) => (vec![], vec!["--builder", name.as_str()]),
        Builder::Context(context) => (vec!["--context", context.as_str()], vec![]),
    };
    let cmd = CmdLine::new("docker")
        .args(context)
        .args(["buildx", "bake"]);
    cmd.args(named)
        .args(["--file", file, "--metadata-file", metadata])
}

/// Carried by every function container xtask starts, with the function's name.
pub const FUNCTION_LABEL: &str = "xtask.lambda-function";

pub fn lambda_labels(function: &str) -> Vec<(String, String)> {
    vec![(FUNCTION_LABEL.to_string(), function.to_string())]
}

/// The variables Lambda sets for a function, pointed at the emulator's Runtime API
/// (`<lambda-api>`, `HOST:PORT/.rt`) under the function's own name. The adapter takes the
/// prefixed API through two variables: `AWS_LAMBDA_RUNTIME_API` (extension registration, no
/// scheme) and `AWS_LWA_LAMBDA_RUNTIME_API_PROXY` (its runtime client, with scheme).
pub fn lambda_environment(function: &str, memory_mb: u32, region: &str) -> Vec<(String, Arg)> {
    let api = Arg::from(Slot::LambdaApi).then(format!("/{function}"));
    let vars = [
        ("AWS_LAMBDA_RUNTIME_API", api.clone()),
        (
            "AWS_LWA_LAMBDA_RUNTIME_API_PROXY",
            Arg::from("http://").then(api.clone()),
        ),
        ("AWS_LAMBDA_FUNCTION_NAME", function.into()),
        ("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST".into()),
        (
            "AWS_LAMBDA_FUNCTION_MEMORY_SIZE",
            memory_mb.to_string().into(),
        ),
        ("AWS_REGION", region.into()),
        ("AWS_DEFAULT_REGION", region.into()),
    ];
    vars.into_iter().map(|(k, v)| (k.to_string(), v)).collect()
}

/// How Lambda starts an image, run by `/bin/sh` inside the container: the extension in
/// `/opt/extensions` in the background (Lambda starts extensions before the runtime), then the
/// image's own ENTRYPOINT and CMD, which become `"$@"`.
pub const LAMBDA_INIT: &str = "/opt/extensions/lambda-adapter & exec \"$@\"";

/// A function container under the Lambda emulator (see `local::lambda`).
#[derive(Debug, Clone, PartialEq)]
pub struct LambdaContainer<'a> {
    pub name: &'a str,
    pub image: Arg,
    pub platform: Platform,
    /// The function's memory size: the container's memory limit, as on Lambda.
    pub memory_mb: u32,
    /// The Lambda emulator's network (or the `<lambda-network>` placeholder).
    pub network: Arg,
    /// `--label KEY=VALUE`, so the stack can tell its containers apart.
    pub labels: Vec<(String, String)>,
    /// `--env KEY=VALUE`: what Lambda sets (never a secret).
    pub env: Vec<(String, Arg)>,
    /// `--env-file`: the function's own variables, kept out of argv.
    pub env_file: Option<&'a str>,
    /// The image's ENTRYPOINT followed by its CMD (or the `<image-command>` placeholder).
    pub command: Vec<Arg>,
}

/// Runs a function container detached, the way Lambda runs an image: a read-only root with a
/// writable `/tmp`, the memory limit, no published port (clients go through the emulator's
/// Function URL), and the adapter started as an extension beside the image's own command.
pub fn run_lambda(c: &LambdaContainer<'_>) -> CmdLine {
    let (platform, memory) = (c.platform.docker(), format!("{}m", c.memory_mb));
    let cmd = docker("run --detach --name").arg(c.name).arg("--platform");
    let cmd = cmd
        .arg(platform)
        .args(["--read-only", "--tmpfs", "/tmp", "--network"]);
    let mut cmd = cmd.arg(c.network.clone()).args(["--memory", &memory]);
    for (key, value) in &c.labels {
        cmd = cmd.arg("--label").arg(format!("{key}={value}"));
    }
    for (key, value) in &c.env {
        cmd = cmd
            .arg("--env")
            .arg(Arg::from(format!("{key}=")).then(value.clone()));
    }
    if let Some(file) = c.env_file {
        cmd = cmd.args(["--env-file", file]);
    }
    let cmd = cmd.args(["--entrypoint", "/bin/sh"]).arg(c.image.clone());
    cmd.args(["-c", LAMBDA_INIT, "sh"])
        .args(c.command.iter().cloned())
}

/// Fetches the image into the engine (a no-op when it is already there).
pub fn pull(image: Arg, platform: Platform) -> CmdLine {
    docker("pull --quiet --platform")
        .args([platform.docker()])
        .arg(image)
}

/// Prints the image's configuration (ENTRYPOINT, CMD, ENV) as JSON.
pub fn image_config(image: Arg) -> CmdLine {
    docker("image inspect")
        .args(["--format", "{{json .Config}}"])
        .arg(image)
}

/// The command an image runs (ENTRYPOINT then CMD), from [`image_config`]'s output.
pub fn parse_image_command(text: &str) -> Result<Vec<String>> {
    let config: BTreeMap<String, Value> = serde_json::from_str(text.trim())
        .context("docker image inspect printed no image configuration JSON")?;
    let words = |key| {
        config
            .get(key)
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
    };
    let command = words("Entrypoint").chain(words("Cmd"));
    let command: Vec<String> = command
        .filter_map(|w| Some(w.as_str()?.to_string()))
        .collect();
    if command.is_empty() {
        bail!("the image has neither ENTRYPOINT nor CMD: Lambda would have nothing to run");
    }
    Ok(command)
}

/// Stops a container gracefully (SIGTERM, then SIGKILL after `seconds`), so open streams end
/// with the app's `shutdown` event.
pub fn stop(container: &str, seconds: u32) -> CmdLine {
    docker("stop --time").args([&seconds.to_string(), container])
}

pub fn logs(container: &str) -> CmdLine {
    docker("logs").arg(container)
}

pub fn remove(container: &str) -> CmdLine {
    docker("rm --force").arg(container)
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

/// Parses `docker buildx imagetools inspect REF --format '{{json .}}'`: the manifest
/// descriptor, and for a single image its config (an index's `image` maps platforms to
/// configs, so it has no single architecture).
pub fn parse_inspect(text: &str) -> Result<Inspected> {
    let json: Value = serde_json::from_str(text)
        .context("imagetools inspect printed no JSON (or not the expected shape)")?;
    let text = |pointer: &str| Some(json.pointer(pointer)?.as_str()?.to_string());
    let label = |key: &str| {
        text(&format!(
            "/image/config/Labels/org.opencontainers.image.{key}"
        ))
    };
    let media_type = text("/manifest/mediaType");
    let media_type = media_type.context("imagetools inspect printed no manifest descriptor")?;
    let named = text("/name").and_then(|n| Some(n.split_once('@')?.1.to_string()));
    let digest = text("/manifest/digest").or(named);
    Ok(Inspected {
        media_type,
        digest: digest.context("imagetools inspect gave no digest")?,
        architecture: text("/image/architecture"),
        os: text("/image/os"),
        revision: label("revision"),
        created: label("created"),
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
    let (os, arch) = (found.os.as_deref(), found.architecture.as_deref());
    if arch != Some(platform.oci_arch()) || os != Some("linux") {
        let (os, arch) = (os.unwrap_or("?"), arch.unwrap_or("?"));
        bail!("the image is for {os}/{arch}, but the settings' platform is {platform}");
    }
    Ok(())
}

/// One target of what bake's `--metadata-file` holds, as far as xtask reads it.
#[derive(Deserialize)]
pub struct BuildMetadata {
    #[serde(rename = "containerimage.digest")]
    pub digest: String,
}

/// Bake's metadata file: target name → its build's metadata.
pub type BakeMetadata = BTreeMap<String, BuildMetadata>;

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
            image: "r/x@sha256:aa".into(),
            platform: Platform::Amd64,
            memory_mb: 512,
            network: "xtask-local_default".into(),
            labels: vec![("xtask.function".into(), "fn-1".into())],
            env: vec![("AWS_LAMBDA_FUNCTION_NAME".into(), "fn-1".into())],
            env_file: Some("/s/fn-1.env"),
            command: vec!["python".into(), "-m".into(), "uvicorn".into()],
        });
        assert_eq!(
            line.to_string(),
            "docker run --detach --name fn-1 --platform linux/amd64 --read-only --tmpfs /tmp \
             --network xtask-local_default --memory 512m --label xtask.function=fn-1 --env AWS_LAMBDA_FUNCTION_NAME=fn-1 \
             --env-file /s/fn-1.env --entrypoint /bin/sh r/x@sha256:aa \
             -c \"/opt/extensions/lambda-adapter & exec \\\"$@\\\"\" sh python -m uvicorn"
        );
        assert_eq!(line.args[line.args.len() - 5].to_string(), LAMBDA_INIT);
    }

    #[test]
    fn image_commands_parse() {
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
