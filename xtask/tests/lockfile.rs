//! Guards on Cargo.lock that a plain `cargo update` would silently undo.

/// `idna_adapter` 1.0.0 is the ASCII-only adapter: it keeps the 22 ICU4X crates (about 4 s of
/// every cold build of xtask) out of the graph. AWS endpoints and registry names are ASCII, so
/// nothing needs Unicode domain mapping. After a `cargo update`, restore it with
/// `cargo update -p idna_adapter --precise 1.0.0`.
#[test]
fn the_ascii_only_idna_adapter_stays_pinned() {
    let lock = include_str!("../../Cargo.lock");
    let version = lock
        .split("[[package]]")
        .find(|p| p.contains("name = \"idna_adapter\""))
        .and_then(|p| p.lines().find_map(|l| l.strip_prefix("version = ")))
        .map(|v| v.trim_matches('"').to_string());
    assert_eq!(
        version.as_deref(),
        Some("1.0.0"),
        "Cargo.lock moved idna_adapter off 1.0.0: run `cargo update -p idna_adapter --precise 1.0.0`"
    );
    assert!(
        !lock.contains("name = \"icu_normalizer\""),
        "ICU4X crates are back in Cargo.lock"
    );
}
