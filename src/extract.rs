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
