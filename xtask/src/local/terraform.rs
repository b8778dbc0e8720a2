//! Terraform that initializes offline: a CLI config pointing at the
//! hashicorp/aws provider mirror found on this machine (searched, then cached),
//! or at the public registry when no mirror exists.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use xshell::cmd;

use super::{Ctx, Health, step};

const PROVIDER: &str = "registry.terraform.io/hashicorp/aws";
const INSTALL_HINT: &str = "install Terraform 1.5 or newer: https://developer.hashicorp.com/terraform/install \
     (Debian: HashiCorp's apt repository, then `apt-get install terraform`)";
/// Bounds the filesystem-wide search so a huge or hung mount cannot stall `up`.
const FIND_TIMEOUT: Duration = Duration::from_secs(90);

/// The provider versions under a mirror root (`<root>/registry.terraform.io/hashicorp/aws/<version>/<os_arch>/terraform-provider-aws_*`).
fn provider_versions(root: &Path) -> Vec<String> {
    let Ok(versions) = std::fs::read_dir(root.join(PROVIDER)) else {
        return Vec::new();
    };
    let mut found: Vec<String> = versions
        .flatten()
        .filter(|v| {
            std::fs::read_dir(v.path().join("linux_amd64")).is_ok_and(|files| {
                files.flatten().any(|f| {
                    f.file_name()
                        .to_string_lossy()
                        .starts_with("terraform-provider-aws_")
                })
            })
        })
        .map(|v| v.file_name().to_string_lossy().into_owned())
        .collect();
    found.sort();
    found
}

/// Mirror root from the path of a provider binary, if it has the unpacked mirror layout.
fn root_of(binary: &Path) -> Option<PathBuf> {
    let arch = binary.parent()?;
    let version = arch.parent()?;
    let aws = version.parent()?;
    let hashicorp = aws.parent()?;
    let host = hashicorp.parent()?;
    (aws.file_name()? == "aws"
        && hashicorp.file_name()? == "hashicorp"
        && host.file_name()? == "registry.terraform.io")
        .then(|| host.parent().map(Path::to_path_buf))?
}

/// Looks in the usual plugin directories first, then searches the whole
/// filesystem (once; the answer is cached under target/local-stack).
fn find_mirror(ctx: &Ctx<'_>) -> anyhow::Result<Option<PathBuf>> {
    let cache = ctx.paths.mirror_cache();
    if let Ok(cached) = std::fs::read_to_string(&cache) {
        let cached = cached.trim();
        if cached == "none" {
            return Ok(None);
        }
        if !provider_versions(Path::new(cached)).is_empty() {
            return Ok(Some(PathBuf::from(cached)));
        }
    }
    let home = std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_default();
    let candidates = [
        home.join(".terraform.d/plugins"),
        home.join(".local/share/terraform/plugins"),
        PathBuf::from("/root/.terraform.d/plugins"),
        PathBuf::from("/usr/local/share/terraform/plugins"),
        PathBuf::from("/usr/share/terraform/plugins"),
        PathBuf::from("/usr/local/share/terraform"),
        PathBuf::from("/usr/share/terraform"),
    ];
    let mut found = candidates
        .into_iter()
        .find(|c| !provider_versions(c).is_empty());
    if found.is_none() {
        step("searching the filesystem for a hashicorp/aws provider mirror (once; cached)");
        found = search_filesystem()?;
    }
    let text = found
        .as_ref()
        .map_or("none".to_string(), |p| p.to_string_lossy().into_owned());
    std::fs::write(&cache, text + "\n")?;
    Ok(found)
}

fn search_filesystem() -> anyhow::Result<Option<PathBuf>> {
    let out_path =
        std::env::temp_dir().join(format!("xtask-provider-search-{}", std::process::id()));
    let out = std::fs::File::create(&out_path)?;
    let mut child = Command::new("find")
        .args([
            "/", "(", "-path", "/proc", "-o", "-path", "/sys", "-o", "-path", "/dev", ")", "-prune",
        ])
        .args([
            "-o",
            "-name",
            "terraform-provider-aws_*",
            "-type",
            "f",
            "-print",
        ])
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(Stdio::null())
        .spawn()
        .context("running find")?;
    let started = Instant::now();
    while child.try_wait()?.is_none() {
        if started.elapsed() > FIND_TIMEOUT {
            let _ = child.kill();
            let _ = child.wait();
            eprintln!("  (provider search stopped after {FIND_TIMEOUT:?}; using what it found)");
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let listing = std::fs::read_to_string(&out_path).unwrap_or_default();
    let _ = std::fs::remove_file(&out_path);
    // Providers unpacked into a project's .terraform/ come and go with that project.
    let mut roots: Vec<PathBuf> = listing
        .lines()
        .filter(|l| !l.contains("/.terraform/"))
        .filter_map(|l| root_of(Path::new(l)))
        .collect();
    roots.sort_by_key(|r| r.as_os_str().len());
    Ok(roots.into_iter().next())
}

fn cli_config(mirror: Option<&Path>) -> String {
    match mirror {
        Some(root) => format!(
            "# Generated by `cargo xtask local up`: hashicorp/aws from the mirror on this machine, offline.\n\
             provider_installation {{\n  filesystem_mirror {{\n    path    = {path}\n    include = [\"{PROVIDER}\"]\n  }}\n\
             \x20 direct {{\n    exclude = [\"{PROVIDER}\"]\n  }}\n}}\n",
            path = serde_json::to_string(&root.to_string_lossy()).unwrap_or_default(),
        ),
        None => "# Generated by `cargo xtask local up`: no provider mirror on this machine, so \
                 providers come from the public registry.\nprovider_installation {\n  direct {}\n}\n"
            .to_string(),
    }
}

fn terraform_version(ctx: &Ctx<'_>) -> anyhow::Result<String> {
    let sh = ctx.sh;
    if super::process::which("terraform").is_none() {
        bail!("terraform is not on PATH: {INSTALL_HINT}");
    }
    let v = cmd!(sh, "terraform version")
        .quiet()
        .ignore_stderr()
        .read()
        .context("terraform version")?;
    Ok(v.lines()
        .next()
        .unwrap_or_default()
        .trim_start_matches("Terraform ")
        .to_string())
}

/// Proves `terraform init` works with this config, once per config content.
fn probe(ctx: &Ctx<'_>, rc: &Path, rc_text: &str) -> anyhow::Result<()> {
    let dir = ctx.paths.terraform_probe();
    let marker = dir.join("init-ok");
    if std::fs::read_to_string(&marker).is_ok_and(|m| m == rc_text) {
        return Ok(());
    }
    step("checking `terraform init` with the generated CLI config");
    let sh = ctx.sh;
    sh.create_dir(&dir)?;
    sh.write_file(
        dir.join("main.tf"),
        "terraform {\n  required_providers {\n    aws = {\n      source  = \"hashicorp/aws\"\n      version = \">= 5.0\"\n    }\n  }\n}\n",
    )?;
    let _d = sh.push_dir(&dir);
    cmd!(sh, "terraform init -input=false -no-color")
        .env("TF_CLI_CONFIG_FILE", rc)
        .env("TF_IN_AUTOMATION", "1")
        .quiet()
        .ignore_stdout()
        .run()
        .context("terraform init with the local stack's CLI config failed")?;
    std::fs::write(marker, rc_text)?;
    Ok(())
}

pub(crate) fn ensure(ctx: &mut Ctx<'_>) -> anyhow::Result<(Health, PathBuf)> {
    let started = Instant::now();
    let version = terraform_version(ctx)?;
    let mirror = find_mirror(ctx)?;
    let rc = ctx.paths.terraform_rc();
    let text = cli_config(mirror.as_deref());
    if super::write_if_changed(&rc, &text)? {
        step(format!("wrote {}", rc.display()));
    }
    probe(ctx, &rc, &text)?;
    let source = match &mirror {
        Some(root) => format!(
            "aws {} from mirror {}",
            provider_versions(root).join(","),
            root.display()
        ),
        None => "no mirror: providers from registry.terraform.io".to_string(),
    };
    let report = Health {
        name: "terraform",
        address: rc.to_string_lossy().into_owned(),
        healthy: true,
        health: format!("healthy: terraform {version}, {source}, init ok"),
        elapsed: started.elapsed(),
    };
    Ok((report, rc))
}

pub(crate) fn status(ctx: &Ctx<'_>) -> Health {
    let started = Instant::now();
    let rc = ctx.paths.terraform_rc();
    let rc_text = std::fs::read_to_string(&rc).ok();
    let probed = std::fs::read_to_string(ctx.paths.terraform_probe().join("init-ok")).ok();
    let (healthy, health) = match (terraform_version(ctx), rc_text) {
        (Err(e), _) => (false, format!("missing: {e:#}")),
        (Ok(_), None) => (
            false,
            "not configured: run `cargo xtask local up`".to_string(),
        ),
        (Ok(v), Some(text)) if probed.as_deref() == Some(text.as_str()) => {
            let mirror = std::fs::read_to_string(ctx.paths.mirror_cache()).unwrap_or_default();
            (
                true,
                format!("healthy: terraform {v}, mirror {}, init ok", mirror.trim()),
            )
        }
        (Ok(v), Some(_)) => (
            false,
            format!("unchecked: terraform {v}, init not yet verified"),
        ),
    };
    Health {
        name: "terraform",
        address: rc.to_string_lossy().into_owned(),
        healthy,
        health,
        elapsed: started.elapsed(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn derives_the_mirror_root() {
        let p = Path::new(
            "/opt/m/registry.terraform.io/hashicorp/aws/5.100.0/linux_amd64/terraform-provider-aws_v5.100.0_x5",
        );
        assert_eq!(root_of(p), Some(PathBuf::from("/opt/m")));
        assert_eq!(root_of(Path::new("/x/terraform-provider-aws_v1")), None);
        let rc = cli_config(Some(Path::new("/opt/m")));
        assert!(
            rc.contains("path    = \"/opt/m\"")
                && rc.contains("exclude = [\"registry.terraform.io/hashicorp/aws\"]"),
            "{rc}"
        );
    }
}
