//! Arbitrary bytes as an SSE response body, handed over in reads of an arbitrary size, through
//! the real decoder and event handler, in text and in JSON mode. Must never panic; what it
//! writes is always UTF-8, and in JSON mode every line is a JSON document.
#![no_main]

use std::io::{self, Read};
use std::time::Duration;

use bnx::output::Output;
use bnx::response::pump;
use libfuzzer_sys::fuzz_target;

struct Reads<'a> {
    data: &'a [u8],
    size: usize,
}

impl Read for Reads<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.size.min(buf.len()).min(self.data.len());
        buf[..n].copy_from_slice(&self.data[..n]);
        self.data = &self.data[n..];
        Ok(n)
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&control, body)) = data.split_first() else { return };
    let json = control & 1 == 1;
    let size = usize::from(control >> 1) + 1;
    let mut out = Output::new(Vec::new());
    let _ = pump(&mut Reads { data: body, size }, json, Duration::from_secs(3600), &mut out);
    let written = String::from_utf8(out.into_inner()).expect("output is UTF-8");
    if json {
        for line in written.lines() {
            assert!(serde_json::from_str::<serde_json::Value>(line).is_ok(), "not JSON: {line:?}");
        }
    }
});
