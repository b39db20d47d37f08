//! What a script asked of the answer (`-x`, `--expect-json`, `--schema`), checked once the answer
//! is complete: what to write instead of its text, or what is wrong with it, which the client
//! either asks again about (`--reask`, see `reask.rs`) or ends the run with (exit 3).

use std::sync::Arc;

use serde_json::{json, Value};

use crate::error::{Error, Kind};
use crate::extract::{compact_json, first_code_block, not_json, unfenced};
use crate::schema::{self, Mismatch, Schema, MAX_VALUES};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Contract {
    /// `-x`: the content of the first fenced code block.
    CodeBlock,
    /// `--expect-json`: one JSON value, compact.
    Json,
    /// `--schema`: one JSON value, compact, valid against the schema.
    Schema(Arc<Schema>),
}

/// Why an answer does not meet its contract.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Broken {
    Empty,
    NoCodeBlock,
    /// The parser's words (for a re-ask: the model has its answer), and where it stopped with
    /// how the answer starts (for the error line: the user may not have it).
    NotJson {
        why: String,
        at: String,
    },
    /// One JSON value, but nested deeper than a schema is checked (serde_json's limit of 128
    /// levels keeps every walk over the value, the validator's included, off a deep stack).
    TooDeep,
    /// One JSON value, but of more values than a schema is checked against (`MAX_VALUES`).
    TooMany,
    /// JSON the schema refuses.
    Mismatch(Mismatch),
}

impl Contract {
    /// What to write for the complete `answer` (the caller ends it with a newline).
    pub fn check(&self, answer: &str) -> Result<String, Broken> {
        if answer.trim().is_empty() {
            return Err(Broken::Empty);
        }
        match self {
            Contract::CodeBlock => first_code_block(answer).ok_or(Broken::NoCodeBlock),
            Contract::Json => json_value(answer),
            Contract::Schema(schema) => {
                let compact = json_value(answer)?;
                if schema::values(&compact) > MAX_VALUES {
                    return Err(Broken::TooMany);
                }
                // The grammar `compact_json` has just checked; only the depth can fail here.
                let value: Value = serde_json::from_str(&compact).map_err(|e| {
                    if e.to_string().starts_with("recursion limit exceeded") {
                        Broken::TooDeep
                    } else {
                        let why = e.to_string();
                        Broken::NotJson {
                            at: why.clone(),
                            why,
                        }
                    }
                })?;
                schema.check(&value).map_err(Broken::Mismatch)?;
                Ok(compact)
            }
        }
    }

    /// The option that asked for it, as the error line names it.
    pub fn flag(&self) -> &'static str {
        match self {
            Contract::CodeBlock => "-x",
            Contract::Json => "--expect-json",
            Contract::Schema(_) => "--schema",
        }
    }

    /// Whether what it delivers is a JSON value (a batch line's `content` is then that value).
    pub fn yields_json(&self) -> bool {
        !matches!(self, Contract::CodeBlock)
    }
}

fn json_value(answer: &str) -> Result<String, Broken> {
    let json = unfenced(answer);
    compact_json(json).map_err(|e| Broken::NotJson {
        why: e.to_string(),
        at: not_json(&e, answer, json),
    })
}

impl Broken {
    /// What is wrong, in a few words: the start of the error line and of a re-ask's notice.
    pub fn what(&self) -> &'static str {
        match self {
            Broken::Empty => "the answer is empty",
            Broken::NoCodeBlock => "the answer holds no fenced code block",
            Broken::NotJson { .. } => "the answer is not one JSON value",
            Broken::TooDeep => "the answer nests deeper than 128 levels",
            Broken::TooMany => "the answer holds more than 2,000,000 JSON values",
            Broken::Mismatch(_) => "the answer does not match the schema",
        }
    }

    /// The exit-3 error of a run whose last answer broke `contract`: one line naming the first
    /// failure, and for a schema the failures as `errors` in the JSON error object.
    pub fn error(&self, contract: &Contract) -> Error {
        let what = self.what();
        match self {
            Broken::Empty => Error::msg(Kind::Unexpected, what),
            Broken::NoCodeBlock => Error::msg(Kind::Unexpected, format!("{what} (-x)")),
            Broken::NotJson { at, .. } => Error::msg(
                Kind::Unexpected,
                format!("{what} ({}): {at}", contract.flag()),
            ),
            Broken::TooDeep => Error::msg(
                Kind::Unexpected,
                format!("{what}, too deep to check (--schema)"),
            ),
            Broken::TooMany => Error::msg(
                Kind::Unexpected,
                format!("{what}, too many to check (--schema)"),
            ),
            Broken::Mismatch(Mismatch { failures, total }) => {
                let first = failures.first().map_or_else(String::new, |f| {
                    format!(": {}: {}", shown_path(&f.path), f.message)
                });
                let more = match total.saturating_sub(1) {
                    0 => String::new(),
                    n => format!(" (and {n} more)"),
                };
                let errors: Vec<Value> = failures
                    .iter()
                    .map(|f| json!({"path": f.path, "message": f.message}))
                    .collect();
                Error::msg(Kind::Unexpected, format!("{what} (--schema){first}{more}"))
                    .with_field("errors", Value::Array(errors))
            }
        }
    }
}

/// A JSON Pointer as a person reads it on the error line: the root, `""`, is `(root)`.
pub fn shown_path(pointer: &str) -> &str {
    if pointer.is_empty() {
        "(root)"
    } else {
        pointer
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(contract: &Contract, answer: &str) -> Result<String, Error> {
        contract
            .check(answer)
            .map_err(|broken| broken.error(contract))
    }

    #[test]
    fn extract_refuses_an_answer_without_a_block() {
        assert_eq!(check(&Contract::CodeBlock, "```\na").unwrap(), "a");
        for bad in ["prose only", "", " \n"] {
            let err = check(&Contract::CodeBlock, bad).unwrap_err();
            assert_eq!(err.kind, Kind::Unexpected, "{bad:?}");
            assert_eq!(err.json()["type"], "answer");
        }
    }

    #[test]
    fn json_keeps_key_order_number_text_and_escapes() {
        let answer = "{ \"b\" : 1.50,\n  \"a\": [1e2, -0, 3E-7 ],\t\"s\": \"x y\\\" \\u00e9\\n\" }";
        assert_eq!(
            check(&Contract::Json, answer).unwrap(),
            "{\"b\":1.50,\"a\":[1e2,-0,3E-7],\"s\":\"x y\\\" \\u00e9\\n\"}"
        );
        assert_eq!(
            check(&Contract::Json, "12345678901234567890123").unwrap(),
            "12345678901234567890123"
        );
        assert_eq!(check(&Contract::Json, " \"a  b\" ").unwrap(), "\"a  b\"");
    }

    #[test]
    fn json_comes_out_of_one_surrounding_fence() {
        let answer = "\n```json\n{\"a\": [1,\n 2]}\n```\n";
        assert_eq!(check(&Contract::Json, answer).unwrap(), "{\"a\":[1,2]}");
        assert_eq!(check(&Contract::Json, "~~~\n[]\n~~~").unwrap(), "[]");
        for bad in [
            "Here you go:\n```json\n{}\n```",
            "```json\n{}\n```\nHope this helps",
            "{\"a\": 1} {\"b\": 2}",
            "{\"a\": 1,}",
            "{'a': 1}",
            "NaN",
            "```\n```",
            "[turn 1] {}",
            "\"raw\nnewline\"",
            "\"tab\tin a string\"",
        ] {
            let err = check(&Contract::Json, bad).unwrap_err();
            assert_eq!(err.kind, Kind::Unexpected, "{bad:?}");
        }
        let deep = "[".repeat(100_000) + &"]".repeat(100_000);
        assert!(
            check(&Contract::Json, &deep).is_ok(),
            "deep nesting is checked without recursion, never a stack overflow"
        );
    }

    fn schema(text: &str) -> Contract {
        Contract::Schema(Arc::new(Schema::from_arg(text).unwrap()))
    }

    #[test]
    fn a_schema_keeps_the_json_as_written_and_names_the_first_failure() {
        let price = schema(
            r#"{"properties": {"items": {"items": {"properties": {"price": {"type": "number"}}}}},
                "required": ["total"]}"#,
        );
        assert_eq!(
            check(
                &price,
                "```json\n{\"items\": [{\"price\": 1.50}], \"total\": 1E0}\n```"
            )
            .unwrap(),
            "{\"items\":[{\"price\":1.50}],\"total\":1E0}"
        );
        let answer = "{\"items\": [{\"price\": \"12\"}, {\"price\": true}], \"total\": 0}";
        let err = check(&price, answer).unwrap_err();
        assert_eq!(err.kind, Kind::Unexpected);
        assert_eq!(
            err.line(),
            "the answer does not match the schema (--schema): /items/0/price: \"12\" is not of \
             type \"number\" (and 1 more)"
        );
        let err = check(
            &price,
            "{\"items\": [{\"price\": \"12\"}, {\"price\": true}]}",
        )
        .unwrap_err();
        let errors = &err.json()["errors"];
        assert_eq!(
            *errors,
            json!([
                {"path": "", "message": "\"total\" is a required property"},
                {"path": "/items/0/price", "message": "\"12\" is not of type \"number\""},
                {"path": "/items/1/price", "message": "true is not of type \"number\""},
            ]),
            "an object's own failures first (required names the object), then by place"
        );
        let line = check(&schema(r#"{"type": "array"}"#), "{}")
            .unwrap_err()
            .line();
        assert!(
            line.contains("(--schema): (root): {} is not of type"),
            "{line}"
        );
    }

    #[test]
    fn a_schema_reads_the_answer_as_expect_json_does() {
        let any = schema("{}");
        let err = check(&any, "Sure! {\"a\": 1}").unwrap_err();
        assert!(
            err.line()
                .starts_with("the answer is not one JSON value (--schema): "),
            "{}",
            err.line()
        );
        let deep = "[".repeat(100_000) + &"]".repeat(100_000);
        let err = check(&any, &deep).unwrap_err();
        assert_eq!(
            err.line(),
            "the answer nests deeper than 128 levels, too deep to check (--schema)"
        );
        assert_eq!(check(&any, "\n").unwrap_err().line(), "the answer is empty");
        let many = format!("[{}0]", "0,".repeat(MAX_VALUES));
        assert_eq!(
            check(&any, &many).unwrap_err().line(),
            "the answer holds more than 2,000,000 JSON values, too many to check (--schema)"
        );
        let enough = format!("[{}0]", "0,".repeat(MAX_VALUES - 3));
        assert!(check(&any, &enough).is_ok());
    }
}
