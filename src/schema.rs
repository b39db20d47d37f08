//! The JSON Schema of `--schema` (and of a batch item's `schema`): read, compiled and checked
//! before anything is sent, then used to check answers. Drafts 2020-12 (the default), 2019-09,
//! 7, 6 and 4, by `$schema`, compiled by the `boon` crate.
//!
//! Nothing is ever fetched: the loader refuses every document but this one, and a reference to
//! a draft's own meta-schema, which boon would take from its built-in copies, is refused too,
//! so that "refers to anything outside its own document" has no exception. A failure is named
//! by the JSON Pointer of the value that broke it (for `required` and `additionalProperties`,
//! the object) and a message that names the keyword.

use std::collections::HashMap;
use std::fmt;
use std::fs::File;
use std::io::Read;
use std::path::Path;
use std::sync::Mutex;

use boon::{
    CompileError, Compiler, ErrorKind, InstanceLocation, InstanceToken, SchemaIndex, Schemas,
    UrlLoader, ValidationError,
};
use serde_json::Value;

use crate::extract::compact_json;

/// A schema file larger than this is refused rather than read whole.
const MAX_SCHEMA: u64 = 4 << 20;
/// The failures kept of an answer (SPEC 10: a batch line lists the first 20).
pub const MAX_FAILURES: usize = 20;
/// The most values (scalars, arrays and objects) of an answer checked against a schema. The
/// value tree and boon's errors cost about 200 bytes a value at worst, so this bounds the
/// memory of a hostile answer (64 MiB of `[0,0,...]` holds 32 million) to some 400 MiB,
/// far more than any real answer needs.
pub const MAX_VALUES: usize = 2_000_000;
/// The deepest walk of the validator a schema may call for, in schemas on the way from the root
/// (see [`deepest_walk`]). boon (as every validator of JSON Schema measured) recurses as it
/// walks, a few KiB of stack a step, so a deeper one is refused before it could overflow
/// the stack of [`on_own_stack`].
const MAX_WALK: usize = 100_000;
/// References (`$ref`, `$dynamicRef`, `$recursiveRef`) a schema may hold: boon's compile time
/// grows with the square of their number (4,000 take 0.2 s).
const MAX_REFS: usize = 5_000;
/// The stack boon runs on: room for `MAX_WALK` steps of about 4 KiB. Only what a walk
/// touches is ever in memory.
const STACK: usize = 512 << 20;
/// Where the schema sits for boon: a name that no `$ref` can fetch.
const ROOT: &str = "urn:bnx:schema";
/// Keywords whose values are data, not schemas: a `$ref` member in them refers to nothing.
const DATA_KEYWORDS: [&str; 4] = ["const", "enum", "default", "examples"];

pub struct Schema {
    schemas: Schemas,
    index: SchemaIndex,
    /// The schema as given, compact: key order kept, for a re-ask to show.
    text: String,
}

/// One way an answer breaks the schema.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    /// The JSON Pointer of the value that broke it; `""` is the root.
    pub path: String,
    pub message: String,
}

/// An answer the schema refuses: its first failures, and how many there were in all.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mismatch {
    pub failures: Vec<Failure>,
    pub total: usize,
}

impl Schema {
    /// `--schema ARG`: the schema itself when ARG starts with `{`, else a file. The error says
    /// what is wrong, naming the file.
    pub fn from_arg(arg: &str) -> Result<Schema, String> {
        if arg.trim_start().starts_with('{') {
            Schema::from_text(arg).map_err(|why| format!("the schema {why}"))
        } else {
            Schema::from_file(Path::new(arg))
        }
    }

    pub fn from_file(path: &Path) -> Result<Schema, String> {
        let name = path.display();
        let unreadable = |e: std::io::Error| format!("cannot read schema file {name}: {e}");
        if path.metadata().map_err(unreadable)?.is_dir() {
            return Err(format!("cannot read schema file {name}: it is a directory"));
        }
        let mut text = String::new();
        File::open(path)
            .map_err(unreadable)?
            .take(MAX_SCHEMA + 1)
            .read_to_string(&mut text)
            .map_err(unreadable)?;
        if text.len() as u64 > MAX_SCHEMA {
            return Err(format!(
                "schema file {name} is larger than {} MiB",
                MAX_SCHEMA >> 20
            ));
        }
        Schema::from_text(&text).map_err(|why| format!("schema file {name} {why}"))
    }

    /// The schema written in `text`; the error continues a sentence that names it ("...
    /// is not JSON: ...").
    pub fn from_text(text: &str) -> Result<Schema, String> {
        let text = compact_json(text).map_err(|e| format!("is not JSON: {e}"))?;
        let value: Value = serde_json::from_str(&text).map_err(|e| format!("is not JSON: {e}"))?;
        if let Some(url) = meta_schema_ref(&value) {
            return Err(outside(&url));
        }
        if let Some(Value::String(url)) = value.get("$schema") {
            if boon::Draft::from_url(url).is_none() {
                return Err(format!(
                    "names an unknown $schema {url:?}: drafts 2020-12, 2019-09, 7, 6 and 4 are \
                     known"
                ));
            }
        }
        let walk = deepest_walk(&value)?;
        if walk > MAX_WALK {
            return Err(format!(
                "is too deep to check safely: a value may take {walk} steps through it, more \
                 than {MAX_WALK}"
            ));
        }
        on_own_stack(|| {
            let (schemas, index) = compile(value)?;
            let schema = Schema {
                schemas,
                index,
                text,
            };
            schema.refuse_loops()?;
            Ok(schema)
        })
    }

    /// The schema as given, compact.
    pub fn text(&self) -> &str {
        &self.text
    }

    /// Checks `instance`, whose nesting serde_json has bounded (boon's walk recurses).
    pub fn check(&self, instance: &Value) -> Result<(), Mismatch> {
        on_own_stack(|| self.check_here(instance))
    }

    fn check_here(&self, instance: &Value) -> Result<(), Mismatch> {
        let error = match self.schemas.validate(instance, self.index) {
            Ok(()) => return Ok(()),
            Err(error) => error,
        };
        // In the order of where they are (an object's own failures before its members', items
        // by index, members by name), not of boon's walk, which visits `properties` in the
        // order of a randomly seeded hash map: the first failure is the same on every run.
        let mut found: Vec<(Vec<Step>, Failure)> = leaves(&error)
            .into_iter()
            .flat_map(|leaf| {
                let at = position(&leaf.instance_location);
                failures_of(leaf, instance)
                    .into_iter()
                    .map(move |failure| (at.clone(), failure))
            })
            .collect();
        found.sort_by(|a, b| a.0.cmp(&b.0));
        let total = found.len();
        let failures = found
            .into_iter()
            .take(MAX_FAILURES)
            .map(|(_, failure)| failure)
            .collect();
        Err(Mismatch { failures, total })
    }

    /// A `$ref` cycle that every instance walks into (`{"$ref": "#"}`) is the schema's fault,
    /// not an answer's: boon finds it only while validating, so a value is validated now.
    fn refuse_loops(&self) -> Result<(), String> {
        let Err(error) = self.schemas.validate(&Value::Null, self.index) else {
            return Ok(());
        };
        match leaves(&error)
            .into_iter()
            .find(|e| matches!(e.kind, ErrorKind::RefCycle { .. }))
        {
            Some(cycle) => Err(format!("is not a valid schema: {}", cycle.kind)),
            None => Ok(()),
        }
    }
}

/// At least how many values compact JSON `text` holds, and at most one more than that: one
/// for the whole, and one more for each `,` and each opening bracket outside strings.
pub fn values(text: &str) -> usize {
    let mut count = 1;
    let mut in_string = false;
    let mut escaped = false;
    for &byte in text.as_bytes() {
        if in_string {
            match byte {
                _ if escaped => escaped = false,
                b'\\' => escaped = true,
                b'"' => in_string = false,
                _ => {}
            }
        } else {
            match byte {
                b'"' => in_string = true,
                b',' | b'[' | b'{' => count += 1,
                _ => {}
            }
        }
    }
    count
}

/// Runs `work` on a thread of its own with a `STACK` large enough for any walk of a schema
/// that `deepest_walk` allows: a batch worker's or the main thread's stack is not.
fn on_own_stack<T: Send>(work: impl FnOnce() -> T + Send) -> T {
    let work = Mutex::new(Some(work));
    let take = || work.lock().unwrap_or_else(|e| e.into_inner()).take();
    let ran = std::thread::scope(|scope| {
        let worker = std::thread::Builder::new()
            .name("schema".into())
            .stack_size(STACK)
            .spawn_scoped(scope, || take().map(|work| work()));
        // No thread to be had (a process limit): `work` is still there, for this thread.
        let worker = worker.ok()?;
        Some(
            worker
                .join()
                .unwrap_or_else(|panic| std::panic::resume_unwind(panic)),
        )
    });
    match ran.flatten() {
        Some(done) => done,
        None => take().expect("the work ran nowhere else")(),
    }
}

/// Compiles `value` with a loader that loads nothing.
fn compile(value: Value) -> Result<(Schemas, SchemaIndex), String> {
    let mut compiler = Compiler::new();
    compiler.use_loader(Box::new(NothingFetched));
    // The schema is the value a meta-schema's failures are about.
    let shown = value.clone();
    let failed = |error| compile_error(error, &shown);
    compiler.add_resource(ROOT, value).map_err(failed)?;
    let mut schemas = Schemas::new();
    let index = compiler.compile(ROOT, &mut schemas).map_err(failed)?;
    Ok((schemas, index))
}

struct NothingFetched;

impl UrlLoader for NothingFetched {
    fn load(&self, url: &str) -> Result<Value, Box<dyn std::error::Error>> {
        Err(format!("{url} is outside the schema").into())
    }
}

fn outside(url: &str) -> String {
    format!("refers to {url}, outside its own document: nothing is fetched")
}

fn compile_error(error: CompileError, schema: &Value) -> String {
    match error {
        CompileError::LoadUrlError { url, .. } | CompileError::UnsupportedUrlScheme { url } => {
            outside(&url)
        }
        // A relative reference with no `$id` to resolve it against: another file, surely.
        CompileError::ParseUrlError { url, .. } => outside(&url),
        CompileError::ValidationError { src, .. } => {
            let first = leaves(&src)
                .into_iter()
                .find_map(|leaf| failures_of(leaf, schema).into_iter().next());
            match first {
                Some(f) => format!("is not a valid schema: {}: {}", shown(&f.path), f.message),
                None => "is not a valid schema".to_string(),
            }
        }
        CompileError::InvalidRegex { regex, src, .. } => {
            format!("has a pattern {regex:?} that cannot be used: {src}")
        }
        CompileError::Bug(src) => format!("cannot be compiled: {src}"),
        other => format!("is not a valid schema: {other}"),
    }
}

fn shown(pointer: &str) -> &str {
    if pointer.is_empty() {
        "(root)"
    } else {
        pointer
    }
}

/// An upper bound on how many schemas deep the validator's walk can go, counted on the
/// schema's JSON: each object is a schema (or holds some), its members' objects are below it,
/// and a reference `#/...` leads to what it points at. Without a cycle in that graph, the
/// bound is its longest path; with one (a schema that refers to itself, or a reference this
/// reading cannot follow: an anchor, a `$dynamicRef`, a pointer under another `$id`), the
/// walk may go around once for each of the answer's 128 levels of nesting, and a level of it
/// meets each schema at most once (boon stops a cycle that comes back to the same value).
fn deepest_walk(schema: &Value) -> Result<usize, String> {
    let nodes = objects(schema);
    let id_of: HashMap<*const Value, usize> = nodes
        .iter()
        .enumerate()
        .map(|(id, &(value, _))| (value as *const Value, id))
        .collect();
    let mut edges: Vec<Vec<usize>> = vec![Vec::new(); nodes.len()];
    let mut followable = true;
    let mut refs = 0;
    for (id, &(value, parent)) in nodes.iter().enumerate() {
        if let Some(parent) = parent {
            edges[parent].push(id);
        }
        let Value::Object(map) = value else { continue };
        if id > 0 && (map.contains_key("$id") || map.contains_key("id")) {
            followable = false;
        }
        for (key, member) in map {
            let Value::String(target) = member else {
                continue;
            };
            match key.as_str() {
                "$ref" => refs += 1,
                "$dynamicRef" | "$recursiveRef" => {
                    refs += 1;
                    followable = false;
                    continue;
                }
                _ => continue,
            }
            match pointed(schema, target).and_then(|t| id_of.get(&(t as *const Value))) {
                Some(&to) => edges[id].push(to),
                None => followable = false,
            }
        }
    }
    if refs > MAX_REFS {
        return Err(format!(
            "holds {refs} references, more than the {MAX_REFS} it may hold"
        ));
    }
    match longest_path(&edges).filter(|_| followable) {
        Some(longest) => Ok(longest),
        None => Ok(129 * nodes.len()),
    }
}

/// Every object of `schema` but those in data keywords, root first, with its nearest
/// enclosing object; walked without recursion.
fn objects(schema: &Value) -> Vec<(&Value, Option<usize>)> {
    let mut nodes = Vec::new();
    let mut todo = vec![(schema, None)];
    while let Some((value, parent)) = todo.pop() {
        let below = match value {
            Value::Object(map) => {
                nodes.push((value, parent));
                let id = Some(nodes.len() - 1);
                map.iter()
                    .filter(|(key, _)| !DATA_KEYWORDS.contains(&key.as_str()))
                    .for_each(|(_, member)| todo.push((member, id)));
                continue;
            }
            Value::Array(items) => items,
            _ => continue,
        };
        todo.extend(below.iter().map(|item| (item, parent)));
    }
    nodes
}

/// What a `#/json/pointer` reference points at in `schema`; `None` for any other kind.
fn pointed<'a>(schema: &'a Value, target: &str) -> Option<&'a Value> {
    let pointer = target.strip_prefix('#')?;
    let pointer = percent_encoding::percent_decode_str(pointer)
        .decode_utf8()
        .ok()?;
    schema.pointer(&pointer)
}

/// The number of nodes on the longest path of the graph, `None` when it has a cycle (Kahn's
/// order: a node is taken once every edge into it was).
fn longest_path(edges: &[Vec<usize>]) -> Option<usize> {
    let mut into = vec![0usize; edges.len()];
    edges.iter().flatten().for_each(|&to| into[to] += 1);
    let mut ready: Vec<usize> = (0..edges.len()).filter(|&n| into[n] == 0).collect();
    let mut depth = vec![1usize; edges.len()];
    let mut taken = 0;
    while let Some(node) = ready.pop() {
        taken += 1;
        for &to in &edges[node] {
            depth[to] = depth[to].max(depth[node] + 1);
            into[to] -= 1;
            if into[to] == 0 {
                ready.push(to);
            }
        }
    }
    (taken == edges.len()).then(|| depth.into_iter().max().unwrap_or(0))
}

/// The first `$ref`, `$dynamicRef` or `$recursiveRef` that names a JSON Schema meta-schema,
/// which boon would resolve from its own copies. Walked without recursion.
fn meta_schema_ref(schema: &Value) -> Option<String> {
    let mut todo = vec![schema];
    while let Some(value) = todo.pop() {
        match value {
            Value::Object(map) => {
                for (key, member) in map {
                    let is_ref = matches!(key.as_str(), "$ref" | "$dynamicRef" | "$recursiveRef");
                    match member {
                        Value::String(url) if is_ref && is_meta_schema(url) => {
                            return Some(url.clone())
                        }
                        _ if DATA_KEYWORDS.contains(&key.as_str()) => {}
                        _ => todo.push(member),
                    }
                }
            }
            Value::Array(items) => todo.extend(items),
            _ => {}
        }
    }
    None
}

fn is_meta_schema(url: &str) -> bool {
    let url = url.to_ascii_lowercase();
    ["http://json-schema.org/", "https://json-schema.org/"]
        .iter()
        .any(|prefix| url.starts_with(prefix))
}

/// The errors that say what broke, in boon's order: a group, a `$ref` or an `allOf` (each
/// of whose failures is one of the whole's) is opened; an `anyOf`, `oneOf`, `not` or
/// `contains` is one failure, whatever its alternatives said.
fn leaves<'e, 's, 'v>(error: &'e ValidationError<'s, 'v>) -> Vec<&'e ValidationError<'s, 'v>> {
    let mut leaves = Vec::new();
    let mut todo = vec![error];
    while let Some(error) = todo.pop() {
        let opened = matches!(
            error.kind,
            ErrorKind::Group
                | ErrorKind::Schema { .. }
                | ErrorKind::Reference { .. }
                | ErrorKind::AllOf
                | ErrorKind::ContentSchema
        );
        if opened && !error.causes.is_empty() {
            todo.extend(error.causes.iter().rev());
        } else {
            leaves.push(error);
        }
    }
    leaves
}

/// The failures one error stands for: one per key for `required`, `additionalProperties` and
/// the dependencies, so that each names its key.
fn failures_of(error: &ValidationError, instance: &Value) -> Vec<Failure> {
    let path = error.instance_location.to_string();
    let one = |message: String| {
        vec![Failure {
            path: path.clone(),
            message,
        }]
    };
    let each = |keys: Vec<String>| -> Vec<Failure> {
        keys.into_iter()
            .map(|message| Failure {
                path: path.clone(),
                message,
            })
            .collect()
    };
    match &error.kind {
        ErrorKind::Required { want } => each(
            want.iter()
                .map(|k| format!("{k:?} is a required property"))
                .collect(),
        ),
        ErrorKind::AdditionalProperties { got } => each(
            got.iter()
                .map(|k| format!("additional property {k:?} is not allowed"))
                .collect(),
        ),
        ErrorKind::Dependency { prop, missing }
        | ErrorKind::DependentRequired { prop, missing } => each(
            missing
                .iter()
                .map(|k| format!("{k:?} is a required property when {prop:?} is present"))
                .collect(),
        ),
        kind => one(message(kind, value_at(instance, error))),
    }
}

/// The value that `error` is about, shown short.
fn value_at(instance: &Value, error: &ValidationError) -> String {
    let mut value = instance;
    for token in &error.instance_location.tokens {
        let next = match token {
            InstanceToken::Prop(key) => value.get(key.as_ref()),
            InstanceToken::Item(index) => value.get(*index),
        };
        match next {
            Some(next) => value = next,
            None => return "the value".to_string(),
        }
    }
    short(value)
}

/// Where a failure is, for ordering: an item by its index, a member by its name.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum Step {
    Item(usize),
    Member(String),
}

fn position(location: &InstanceLocation) -> Vec<Step> {
    let step = |token: &InstanceToken| match token {
        InstanceToken::Prop(key) => Step::Member(key.to_string()),
        InstanceToken::Item(index) => Step::Item(*index),
    };
    location.tokens.iter().map(step).collect()
}

/// A value as JSON, cut to 60 characters.
fn short(value: &Value) -> String {
    let text = value.to_string();
    match text.char_indices().nth(60) {
        Some((at, _)) => format!("{}...", &text[..at]),
        None => text,
    }
}

fn quoted<T: fmt::Display>(items: impl IntoIterator<Item = T>) -> String {
    let items: Vec<String> = items.into_iter().map(|t| format!("\"{t}\"")).collect();
    items.join(" or ")
}

/// What one failure says, its keyword named. `v` is the value, shown short.
fn message(kind: &ErrorKind, v: String) -> String {
    match kind {
        ErrorKind::Type { want, .. } => format!("{v} is not of type {}", quoted(want.iter())),
        ErrorKind::Enum { want } => format!(
            "{v} is not one of the enum values {}",
            short(&Value::Array(want.to_vec()))
        ),
        ErrorKind::Const { want } => format!("{v} is not the const value {}", short(want)),
        ErrorKind::Format { want, err, .. } => format!("{v} is not a valid {want:?}: {err}"),
        ErrorKind::Pattern { want, .. } => format!("{v} does not match the pattern {want:?}"),
        ErrorKind::MinLength { got, want } => {
            format!("{v} has {got} characters, fewer than minLength {want}")
        }
        ErrorKind::MaxLength { got, want } => {
            format!("{v} has {got} characters, more than maxLength {want}")
        }
        ErrorKind::Minimum { want, .. } => format!("{v} is less than the minimum {want}"),
        ErrorKind::Maximum { want, .. } => format!("{v} is greater than the maximum {want}"),
        ErrorKind::ExclusiveMinimum { want, .. } => {
            format!("{v} is not greater than the exclusiveMinimum {want}")
        }
        ErrorKind::ExclusiveMaximum { want, .. } => {
            format!("{v} is not less than the exclusiveMaximum {want}")
        }
        ErrorKind::MultipleOf { want, .. } => format!("{v} is not a multipleOf {want}"),
        kind => counted(kind).unwrap_or_else(|| combined(kind, v)),
    }
}

/// The failures of an object's or an array's size and members.
fn counted(kind: &ErrorKind) -> Option<String> {
    Some(match kind {
        ErrorKind::MinProperties { got, want } => {
            format!("the object has {got} properties, fewer than minProperties {want}")
        }
        ErrorKind::MaxProperties { got, want } => {
            format!("the object has {got} properties, more than maxProperties {want}")
        }
        ErrorKind::MinItems { got, want } => {
            format!("the array has {got} items, fewer than minItems {want}")
        }
        ErrorKind::MaxItems { got, want } => {
            format!("the array has {got} items, more than maxItems {want}")
        }
        ErrorKind::UniqueItems { got: [i, j] } => {
            format!("items {i} and {j} are equal, against uniqueItems")
        }
        ErrorKind::AdditionalItems { got } => {
            format!("{got} more items than items allows, against additionalItems")
        }
        ErrorKind::Contains => "no item matches the schema of contains".to_string(),
        ErrorKind::MinContains { got, want } => format!(
            "{} items match contains, fewer than minContains {want}",
            got.len()
        ),
        ErrorKind::MaxContains { got, want } => format!(
            "{} items match contains, more than maxContains {want}",
            got.len()
        ),
        _ => return None,
    })
}

/// The failures of the keywords that combine schemas, and the rest.
fn combined(kind: &ErrorKind, v: String) -> String {
    match kind {
        ErrorKind::FalseSchema => format!("{v} is not allowed here: the schema is false"),
        ErrorKind::Not => format!("{v} must not be valid against the schema of not"),
        ErrorKind::AnyOf => format!("{v} is not valid against any schema of anyOf"),
        ErrorKind::AllOf => format!("{v} is not valid against every schema of allOf"),
        ErrorKind::OneOf(None) => format!("{v} is not valid against any schema of oneOf"),
        ErrorKind::OneOf(Some((i, j))) => {
            format!("{v} is valid against schemas {i} and {j} of oneOf: exactly one must hold")
        }
        ErrorKind::PropertyName { prop } => {
            format!("the property name {prop:?} is not valid against propertyNames")
        }
        ErrorKind::ContentEncoding { want, err } => {
            format!("{v} is not {want}, against contentEncoding: {err}")
        }
        ErrorKind::ContentMediaType { want, err, .. } => {
            format!("{v} is not {want}, against contentMediaType: {err}")
        }
        ErrorKind::RefCycle { .. } => format!("the schema loops here: {kind}"),
        kind => format!("{v} is not valid: {kind}"),
    }
}

impl fmt::Debug for Schema {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Schema").field("text", &self.text).finish()
    }
}

/// Two schemas are the same when they were written the same.
impl PartialEq for Schema {
    fn eq(&self, other: &Self) -> bool {
        self.text == other.text
    }
}

impl Eq for Schema {}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use super::*;

    fn refused(text: &str) -> String {
        Schema::from_text(text).unwrap_err()
    }

    fn failures(schema: &str, instance: &str) -> Vec<(String, String)> {
        let schema = Schema::from_text(schema).unwrap();
        let instance: Value = serde_json::from_str(instance).unwrap();
        match schema.check(&instance) {
            Ok(()) => Vec::new(),
            Err(mismatch) => mismatch
                .failures
                .into_iter()
                .map(|f| (f.path, f.message))
                .collect(),
        }
    }

    #[test]
    fn nothing_outside_the_document_is_ever_used() {
        for (schema, url) in [
            (r##"{"$ref": "other.json"}"##, "other.json"),
            (r##"{"$ref": "file:///etc/passwd"}"##, "file:///etc/passwd"),
            (
                r##"{"items": {"$ref": "https://example.com/s.json#/x"}}"##,
                "https://example.com/s.json",
            ),
            (
                r##"{"$ref": "https://json-schema.org/draft/2020-12/schema"}"##,
                "https://json-schema.org/draft/2020-12/schema",
            ),
            (
                r##"{"$defs": {"a": {"$dynamicRef": "http://json-schema.org/draft-07/schema#"}}}"##,
                "http://json-schema.org/draft-07/schema#",
            ),
        ] {
            let why = refused(schema);
            assert!(
                why.starts_with(&format!("refers to {url}")),
                "{schema}: {why}"
            );
            assert!(
                why.ends_with("outside its own document: nothing is fetched"),
                "{why}"
            );
        }
        let own = r##"{"$id": "https://example.com/s", "$defs": {"n": {"type": "integer"}},
                      "items": {"$ref": "https://example.com/s#/$defs/n"}}"##;
        assert_eq!(
            failures(own, "[1, \"x\"]").len(),
            1,
            "its own $id is inside it"
        );
        let data = r##"{"const": {"$ref": "https://json-schema.org/draft/2020-12/schema"}}"##;
        assert!(Schema::from_text(data).is_ok(), "a $ref in const is data");
    }

    #[test]
    fn bad_schemas_say_what_is_wrong() {
        for (schema, expected) in [
            ("{\"type\": ", "is not JSON: EOF while parsing"),
            (
                r##"{"type": "nope"}"##,
                "is not a valid schema: /type: \"nope\" is not valid against any schema of anyOf",
            ),
            (
                r##"{"$schema": "https://example.com/mine", "type": "object"}"##,
                "names an unknown $schema \"https://example.com/mine\"",
            ),
            (
                r##"{"$ref": "#/$defs/missing"}"##,
                "is not a valid schema: ",
            ),
            (
                r##"{"pattern": "(?=a)"}"##,
                "is not a valid schema: /pattern: ",
            ),
            (r##"{"pattern": "(a{1000}){1000}"}"##, "exceeds size limit"),
            (
                r##"{"$defs": {"a": {"$ref": "#/$defs/b"}, "b": {"$ref": "#/$defs/a"}},
                    "$ref": "#/$defs/a"}"##,
                "is not a valid schema: both",
            ),
            (r##"{"$ref": "#"}"##, "causing reference cycle"),
        ] {
            let why = refused(schema);
            assert!(why.contains(expected), "{schema}: {why}");
        }
    }

    #[test]
    fn the_draft_is_the_one_schema_names_and_2020_12_without_one() {
        // `exclusiveMaximum: true` is draft 4's form; 2020-12 wants a number.
        let draft4 = r##"{"$schema": "http://json-schema.org/draft-04/schema#",
                         "maximum": 3, "exclusiveMaximum": true}"##;
        assert_eq!(failures(draft4, "3").len(), 1);
        assert!(
            refused(r##"{"maximum": 3, "exclusiveMaximum": true}"##).contains("/exclusiveMaximum")
        );
        // 2020-12's `prefixItems`; draft 7 ignores it.
        let items = r##"{"prefixItems": [{"type": "string"}]}"##;
        assert_eq!(failures(items, "[1]").len(), 1);
        let draft7 = r##"{"$schema": "http://json-schema.org/draft-07/schema#",
                         "prefixItems": [{"type": "string"}]}"##;
        assert!(failures(draft7, "[1]").is_empty());
        for known in [
            "https://json-schema.org/draft/2019-09/schema",
            "http://json-schema.org/draft-06/schema#",
        ] {
            assert!(Schema::from_text(&format!("{{\"$schema\": \"{known}\"}}")).is_ok());
        }
    }

    #[test]
    fn each_failure_names_its_place_and_keyword() {
        let schema = r##"{"type": "object", "required": ["a", "b"],
            "properties": {"s": {"minLength": 3, "pattern": "^x"}, "n": {"minimum": 1},
                           "e": {"enum": ["red", "blue"]},
                           "o": {"anyOf": [{"type": "null"}, {"type": "string"}]}},
            "additionalProperties": false}"##;
        let found = failures(
            schema,
            r##"{"s": "ab", "n": 0, "e": "green", "o": 1, "z": 1}"##,
        );
        let expected = [
            ("", "\"a\" is a required property"),
            ("", "\"b\" is a required property"),
            ("", "additional property \"z\" is not allowed"),
            (
                "/e",
                "\"green\" is not one of the enum values [\"red\",\"blue\"]",
            ),
            ("/n", "0 is less than the minimum 1"),
            ("/o", "1 is not valid against any schema of anyOf"),
            ("/s", "\"ab\" has 2 characters, fewer than minLength 3"),
            ("/s", "\"ab\" does not match the pattern \"^x\""),
        ];
        let expected: Vec<(String, String)> = expected
            .iter()
            .map(|(p, m)| (p.to_string(), m.to_string()))
            .collect();
        assert_eq!(found, expected);
        let long = format!("\"{}\"", "y".repeat(100));
        let found = failures(r##"{"type": "number"}"##, &long);
        assert_eq!(
            found[0].1,
            format!("\"{}... is not of type \"number\"", "y".repeat(59))
        );
    }

    #[test]
    fn at_most_20_failures_are_kept_and_all_are_counted() {
        let schema = Schema::from_text(r##"{"items": {"type": "string"}}"##).unwrap();
        let instance: Value = serde_json::from_str(&format!("[{}0]", "0,".repeat(99))).unwrap();
        let mismatch = schema.check(&instance).unwrap_err();
        assert_eq!(
            (mismatch.failures.len(), mismatch.total),
            (MAX_FAILURES, 100)
        );
        assert_eq!(
            mismatch.failures[19].path, "/19",
            "items by index, not by text"
        );
    }

    #[test]
    fn hostile_schemas_end_in_bounded_time() {
        // Backtracking would take longer than the universe has left on 40 a's and a "!".
        let started = Instant::now();
        let found = failures(
            r##"{"pattern": "^(a+)+$"}"##,
            &format!("\"{}!\"", "a".repeat(100_000)),
        );
        assert_eq!(found.len(), 1);
        assert!(started.elapsed() < Duration::from_secs(5));
        // A schema nested as deep as serde_json lets a file be, and recursion through `$ref`
        // bounded by the instance's own depth.
        let deep = "{\"items\": ".repeat(120) + "{}" + &"}".repeat(120);
        assert!(Schema::from_text(&deep).is_ok());
        let tree = r##"{"type": "array", "items": {"$ref": "#"}}"##;
        let nested = "[".repeat(127) + &"]".repeat(127);
        assert!(failures(tree, &nested).is_empty());
        let looped = r##"{"properties": {"a": {"$ref": "#/properties/a"}}}"##;
        let found = failures(looped, r##"{"a": 1}"##);
        assert!(found[0].1.starts_with("the schema loops here"), "{found:?}");
    }

    /// `$defs` d0 .. dN, each referring to the next; the last is `last`.
    fn chain(n: usize, each: &str, last: &str) -> String {
        let defs: Vec<String> = (0..n)
            .map(|i| format!("\"d{i}\": {{\"$ref\": \"#/$defs/d{}\"{each}}}", i + 1))
            .collect();
        format!(
            "{{\"$defs\": {{{}, \"d{n}\": {last}}}, \"$ref\": \"#/$defs/d0\"}}",
            defs.join(", ")
        )
    }

    #[test]
    fn walks_deeper_than_a_stack_holds_are_refused_before_they_start() {
        // A long chain of references: boon recurses along it, compiling and validating.
        let long = chain(2_000, ", \"minimum\": 0", "{\"type\": \"integer\"}");
        assert_eq!(
            deepest_walk(&serde_json::from_str(&long).unwrap()),
            Ok(2_003)
        );
        assert_eq!(failures(&long, "\"x\"").len(), 1);
        // The same chain around an answer's every level of nesting.
        let around = chain(1_000, "", "{\"items\": {\"$ref\": \"#/$defs/d0\"}}");
        let why = refused(&around);
        assert!(why.starts_with("is too deep to check safely"), "{why}");
        let many = chain(MAX_REFS, "", "{}");
        assert!(refused(&many).contains("more than the 5000 it may hold"));
        let small_tree =
            r##"{"type": "object", "properties": {"kids": {"items": {"$ref": "#"}}}}"##;
        let walk = deepest_walk(&serde_json::from_str(small_tree).unwrap()).unwrap();
        assert_eq!(
            walk,
            129 * 4,
            "a cycle: once around for each level of the answer"
        );
    }

    #[test]
    fn values_are_counted_outside_strings() {
        assert_eq!(values("0"), 1);
        assert_eq!(values("[1,2,3]"), 4);
        assert_eq!(values(r##"{"a":[1,{}],"b":"x,[{\"y"}"##), 6);
    }
}
