//! The library reads top-down: no two modules import each other, directly or through others,
//! and no top-level module (a file or a directory of `src/`) uses one of a layer above its own
//! ([`LAYERS`]), so that each can be read (and changed) without the ones above.
//!
//! The checks read the sources (the CLI in `src/bin` aside, a crate of its own):
//! - cycles: every `use crate::...`, `use super::...` and `use self::...` is an edge to the
//!   deepest module it names; a module may use its ancestors and its descendants (that is
//!   nesting, not a cycle);
//! - layers: every path of the code (comments and literals aside) that starts with `crate::`,
//!   `super::` or `self::`, in a `use` or inline, grouped (`crate::{a::X, b::Y}`) or not, names
//!   a top-level module; a name the crate root re-exports (`crate::Consumer`) counts as the
//!   module it comes from. A module's unit tests (`tests.rs`) may use any layer.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

type Module = Vec<String>;

/// The library's top-level modules, by layer, top first: a module may use its own layer and
/// the layers below, never one above. A new top-level module must be placed here.
const LAYERS: &[&[&str]] = &[
    // What programs use besides the seed's types: the AMQP server, the blocking facade.
    &["server", "blocking"],
    // What services build on the seed's types: simple queues, pools, RPC, the worker loop.
    &["simple", "pool", "rpc", "worker"],
    // The seed's types.
    &[
        "publisher",
        "consumer",
        "consumer_set",
        "messaging",
        "message",
    ],
    // A connection: opens the backend a URL names and keeps it.
    &["connection"],
    // The brokers behind one interface.
    &["backend"],
    // What the connection and the backends share: its options, its state and events.
    &["options", "status"],
    // The foundations: routing, serialization, entities, errors and the types around them.
    &[
        "routing",
        "serialization",
        "entity",
        "error",
        "table",
        "properties",
        "url",
        "retry",
        "limits",
        "redact",
        "message_state",
    ],
];

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("read src") {
        let path = entry.expect("entry").path();
        if path.is_dir() {
            if path.file_name().is_some_and(|n| n != "bin") {
                rust_files(&path, out);
            }
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// `src/a/b.rs` and `src/a/b/mod.rs` are module `a::b`; `src/lib.rs` is the crate.
fn module_of(src: &Path, file: &Path) -> Module {
    let relative = file
        .strip_prefix(src)
        .expect("under src")
        .with_extension("");
    let mut parts: Module = relative
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect();
    if matches!(parts.last().map(String::as_str), Some("mod" | "lib")) {
        parts.pop();
    }
    parts
}

/// The paths of the `use` declarations of a source (each `use` up to its first `{`, `;` or
/// ` as`).
fn use_paths(source: &str) -> Vec<Vec<String>> {
    let mut paths = Vec::new();
    for line in source.lines() {
        let line = line.trim_start();
        let Some(rest) = line
            .strip_prefix("use ")
            .or_else(|| line.strip_prefix("pub(crate) use "))
            .or_else(|| line.strip_prefix("pub(super) use "))
            .or_else(|| line.strip_prefix("pub use "))
        else {
            continue;
        };
        let end = rest.find(['{', ';', ' ']).unwrap_or(rest.len());
        let path: Vec<String> = rest[..end]
            .split("::")
            .filter(|p| !p.is_empty())
            .map(str::to_string)
            .collect();
        if matches!(
            path.first().map(String::as_str),
            Some("crate" | "super" | "self")
        ) {
            paths.push(path);
        }
    }
    paths
}

/// The deepest known module a `use` path names, seen from `from`.
fn target(from: &Module, path: &[String], known: &BTreeSet<Module>) -> Option<Module> {
    let (mut current, rest): (Module, &[String]) = if path[0] == "crate" {
        (Vec::new(), &path[1..])
    } else {
        let mut current = from.clone();
        let mut i = 0;
        while i < path.len() && (path[i] == "super" || path[i] == "self") {
            if path[i] == "super" {
                current.pop();
            }
            i += 1;
        }
        (current, &path[i..])
    };
    let mut found = None;
    for part in rest {
        current.push(part.clone());
        if known.contains(&current) {
            found = Some(current.clone());
        }
    }
    found
}

fn graph() -> BTreeMap<Module, BTreeSet<Module>> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let modules: Vec<(Module, PathBuf)> = files
        .into_iter()
        .map(|f| (module_of(&src, &f), f))
        .collect();
    let known: BTreeSet<Module> = modules.iter().map(|(m, _)| m.clone()).collect();
    let mut edges: BTreeMap<Module, BTreeSet<Module>> = BTreeMap::new();
    for (module, file) in &modules {
        let source = std::fs::read_to_string(file).expect("read a source file");
        let entry = edges.entry(module.clone()).or_default();
        for path in use_paths(&source) {
            let Some(to) = target(module, &path, &known) else {
                continue;
            };
            let nested = to.starts_with(module) || module.starts_with(&to);
            if !nested {
                entry.insert(to);
            }
        }
    }
    edges
}

/// The modules reachable from `start`.
fn reachable(edges: &BTreeMap<Module, BTreeSet<Module>>, start: &Module) -> BTreeSet<Module> {
    let mut seen = BTreeSet::new();
    let mut todo = vec![start.clone()];
    while let Some(m) = todo.pop() {
        for next in edges.get(&m).into_iter().flatten() {
            if seen.insert(next.clone()) {
                todo.push(next.clone());
            }
        }
    }
    seen
}

fn cycles(edges: &BTreeMap<Module, BTreeSet<Module>>) -> BTreeSet<Vec<String>> {
    let mut found = BTreeSet::new();
    for module in edges.keys() {
        let from_here = reachable(edges, module);
        if from_here.contains(module) {
            // The cycle through this module: the modules it reaches that reach it back.
            let mut cycle: Vec<String> = from_here
                .iter()
                .filter(|m| reachable(edges, m).contains(module))
                .map(|m| m.join("::"))
                .collect();
            cycle.sort();
            found.insert(cycle);
        }
    }
    found
}

/// `source` with its comments and the insides of its string and character literals blanked
/// (lines kept), so that only code is searched for paths.
fn code_only(source: &str) -> String {
    let bytes = source.as_bytes();
    let mut out = String::with_capacity(source.len());
    let mut i = 0;
    let blank = |out: &mut String, text: &str| {
        out.extend(text.chars().map(|c| if c == '\n' { '\n' } else { ' ' }))
    };
    while i < bytes.len() {
        let rest = &source[i..];
        let end = if rest.starts_with("//") {
            rest.find('\n').map_or(source.len(), |e| i + e)
        } else if rest.starts_with("/*") {
            rest.find("*/").map_or(source.len(), |e| i + e + 2)
        } else if let Some(hashes) = rest
            .strip_prefix('r')
            .map(|r| r.len() - r.trim_start_matches('#').len())
            .filter(|&h| rest[1 + h..].starts_with('"'))
        {
            let closing = format!("\"{}", "#".repeat(hashes));
            rest[2 + hashes..]
                .find(&closing)
                .map_or(source.len(), |e| i + 2 + hashes + e + closing.len())
        } else if rest.starts_with('"') {
            let mut j = i + 1;
            while j < bytes.len() && bytes[j] != b'"' {
                j += if bytes[j] == b'\\' { 2 } else { 1 };
            }
            (j + 1).min(source.len())
        } else if rest.starts_with("'\\") || rest.get(2..3) == Some("'") {
            // A character literal ('a', '\n'); a lifetime ('a) is code.
            rest[2..].find('\'').map_or(i + 1, |e| i + 3 + e)
        } else {
            let len = rest.chars().next().map_or(1, char::len_utf8);
            out.push_str(&rest[..len]);
            i += len;
            continue;
        };
        blank(&mut out, &source[i..end]);
        i = end;
    }
    out
}

/// The first segment after each `crate::`, `super::` or `self::` path of `code` (every entry
/// of a group `{...}`), resolved from module `from` to an absolute path's first segment, with
/// the line it is on.
fn path_roots(from: &Module, code: &str) -> Vec<(String, usize)> {
    let mut roots = Vec::new();
    let bytes = code.as_bytes();
    let ident = |b: u8| b.is_ascii_alphanumeric() || b == b'_';
    let mut i = 0;
    while i < bytes.len() {
        let starts = ["crate::", "super::", "self::"]
            .iter()
            .find(|p| code[i..].starts_with(**p) && (i == 0 || !ident(bytes[i - 1])));
        let Some(start) = starts else {
            i += 1;
            continue;
        };
        // Climb: crate:: is the root; each super:: one level up from `from`.
        let mut base: Module = if *start == "crate::" {
            Vec::new()
        } else {
            from.clone()
        };
        let mut j = i;
        loop {
            if code[j..].starts_with("crate::") {
                j += "crate::".len();
            } else if code[j..].starts_with("super::") {
                base.pop();
                j += "super::".len();
            } else if code[j..].starts_with("self::") {
                j += "self::".len();
            } else {
                break;
            }
        }
        let line = code[..i].matches('\n').count() + 1;
        let mut names = Vec::new();
        if bytes.get(j) == Some(&b'{') {
            // A group: the first segment of each top-level entry.
            let (mut depth, mut k, mut entry_start) = (0, j, j + 1);
            while k < bytes.len() {
                match bytes[k] {
                    b'{' => depth += 1,
                    b'}' | b',' if depth == 1 => {
                        names.push(code[entry_start..k].trim().to_string());
                        entry_start = k + 1;
                        if bytes[k] == b'}' {
                            break;
                        }
                    }
                    b'}' => depth -= 1,
                    _ => {}
                }
                k += 1;
            }
        } else {
            names.push(code[j..].to_string());
        }
        for name in names {
            let first: String = name
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect();
            if first.is_empty() || first == "self" {
                continue;
            }
            let mut path = base.clone();
            path.push(first);
            roots.push((path[0].clone(), line));
        }
        i = j;
    }
    roots
}

/// What the crate root re-exports (`pub use module::{A, B}`): each name to its module.
fn root_exports(lib: &str) -> BTreeMap<String, String> {
    let code = code_only(lib);
    let mut exports = BTreeMap::new();
    for statement in code.split(';') {
        let Some(rest) = statement.trim().strip_prefix("pub use ") else {
            continue;
        };
        let Some((module, items)) = rest.split_once("::") else {
            continue;
        };
        let items = items.trim().trim_start_matches('{').trim_end_matches('}');
        for item in items.split(',') {
            let name = item.rsplit("::").next().unwrap_or("").trim();
            let name = name.rsplit(" as ").next().unwrap_or(name).trim();
            if !name.is_empty() {
                exports.insert(name.to_string(), module.trim().to_string());
            }
        }
    }
    exports
}

/// Every use of a top-level module of a layer above the user's: `file:line: a uses b`.
fn upward_uses(
    files: &[(Module, String, String)],
    exports: &BTreeMap<String, String>,
) -> Result<Vec<String>, String> {
    let layer_of = |module: &str| LAYERS.iter().position(|layer| layer.contains(&module));
    let mut found = Vec::new();
    for (module, file, source) in files {
        // A module's unit tests may drive it from above (through a connection, say).
        if module.last().is_some_and(|m| m == "tests") {
            continue;
        }
        let Some(top) = module.first() else { continue };
        let Some(own) = layer_of(top) else {
            return Err(format!("src/{top} is in no layer: add it to LAYERS"));
        };
        for (root, line) in path_roots(module, &code_only(source)) {
            let used = exports.get(&root).cloned().unwrap_or(root);
            if let Some(theirs) = layer_of(&used) {
                if theirs < own {
                    found.push(format!("{file}:{line}: {top} uses {used}, a layer above"));
                }
            }
        }
    }
    Ok(found)
}

#[test]
fn no_module_uses_a_layer_above_its_own() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut paths = Vec::new();
    rust_files(&src, &mut paths);
    let mut files = Vec::new();
    for path in paths {
        let module = module_of(&src, &path);
        let source = std::fs::read_to_string(&path).expect("read a source file");
        let shown = path
            .strip_prefix(&src)
            .unwrap_or(&path)
            .display()
            .to_string();
        files.push((module, format!("src/{shown}"), source));
    }
    let lib = std::fs::read_to_string(src.join("lib.rs")).expect("read src/lib.rs");
    let exports = root_exports(&lib);
    assert!(
        exports.get("Consumer").map(String::as_str) == Some("consumer"),
        "the root's re-exports were not read: {exports:?}"
    );
    let found = upward_uses(&files, &exports).unwrap_or_else(|e| panic!("{e}"));
    assert!(
        found.is_empty(),
        "modules that use a layer above their own:\n{}",
        found.join("\n")
    );
}

#[test]
fn the_layer_check_finds_an_upward_use() {
    let m = |s: &str| s.split("::").map(str::to_string).collect::<Module>();
    let exports = root_exports(
        "pub use connection::{\n    BrokerConnection, ConnectionBuilder,\n};\npub use entity::ExchangeType;\npub use serialization::{Payload as P};",
    );
    assert_eq!(
        exports.get("ConnectionBuilder").map(String::as_str),
        Some("connection")
    );
    assert_eq!(exports.get("P").map(String::as_str), Some("serialization"));
    let file =
        |module: &str, source: &str| (m(module), format!("src/{module}.rs"), source.to_string());
    let files = [
        // Upward, each way a path can be written.
        file("backend::amqp", "use crate::connection::Options;"),
        file(
            "backend::sqlite",
            "fn f() -> crate::server::Stats { todo!() }",
        ),
        file(
            "backend",
            "use crate::{error::Error,\n    consumer::Consumer};",
        ),
        file(
            "backend::memory::state",
            "use super::super::super::publisher::X;",
        ),
        file("routing", "use crate::{BrokerConnection, ExchangeType};"),
        // Downward, sideways, or not code: allowed.
        file(
            "connection",
            "use crate::backend::Channel; use super::options::X; use crate::{ExchangeType, P};",
        ),
        file(
            "consumer",
            "use crate::message::Message; // crate::server::X\nlet s = \"crate::blocking::Y\";",
        ),
        file(
            "backend::amqp::link",
            "use super::super::convert; use self::inner::Z;",
        ),
    ];
    let found = upward_uses(&files, &exports).expect("every module has a layer");
    assert_eq!(
        found,
        vec![
            "src/backend::amqp.rs:1: backend uses connection, a layer above",
            "src/backend::sqlite.rs:1: backend uses server, a layer above",
            "src/backend.rs:1: backend uses consumer, a layer above",
            "src/backend::memory::state.rs:1: backend uses publisher, a layer above",
            "src/routing.rs:1: routing uses connection, a layer above",
        ]
    );
    let unplaced = [file("newcomer", "use crate::error::Error;")];
    assert!(upward_uses(&unplaced, &exports).is_err());
}

#[test]
fn no_two_modules_import_each_other() {
    let edges = graph();
    assert!(
        edges.len() > 30,
        "the sources were not found: {} modules",
        edges.len()
    );
    let found = cycles(&edges);
    assert!(
        found.is_empty(),
        "modules that import each other: {found:?}"
    );
}

#[test]
fn the_check_finds_a_cycle() {
    let m = |s: &str| s.split("::").map(str::to_string).collect::<Module>();
    let mut edges: BTreeMap<Module, BTreeSet<Module>> = BTreeMap::new();
    edges.entry(m("a::x")).or_default().insert(m("a::y"));
    edges.entry(m("a::y")).or_default().insert(m("b"));
    edges.entry(m("b")).or_default().insert(m("a::x"));
    edges.entry(m("c")).or_default().insert(m("b"));
    let found = cycles(&edges);
    assert_eq!(
        found.into_iter().collect::<Vec<_>>(),
        vec![vec!["a::x".to_string(), "a::y".into(), "b".into()]]
    );
    let known: BTreeSet<Module> = [m("backend"), m("backend::sqlite"), m("error")].into();
    assert_eq!(
        target(
            &m("backend::sqlite"),
            &[
                "super".into(),
                "super".into(),
                "error".into(),
                "Error".into()
            ],
            &known
        ),
        Some(m("error"))
    );
    assert_eq!(
        use_paths("use crate::backend::sqlite::{a, b};\n    use super::x as y;\nuse std::fmt;"),
        vec![
            vec!["crate".to_string(), "backend".into(), "sqlite".into()],
            vec!["super".to_string(), "x".into()],
        ]
    );
}
