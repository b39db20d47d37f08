//! `--log FILE`: one JSON line per request, written and flushed when the request completes, so
//! a test can assert on exactly what a client sent.

use std::fs::File;
use std::io::{self, Write};
use std::path::Path;
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::{json, Map, Value};

use super::http::Request;

pub struct Log {
    file: Mutex<File>,
}

impl Log {
    pub fn create(path: &Path) -> io::Result<Log> {
        Ok(Log {
            file: Mutex::new(File::create(path)?),
        })
    }

    /// `status` is `None` when no response was sent (the `drop` fault).
    pub fn record(&self, request: &Request, status: Option<u16>, fault: Option<String>) {
        let line = entry(request, status, fault).to_string();
        let mut file = self
            .file
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let _ = writeln!(file, "{line}");
    }
}

/// Headers with the bearer token redacted; the body as JSON when it is JSON, else as text.
pub fn entry(request: &Request, status: Option<u16>, fault: Option<String>) -> Value {
    let mut headers = Map::new();
    for (name, value) in &request.headers {
        let value = if name == "authorization" {
            match value.split_once(' ') {
                Some((scheme, _)) => format!("{scheme} ***"),
                None => "***".to_string(),
            }
        } else {
            value.clone()
        };
        headers.insert(name.clone(), Value::String(value));
    }
    let body = serde_json::from_slice::<Value>(&request.body)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&request.body).into_owned()));
    let time = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64());
    json!({
        "time": time,
        "method": request.method,
        "path": request.path,
        "headers": headers,
        "body": body,
        "status": status,
        "fault": fault,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_is_redacted_and_json_body_kept() {
        let request = Request {
            method: "POST".into(),
            path: "/p".into(),
            headers: vec![
                ("authorization".into(), "Bearer s3cret".into()),
                ("user-agent".into(), "t".into()),
            ],
            body: br#"{"a":1}"#.to_vec(),
            close: false,
            http10: false,
        };
        let e = entry(&request, Some(200), Some("cut:1".into()));
        assert_eq!(e["headers"]["authorization"], "Bearer ***");
        assert_eq!(e["body"]["a"], 1);
        assert_eq!(e["fault"], "cut:1");
        assert!(!e.to_string().contains("s3cret"));
    }
}
