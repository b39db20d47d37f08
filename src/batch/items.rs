//! The items of a `--batch` file: JSONL, one object a line, all checked before anything is
//! sent, so that a typo on line 900 costs nothing instead of 899 paid answers and a failure.

use std::borrow::Cow;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::Value;

use crate::config::Delivery;
use crate::contract::Contract;
use crate::error::{Error, Kind, Result};
use crate::prompt::Overrides;
use crate::schema::Schema;
use crate::wire::{self, Message};

/// One line of the batch file, as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Line {
    id: Option<Box<RawValue>>,
    prompt: Option<String>,
    messages: Option<Vec<Message>>,
    files: Option<Vec<PathBuf>>,
    system: Option<String>,
    agent: Option<String>,
    temperature: Option<f64>,
    max_tokens: Option<u64>,
    conversation: Option<String>,
    /// A path (relative to the working directory) or the schema itself.
    schema: Option<Box<RawValue>>,
}

/// An item, checked.
#[derive(Debug, Clone)]
pub struct Item {
    /// The line it came from, counting from 1.
    pub line: usize,
    /// The id as given (a string or a number, its text kept exactly), or the line number as a
    /// string.
    pub id: Box<RawValue>,
    /// The id as text: `1` and `"1"` are the same item.
    pub key: String,
    /// Its own fields; those it leaves out are taken from the command line.
    pub ask: Overrides,
    /// Its own `schema`, which beats the command line's contract.
    pub contract: Option<Contract>,
}

impl Item {
    /// What the item's answer must be and how it is delivered: the run's, but for its own
    /// schema.
    pub fn delivery<'d>(&self, run: &'d Delivery) -> Cow<'d, Delivery> {
        match &self.contract {
            Some(contract) => Cow::Owned(Delivery {
                contract: Some(contract.clone()),
                ..run.clone()
            }),
            None => Cow::Borrowed(run),
        }
    }
}

/// The items' schemas, each compiled once however many items name it.
#[derive(Default)]
struct Schemas(HashMap<String, Arc<Schema>>);

impl Schemas {
    /// A `schema` field's contract: a string is a path, an object the schema itself.
    fn contract(&mut self, field: &RawValue) -> Result<Contract, String> {
        let text = field.get();
        if let Some(schema) = self.0.get(text) {
            return Ok(Contract::Schema(Arc::clone(schema)));
        }
        let schema = match serde_json::from_str::<Value>(text) {
            Ok(Value::String(path)) => Schema::from_file(Path::new(&path)),
            Ok(Value::Object(_)) => {
                Schema::from_text(text).map_err(|why| format!("the schema {why}"))
            }
            _ => Err(format!("schema must be a path or an object, not {text}")),
        }?;
        let schema = Arc::new(schema);
        self.0.insert(text.to_string(), Arc::clone(&schema));
        Ok(Contract::Schema(schema))
    }
}

/// Parses and checks every line of `text`, named `name` in errors. Blank lines are skipped.
/// `has_prompt` says whether the command line gives a prompt of its own (words or
/// `--messages`), so that an item may leave its prompt out.
pub fn parse(text: &str, name: &str, has_prompt: bool) -> Result<Vec<Item>> {
    let mut items = Vec::new();
    let mut seen: HashMap<String, usize> = HashMap::new();
    let mut schemas = Schemas::default();
    for (index, raw) in text.lines().enumerate() {
        let line = index + 1;
        if raw.trim().is_empty() {
            continue;
        }
        let bad = |why: String| {
            Error::msg(Kind::Input, format!("{name}, line {line}: {why}"))
                .with_hint(r#"each line is an object such as {"id": "a", "prompt": "..."}"#)
        };
        if !raw.trim_start().starts_with('{') {
            return Err(bad("not a JSON object".into()));
        }
        let mut parsed: Line = serde_json::from_str(raw).map_err(|e| {
            // The line number is ours; serde's "at line 1" would only confuse.
            let why = e.to_string();
            let why = why.split(" at line ").next().unwrap_or(&why);
            bad(format!("{why} (column {})", e.column()))
        })?;
        let schema = parsed.schema.take();
        let mut item = check(parsed, line, has_prompt).map_err(bad)?;
        item.contract = schema
            .map(|field| schemas.contract(&field))
            .transpose()
            .map_err(|why| Error::msg(Kind::Input, format!("{name}, line {line}: {why}")))?;
        if let Some(first) = seen.insert(item.key.clone(), line) {
            return Err(bad(format!(
                "the id {} is already used on line {first}",
                item.id
            )));
        }
        items.push(item);
    }
    if items.is_empty() {
        return Err(Error::msg(Kind::Input, format!("{name} holds no items")));
    }
    Ok(items)
}

/// An id's text for comparing: a string's content, or a number's text as written (so that
/// `12345678901234567890123` is not rounded into another item's id).
pub fn key(id: &RawValue) -> Option<String> {
    let text = id.get();
    match serde_json::from_str::<Value>(text).ok()? {
        Value::String(s) if !s.is_empty() => Some(s),
        Value::Number(_) => Some(text.to_string()),
        _ => None,
    }
}

fn check(line: Line, number: usize, has_prompt: bool) -> Result<Item, String> {
    let (id, key) = match line.id {
        None => {
            let id = serde_json::value::to_raw_value(&number.to_string()).expect("serializes");
            (id, number.to_string())
        }
        Some(id) => match key(&id) {
            Some(key) => (id, key),
            None => return Err(format!("id must be a string or a number, not {}", id.get())),
        },
    };
    if let Some(t) = line.temperature.filter(|t| !wire::TEMPERATURE.contains(t)) {
        return Err(format!("temperature {t} must be between 0 and 2"));
    }
    if line.max_tokens == Some(0) {
        return Err("max_tokens must be a positive whole number".into());
    }
    let asks = line.prompt.as_deref().is_some_and(|p| !p.trim().is_empty())
        || line
            .messages
            .as_ref()
            .is_some_and(|m| m.iter().any(|m| m.role != "system"))
        || line.files.as_ref().is_some_and(|f| !f.is_empty());
    if !asks && !has_prompt {
        return Err("no prompt: give prompt, messages or files, or PROMPT words".into());
    }
    Ok(Item {
        line: number,
        id,
        key,
        ask: Overrides {
            prompt: line.prompt,
            messages: line.messages,
            files: line.files,
            system: line.system,
            agent: line.agent,
            temperature: line.temperature,
            max_tokens: line.max_tokens,
            conversation: line.conversation,
        },
        contract: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(text: &str) -> String {
        let err = parse(text, "items.jsonl", false).unwrap_err();
        assert_eq!(err.kind, Kind::Input);
        err.line()
    }

    #[test]
    fn ids_default_to_the_line_number_and_compare_as_text() {
        let items = parse(
            "{\"prompt\": \"a\"}\n\n{\"id\": 7, \"prompt\": \"b\"}\n{\"id\": \"x\", \"prompt\": \"c\"}\n",
            "f",
            false,
        )
        .unwrap();
        let keys: Vec<&str> = items.iter().map(|i| i.key.as_str()).collect();
        assert_eq!(keys, ["1", "7", "x"]);
        assert_eq!(items[1].id.get(), "7");
        assert_eq!(items[1].line, 3);
        assert!(
            err("{\"id\": 1, \"prompt\": \"a\"}\n{\"id\": \"1\", \"prompt\": \"b\"}")
                .contains("line 2: the id \"1\" is already used on line 1")
        );
        assert!(
            err("{\"prompt\": \"a\"}\n{\"id\": \"1\", \"prompt\": \"b\"}")
                .contains("already used on line 1")
        );
    }

    #[test]
    fn numeric_ids_keep_the_text_they_were_written_with() {
        let items = parse(
            "{\"id\": 12345678901234567890123, \"prompt\": \"a\"}\n{\"id\": 12345678901234567890124, \"prompt\": \"b\"}\n{\"id\": 1e2, \"prompt\": \"c\"}",
            "f",
            false,
        )
        .unwrap();
        let keys: Vec<&str> = items.iter().map(|i| i.key.as_str()).collect();
        assert_eq!(
            keys,
            ["12345678901234567890123", "12345678901234567890124", "1e2"]
        );
        assert_eq!(items[2].id.get(), "1e2");
    }

    #[test]
    fn every_field_is_checked_and_the_line_named() {
        for (text, expected) in [
            ("[1]", "line 1: not a JSON object"),
            (
                "{\"prompt\": \"a\"",
                "line 1: EOF while parsing an object (column 14)",
            ),
            (
                "{\"prompt\": \"a\", \"promt\": \"b\"}",
                "unknown field `promt`",
            ),
            ("{\"prompt\": 3}", "invalid type: integer"),
            (
                "{\"prompt\": \"a\", \"prompt\": \"b\"}",
                "duplicate field `prompt`",
            ),
            (
                "{\"id\": true, \"prompt\": \"a\"}",
                "id must be a string or a number",
            ),
            (
                "{\"prompt\": \"a\", \"temperature\": 3}",
                "temperature 3 must be",
            ),
            (
                "{\"prompt\": \"a\", \"max_tokens\": 0}",
                "max_tokens must be",
            ),
            ("{\"prompt\": \"a\", \"max_tokens\": -1}", "invalid value"),
            ("{\"id\": \"a\"}", "no prompt"),
            (
                "{\"messages\": [{\"role\": \"system\", \"content\": \"s\"}]}",
                "no prompt",
            ),
            (
                "{\"messages\": [{\"role\": \"user\"}]}",
                "missing field `content`",
            ),
            ("{\"prompt\": \"a\"}\nnot json", "line 2:"),
            ("", "holds no items"),
        ] {
            let line = err(text);
            assert!(line.contains(expected), "{text}: {line}");
        }
    }

    #[test]
    fn an_items_schema_is_a_path_or_an_object_compiled_once() {
        let items = parse(
            "{\"prompt\": \"a\", \"schema\": {\"type\": \"array\"}}\n\
             {\"prompt\": \"b\", \"schema\": {\"type\": \"array\"}}\n{\"prompt\": \"c\"}",
            "f",
            false,
        )
        .unwrap();
        let (Some(Contract::Schema(a)), Some(Contract::Schema(b))) =
            (&items[0].contract, &items[1].contract)
        else {
            panic!("both items have a schema")
        };
        assert!(Arc::ptr_eq(a, b), "the same schema is compiled once");
        assert_eq!(items[2].contract, None);
        for (text, expected) in [
            (
                "{\"prompt\": \"a\", \"schema\": 3}",
                "line 1: schema must be a path or an object, not 3",
            ),
            (
                "{\"prompt\": \"a\"}\n{\"prompt\": \"a\", \"schema\": \"no-such.json\"}",
                "line 2: cannot read schema file no-such.json",
            ),
            (
                "{\"prompt\": \"a\", \"schema\": {\"$ref\": \"other.json\"}}",
                "line 1: the schema refers to other.json, outside its own document",
            ),
        ] {
            let line = err(text);
            assert!(line.contains(expected), "{text}: {line}");
        }
    }

    #[test]
    fn a_prompt_on_the_command_line_lets_items_leave_theirs_out() {
        let items = parse("{\"id\": \"a\"}", "f", true).unwrap();
        assert_eq!(items[0].ask.prompt, None);
    }
}
