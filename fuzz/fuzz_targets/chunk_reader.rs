//! Arbitrary bytes as two stream chunks, read by `chunk::Reader` one after the other, so that
//! the second is also compared with the first one's shape. Whatever the reader accepts, the full
//! parse must accept with the same piece.
#![no_main]

use bnx::chunk::{Piece, Reader};
use bnx::wire::ChatChunk;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let (first, second) = text.split_once('\u{0}').unwrap_or((text, text));
    let mut reader = Reader::default();
    for chunk in [first, second] {
        if let Some(piece) = reader.read(chunk) {
            let full = serde_json::from_str::<ChatChunk>(chunk).map(Piece::from);
            assert_eq!(Some(piece), full.ok(), "{chunk:?}");
        }
    }
});
