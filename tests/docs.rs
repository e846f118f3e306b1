//! The guides stay true to the binary: every setting it reads is in the configuration
//! reference, and every guide the README links to exists.

#![expect(
    clippy::unwrap_used,
    reason = "a source tree that cannot be read should fail the test loudly"
)]

use std::path::Path;

fn read(relative: &str) -> String {
    std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join(relative)).unwrap()
}

/// Whether `text` is a setting's name: capitals, digits and underscores, with at least one
/// underscore or one of the few single-word settings.
fn is_setting_name(text: &str) -> bool {
    !text.is_empty()
        && text.starts_with(|c: char| c.is_ascii_uppercase())
        && text
            .chars()
            .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_')
        && (text.contains('_') || text == "DEBUG")
}

/// The string literals of `code` (outside its tests) passed to the calls that read a
/// setting: the configuration's `env.get("NAME")`, `env.secret("NAME", "NAME_FILE")`, … and
/// `std::env::var("NAME")`.
fn settings_read(code: &str) -> Vec<String> {
    let code = code.split("#[cfg(test)]").next().unwrap_or_default();
    let mut names = Vec::new();
    // `env.get(`, `env.secret(`, …: a lowercase method name between the reader and `(`.
    for (reader, named_method) in [("env.", true), ("std::env::var(", false)] {
        let mut from = 0;
        while let Some(found) = code[from..].find(reader) {
            let start = from + found + reader.len();
            from = start;
            let arguments = if named_method {
                let Some(open) = code[start..].find('(') else {
                    break;
                };
                let method = &code[start..start + open];
                if !method.chars().all(|c| c.is_ascii_lowercase() || c == '_') {
                    continue;
                }
                &code[start + open + 1..]
            } else {
                &code[start..]
            };
            let end = arguments.find(')').unwrap_or(arguments.len());
            for (n, piece) in arguments[..end].split('"').enumerate() {
                // Odd pieces are inside quotes.
                if n % 2 == 1 && is_setting_name(piece) {
                    names.push(piece.to_owned());
                }
            }
        }
    }
    names.sort();
    names.dedup();
    names
}

#[test]
fn every_setting_the_binary_reads_is_in_the_configuration_reference() {
    let reference = read("docs/configuration.md");
    let mut read_by_binary = settings_read(&read("src/config.rs"));
    read_by_binary.extend(settings_read(&read("src/main.rs")));
    assert!(
        read_by_binary.len() > 50,
        "the scan found too few settings to be reading the configuration: {read_by_binary:?}"
    );
    let missing: Vec<&String> = read_by_binary
        .iter()
        .filter(|name| !reference.contains(&format!("`{name}`")))
        .collect();
    assert!(
        missing.is_empty(),
        "settings the binary reads that docs/configuration.md does not name: {missing:#?}"
    );
}

#[test]
fn every_guide_the_readme_links_to_exists() {
    let readme = read("README.md");
    let guides: Vec<&str> = readme
        .split("](")
        .skip(1)
        .filter_map(|rest| rest.split(')').next())
        .filter(|target| target.starts_with("docs/"))
        .collect();
    for guide in [
        "docs/api.md",
        "docs/tokens-for-services.md",
        "docs/django-cutover.md",
        "docs/configuration.md",
        "docs/operating.md",
    ] {
        assert!(
            guides.contains(&guide),
            "the README does not link to {guide}"
        );
    }
    for guide in guides {
        let path = guide.split('#').next().unwrap_or(guide);
        assert!(
            Path::new(env!("CARGO_MANIFEST_DIR")).join(path).is_file(),
            "the README links to {guide}, which does not exist"
        );
    }
}
