//! The import rules between rooms, enforced (`cargo test --lib layers`). A room is a folder of
//! `src/` (`decode/`) or a file at its top (`config.rs`); its code may use only the rooms
//! [`ALLOWED`] lists for it, and its unit tests also those of [`TEST_ONLY`]. ARCHITECTURE.md
//! ("What may import what") documents the same table, and a test holds the two together.
//!
//! An import is any path into another room, wherever it appears (a `use`, a type, a call): a
//! `crate::ROOM` path, each room at the top of a `crate::{...}` group, and a `super::` chain that
//! climbs to the crate root. Comments and string or character literals do not count. Test code is
//! a `tests.rs` file, or what follows `#[cfg(test)]`: the item up to its `;` or its whole block.
#![cfg(test)]

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Each room and the other rooms its code may use, bottom-up. Exact: the tests fail on an import
/// missing here and on an entry no code needs any more. Change ARCHITECTURE.md with it.
const ALLOWED: &[(&str, &[&str])] = &[
    ("capture", &[]),
    ("decode", &[]),
    ("time", &[]),
    ("csv_out", &[]),
    ("html", &[]),
    ("slots", &[]),
    ("mem", &[]),
    ("flow", &["capture", "decode", "mem", "time"]),
    ("replay", &["capture", "flow"]),
    ("policy", &["flow"]),
    ("record", &["csv_out", "flow", "mem", "policy", "time"]),
    ("devices", &["decode", "flow", "policy"]),
    (
        "pipeline",
        &[
            "capture", "devices", "flow", "policy", "record", "replay", "time",
        ],
    ),
    ("enforce", &["flow", "pipeline", "policy", "record", "time"]),
    (
        "resolver",
        &[
            "decode", "enforce", "flow", "pipeline", "policy", "portal", "record", "slots", "time",
        ],
    ),
    (
        "portal",
        &[
            "enforce", "flow", "html", "pipeline", "policy", "record", "slots", "time",
        ],
    ),
    (
        "report",
        &["csv_out", "flow", "html", "policy", "record", "time"],
    ),
    (
        "config",
        &[
            "capture", "daemon", "devices", "enforce", "flow", "policy", "portal", "record",
            "report", "resolver",
        ],
    ),
    (
        "daemon",
        &[
            "capture", "config", "devices", "enforce", "flow", "mem", "pipeline", "policy",
            "portal", "record", "report", "resolver", "time",
        ],
    ),
    (
        "check",
        &["config", "daemon", "enforce", "policy", "portal", "record"],
    ),
    (
        "cmd",
        &[
            "capture", "check", "config", "csv_out", "daemon", "enforce", "flow", "pipeline",
            "policy", "portal", "record", "report", "time",
        ],
    ),
    ("lib", &[]),
    ("main", &[]),
    ("layers", &[]),
];

/// Rooms that only a room's unit tests may use, besides [`ALLOWED`].
const TEST_ONLY: &[(&str, &[&str])] = &[
    ("portal", &["devices"]),
    ("report", &["config"]),
    ("resolver", &["devices"]),
];

/// Where ARCHITECTURE.md's copy of the table starts and ends.
const TABLE_BEGIN: &str = "<!-- layers:begin -->";
const TABLE_END: &str = "<!-- layers:end -->";

/// Production code or unit-test code: they are held to different lists.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Scope {
    Code,
    Test,
}

/// One path into another room (or into the room itself, which is always allowed).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Import {
    line: usize,
    room: String,
    scope: Scope,
}

/// A token of Rust source, comments and literals already blanked out.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Tok {
    Ident(String),
    /// `::`
    PathSep,
    Punct(char),
}

/// A block open at some point of a file: whether it is test code and whether it is an inline
/// `mod NAME { ... }` (which adds a level for `super::`).
#[derive(Debug, Clone, Copy)]
struct Frame {
    scope: Scope,
    module: bool,
}

/// The source folder this crate's rooms live in.
fn src_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

/// Every `.rs` file under `dir`, sorted by path, so that failures list in a stable order.
fn rust_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        let entries = std::fs::read_dir(&d).unwrap_or_else(|e| panic!("{}: {e}", d.display()));
        for entry in entries {
            let path = entry
                .unwrap_or_else(|e| panic!("{}: {e}", d.display()))
                .path();
            if path.is_dir() {
                todo.push(path);
            } else if path.extension().is_some_and(|x| x == "rs") {
                out.push(path);
            }
        }
    }
    out.sort();
    out
}

/// The room of a file, from its path under `src/`: the first folder, or the file's stem.
fn room_of(rel: &Path) -> String {
    let first = rel
        .components()
        .next()
        .map(|c| c.as_os_str().to_string_lossy());
    let first = first.unwrap_or_default();
    first.strip_suffix(".rs").unwrap_or(&first).to_string()
}

/// How many module levels below the crate root a file's code sits (`lib.rs` 0, `config.rs` and
/// `flow/mod.rs` 1, `flow/sensor.rs` 2): what a `super::` chain climbs from.
fn module_depth(rel: &Path) -> usize {
    let parts: Vec<String> = rel
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect();
    let dirs = parts.len() - 1;
    match parts.last().map(String::as_str) {
        Some("lib.rs" | "main.rs") if dirs == 0 => 0,
        Some("mod.rs") => dirs,
        _ => dirs + 1,
    }
}

/// Is the whole file test code (a `tests.rs` module file)?
fn is_test_file(rel: &Path) -> bool {
    rel.file_name().is_some_and(|n| n == "tests.rs")
}

/// The room as people write it in messages and in ARCHITECTURE.md: `decode/`, `config.rs`.
fn shown(room: &str) -> String {
    if src_dir().join(room).is_dir() {
        format!("{room}/")
    } else {
        format!("{room}.rs")
    }
}

/// `src` with comments, string literals (plain, byte, raw) and character literals replaced by
/// spaces; line breaks are kept, so line numbers stay right. Lifetimes are left alone.
fn blank_comments_and_literals(src: &str) -> String {
    let c: Vec<char> = src.chars().collect();
    let mut out = c.clone();
    let mut i = 0;
    while i < c.len() {
        match comment_or_literal_end(&c, i) {
            Some(end) => {
                for ch in out[i..end].iter_mut().filter(|ch| **ch != '\n') {
                    *ch = ' ';
                }
                i = end;
            }
            None => i += 1,
        }
    }
    out.into_iter().collect()
}

/// Where the comment or literal that starts at `i` ends (just past it), or `None` when none
/// starts there.
fn comment_or_literal_end(c: &[char], i: usize) -> Option<usize> {
    let ident = |j: usize| c[j].is_alphanumeric() || c[j] == '_';
    match (c[i], c.get(i + 1)) {
        ('/', Some('/')) => Some((i..c.len()).find(|&j| c[j] == '\n').unwrap_or(c.len())),
        ('/', Some('*')) => Some(block_comment_end(c, i)),
        // `r"`, `r#"`, `br"`: not the `r` inside an identifier such as `for` or `bar`.
        ('r', _) if i == 0 || !ident(i - 1) || c[i - 1] == 'b' => raw_string_end(c, i),
        ('"', _) => Some(string_end(c, i)),
        ('\'', _) => char_literal_end(c, i),
        _ => None,
    }
}

/// The index just past the block comment that opens at `i` (block comments nest in Rust).
fn block_comment_end(c: &[char], i: usize) -> usize {
    let (mut depth, mut j) = (0usize, i);
    while j + 1 < c.len() {
        if c[j] == '/' && c[j + 1] == '*' {
            depth += 1;
            j += 2;
        } else if c[j] == '*' && c[j + 1] == '/' {
            depth -= 1;
            j += 2;
            if depth == 0 {
                return j;
            }
        } else {
            j += 1;
        }
    }
    c.len()
}

/// The index just past a raw string `r"..."` / `r#"..."#` starting at the `r` at `i`, or `None`
/// when `i` starts no raw string (an identifier such as `read`).
fn raw_string_end(c: &[char], i: usize) -> Option<usize> {
    let hashes = c[i + 1..].iter().take_while(|&&ch| ch == '#').count();
    if c.get(i + 1 + hashes) != Some(&'"') {
        return None;
    }
    let mut j = i + 2 + hashes;
    while j < c.len() {
        if c[j] == '"'
            && c[j + 1..]
                .iter()
                .take(hashes)
                .filter(|&&ch| ch == '#')
                .count()
                == hashes
        {
            return Some(j + 1 + hashes);
        }
        j += 1;
    }
    Some(c.len())
}

/// The index just past the string literal whose opening quote is at `i` (escapes honoured).
fn string_end(c: &[char], i: usize) -> usize {
    let mut j = i + 1;
    while j < c.len() {
        match c[j] {
            '\\' => j += 2,
            '"' => return j + 1,
            _ => j += 1,
        }
    }
    c.len()
}

/// The index just past the character literal whose quote is at `i` (`'x'`, `'\n'`, `'\u{..}'`),
/// or `None` for a lifetime or a label (`'a`, `'static`).
fn char_literal_end(c: &[char], i: usize) -> Option<usize> {
    if c.get(i + 1) == Some(&'\\') {
        let close = (i + 3..c.len()).find(|&j| c[j] == '\'')?;
        return Some(close + 1);
    }
    (c.get(i + 2) == Some(&'\'')).then_some(i + 3)
}

/// Tokens of blanked source, each with its 1-based line.
fn tokens(code: &str) -> Vec<(Tok, usize)> {
    let c: Vec<char> = code.chars().collect();
    let (mut out, mut line, mut i) = (Vec::new(), 1, 0);
    while i < c.len() {
        let ch = c[i];
        if ch == '\n' {
            line += 1;
            i += 1;
        } else if ch.is_whitespace() {
            i += 1;
        } else if ch.is_alphanumeric() || ch == '_' {
            let start = i;
            while i < c.len() && (c[i].is_alphanumeric() || c[i] == '_') {
                i += 1;
            }
            out.push((Tok::Ident(c[start..i].iter().collect()), line));
        } else if ch == ':' && c.get(i + 1) == Some(&':') {
            out.push((Tok::PathSep, line));
            i += 2;
        } else {
            out.push((Tok::Punct(ch), line));
            i += 1;
        }
    }
    out
}

/// Is `t` the identifier `name`?
fn is_ident(t: Option<&(Tok, usize)>, name: &str) -> bool {
    matches!(t, Some((Tok::Ident(s), _)) if s == name)
}

/// Which kind of `cfg(test)` attribute starts at a token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum CfgTest {
    /// `#[cfg(test)]`: the next item is test code.
    Outer,
    /// `#![cfg(test)]`: the enclosing module (or file) is.
    Inner,
}

/// Does `#[cfg(test)]` or `#![cfg(test)]` start at token `i`? Returns which, and the index just
/// past it.
fn cfg_test_at(t: &[(Tok, usize)], i: usize) -> Option<(CfgTest, usize)> {
    let inner = t.get(i + 1).map(|x| &x.0) == Some(&Tok::Punct('!'));
    let j = if inner { i + 2 } else { i + 1 };
    let kind = if inner {
        CfgTest::Inner
    } else {
        CfgTest::Outer
    };
    let want = [
        Tok::Punct('['),
        Tok::Ident("cfg".into()),
        Tok::Punct('('),
        Tok::Ident("test".into()),
        Tok::Punct(')'),
        Tok::Punct(']'),
    ];
    let found = want
        .iter()
        .enumerate()
        .all(|(k, w)| t.get(j + k).map(|x| &x.0) == Some(w));
    (t.get(i).map(|x| &x.0) == Some(&Tok::Punct('#')) && found).then_some((kind, j + want.len()))
}

/// The names at the top level of the group whose `{` is token `open`: `a`, `b` and `c` in
/// `{a, b::x, c::{y, z}}` (`self` left out).
fn group_heads(t: &[(Tok, usize)], open: usize) -> Vec<String> {
    let (mut heads, mut depth, mut expect_head) = (Vec::new(), 0usize, true);
    for (tok, _) in &t[open..] {
        match tok {
            Tok::Punct('{') => {
                depth += 1;
                expect_head = depth == 1;
            }
            Tok::Punct('}') => {
                depth -= 1;
                if depth == 0 {
                    break;
                }
            }
            Tok::Punct(',') if depth == 1 => expect_head = true,
            Tok::Ident(s) if depth == 1 && expect_head => {
                if s != "self" {
                    heads.push(s.clone());
                }
                expect_head = false;
            }
            Tok::Punct('*') if depth == 1 && expect_head => {
                heads.push("*".into());
                expect_head = false;
            }
            _ => {}
        }
    }
    heads
}

/// The rooms a path names right after its root at token `at`: one name, the heads of a group,
/// or `*` for a glob of the crate root.
fn names_at(t: &[(Tok, usize)], at: usize) -> Vec<String> {
    match t.get(at).map(|x| &x.0) {
        Some(Tok::Ident(s)) => vec![s.clone()],
        Some(Tok::Punct('{')) => group_heads(t, at),
        Some(Tok::Punct('*')) => vec!["*".into()],
        _ => Vec::new(),
    }
}

/// Where a path starting at token `i` reaches the crate root, the index of the token after
/// `crate::` or after the `super::` chain that climbs there from `depth`; `None` for a path
/// that stays inside the module tree below.
fn root_path_at(t: &[(Tok, usize)], i: usize, depth: usize) -> Option<usize> {
    let follows_path = i > 0 && t[i - 1].0 == Tok::PathSep;
    if follows_path {
        return None;
    }
    if is_ident(t.get(i), "crate") && t.get(i + 1).map(|x| &x.0) == Some(&Tok::PathSep) {
        return Some(i + 2);
    }
    let mut j = i;
    let mut ups = 0;
    while is_ident(t.get(j), "super") && t.get(j + 1).map(|x| &x.0) == Some(&Tok::PathSep) {
        ups += 1;
        j += 2;
    }
    (ups > 0 && ups == depth).then_some(j)
}

/// Every path of a file's code into a room, with its line and scope. `depth` is the file's
/// [`module_depth`]; `whole_test` says the file is test code.
fn imports_in(src: &str, depth: usize, whole_test: bool) -> Vec<Import> {
    let t = tokens(&blank_comments_and_literals(src));
    let mut base = if whole_test { Scope::Test } else { Scope::Code };
    let (mut out, mut frames, mut pending_test) = (Vec::new(), Vec::<Frame>::new(), false);
    let mut i = 0;
    while i < t.len() {
        let outer = frames.last().map_or(base, |f| f.scope);
        let scope = if pending_test { Scope::Test } else { outer };
        if let Some((kind, next)) = cfg_test_at(&t, i) {
            match (kind, frames.last_mut()) {
                (CfgTest::Outer, _) => pending_test = true,
                (CfgTest::Inner, Some(f)) => f.scope = Scope::Test,
                (CfgTest::Inner, None) => base = Scope::Test,
            }
            i = next;
            continue;
        }
        match &t[i].0 {
            Tok::Punct('{') => {
                let module =
                    i >= 2 && is_ident(t.get(i - 2), "mod") && matches!(t[i - 1].0, Tok::Ident(_));
                frames.push(Frame { scope, module });
                pending_test = false;
            }
            Tok::Punct('}') => {
                frames.pop();
            }
            Tok::Punct(';') => pending_test = false,
            Tok::Ident(_) => {
                let here = depth + frames.iter().filter(|f| f.module).count();
                if let Some(at) = root_path_at(&t, i, here) {
                    let line = t[i].1;
                    for room in names_at(&t, at) {
                        out.push(Import { line, room, scope });
                    }
                }
            }
            _ => {}
        }
        i += 1;
    }
    out
}

/// The rooms a table lists for `room` (none when it is not there).
fn listed(
    table: &'static [(&'static str, &'static [&'static str])],
    room: &str,
) -> BTreeSet<&'static str> {
    table
        .iter()
        .filter(|(r, _)| *r == room)
        .flat_map(|(_, to)| to.iter().copied())
        .collect()
}

/// One room's allowed rooms for a scope (test code may use its code's rooms too).
fn allowed_for(room: &str, scope: Scope) -> BTreeSet<&'static str> {
    let mut set = listed(ALLOWED, room);
    if scope == Scope::Test {
        set.extend(listed(TEST_ONLY, room));
    }
    set
}

/// "decode/ may import no other room", "flow/ may import only capture, decode, time" (and what
/// its tests may add).
fn rule_text(room: &str) -> String {
    let code = allowed_for(room, Scope::Code);
    let test: Vec<_> = allowed_for(room, Scope::Test)
        .difference(&code)
        .copied()
        .collect();
    let mut s = if code.is_empty() {
        format!("{} may import no other room", shown(room))
    } else {
        let list: Vec<_> = code.iter().copied().collect();
        format!("{} may import only {}", shown(room), list.join(", "))
    };
    if !test.is_empty() {
        s.push_str(&format!(" (its unit tests also {})", test.join(", ")));
    }
    s
}

/// Every room file under `src/` with its imports: (path under `src/`, room, imports).
fn scan_src() -> Vec<(PathBuf, String, Vec<Import>)> {
    let src = src_dir();
    rust_files(&src)
        .into_iter()
        .map(|path| {
            let rel = path.strip_prefix(&src).unwrap_or(&path).to_path_buf();
            let text = std::fs::read_to_string(&path)
                .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            let found = imports_in(&text, module_depth(&rel), is_test_file(&rel));
            let room = room_of(&rel);
            (rel, room, found)
        })
        .collect()
}

/// The rooms each room uses today, per scope (its own room left out).
fn used_edges() -> BTreeMap<(String, Scope), BTreeSet<String>> {
    let mut used: BTreeMap<(String, Scope), BTreeSet<String>> = BTreeMap::new();
    for (_, room, found) in scan_src() {
        for imp in found.into_iter().filter(|i| i.room != room) {
            used.entry((room.clone(), imp.scope))
                .or_default()
                .insert(imp.room);
        }
    }
    used
}

#[test]
fn every_import_is_allowed() {
    let mut errors = Vec::new();
    for (rel, room, found) in scan_src() {
        for imp in found {
            if imp.room == room || allowed_for(&room, imp.scope).contains(imp.room.as_str()) {
                continue;
            }
            let what = match imp.scope {
                Scope::Code => "imports",
                Scope::Test => "(test code) imports",
            };
            errors.push(format!(
                "src/{}:{} {what} crate::{}: {}; see ARCHITECTURE.md (\"What may import what\")",
                rel.display(),
                imp.line,
                imp.room,
                rule_text(&room)
            ));
        }
    }
    assert!(errors.is_empty(), "\n{}\n", errors.join("\n"));
}

/// Rooms in `src/` that ALLOWED lacks, and rooms it lists that `src/` lacks.
fn unlisted_or_gone_rooms() -> Vec<String> {
    let rooms: BTreeSet<String> = scan_src().into_iter().map(|(_, r, _)| r).collect();
    let listed: BTreeSet<String> = ALLOWED.iter().map(|(r, _)| r.to_string()).collect();
    let unlisted = rooms.difference(&listed).map(|r| {
        format!(
            "{} is a room src/layers.rs does not know: add it to ALLOWED and to ARCHITECTURE.md",
            shown(r)
        )
    });
    let gone = listed.difference(&rooms).map(|r| {
        format!("ALLOWED lists {r}, which is not in src/ any more: remove it here and in ARCHITECTURE.md")
    });
    unlisted.chain(gone).collect()
}

/// Entries of ALLOWED (for code) and TEST_ONLY (for tests) that no import needs any more.
fn unused_allowances() -> Vec<String> {
    let used = used_edges();
    let uses = |room: &str, scope: Scope, to: &str| {
        used.get(&(room.to_string(), scope))
            .is_some_and(|s| s.contains(to))
    };
    let pairs = |table: &'static [(&'static str, &'static [&'static str])]| {
        table
            .iter()
            .flat_map(|(r, t)| t.iter().map(move |x| (*r, *x)))
    };
    let code = pairs(ALLOWED)
        .filter(|(room, to)| !uses(room, Scope::Code, to))
        .map(|(room, to)| format!(
            "ALLOWED lets {} import {to}, but its code does not: remove it here and in ARCHITECTURE.md",
            shown(room)
        ));
    let tests = pairs(TEST_ONLY)
        .filter(|(room, to)| !uses(room, Scope::Test, to))
        .map(|(room, to)| format!(
            "TEST_ONLY lets {}'s tests import {to}, but they do not: remove it here and in ARCHITECTURE.md",
            shown(room)
        ));
    code.chain(tests).collect()
}

#[test]
fn every_room_is_listed_and_every_listed_import_is_used() {
    let mut errors = unlisted_or_gone_rooms();
    errors.extend(unused_allowances());
    assert!(errors.is_empty(), "\n{}\n", errors.join("\n"));
}

/// ARCHITECTURE.md's table, as {room: (code may import, tests may also import)}.
fn architecture_table(doc: &str) -> BTreeMap<String, Rule> {
    let start = doc
        .find(TABLE_BEGIN)
        .expect("ARCHITECTURE.md has the layers table markers");
    let end = doc[start..]
        .find(TABLE_END)
        .map(|e| start + e)
        .unwrap_or(doc.len());
    let names = |cell: &str| -> BTreeSet<String> {
        cell.split(',')
            .map(|n| {
                n.trim()
                    .trim_matches('`')
                    .trim_end_matches('/')
                    .trim_end_matches(".rs")
            })
            .filter(|n| !n.is_empty() && *n != "—" && *n != "-")
            .map(str::to_string)
            .collect()
    };
    let mut table = BTreeMap::new();
    for line in doc[start..end].lines().filter(|l| l.starts_with("| `")) {
        let cells: Vec<&str> = line.split('|').collect();
        let room = cells.get(1).map_or(String::new(), |c| {
            let c = c.trim().trim_matches('`');
            c.trim_end_matches('/').trim_end_matches(".rs").to_string()
        });
        let rule = cells.get(2).copied().unwrap_or("");
        let (code, test) = match rule.split_once("; tests:") {
            Some((code, test)) => (names(code), names(test)),
            None => (names(rule), BTreeSet::new()),
        };
        table.insert(room, (code, test));
    }
    table
}

/// A table row as people read it: `capture, decode, time` (and `; tests: config`).
type Rule = (BTreeSet<String>, BTreeSet<String>);

/// How a rule reads in a message.
fn rule_words(rule: Option<&Rule>) -> String {
    let Some((code, test)) = rule else {
        return "no row".into();
    };
    let list = |s: &BTreeSet<String>| s.iter().cloned().collect::<Vec<_>>().join(", ");
    match (code.is_empty(), test.is_empty()) {
        (true, true) => "—".into(),
        (_, true) => list(code),
        _ => format!("{}; tests: {}", list(code), list(test)),
    }
}

#[test]
fn architecture_md_documents_the_same_table() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("ARCHITECTURE.md");
    let doc = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let documented = architecture_table(&doc);
    let ours: BTreeMap<String, Rule> = ALLOWED
        .iter()
        .map(|(room, _)| {
            let code = allowed_for(room, Scope::Code);
            let test = allowed_for(room, Scope::Test);
            let only_test = test.difference(&code).map(|s| s.to_string()).collect();
            let code = code.iter().map(|s| s.to_string()).collect();
            (room.to_string(), (code, only_test))
        })
        .collect();
    let rooms: BTreeSet<&String> = documented.keys().chain(ours.keys()).collect();
    let differences: Vec<String> = rooms
        .into_iter()
        .filter(|r| documented.get(*r) != ours.get(*r))
        .map(|r| {
            format!(
                "{}: ARCHITECTURE.md says {}; src/layers.rs says {}",
                shown(r),
                rule_words(documented.get(r)),
                rule_words(ours.get(r))
            )
        })
        .collect();
    assert!(
        differences.is_empty(),
        "ARCHITECTURE.md's table (between {TABLE_BEGIN} and {TABLE_END}) and ALLOWED/TEST_ONLY differ:\n{}\n",
        differences.join("\n")
    );
}

#[test]
fn the_scanner_sees_paths_groups_and_climbs_but_not_comments_or_literals() {
    let src = r##"
//! Docs naming crate::policy are no import.
use crate::flow::Observation;
use crate::{decode, time::now_ns, record::{queue, Event}, self};
/* crate::enforce in a /* nested */ comment */
fn f<'a>(x: &'a str) -> char {
    let _ = "crate::portal in a string";
    let _ = r#"crate::resolver in a raw "string""#;
    let _ = b'"';
    let _ = '\'';
    crate::html::esc(x);
    super::super::csv_out::Cell::Int(1);
    super::sibling();
    '{'
}
#[cfg(test)]
use crate::config::Config;
#[cfg(test)]
mod tests {
    use super::super::super::report;
    use super::*;
}
pub(crate) fn g() {}
"##;
    let got: Vec<(usize, String, Scope)> = imports_in(src, 2, false)
        .into_iter()
        .map(|i| (i.line, i.room, i.scope))
        .collect();
    let want: Vec<(usize, String, Scope)> = [
        (3, "flow", Scope::Code),
        (4, "decode", Scope::Code),
        (4, "time", Scope::Code),
        (4, "record", Scope::Code),
        (11, "html", Scope::Code),
        (12, "csv_out", Scope::Code),
        (17, "config", Scope::Test),
        (20, "report", Scope::Test),
    ]
    .into_iter()
    .map(|(line, room, scope)| (line, room.to_string(), scope))
    .collect();
    assert_eq!(got, want);
}

#[test]
fn an_inner_cfg_test_makes_the_rest_of_its_module_test_code() {
    let src = "#![cfg(test)]\nuse crate::config::Config;\nfn f() { crate::report::x(); }\n";
    let scopes: Vec<Scope> = imports_in(src, 1, false).iter().map(|i| i.scope).collect();
    assert_eq!(scopes, [Scope::Test, Scope::Test]);
}

#[test]
fn module_depths_and_rooms_follow_the_file_layout() {
    for (path, depth, room) in [
        ("lib.rs", 0, "lib"),
        ("config.rs", 1, "config"),
        ("flow/mod.rs", 1, "flow"),
        ("flow/sensor.rs", 2, "flow"),
        ("enforce/nft/mod.rs", 2, "enforce"),
        ("enforce/nft/msgs.rs", 3, "enforce"),
    ] {
        assert_eq!(module_depth(Path::new(path)), depth, "{path}");
        assert_eq!(room_of(Path::new(path)), room, "{path}");
    }
}
