//! `cargo bench --bench compare`: bnx against curl, curl | jq and the Python SDK. See
//! `harness.rs`; the results of a real run are in BENCHMARKS.md.

mod floor;
mod harness;
mod ledger;
#[path = "../../tests/support/mod.rs"]
mod support;

fn main() {
    // `cargo bench` passes `--bench`; anything else (such as `cargo test --benches`) gets the
    // quick smoke run.
    let scale = if std::env::args().any(|a| a == "--bench") {
        harness::Scale::Full
    } else {
        harness::Scale::Smoke
    };
    println!("bnx benchmarks ({scale:?}) on {}\n", harness::machine());
    let report = harness::run(scale);
    println!("{report}\n{} measurements.", report.rows());
}
