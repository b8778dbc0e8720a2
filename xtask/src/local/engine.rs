//! The Docker engine the stack runs on: the user's own (Docker Desktop, OrbStack, colima, or
//! Docker on Linux for a member of the `docker` group), used as it is. `local up` checks what
//! it needs and names every missing piece with its fix; it never changes the engine. Only where
//! no engine answers, on a root Debian machine (CI), `provision` installs and starts one.

use anyhow::{Result, bail};
use xshell::{Shell, cmd};

use super::provision;

/// Compose 2.23.1 added `configs.content`, which holds the registries' htpasswd.
const COMPOSE_MIN: (u32, u32, u32) = (2, 23, 1);

const FIX_DESKTOP: &str = "Docker Desktop / OrbStack: start the app; for the image store, Docker \
     Desktop Settings > General > \"Use containerd for pulling and storing images\"";
const FIX_COLIMA: &str = "colima: `colima start --vm-type vz` (Docker runtime); for the image \
     store, `docker: {features: {containerd-snapshotter: true}}` in ~/.colima/default/colima.yaml, \
     then `colima delete && colima start`";
const FIX_LINUX: &str = "Linux: Docker Engine 25+ with the buildx and compose plugins \
     (docker-ce, docker-buildx-plugin, docker-compose-plugin from docs.docker.com/engine/install), \
     `\"features\": {\"containerd-snapshotter\": true}` in /etc/docker/daemon.json (the default on \
     fresh Engine 29 installs), and your user in the `docker` group";

/// What `docker info`, `docker buildx version` and `docker compose version` print (empty when
/// they fail).
fn probe(sh: &Shell) -> [String; 3] {
    let read = |c: xshell::Cmd<'_>| c.quiet().ignore_stderr().read().unwrap_or_default();
    let format = "{{.ServerVersion}} {{json .DriverStatus}}";
    [
        read(cmd!(sh, "docker info --format {format}")),
        read(cmd!(sh, "docker buildx version")),
        read(cmd!(sh, "docker compose version --short")),
    ]
}

/// What the engine offers, or everything it lacks with the fixes.
fn verdict([info, buildx, compose]: &[String; 3]) -> Result<String> {
    let (server, status) = info.trim().split_once(' ').unwrap_or_default();
    let (buildx, compose) = (buildx.trim(), compose.trim());
    let missing: Vec<String> = if server.is_empty() {
        vec!["no Docker engine answers (`docker info`)".into()]
    } else {
        [
            (
                buildx.is_empty(),
                "the buildx plugin (`docker buildx version` fails)".into(),
            ),
            (
                compose.is_empty(),
                "the compose plugin (`docker compose version` fails)".into(),
            ),
            (
                !compose.is_empty() && version(compose) < COMPOSE_MIN,
                format!("Compose 2.23.1 or newer (found {compose})"),
            ),
            // It keeps a pushed single-platform manifest byte for byte; the classic store
            // rewrites it on push, and its default builder cannot export a registry cache.
            (
                !status.contains("io.containerd.snapshotter"),
                "the containerd image store (`docker info -f '{{.DriverStatus}}'` shows no \
                 io.containerd.snapshotter.v1)"
                    .into(),
            ),
        ]
        .into_iter()
        .filter_map(|(missing, what)| missing.then_some(what))
        .collect()
    };
    if !missing.is_empty() {
        bail!(
            "the local stack needs a Docker engine with buildx, compose and the containerd image \
             store. Missing: {}.\nFix:\n- {FIX_DESKTOP}\n- {FIX_COLIMA}\n- {FIX_LINUX}\nthen rerun \
             `cargo xtask local up`.",
            missing.join("; ")
        );
    }
    let buildx = buildx.split_whitespace().nth(1).unwrap_or("?");
    Ok(format!(
        "engine {server}, buildx {buildx}, compose {compose}, containerd image store"
    ))
}

/// `2.26.1-4` or `v2.27.0-desktop.2` as (2, 26, 1).
fn version(text: &str) -> (u32, u32, u32) {
    let text = text.trim_start_matches('v');
    let mut parts = text
        .split(|c: char| !c.is_ascii_digit())
        .map(|p| p.parse().unwrap_or(0));
    let mut next = || parts.next().unwrap_or(0);
    (next(), next(), next())
}

/// Where the engine is, for the report line.
pub(crate) fn address() -> String {
    std::env::var("DOCKER_HOST").unwrap_or_else(|_| "default context".into())
}

/// Checks the engine; with `install`, a bare root Debian machine gets one installed first.
pub(crate) fn ensure(sh: &Shell, install: bool) -> Result<String> {
    let mut found = probe(sh);
    let mut how = "used as it is";
    if install && found[0].trim().is_empty() && provision::possible() {
        provision::engine()?;
        found = probe(sh);
        how = "installed and started by xtask";
    }
    Ok(format!("{}, {how}", verdict(&found)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_missing_piece_is_named() {
        let probed = |info: &str, buildx: &str, compose: &str| {
            verdict(&[info.into(), buildx.into(), compose.into()]).map_err(|e| e.to_string())
        };
        let none = probed("", "", "").unwrap_err();
        assert!(
            none.contains("Missing: no Docker engine answers (`docker info`).")
                && !none.contains("buildx plugin"),
            "no engine: nothing else can be probed: {none}"
        );
        let old = probed("26.1.5 [[\"Backing Filesystem\",\"extfs\"]]", "", "2.20.2").unwrap_err();
        assert!(
            old.contains("buildx plugin")
                && old.contains("Compose 2.23.1 or newer (found 2.20.2)")
                && old.contains("containerd image store")
                && old.contains("colima start"),
            "{old}"
        );
        let store = "28.0.1 [[\"driver-type\",\"io.containerd.snapshotter.v1\"]]";
        let buildx = "github.com/docker/buildx v0.21.1 abc\n";
        let good = probed(store, buildx, "v2.33.1-desktop.1\n").unwrap();
        assert!(
            good.contains("engine 28.0.1, buildx v0.21.1, compose v2.33.1-desktop.1"),
            "{good}"
        );
        assert_eq!(version("2.26.1-4"), (2, 26, 1));
        assert!(version("2.23.1") >= COMPOSE_MIN && version("2.9.0") < COMPOSE_MIN);
    }
}
