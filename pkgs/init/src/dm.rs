//! Device-mapper: the verity device a root on disk is mounted from, set up
//! with the kernel's ioctls on `/dev/mapper/control` (Debian's kernels have
//! no `dm-mod.create=`, and PID1 has no libdevmapper).
//!
//! Owns: the `struct dm_ioctl` and `struct dm_target_spec` layouts, and the
//! create / load table / resume sequence for one read-only device. Must not
//! decide the table (that is `diskroot`).

use std::os::fd::AsFd;

use crate::sys::{Context, SysError};

/// `sizeof(struct dm_ioctl)`.
const IOCTL_SIZE: usize = 312;
/// `sizeof(struct dm_target_spec)`.
const SPEC_SIZE: usize = 40;
const DM_DEV_CREATE: u8 = 3;
const DM_DEV_SUSPEND: u8 = 6;
const DM_TABLE_LOAD: u8 = 9;
const DM_READONLY_FLAG: u32 = 1;

/// One target of a table: `length` sectors from 0 of type `kind`.
pub struct Target<'a> {
    pub length: u64,
    pub kind: &'a str,
    pub params: &'a str,
}

/// A `struct dm_ioctl` for device `name` with `flags`, followed by `extra`
/// bytes of room; `data_start` points past the struct.
fn header(name: &str, flags: u32, target_count: u32, extra: usize) -> Vec<u8> {
    let mut b = vec![0u8; IOCTL_SIZE + extra];
    for (i, v) in [4u32, 0, 0].iter().enumerate() {
        b[4 * i..4 * i + 4].copy_from_slice(&v.to_ne_bytes());
    }
    // data_size (12) is set by sys::dm_ioctl; data_start:
    b[16..20].copy_from_slice(&312u32.to_ne_bytes());
    b[20..24].copy_from_slice(&target_count.to_ne_bytes());
    b[28..32].copy_from_slice(&flags.to_ne_bytes());
    let n = name.len().min(127);
    b[48..48 + n].copy_from_slice(&name.as_bytes()[..n]);
    b
}

/// The DM_TABLE_LOAD buffer: the header, one target spec, its parameters
/// (NUL-terminated, padded to 8 bytes).
fn table(name: &str, t: &Target) -> Vec<u8> {
    let params = t.params.len() + 1;
    let spec_len = (SPEC_SIZE + params).div_ceil(8) * 8;
    let mut b = header(name, DM_READONLY_FLAG, 1, spec_len);
    let s = &mut b[IOCTL_SIZE..];
    s[8..16].copy_from_slice(&t.length.to_ne_bytes());
    s[20..24].copy_from_slice(&u32::try_from(spec_len).unwrap_or(0).to_ne_bytes());
    let k = t.kind.len().min(15);
    s[24..24 + k].copy_from_slice(&t.kind.as_bytes()[..k]);
    s[SPEC_SIZE..SPEC_SIZE + t.params.len()].copy_from_slice(t.params.as_bytes());
    b
}

/// The device number the kernel answered with.
fn dev_of(b: &[u8]) -> (u32, u32) {
    let mut raw = [0u8; 8];
    raw.copy_from_slice(&b[40..48]);
    let dev = u64::from_ne_bytes(raw);
    (rustix::fs::major(dev), rustix::fs::minor(dev))
}

/// Creates the read-only device `name` with `target` and makes it live;
/// returns its major and minor numbers.
pub fn create_read_only(name: &str, target: &Target) -> Result<(u32, u32), SysError> {
    let control = rustix::fs::open(
        "/dev/mapper/control",
        rustix::fs::OFlags::RDWR | rustix::fs::OFlags::CLOEXEC,
        rustix::fs::Mode::empty(),
    )
    .ctx(|| "open /dev/mapper/control (is dm_mod loaded?)".into())?;
    let fd = control.as_fd();
    let mut b = header(name, 0, 0, 0);
    crate::sys::dm_ioctl(fd, DM_DEV_CREATE, &mut b, &format!("DM_DEV_CREATE {name}"))?;
    let mut t = table(name, target);
    crate::sys::dm_ioctl(
        fd,
        DM_TABLE_LOAD,
        &mut t,
        &format!("DM_TABLE_LOAD {name} ({} {})", target.kind, target.params),
    )?;
    // DM_DEV_SUSPEND without DM_SUSPEND_FLAG resumes: the table goes live.
    let mut r = header(name, 0, 0, 0);
    crate::sys::dm_ioctl(fd, DM_DEV_SUSPEND, &mut r, &format!("resume {name}"))?;
    Ok(dev_of(&r))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_buffer_is_laid_out_as_the_kernel_reads_it() {
        let t = Target {
            length: 8800,
            kind: "verity",
            params: "1 /dev/vda2 /dev/vda3 4096 4096 1100 1 sha256 ab cd",
        };
        let b = table("hull-root", &t);
        assert_eq!(b.len() % 8, 0);
        assert_eq!(&b[0..4], &4u32.to_ne_bytes());
        assert_eq!(&b[16..20], &312u32.to_ne_bytes());
        assert_eq!(&b[20..24], &1u32.to_ne_bytes());
        assert_eq!(&b[28..32], &DM_READONLY_FLAG.to_ne_bytes());
        assert_eq!(&b[48..57], b"hull-root");
        let s = &b[312..];
        assert_eq!(&s[0..8], &0u64.to_ne_bytes());
        assert_eq!(&s[8..16], &8800u64.to_ne_bytes());
        assert_eq!(&s[24..30], b"verity");
        let next = u32::from_ne_bytes([s[20], s[21], s[22], s[23]]) as usize;
        assert_eq!(312 + next, b.len());
        let params = &s[40..40 + t.params.len()];
        assert_eq!(params, t.params.as_bytes());
        assert_eq!(s[40 + t.params.len()], 0);
    }
}
