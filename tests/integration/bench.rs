//! Keeps the benchmark harness compiling and working: its smoke run measures everything once,
//! on tiny inputs, against the debug binaries. No number is asserted.

#[path = "../../benches/compare/floor.rs"]
mod floor;
#[path = "../../benches/compare/harness.rs"]
mod harness;
#[path = "../../benches/compare/ledger.rs"]
mod ledger;

#[test]
fn benchmark_harness_runs_every_measurement() {
    let report = harness::run(harness::Scale::Smoke);
    assert!(report.rows() >= 6, "{report}");
    assert!(!harness::machine().is_empty());
}
