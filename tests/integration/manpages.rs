//! The man pages committed in `man/` must match what clap_mangen makes of the clap definitions,
//! so a new or renamed option cannot ship with a stale page.

use crate::support::man;

#[test]
fn man_pages_are_current() {
    for (name, text) in man::pages() {
        let path = format!("{}/man/{name}", env!("CARGO_MANIFEST_DIR"));
        let committed = std::fs::read(&path).unwrap_or_default();
        assert!(
            committed == text,
            "man/{name} is stale; regenerate the man pages with:\n  cargo run --example man"
        );
    }
}
