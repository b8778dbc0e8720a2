//! The runner's registry steps: reference lookups, the bake and its metadata, manifest
//! verification, deployment tags (written only where they name another image, then read
//! back), the emulator mirror, image copies between environments and the "ran before" check.

use anyhow::{Context, Result, bail};

use super::exec::Capture;
use super::{Effect, Reply, Runner};
use crate::cmdline::{CmdLine, Slot};
use crate::facts;
use crate::plan::Source;
use crate::retry::{self, TRIES};
use crate::settings::Platform;
use crate::tools::docker::{self, BakeMetadata, BakeTarget, Inspected};

impl Runner<'_> {
    /// Reads a reference with `imagetools inspect`; `None` when the registry has no such one.
    pub(super) fn inspect(&mut self, cmd: &CmdLine) -> Result<Option<Inspected>> {
        match self.run(cmd, TRIES, Capture::Lookup) {
            Ok(out) => Ok(Some(docker::parse_inspect(&out.stdout)?)),
            Err(e)
                if e.downcast_ref::<retry::Failed>()
                    .is_some_and(|f| f.failure == retry::Failure::NotFound) =>
            {
                Ok(None)
            }
            Err(e) => Err(e),
        }
    }

    pub(super) fn lookup_step(
        &mut self,
        reference: &str,
        sets: &Slot,
        required: Option<&str>,
        cmd: &CmdLine,
    ) -> Result<()> {
        match (self.inspect(cmd)?, required) {
            (Some(found), _) => {
                self.report
                    .info(&format!("{reference} is {}", found.digest));
                match sets {
                    Slot::Live(name) => {
                        let image = docker::IMAGE_MANIFESTS.contains(&found.media_type.as_str());
                        self.state.function(name).live = Some((found.digest.clone(), image));
                    }
                    Slot::Digest(name) => {
                        let f = self.state.function(name);
                        f.digest = Some(found.digest.clone());
                        f.origin = Some(format!("found {reference}"));
                        // The tag it was found by names it too (`src-…`, `previous`).
                        let tag = reference.rsplit_once('/').map_or(reference, |(_, t)| t);
                        if let Some((_, tag)) = tag.split_once(':')
                            && !f.tags.iter().any(|t| t == tag)
                        {
                            f.tags.push(tag.to_string());
                        }
                        f.content_lookup = Some((reference.to_string(), found));
                    }
                    other => bail!("a lookup cannot fill {other}"),
                }
                Ok(())
            }
            (None, Some(why)) => bail!("{why}"),
            (None, None) => {
                self.report
                    .info(&format!("{reference} is not in the registry"));
                Ok(())
            }
        }
    }

    /// Writes the bake file with the targets whose digest is still unknown, bakes, and reads
    /// each target's digest from the metadata file.
    pub(super) fn bake(
        &mut self,
        file: &str,
        metadata: &str,
        targets: &[BakeTarget],
        cmd: &CmdLine,
    ) -> Result<()> {
        let missing: Vec<&BakeTarget> = targets
            .iter()
            .filter(|t| self.state.digest(&t.name).is_none())
            .collect();
        for t in targets
            .iter()
            .filter(|t| self.state.digest(&t.name).is_some())
        {
            self.report.info(&format!(
                "{}: skipped, its content tag is in the registry",
                t.name
            ));
        }
        self.ask(Effect::RemovePaths(vec![metadata.to_string()]))?;
        self.ask(Effect::WriteFile {
            path: file.to_string(),
            contents: docker::bake_file(missing.iter().copied()),
        })?;
        let names: Vec<&str> = missing.iter().map(|t| t.name.as_str()).collect();
        self.report.info(&format!("building {}", names.join(", ")));
        let built = self.run(cmd, TRIES, Capture::Stream);
        let text = match self.ask(Effect::ReadFile(metadata.to_string())) {
            Ok(Reply::Text(text)) => Some(text),
            _ => None,
        };
        self.ask(Effect::RemovePaths(vec![
            file.to_string(),
            metadata.to_string(),
        ]))?;
        built?;
        let text = text.with_context(|| format!("buildx wrote no metadata file {metadata}"))?;
        let meta: BakeMetadata = serde_json::from_str(&text)
            .with_context(|| format!("{metadata} is not bake's metadata JSON"))?;
        for target in missing {
            let digest = &meta
                .get(&target.name)
                .with_context(|| format!("{metadata} has no digest for target {}", target.name))?
                .digest;
            let repo = target.tags[0].rsplit_once(':').map_or("", |(r, _)| r);
            self.report.info(&format!("pushed {repo}@{digest}"));
            let f = self.state.function(&target.name);
            f.digest = Some(digest.clone());
            f.built = true;
            f.tags = target
                .tags
                .iter()
                .filter_map(|t| t.rsplit_once(':').map(|(_, tag)| tag.to_string()))
                .collect();
        }
        Ok(())
    }

    pub(super) fn verify(
        &mut self,
        function: &str,
        reference: &str,
        platform: Platform,
        cmd: &CmdLine,
    ) -> Result<()> {
        let state = self.state.function(function).clone();
        // Nothing was pushed since the lookup read this very reference: its answer stands.
        let found = match state.content_lookup {
            Some((r, found)) if r == reference && !state.built => {
                self.report
                    .info("as read by the lookup (nothing was pushed since)");
                found
            }
            _ => self
                .inspect(cmd)?
                .with_context(|| format!("{reference} is not in the registry"))?,
        };
        let expected = state.digest.context("no digest to verify")?;
        docker::verify_manifest(&found, &expected, platform)?;
        let epoch = found.created.as_deref().and_then(facts::source_date_epoch);
        if let (Some(revision), Some(epoch)) = (&found.revision, epoch) {
            let line = format!("from commit {revision} (SOURCE_DATE_EPOCH={epoch})");
            self.report.info(&format!("reproducible {line}"));
            self.state.function(function).reproducible = Some(line);
        }
        self.report.info(&format!(
            "{reference}: single {platform} image manifest, {}",
            found.digest
        ));
        Ok(())
    }

    /// Tags that already name the digest are only read; the others are written by manifest
    /// copy and read back.
    pub(super) fn retag(
        &mut self,
        function: &str,
        repository: &str,
        slot: &Slot,
        tags: &[String],
        verify: &[CmdLine],
    ) -> Result<()> {
        let digest = self.slot_value(slot).context("no digest to tag")?;
        let mut write = vec![];
        for (tag, cmd) in tags.iter().zip(verify) {
            let current = self.ask(Effect::TagDigest {
                repository: repository.to_string(),
                tag: tag.clone(),
            });
            // A tag that cannot be read is written (and read back) as if it were missing.
            match current {
                Ok(Reply::Digest(Some(d))) if d == digest => {}
                _ => write.push((tag.clone(), cmd)),
            }
        }
        if write.is_empty() {
            self.report
                .info(&format!("already pointing at {digest}: nothing written"));
        } else {
            let names: Vec<String> = write.iter().map(|(t, _)| t.clone()).collect();
            self.ask(Effect::CopyTags {
                repository: repository.to_string(),
                digest: digest.clone(),
                tags: names.clone(),
            })?;
            for (tag, cmd) in write {
                let found = self
                    .inspect(cmd)?
                    .with_context(|| format!("{repository}:{tag} was not created"))?;
                if found.digest != digest {
                    bail!(
                        "{repository}:{tag} points at {}, not {digest}: the registry changed \
                         the manifest",
                        found.digest
                    );
                }
            }
            self.report
                .info(&format!("{} -> {digest}", names.join(", ")));
        }
        // Only the image to deploy reports its tags; `previous` is a fact about another image.
        if matches!(slot, Slot::Digest(_)) {
            let f = self.state.function(function);
            for tag in tags {
                if !f.tags.contains(tag) {
                    f.tags.push(tag.clone());
                }
            }
        }
        Ok(())
    }

    /// Local stack: the run's manifest, byte for byte from the loopback registry, into the
    /// emulator's ECR under each tag.
    pub(super) fn mirror(
        &mut self,
        function: &str,
        repository: &str,
        tags: &[String],
    ) -> Result<()> {
        let digest = self
            .state
            .digest(function)
            .context("no digest to mirror")?
            .to_string();
        self.ask(Effect::Mirror {
            repository: repository.to_string(),
            digest: digest.clone(),
            tags: tags.to_vec(),
        })?;
        self.report.info(&format!(
            "the emulator's ECR has {repository}@{digest} as {}",
            tags.join(", ")
        ));
        Ok(())
    }

    pub(super) fn copy_image(
        &mut self,
        function: &str,
        from: &Source,
        repository: &str,
        tag: &str,
    ) -> Result<()> {
        let digest = self
            .state
            .digest(function)
            .context("no digest to copy")?
            .to_string();
        self.ask(Effect::CopyImage {
            from: from.clone(),
            repository: repository.to_string(),
            digest: digest.clone(),
            tag: tag.to_string(),
        })
        .with_context(|| format!("copying {}@{digest} from `{}`", from.repository, from.env))?;
        self.report.info(&format!(
            "copied {}/{}@{digest} to {repository}:{tag}",
            from.registry, from.repository
        ));
        let f = self.state.function(function);
        f.tags.push(tag.to_string());
        f.origin = Some(format!("copied from `{}` (no build)", from.env));
        Ok(())
    }

    /// The digest must carry a `deployed-<time>` tag in one of `places`; the newest time is kept.
    pub(super) fn check_ran(&mut self, function: &str, places: &[Source]) -> Result<()> {
        let digest = self
            .state
            .digest(function)
            .context("no digest to check")?
            .to_string();
        for place in places {
            let Reply::Names(tags) = self.ask(Effect::ImageTags {
                place: place.clone(),
                digest: digest.clone(),
            })?
            else {
                bail!("ImageTags answered no tags");
            };
            if let Some(newest) = tags
                .iter()
                .filter_map(|t| t.strip_prefix("deployed-"))
                .max()
            {
                self.report.info(&format!(
                    "{digest} has run in `{}` since {newest} (tag deployed-{newest})",
                    place.env
                ));
                self.state.function(function).ran_since =
                    Some(format!("{} since {newest}", place.env));
                return Ok(());
            }
        }
        let names: Vec<&str> = places.iter().map(|p| p.env.as_str()).collect();
        bail!(
            "{digest} never ran in {} (no deployed-<time> tag there): only an image one of them \
             deployed may go here; nothing was changed",
            names.join(" or ")
        )
    }
}
