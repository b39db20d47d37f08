//! Everything `bnx` writes: the answer (or JSON) on stdout, notices, the spinner and errors on
//! stderr. Answer text never goes to stderr; notices never go to stdout.

use std::io::{self, IsTerminal, Write};
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};
use serde_json::{json, Map, Value};

use crate::error::{Error, Result};

/// What the `bnx` key of `--json` output reports about the exchange.
#[derive(Debug, Clone)]
pub struct Meta {
    pub agent: String,
    pub status: Option<u16>,
    pub conversation_id: Option<String>,
    pub credits_consumed: Option<String>,
    pub credits_remaining: Option<String>,
    pub attempts: u32,
    pub started: Instant,
    /// Seconds a 429 asked us to wait, when known.
    pub retry_after: Option<f64>,
    /// Streaming only: whether `[DONE]` arrived, and the last finish reason seen.
    pub stream: Option<StreamMeta>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StreamMeta {
    pub done: bool,
    pub finish_reason: Option<String>,
}

impl Meta {
    pub fn new(agent: &str, streaming: bool) -> Self {
        Meta {
            agent: agent.to_string(),
            status: None,
            conversation_id: None,
            credits_consumed: None,
            credits_remaining: None,
            attempts: 0,
            started: Instant::now(),
            retry_after: None,
            stream: streaming.then(StreamMeta::default),
        }
    }

    pub fn to_json(&self) -> Value {
        let mut meta = Map::new();
        meta.insert("status".into(), json!(self.status));
        meta.insert("agent".into(), json!(self.agent));
        meta.insert("conversation_id".into(), json!(self.conversation_id));
        meta.insert("credits_consumed".into(), credits(&self.credits_consumed));
        meta.insert("credits_remaining".into(), credits(&self.credits_remaining));
        meta.insert("attempts".into(), json!(self.attempts));
        meta.insert(
            "elapsed_ms".into(),
            json!(self.started.elapsed().as_millis() as u64),
        );
        if let Some(secs) = self.retry_after {
            meta.insert("retry_after".into(), json!(secs));
        }
        if let Some(stream) = &self.stream {
            meta.insert("done".into(), json!(stream.done));
            meta.insert("finish_reason".into(), json!(stream.finish_reason));
        }
        Value::Object(meta)
    }
}

/// A credit header as a JSON number when it is one, else the string as sent.
fn credits(header: &Option<String>) -> Value {
    match header {
        None => Value::Null,
        Some(raw) => match raw.trim().parse::<serde_json::Number>() {
            Ok(n) => Value::Number(n),
            Err(_) => Value::String(raw.clone()),
        },
    }
}

/// Standard output. Pieces are buffered only until `flush`, which the caller does before it
/// waits for more data, so nothing sits in a buffer while the network is quiet.
pub struct Output<W: Write> {
    out: W,
    last_byte: Option<u8>,
}

impl<W: Write> Output<W> {
    pub fn new(out: W) -> Self {
        Output {
            out,
            last_byte: None,
        }
    }

    pub fn text(&mut self, piece: &str) -> Result<()> {
        if let Some(&last) = piece.as_bytes().last() {
            self.out
                .write_all(piece.as_bytes())
                .map_err(Error::output)?;
            self.last_byte = Some(last);
        }
        Ok(())
    }

    /// Ends a complete text answer with a newline unless it already has one.
    pub fn end_text(&mut self) -> Result<()> {
        if self.last_byte != Some(b'\n') {
            self.out.write_all(b"\n").map_err(Error::output)?;
            self.last_byte = Some(b'\n');
        }
        self.flush()
    }

    /// Writes one line of JSON (or any bytes that hold no newline) and its newline.
    pub fn line(&mut self, bytes: &[u8]) -> Result<()> {
        self.out.write_all(bytes).map_err(Error::output)?;
        self.out.write_all(b"\n").map_err(Error::output)?;
        self.last_byte = Some(b'\n');
        Ok(())
    }

    pub fn json(&mut self, value: &Value) -> Result<()> {
        let bytes = serde_json::to_vec(value).expect("a Value always serializes");
        self.line(&bytes)
    }

    pub fn flush(&mut self) -> Result<()> {
        self.out.flush().map_err(Error::output)
    }

    /// `--dry-run`: the request, pretty-printed for a person to read.
    pub fn dry_run(&mut self, request: &Value) -> Result<()> {
        let shown = serde_json::to_vec_pretty(request).expect("a Value always serializes");
        self.line(&shown)?;
        self.flush()
    }

    /// The `--json` failure document: `{"error": ..., "bnx": ...}`.
    pub fn failure(&mut self, err: &Error, meta: &Meta) -> Result<()> {
        self.json(&json!({"error": err.json(), "bnx": meta.to_json()}))?;
        self.flush()
    }

    pub fn into_inner(self) -> W {
        self.out
    }
}

/// Notices, verbose lines and the spinner on stderr.
pub struct Notices {
    quiet: bool,
    verbose: bool,
    spinner: Option<ProgressBar>,
}

impl Notices {
    pub fn new(quiet: bool, verbose: bool) -> Self {
        Notices {
            quiet,
            verbose,
            spinner: None,
        }
    }

    /// A notice the user should see: retries, a cut answer, a warning. Silenced by `-q`.
    pub fn notice(&self, message: &str) {
        if !self.quiet {
            self.write(&format!("bnx: {message}"));
        }
    }

    pub fn verbose(&self, message: &str) {
        if self.verbose {
            self.write(&format!("bnx: {message}"));
        }
    }

    pub fn error(&self, err: &Error) {
        self.write(&format!("bnx: error: {}", err.line()));
        if let Some(hint) = &err.hint {
            self.write(&format!("hint: {hint}"));
        }
    }

    fn write(&self, line: &str) {
        let print = || {
            let _ = writeln!(io::stderr().lock(), "{line}");
        };
        match &self.spinner {
            Some(spinner) => spinner.suspend(print),
            None => print(),
        }
    }

    /// Shows elapsed seconds while waiting, only for a person watching a terminal.
    pub fn start_spinner(&mut self) {
        if self.quiet || !io::stderr().is_terminal() {
            return;
        }
        let spinner = ProgressBar::new_spinner().with_message("waiting for the answer");
        spinner.set_style(
            ProgressStyle::with_template("{spinner} {msg} {elapsed}")
                .expect("the template is valid"),
        );
        spinner.enable_steady_tick(Duration::from_millis(100));
        self.spinner = Some(spinner);
    }

    /// Erases the spinner, before any answer text is written.
    pub fn stop_spinner(&mut self) {
        if let Some(spinner) = self.spinner.take() {
            spinner.finish_and_clear();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credits_are_numbers_when_they_parse() {
        assert_eq!(credits(&Some("3".into())), json!(3));
        assert_eq!(credits(&Some("2.5".into())), json!(2.5));
        assert_eq!(credits(&Some("lots".into())), json!("lots"));
        assert_eq!(credits(&None), Value::Null);
    }

    #[test]
    fn meta_has_the_spec_fields_in_order() {
        let mut meta = Meta::new("default", true);
        meta.status = Some(200);
        meta.attempts = 1;
        let value = meta.to_json();
        let keys: Vec<&str> = value
            .as_object()
            .unwrap()
            .keys()
            .map(|k| k.as_str())
            .collect();
        assert_eq!(
            keys,
            [
                "status",
                "agent",
                "conversation_id",
                "credits_consumed",
                "credits_remaining",
                "attempts",
                "elapsed_ms",
                "done",
                "finish_reason"
            ]
        );
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
}
