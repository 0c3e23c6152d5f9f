//! Content digests: the `sha256:HEX` type every image, blob and cache entry
//! is named by, checked so it is safe in a path. Shared by `oci` and `cache`
//! (neither imports the other for it).

use std::fmt;

use sha2::{Digest as _, Sha256};

/// A `sha256:<64 lowercase hex>` digest, checked so it is safe in a path.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Digest(String);

/// A digest that is not `sha256:` and 64 lowercase hex digits.
#[derive(Debug, Clone, thiserror::Error)]
#[error("invalid digest \"{0}\": only sha256:<64 hex digits> is supported")]
pub struct DigestError(pub String);

impl Digest {
    pub fn parse(s: &str) -> Result<Self, DigestError> {
        match s.strip_prefix("sha256:") {
            Some(hex)
                if hex.len() == 64
                    && hex
                        .bytes()
                        .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)) =>
            {
                Ok(Digest(s.to_string()))
            }
            _ => Err(DigestError(s.to_string())),
        }
    }

    /// The digest of `bytes`.
    pub fn of(bytes: &[u8]) -> Self {
        Digest::from_hasher(Sha256::new_with_prefix(bytes))
    }

    /// The digest of what `h` has hashed.
    pub fn from_hasher(h: Sha256) -> Self {
        Digest(format!("sha256:{}", hex::encode(h.finalize())))
    }

    /// The 64 hex digits.
    pub fn hex(&self) -> &str {
        &self.0["sha256:".len()..]
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A writer that passes bytes on to `W` and hashes them: the digest and
/// size of a blob written as a stream, without holding it.
pub struct DigestWriter<W> {
    out: W,
    hash: Sha256,
    size: u64,
}

impl<W: std::io::Write> DigestWriter<W> {
    pub fn new(out: W) -> Self {
        DigestWriter {
            out,
            hash: Sha256::new(),
            size: 0,
        }
    }

    /// The writer, and the digest and size of what was written.
    pub fn finish(self) -> (W, Digest, u64) {
        (self.out, Digest::from_hasher(self.hash), self.size)
    }
}

impl<W: std::io::Write> std::io::Write for DigestWriter<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.out.write(buf)?;
        self.hash.update(&buf[..n]);
        self.size += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.out.flush()
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn a_digest_writer_hashes_what_it_passes_on() {
        let mut w = DigestWriter::new(Vec::new());
        w.write_all(b"hello ").expect("write");
        w.write_all(b"world").expect("write");
        let (out, digest, size) = w.finish();
        assert_eq!(out, b"hello world");
        assert_eq!(size, 11);
        assert_eq!(digest, Digest::of(b"hello world"));
    }
}
