//! Reading what tags name before writing them, so a run with nothing to change writes nothing
//! and reads each tag once, over the registry API (no docker process per tag).

use std::collections::BTreeMap;

use super::Runner;
use crate::retag;

impl Runner<'_> {
    /// The digest each of `tags` names now. A tag that cannot be read is left out, so it is
    /// written (and read back) as if it were missing.
    pub(super) fn current_tags(
        &mut self,
        repository: &str,
        tags: &[String],
    ) -> BTreeMap<String, String> {
        let mut found = BTreeMap::new();
        let env = self.env;
        for tag in tags {
            let digest = match (&env.local, &self.login) {
                (Some(local), Some(token)) => retag::tag_digest(
                    &retag::Target::Oci {
                        registry: &local.registry,
                        username: &token.username,
                        password: &token.password,
                    },
                    repository,
                    tag,
                ),
                (Some(_), None) => continue,
                (None, _) => match self.aws() {
                    Ok(aws) => retag::tag_digest(&retag::Target::Ecr(aws), repository, tag),
                    Err(_) => continue,
                },
            };
            if let Ok(Some(digest)) = digest {
                found.insert(tag.clone(), digest);
            }
        }
        found
    }
}
