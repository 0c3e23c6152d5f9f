//! Little-endian fields of PE/COFF headers, read from a byte slice: what the
//! UKI writer and the Authenticode signer both parse. Must not know either.

/// The `u16` at `at`, if the slice holds it.
pub fn u16_at(b: &[u8], at: usize) -> Option<u16> {
    b.get(at..at + 2).map(|s| u16::from_le_bytes([s[0], s[1]]))
}

/// The `u32` at `at`, if the slice holds it.
pub fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    b.get(at..at + 4)
        .map(|s| u32::from_le_bytes([s[0], s[1], s[2], s[3]]))
}
