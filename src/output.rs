//! Everything `bnx` writes on stdout: the answer as text, or JSON. Notices never come here;
//! `printer.rs` owns stderr.

use std::io::Write;

use serde_json::{json, Value};

use crate::error::{Error, Kind, Result};
use crate::extract::{self, Extract};
use crate::redact;
use crate::token::Secret;

/// The most answer text held for `-x` or `--expect-json`, as much as a whole answer may be.
const MAX_HELD: usize = 64 * 1024 * 1024;

/// Standard output, or the file of `-o`. Pieces are buffered only until `flush`, which the
/// caller does before it waits for more data, so nothing sits in a buffer while the network is
/// quiet.
pub struct Output<W: Write> {
    out: W,
    last_byte: Option<u8>,
    /// What is written to, for error messages.
    to: String,
    /// With `-x` or `--expect-json`: the answer's text so far, written only once it is complete.
    held: Option<(Extract, String)>,
    /// Once known, the token is masked in everything but an answer written as received.
    secret: Option<Secret>,
}

impl<W: Write> Output<W> {
    pub fn new(out: W) -> Self {
        Output::to(out, "standard output")
    }

    /// Output to `to`, named so in error messages.
    pub fn to(out: W, to: impl Into<String>) -> Self {
        Output {
            out,
            last_byte: None,
            to: to.into(),
            held: None,
            secret: None,
        }
    }

    /// Masks `secret` from now on in what the server said, but for an answer written as
    /// received (its text, or a whole `--json` body): error objects, the `bnx` object's values,
    /// every `--json --stream` line.
    pub fn redact(&mut self, secret: &Secret) {
        self.secret = Some(secret.clone());
    }

    /// From now on the answer's text is held, and `end_text` writes what `extract` makes of it.
    pub fn extract(&mut self, extract: Option<Extract>) {
        self.held = extract.map(|extract| (extract, String::new()));
    }

    /// Whether the answer's text is held for `-x` or `--expect-json`: an answer without text
    /// must still be taken apart, and fail as one that is not what was asked for.
    pub fn holds_text(&self) -> bool {
        self.held.is_some()
    }

    pub fn text(&mut self, piece: &str) -> Result<()> {
        if let Some((_, held)) = &mut self.held {
            if held.len() + piece.len() > MAX_HELD {
                return Err(Error::msg(
                    Kind::Unexpected,
                    format!(
                        "the answer is larger than {} MiB, too large to take apart",
                        MAX_HELD >> 20
                    ),
                ));
            }
            held.push_str(piece);
            return Ok(());
        }
        if let Some(&last) = piece.as_bytes().last() {
            self.out
                .write_all(piece.as_bytes())
                .map_err(|e| Error::write(e, &self.to))?;
            self.last_byte = Some(last);
        }
        Ok(())
    }

    /// Ends a complete text answer with a newline unless it already has one. Held text is
    /// taken apart here, now that it is complete.
    pub fn end_text(&mut self) -> Result<()> {
        if let Some((extract, held)) = self.held.take() {
            self.text(&extract.apply(&held)?)?;
        }
        if self.last_byte != Some(b'\n') {
            self.out
                .write_all(b"\n")
                .map_err(|e| Error::write(e, &self.to))?;
            self.last_byte = Some(b'\n');
        }
        self.flush()
    }

    /// Writes one line of JSON (or any bytes that hold no newline) and its newline.
    pub fn line(&mut self, bytes: &[u8]) -> Result<()> {
        let to = &self.to;
        self.out.write_all(bytes).map_err(|e| Error::write(e, to))?;
        self.out.write_all(b"\n").map_err(|e| Error::write(e, to))?;
        self.last_byte = Some(b'\n');
        Ok(())
    }

    pub fn json(&mut self, value: &Value) -> Result<()> {
        let bytes = serde_json::to_vec(value).expect("a Value always serializes");
        self.line(&bytes)
    }

    /// One stream event as one line of `--json --stream`, `is_chunk` when it is known to be
    /// one: as received, unless it spans lines (then without the whitespace between tokens) or
    /// echoes the token (then compact, with the token masked in every string, a chunk's content
    /// included). An event that is not JSON is not written: the caller reports it.
    pub fn event(&mut self, text: &str, is_chunk: bool) -> Result<()> {
        let echoes = self
            .secret
            .as_ref()
            .is_some_and(|secret| redact::contains(secret, text));
        let one_line = !text.contains(['\n', '\r']);
        if is_chunk && one_line && !echoes {
            return self.line(text.as_bytes());
        }
        // Checked without building the value: every case below writes the text.
        if serde_json::from_str::<serde::de::IgnoredAny>(text).is_err() {
            return Ok(());
        }
        match (echoes, one_line) {
            (true, _) => self.line(redact::json(self.secret.as_ref(), text).as_bytes()),
            (false, true) => self.line(text.as_bytes()),
            // Whitespace dropped, all else as received: through `Value`, number text would
            // not survive (1.50, 1E2, an integer past u64).
            (false, false) => match extract::compact_json(text) {
                Ok(compact) => self.line(compact.as_bytes()),
                Err(_) => Ok(()),
            },
        }
    }

    fn redacted(&self, value: &Value) -> Value {
        let mut value = value.clone();
        redact::value(self.secret.as_ref(), &mut value);
        value
    }

    pub fn flush(&mut self) -> Result<()> {
        self.out.flush().map_err(|e| Error::write(e, &self.to))
    }

    /// `--dry-run`: the request, pretty-printed for a person to read.
    pub fn dry_run(&mut self, request: &Value) -> Result<()> {
        let shown = serde_json::to_vec_pretty(request).expect("a Value always serializes");
        self.line(&shown)?;
        self.flush()
    }

    /// The `--json` document of a success: the body as the server sent it with the `bnx` key
    /// added, or, after a stream, `{"bnx": ...}` alone. A body that echoes the token is
    /// written compact with it masked in every string, as a `--json --stream` line would be.
    pub fn document(&mut self, body: Option<&[u8]>, meta: &Value) -> Result<()> {
        let meta = &self.redacted(meta);
        match body {
            Some(body) => {
                let masked =
                    std::str::from_utf8(body).map(|text| redact::json(self.secret.as_ref(), text));
                let body = masked.as_ref().map_or(body, |text| text.as_bytes());
                self.line(&with_meta(body, meta)?)?
            }
            None => self.json(&json!({ "bnx": meta }))?,
        }
        self.flush()
    }

    /// The `--json` failure document: `{"error": ..., "bnx": ...}`.
    pub fn failure(&mut self, err: &Error, meta: &Value) -> Result<()> {
        let document = self.redacted(&json!({"error": err.json(), "bnx": meta}));
        self.json(&document)?;
        self.flush()
    }

    pub fn into_inner(self) -> W {
        self.out
    }
}

/// The body as the server sent it, with the `bnx` key added as its last member.
fn with_meta(body: &[u8], meta: &Value) -> Result<Vec<u8>> {
    let end = body.iter().rposition(|b| !b.is_ascii_whitespace());
    let end = match end {
        Some(end) if body[end] == b'}' => end,
        _ => {
            return Err(Error::msg(
                Kind::Protocol,
                "the answer is not a JSON object",
            ))
        }
    };
    let mut doc = Vec::with_capacity(end + 512);
    doc.extend_from_slice(&body[..end]);
    doc.extend_from_slice(b",\"bnx\":");
    serde_json::to_writer(&mut doc, meta).expect("a Value always serializes");
    doc.push(b'}');
    Ok(doc)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn meta_is_spliced_in_keeping_the_body_as_sent() {
        let body = b"{\"b\": 1, \"a\": [1.50, 2]}\n";
        let doc = with_meta(body, &json!({"status": 200})).unwrap();
        assert_eq!(
            doc,
            b"{\"b\": 1, \"a\": [1.50, 2],\"bnx\":{\"status\":200}}"
        );
        assert!(with_meta(b"[1]", &Value::Null).is_err());
    }

    #[test]
    fn text_gets_exactly_one_final_newline() {
        let mut out = Output::new(Vec::new());
        out.text("a").unwrap();
        out.text("").unwrap();
        out.end_text().unwrap();
        assert_eq!(out.out, b"a\n");
        let mut out = Output::new(Vec::new());
        out.text("a\n").unwrap();
        out.end_text().unwrap();
        assert_eq!(out.out, b"a\n");
    }

    #[test]
    fn held_text_is_written_taken_apart_when_complete() {
        let mut out = Output::new(Vec::new());
        out.extract(Some(Extract::CodeBlock));
        for piece in ["see\n``", "`sh\nls", " -l\n```\nbye"] {
            out.text(piece).unwrap();
            assert!(out.out.is_empty(), "nothing before the answer is complete");
        }
        out.end_text().unwrap();
        assert_eq!(out.out, b"ls -l\n");

        let mut out = Output::new(Vec::new());
        out.extract(Some(Extract::Json));
        out.text("no json").unwrap();
        assert_eq!(out.end_text().unwrap_err().kind, Kind::Unexpected);
        assert!(out.out.is_empty());
    }
}
