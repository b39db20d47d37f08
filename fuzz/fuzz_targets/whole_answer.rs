//! Arbitrary bytes as a whole (non-streamed) answer body, in text and in JSON mode. Must never
//! panic; an error is an acceptable outcome.
#![no_main]

use std::io;

use bnx::output::Output;
use bnx::response::write_answer;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&control, body)) = data.split_first() else { return };
    let mut out = Output::new(io::sink());
    let _ = write_answer(body, control & 1 == 1, &mut out);
});
