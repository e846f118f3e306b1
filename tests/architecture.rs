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
