//! `blocking_twin!`: a module of carrot's tests compiled a second time against
//! `carrot::blocking`, from the same source (see `rewrite` for what changes).
//!
//! ```text
//! blocking_twin! {
//!     mod seed_api = "tests/conformance/seed_api.rs";
//!     async_only {
//!         consumer_set_qos_bounds_each_consumer: "why it has no blocking twin",
//!     }
//! }
//! ```
//!
//! expands to `mod seed_api { include!("<twin>"); }`, where the twin is written under the
//! test's `CARGO_TARGET_TMPDIR` (only when it changed), line for line with the source, so
//! that a compile error in the twin points at the line it comes from. The source is also
//! `include_bytes!`ed, so that cargo rebuilds the twin when it changes. The including crate
//! has a module `api` (what `carrot::` becomes) and the support the scenarios use.

mod lex;
mod rewrite;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use proc_macro::{Delimiter, TokenStream, TokenTree};

/// See the crate documentation.
#[proc_macro]
pub fn blocking_twin(input: TokenStream) -> TokenStream {
    match expand(input) {
        Ok(tokens) => tokens,
        Err(message) => format!("compile_error!({message:?});")
            .parse()
            .unwrap_or_default(),
    }
}

/// What the invocation says.
struct Invocation {
    module: String,
    source: String,
    async_only: BTreeSet<String>,
}

fn parse(input: TokenStream) -> Result<Invocation, String> {
    let usage = "expected `mod NAME = \"tests/PATH.rs\"; async_only { scenario: \"reason\", ... }`";
    let tokens: Vec<TokenTree> = input.into_iter().collect();
    let (module, source) = match tokens.as_slice() {
        [TokenTree::Ident(m), TokenTree::Ident(name), TokenTree::Punct(eq), TokenTree::Literal(path), TokenTree::Punct(semi), ..]
            if m.to_string() == "mod" && eq.as_char() == '=' && semi.as_char() == ';' =>
        {
            let path = path.to_string();
            let path = path
                .strip_prefix('"')
                .and_then(|p| p.strip_suffix('"'))
                .ok_or(usage)?;
            (name.to_string(), path.to_string())
        }
        _ => return Err(usage.into()),
    };
    let mut async_only = BTreeSet::new();
    match &tokens[5..] {
        [] => {}
        [TokenTree::Ident(kw), TokenTree::Group(list)]
            if kw.to_string() == "async_only" && list.delimiter() == Delimiter::Brace =>
        {
            let entries: Vec<TokenTree> = list.stream().into_iter().collect();
            for entry in entries.split(|t| matches!(t, TokenTree::Punct(p) if p.as_char() == ',')) {
                match entry {
                    [] => {}
                    [TokenTree::Ident(name), TokenTree::Punct(colon), TokenTree::Literal(reason)]
                        if colon.as_char() == ':' && reason.to_string().len() > 2 =>
                    {
                        async_only.insert(name.to_string());
                    }
                    _ => {
                        return Err(format!(
                            "{usage}: each async-only scenario needs its reason"
                        ))
                    }
                }
            }
        }
        _ => return Err(usage.into()),
    }
    Ok(Invocation {
        module,
        source,
        async_only,
    })
}

fn env_path(var: &str) -> Result<PathBuf, String> {
    std::env::var_os(var)
        .map(PathBuf::from)
        .ok_or_else(|| format!("{var} is not set: blocking_twin! runs in an integration test"))
}

/// Writes `text` to `path` unless it holds it already (atomically: tests, clippy and docs may
/// build at once).
fn write_if_changed(path: &Path, text: &str) -> Result<(), String> {
    if std::fs::read_to_string(path).is_ok_and(|old| old == text) {
        return Ok(());
    }
    let dir = path.parent().ok_or("no folder for the twin")?;
    std::fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    let temporary = path.with_extension(format!("rs.{}", std::process::id()));
    std::fs::write(&temporary, text)
        .and_then(|()| std::fs::rename(&temporary, path))
        .map_err(|e| format!("cannot write {}: {e}", path.display()))
}

fn expand(input: TokenStream) -> Result<TokenStream, String> {
    let invocation = parse(input)?;
    let source_path = env_path("CARGO_MANIFEST_DIR")?.join(&invocation.source);
    let source = std::fs::read_to_string(&source_path)
        .map_err(|e| format!("cannot read {}: {e}", source_path.display()))?;
    let twin = rewrite::twin(&source, &invocation.async_only).map_err(|errors| {
        format!(
            "no blocking twin of {}:\n{}",
            invocation.source,
            errors.join("\n")
        )
    })?;
    let twin_path = env_path("CARGO_TARGET_TMPDIR")?
        .join("blocking-twin")
        .join(&invocation.source);
    write_if_changed(&twin_path, &twin)?;
    format!(
        "#[allow(unused_imports, dead_code, clippy::all)] mod {} {{ const _SOURCE: &[u8] = include_bytes!({:?}); include!({:?}); }}",
        invocation.module,
        source_path.display().to_string(),
        twin_path.display().to_string(),
    )
    .parse()
    .map_err(|e| format!("{e:?}"))
}
