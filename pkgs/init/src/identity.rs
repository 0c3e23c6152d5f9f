//! A container's identity and capabilities, in runc's order: the bounding
//! set lowered first (while still root with CAP_SETPCAP effective: after a
//! change to a non-root uid the effective set is empty and the bounding set
//! can no longer be lowered), keep-caps, supplementary groups, gid, uid, then
//! the inheritable, effective and permitted sets, ambient last.
//!
//! Owns the order and the error of each step; the calls go through [`Ops`]
//! so that a unit test records what would be done, without root. Must not
//! decide the sets: `config.json` does.

use std::collections::HashSet;

use caps::{CapSet, Capability, CapsHashSet};
use oci_spec::runtime::Process;

use crate::container::SetupError;

/// The calls that change a process's identity.
pub trait Ops {
    fn drop_bounding(&mut self, cap: Capability) -> Result<(), String>;
    fn keep_caps(&mut self) -> Result<(), String>;
    fn set_groups(&mut self, gids: &[u32]) -> Result<(), String>;
    fn set_gid(&mut self, gid: u32) -> Result<(), String>;
    fn set_uid(&mut self, uid: u32) -> Result<(), String>;
    fn set_caps(&mut self, set: CapSet, caps: &CapsHashSet) -> Result<(), String>;
}

/// The real calls, on this thread (hull-init's exec step is single-threaded).
pub struct Linux;

impl Ops for Linux {
    fn drop_bounding(&mut self, cap: Capability) -> Result<(), String> {
        caps::drop(None, CapSet::Bounding, cap).map_err(|e| e.to_string())
    }
    fn keep_caps(&mut self) -> Result<(), String> {
        rustix::thread::set_keep_capabilities(true).map_err(|e| e.to_string())
    }
    fn set_groups(&mut self, gids: &[u32]) -> Result<(), String> {
        let gids: Vec<rustix::process::Gid> = gids
            .iter()
            .map(|g| rustix::process::Gid::from_raw(*g))
            .collect();
        rustix::thread::set_thread_groups(&gids).map_err(|e| e.to_string())
    }
    fn set_gid(&mut self, gid: u32) -> Result<(), String> {
        rustix::thread::set_thread_gid(rustix::process::Gid::from_raw(gid))
            .map_err(|e| e.to_string())
    }
    fn set_uid(&mut self, uid: u32) -> Result<(), String> {
        rustix::thread::set_thread_uid(rustix::process::Uid::from_raw(uid))
            .map_err(|e| e.to_string())
    }
    fn set_caps(&mut self, set: CapSet, caps: &CapsHashSet) -> Result<(), String> {
        caps::set(None, set, caps).map_err(|e| e.to_string())
    }
}

/// The capabilities named in one of the spec's sets.
fn cap_set(names: &Option<HashSet<oci_spec::runtime::Capability>>) -> CapsHashSet {
    names
        .iter()
        .flatten()
        .filter_map(|c| {
            let name = serde_json::to_value(c).ok()?.as_str()?.to_string();
            name.parse::<Capability>().ok()
        })
        .collect()
}

fn step(what: String) -> impl FnOnce(String) -> SetupError {
    move |e| SetupError(format!("{what}: {e}"))
}

/// Becomes the process's user with its capabilities; every step that fails
/// stops the container, naming the step.
pub fn become_user(ops: &mut impl Ops, process: &Process) -> Result<(), SetupError> {
    let c = process.capabilities().clone().unwrap_or_default();
    let bounding = cap_set(c.bounding());
    let mut all: Vec<Capability> = caps::all().into_iter().collect();
    all.sort_by_key(|c| c.index());
    for cap in all.into_iter().filter(|c| !bounding.contains(c)) {
        ops.drop_bounding(cap)
            .map_err(step(format!("capabilities (bounding, {cap})")))?;
    }
    let user = process.user();
    ops.keep_caps().map_err(step("keep capabilities".into()))?;
    let groups = user.additional_gids().clone().unwrap_or_default();
    ops.set_groups(&groups).map_err(step("setgroups".into()))?;
    ops.set_gid(user.gid())
        .map_err(step(format!("setgid {}", user.gid())))?;
    ops.set_uid(user.uid())
        .map_err(step(format!("setuid {}", user.uid())))?;
    // Only ever lowering: inheritable, then effective (within permitted,
    // which keep-caps kept), then permitted (keeping the new effective set),
    // then ambient (within permitted and inheritable).
    for (set, names, what) in [
        (CapSet::Inheritable, c.inheritable(), "inheritable"),
        (CapSet::Effective, c.effective(), "effective"),
        (CapSet::Permitted, c.permitted(), "permitted"),
        (CapSet::Ambient, c.ambient(), "ambient"),
    ] {
        ops.set_caps(set, &cap_set(names))
            .map_err(step(format!("capabilities ({what})")))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Records the calls; fails the one named in `fail`.
    #[derive(Default)]
    struct Recorder {
        calls: Vec<String>,
        fail: Option<&'static str>,
    }

    impl Recorder {
        fn call(&mut self, c: String) -> Result<(), String> {
            let failing = self.fail.is_some_and(|f| c.starts_with(f));
            self.calls.push(c);
            if failing {
                Err("Operation not permitted".into())
            } else {
                Ok(())
            }
        }
    }

    impl Ops for Recorder {
        fn drop_bounding(&mut self, cap: Capability) -> Result<(), String> {
            self.call(format!("bounding -{cap}"))
        }
        fn keep_caps(&mut self) -> Result<(), String> {
            self.call("keepcaps".into())
        }
        fn set_groups(&mut self, gids: &[u32]) -> Result<(), String> {
            self.call(format!("groups {gids:?}"))
        }
        fn set_gid(&mut self, gid: u32) -> Result<(), String> {
            self.call(format!("gid {gid}"))
        }
        fn set_uid(&mut self, uid: u32) -> Result<(), String> {
            self.call(format!("uid {uid}"))
        }
        fn set_caps(&mut self, set: CapSet, caps: &CapsHashSet) -> Result<(), String> {
            let mut names: Vec<String> = caps.iter().map(|c| c.to_string()).collect();
            names.sort();
            self.call(format!("{set:?} {}", names.join(",")))
        }
    }

    /// A process as the builder writes it for `uid: 1000` and
    /// `capabilities: [CAP_NET_BIND_SERVICE]`.
    fn non_root() -> Process {
        serde_json::from_str(
            r#"{"cwd":"/","user":{"uid":1000,"gid":1000,"additionalGids":[27]},
                "capabilities":{"bounding":["CAP_NET_BIND_SERVICE"],
                "effective":["CAP_NET_BIND_SERVICE"],"permitted":["CAP_NET_BIND_SERVICE"],
                "inheritable":[],"ambient":[]}}"#,
        )
        .expect("process")
    }

    #[test]
    fn bounding_is_lowered_before_the_uid_change_and_ambient_comes_last() {
        let mut r = Recorder::default();
        become_user(&mut r, &non_root()).expect("becomes the user");
        let at = |prefix: &str| {
            r.calls
                .iter()
                .position(|c| c.starts_with(prefix))
                .unwrap_or_else(|| panic!("no {prefix} in {:?}", r.calls))
        };
        let last_drop = r
            .calls
            .iter()
            .rposition(|c| c.starts_with("bounding"))
            .expect("drops");
        assert!(last_drop < at("keepcaps"));
        assert!(at("keepcaps") < at("groups [27]"));
        assert!(at("groups") < at("gid 1000") && at("gid 1000") < at("uid 1000"));
        assert!(at("uid 1000") < at("Inheritable") && at("Inheritable") < at("Effective"));
        assert!(at("Effective") < at("Permitted") && at("Permitted") < at("Ambient"));
        assert_eq!(r.calls[at("Inheritable")], "Inheritable ");
        assert_eq!(r.calls[at("Permitted")], "Permitted CAP_NET_BIND_SERVICE");
        assert!(!r
            .calls
            .iter()
            .any(|c| c == "bounding -CAP_NET_BIND_SERVICE"));
        assert_eq!(last_drop + 1, caps::all().len() - 1);
    }

    #[test]
    fn a_failing_step_stops_with_its_name_and_nothing_after_it() {
        let mut r = Recorder {
            fail: Some("uid"),
            ..Recorder::default()
        };
        let e = become_user(&mut r, &non_root()).expect_err("setuid fails");
        assert_eq!(e.0, "setuid 1000: Operation not permitted");
        assert_eq!(r.calls.last().map(String::as_str), Some("uid 1000"));
    }
}
