//! Where file contents live while a tree is built: small ones in memory, the
//! rest appended to one temp file and read back by offset, with the BLAKE3
//! hash of their bytes taken as they are stored (what a content is, for keys
//! like the kept initrd parts', without reading it again).
//!
//! Owns: the [`Content`] handle and the [`Pack`] file. Must not know paths.

use std::fs::File;
use std::io::{Read, Write};
use std::os::unix::fs::FileExt;
use std::sync::atomic::{AtomicU64, Ordering};

/// Contents up to this size stay in memory.
const INLINE_MAX: u64 = 4096;

/// A file's contents.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Content {
    Inline(Vec<u8>),
    /// `len` bytes at `offset` of the build's pack file, whose BLAKE3 hash
    /// is `hash`.
    Packed {
        offset: u64,
        len: u64,
        hash: [u8; 32],
    },
}

impl Content {
    pub fn len(&self) -> u64 {
        match self {
            Content::Inline(v) => v.len() as u64,
            Content::Packed { len, .. } => *len,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Writes what identifies the bytes: `I` and the bytes of an inline
    /// content, `H` and the BLAKE3 hash of a packed one. After a length
    /// (a cpio header's), the same identity means the same bytes.
    pub fn write_identity(&self, out: &mut dyn Write) -> std::io::Result<()> {
        match self {
            Content::Inline(v) => {
                out.write_all(b"I")?;
                out.write_all(v)
            }
            Content::Packed { hash, .. } => {
                out.write_all(b"H")?;
                out.write_all(hash)
            }
        }
    }
}

/// Bytes copied at a time, at most.
const COPY_MAX: u64 = 1 << 20;

/// A copy buffer for `len` bytes: no bigger than they need (most files are
/// small, and a buffer is made per file), no bigger than [`COPY_MAX`].
fn buf_len(len: u64) -> usize {
    usize::try_from(len.clamp(1, COPY_MAX)).unwrap_or(1 << 16)
}

/// The temp file file contents are appended to. Several threads may store
/// at once: each reserves its range first, then writes it.
#[derive(Debug)]
pub struct Pack {
    file: File,
    len: AtomicU64,
}

impl Pack {
    /// A pack in a new anonymous temp file under `dir` (gone when dropped).
    pub fn new(dir: &std::path::Path) -> std::io::Result<Self> {
        Ok(Pack {
            file: tempfile::tempfile_in(dir)?,
            len: AtomicU64::new(0),
        })
    }

    /// Stores exactly `size` bytes from `reader`. Fewer bytes is an error.
    pub fn store(&self, reader: &mut dyn Read, size: u64) -> std::io::Result<Content> {
        if size <= INLINE_MAX {
            let mut v = Vec::with_capacity(usize::try_from(size).unwrap_or(0));
            reader.take(size).read_to_end(&mut v)?;
            if v.len() as u64 != size {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    format!("expected {size} bytes, got {}", v.len()),
                ));
            }
            return Ok(Content::Inline(v));
        }
        let offset = self.len.fetch_add(size, Ordering::Relaxed);
        let mut buf = vec![0u8; buf_len(size)];
        let mut hash = blake3::Hasher::new();
        let mut left = size;
        let mut pos = offset;
        while left > 0 {
            let want = usize::try_from(left.min(buf.len() as u64)).unwrap_or(buf.len());
            let n = reader.read(&mut buf[..want])?;
            if n == 0 {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    format!("expected {size} bytes, got {}", size - left),
                ));
            }
            self.file.write_all_at(&buf[..n], pos)?;
            hash.update(&buf[..n]);
            pos += n as u64;
            left -= n as u64;
        }
        Ok(Content::Packed {
            offset,
            len: size,
            hash: *hash.finalize().as_bytes(),
        })
    }

    /// Stores bytes already in memory.
    pub fn store_bytes(&self, bytes: &[u8]) -> std::io::Result<Content> {
        self.store(&mut &bytes[..], bytes.len() as u64)
    }

    /// Copies `content` to `out`.
    pub fn copy_to(&self, content: &Content, out: &mut dyn Write) -> std::io::Result<()> {
        match content {
            Content::Inline(v) => out.write_all(v),
            Content::Packed { offset, len, .. } => {
                let mut buf = vec![0u8; buf_len(*len)];
                let mut pos = *offset;
                let end = offset + len;
                while pos < end {
                    let want =
                        usize::try_from((end - pos).min(buf.len() as u64)).unwrap_or(buf.len());
                    self.file.read_exact_at(&mut buf[..want], pos)?;
                    out.write_all(&buf[..want])?;
                    pos += want as u64;
                }
                Ok(())
            }
        }
    }

    /// A reader over `content`.
    pub fn reader<'a>(&'a self, content: &'a Content) -> Box<dyn Read + 'a> {
        match content {
            Content::Inline(v) => Box::new(&v[..]),
            Content::Packed { offset, len, .. } => Box::new(PackReader {
                file: &self.file,
                pos: *offset,
                end: offset + len,
            }),
        }
    }

    /// Reads `content` whole (for small files Hull itself inspects).
    pub fn read(&self, content: &Content) -> std::io::Result<Vec<u8>> {
        let mut v = Vec::new();
        self.copy_to(content, &mut v)?;
        Ok(v)
    }
}

struct PackReader<'a> {
    file: &'a File,
    pos: u64,
    end: u64,
}

impl Read for PackReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let left = self.end - self.pos;
        if left == 0 {
            return Ok(0);
        }
        let want = usize::try_from(left.min(buf.len() as u64)).unwrap_or(buf.len());
        let n = self.file.read_at(&mut buf[..want], self.pos)?;
        if n == 0 {
            return Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "pack file is shorter than a stored file",
            ));
        }
        self.pos += n as u64;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_inline_large_packed_short_reads_fail() {
        let dir = tempfile::tempdir().expect("tmp");
        let p = Pack::new(dir.path()).expect("pack");
        assert_eq!(
            p.store_bytes(b"hi").expect("store"),
            Content::Inline(b"hi".to_vec())
        );
        let big = vec![9u8; 100_000];
        let c = p.store_bytes(&big).expect("store");
        assert!(matches!(
            c,
            Content::Packed {
                offset: 0,
                len: 100_000,
                ..
            }
        ));
        let same = p.store_bytes(&big).expect("store");
        let mut other = big.clone();
        other[99_999] = 8;
        let other = p.store_bytes(&other).expect("store");
        let id = |c: &Content| {
            let mut v = Vec::new();
            c.write_identity(&mut v).expect("identity");
            v
        };
        assert_eq!(id(&c), id(&same), "the same bytes elsewhere in the pack");
        assert_ne!(id(&c), id(&other));
        assert_eq!(id(&c)[1..], *blake3::hash(&big).as_bytes());
        assert_eq!(id(&Content::Inline(b"hi".to_vec())), b"Ihi");
        assert_eq!(p.read(&c).expect("read"), big);
        let short = vec![1u8; 5000];
        assert!(p.store(&mut &short[..], 10_000_000_000).is_err());
    }
}
