//! Golden tests of the image contract: every container of
//! `tests/fixtures/all-fields.yml` (and a bare entry) turned into its
//! `config.json` and `runtime.json`, compared byte for byte with the files in
//! `tests/fixtures/contract/`. `HULL_BLESS=1 cargo test golden` rewrites them
//! after a deliberate change of the contract.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::{allocate_ids, canonical_json, merge, runtime_json, runtime_spec, ImageDefaults};
use hull_contract::Section;

use crate::manifest::values::Id;
use crate::manifest::{Image, ImageConfig};

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

/// An image config such as a package build writes.
fn image_defaults() -> ImageDefaults {
    ImageDefaults {
        entrypoint: Some(vec!["/bin/entry".into()]),
        cmd: Some(vec!["--flag".into()]),
        env: Some(vec!["PATH=/bin".into(), "LANG=C".into()]),
        working_dir: Some("/work".into()),
        user: Some("7:8".into()),
        labels: None,
    }
}

/// A label as LinuxKit's packages carry.
fn label() -> ImageConfig {
    crate::manifest::parse_label(
        "example/label",
        r#"{"capabilities":["CAP_CHOWN"],"binds":["/etc:/host/etc:ro"],"readonly":true,"restart":"no"}"#,
    )
    .expect("label parses")
}

fn check(name: &str, bytes: &[u8], failures: &mut Vec<String>) {
    let path = fixtures().join("contract").join(name);
    if std::env::var_os("HULL_BLESS").is_some() {
        std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
        std::fs::write(&path, bytes).expect("write golden");
        return;
    }
    let want = std::fs::read(&path).unwrap_or_default();
    if want != bytes {
        failures.push(format!(
            "{name} differs from {}:\n{}",
            path.display(),
            String::from_utf8_lossy(bytes)
        ));
    }
}

fn entries() -> Vec<(Section, Image)> {
    let loaded = crate::manifest::load_files(&[fixtures().join("all-fields.yml")])
        .expect("all-fields.yml loads");
    let m = loaded.manifest;
    let mut out = Vec::new();
    for (section, list) in [
        (Section::Onboot, &m.onboot),
        (Section::Onshutdown, &m.onshutdown),
        (Section::Services, &m.services),
    ] {
        for e in list.iter().flatten() {
            out.push((section, e.clone()));
        }
    }
    out
}

#[test]
fn golden_config_and_runtime_for_every_field() {
    let ids = allocate_ids(&["web".to_string(), "sysctl".to_string()]);
    let mut failures = Vec::new();
    let mut cases: Vec<(String, Section, ImageConfig, ImageConfig, ImageDefaults)> = entries()
        .into_iter()
        .map(|(section, e)| {
            let name = e.name.as_ref().map(|n| n.value.clone()).unwrap_or_default();
            (
                name,
                section,
                ImageConfig::default(),
                e.config,
                ImageDefaults::default(),
            )
        })
        .collect();
    cases.push((
        "bare".into(),
        Section::Services,
        ImageConfig::default(),
        ImageConfig::default(),
        ImageDefaults::default(),
    ));
    cases.push((
        "labelled".into(),
        Section::Onboot,
        label(),
        ImageConfig::default(),
        image_defaults(),
    ));
    for (name, section, label, entry, defaults) in cases {
        let settings = merge(&label, &entry);
        let spec = runtime_spec(&name, &settings, &defaults, &ids).expect("spec");
        let config = canonical_json(&spec).expect("config.json");
        check(
            &format!("{section}-{name}.config.json"),
            &config,
            &mut failures,
        );
        let runtime = runtime_json(&settings, section, "/containers/images/0123")
            .to_json()
            .expect("runtime.json");
        check(
            &format!("{section}-{name}.runtime.json"),
            &runtime,
            &mut failures,
        );
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

#[test]
fn ids_are_allocated_in_name_order_from_100() {
    let ids: BTreeMap<String, u32> = allocate_ids(&["b".into(), "a".into(), "b".into()]);
    assert_eq!(ids.get("a"), Some(&100));
    assert_eq!(ids.get("b"), Some(&101));
    let _ = Id::Number(0);
}
