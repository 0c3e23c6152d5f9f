//! A container's seccomp filter: OCI `linux.seccomp` compiled to BPF with
//! Firecracker's `seccompiler` and installed before the program starts.
//!
//! Owns: turning the OCI profile (one default action, rules with their own
//! actions and argument conditions) into seccompiler filters and installing
//! them. A seccompiler filter has one action on match, so the profile becomes
//! a stack: one filter per non-allow action (its syscalls → that action,
//! everything else allowed) and, when the default is not "allow", one filter
//! sending every named syscall to "allow" and the rest to the default. The
//! kernel applies the strictest answer of the stack, which is the profile's.
//! Syscall names this arch does not have are skipped (as runc does), and said.
//! x32 syscalls (x86_64 only) are answered ENOSYS by a guard filter first.
//! Installing does not set `no_new_privs` (only the spec's
//! `noNewPrivileges` does, as in runc). Must not decide when: `container`
//! calls it.

use std::collections::BTreeMap;

use oci_spec::runtime::{LinuxSeccomp, LinuxSeccompAction, LinuxSeccompOperator};
use serde_json::{json, Value};

fn target() -> seccompiler::TargetArch {
    if cfg!(target_arch = "aarch64") {
        seccompiler::TargetArch::aarch64
    } else {
        seccompiler::TargetArch::x86_64
    }
}

fn action(a: LinuxSeccompAction, errno: Option<u32>) -> Result<Value, String> {
    Ok(match a {
        LinuxSeccompAction::ScmpActAllow => json!("allow"),
        LinuxSeccompAction::ScmpActErrno => json!({"errno": errno.unwrap_or(1)}),
        LinuxSeccompAction::ScmpActKill | LinuxSeccompAction::ScmpActKillThread => {
            json!("kill_thread")
        }
        LinuxSeccompAction::ScmpActKillProcess => json!("kill_process"),
        LinuxSeccompAction::ScmpActTrap => json!("trap"),
        LinuxSeccompAction::ScmpActLog => json!("log"),
        LinuxSeccompAction::ScmpActTrace => json!({"trace": errno.unwrap_or(0)}),
        LinuxSeccompAction::ScmpActNotify => {
            return Err("seccomp action SCMP_ACT_NOTIFY is not supported".into())
        }
    })
}

/// True when this arch has a syscall of that name.
fn known(name: &str) -> bool {
    let probe = json!({"p": {"mismatch_action": {"errno": 1}, "match_action": "allow",
        "filter": [{"syscall": name}]}});
    seccompiler::compile_from_json(probe.to_string().as_bytes(), target()).is_ok()
}

/// The seccompiler JSON for `profile`, and the syscall names skipped.
pub fn compile_json(profile: &LinuxSeccomp) -> Result<(Value, Vec<String>), String> {
    let mut skipped = Vec::new();
    // Rules grouped by their action; every rule also goes to the "named" list.
    let mut groups: BTreeMap<String, (Value, Vec<Value>)> = BTreeMap::new();
    let mut named = Vec::new();
    for rule in profile.syscalls().clone().unwrap_or_default() {
        let act = action(rule.action(), rule.errno_ret())?;
        let mut conditions = Vec::new();
        for a in rule.args().clone().unwrap_or_default() {
            let (op, val) = match a.op() {
                LinuxSeccompOperator::ScmpCmpNe => (json!("ne"), a.value()),
                LinuxSeccompOperator::ScmpCmpLt => (json!("lt"), a.value()),
                LinuxSeccompOperator::ScmpCmpLe => (json!("le"), a.value()),
                LinuxSeccompOperator::ScmpCmpEq => (json!("eq"), a.value()),
                LinuxSeccompOperator::ScmpCmpGe => (json!("ge"), a.value()),
                LinuxSeccompOperator::ScmpCmpGt => (json!("gt"), a.value()),
                // OCI: value is the mask, valueTwo the datum.
                LinuxSeccompOperator::ScmpCmpMaskedEq => {
                    (json!({"masked_eq": a.value()}), a.value_two().unwrap_or(0))
                }
            };
            conditions.push(json!({"index": a.index(), "type": "qword", "op": op, "val": val}));
        }
        for name in rule.names() {
            if !known(name) {
                skipped.push(name.clone());
                continue;
            }
            let mut r = json!({"syscall": name});
            if !conditions.is_empty() {
                r["args"] = json!(conditions);
            }
            named.push(r.clone());
            if rule.action() != LinuxSeccompAction::ScmpActAllow {
                groups
                    .entry(act.to_string())
                    .or_insert_with(|| (act.clone(), Vec::new()))
                    .1
                    .push(r);
            }
        }
    }
    let mut filters = serde_json::Map::new();
    for (i, (_, (act, rules))) in groups.into_iter().enumerate() {
        filters.insert(
            format!("rule{i}"),
            json!({"mismatch_action": "allow", "match_action": act, "filter": rules}),
        );
    }
    let default = action(profile.default_action(), profile.default_errno_ret())?;
    if default != json!("allow") {
        if named.is_empty() {
            return Err("seccomp: no syscall named in the profile exists on this arch".into());
        }
        filters.insert(
            "default".into(),
            json!({"mismatch_action": default, "match_action": "allow", "filter": named}),
        );
    }
    Ok((Value::Object(filters), skipped))
}

/// `AUDIT_ARCH_X86_64`: x86_64's and x32's syscalls both come with it.
const AUDIT_ARCH_X86_64: u32 = 62 | 0x8000_0000 | 0x4000_0000;
/// The bit that marks an x32 syscall number.
const X32_SYSCALL_BIT: u32 = 0x4000_0000;

/// A filter answering every x32 syscall ENOSYS, as a kernel without x32
/// does: seccompiler's filters check the audit arch, which x32 shares with
/// x86_64, and then match syscall numbers without the x32 bit, so an x32
/// call would otherwise pass a deny-list untouched. Empty on other arches.
pub fn x32_guard() -> Vec<seccompiler::sock_filter> {
    if !cfg!(target_arch = "x86_64") {
        return Vec::new();
    }
    // Classic BPF opcodes, as <linux/bpf_common.h> builds them:
    // BPF_LD | BPF_W | BPF_ABS, BPF_JMP | BPF_JEQ | BPF_K,
    // BPF_JMP | BPF_JSET | BPF_K, BPF_RET | BPF_K.
    const LD_W_ABS: u16 = 0x20;
    const JEQ_K: u16 = 0x15;
    const JSET_K: u16 = 0x45;
    const RET_K: u16 = 0x06;
    let op = |code, jt, jf, k| seccompiler::sock_filter { code, jt, jf, k };
    let enosys = libc::SECCOMP_RET_ERRNO | u32::try_from(libc::ENOSYS).unwrap_or(38);
    vec![
        // seccomp_data.arch, at offset 4.
        op(LD_W_ABS, 0, 0, 4),
        op(JEQ_K, 0, 3, AUDIT_ARCH_X86_64),
        // seccomp_data.nr, at offset 0.
        op(LD_W_ABS, 0, 0, 0),
        op(JSET_K, 0, 1, X32_SYSCALL_BIT),
        op(RET_K, 0, 0, enosys),
        op(RET_K, 0, 0, libc::SECCOMP_RET_ALLOW),
    ]
}

/// Compiles and installs `profile` for this thread and what it execs,
/// behind the x32 guard. Sets no `no_new_privs` (the spec's
/// `noNewPrivileges` does): without it the caller needs CAP_SYS_ADMIN.
/// Returns the skipped names.
pub fn install(profile: &LinuxSeccomp) -> Result<Vec<String>, String> {
    let (filters, skipped) = compile_json(profile)?;
    let programs = seccompiler::compile_from_json(filters.to_string().as_bytes(), target())
        .map_err(|e| format!("seccomp: {e}"))?;
    let guard = x32_guard();
    if !guard.is_empty() {
        crate::sys::seccomp_filter(&guard).map_err(|e| format!("seccomp (x32 guard): {e}"))?;
    }
    for (name, program) in &programs {
        crate::sys::seccomp_filter(program).map_err(|e| format!("seccomp ({name}): {e}"))?;
    }
    Ok(skipped)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn profile(json: &str) -> LinuxSeccomp {
        serde_json::from_str(json).expect("profile")
    }

    #[test]
    fn deny_list_becomes_one_errno_filter() {
        let p = profile(
            r#"{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[
                {"names":["mkdir","mkdirat","no_such_call"],"action":"SCMP_ACT_ERRNO","errnoRet":13}]}"#,
        );
        let (v, skipped) = compile_json(&p).expect("compiles");
        assert_eq!(skipped, ["no_such_call"]);
        let filters = v.as_object().expect("map");
        assert_eq!(filters.len(), 1);
        let f = &filters["rule0"];
        assert_eq!(f["match_action"], json!({"errno": 13}));
        assert_eq!(f["filter"].as_array().map(Vec::len), Some(2));
        seccompiler::compile_from_json(v.to_string().as_bytes(), target()).expect("BPF");
    }

    #[test]
    fn installed_without_no_new_privs_and_enforced() {
        if !rustix::process::geteuid().is_root() {
            println!("skipped: installing a filter without no_new_privs needs CAP_SYS_ADMIN");
            return;
        }
        // A thread of its own: the filter binds only it.
        let result = std::thread::spawn(|| {
            let p = profile(
                r#"{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[
                    {"names":["getcwd"],"action":"SCMP_ACT_ERRNO","errnoRet":77}]}"#,
            );
            install(&p).expect("installs");
            let nnp = rustix::thread::no_new_privs().expect("prctl");
            let cwd = std::env::current_dir().map_err(|e| e.raw_os_error());
            (nnp, cwd)
        })
        .join()
        .expect("thread");
        assert_eq!(result, (false, Err(Some(77))));
        // This thread is not filtered.
        assert!(std::env::current_dir().is_ok());
    }

    #[test]
    fn x32_calls_are_guarded_on_x86_64() {
        let g = x32_guard();
        if cfg!(target_arch = "x86_64") {
            assert_eq!(g.len(), 6);
            assert_eq!(g[1].k, AUDIT_ARCH_X86_64);
            assert_eq!((g[3].code, g[3].k), (0x45, X32_SYSCALL_BIT));
            assert_eq!(g[4].k, libc::SECCOMP_RET_ERRNO | 38);
            assert_eq!(g[5].k, libc::SECCOMP_RET_ALLOW);
        } else {
            assert!(g.is_empty());
        }
    }

    #[test]
    fn allow_list_with_args_gets_a_default_filter() {
        let p = profile(
            r#"{"defaultAction":"SCMP_ACT_ERRNO","syscalls":[
                {"names":["read","write"],"action":"SCMP_ACT_ALLOW"},
                {"names":["personality"],"action":"SCMP_ACT_ALLOW",
                 "args":[{"index":0,"value":255,"valueTwo":8,"op":"SCMP_CMP_MASKED_EQ"}]},
                {"names":["ptrace"],"action":"SCMP_ACT_KILL_PROCESS"}]}"#,
        );
        let (v, _) = compile_json(&p).expect("compiles");
        let filters = v.as_object().expect("map");
        assert_eq!(filters["default"]["mismatch_action"], json!({"errno": 1}));
        assert_eq!(
            filters["default"]["filter"].as_array().map(Vec::len),
            Some(4)
        );
        assert_eq!(filters["rule0"]["match_action"], json!("kill_process"));
        let masked = &filters["default"]["filter"][2]["args"][0];
        assert_eq!(masked["op"], json!({"masked_eq": 255}));
        assert_eq!(masked["val"], json!(8));
        seccompiler::compile_from_json(v.to_string().as_bytes(), target()).expect("BPF");
    }
}
