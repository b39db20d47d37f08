//! Everything `bnx` writes on stdout: the answer as text, or JSON. Notices never come here;
//! `printer.rs` owns stderr.

use std::io::Write;

use serde_json::{json, Value};

use crate::error::{Error, Kind, Result};
use crate::extract;
use crate::mode::Mode;
use crate::redact;
use crate::token::Secret;

/// The most answer text held for `-x` or `--expect-json`, as much as a whole answer may be.
const MAX_HELD: usize = 64 * 1024 * 1024;

/// Standard output, or the file of `-o`, in the run's [`Mode`]: the response hands it every
/// piece of text and every stream event as it decodes them, and the mode decides what is
/// written. Pieces are buffered only until `flush`, which the caller does before it waits for
/// more data, so nothing sits in a buffer while the network is quiet.
///
/// It also keeps what the run needs of the answer once it is complete: the text, when a
/// contract (`-x`, `--expect-json`) or a batch line wants it whole (`hold`), and the stream's
/// events as received, when a batch line's `response` wants them (`record`).
pub struct Output<W: Write> {
    out: W,
    mode: Mode,
    last_byte: Option<u8>,
    /// What is written to, for error messages.
    to: String,
    /// The answer's text so far, written (if at all) only once it is complete.
    held: Option<String>,
    /// The stream's events as received.
    events: Option<Vec<String>>,
    /// Once known, the token is masked in everything but an answer written as received.
    secret: Option<Secret>,
}

impl<W: Write> Output<W> {
    pub fn new(out: W, mode: Mode) -> Self {
        Output::to(out, "standard output", mode)
    }

    /// Output to `to`, named so in error messages.
    pub fn to(out: W, to: impl Into<String>, mode: Mode) -> Self {
        Output {
            out,
            mode,
            last_byte: None,
            to: to.into(),
            held: matches!(mode, Mode::Lines { .. }).then(String::new),
            events: None,
            secret: None,
        }
    }

    /// Masks `secret` from now on in what the server said, but for an answer written as
    /// received (its text, or a whole `--json` body): error objects, the `bnx` object's values,
    /// every `--json --stream` line.
    pub fn redact(&mut self, secret: &Secret) {
        self.secret = Some(secret.clone());
    }

    /// Holds the answer's text from now on, for [`Output::take_held`] once it is complete.
    pub fn hold(&mut self) {
        self.held.get_or_insert_with(String::new);
    }

    /// Keeps a stream's events from now on, for [`Output::take_events`].
    pub fn record(&mut self) {
        self.events.get_or_insert_with(Vec::new);
    }

    /// The text held since `hold`; the answer that follows (a re-ask's) starts afresh.
    pub fn take_held(&mut self) -> Option<String> {
        self.held.as_mut().map(std::mem::take)
    }

    pub fn take_events(&mut self) -> Vec<String> {
        self.events.as_mut().map(std::mem::take).unwrap_or_default()
    }

    /// Whether the answer's text goes to this output as text: a notice about an answer without
    /// text is for such a run alone.
    pub fn writes_text(&self) -> bool {
        self.mode == Mode::Text
    }

    /// A piece of the answer's text: held, written, or (in JSON) left to the body or events.
    pub fn text(&mut self, piece: &str) -> Result<()> {
        if let Some(held) = &mut self.held {
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
        if self.mode != Mode::Text {
            return Ok(());
        }
        self.write_text(piece)
    }

    fn write_text(&mut self, piece: &str) -> Result<()> {
        if let Some(&last) = piece.as_bytes().last() {
            self.out
                .write_all(piece.as_bytes())
                .map_err(|e| Error::write(e, &self.to))?;
            self.last_byte = Some(last);
        }
        Ok(())
    }

    /// Writes the end of a complete answer in text: `delivered` (what a contract made of it)
    /// or, when it held text, the newline it may lack.
    pub fn deliver(&mut self, delivered: Option<&str>, has_text: bool) -> Result<()> {
        if self.mode != Mode::Text {
            return Ok(());
        }
        match delivered {
            Some(text) => self.write_text(text)?,
            None if !has_text => return Ok(()),
            None => {}
        }
        self.end_text()
    }

    /// Ends a text with a newline unless it already has one.
    fn end_text(&mut self) -> Result<()> {
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
        if let Some(events) = &mut self.events {
            events.push(text.to_string());
        }
        if self.mode != Mode::Json {
            return Ok(());
        }
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
    /// Other modes have no document.
    pub fn document(&mut self, body: Option<&[u8]>, meta: &Value) -> Result<()> {
        if self.mode != Mode::Json {
            return Ok(());
        }
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
        let mut out = Output::new(Vec::new(), Mode::Text);
        out.text("a").unwrap();
        out.text("").unwrap();
        out.deliver(None, true).unwrap();
        assert_eq!(out.out, b"a\n");
        let mut out = Output::new(Vec::new(), Mode::Text);
        out.text("a\n").unwrap();
        out.deliver(None, true).unwrap();
        assert_eq!(out.out, b"a\n");
        let mut out = Output::new(Vec::new(), Mode::Text);
        out.deliver(None, false).unwrap();
        assert_eq!(
            out.out, b"",
            "an answer without text gets no newline either"
        );
    }

    #[test]
    fn held_text_is_written_only_as_delivered() {
        let mut out = Output::new(Vec::new(), Mode::Text);
        out.hold();
        for piece in ["see\n``", "`sh\nls", " -l\n```\nbye"] {
            out.text(piece).unwrap();
            assert!(out.out.is_empty(), "nothing before the answer is complete");
        }
        assert_eq!(out.take_held().unwrap(), "see\n```sh\nls -l\n```\nbye");
        assert_eq!(
            out.take_held().unwrap(),
            "",
            "the next answer starts afresh"
        );
        out.deliver(Some("ls -l\n"), true).unwrap();
        assert_eq!(out.out, b"ls -l\n");
    }

    #[test]
    fn the_mode_decides_what_is_written_and_kept() {
        let chunk = r#"{"choices":[{"delta":{"content":"a"}}]}"#;
        let mut json = Output::new(Vec::new(), Mode::Json);
        json.text("a").unwrap();
        json.event(chunk, true).unwrap();
        json.deliver(None, true).unwrap();
        assert_eq!(json.out, format!("{chunk}\n").as_bytes());

        let mut text = Output::new(Vec::new(), Mode::Text);
        text.event(chunk, true).unwrap();
        text.document(None, &json!({})).unwrap();
        assert!(
            text.out.is_empty(),
            "text has no event lines and no document"
        );

        let mut line = Output::new(Vec::new(), Mode::Lines { response: true });
        line.record();
        line.text("a").unwrap();
        line.event(chunk, true).unwrap();
        line.deliver(None, true).unwrap();
        assert!(line.out.is_empty(), "a batch item writes its own line");
        assert_eq!(line.take_held().unwrap(), "a");
        assert_eq!(line.take_events(), [chunk]);
    }
}
