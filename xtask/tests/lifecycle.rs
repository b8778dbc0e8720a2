//! Test-only model of Amazon ECR lifecycle policy evaluation, used to check
//! `infrastructure/modules/function/lifecycle-policy.json` against image histories.
//!
//! ECR evaluates a policy on its side and offers no local evaluator, so the
//! rules that matter here are implemented from the documentation:
//!
//! * Amazon ECR User Guide, "Lifecycle policy evaluation rules"
//!   (<https://docs.aws.amazon.com/AmazonECR/latest/userguide/LifecyclePolicies.html>):
//!   - "An image is expired by exactly one or zero rules."
//!   - "An image that matches the tagging requirements of a rule cannot be
//!     expired by a rule with a lower priority."
//!   - "Rules can never mark images that are marked by higher priority rules,
//!     but can still identify them as if they haven't been expired."
//!   - "The set of rules must contain a unique set of tag prefixes."
//!   - "Only one rule is allowed to select untagged images."
//!   - "Expiration is always ordered by pushed_at_time, and always expires
//!     older images before newer ones."
//!   - "A lifecycle policy rule may specify either tagPatternList or
//!     tagPrefixList, but not both."
//!   - "When using the tagPatternList parameter, an image is successfully
//!     matched if it matches the wildcard filter."
//!   - "When using the tagPrefixList parameter, an image is successfully
//!     matched if all of the tags in the tagPrefixList value are matched
//!     against any of the image's tags."
//!   - "With countType = imageCountMoreThan, images are sorted from youngest
//!     to oldest based on pushed_at_time and then all images greater than the
//!     specified count are expired."
//!   - "With countType = sinceImagePushed, all images whose pushed_at_time is
//!     older than the specified number of days based on countNumber are
//!     expired."
//! * "Lifecycle policy properties"
//!   (<https://docs.aws.amazon.com/AmazonECR/latest/userguide/lifecycle_policy_parameters.html>):
//!   rulePriority values are unique and applied lowest first; "a rule with a
//!   tagStatus value of any must have the highest value for rulePriority and
//!   be evaluated last"; `tagged` needs a tagPrefixList or tagPatternList,
//!   `untagged` and `any` must omit both; at most four `*` per pattern;
//!   countUnit (`days`) goes with sinceImagePushed only.
//! * "Examples of lifecycle policies", "Filtering on multiple rules"
//!   (<https://docs.aws.amazon.com/AmazonECR/latest/userguide/lifecycle_policy_examples.html>),
//!   Example A, reproduced as a test below: a later rule counts images that an
//!   earlier rule matched, but expires none of them.
//!
//! Only the subset of the policy language this project can use is modelled.
//! Unknown fields and newer features (storage classes, `transition`,
//! `sinceImagePulled`) fail to parse instead of being silently ignored.
//! Referenced manifests (an index's children, which ECR never expires while
//! referenced) are outside the model.

use std::collections::HashSet;

use serde::Deserialize;

/// The policy Terraform applies to the repository.
pub(crate) const POLICY_JSON: &str =
    include_str!("../../infrastructure/modules/function/lifecycle-policy.json");

const SECONDS_PER_DAY: u64 = 86_400;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Policy {
    pub(crate) rules: Vec<Rule>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct Rule {
    pub(crate) rule_priority: u32,
    #[serde(default)]
    pub(crate) description: Option<String>,
    pub(crate) selection: Selection,
    pub(crate) action: Action,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct Selection {
    pub(crate) tag_status: TagStatus,
    #[serde(default)]
    pub(crate) tag_prefix_list: Option<Vec<String>>,
    #[serde(default)]
    pub(crate) tag_pattern_list: Option<Vec<String>>,
    pub(crate) count_type: CountType,
    #[serde(default)]
    pub(crate) count_unit: Option<CountUnit>,
    pub(crate) count_number: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum TagStatus {
    Tagged,
    Untagged,
    Any,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) enum CountType {
    ImageCountMoreThan,
    SinceImagePushed,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum CountUnit {
    Days,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Action {
    #[serde(rename = "type")]
    pub(crate) kind: ActionType,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum ActionType {
    Expire,
}

/// One image in the repository: its tags and when it was pushed.
#[derive(Debug, Clone)]
pub(crate) struct Image {
    pub(crate) tags: Vec<String>,
    /// Push time in seconds since the Unix epoch.
    pub(crate) pushed_at: u64,
}

impl Image {
    pub(crate) fn new(tags: &[&str], pushed_at: u64) -> Self {
        Self {
            tags: tags.iter().map(|t| (*t).to_owned()).collect(),
            pushed_at,
        }
    }
}

impl Policy {
    /// Parses a policy and checks it against the documented constraints.
    pub(crate) fn parse(json: &str) -> Result<Self, String> {
        let policy: Self =
            serde_json::from_str(json).map_err(|e| format!("lifecycle policy JSON: {e}"))?;
        policy.validate()?;
        Ok(policy)
    }

    /// The checks ECR applies when a policy is put, as far as they are
    /// documented.
    pub(crate) fn validate(&self) -> Result<(), String> {
        if self.rules.is_empty() {
            return Err("a lifecycle policy needs at least one rule".into());
        }
        let mut priorities = HashSet::new();
        let mut prefixes = HashSet::new();
        let mut untagged_rules = 0;
        let highest = self.rules.iter().map(|r| r.rule_priority).max();
        for rule in &self.rules {
            let p = rule.rule_priority;
            if !priorities.insert(p) {
                return Err(format!("rulePriority {p} is used twice"));
            }
            let s = &rule.selection;
            match (s.tag_status, &s.tag_prefix_list, &s.tag_pattern_list) {
                (TagStatus::Tagged, Some(list), None) | (TagStatus::Tagged, None, Some(list))
                    if !list.is_empty() => {}
                (TagStatus::Tagged, _, _) => {
                    return Err(format!(
                        "rule {p}: tagged needs exactly one non-empty tagPrefixList or tagPatternList"
                    ));
                }
                (_, None, None) => {}
                _ => {
                    return Err(format!(
                        "rule {p}: untagged and any rules must omit tagPrefixList and tagPatternList"
                    ));
                }
            }
            if s.tag_status == TagStatus::Untagged {
                untagged_rules += 1;
            }
            if s.tag_status == TagStatus::Any && Some(p) != highest {
                return Err(format!(
                    "rule {p}: a tagStatus any rule must have the highest rulePriority"
                ));
            }
            for prefix in s.tag_prefix_list.iter().flatten() {
                if !prefixes.insert(prefix.as_str()) {
                    return Err(format!(
                        "rule {p}: tag prefix {prefix:?} is used by two rules"
                    ));
                }
            }
            for pattern in s.tag_pattern_list.iter().flatten() {
                if pattern.matches('*').count() > 4 {
                    return Err(format!(
                        "rule {p}: pattern {pattern:?} has more than 4 wildcards"
                    ));
                }
            }
            match (s.count_type, s.count_unit) {
                (CountType::ImageCountMoreThan, None) | (CountType::SinceImagePushed, Some(_)) => {}
                (CountType::ImageCountMoreThan, Some(_)) => {
                    return Err(format!("rule {p}: countUnit is only for sinceImagePushed"));
                }
                (CountType::SinceImagePushed, None) => {
                    return Err(format!("rule {p}: sinceImagePushed needs countUnit"));
                }
            }
            if s.count_number == 0 {
                return Err(format!("rule {p}: countNumber must be at least 1"));
            }
        }
        if untagged_rules > 1 {
            return Err("only one rule may select untagged images".into());
        }
        Ok(())
    }

    /// For each image, the rulePriority of the rule that expires it, or
    /// `None` if it survives. `now` is in seconds since the Unix epoch.
    pub(crate) fn evaluate(&self, images: &[Image], now: u64) -> Vec<Option<u32>> {
        let mut rules: Vec<&Rule> = self.rules.iter().collect();
        rules.sort_by_key(|r| r.rule_priority);

        let mut expired_by = vec![None; images.len()];
        // Images that matched the tag selection of a rule already applied:
        // no later (lower-priority) rule may expire them.
        let mut claimed = vec![false; images.len()];

        for rule in rules {
            let s = &rule.selection;
            // Every image the rule selects, claimed or not: claimed images
            // still count ("identify them as if they haven't been expired").
            let mut selected: Vec<usize> = (0..images.len())
                .filter(|&i| s.selects(&images[i]))
                .collect();
            // Youngest first; the index breaks ties so results are stable.
            selected.sort_by(|&a, &b| {
                images[b]
                    .pushed_at
                    .cmp(&images[a].pushed_at)
                    .then(a.cmp(&b))
            });
            let candidates: Vec<usize> = match s.count_type {
                CountType::ImageCountMoreThan => selected
                    .iter()
                    .copied()
                    .skip(usize::try_from(s.count_number).unwrap_or(usize::MAX))
                    .collect(),
                CountType::SinceImagePushed => {
                    let max_age = s.count_number.saturating_mul(SECONDS_PER_DAY);
                    selected
                        .iter()
                        .copied()
                        .filter(|&i| now.saturating_sub(images[i].pushed_at) > max_age)
                        .collect()
                }
            };
            for i in candidates {
                if !claimed[i] {
                    expired_by[i] = Some(rule.rule_priority);
                }
            }
            for i in selected {
                claimed[i] = true;
            }
        }
        expired_by
    }
}

impl Selection {
    fn selects(&self, image: &Image) -> bool {
        match self.tag_status {
            TagStatus::Any => true,
            TagStatus::Untagged => image.tags.is_empty(),
            TagStatus::Tagged => {
                // Every entry of the list must match some tag of the image
                // (an AND across entries, an OR across the image's tags).
                let prefixes_match = self.tag_prefix_list.as_ref().is_none_or(|list| {
                    list.iter()
                        .all(|p| image.tags.iter().any(|t| t.starts_with(p.as_str())))
                });
                let patterns_match = self.tag_pattern_list.as_ref().is_none_or(|list| {
                    list.iter()
                        .all(|p| image.tags.iter().any(|t| wildcard_match(p, t)))
                });
                !image.tags.is_empty() && prefixes_match && patterns_match
            }
        }
    }
}

/// Matches `text` against `pattern`, where `*` stands for any run of
/// characters (possibly empty) and everything else matches itself.
fn wildcard_match(pattern: &str, text: &str) -> bool {
    let parts: Vec<&str> = pattern.split('*').collect();
    let (first, rest) = match parts.split_first() {
        Some(split) => split,
        None => return text.is_empty(),
    };
    let Some(mut remaining) = text.strip_prefix(first) else {
        return false;
    };
    let Some((last, middle)) = rest.split_last() else {
        // No wildcard at all: an exact match.
        return remaining.is_empty();
    };
    for part in middle {
        match remaining.find(part) {
            Some(at) => remaining = &remaining[at + part.len()..],
            None => return false,
        }
    }
    remaining.len() >= last.len() && remaining.ends_with(last)
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: u64 = 1_800_000_000;
    const HOUR: u64 = 3_600;
    const DAY: u64 = SECONDS_PER_DAY;
    const PROTECTED: [&str; 3] = ["buildcache", "live", "previous"];

    fn policy() -> Policy {
        Policy::parse(POLICY_JSON).expect("lifecycle-policy.json is a valid policy")
    }

    /// A deployed application image with the tags the xtask writes.
    fn app_image(n: u64, pushed_at: u64) -> Image {
        let deployed = format!("deployed-20260101T{:02}{:02}00Z", n / 60, n % 60);
        let src = format!("src-{n:012x}");
        let git = format!("git-{n:07x}");
        Image::new(&[&deployed, &src, &git], pushed_at)
    }

    fn has_tag(image: &Image, tag: &str) -> bool {
        image.tags.iter().any(|t| t == tag)
    }

    fn is_protected(image: &Image) -> bool {
        PROTECTED.iter().any(|tag| has_tag(image, tag))
    }

    /// Survivors among tagged, unprotected images, youngest first.
    fn kept_others(images: &[Image], result: &[Option<u32>]) -> Vec<u64> {
        let mut kept: Vec<u64> = images
            .iter()
            .zip(result)
            .filter(|(image, expired)| {
                expired.is_none() && !image.tags.is_empty() && !is_protected(image)
            })
            .map(|(image, _)| image.pushed_at)
            .collect();
        kept.sort_unstable_by(|a, b| b.cmp(a));
        kept
    }

    /// The youngest `n` push times among tagged, unprotected images.
    fn youngest_others(images: &[Image], n: usize) -> Vec<u64> {
        let mut all: Vec<u64> = images
            .iter()
            .filter(|image| !image.tags.is_empty() && !is_protected(image))
            .map(|image| image.pushed_at)
            .collect();
        all.sort_unstable_by(|a, b| b.cmp(a));
        all.truncate(n);
        all
    }

    /// 25 application images, one a day, the newest also tagged `latest`,
    /// plus the three protected images pushed before all of them.
    fn history_with_protected_oldest() -> Vec<Image> {
        let mut images = vec![
            Image::new(&["buildcache"], NOW - 100 * DAY),
            Image::new(&["live", "deployed-20250101T000000Z"], NOW - 99 * DAY),
            Image::new(&["previous", "deployed-20241231T000000Z"], NOW - 98 * DAY),
        ];
        for n in 0..25 {
            images.push(app_image(n, NOW - (25 - n) * DAY));
        }
        images.last_mut().unwrap().tags.push("latest".into());
        images
    }

    #[test]
    fn policy_file_is_valid_and_ends_with_the_any_rule() {
        let policy = policy();
        assert_eq!(policy.rules.len(), 5);
        let last = policy.rules.iter().max_by_key(|r| r.rule_priority).unwrap();
        assert_eq!(last.selection.tag_status, TagStatus::Any);
        assert!(
            policy
                .rules
                .iter()
                .all(|r| r.action.kind == ActionType::Expire)
        );
        assert!(policy.rules.iter().all(|r| r.description.is_some()));
    }

    #[test]
    fn protected_images_survive_as_the_oldest_of_many() {
        let images = history_with_protected_oldest();
        let result = policy().evaluate(&images, NOW);
        for (image, expired) in images.iter().zip(&result) {
            if is_protected(image) {
                assert_eq!(*expired, None, "{:?} must never expire", image.tags);
            }
        }
        // The protected three are older than everything else, so the five
        // places of the count rule all go to the newest application images.
        assert_eq!(kept_others(&images, &result), youngest_others(&images, 5));
        assert_eq!(result.iter().filter(|e| e.is_some()).count(), 20);
        assert!(result.iter().flatten().all(|&rule| rule == 5));
    }

    #[test]
    fn protected_images_take_places_of_the_count_rule_when_recent() {
        // The usual state right after a deploy and a rebuild: the protected
        // images are the newest, and the count rule counts them.
        let mut images: Vec<Image> = (0..20)
            .map(|n| app_image(n, NOW - (30 - n) * DAY))
            .collect();
        images.push(Image::new(&["previous", "deployed-a"], NOW - 3 * HOUR));
        images.push(Image::new(
            &["live", "deployed-b", "latest"],
            NOW - 2 * HOUR,
        ));
        images.push(Image::new(&["buildcache"], NOW - HOUR));
        let result = policy().evaluate(&images, NOW);
        for (image, expired) in images.iter().zip(&result) {
            if is_protected(image) {
                assert_eq!(*expired, None, "{:?} must never expire", image.tags);
            }
        }
        let kept = kept_others(&images, &result);
        assert!(kept.len() <= 5);
        assert_eq!(kept, youngest_others(&images, 2));
    }

    #[test]
    fn at_most_five_unprotected_tagged_images_survive_and_they_are_the_newest() {
        for count in [0_u64, 1, 4, 5, 6, 12, 40] {
            let images: Vec<Image> = (0..count)
                .map(|n| app_image(n, NOW - (50 - n) * DAY))
                .collect();
            let result = policy().evaluate(&images, NOW);
            let expected = youngest_others(&images, 5);
            assert_eq!(kept_others(&images, &result), expected, "{count} images");
        }
    }

    #[test]
    fn untagged_images_expire_a_day_after_push() {
        let images = vec![
            Image::new(&[], NOW - 10 * DAY),
            Image::new(&[], NOW - DAY - HOUR),
            Image::new(&[], NOW - 2 * HOUR),
            Image::new(&["buildcache"], NOW - HOUR),
            app_image(1, NOW - 3 * DAY),
        ];
        let result = policy().evaluate(&images, NOW);
        assert_eq!(result, vec![Some(4), Some(4), None, None, None]);
    }

    #[test]
    fn recent_untagged_images_are_counted_but_never_expired_by_the_count_rule() {
        let mut images: Vec<Image> = (0..5).map(|_| Image::new(&[], NOW - HOUR)).collect();
        images.extend((0..5).map(|n| app_image(n, NOW - (10 - n) * DAY)));
        let result = policy().evaluate(&images, NOW);
        assert!(result[..5].iter().all(Option::is_none));
        // Five fresh untagged images fill the five places of rule 5.
        assert!(result[5..].iter().all(|e| *e == Some(5)));
    }

    #[test]
    fn without_the_protective_rules_the_live_image_would_expire() {
        let mut unprotected = policy();
        unprotected.rules.retain(|rule| {
            let prefixes = rule.selection.tag_prefix_list.iter().flatten();
            !prefixes
                .into_iter()
                .any(|p| PROTECTED.contains(&p.as_str()))
        });
        assert_eq!(unprotected.rules.len(), 2);
        unprotected.validate().unwrap();

        let images = history_with_protected_oldest();
        let result = unprotected.evaluate(&images, NOW);
        let live = images.iter().position(|i| has_tag(i, "live")).unwrap();
        assert_eq!(result[live], Some(5), "the check above relies on this");
        for (image, expired) in images.iter().zip(&result) {
            if is_protected(image) {
                assert!(
                    expired.is_some(),
                    "{:?} expires without its rule",
                    image.tags
                );
            }
        }
    }

    #[test]
    fn one_prefix_list_with_two_tags_protects_only_images_with_both() {
        // Why each protected tag has its own rule: the entries of a
        // tagPrefixList are combined with AND.
        let json = POLICY_JSON.replace("[\"live\"]", "[\"live\", \"previous\"]");
        let mut merged: Policy = serde_json::from_str(&json).unwrap();
        merged.rules.retain(|r| {
            r.selection.tag_prefix_list.as_deref() != Some(&["previous".to_owned()][..])
        });
        merged.validate().unwrap();
        let images = history_with_protected_oldest();
        let result = merged.evaluate(&images, NOW);
        let live = images.iter().position(|i| has_tag(i, "live")).unwrap();
        let previous = images.iter().position(|i| has_tag(i, "previous")).unwrap();
        assert_eq!(result[live], Some(5));
        assert_eq!(result[previous], Some(5));
    }

    #[test]
    fn reproduces_the_documented_multiple_rules_example_a() {
        // "Examples of lifecycle policies in Amazon ECR", Filtering on
        // multiple rules, Example A: only Image A is expired. Rule 2 counts
        // A and B although rule 1 matched them, and may expire neither.
        let policy = Policy::parse(
            r#"{"rules": [
                {"rulePriority": 1, "description": "Rule 1",
                 "selection": {"tagStatus": "tagged", "tagPrefixList": ["prod"],
                               "countType": "imageCountMoreThan", "countNumber": 1},
                 "action": {"type": "expire"}},
                {"rulePriority": 2, "description": "Rule 2",
                 "selection": {"tagStatus": "tagged", "tagPrefixList": ["beta"],
                               "countType": "imageCountMoreThan", "countNumber": 1},
                 "action": {"type": "expire"}}
            ]}"#,
        )
        .unwrap();
        let images = vec![
            Image::new(&["beta-1", "prod-1"], NOW - 10 * DAY),
            Image::new(&["beta-2", "prod-2"], NOW - 9 * DAY),
            Image::new(&["beta-3"], NOW - 8 * DAY),
        ];
        assert_eq!(policy.evaluate(&images, NOW), vec![Some(1), None, None]);
    }

    #[test]
    fn rejects_policies_that_ecr_rejects() {
        let any_first = POLICY_JSON.replace("\"rulePriority\": 5", "\"rulePriority\": 0");
        assert!(Policy::parse(&any_first).unwrap_err().contains("highest"));

        let duplicate_prefix = POLICY_JSON.replace("[\"previous\"]", "[\"live\"]");
        assert!(
            Policy::parse(&duplicate_prefix)
                .unwrap_err()
                .contains("two rules")
        );

        let both_lists = POLICY_JSON.replace(
            "\"tagPrefixList\": [\"live\"]",
            "\"tagPrefixList\": [\"live\"], \"tagPatternList\": [\"live\"]",
        );
        assert!(Policy::parse(&both_lists).is_err());

        let unknown_field =
            POLICY_JSON.replace("\"countNumber\": 5", "\"countNumber\": 5, \"x\": 1");
        assert!(Policy::parse(&unknown_field).is_err());
    }

    #[test]
    fn wildcard_patterns() {
        assert!(wildcard_match("prod*", "prod-1"));
        assert!(wildcard_match("*", "anything"));
        assert!(wildcard_match("*test*1", "a-test-21"));
        assert!(wildcard_match("live", "live"));
        assert!(!wildcard_match("live", "live-2"));
        assert!(!wildcard_match("a*a", "a"));
        assert!(!wildcard_match("prod*", "preprod"));
    }
}
