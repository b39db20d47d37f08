//! Taking a complete answer apart for `-x` and `--expect-json` (the rules `contract.rs`
//! applies): its first fenced code block, the text inside one surrounding fence, JSON made
//! compact. A leaf: it imports nothing of the crate.
//!
//! Fences follow CommonMark: a line of at least three backticks or tildes opens a block (an
//! info string may follow; after backticks it holds no backtick), and the block ends at a line
//! of the same character, at least as long, with nothing after it but spaces, or else at the end
//! of the answer. One deviation: a fence may be indented by any number of spaces, not at most
//! three, because answers nest code blocks in list items, whose indentation CommonMark would
//! have removed first. The block's lines lose as many leading spaces as its opening fence had.

/// An opening fence: its character, its length and its indentation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Fence {
    char: u8,
    len: usize,
    indent: usize,
}

/// The line without its line ending (`\n` or `\r\n`).
fn bare(line: &str) -> &str {
    let line = line.strip_suffix('\n').unwrap_or(line);
    line.strip_suffix('\r').unwrap_or(line)
}

fn opening_fence(line: &str) -> Option<Fence> {
    let line = bare(line);
    let rest = line.trim_start_matches(' ');
    let indent = line.len() - rest.len();
    let char = *rest
        .as_bytes()
        .first()
        .filter(|c| matches!(c, b'`' | b'~'))?;
    let len = rest.bytes().take_while(|&c| c == char).count();
    let info = &rest[len..];
    (len >= 3 && !(char == b'`' && info.contains('`'))).then_some(Fence { char, len, indent })
}

fn closes(line: &str, fence: Fence) -> bool {
    let rest = bare(line).trim_start_matches(' ');
    let len = rest.bytes().take_while(|&c| c == fence.char).count();
    len >= fence.len && rest[len..].trim_matches([' ', '\t']).is_empty()
}

/// The content of the first fenced code block, each line with its line ending as written.
pub fn first_code_block(text: &str) -> Option<String> {
    let mut lines = text.split_inclusive('\n');
    let fence = lines.by_ref().find_map(opening_fence)?;
    let mut code = String::new();
    for line in lines.take_while(|line| !closes(line, fence)) {
        let spaces = line.len() - line.trim_start_matches(' ').len();
        code.push_str(&line[spaces.min(fence.indent)..]);
    }
    Some(code)
}

/// The text inside one fenced block that is the whole of `text` (surrounding whitespace aside),
/// else `text` itself.
pub fn unfenced(text: &str) -> &str {
    let trimmed = text.trim();
    let Some((first, inner)) = trimmed.split_once('\n') else {
        return text;
    };
    let Some(fence) = opening_fence(first) else {
        return text;
    };
    match inner.rsplit_once('\n') {
        Some((body, last)) if closes(last, fence) => body,
        None if closes(inner, fence) => "",
        _ => text,
    }
}

/// Why `json`, the part of `answer` that had to be one JSON value, is not: where parsing
/// stopped (`err`), counted in the answer's lines, and how the answer starts, on one line:
/// `parsing stopped at line 1, column 3 (expected ident); the answer starts "[turn 1] hi"`.
pub fn not_json(err: &serde_json::Error, answer: &str, json: &str) -> String {
    let text = err.to_string();
    let why = text
        .strip_suffix(&format!(" at line {} column {}", err.line(), err.column()))
        .unwrap_or(&text);
    // A fenced block's text starts on a line of its own, after the lines before it.
    let start = (json.as_ptr() as usize).saturating_sub(answer.as_ptr() as usize);
    let before = answer
        .get(..start)
        .map_or(0, |head| head.matches('\n').count());
    format!(
        "parsing stopped at line {}, column {} ({why}); {}",
        err.line() + before,
        err.column(),
        opening(answer)
    )
}

/// How the answer starts, on one line: its first words, up to 40 characters, whitespace and
/// control characters as single spaces. Only whole words are shown: a token holds no
/// whitespace, so an occurrence of it is shown whole, where the token is masked as in every
/// message, or not at all, never in part.
fn opening(answer: &str) -> String {
    const SHOWN: usize = 40;
    let mut words = answer
        .split(|c: char| c.is_whitespace() || c.is_control())
        .filter(|word| !word.is_empty());
    let Some(first) = words.next() else {
        return "the answer is only whitespace".into();
    };
    let first_len = first.chars().count();
    if first_len > SHOWN {
        return format!("the answer starts with a word of {first_len} characters");
    }
    let mut shown = first.to_string();
    let mut len = first_len;
    let mut all = true;
    for word in words {
        let word_len = word.chars().count();
        if len + 1 + word_len > SHOWN {
            all = false;
            break;
        }
        shown.push(' ');
        shown.push_str(word);
        len += 1 + word_len;
    }
    let more = if all { "" } else { "..." };
    format!("the answer starts \"{shown}\"{more}")
}

/// `text` as one JSON value without the whitespace between tokens: key order, number text and
/// string escapes stay exactly as written. serde_json checks the value (one value, nothing
/// after it, nesting bounded); then the whitespace outside strings is dropped.
pub fn compact_json(text: &str) -> serde_json::Result<String> {
    serde_json::from_str::<serde::de::IgnoredAny>(text)?;
    let mut compact = String::with_capacity(text.len());
    let mut in_string = false;
    let mut escaped = false;
    for c in text.chars() {
        if in_string {
            compact.push(c);
            match c {
                _ if escaped => escaped = false,
                '\\' => escaped = true,
                '"' => in_string = false,
                _ => {}
            }
        } else if !matches!(c, ' ' | '\t' | '\n' | '\r') {
            in_string = c == '"';
            compact.push(c);
        }
    }
    Ok(compact)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What `not_json` says of `answer`, as `--expect-json` reads it.
    fn refusal(answer: &str) -> String {
        let json = unfenced(answer);
        not_json(&compact_json(json).unwrap_err(), answer, json)
    }

    #[test]
    fn a_refusal_says_where_parsing_stopped_and_how_the_answer_starts() {
        assert_eq!(
            refusal("[turn 1] hi"),
            "parsing stopped at line 1, column 3 (expected ident); the answer starts \
             \"[turn 1] hi\""
        );
        let prose = "Sure!\tHere is\r\nthe JSON you asked for, as requested:\n{\"a\": 1}";
        assert_eq!(
            refusal(prose),
            "parsing stopped at line 1, column 1 (expected value); \
             the answer starts \"Sure! Here is the JSON you asked for, as\"..."
        );
        // Counted in the answer's lines, the fence's included.
        assert!(refusal("```json\n{\"a\": 1,\n\"b\"}\n```")
            .starts_with("parsing stopped at line 3, column 4"));
        let long = format!("Bearer {}", "x".repeat(60));
        assert!(refusal(&long).ends_with("; the answer starts \"Bearer\"..."));
        assert!(
            refusal(&"y".repeat(41)).ends_with("; the answer starts with a word of 41 characters")
        );
    }

    fn code(text: &str) -> Option<String> {
        first_code_block(text)
    }

    #[test]
    fn the_first_block_with_any_info_string() {
        let answer =
            "Run this:\n\n```sh title=\"x\"\necho hi\necho there\n```\n\nand\n```\nno\n```\n";
        assert_eq!(code(answer).unwrap(), "echo hi\necho there\n");
        assert_eq!(code("~~~python\nprint(1)\n~~~").unwrap(), "print(1)\n");
        assert_eq!(code("```\n```\n").unwrap(), "");
        assert_eq!(code("no code here"), None);
        assert_eq!(code("inline ```code``` only"), None);
        assert_eq!(code("``\nnot a fence\n``"), None);
    }

    #[test]
    fn a_block_closes_only_on_the_same_char_at_least_as_long() {
        let answer = "````md\n```\ninner\n~~~~\n```\n````\nafter";
        assert_eq!(code(answer).unwrap(), "```\ninner\n~~~~\n```\n");
        assert_eq!(code("~~~\na\n~~~~~\n").unwrap(), "a\n");
        assert_eq!(
            code("```\na\n``` not a close\n```").unwrap(),
            "a\n``` not a close\n"
        );
        assert_eq!(
            code("```rust\nfn f() {}\n").unwrap(),
            "fn f() {}\n",
            "an unclosed block runs to the end"
        );
    }

    #[test]
    fn an_indented_fence_removes_its_indentation_from_the_lines() {
        let answer = "1. Install:\n   ```sh\n   cargo install bnx\n     --locked\n  x\n   ```\n";
        assert_eq!(code(answer).unwrap(), "cargo install bnx\n  --locked\nx\n");
        assert_eq!(code("```\r\na\r\n```\r\n").unwrap(), "a\r\n");
    }
}
