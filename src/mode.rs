//! The output mode: what standard output gets, decided once from the command line. A leaf: it
//! imports nothing of the crate. Whether the answer is streamed is the request's business
//! (`Chat::stream`), not the mode's: `--json` writes a stream's events as lines whenever one
//! arrives.

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// The answer's text (or what `-x`/`--expect-json` make of it).
    Text,
    /// `--json`: the body as received plus the `bnx` key; a stream's events, one line each,
    /// then the `bnx` line.
    Json,
    /// `--batch`: one JSON line per item; `response` (`--json`) adds the body as received.
    Lines { response: bool },
}

impl Mode {
    pub fn new(json: bool, batch: bool) -> Mode {
        match (batch, json) {
            (true, response) => Mode::Lines { response },
            (false, true) => Mode::Json,
            (false, false) => Mode::Text,
        }
    }

    /// Whether a failure also writes its JSON document on standard output. A batch's stdout is
    /// its item lines: a document would break them.
    pub fn documents(self) -> bool {
        self == Mode::Json
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_batch_writes_lines_whatever_json_says() {
        assert_eq!(Mode::new(true, true), Mode::Lines { response: true });
        assert_eq!(Mode::new(false, true), Mode::Lines { response: false });
        assert!(Mode::new(true, false).documents());
        assert!(!Mode::new(true, true).documents());
        assert!(!Mode::new(false, false).documents());
    }
}
