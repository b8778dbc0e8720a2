//! The update bot's configuration (`renovate.json`) must keep finding every pin it exists to
//! keep current: a pattern that silently stops matching would freeze the base images.

use serde::Deserialize;

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Config {
    extends: Vec<String>,
    custom_managers: Vec<CustomManager>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct CustomManager {
    manager_file_patterns: Vec<String>,
    match_strings: Vec<String>,
    datasource_template: String,
}

const CONFIG: &str = include_str!("../../renovate.json");
const DOCKERFILE: &str = include_str!("../../src/lambdas/sse_streaming/Dockerfile");

#[test]
fn the_base_image_pins_are_found_with_their_digests() {
    let config: Config = serde_json::from_str(CONFIG).expect("renovate.json parses");
    let manager = &config.custom_managers[0];
    assert_eq!(manager.datasource_template, "docker");
    // Renovate's patterns are /regex/; the Dockerfile's path must match one.
    let path = "src/lambdas/sse_streaming/Dockerfile";
    assert!(manager.manager_file_patterns.iter().any(|p| {
        regex_lite::Regex::new(p.trim_matches('/'))
            .unwrap()
            .is_match(path)
    }));
    let re = regex_lite::Regex::new(&manager.match_strings[0]).unwrap();
    let found: Vec<(String, String, String)> = re
        .captures_iter(DOCKERFILE)
        .map(|c| {
            (
                c["depName"].into(),
                c["currentValue"].into(),
                c["currentDigest"].into(),
            )
        })
        .collect();
    let names: Vec<&str> = found.iter().map(|(n, _, _)| n.as_str()).collect();
    assert_eq!(
        names,
        ["python", "public.ecr.aws/awsguru/aws-lambda-adapter"],
        "{found:?}"
    );
    assert_eq!(found[0].1, "3.13-slim");
    assert_eq!(found[1].1, "0.9.1");
    for (_, _, digest) in &found {
        assert_eq!(digest.len(), 71, "{digest}");
    }
    // Every base image the Dockerfile declares is one of them.
    let declared = DOCKERFILE
        .lines()
        .filter(|l| l.starts_with("ARG ") && l.contains("_IMAGE="))
        .count();
    assert_eq!(declared, found.len());
}

#[test]
fn actions_stay_pinned_to_commit_shas() {
    let config: Config = serde_json::from_str(CONFIG).unwrap();
    assert!(
        config
            .extends
            .iter()
            .any(|e| e == "helpers:pinGitHubActionDigests")
    );
}
