//! A manifest using every field (tests/fixtures/all-fields.yml) validates, and
//! `--json` gives back what an independent YAML parser reads from it, with
//! Hull's normalizations (rlimit names, durations) on top.

use crate::util;

use std::path::Path;

use serde_json::Value;

fn strip(v: &mut Value, key: &str) {
    match v {
        Value::Object(o) => {
            o.remove(key);
            o.values_mut().for_each(|x| strip(x, key));
        }
        Value::Array(a) => a.iter_mut().for_each(|x| strip(x, key)),
        _ => {}
    }
}

fn strings(v: Value) -> Value {
    match v {
        Value::Bool(b) => Value::String(b.to_string()),
        Value::Number(n) => Value::String(n.to_string()),
        Value::Array(a) => Value::Array(a.into_iter().map(strings).collect()),
        Value::Object(o) => Value::Object(o.into_iter().map(|(k, v)| (k, strings(v))).collect()),
        other => other,
    }
}

#[test]
fn every_field_round_trips() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    let run = util::hull_in(&dir, &["validate", "--json", "all-fields.yml"], &[]).expect_code(0);
    let ours: Value = serde_json::from_str(&run.stdout).expect("json");

    let svc = &ours["services"][0];
    assert_eq!(svc["rlimits"][0], "RLIMIT_NOFILE,1024,4096");
    assert_eq!(svc["rlimits"][1], "RLIMIT_CORE,0,unlimited");
    assert_eq!(svc["uid"], "web");
    assert_eq!(svc["gid"], 100);
    assert_eq!(svc["additionalGids"], serde_json::json!([101, "sysctl"]));
    assert_eq!(svc["restart"], "always");
    assert_eq!(svc["resources"]["memory"]["limit"], 134217728);
    assert_eq!(svc["runtime"]["bindNS"]["net"], "/run/netns/web");
    assert_eq!(ours["onboot"][0]["timeout"], "120s");
    assert_eq!(ours["onshutdown"][0]["timeout"], "15s");
    assert_eq!(ours["onboot"][0]["sysctl"]["net.ipv4.ip_forward"], "1");

    let text = std::fs::read_to_string(dir.join("all-fields.yml")).expect("read");
    let mut theirs: Value = serde_yaml::from_str(&text).expect("serde_yaml reads it");
    let mut ours = ours;
    for v in [&mut ours, &mut theirs] {
        strip(v, "timeout");
        strip(v, "rlimits");
    }
    assert_eq!(strings(ours), strings(theirs));
}
