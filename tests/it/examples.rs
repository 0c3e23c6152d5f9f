//! Every manifest in examples/ validates (booting them: `boots::examples`).

use std::path::PathBuf;

use crate::util::{self, repo};

#[test]
fn examples_validate() {
    let mut examples: Vec<PathBuf> = std::fs::read_dir(repo().join("examples"))
        .expect("examples/")
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "yml"))
        .collect();
    examples.sort();
    assert!(examples.len() >= 5, "{examples:?}");
    for e in &examples {
        util::hull_in(&repo(), &["validate", e.to_str().expect("utf-8")], &[]).expect_code(0);
    }
}
