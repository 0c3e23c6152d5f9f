//! Every LinuxKit manifest in `../shared/linuxkit-yml` is accepted by
//! `hull validate`, except the few listed in `EXPECTED_FAILURES` (each also
//! listed in docs/manifest.md), which fail with exactly the documented message.
//!
//! The manifests refer to files that were not copied with them (see
//! tests/README.md); the test writes stand-ins beside them and under a fake
//! `$HOME`, as a user's checkout would have them. Each accepted manifest's
//! `--json` output is compared with the same file read by an independent YAML
//! parser (serde_yaml, a libyaml port like LinuxKit's).

use crate::util;

use std::path::{Path, PathBuf};

use serde_json::Value;

/// Manifests Hull rejects on purpose, and the error it gives.
const EXPECTED_FAILURES: &[(&str, &str)] = &[
    (
        // LinuxKit's own test of its validator: it must reject this file.
        "cases__000_build__091_validate_linuxkit_yaml__linuxkit.yml",
        ":1:1: unknown field \"unknownField\" in the manifest",
    ),
    (
        // A `#` comment at column 1 inside a `|` block scalar ends the block;
        // the next line is then not valid YAML (libyaml rejects it too).
        "examples__static-ip.yml",
        ":28:7: invalid YAML: while parsing a block mapping, did not find expected key",
    ),
];

/// Files the manifests read with `source:`, relative to the manifest.
const STAND_INS: &[&str] = &[
    "check.sh",
    "runtime-config.toml",
    "containerd-debug-runtime-config.toml",
];

fn corpus_dir() -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/linuxkit-yml");
    assert!(
        dir.is_dir(),
        "{} is missing: the tests need ../shared beside the checkout",
        dir.display()
    );
    dir
}

/// Copies the corpus into a temp dir with stand-ins; returns (dir, home, names).
fn prepare() -> (tempfile::TempDir, PathBuf, Vec<String>) {
    let tmp = tempfile::tempdir().expect("temp dir");
    let work = tmp.path().join("manifests");
    let home = tmp.path().join("home");
    std::fs::create_dir_all(&work).expect("mkdir");
    std::fs::create_dir_all(home.join(".ssh")).expect("mkdir");
    std::fs::write(home.join(".ssh/id_rsa.pub"), "ssh-ed25519 AAAA test\n").expect("write");
    for f in STAND_INS {
        std::fs::write(work.join(f), "#!/bin/sh\necho stand-in\n").expect("write");
    }
    let mut names = Vec::new();
    for entry in std::fs::read_dir(corpus_dir()).expect("read corpus") {
        let path = entry.expect("entry").path();
        if path.extension().is_some_and(|e| e == "yml") {
            let name = path
                .file_name()
                .and_then(|n| n.to_str())
                .expect("utf-8")
                .to_string();
            std::fs::copy(&path, work.join(&name)).expect("copy");
            names.push(name);
        }
    }
    names.sort();
    (tmp, home, names)
}

/// Scalars as strings, so Hull's typed values and the YAML text compare.
fn canonical(v: Value) -> Value {
    match v {
        Value::Null => Value::Null,
        Value::Bool(b) => Value::String(b.to_string()),
        Value::Number(n) => Value::String(n.to_string()),
        Value::String(s) => Value::String(s),
        Value::Array(a) => Value::Array(a.into_iter().map(canonical).collect()),
        Value::Object(o) => Value::Object(
            o.into_iter()
                .filter(|(_, v)| !v.is_null())
                .map(|(k, v)| (k, canonical(v)))
                .collect(),
        ),
    }
}

#[test]
fn linuxkit_manifests_validate_or_fail_as_documented() {
    let (tmp, home, names) = prepare();
    let work = tmp.path().join("manifests");
    let home = home.to_str().expect("utf-8 home");
    assert!(
        names.len() >= 50,
        "only {} manifests in the corpus",
        names.len()
    );
    let mut failures = Vec::new();
    let mut accepted = 0;
    for name in &names {
        let run = util::hull_in(&work, &["validate", "--json", name], &[("HOME", home)]);
        match EXPECTED_FAILURES.iter().find(|(n, _)| n == name) {
            Some((_, message)) => {
                let want = format!("error: {name}{message}");
                if run.code != Some(1) || !run.stderr.contains(&want) {
                    failures.push(format!("{name}: expected {want:?}, got {:?}", run.stderr));
                }
            }
            None => {
                if run.code != Some(0) {
                    failures.push(format!("{name}: {}", run.stderr));
                    continue;
                }
                accepted += 1;
                let ours: Value = serde_json::from_str(&run.stdout).expect("--json prints JSON");
                let text = std::fs::read_to_string(work.join(name)).expect("read");
                let theirs: Value = serde_yaml::from_str(&text).expect("serde_yaml reads it");
                if canonical(ours.clone()) != canonical(theirs.clone()) {
                    failures.push(format!(
                        "{name}: hull's reading differs from serde_yaml's\n--- hull\n{ours:#}\n--- serde_yaml\n{theirs:#}"
                    ));
                }
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
    assert_eq!(accepted, names.len() - EXPECTED_FAILURES.len());
}

#[test]
fn a_missing_stand_in_is_reported_at_its_source_line() {
    let (tmp, home, _) = prepare();
    let work = tmp.path().join("manifests");
    std::fs::remove_file(work.join("check.sh")).expect("rm");
    let run = util::hull_in(
        &work,
        &["validate", "cases__000_build__020_binds.yml"],
        &[("HOME", home.to_str().expect("utf-8"))],
    )
    .expect_code(1);
    assert!(
        run.stderr
            .contains("cases__000_build__020_binds.yml:23:13: source: ./check.sh does not exist"),
        "{}",
        run.stderr
    );
}
