//! Shared by the integration tests and the benchmark harness.
#![allow(dead_code)] // each of the two uses its own part

pub mod man;
pub mod measure;
pub mod mock;
pub mod redis;
pub mod scripted;
