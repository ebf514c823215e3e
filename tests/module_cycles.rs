//! No two modules of the library import each other, directly or through others: each module
//! depends on the ones below it, so that it can be read (and changed) without the ones above.
//!
//! The check reads the sources: every `use crate::...`, `use super::...` and `use self::...` of
//! a file under `src/` (the CLI in `src/bin` aside) is an edge to the deepest module it names;
//! a module may use its ancestors and its descendants (that is nesting, not a cycle). It fails
//! with the modules of every cycle found.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

type Module = Vec<String>;

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
