//! The server's top-level modules form layers, and imports run one way: down. Reads every
//! source file and checks each `crate::<module>` path in code (comments aside) against the
//! layer table, so an import that would make a cycle fails here, not in review.

use std::collections::BTreeSet;
use std::path::Path;

/// Top-level modules by layer, top first. A module may use modules of lower layers only.
const LAYERS: &[&[&str]] = &[
    &["lib", "startup"],
    &["http", "jobs"],
    &["service"],
    &["state", "resources"],
    &["shared", "gallery", "inference", "outage"],
    &["observability"],
    &["config"],
];

fn layer_of(module: &str) -> usize {
    LAYERS
        .iter()
        .position(|layer| layer.contains(&module))
        .unwrap_or_else(|| panic!("top-level module `{module}` is missing from LAYERS"))
}

fn rust_files(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The modules a line of code names as `crate::<module>`.
fn named_modules(line: &str) -> Vec<String> {
    let code = line.split("//").next().unwrap_or_default();
    code.match_indices("crate::")
        .filter(|(at, _)| !code[..*at].ends_with(|c: char| c.is_alphanumeric() || c == '_'))
        .map(|(at, _)| {
            code[at + "crate::".len()..]
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect::<String>()
        })
        .filter(|m| !m.is_empty() && m.chars().next().is_some_and(|c| c.is_lowercase()))
        .collect()
}

#[test]
fn imports_run_down_the_layers_and_never_back() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let mut wrong = BTreeSet::new();
    for file in &files {
        let relative = file.strip_prefix(&src).unwrap();
        let first = relative.components().next().unwrap().as_os_str().to_string_lossy().into_owned();
        let module = first.trim_end_matches(".rs").to_owned();
        let own = layer_of(&module);
        for line in std::fs::read_to_string(file).unwrap().lines() {
            for used in named_modules(line) {
                if used != module && layer_of(&used) <= own && module != "lib" {
                    wrong.insert(format!("{} uses crate::{used}", relative.display()));
                }
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "imports against the layers:\n{}",
        wrong.into_iter().collect::<Vec<_>>().join("\n")
    );
    // Every top-level module is in the table (and so checked).
    for entry in std::fs::read_dir(&src).unwrap() {
        let name = entry.unwrap().file_name().to_string_lossy().trim_end_matches(".rs").to_owned();
        layer_of(&name);
    }
}

#[test]
fn the_check_sees_an_upward_import() {
    assert_eq!(named_modules("use crate::state::{App, AppState}; // crate::http"), ["state"]);
    assert!(named_modules("visage_crate::x").is_empty());
    assert!(layer_of("service") < layer_of("state"), "state lies below service");
}
