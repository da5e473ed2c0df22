//! The SDK wraps every function of the `wafer:ai` interfaces: a function
//! added to `host-apis/wit` without a wrapper here fails this test. (The
//! raw bindings are generated from the same WIT at compile time, so their
//! types cannot drift; this checks the ergonomic surface.)

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;

/// WIT functions a wrapper covers under another name.
const RENAMED: &[(&str, &str)] = &[];

fn wrappers(file: &str) -> String {
    std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("src").join(file)).unwrap()
}

#[test]
fn every_wafer_ai_function_has_a_wrapper() {
    let mut resolve = wit_parser::Resolve::default();
    let (package, _) = resolve
        .push_dir(Path::new(env!("CARGO_MANIFEST_DIR")).join("../../host-apis/wit"))
        .unwrap();
    let mut missing = Vec::new();
    let mut checked = 0;
    for (_, interface) in resolve.interfaces.iter().filter(|(_, i)| i.package == Some(package)) {
        let name = interface.name.clone().unwrap();
        let source = wrappers(&format!("{name}.rs"));
        for (wit_name, _) in &interface.functions {
            // `[method]tensor.matmul`, `[static]tensor.from-f32`, `infer`, ...
            let bare = wit_name.rsplit(['.', ']']).next().unwrap();
            if bare.is_empty() || wit_name.starts_with("[constructor]") {
                continue;
            }
            let rust = RENAMED
                .iter()
                .find(|(w, _)| *w == bare)
                .map_or(bare.replace('-', "_"), |(_, r)| (*r).to_owned());
            checked += 1;
            if !source.contains(&format!("pub fn {rust}(")) && !source.contains(&format!("fn {rust}(")) {
                missing.push(format!("{name}: {wit_name} (expected `fn {rust}` in src/{name}.rs)"));
            }
        }
    }
    assert!(checked > 20, "only {checked} functions found");
    assert!(
        missing.is_empty(),
        "functions without a wrapper:\n{}",
        missing.join("\n")
    );
}
