//! Unified kernel images: systemd's EFI stub with the kernel, initrd,
//! command line and os-release added as PE sections (`.linux`, `.initrd`,
//! `.cmdline`, `.osrel`), one EFI executable the firmware starts directly.
//!
//! Owns: reading the stub's PE headers and appending the sections. Written by
//! hand over the PE/COFF layout (the `object` crate reads PE files but cannot
//! add sections to an existing one); the layout is small and fixed. Must not
//! know where the stub or the kernel come from.

use std::io::{self, Write};

use super::source::Source;

/// A section to add: its name (at most 8 bytes) and contents.
pub struct Section<'a> {
    pub name: &'static str,
    pub data: &'a dyn Source,
}

#[derive(Debug, thiserror::Error)]
pub enum UkiError {
    #[error("the EFI stub is not a PE32+ image: {0}")]
    NotPe(&'static str),
    #[error("the EFI stub has no room in its headers for {0} more sections")]
    NoRoom(usize),
    #[error("the unified kernel image would be over 4 GiB")]
    TooLarge,
    #[error(transparent)]
    Io(#[from] io::Error),
}

fn u16_at(b: &[u8], at: usize) -> Result<u16, UkiError> {
    super::pe::u16_at(b, at).ok_or(UkiError::NotPe("truncated headers"))
}

fn u32_at(b: &[u8], at: usize) -> Result<u32, UkiError> {
    super::pe::u32_at(b, at).ok_or(UkiError::NotPe("truncated headers"))
}

fn put_u16(b: &mut [u8], at: usize, v: u16) {
    b[at..at + 2].copy_from_slice(&v.to_le_bytes());
}

fn put_u32(b: &mut [u8], at: usize, v: u32) {
    b[at..at + 4].copy_from_slice(&v.to_le_bytes());
}

fn align(v: u64, to: u64) -> u64 {
    if to == 0 {
        v
    } else {
        v.div_ceil(to) * to
    }
}

/// Writes the image to `out`: the stub with the new section headers, then
/// each section's contents streamed from its source, padded to the file
/// alignment. Returns the image's size.
pub fn write(stub: &[u8], sections: &[Section<'_>], out: &mut dyn Write) -> Result<u64, UkiError> {
    let (headers, file_align) = headers(stub, sections)?;
    out.write_all(&headers)?;
    let mut size = headers.len() as u64;
    let zeros = vec![0u8; usize::try_from(file_align).unwrap_or(0)];
    for sec in sections {
        super::source::copy(sec.data, out)?;
        let len = sec.data.len();
        let pad = align(len, file_align) - len;
        out.write_all(&zeros[..usize::try_from(pad).unwrap_or(0)])?;
        size += len + pad;
    }
    out.flush()?;
    Ok(size)
}

/// The stub, padded to the file alignment, with the section table, section
/// count and image size patched for `sections` appended after it; and the
/// file alignment.
fn headers(stub: &[u8], sections: &[Section<'_>]) -> Result<(Vec<u8>, u64), UkiError> {
    if stub.get(0..2) != Some(b"MZ") {
        return Err(UkiError::NotPe("no MZ header"));
    }
    let pe = u32_at(stub, 0x3c)? as usize;
    if stub.get(pe..pe + 4) != Some(b"PE\0\0") {
        return Err(UkiError::NotPe("no PE signature"));
    }
    let coff = pe + 4;
    let nsections = u16_at(stub, coff + 2)? as usize;
    let opt_size = u16_at(stub, coff + 16)? as usize;
    let opt = coff + 20;
    if u16_at(stub, opt)? != 0x20b {
        return Err(UkiError::NotPe("not PE32+"));
    }
    let section_align = u64::from(u32_at(stub, opt + 32)?);
    let file_align = u64::from(u32_at(stub, opt + 36)?);
    let size_of_headers = u32_at(stub, opt + 60)? as usize;
    let table = opt + opt_size;
    let table_end = table + 40 * nsections;
    // The new headers must fit before the first section's data.
    let mut first_raw = size_of_headers;
    let mut next_va = 0u64;
    for i in 0..nsections {
        let s = table + 40 * i;
        let vsize = u64::from(u32_at(stub, s + 8)?);
        let va = u64::from(u32_at(stub, s + 12)?);
        let raw_size = u64::from(u32_at(stub, s + 16)?);
        let raw = u32_at(stub, s + 20)? as usize;
        if raw != 0 {
            first_raw = first_raw.min(raw);
        }
        next_va = next_va.max(align(va + vsize.max(raw_size), section_align));
    }
    if table_end + 40 * sections.len() > first_raw.min(size_of_headers) {
        return Err(UkiError::NoRoom(sections.len()));
    }
    let mut image = stub.to_vec();
    let mut file_end = align(image.len() as u64, file_align);
    image.resize(
        usize::try_from(file_end).map_err(|_| UkiError::TooLarge)?,
        0,
    );
    for (i, sec) in sections.iter().enumerate() {
        let h = table_end + 40 * i;
        let mut name = [0u8; 8];
        let n = sec.name.as_bytes();
        name[..n.len().min(8)].copy_from_slice(&n[..n.len().min(8)]);
        image[h..h + 8].copy_from_slice(&name);
        let len = sec.data.len();
        let raw_size = align(len, file_align);
        let fits = |v: u64| u32::try_from(v).map_err(|_| UkiError::TooLarge);
        put_u32(&mut image, h + 8, fits(len)?);
        put_u32(&mut image, h + 12, fits(next_va)?);
        put_u32(&mut image, h + 16, fits(raw_size)?);
        put_u32(&mut image, h + 20, fits(file_end)?);
        image[h + 24..h + 36].fill(0);
        // Initialized data, readable.
        put_u32(&mut image, h + 36, 0x4000_0040);
        file_end += raw_size;
        next_va = align(next_va + len, section_align);
    }
    let total = u16::try_from(nsections + sections.len()).map_err(|_| UkiError::TooLarge)?;
    put_u16(&mut image, coff + 2, total);
    put_u32(
        &mut image,
        opt + 56,
        u32::try_from(next_va).map_err(|_| UkiError::TooLarge)?,
    );
    // No checksum: firmware checks signatures, not this field.
    put_u32(&mut image, opt + 64, 0);
    u32::try_from(file_end).map_err(|_| UkiError::TooLarge)?;
    Ok((image, file_align))
}

/// Reads back a section's contents by name (for checks).
pub fn section<'a>(image: &'a [u8], name: &str) -> Option<&'a [u8]> {
    let pe = u32_at(image, 0x3c).ok()? as usize;
    let coff = pe + 4;
    let n = u16_at(image, coff + 2).ok()? as usize;
    let table = coff + 20 + u16_at(image, coff + 16).ok()? as usize;
    (0..n).find_map(|i| {
        let h = table + 40 * i;
        let raw_name = image.get(h..h + 8)?;
        let end = raw_name.iter().position(|&c| c == 0).unwrap_or(8);
        if &raw_name[..end] != name.as_bytes() {
            return None;
        }
        let size = u32_at(image, h + 8).ok()? as usize;
        let at = u32_at(image, h + 20).ok()? as usize;
        image.get(at..at + size)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A minimal PE32+ file: headers with room, one .text section.
    fn tiny_pe() -> Vec<u8> {
        let mut b = vec![0u8; 0x400];
        b[0..2].copy_from_slice(b"MZ");
        put_u32(&mut b, 0x3c, 0x80);
        b[0x80..0x84].copy_from_slice(b"PE\0\0");
        let coff = 0x84;
        put_u16(&mut b, coff, 0x8664);
        put_u16(&mut b, coff + 2, 1);
        put_u16(&mut b, coff + 16, 240);
        let opt = coff + 20;
        put_u16(&mut b, opt, 0x20b);
        put_u32(&mut b, opt + 32, 0x1000);
        put_u32(&mut b, opt + 36, 0x200);
        put_u32(&mut b, opt + 56, 0x2000);
        put_u32(&mut b, opt + 60, 0x400);
        let s = opt + 240;
        b[s..s + 5].copy_from_slice(b".text");
        put_u32(&mut b, s + 8, 0x10);
        put_u32(&mut b, s + 12, 0x1000);
        put_u32(&mut b, s + 16, 0x200);
        put_u32(&mut b, s + 20, 0x400);
        b.extend_from_slice(&[0xc3; 0x200]);
        b
    }

    #[test]
    fn sections_are_appended_aligned_and_readable() {
        let stub = tiny_pe();
        let mut img = Vec::new();
        let size = write(
            &stub,
            &[
                Section {
                    name: ".cmdline",
                    data: b"console=ttyS0",
                },
                Section {
                    name: ".linux",
                    data: &[7u8; 5000],
                },
            ],
            &mut img,
        )
        .expect("builds");
        assert_eq!(size, img.len() as u64);
        assert_eq!(section(&img, ".cmdline"), Some(&b"console=ttyS0"[..]));
        assert_eq!(section(&img, ".linux").map(<[u8]>::len), Some(5000));
        assert_eq!(section(&img, ".text").map(<[u8]>::len), Some(0x10));
        assert_eq!(img.len() % 0x200, 0);
        let coff = 0x84;
        assert_eq!(u16_at(&img, coff + 2).expect("n"), 3);
        // .cmdline at 0x2000, .linux at 0x3000, image ends at 0x5000.
        assert_eq!(u32_at(&img, coff + 20 + 56).expect("size"), 0x5000);
    }

    #[test]
    fn not_a_pe_is_refused() {
        assert!(matches!(
            write(b"hello", &[], &mut Vec::new()),
            Err(UkiError::NotPe(_))
        ));
    }
}
