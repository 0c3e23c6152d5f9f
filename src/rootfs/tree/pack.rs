//! Where file contents live while a tree is built: small ones in memory, the
//! rest appended to one temp file and read back by offset, with the BLAKE3
//! hash of their bytes taken as they are stored (what a content is, for keys
//! like the kept initrd parts', without reading it again). Packs written
//! before (the cache's unpacked layers) are attached read-only beside it.
//!
//! Owns: the [`Content`] handle and the [`Pack`] files. Must not know paths.

use std::fs::File;
use std::io::{Read, Write};
use std::os::unix::fs::FileExt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use serde::{Deserialize, Serialize};

/// Contents up to this size stay in memory.
const INLINE_MAX: u64 = 4096;

/// A file's contents.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Content {
    Inline(Vec<u8>),
    /// `len` bytes at `offset` of the pack's file number `file` (0: the one
    /// it appends to, others: attached), whose BLAKE3 hash is `hash`.
    Packed {
        file: u32,
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

    /// The same content, found in the pack's file number `file` (for
    /// contents stored in a pack that is then attached to another).
    pub fn in_file(&mut self, file: u32) {
        if let Content::Packed { file: f, .. } = self {
            *f = file;
        }
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

/// The file contents are appended to (file 0), and files of packs written
/// before, attached read-only (1 and up). Several threads may store at
/// once: each reserves its range first, then writes it.
#[derive(Debug)]
pub struct Pack {
    file: File,
    len: AtomicU64,
    attached: RwLock<Vec<Arc<File>>>,
}

/// One of a pack's files, borrowed or shared.
enum FileRef<'a> {
    Own(&'a File),
    Attached(Arc<File>),
}

impl std::ops::Deref for FileRef<'_> {
    type Target = File;
    fn deref(&self) -> &File {
        match self {
            FileRef::Own(f) => f,
            FileRef::Attached(f) => f,
        }
    }
}

impl Pack {
    /// A pack in a new anonymous temp file under `dir` (gone when dropped).
    pub fn new(dir: &std::path::Path) -> std::io::Result<Self> {
        Pack::over(tempfile::tempfile_in(dir)?)
    }

    /// A pack over `file`: what it holds is read back at the offsets it was
    /// stored at (a kept pack), and new contents are appended at its end.
    pub fn over(file: File) -> std::io::Result<Self> {
        let len = file.metadata()?.len();
        Ok(Pack {
            file,
            len: AtomicU64::new(len),
            attached: RwLock::new(Vec::new()),
        })
    }

    /// The file contents were appended to, and its length.
    pub fn into_file(self) -> (File, u64) {
        let len = self.len.load(Ordering::Relaxed);
        (self.file, len)
    }

    /// Attaches `file`, a pack's file written before, read-only; returns its
    /// number, the `file` of [`Content::Packed`] for contents in it.
    pub fn attach(&self, file: File) -> u32 {
        let mut files = self.attached.write().unwrap_or_else(|e| e.into_inner());
        files.push(Arc::new(file));
        u32::try_from(files.len()).unwrap_or(u32::MAX)
    }

    fn file(&self, n: u32) -> std::io::Result<FileRef<'_>> {
        if n == 0 {
            return Ok(FileRef::Own(&self.file));
        }
        let files = self.attached.read().unwrap_or_else(|e| e.into_inner());
        usize::try_from(n - 1)
            .ok()
            .and_then(|i| files.get(i))
            .map(|f| FileRef::Attached(Arc::clone(f)))
            .ok_or_else(|| std::io::Error::other(format!("no pack file {n}")))
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
            file: 0,
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
            Content::Packed {
                file, offset, len, ..
            } => {
                let file = self.file(*file)?;
                let mut buf = vec![0u8; buf_len(*len)];
                let mut pos = *offset;
                let end = offset + len;
                while pos < end {
                    let want =
                        usize::try_from((end - pos).min(buf.len() as u64)).unwrap_or(buf.len());
                    file.read_exact_at(&mut buf[..want], pos)?;
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
            Content::Packed {
                file, offset, len, ..
            } => match self.file(*file) {
                Ok(file) => Box::new(PackReader {
                    file,
                    pos: *offset,
                    end: offset + len,
                }),
                Err(e) => Box::new(FailedReader(Some(e))),
            },
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
    file: FileRef<'a>,
    pos: u64,
    end: u64,
}

/// A reader that fails once with the error it holds.
struct FailedReader(Option<std::io::Error>);

impl Read for FailedReader {
    fn read(&mut self, _: &mut [u8]) -> std::io::Result<usize> {
        Err(self
            .0
            .take()
            .unwrap_or_else(|| std::io::Error::other("unreadable content")))
    }
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
                file: 0,
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
        let mut elsewhere = c.clone();
        elsewhere.in_file(3);
        assert!(p.read(&elsewhere).is_err(), "no file 3 is attached");
        let other_pack = Pack::new(dir.path()).expect("pack");
        let (file, len) = {
            let q = Pack::new(dir.path()).expect("pack");
            q.store_bytes(&big).expect("store");
            q.into_file()
        };
        assert_eq!(len, 100_000);
        let n = other_pack.attach(file);
        let mut attached = c.clone();
        attached.in_file(n);
        assert_eq!(other_pack.read(&attached).expect("read"), big);
        let short = vec![1u8; 5000];
        assert!(p.store(&mut &short[..], 10_000_000_000).is_err());
    }
}
