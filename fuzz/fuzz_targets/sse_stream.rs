//! Arbitrary bytes as an SSE response body, handed over in reads of an arbitrary size, through
//! the real decoder and event handler, in text and in JSON mode. Must never panic, and never
//! hold more than the event cap.
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
    let mut out = Output::new(io::sink());
    let _ = pump(&mut Reads { data: body, size }, json, Duration::from_secs(3600), &mut out);
});
