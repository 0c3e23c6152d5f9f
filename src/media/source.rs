//! A file's contents as the media writers take them: a length known up front
//! and a reader opened when the bytes are written, so a kernel, an initrd or a
//! UKI goes from its file into an image without being held in memory.
//!
//! Owns: the [`Source`] trait, its implementations for bytes in memory and
//! files on disk, and copying or hashing a source with its length checked.
//! Must not know which format a source ends up in.

use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

/// Contents of a known length, read when written.
pub trait Source {
    /// The number of bytes [`Source::open`] yields.
    fn len(&self) -> u64;
    /// A reader over the contents, from the first byte.
    fn open(&self) -> io::Result<Box<dyn Read + '_>>;

    fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Bytes in memory. Implemented for sized types (a slice reference, an
/// array, a vector, a string) so that each coerces to `&dyn Source`.
macro_rules! bytes_source {
    ($($t:ty),*) => {$(
        impl Source for $t {
            fn len(&self) -> u64 {
                AsRef::<[u8]>::as_ref(self).len() as u64
            }
            fn open(&self) -> io::Result<Box<dyn Read + '_>> {
                Ok(Box::new(AsRef::<[u8]>::as_ref(self)))
            }
        }
    )*};
}

bytes_source!(&[u8], &str, Vec<u8>, String);

impl<const N: usize> Source for [u8; N] {
    fn len(&self) -> u64 {
        N as u64
    }
    fn open(&self) -> io::Result<Box<dyn Read + '_>> {
        Ok(Box::new(&self[..]))
    }
}

/// A file on disk, with the length it had when it was named.
#[derive(Debug, Clone)]
pub struct FileSource {
    path: PathBuf,
    len: u64,
}

impl FileSource {
    pub fn new(path: &Path) -> io::Result<Self> {
        Ok(FileSource {
            path: path.to_path_buf(),
            len: std::fs::metadata(path)?.len(),
        })
    }
}

impl Source for FileSource {
    fn len(&self) -> u64 {
        self.len
    }
    fn open(&self) -> io::Result<Box<dyn Read + '_>> {
        Ok(Box::new(io::BufReader::with_capacity(
            1 << 16,
            std::fs::File::open(&self.path)?,
        )))
    }
}

/// Writes all of `src` to `out`; a source that yields another number of
/// bytes than it said (a file that changed under the build) is an error.
pub fn copy(src: &dyn Source, out: &mut dyn Write) -> io::Result<()> {
    let want = src.len();
    let got = io::copy(&mut src.open()?.take(want), out)?;
    if got != want {
        return Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            format!("a source of {want} bytes ended after {got}"),
        ));
    }
    Ok(())
}

/// [`super::content_hash`] of sources, read one after another.
pub fn content_hash(parts: &[&dyn Source]) -> io::Result<[u8; 32]> {
    use sha2::Digest as _;
    let mut h = sha2::Sha256::new();
    for p in parts {
        copy(*p, &mut h)?;
    }
    Ok(h.finalize().into())
}

/// The first `n` bytes of `src` (all of it when shorter).
pub fn head(src: &dyn Source, n: usize) -> io::Result<Vec<u8>> {
    let mut v = Vec::with_capacity(n.min(1 << 20));
    src.open()?.take(n as u64).read_to_end(&mut v)?;
    Ok(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sources_hash_as_their_bytes_do() {
        let dir = tempfile::tempdir().expect("dir");
        let p = dir.path().join("f");
        std::fs::write(&p, b"world").expect("write");
        let file = FileSource::new(&p).expect("file");
        let parts: [&dyn Source; 2] = [b"hello ", &file];
        assert_eq!(
            content_hash(&parts).expect("hash"),
            crate::media::content_hash(&[b"hello ", b"world"])
        );
    }

    #[test]
    fn a_file_that_shrank_is_an_error() {
        let dir = tempfile::tempdir().expect("dir");
        let p = dir.path().join("f");
        std::fs::write(&p, b"0123456789").expect("write");
        let file = FileSource::new(&p).expect("file");
        std::fs::write(&p, b"0123").expect("shrink");
        assert!(copy(&file, &mut Vec::new()).is_err());
    }
}
