//! The `hull` command line: help, completions, man page, merging, exit codes.

use crate::util;

use serde_json::Value;

fn write(dir: &std::path::Path, name: &str, text: &str) {
    std::fs::write(dir.join(name), text).expect("write fixture");
}

#[test]
fn help_shows_an_example_for_every_command() {
    let top = util::hull(&["--help"]).expect_code(0);
    assert!(top.stdout.contains("Examples:"), "{}", top.stdout);
    for cmd in ["validate", "completions", "man"] {
        assert!(top.stdout.contains(cmd), "top-level help lists {cmd}");
        let run = util::hull(&[cmd, "--help"]).expect_code(0);
        assert!(
            run.stdout.contains("Example") && run.stdout.contains(&format!("hull {cmd}")),
            "hull {cmd} --help has no example:\n{}",
            run.stdout
        );
    }
    let run = util::hull(&["--help"]).expect_code(0);
    for flag in ["--cache", "--verbose", "--quiet"] {
        assert!(run.stdout.contains(flag), "global flag {flag} missing");
    }
}

#[test]
fn completions_and_man_page_come_from_the_cli_definition() {
    let bash = util::hull(&["completions", "bash"]).expect_code(0);
    assert!(bash.stdout.contains("_hull()"), "{}", bash.stdout);
    assert!(bash.stdout.contains("validate"));
    assert!(bash.stdout.contains("--cache"));
    let zsh = util::hull(&["completions", "zsh"]).expect_code(0);
    assert!(zsh.stdout.starts_with("#compdef hull"), "{}", zsh.stdout);
    let fish = util::hull(&["completions", "fish"]).expect_code(0);
    assert!(fish.stdout.contains("complete -c hull"));
    let bad = util::hull(&["completions", "tcsh"]).expect_code(2);
    assert!(bad.stderr.contains("invalid value"), "{}", bad.stderr);
    let man = util::hull(&["man"]).expect_code(0);
    assert!(man.stdout.contains(".TH hull"), "{}", man.stdout);
    assert!(man.stdout.contains("validate"));
}

#[test]
fn several_files_merge_like_linuxkit() {
    let tmp = tempfile::tempdir().expect("temp dir");
    write(
        tmp.path(),
        "base.yml",
        "kernel:\n  image: example.org/kernel:1\n  cmdline: console=ttyS0\n  ucode: intel-ucode.cpio\n\
         init:\n  - example.org/init:1\nservices:\n  - name: web\n    image: nginx:1.27\n",
    );
    write(
        tmp.path(),
        "extra.yml",
        "kernel:\n  image: example.org/kernel:2\n  cmdline: \"\"\n  ucode: \"\"\n\
         init:\n  - example.org/extra:1\nservices:\n  - name: sshd\n    image: example.org/sshd:1\n    restart: always\n",
    );
    let run = util::hull_in(
        tmp.path(),
        &["validate", "--json", "base.yml", "extra.yml"],
        &[],
    )
    .expect_code(0);
    let m: Value = serde_json::from_str(&run.stdout).expect("json");
    // image: last non-empty wins; cmdline: an empty value does not override;
    // ucode: set at all (even empty) overrides, so microcode is turned off.
    assert_eq!(m["kernel"]["image"], "example.org/kernel:2");
    assert_eq!(m["kernel"]["cmdline"], "console=ttyS0");
    assert_eq!(m["kernel"]["ucode"], "");
    assert_eq!(
        m["init"],
        serde_json::json!(["example.org/init:1", "example.org/extra:1"])
    );
    let names: Vec<&str> = m["services"]
        .as_array()
        .expect("services")
        .iter()
        .filter_map(|s| s["name"].as_str())
        .collect();
    assert_eq!(names, ["web", "sshd"]);
    assert_eq!(m["services"][1]["restart"], "always");

    // The same name in two files is a duplicate of the merged manifest.
    write(
        tmp.path(),
        "dup.yml",
        "services:\n  - name: web\n    image: caddy:2\n",
    );
    let run = util::hull_in(tmp.path(), &["validate", "base.yml", "dup.yml"], &[]).expect_code(1);
    assert!(
        run.stderr.contains(
            "dup.yml:2:11: name: duplicate services name \"web\" (first used at base.yml:8:11)"
        ),
        "{}",
        run.stderr
    );
    assert!(run.stdout.is_empty());
}

#[test]
fn summary_warnings_quiet_and_stdin() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let text = "kernel:\n  image: example.org/kernel:1\ntrust:\n  org:\n    - linuxkit\n";
    write(tmp.path(), "t.yml", text);
    let run = util::hull_in(tmp.path(), &["validate", "t.yml"], &[]).expect_code(0);
    assert_eq!(
        run.stdout,
        "t.yml: valid: kernel example.org/kernel:1, 0 init, 0 onboot, 0 onshutdown, 0 services, 0 files, 0 volumes\n"
    );
    assert!(
        run.stderr.contains("t.yml:4:3: warning: trust: ignored"),
        "{}",
        run.stderr
    );
    let quiet = util::hull_in(tmp.path(), &["--quiet", "validate", "t.yml"], &[]).expect_code(0);
    assert!(quiet.stdout.is_empty() && quiet.stderr.is_empty());
    let piped = util::hull_stdin(&["validate", "--json", "-"], text, tmp.path()).expect_code(0);
    let m: Value = serde_json::from_str(&piped.stdout).expect("json");
    assert_eq!(m["trust"]["org"][0], "linuxkit");
}

#[test]
fn unreadable_file_is_an_error_naming_it() {
    let run = util::hull(&["validate", "/nonexistent/hull.yml"]).expect_code(1);
    assert!(
        run.stderr
            .contains("cannot read manifest /nonexistent/hull.yml"),
        "{}",
        run.stderr
    );
    assert!(run.stderr.contains("No such file"), "{}", run.stderr);
}

#[test]
fn cache_flag_and_verbosity_are_global() {
    let tmp = tempfile::tempdir().expect("temp dir");
    write(tmp.path(), "m.yml", "init:\n  - example.org/init:1\n");
    util::hull_in(
        tmp.path(),
        &["validate", "m.yml", "--cache", "c", "-vv"],
        &[],
    )
    .expect_code(0);
    let both = util::hull_in(tmp.path(), &["-v", "--quiet", "validate", "m.yml"], &[]);
    assert_eq!(both.code, Some(2), "--verbose and --quiet conflict");
    // Validation writes nothing, not even the cache directory.
    assert!(!tmp.path().join("c").exists());
}
