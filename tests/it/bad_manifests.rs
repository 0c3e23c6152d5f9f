//! The bad-manifest corpus: each `tests/bad/NAME.yml` must be rejected with
//! exactly the errors in `NAME.expected` (`LINE:COL: message` lines, then the
//! count), exit status 1, and nothing on standard output.

use crate::util;

use std::path::Path;

#[test]
fn every_bad_manifest_gets_its_expected_errors() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/bad");
    let mut cases: Vec<_> = std::fs::read_dir(&dir)
        .expect("tests/bad exists")
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "yml"))
        .collect();
    cases.sort();
    assert!(cases.len() >= 30, "the corpus has {} cases", cases.len());
    let mut failures = Vec::new();
    for case in &cases {
        let name = case
            .file_name()
            .and_then(|n| n.to_str())
            .expect("utf-8 name");
        let expected = std::fs::read_to_string(case.with_extension("expected"))
            .unwrap_or_else(|_| panic!("{name} has no .expected file"));
        let run = util::hull_in(&dir, &["validate", name], &[]);
        let prefix = format!("{name}:");
        let got: String = run
            .stderr
            .strip_prefix("error: ")
            .unwrap_or(&run.stderr)
            .lines()
            .map(|l| l.strip_prefix(&prefix).unwrap_or(l))
            .map(|l| format!("{l}\n"))
            .collect();
        if run.code != Some(1) || !run.stdout.is_empty() || got != expected {
            failures.push(format!(
                "{name}: exit {:?}, stdout {:?}\n--- expected\n{expected}--- got\n{got}",
                run.code, run.stdout
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn errors_of_several_files_come_in_command_line_order() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/bad");
    let run = util::hull_in(
        &dir,
        &[
            "validate",
            "12-unknown-capability.yml",
            "05-command-not-a-list.yml",
        ],
        &[],
    )
    .expect_code(1);
    let lines: Vec<&str> = run.stderr.lines().collect();
    assert_eq!(
        lines,
        vec![
            "error: 12-unknown-capability.yml:6:9: capabilities: unknown capability \"CAP_NET_ADMN\", did you mean \"CAP_NET_ADMIN\"?",
            "05-command-not-a-list.yml:4:14: command: expected a list, found a string",
            "2 errors in the manifest",
        ]
    );
}
