//! The runner's registry steps: reference lookups, the build and its metadata, manifest
//! verification and deployment tags.

use anyhow::{Context, Result, bail};

use super::Runner;
use super::exec::Capture;
use super::retry::TRIES;
use crate::cmdline::CmdLine;
use crate::plan::{NOW, Slot};
use crate::settings::Platform;
use crate::tools::docker;

impl Runner<'_> {
    pub(super) fn lookup_step(
        &mut self,
        reference: &str,
        sets: Slot,
        required: bool,
        cmd: &CmdLine,
    ) -> Result<()> {
        let line = self.resolve(cmd)?;
        match (self.lookup(&line)?, required) {
            (Some(found), _) => {
                self.report
                    .info(&format!("{reference} is {}", found.digest));
                *self.slot(sets) = Some(found.digest.clone());
                match sets {
                    Slot::LiveDigest => {
                        self.state.live_is_image =
                            Some(docker::IMAGE_MANIFESTS.contains(&found.media_type.as_str()))
                    }
                    Slot::Digest => {
                        self.state.content_lookup = Some((reference.to_string(), found))
                    }
                }
                Ok(())
            }
            (None, true) => bail!(
                "{reference} is not in the registry: pass --to with a tag or digest that was \
                 pushed (see `docker buildx imagetools inspect`)"
            ),
            (None, false) => {
                self.report
                    .info(&format!("{reference} is not in the registry"));
                Ok(())
            }
        }
    }

    pub(super) fn build(
        &mut self,
        cmd: &CmdLine,
        metadata_file: &str,
        push: &[CmdLine],
        archive: Option<&str>,
    ) -> Result<()> {
        let _ = std::fs::remove_file(self.sh.current_dir().join(metadata_file));
        if let Some(parent) = std::path::Path::new(metadata_file).parent() {
            self.sh.create_dir(parent)?;
        }
        let line = self.resolve(cmd)?;
        let built = self
            .run_with_retry(&line, TRIES, Capture::Stream)
            .and_then(|_| {
                push.iter()
                    .try_for_each(|cmd| self.run_with_retry(cmd, TRIES, Capture::Stream).map(drop))
            });
        if let Some(file) = archive {
            let _ = self.sh.remove_path(file);
        }
        built?;
        let text = self
            .sh
            .read_file(metadata_file)
            .with_context(|| format!("buildx wrote no metadata file {metadata_file}"))?;
        let meta: docker::BuildMetadata = serde_json::from_str(&text)
            .with_context(|| format!("{metadata_file} has no containerimage.digest"))?;
        self.report
            .info(&format!("pushed {}@{}", self.env.image_repo(), meta.digest));
        self.state.digest = Some(meta.digest);
        self.state.built = true;
        Ok(())
    }

    pub(super) fn verify(
        &mut self,
        reference: &str,
        platform: Platform,
        cmd: &CmdLine,
    ) -> Result<()> {
        // Nothing was pushed since the lookup read this very reference: its answer stands.
        let looked_up = match &self.state.content_lookup {
            Some((r, found)) if r == reference && !self.state.built => Some(found.clone()),
            _ => None,
        };
        let found = match looked_up {
            Some(found) => {
                self.report
                    .info("as read by the lookup (nothing was pushed since)");
                found
            }
            None => {
                let line = self.resolve(cmd)?;
                self.lookup(&line)?
                    .with_context(|| format!("{reference} is not in the registry after the push"))?
            }
        };
        let expected = self.state.digest.clone().context("no digest to verify")?;
        docker::verify_manifest(&found, &expected, platform)?;
        self.note_source(&found);
        self.report.info(&format!(
            "{reference}: single {platform} image manifest, {}",
            found.digest
        ));
        Ok(())
    }

    pub(super) fn retag(
        &mut self,
        repository: &str,
        slot: Slot,
        tags: &[String],
        verify: &[CmdLine],
    ) -> Result<()> {
        let digest = self.slot(slot).clone().context("no digest to tag")?;
        let tags: Vec<String> = tags.iter().map(|t| t.replace(NOW, &self.now)).collect();
        // Only tags that name another image (or none) are written, then read back; a run with
        // nothing to change only reads.
        let current = self.current_tags(repository, &tags);
        let (tags, verify): (Vec<String>, Vec<&CmdLine>) = tags
            .into_iter()
            .zip(verify)
            .filter(|(tag, _)| current.get(tag) != Some(&digest))
            .unzip();
        if tags.is_empty() {
            self.report
                .info(&format!("already pointing at {digest}: nothing written"));
            return Ok(());
        }
        self.copy_tags(repository, &digest, &tags)?;
        for (tag, cmd) in tags.iter().zip(verify) {
            let line = self.resolve(cmd)?;
            let found = self
                .lookup(&line)?
                .with_context(|| format!("{repository}:{tag} was not created"))?;
            if found.digest != digest {
                bail!(
                    "{repository}:{tag} points at {}, not {digest}: the registry changed the \
                     manifest",
                    found.digest
                );
            }
        }
        self.report
            .info(&format!("{} -> {digest}", tags.join(", ")));
        Ok(())
    }
}
