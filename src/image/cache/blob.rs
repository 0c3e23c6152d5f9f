//! Content-addressed blobs: digests, and writing a blob so that it appears only
//! once its bytes are verified.
//!
//! Owns: [`BlobWriter`] (temp file in the cache,
//! hash while writing, size and digest check, fsync, rename) and rehashing a
//! stored blob. Must not know about registries or index.json.

use std::fs::File;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use sha2::{Digest as _, Sha256};

pub use crate::image::digest::{Digest, DigestError};

#[derive(Debug, thiserror::Error)]
pub enum BlobError {
    #[error(transparent)]
    BadDigest(#[from] DigestError),
    #[error("cannot write blob {digest} under {path}")]
    Write {
        digest: Digest,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot read blob {digest} at {path}")]
    Read {
        digest: Digest,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("digest mismatch for blob {expected}: the bytes hash to {actual}")]
    Mismatch { expected: Digest, actual: Digest },
    #[error("size mismatch for blob {digest}: expected {expected} bytes, got {actual}")]
    Size {
        digest: Digest,
        expected: u64,
        actual: u64,
    },
}

/// Writes one blob into a temp file, hashing as it goes; [`BlobWriter::commit`]
/// makes it visible at `dest` only if digest and size match. Dropped without a
/// commit, the temp file is removed.
pub struct BlobWriter {
    file: tempfile::NamedTempFile,
    hasher: Sha256,
    written: u64,
    expected: Digest,
    dest: PathBuf,
}

impl BlobWriter {
    /// A writer for the blob `expected`, temp file in `tmp_dir`, final path `dest`.
    pub fn new(tmp_dir: &Path, dest: PathBuf, expected: Digest) -> Result<Self, BlobError> {
        let file = tempfile::Builder::new()
            .prefix("blob-")
            .tempfile_in(tmp_dir)
            .map_err(|source| BlobError::Write {
                digest: expected.clone(),
                path: tmp_dir.to_path_buf(),
                source,
            })?;
        Ok(BlobWriter {
            file,
            hasher: Sha256::new(),
            written: 0,
            expected,
            dest,
        })
    }

    pub fn write(&mut self, bytes: &[u8]) -> Result<(), BlobError> {
        self.hasher.update(bytes);
        self.written += bytes.len() as u64;
        self.file
            .as_file_mut()
            .write_all(bytes)
            .map_err(|source| self.write_error(source))
    }

    /// Bytes written so far (where a resumed download continues).
    pub fn written(&self) -> u64 {
        self.written
    }

    /// Throws away what was written, to start again from byte 0.
    pub fn reset(&mut self) -> Result<(), BlobError> {
        self.hasher = Sha256::new();
        self.written = 0;
        let f = self.file.as_file_mut();
        f.set_len(0).map_err(|e| self.write_error(e))?;
        use std::io::Seek;
        self.file
            .as_file_mut()
            .rewind()
            .map_err(|e| self.write_error(e))
    }

    fn write_error(&self, source: std::io::Error) -> BlobError {
        BlobError::Write {
            digest: self.expected.clone(),
            path: self.file.path().to_path_buf(),
            source,
        }
    }

    /// Verifies size (when known) and digest, syncs, and renames into place.
    pub fn commit(self, size: Option<u64>) -> Result<(), BlobError> {
        if let Some(expected) = size {
            if expected != self.written {
                return Err(BlobError::Size {
                    digest: self.expected,
                    expected,
                    actual: self.written,
                });
            }
        }
        let actual = Digest::from_hasher(self.hasher.clone());
        if actual != self.expected {
            return Err(BlobError::Mismatch {
                expected: self.expected,
                actual,
            });
        }
        self.file
            .as_file()
            .sync_all()
            .map_err(|e| self.write_error(e))?;
        let BlobWriter {
            file,
            expected,
            dest,
            ..
        } = self;
        file.persist(&dest).map_err(|e| BlobError::Write {
            digest: expected.clone(),
            path: dest.clone(),
            source: e.error,
        })?;
        // Make the rename durable too.
        if let Some(dir) = dest.parent() {
            if let Ok(d) = File::open(dir) {
                let _ = d.sync_all();
            }
        }
        Ok(())
    }
}

/// Rehashes the file at `path`; returns its digest and size.
pub fn hash_file(path: &Path, digest: &Digest) -> Result<(Digest, u64), BlobError> {
    let read_err = |source| BlobError::Read {
        digest: digest.clone(),
        path: path.to_path_buf(),
        source,
    };
    let mut f = File::open(path).map_err(read_err)?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 16];
    let mut size = 0u64;
    loop {
        let n = f.read(&mut buf).map_err(read_err)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        size += n as u64;
    }
    Ok((Digest::from_hasher(hasher), size))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digests_are_checked_for_shape() {
        let d = Digest::of(b"hello");
        assert_eq!(
            d.as_str(),
            "sha256:2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824"
        );
        assert!(Digest::parse(d.as_str()).is_ok());
        assert!(Digest::parse("sha256:../../etc/passwd").is_err());
        assert!(Digest::parse("sha512:abcd").is_err());
        assert!(Digest::parse(&d.as_str().to_uppercase()).is_err());
    }

    #[test]
    fn a_blob_appears_only_when_verified() {
        let dir = tempfile::tempdir().expect("tmp");
        let good = Digest::of(b"hello");
        let dest = dir.path().join("good");
        let mut w = BlobWriter::new(dir.path(), dest.clone(), good.clone()).expect("writer");
        w.write(b"hel").expect("write");
        w.write(b"lo").expect("write");
        w.commit(Some(5)).expect("commit");
        assert_eq!(std::fs::read(&dest).expect("read"), b"hello");

        let bad_dest = dir.path().join("bad");
        let mut w = BlobWriter::new(dir.path(), bad_dest.clone(), good.clone()).expect("writer");
        w.write(b"jello").expect("write");
        assert!(matches!(w.commit(Some(5)), Err(BlobError::Mismatch { .. })));
        assert!(!bad_dest.exists());

        let mut w = BlobWriter::new(dir.path(), bad_dest.clone(), good).expect("writer");
        w.write(b"hell").expect("write");
        w.reset().expect("reset");
        w.write(b"hello!").expect("write");
        assert!(matches!(w.commit(Some(5)), Err(BlobError::Size { .. })));
        assert!(!bad_dest.exists());
        let left: Vec<_> = std::fs::read_dir(dir.path()).expect("ls").collect();
        assert_eq!(left.len(), 1, "only the committed blob is left");
    }
}
