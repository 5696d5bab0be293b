//! The shape of the code, checked on its sources (no Python, no extra tools):
//!
//! - the modules of each crate depend on each other one way: no cycle between top-level
//!   modules, and none between files (edges from `crate::` / `super::` / `self::` paths;
//!   a module's own parent and children are its glue, not dependencies);
//! - no function outside tests is longer than 100 lines.
//!
//! Run it alone with `cargo test --release -p arcane --test structure`
//! (`ARCANE_STRUCTURE_DIRS=a/src:b/src` checks other source folders).

mod source;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use source::{code_only, matching_brace};

/// The longest a function may be, in lines from `fn` to its closing brace.
const MAX_FUNCTION_LINES: usize = 100;

/// The crates checked, by their source folders (`ARCANE_STRUCTURE_DIRS`, separated by `:`,
/// checks others, e.g. an older revision's sources).
fn source_dirs() -> Vec<PathBuf> {
    if let Some(dirs) = std::env::var_os("ARCANE_STRUCTURE_DIRS") {
        return std::env::split_paths(&dirs).collect();
    }
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    vec![root.join("arcane/src"), root.join("arcane-cli/src")]
}

/// Every `.rs` file under `dir` with its module path (`training::run`; `""` for the root).
fn modules(dir: &Path) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap().flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                let rel = path.strip_prefix(dir).unwrap().with_extension("");
                let mut parts: Vec<String> = rel
                    .iter()
                    .map(|p| p.to_string_lossy().into_owned())
                    .collect();
                if parts.last().is_some_and(|p| p == "mod") {
                    parts.pop();
                }
                if parts == ["lib"] || parts == ["main"] {
                    parts.clear();
                }
                out.insert(parts.join("::"), std::fs::read_to_string(&path).unwrap());
            }
        }
    }
    out
}

/// The modules that module `module` (with source `code`) refers to by path.
fn references(module: &str, code: &str, known: &BTreeSet<String>) -> BTreeSet<String> {
    let parts: Vec<&str> = if module.is_empty() {
        vec![]
    } else {
        module.split("::").collect()
    };
    let mut found = BTreeSet::new();
    let words: Vec<(usize, &str)> = path_heads(code);
    for (at, head) in words {
        // `crate::a::b`, `super::x`, `super::super::x`, `self::x`, possibly with `{a, b::c}`.
        let (mut base, mut rest): (Vec<&str>, &str) = match head {
            "crate" => (vec![], &code[at + 5..]),
            "super" => (
                parts[..parts.len().saturating_sub(1)].to_vec(),
                &code[at + 5..],
            ),
            // `self::` names a child of this module (only meaningful in a mod.rs or lib.rs).
            _ => (parts.clone(), &code[at + 4..]),
        };
        while let Some(next) = rest.strip_prefix("::super") {
            base.pop();
            rest = next;
        }
        let Some(rest) = rest.strip_prefix("::") else {
            continue;
        };
        for path in expand(rest) {
            let mut target: Vec<&str> = base.clone();
            target.extend(path.iter().map(String::as_str));
            for k in (1..=target.len()).rev() {
                let candidate = target[..k].join("::");
                if known.contains(&candidate) {
                    found.insert(candidate);
                    break;
                }
            }
        }
    }
    found.remove(module);
    found
}

/// Positions of the words `crate`, `super` and `self` that start a path (`word::`).
fn path_heads(code: &str) -> Vec<(usize, &'static str)> {
    let b = code.as_bytes();
    let mut out = Vec::new();
    for word in ["crate", "super", "self"] {
        let mut from = 0;
        while let Some(p) = code[from..].find(word) {
            let at = from + p;
            from = at + word.len();
            let before = at.checked_sub(1).map(|k| b[k]);
            let starts =
                !before.is_some_and(|c| c.is_ascii_alphanumeric() || c == b'_' || c == b':');
            if starts && code[from..].starts_with("::") {
                out.push((at, word));
            }
        }
    }
    out
}

/// The paths a `use` tail or an inline path stands for: `a::b::C` -> `[a, b, C]`;
/// `{a, b::{c, d}}` -> `[a], [b, c], [b, d]`.
fn expand(rest: &str) -> Vec<Vec<String>> {
    let rest = rest.trim_start();
    if let Some(inner) = rest.strip_prefix('{') {
        let close = matching_brace(format!("{{{inner}").as_bytes(), 0).unwrap_or(inner.len());
        let body = &inner[..close.saturating_sub(1).min(inner.len())];
        return split_top(body)
            .iter()
            .flat_map(|item| expand(item))
            .collect();
    }
    let ident: String = rest
        .chars()
        .take_while(|c| c.is_alphanumeric() || *c == '_')
        .collect();
    if ident.is_empty() {
        return vec![vec![]];
    }
    let after = &rest[ident.len()..];
    match after.strip_prefix("::") {
        Some(tail) => expand(tail)
            .into_iter()
            .map(|mut p| {
                p.insert(0, ident.clone());
                p
            })
            .collect(),
        None => vec![vec![ident]],
    }
}

/// Splits `a, b::{c, d}, e` at the commas outside braces.
fn split_top(body: &str) -> Vec<&str> {
    let (mut depth, mut start, mut out) = (0, 0, Vec::new());
    for (i, c) in body.char_indices() {
        match c {
            '{' => depth += 1,
            '}' => depth -= 1,
            ',' if depth == 0 => {
                out.push(&body[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    out.push(&body[start..]);
    out.into_iter().filter(|s| !s.trim().is_empty()).collect()
}

/// A cycle of `graph`, if it has one (depth-first search for a back edge).
fn find_cycle(graph: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    fn visit(
        node: &str,
        graph: &BTreeMap<String, BTreeSet<String>>,
        state: &mut BTreeMap<String, u8>,
        path: &mut Vec<String>,
    ) -> Option<Vec<String>> {
        state.insert(node.to_string(), 1);
        path.push(node.to_string());
        for next in graph.get(node).into_iter().flatten() {
            match state.get(next.as_str()).copied().unwrap_or(0) {
                1 => {
                    let from = path.iter().position(|p| p == next).unwrap();
                    let mut cycle = path[from..].to_vec();
                    cycle.push(next.clone());
                    return Some(cycle);
                }
                0 => {
                    if let Some(cycle) = visit(next, graph, state, path) {
                        return Some(cycle);
                    }
                }
                _ => {}
            }
        }
        path.pop();
        state.insert(node.to_string(), 2);
        None
    }
    let mut state = BTreeMap::new();
    for node in graph.keys() {
        if state.get(node).copied().unwrap_or(0) == 0 {
            if let Some(cycle) = visit(node, graph, &mut state, &mut Vec::new()) {
                return Some(cycle);
            }
        }
    }
    None
}

/// The dependency graphs of a crate's sources: between top-level modules, and between files
/// (without edges to a module's own ancestors and descendants).
fn graphs(
    sources: &BTreeMap<String, String>,
) -> (
    BTreeMap<String, BTreeSet<String>>,
    BTreeMap<String, BTreeSet<String>>,
) {
    let known: BTreeSet<String> = sources.keys().cloned().collect();
    let (mut top, mut files) = (BTreeMap::new(), BTreeMap::new());
    let related = |a: &str, b: &str| {
        a.is_empty()
            || b.is_empty()
            || a.starts_with(&format!("{b}::"))
            || b.starts_with(&format!("{a}::"))
    };
    for (module, src) in sources {
        let code = code_only(src);
        for target in references(module, &code, &known) {
            let (ta, tb) = (first(module), first(&target));
            if !ta.is_empty() && !tb.is_empty() && ta != tb {
                top.entry(ta.to_string())
                    .or_insert_with(BTreeSet::new)
                    .insert(tb.to_string());
            }
            if !related(module, &target) {
                files
                    .entry(module.clone())
                    .or_insert_with(BTreeSet::new)
                    .insert(target);
            }
        }
    }
    (top, files)
}

fn first(module: &str) -> &str {
    module.split("::").next().unwrap_or("")
}

/// Functions longer than `limit` lines in `code`: (first line, name, lines).
fn long_functions(code: &str, limit: usize) -> Vec<(usize, String, usize)> {
    let b = code.as_bytes();
    let line_of = |i: usize| code[..i].matches('\n').count() + 1;
    let mut out = Vec::new();
    let mut from = 0;
    while let Some(p) = code[from..].find("fn") {
        let at = from + p;
        from = at + 2;
        let before_ok = at == 0 || !(b[at - 1].is_ascii_alphanumeric() || b[at - 1] == b'_');
        let rest = &code[at + 2..];
        let name: String = rest
            .trim_start()
            .chars()
            .take_while(|c| c.is_alphanumeric() || *c == '_')
            .collect();
        // `fn name`, not `fn(` (a pointer type) or a longer word.
        if !before_ok || !rest.starts_with(char::is_whitespace) || name.is_empty() {
            continue;
        }
        let Some(open) = code[at..].find(['{', ';']).map(|k| at + k) else {
            continue;
        };
        if b[open] == b';' {
            continue;
        }
        if let Some(close) = matching_brace(b, open) {
            let lines = line_of(close) - line_of(at) + 1;
            if lines > limit {
                out.push((line_of(at), name, lines));
            }
        }
    }
    out
}

#[test]
fn the_module_graph_has_no_cycle() {
    for dir in source_dirs() {
        let sources = modules(&dir);
        assert!(sources.len() > 5, "no sources found in {}", dir.display());
        let (top, files) = graphs(&sources);
        if let Some(cycle) = find_cycle(&top) {
            panic!(
                "{}: top-level modules depend in a cycle: {}",
                dir.display(),
                cycle.join(" -> ")
            );
        }
        if let Some(cycle) = find_cycle(&files) {
            panic!(
                "{}: files depend in a cycle: {}",
                dir.display(),
                cycle.join(" -> ")
            );
        }
        let edges: usize = files.values().map(BTreeSet::len).sum();
        eprintln!(
            "{}: {} files, {edges} file dependencies, no cycle",
            dir.display(),
            sources.len()
        );
    }
}

#[test]
fn no_function_is_longer_than_the_limit() {
    let mut long = Vec::new();
    for dir in source_dirs() {
        for (module, src) in modules(&dir) {
            for (line, name, lines) in long_functions(&code_only(&src), MAX_FUNCTION_LINES) {
                long.push(format!(
                    "{} ({module}) line {line}: fn {name} has {lines} lines",
                    dir.display()
                ));
            }
        }
    }
    assert!(
        long.is_empty(),
        "functions over {MAX_FUNCTION_LINES} lines:\n{}",
        long.join("\n")
    );
}

/// The checker itself: it finds what it must find and ignores what it must ignore.
#[test]
fn the_checker_sees_cycles_long_functions_and_nothing_in_strings() {
    let sources: BTreeMap<String, String> = [
        ("", "mod a; mod b; pub use a::X;"),
        ("a", "use crate::b::{self, Y};\nfn f() {}"),
        ("b", "pub fn g() { super::c::h(); }"),
        (
            "c",
            "use crate::a::X; // crate::b::Z in a comment\nconst S: &str = \"crate::b\";",
        ),
    ]
    .iter()
    .map(|(m, s)| (m.to_string(), s.to_string()))
    .collect();
    let (top, files) = graphs(&sources);
    assert_eq!(find_cycle(&top).unwrap(), vec!["a", "b", "c", "a"]);
    assert!(find_cycle(&files).is_some());
    assert!(
        !files["c"].contains("b"),
        "comments and strings are not code"
    );

    let body = "x();\n".repeat(120);
    let src = format!(
        "fn long() {{\n{body}}}\nfn short() {{ let s = \"}} fn fake() {{\"; }}\n#[cfg(test)]\nmod tests {{ fn t() {{\n{body}}} }}\n"
    );
    let found = long_functions(&code_only(&src), 100);
    assert_eq!(found, vec![(1, "long".to_string(), 122)]);
    assert!(long_functions(
        &code_only("type F = fn(u8) -> u8; fn g<'a>(c: char) { let _ = 'x'; }"),
        0
    )
    .iter()
    .all(|(_, name, _)| name == "g"));
}
