//! The blocking facade cannot drift from the async API: every public method of an async type
//! that has a blocking twin type (`carrot::Consumer` and `carrot::blocking::Consumer`, ...)
//! has a blocking method of the same name, and every async type with a public `async fn` has
//! a blocking twin type. The few exceptions are listed in [`ALLOWED`], each with its reason.
//!
//! The check reads the sources: the inherent `impl TYPE { ... }` blocks of `src/` (without
//! `src/blocking`, the internal `src/backend` and the CLI in `src/bin`) against those of
//! `src/blocking`, where methods written by the `forward!` / `getters!` macros count too.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Public methods with no blocking twin of the same name, and why.
const ALLOWED: &[(&str, &str, &str)] = &[
    (
        "ConnectionBuilder",
        "connect",
        "the keyword builder is shared by both APIs; its blocking twin is \
         blocking::BrokerConnection::connect_with(builder)",
    ),
    (
        "IterConsume",
        "next",
        "blocking::Consumer::iterconsume returns a std Iterator, whose next() is the twin",
    ),
    (
        "IterQueue",
        "next",
        "blocking::Consumer::iterqueue returns a std Iterator, whose next() is the twin",
    ),
    (
        "SetIterConsume",
        "next",
        "blocking::ConsumerSet::iterconsume returns a std Iterator, whose next() is the twin",
    ),
    (
        "Server",
        "bind",
        "the AMQP server is a network service on tokio (its connections are tasks); blocking \
         programs run it as the `carrot serve` command",
    ),
    (
        "Server",
        "run",
        "the AMQP server is a network service on tokio (its connections are tasks); blocking \
         programs run it as the `carrot serve` command",
    ),
    (
        "Metrics",
        "queues",
        "a server's metrics are read beside the server, on its runtime",
    ),
    (
        "Metrics",
        "queues_by_vhost",
        "a server's metrics are read beside the server, on its runtime",
    ),
    (
        "Admin",
        "open",
        "administration of a broker file beside carrot serve; blocking programs run it as the \
         `carrot definitions` and `carrot vhost` commands",
    ),
    (
        "Admin",
        "export",
        "administration of a broker file beside carrot serve; blocking programs run it as the \
         `carrot definitions` and `carrot vhost` commands",
    ),
    (
        "Admin",
        "import",
        "administration of a broker file beside carrot serve; blocking programs run it as the \
         `carrot definitions` and `carrot vhost` commands",
    ),
    (
        "Admin",
        "delete_vhost",
        "administration of a broker file beside carrot serve; blocking programs run it as the \
         `carrot definitions` and `carrot vhost` commands",
    ),
];

/// A public method: its name and whether it is `async`.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Method {
    name: String,
    is_async: bool,
}

/// Type name to its public methods.
type Api = BTreeMap<String, BTreeSet<Method>>;

/// The type of an inherent `impl` block opening on this line (`impl Foo {`, `impl<'a> Foo<'a> {`);
/// `None` for anything else, trait impls included.
fn inherent_impl(line: &str) -> Option<String> {
    let rest = line.strip_prefix("impl")?;
    if !line.trim_end().ends_with('{') || line.contains(" for ") {
        return None;
    }
    let rest = if let Some(generic) = rest.strip_prefix('<') {
        &generic[generic.find('>')? + 1..]
    } else {
        rest
    };
    let name: String = rest
        .trim_start()
        .chars()
        .take_while(|c| c.is_alphanumeric() || *c == '_')
        .collect();
    (!name.is_empty()).then_some(name)
}

/// The leading identifier of a line.
fn identifier(text: &str) -> String {
    text.chars()
        .take_while(|c| c.is_alphanumeric() || *c == '_')
        .collect()
}

/// Adds the public methods of the inherent impl blocks of one (rustfmt-formatted) file.
fn scan(text: &str, api: &mut Api) {
    let mut current: Option<String> = None;
    let mut in_macro = false;
    for line in text.lines() {
        let Some(ty) = &current else {
            current = inherent_impl(line);
            continue;
        };
        if line == "}" {
            current = None;
            in_macro = false;
            continue;
        }
        let trimmed = line.trim_start();
        let indent = line.len() - trimmed.len();
        let mut found = |name: String, is_async: bool| {
            api.entry(ty.clone())
                .or_default()
                .insert(Method { name, is_async });
        };
        if indent == 4 {
            if let Some(rest) = trimmed.strip_prefix("pub fn ") {
                found(identifier(rest), false);
            } else if let Some(rest) = trimmed.strip_prefix("pub async fn ") {
                found(identifier(rest), true);
            } else if trimmed.ends_with("! {") {
                in_macro = true;
            } else if trimmed == "}" {
                in_macro = false;
            }
        } else if in_macro && indent == 8 {
            // A macro entry: `name(args);` (forward!) or `name -> Type;` (getters!).
            let name = identifier(trimmed);
            let after = &trimmed[name.len()..];
            if !name.is_empty() && (after.starts_with('(') || after.starts_with(" ->")) {
                found(name, false);
            }
        }
    }
}

fn rust_files(dir: &Path, skip: &[&Path], out: &mut Vec<PathBuf>) {
    let entries = std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    for entry in entries {
        let path = entry.expect("a directory entry").path();
        if skip.iter().any(|s| path == *s) {
            continue;
        }
        if path.is_dir() {
            rust_files(&path, skip, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

fn api_of(dir: &Path, skip: &[&Path]) -> Api {
    let mut files = Vec::new();
    rust_files(dir, skip, &mut files);
    let mut api = Api::new();
    for file in files {
        let text =
            std::fs::read_to_string(&file).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
        scan(&text, &mut api);
    }
    api
}

/// What is missing from the blocking API: `TYPE::method` for each public method of an async
/// type with a blocking twin, and `TYPE` for an async type without a twin that has a public
/// `async fn`; the allowed exceptions left out.
fn missing(async_api: &Api, blocking_api: &Api) -> Vec<String> {
    let allowed = |ty: &str, name: &str| {
        ALLOWED
            .iter()
            .any(|(t, n, _)| *t == ty && (*n == name || *n == "*"))
    };
    let mut missing = Vec::new();
    for (ty, methods) in async_api {
        match blocking_api.get(ty) {
            Some(twin) => {
                let twin: BTreeSet<&str> = twin.iter().map(|m| m.name.as_str()).collect();
                for m in methods {
                    if !twin.contains(m.name.as_str()) && !allowed(ty, &m.name) {
                        missing.push(format!("{ty}::{}", m.name));
                    }
                }
            }
            None => {
                for m in methods.iter().filter(|m| m.is_async) {
                    if !allowed(ty, &m.name) {
                        missing.push(format!("{ty} (no blocking type; has async fn {})", m.name));
                    }
                }
            }
        }
    }
    missing
}

fn apis() -> (Api, Api) {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let blocking = src.join("blocking");
    let async_api = api_of(&src, &[&blocking, &src.join("backend"), &src.join("bin")]);
    let blocking_api = api_of(&blocking, &[]);
    (async_api, blocking_api)
}

#[test]
fn every_public_async_method_has_a_blocking_twin() {
    let (async_api, blocking_api) = apis();
    // The scan sees the API (so that an empty scan cannot pass).
    let has = |api: &Api, ty: &str, name: &str, is_async: bool| {
        api.get(ty).is_some_and(|m| {
            m.contains(&Method {
                name: name.into(),
                is_async,
            })
        })
    };
    assert!(
        has(&async_api, "Consumer", "fetch_with", true),
        "{async_api:#?}"
    );
    assert!(has(&async_api, "BrokerConnection", "delete_queue", true));
    assert!(has(&async_api, "ConsumerBuilder", "queue_spec", false));
    assert!(has(&blocking_api, "ConsumerBuilder", "queue_spec", false));
    assert!(has(&blocking_api, "Consumer", "queue", false));
    assert!(blocking_api.len() >= 10, "{blocking_api:#?}");

    let missing = missing(&async_api, &blocking_api);
    assert!(
        missing.is_empty(),
        "public methods without a blocking twin (add them to src/blocking, or to ALLOWED with \
         the reason): {missing:#?}"
    );
}

#[test]
fn blocking_methods_never_are_async_and_every_blocking_type_has_an_async_twin() {
    let (async_api, blocking_api) = apis();
    for (ty, methods) in &blocking_api {
        assert!(
            async_api.contains_key(ty),
            "blocking::{ty} has no async type of that name"
        );
        for m in methods {
            assert!(!m.is_async, "blocking::{ty}::{} is async", m.name);
        }
    }
}

#[test]
fn every_allowed_exception_names_a_real_async_method() {
    let (async_api, _) = apis();
    for (ty, name, reason) in ALLOWED {
        assert!(!reason.is_empty());
        assert!(
            async_api
                .get(*ty)
                .is_some_and(|m| m.iter().any(|m| m.name == *name)),
            "ALLOWED names {ty}::{name}, which is not a public method any more"
        );
    }
}

#[test]
fn a_missing_twin_is_found() {
    let mut async_api = Api::new();
    scan(
        "impl Widget {\n    pub async fn spin(&self) {}\n    pub fn size(&self) -> u8 {\n        1\n    }\n}\n\
         impl<'a> Gadget<'a> {\n    pub async fn next(&mut self) {}\n}\n\
         impl std::fmt::Debug for Widget {\n    pub fn ignored() {}\n}\n",
        &mut async_api,
    );
    let mut blocking_api = Api::new();
    scan(
        "impl Widget {\n    forward! {\n        size(x: u8);\n    }\n    getters! {\n        colour -> u8;\n    }\n}\n",
        &mut blocking_api,
    );
    assert_eq!(
        missing(&async_api, &blocking_api),
        vec![
            "Gadget (no blocking type; has async fn next)".to_string(),
            "Widget::spin".to_string(),
        ]
    );
    assert!(blocking_api["Widget"].contains(&Method {
        name: "colour".into(),
        is_async: false
    }));
    assert!(!async_api["Widget"].iter().any(|m| m.name == "ignored"));
}
