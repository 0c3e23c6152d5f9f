//! The cgroup v2 device filter: a container's `linux.resources.devices`
//! rules as an eBPF program of type `BPF_PROG_TYPE_CGROUP_DEVICE`, attached
//! to its cgroup before it enters, as runc, crun and youki do (cgroup v2 has
//! no `devices.allow` file: only such a program says which device nodes a
//! process may open or make).
//!
//! Hand-written: the program is a few compares per rule, and the crates that
//! assemble eBPF need libbpf or LLVM, which a static PID1 for two arches
//! should not carry. Rules are tried from the last to the first, the first
//! that matches decides (so a later rule overrides an earlier one, as in the
//! spec); no match denies. An allow rule matches a request whose access is
//! within its own; a deny rule one that asks any access it names. Owns:
//! compiling the rules and attaching the program. Must not touch anything
//! else of the cgroup: that is `container`.

use std::os::fd::{AsFd, OwnedFd};
use std::path::Path;

use oci_spec::runtime::{LinuxDeviceCgroup, LinuxDeviceType};

use crate::sys::{self, SysError};

/// One eBPF instruction (`struct bpf_insn`; destination register in the low
/// nibble of `regs`, source in the high one, as on little-endian machines).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(C)]
pub struct Insn {
    pub code: u8,
    pub regs: u8,
    pub off: i16,
    pub imm: i32,
}

/// The opcodes the program uses (`<linux/bpf.h>`, `<linux/bpf_common.h>`).
mod op {
    /// BPF_LDX | BPF_MEM | BPF_W: dst = *(u32 *)(src + off).
    pub const LDX_W: u8 = 0x61;
    /// BPF_ALU | BPF_AND | BPF_K: dst &= imm (32 bits).
    pub const AND32_K: u8 = 0x54;
    /// BPF_ALU | BPF_RSH | BPF_K: dst >>= imm (32 bits).
    pub const RSH32_K: u8 = 0x74;
    /// BPF_ALU | BPF_MOV | BPF_X: dst = src (32 bits).
    pub const MOV32_X: u8 = 0xbc;
    /// BPF_ALU64 | BPF_MOV | BPF_K: dst = imm.
    pub const MOV64_K: u8 = 0xb7;
    /// BPF_JMP | BPF_JNE | BPF_K: if dst != imm, pc += off.
    pub const JNE_K: u8 = 0x55;
    /// BPF_JMP | BPF_JEQ | BPF_K: if dst == imm, pc += off.
    pub const JEQ_K: u8 = 0x15;
    /// BPF_JMP | BPF_EXIT: return r0.
    pub const EXIT: u8 = 0x95;
}

/// `struct bpf_cgroup_dev_ctx`'s device types and access bits.
const DEV_BLOCK: i32 = 1;
const DEV_CHAR: i32 = 2;
const ACC_MKNOD: i32 = 1;
const ACC_READ: i32 = 2;
const ACC_WRITE: i32 = 4;
const ACC_ALL: i32 = ACC_MKNOD | ACC_READ | ACC_WRITE;

/// Registers the program keeps the request in.
const R_TYPE: u8 = 2;
const R_ACCESS: u8 = 3;
const R_MAJOR: u8 = 4;
const R_MINOR: u8 = 5;

fn insn(code: u8, dst: u8, src: u8, off: i16, imm: i32) -> Insn {
    Insn {
        code,
        regs: dst | (src << 4),
        off,
        imm,
    }
}

/// The access bits of a rule's `access` string (`rwm` when absent).
fn access_bits(access: Option<&str>) -> Result<i32, String> {
    let Some(text) = access else {
        return Ok(ACC_ALL);
    };
    text.chars().try_fold(0, |bits, c| match c {
        'r' => Ok(bits | ACC_READ),
        'w' => Ok(bits | ACC_WRITE),
        'm' => Ok(bits | ACC_MKNOD),
        other => Err(format!("device rule access {text:?}: unknown {other:?}")),
    })
}

/// A rule's device type; `None` for all types.
fn device_type(t: Option<LinuxDeviceType>) -> Result<Option<i32>, String> {
    match t {
        None | Some(LinuxDeviceType::A) => Ok(None),
        Some(LinuxDeviceType::B) => Ok(Some(DEV_BLOCK)),
        Some(LinuxDeviceType::C) | Some(LinuxDeviceType::U) => Ok(Some(DEV_CHAR)),
        Some(other) => Err(format!("device rule type {other:?} cannot be filtered")),
    }
}

/// A device number a rule names; `None` (or a negative number) for any.
fn number(n: Option<i64>, what: &str) -> Result<Option<i32>, String> {
    match n {
        None => Ok(None),
        Some(n) if n < 0 => Ok(None),
        Some(n) => i32::try_from(n)
            .map(Some)
            .map_err(|_| format!("device rule {what} {n} is out of range")),
    }
}

/// The instructions of one rule; its jumps lead past its own end.
fn rule_block(rule: &LinuxDeviceCgroup) -> Result<Vec<Insn>, String> {
    // (instruction, whether it jumps to the next rule)
    let mut block: Vec<(Insn, bool)> = Vec::new();
    if let Some(t) = device_type(rule.typ())? {
        block.push((insn(op::JNE_K, R_TYPE, 0, 0, t), true));
    }
    let access = access_bits(rule.access().as_deref())?;
    if access != ACC_ALL {
        block.push((insn(op::MOV32_X, 0, R_ACCESS, 0, 0), false));
        if rule.allow() {
            // Anything asked beyond the rule's access: not this rule.
            block.push((insn(op::AND32_K, 0, 0, 0, !access & ACC_ALL), false));
            block.push((insn(op::JNE_K, 0, 0, 0, 0), true));
        } else {
            // Nothing asked of what the rule denies: not this rule.
            block.push((insn(op::AND32_K, 0, 0, 0, access), false));
            block.push((insn(op::JEQ_K, 0, 0, 0, 0), true));
        }
    }
    if let Some(major) = number(rule.major(), "major")? {
        block.push((insn(op::JNE_K, R_MAJOR, 0, 0, major), true));
    }
    if let Some(minor) = number(rule.minor(), "minor")? {
        block.push((insn(op::JNE_K, R_MINOR, 0, 0, minor), true));
    }
    block.push((insn(op::MOV64_K, 0, 0, 0, i32::from(rule.allow())), false));
    block.push((insn(op::EXIT, 0, 0, 0, 0), false));
    let len = block.len();
    block
        .into_iter()
        .enumerate()
        .map(|(i, (mut ins, to_next))| {
            if to_next {
                ins.off = i16::try_from(len - i - 1).map_err(|_| "device rule too long")?;
            }
            Ok(ins)
        })
        .collect()
}

/// The whole program for `rules`: load the request, try the rules from
/// the last, deny when none matches (or stop at a rule that matches
/// everything).
pub fn program(rules: &[LinuxDeviceCgroup]) -> Result<Vec<Insn>, String> {
    let mut prog = vec![
        insn(op::LDX_W, R_TYPE, 1, 0, 0),
        insn(op::AND32_K, R_TYPE, 0, 0, 0xffff),
        insn(op::LDX_W, R_ACCESS, 1, 0, 0),
        insn(op::RSH32_K, R_ACCESS, 0, 0, 16),
        insn(op::LDX_W, R_MAJOR, 1, 4, 0),
        insn(op::LDX_W, R_MINOR, 1, 8, 0),
    ];
    for rule in rules.iter().rev() {
        let block = rule_block(rule)?;
        // A rule without conditions always decides: nothing after it could
        // run, and the kernel refuses unreachable instructions.
        let decides = block.len() == 2;
        prog.extend(block);
        if decides {
            return Ok(prog);
        }
    }
    prog.push(insn(op::MOV64_K, 0, 0, 0, 0));
    prog.push(insn(op::EXIT, 0, 0, 0, 0));
    Ok(prog)
}

/// Loads the program for `rules` and attaches it to the cgroup at `dir`,
/// replacing one attached before (a restarted service's).
pub fn attach(dir: &Path, rules: &[LinuxDeviceCgroup]) -> Result<(), String> {
    let prog = program(rules).map_err(|e| format!("device filter: {e}"))?;
    let shown = |e: SysError| format!("device filter for {}: {e}", dir.display());
    let loaded: OwnedFd = sys::bpf_load_cgroup_device(&prog).map_err(shown)?;
    let cgroup = std::fs::File::open(dir)
        .map_err(|e| format!("device filter: open {}: {e}", dir.display()))?;
    sys::bpf_attach_cgroup_device(cgroup.as_fd(), loaded.as_fd()).map_err(shown)
}

#[cfg(test)]
mod tests {
    use super::*;
    use oci_spec::runtime::LinuxDeviceCgroupBuilder;

    /// Runs the program on one request, as the kernel would: an interpreter
    /// of exactly the instructions [`program`] emits. Its casts are the
    /// reinterpretations the kernel makes (sign-extended immediates, 32-bit
    /// loads).
    #[allow(
        clippy::cast_sign_loss,
        clippy::cast_possible_truncation,
        clippy::cast_possible_wrap
    )]
    fn run(prog: &[Insn], typ: i32, access: i32, major: i32, minor: i32) -> u64 {
        let ctx = [(access << 16 | typ) as u32, major as u32, minor as u32];
        let mut r = [0u64; 11];
        let mut pc = 0usize;
        loop {
            let i = prog[pc];
            let (dst, src) = (usize::from(i.regs & 0xf), usize::from(i.regs >> 4));
            pc += 1;
            let jump = |pc: &mut usize| *pc = (*pc as i64 + i64::from(i.off)) as usize;
            match i.code {
                op::LDX_W => {
                    assert_eq!(src, 1, "loads only from the context");
                    r[dst] = u64::from(ctx[usize::try_from(i.off).expect("offset") / 4]);
                }
                op::AND32_K => r[dst] = u64::from((r[dst] as u32) & (i.imm as u32)),
                op::RSH32_K => r[dst] = u64::from((r[dst] as u32) >> i.imm),
                op::MOV32_X => r[dst] = u64::from(r[src] as u32),
                op::MOV64_K => r[dst] = i.imm as u64,
                op::JNE_K if r[dst] != i.imm as u64 => jump(&mut pc),
                op::JEQ_K if r[dst] == i.imm as u64 => jump(&mut pc),
                op::JNE_K | op::JEQ_K => {}
                op::EXIT => return r[0],
                other => panic!("unexpected opcode {other:#x}"),
            }
        }
    }

    fn rule(
        allow: bool,
        typ: Option<LinuxDeviceType>,
        mm: Option<(i64, i64)>,
        access: &str,
    ) -> LinuxDeviceCgroup {
        let mut b = LinuxDeviceCgroupBuilder::default()
            .allow(allow)
            .access(access);
        if let Some(t) = typ {
            b = b.typ(t);
        }
        if let Some((major, minor)) = mm {
            b = b.major(major).minor(minor);
        }
        b.build().expect("rule")
    }

    const R: i32 = ACC_READ;
    const W: i32 = ACC_WRITE;
    const M: i32 = ACC_MKNOD;

    #[test]
    fn deny_all_then_allowed_devices_as_the_builder_writes_them() {
        let prog = program(&[
            rule(false, None, None, "rwm"),
            rule(true, Some(LinuxDeviceType::C), None, "m"),
            rule(true, Some(LinuxDeviceType::C), Some((1, 3)), "rwm"),
            rule(true, Some(LinuxDeviceType::C), Some((136, -1)), "rwm"),
            rule(true, Some(LinuxDeviceType::B), Some((254, 0)), "rw"),
        ])
        .expect("compiles");
        // /dev/null: anything.
        assert_eq!(run(&prog, DEV_CHAR, R | W, 1, 3), 1);
        // Any pts: any minor.
        assert_eq!(run(&prog, DEV_CHAR, R, 136, 7), 1);
        // Char nodes may be made, not opened.
        assert_eq!(run(&prog, DEV_CHAR, M, 4, 64), 1);
        assert_eq!(run(&prog, DEV_CHAR, R, 4, 64), 0);
        // The granted disk: read and write, not mknod, and not its partition.
        assert_eq!(run(&prog, DEV_BLOCK, R | W, 254, 0), 1);
        assert_eq!(run(&prog, DEV_BLOCK, M, 254, 0), 0);
        assert_eq!(run(&prog, DEV_BLOCK, R, 254, 1), 0);
        // Another disk, and a block node of the same numbers as a char one.
        assert_eq!(run(&prog, DEV_BLOCK, R, 8, 0), 0);
        assert_eq!(run(&prog, DEV_BLOCK, R, 1, 3), 0);
    }

    /// What the kernel's verifier checks first: every instruction can be
    /// reached, every jump lands inside, the program ends in an exit.
    fn check_shape(prog: &[Insn]) {
        let mut reached = vec![false; prog.len()];
        let mut todo = vec![0usize];
        while let Some(pc) = todo.pop() {
            if pc >= prog.len() {
                panic!("falls off the end at {pc}");
            }
            if reached[pc] {
                continue;
            }
            reached[pc] = true;
            let i = prog[pc];
            match i.code {
                op::EXIT => {}
                op::JNE_K | op::JEQ_K => {
                    let off = usize::try_from(i.off).expect("jumps go forward");
                    let target = pc + 1 + off;
                    assert!(target < prog.len(), "jump at {pc} leaves the program");
                    todo.push(target);
                    todo.push(pc + 1);
                }
                _ => todo.push(pc + 1),
            }
        }
        let unreached: Vec<usize> = (0..prog.len()).filter(|&i| !reached[i]).collect();
        assert!(
            unreached.is_empty(),
            "unreachable instructions {unreached:?}"
        );
    }

    #[test]
    fn every_instruction_is_reachable_and_every_jump_lands_inside() {
        for rules in [
            vec![],
            vec![rule(false, None, None, "rwm")],
            vec![
                rule(false, None, None, "rwm"),
                rule(true, Some(LinuxDeviceType::C), Some((1, 3)), "rw"),
            ],
            vec![
                rule(true, Some(LinuxDeviceType::B), None, "r"),
                rule(false, None, Some((5, 1)), "w"),
            ],
        ] {
            check_shape(&program(&rules).expect("compiles"));
        }
    }

    #[test]
    fn a_later_rule_overrides_an_earlier_one() {
        let prog = program(&[
            rule(true, Some(LinuxDeviceType::A), None, "rwm"),
            rule(false, Some(LinuxDeviceType::B), None, "w"),
        ])
        .expect("compiles");
        assert_eq!(run(&prog, DEV_BLOCK, R, 8, 0), 1);
        // Asking write at all is denied, with read or not.
        assert_eq!(run(&prog, DEV_BLOCK, W, 8, 0), 0);
        assert_eq!(run(&prog, DEV_BLOCK, R | W, 8, 0), 0);
        assert_eq!(run(&prog, DEV_CHAR, W, 1, 3), 1);
    }

    #[test]
    fn no_rules_deny_everything_and_bad_rules_are_errors() {
        let prog = program(&[]).expect("compiles");
        assert_eq!(run(&prog, DEV_CHAR, R, 1, 3), 0);
        let e = program(&[rule(true, None, None, "rx")]).expect_err("bad access");
        assert!(e.contains("unknown 'x'"), "{e}");
        let e = program(&[rule(true, None, Some((1 << 40, 0)), "r")]).expect_err("range");
        assert!(e.contains("out of range"), "{e}");
    }
}
