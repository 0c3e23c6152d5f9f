//! Reading a unified kernel image: its sections, the version in its
//! `.osrel` and the root hash on its `.cmdline`. Used where a UKI is
//! found on an ESP or in an update bundle (`hull-init`, the update service).

use std::io::{Read, Seek, SeekFrom};

/// How much of the file the PE headers and section table are read from.
const HEADERS: usize = 4096;

/// `IMAGE_VERSION` of the `.osrel` section of the UKI in `file`.
pub fn version(file: &mut (impl Read + Seek)) -> Option<String> {
    let osrel = read_section(file, b".osrel")?;
    String::from_utf8_lossy(&osrel)
        .lines()
        .find_map(|l| l.strip_prefix("IMAGE_VERSION="))
        .map(|v| v.trim_matches('"').to_string())
}

/// `roothash=` of the `.cmdline` section of the UKI in `file`, as its hex
/// text.
pub fn root_hash(file: &mut (impl Read + Seek)) -> Option<String> {
    let cmdline = read_section(file, b".cmdline")?;
    String::from_utf8_lossy(&cmdline)
        .split_whitespace()
        .find_map(|w| w.strip_prefix("roothash="))
        .map(|h| h.trim_end_matches('\0').to_string())
}

/// The section `name` of the PE image in `file`, reading only its headers
/// and that section (a UKI is tens of MB).
pub fn read_section(file: &mut (impl Read + Seek), name: &[u8]) -> Option<Vec<u8>> {
    let mut head = Vec::with_capacity(HEADERS);
    file.seek(SeekFrom::Start(0)).ok()?;
    file.by_ref()
        .take(HEADERS as u64)
        .read_to_end(&mut head)
        .ok()?;
    let (start, size) = locate(&head, name)?;
    file.seek(SeekFrom::Start(u64::from(start))).ok()?;
    let mut out = vec![0u8; usize::try_from(size).ok()?];
    file.read_exact(&mut out).ok()?;
    Some(out)
}

/// Where the section `name` is in a PE image whose first bytes are `head`:
/// its file offset and size.
fn locate(head: &[u8], name: &[u8]) -> Option<(u32, u32)> {
    let u16_at = |i: usize| Some(u16::from_le_bytes(head.get(i..i + 2)?.try_into().ok()?));
    let u32_at = |i: usize| Some(u32::from_le_bytes(head.get(i..i + 4)?.try_into().ok()?));
    let at = usize::try_from(u32_at(0x3c)?).ok()?;
    if head.get(at..at + 4)? != b"PE\0\0" {
        return None;
    }
    let count = usize::from(u16_at(at + 6)?);
    let table = at + 24 + usize::from(u16_at(at + 20)?);
    (0..count).find_map(|i| {
        let s = table + 40 * i;
        let n = head.get(s..s + 8)?;
        let end = n.iter().position(|&c| c == 0).unwrap_or(8);
        if &n[..end] != name {
            return None;
        }
        Some((u32_at(s + 20)?, u32_at(s + 8)?.min(u32_at(s + 16)?)))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_uki_s_version_comes_from_its_osrel_section() {
        // A PE header at 0x40 with one section, .osrel, at 0x200.
        let mut pe = vec![0u8; 0x300];
        pe[0x3c] = 0x40;
        pe[0x40..0x44].copy_from_slice(b"PE\0\0");
        pe[0x46] = 1;
        pe[0x54] = 0; // no optional header
        let s = 0x40 + 24;
        pe[s..s + 6].copy_from_slice(b".osrel");
        let text = b"ID=hull\nIMAGE_VERSION=2.1\n";
        pe[s + 8..s + 12].copy_from_slice(&u32::try_from(text.len()).expect("short").to_le_bytes());
        pe[s + 16..s + 20].copy_from_slice(&0x100u32.to_le_bytes());
        pe[s + 20..s + 24].copy_from_slice(&0x200u32.to_le_bytes());
        pe[0x200..0x200 + text.len()].copy_from_slice(text);
        assert_eq!(
            version(&mut std::io::Cursor::new(&pe)).as_deref(),
            Some("2.1")
        );
        assert!(version(&mut std::io::Cursor::new(&pe[..0x100])).is_none());
        assert!(root_hash(&mut std::io::Cursor::new(&pe)).is_none());
    }
}
