//! `bnx-mock`: an offline stand-in for the BlueNexus Agent Chat Completions API.

use std::process::ExitCode;

use bnx::mock::{cli::MockCli, run};
use clap::Parser;

fn main() -> ExitCode {
    ExitCode::from(run(MockCli::parse()).clamp(0, 255) as u8)
}
