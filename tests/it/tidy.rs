//! Tidy checks on the source tree: the layering of ARCHITECTURE.md, sled kept inside
//! `store/`, and a library without the frontends' crates.
//!
//! The layering: each top-level module of `src/` has a layer (the table below, drawn in
//! ARCHITECTURE.md); a module may name (`crate::x` in code, not in comments) modules of
//! lower layers and modules of its own layer, as long as the modules of one layer name
//! each other without a cycle. A module that is in no layer fails the check until it is
//! given one.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};

use crate::TestResult;

/// Top-level module → layer, bottom up. `rng` is a leaf utility; `lib` re-exports and
/// `fuzzing` and `testing` drive every layer, so they sit on top; `bin` (the crash
/// child) uses only the public API.
const LAYERS: &[(&str, u32)] = &[
    ("rng", 0),
    ("model", 0),
    ("store", 1),
    ("index", 2),
    ("engine", 3),
    ("ops", 4),
    ("query", 4),
    ("snapshot", 4),
    ("formats", 4),
    ("rules", 5),
    ("learn", 5),
    ("production", 5),
    ("workflow", 6),
    ("access", 7),
    ("demo", 8),
    ("fuzzing", 8),
    ("testing", 8),
    ("lib", 9),
    ("bin", 10),
];

/// Crates the library must not depend on: the frontends' and the benchmarks'.
const NOT_IN_LIBRARY: &[&str] = &["clap", "anyhow", "indicatif", "mimalloc", "rusqlite", "criterion"];

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) -> std::io::Result<()> {
    for entry in fs::read_dir(dir)? {
        let path = entry?.path();
        if path.is_dir() {
            rust_files(&path, out)?;
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
    Ok(())
}

/// The top-level module a file of `src/` belongs to (`src/index/text.rs` → `index`).
fn module_of(src: &Path, file: &Path) -> String {
    let rel = file.strip_prefix(src).expect("a file under src/");
    let first = rel.components().next().expect("a path").as_os_str().to_string_lossy();
    first.trim_end_matches(".rs").to_string()
}

/// The code of a file without its comments (line comments, doc comments and block
/// comments; string literals are kept, which only makes the check stricter).
fn code_of(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut depth = 0usize;
    for line in text.lines() {
        let mut rest = line;
        let mut kept = String::new();
        loop {
            if depth > 0 {
                match (rest.find("/*"), rest.find("*/")) {
                    (Some(o), Some(c)) if o < c => {
                        depth += 1;
                        rest = &rest[o + 2..];
                    }
                    (_, Some(c)) => {
                        depth -= 1;
                        rest = &rest[c + 2..];
                    }
                    _ => break,
                }
                continue;
            }
            match (rest.find("//"), rest.find("/*")) {
                (Some(l), b) if b.is_none_or(|b| l < b) => {
                    kept.push_str(&rest[..l]);
                    break;
                }
                (_, Some(b)) => {
                    kept.push_str(&rest[..b]);
                    depth += 1;
                    rest = &rest[b + 2..];
                }
                _ => {
                    kept.push_str(rest);
                    break;
                }
            }
        }
        out.push_str(&kept);
        out.push('\n');
    }
    out
}

/// Every top-level module that code names through `crate::` (`crate::index::text`,
/// `crate::{model::asset, store}`); a name starting upper-case is a re-export of the
/// crate root, which counts as naming `lib`.
fn named_modules(code: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut rest = code;
    while let Some(i) = rest.find("crate::") {
        let before = rest[..i].chars().next_back();
        rest = &rest[i + "crate::".len()..];
        if before.is_some_and(|c| c.is_alphanumeric() || c == '_') {
            continue; // `labeldb_crate::` or the like
        }
        let names: Vec<&str> = if let Some(group) = rest.strip_prefix('{') {
            let end = group.find('}').unwrap_or(group.len());
            group[..end].split(',').collect()
        } else {
            vec![rest]
        };
        for name in names {
            let ident: String = name
                .trim_start()
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect();
            if ident.is_empty() {
                continue;
            }
            if ident.starts_with(|c: char| c.is_uppercase()) {
                out.insert("lib".to_string());
            } else {
                out.insert(ident);
            }
        }
    }
    out
}

/// Top-level module → the modules it names, and which of its files name each.
type Graph = BTreeMap<String, BTreeMap<String, BTreeSet<String>>>;

fn graph(src: &Path) -> Result<Graph, Box<dyn std::error::Error>> {
    let mut files = Vec::new();
    rust_files(src, &mut files)?;
    let mut g = Graph::new();
    for file in files {
        let from = module_of(src, &file);
        let code = code_of(&fs::read_to_string(&file)?);
        let rel = file.strip_prefix(src)?.display().to_string();
        let entry = g.entry(from.clone()).or_default();
        for to in named_modules(&code) {
            if to != from {
                entry.entry(to).or_default().insert(rel.clone());
            }
        }
    }
    Ok(g)
}

/// Edges that point to a higher layer, and modules in no layer.
fn layering_violations(g: &Graph) -> Vec<String> {
    let layer: BTreeMap<&str, u32> = LAYERS.iter().copied().collect();
    let mut out = Vec::new();
    for (from, edges) in g {
        let Some(&lf) = layer.get(from.as_str()) else {
            out.push(format!(
                "src/{from} is in no layer: give it one in tests/it/tidy.rs and ARCHITECTURE.md"
            ));
            continue;
        };
        for (to, files) in edges {
            match layer.get(to.as_str()) {
                Some(&lt) if lt <= lf => {}
                Some(&lt) => out.push(format!(
                    "{from} (layer {lf}) names {to} (layer {lt}) in {}",
                    files.iter().cloned().collect::<Vec<_>>().join(", ")
                )),
                None => out.push(format!("{from} names crate::{to}, which is no module in a layer")),
            }
        }
    }
    out
}

/// A cycle among the modules, if there is one, as `a -> b -> a`.
fn cycle(g: &Graph) -> Option<Vec<String>> {
    fn visit(g: &Graph, n: &str, path: &mut Vec<String>, done: &mut BTreeSet<String>) -> Option<Vec<String>> {
        if let Some(i) = path.iter().position(|p| p == n) {
            let mut c = path[i..].to_vec();
            c.push(n.to_string());
            return Some(c);
        }
        if done.contains(n) {
            return None;
        }
        path.push(n.to_string());
        for next in g.get(n).into_iter().flat_map(|e| e.keys()) {
            if let Some(c) = visit(g, next, path, done) {
                return Some(c);
            }
        }
        path.pop();
        done.insert(n.to_string());
        None
    }
    let mut done = BTreeSet::new();
    g.keys().find_map(|n| visit(g, n, &mut Vec::new(), &mut done))
}

#[test]
fn modules_name_only_lower_layers_and_form_no_cycle() -> TestResult {
    let g = graph(&root().join("src"))?;
    let violations = layering_violations(&g);
    assert!(violations.is_empty(), "layering:\n{}", violations.join("\n"));
    if let Some(c) = cycle(&g) {
        panic!("a dependency cycle among modules: {}", c.join(" -> "));
    }
    Ok(())
}

#[test]
fn sled_is_named_only_inside_store() -> TestResult {
    let src = root().join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files)?;
    let mut outside = Vec::new();
    for file in files {
        if file.starts_with(src.join("store")) {
            continue;
        }
        let code = code_of(&fs::read_to_string(&file)?);
        if code.contains("sled::") {
            outside.push(file.strip_prefix(root())?.display().to_string());
        }
    }
    assert!(outside.is_empty(), "sled:: outside src/store/: {outside:?}");
    Ok(())
}

#[test]
fn the_library_does_not_depend_on_frontend_or_bench_crates() -> TestResult {
    let manifest = fs::read_to_string(root().join("Cargo.toml"))?;
    let mut section = String::new();
    let mut found = Vec::new();
    for line in manifest.lines().map(str::trim) {
        if line.starts_with('[') {
            section = line.to_string();
            continue;
        }
        if section != "[dependencies]" {
            continue;
        }
        let name = line.split(['=', ' ', '.']).next().unwrap_or("");
        if NOT_IN_LIBRARY.contains(&name) {
            found.push(name.to_string());
        }
    }
    assert!(found.is_empty(), "the library depends on {found:?}");
    Ok(())
}

/// The checker itself: a back-edge, a cycle, a module in no layer and names in comments.
#[test]
fn the_layering_check_catches_what_it_should() {
    let code = code_of("use crate::engine::Db; // crate::access\n/* crate::workflow */ use crate::{model::x, Db};");
    assert_eq!(
        named_modules(&code),
        ["engine", "lib", "model"].iter().map(|s| s.to_string()).collect()
    );
    let edge = |from: &str, to: &str| {
        (
            from.to_string(),
            BTreeMap::from([(to.to_string(), BTreeSet::from(["f.rs".to_string()]))]),
        )
    };
    let back: Graph = [edge("store", "snapshot")].into_iter().collect();
    assert_eq!(layering_violations(&back).len(), 1);
    let unknown: Graph = [edge("widgets", "model")].into_iter().collect();
    assert_eq!(layering_violations(&unknown).len(), 1);
    let peers: Graph = [edge("query", "snapshot"), edge("snapshot", "query")]
        .into_iter()
        .collect();
    assert!(layering_violations(&peers).is_empty());
    assert_eq!(cycle(&peers).map(|c| c.len()), Some(3));
    let down: Graph = [edge("snapshot", "query"), edge("query", "index")]
        .into_iter()
        .collect();
    assert!(layering_violations(&down).is_empty());
    assert_eq!(cycle(&down), None);
}
