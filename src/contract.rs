//! What a script asked of the answer (`-x`, `--expect-json`), checked once the answer is
//! complete: what to write instead of its text, or exit 3 saying why the answer is not that.

use crate::error::{Error, Kind, Result};
use crate::extract::{compact_json, first_code_block, not_json, unfenced};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Contract {
    /// `-x`: the content of the first fenced code block.
    CodeBlock,
    /// `--expect-json`: one JSON value, compact.
    Json,
}

impl Contract {
    /// What to write for the complete `answer` (the caller ends it with a newline).
    pub fn check(self, answer: &str) -> Result<String> {
        if answer.trim().is_empty() {
            return Err(unexpected("the answer is empty"));
        }
        match self {
            Contract::CodeBlock => first_code_block(answer)
                .ok_or_else(|| unexpected("the answer holds no fenced code block (-x)")),
            Contract::Json => {
                let json = unfenced(answer);
                compact_json(json).map_err(|e| {
                    unexpected(format!(
                        "the answer is not one JSON value (--expect-json): {}",
                        not_json(&e, answer, json)
                    ))
                })
            }
        }
    }
}

fn unexpected(message: impl std::fmt::Display) -> Error {
    Error::msg(Kind::Unexpected, message)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn extract_refuses_an_answer_without_a_block() {
        assert_eq!(Contract::CodeBlock.check("```\na").unwrap(), "a");
        for bad in ["prose only", "", " \n"] {
            let err = Contract::CodeBlock.check(bad).unwrap_err();
            assert_eq!(err.kind, Kind::Unexpected, "{bad:?}");
            assert_eq!(err.json()["type"], "answer");
        }
    }

    #[test]
    fn json_keeps_key_order_number_text_and_escapes() {
        let answer = "{ \"b\" : 1.50,\n  \"a\": [1e2, -0, 3E-7 ],\t\"s\": \"x y\\\" \\u00e9\\n\" }";
        assert_eq!(
            Contract::Json.check(answer).unwrap(),
            "{\"b\":1.50,\"a\":[1e2,-0,3E-7],\"s\":\"x y\\\" \\u00e9\\n\"}"
        );
        assert_eq!(
            Contract::Json.check("12345678901234567890123").unwrap(),
            "12345678901234567890123"
        );
        assert_eq!(Contract::Json.check(" \"a  b\" ").unwrap(), "\"a  b\"");
    }

    #[test]
    fn json_comes_out_of_one_surrounding_fence() {
        let answer = "\n```json\n{\"a\": [1,\n 2]}\n```\n";
        assert_eq!(Contract::Json.check(answer).unwrap(), "{\"a\":[1,2]}");
        assert_eq!(Contract::Json.check("~~~\n[]\n~~~").unwrap(), "[]");
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
            let err = Contract::Json.check(bad).unwrap_err();
            assert_eq!(err.kind, Kind::Unexpected, "{bad:?}");
        }
        let deep = "[".repeat(100_000) + &"]".repeat(100_000);
        assert!(
            Contract::Json.check(&deep).is_ok(),
            "deep nesting is checked without recursion, never a stack overflow"
        );
    }
}
