//! The layers' dependencies point one way: adapters (grpc, http) → services → {auth, email,
//! google} → storage → domain. This reads the sources and fails on an import against that
//! direction, naming the file and the line.

#![expect(
    clippy::unwrap_used,
    reason = "a source tree that cannot be read should fail the test loudly"
)]

use std::path::{Path, PathBuf};

/// Every `.rs` file under `dir`, or `dir` itself when it is a file.
fn sources(dir: &Path) -> Vec<PathBuf> {
    if dir.is_file() {
        return vec![dir.to_owned()];
    }
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            files.extend(sources(&path));
        } else if path.extension().is_some_and(|ext| ext == "rs") {
            files.push(path);
        }
    }
    files
}

/// The lines of the files under `layer` (relative to `src/`) that use any of `forbidden`
/// (module paths such as `crate::auth`), outside test modules.
fn violations(layer: &str, forbidden: &[&str]) -> Vec<String> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut found = Vec::new();
    for file in sources(&root.join(layer)) {
        let text = std::fs::read_to_string(&file).unwrap();
        // Everything after a file's first test module is test code.
        let code = text.split("#[cfg(test)]").next().unwrap_or_default();
        let mut in_crate_use = false;
        for (n, line) in code.lines().enumerate() {
            let trimmed = line.trim_start();
            // `use crate::{ auth::…, … };` names the module on a line of its own.
            if trimmed.starts_with("use crate::{") {
                in_crate_use = true;
            }
            let names = |module: &str| {
                let tail = module.trim_start_matches("crate::");
                trimmed.contains(module)
                    || (in_crate_use
                        && (trimmed.starts_with(&format!("{tail}::"))
                            || trimmed.starts_with(&format!("{tail},"))))
            };
            if let Some(module) = forbidden.iter().find(|module| names(module)) {
                found.push(format!(
                    "{}:{}: uses {module}",
                    file.strip_prefix(&root).unwrap().display(),
                    n + 1
                ));
            }
            if in_crate_use && trimmed.ends_with("};") {
                in_crate_use = false;
            }
        }
    }
    found
}

#[test]
fn storage_sees_only_the_domain() {
    let found = violations(
        "storage",
        &[
            "crate::auth",
            "crate::services",
            "crate::grpc",
            "crate::http",
        ],
    );
    assert!(found.is_empty(), "{found:#?}");
}

#[test]
fn configuration_depends_on_no_layer_that_reads_it() {
    let found = violations(
        "config.rs",
        &["crate::auth", "crate::services", "crate::storage"],
    );
    assert!(found.is_empty(), "{found:#?}");
}

#[test]
fn adapters_reach_storage_only_through_the_services() {
    for adapter in ["grpc", "http"] {
        let found = violations(adapter, &["crate::storage"]);
        assert!(found.is_empty(), "{found:#?}");
    }
}

/// The service layer's feature files: every `.rs` directly under `src/services` but `mod.rs`,
/// by module name, with the code before its first test module.
fn service_features() -> Vec<(String, String)> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/services");
    let mut features: Vec<(String, String)> = std::fs::read_dir(&root)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.is_file() && path.extension().is_some_and(|ext| ext == "rs"))
        .filter(|path| path.file_stem().is_some_and(|stem| stem != "mod"))
        .map(|path| {
            let text = std::fs::read_to_string(&path).unwrap();
            let code = text.split("#[cfg(test)]").next().unwrap_or_default();
            let name = path.file_stem().unwrap().to_string_lossy().into_owned();
            (name, code.to_owned())
        })
        .collect();
    features.sort();
    features
}

/// The methods a feature file defines that a sibling could call (`pub` or `pub(crate)`).
fn callable_methods(code: &str) -> Vec<String> {
    code.lines()
        .filter_map(|line| {
            let rest = line.trim_start();
            let rest = rest
                .strip_prefix("pub(crate) ")
                .or_else(|| rest.strip_prefix("pub "))?;
            let rest = rest.strip_prefix("async ").unwrap_or(rest);
            let name = rest.strip_prefix("fn ")?;
            let end = name.find(|c: char| !(c.is_alphanumeric() || c == '_'))?;
            Some(name[..end].to_owned())
        })
        .collect()
}

/// The names called as `self.name(` (across line breaks) or `Self::name(` in `code`.
fn calls_on_self(code: &str) -> Vec<(usize, String)> {
    let flat: String = code
        .chars()
        .map(|c| if c.is_whitespace() { ' ' } else { c })
        .collect();
    let line_of = |offset: usize| code[..offset].matches('\n').count() + 1;
    let mut calls = Vec::new();
    for (receiver, separator) in [("self", "."), ("Self", "::")] {
        let mut from = 0;
        while let Some(found) = flat[from..].find(receiver) {
            let at = from + found;
            from = at + receiver.len();
            let before_ok = !flat[..at].ends_with(|c: char| c.is_alphanumeric() || c == '_');
            let rest = flat[from..].trim_start();
            let Some(rest) = rest.strip_prefix(separator) else {
                continue;
            };
            let rest = rest.trim_start();
            let end = rest
                .find(|c: char| !(c.is_alphanumeric() || c == '_'))
                .unwrap_or(rest.len());
            if before_ok && end > 0 && rest[end..].starts_with('(') {
                calls.push((line_of(at), rest[..end].to_owned()));
            }
        }
    }
    calls
}

/// The first segment of each path a `use super::{ .. };` names directly (`core` for
/// `core::{access::Access, ..}`), with the line it starts on.
fn super_use_heads(code: &str) -> Vec<(usize, String)> {
    let mut heads = Vec::new();
    let mut from = 0;
    while let Some(found) = code[from..].find("use super::{") {
        let start = from + found + "use super::{".len();
        let line = code[..start].matches('\n').count() + 1;
        let mut depth = 1;
        let mut top_level = String::new();
        for c in code[start..].chars() {
            match c {
                '{' => depth += 1,
                '}' => depth -= 1,
                _ => {}
            }
            if depth == 0 {
                break;
            }
            if depth == 1 && c != '}' {
                top_level.push(c);
            }
        }
        from = start;
        for path in top_level.split(',') {
            let head = path.trim().split("::").next().unwrap_or_default();
            if !head.is_empty() {
                heads.push((line, head.to_owned()));
            }
        }
    }
    heads
}

#[test]
fn service_features_never_use_one_another() {
    let features = service_features();
    let mut found = Vec::new();
    for (name, code) in &features {
        let own = callable_methods(code);
        for (sibling, sibling_code) in features.iter().filter(|(other, _)| other != name) {
            for (line, head) in super_use_heads(code) {
                if head == *sibling {
                    found.push(format!("services/{name}.rs:{line}: uses {sibling}"));
                }
            }
            for (n, line) in code.lines().enumerate() {
                if line.contains(&format!("super::{sibling}::"))
                    || line.contains(&format!("services::{sibling}::"))
                {
                    found.push(format!("services/{name}.rs:{}: uses {sibling}", n + 1));
                }
            }
            let theirs = callable_methods(sibling_code);
            for (line, called) in calls_on_self(code) {
                if theirs.contains(&called) && !own.contains(&called) {
                    found.push(format!(
                        "services/{name}.rs:{line}: calls {sibling}'s {called}"
                    ));
                }
            }
        }
    }
    assert!(found.is_empty(), "feature files call siblings: {found:#?}");
}
