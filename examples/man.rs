//! Writes the man pages `man/bnx.1` and `man/bnx-mock.1` from the clap definitions:
//!
//!     cargo run --example man
//!
//! Run it when an option changes; `cargo test` fails while the committed pages are stale.

#[path = "../tests/support/man.rs"]
mod man;

use std::path::Path;

fn main() -> std::io::Result<()> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("man");
    std::fs::create_dir_all(&dir)?;
    for (name, text) in man::pages() {
        std::fs::write(dir.join(name), text)?;
        println!("wrote man/{name}");
    }
    Ok(())
}
