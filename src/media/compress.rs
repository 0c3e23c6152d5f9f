//! Compressing an output stream: gzip deflated in parallel blocks
//! ([`pgzip`]), zstd multithreaded, or none.
//!
//! Owns: the codecs, their levels and defaults, and the [`Compressor`]
//! writer. Must not know what it compresses.

use std::io::{self, Write};

use super::pgzip;

/// The codec for initrds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Compression {
    Gzip,
    Zstd,
    None,
}

impl Compression {
    /// The level used unless one is asked for: gzip 6 (gzip's own default);
    /// zstd 3, fast (the kernel decompresses every zstd level equally fast,
    /// so a higher one only buys a smaller file for a slower build).
    pub fn default_level(self) -> u32 {
        match self {
            Compression::Gzip => 6,
            Compression::Zstd => 3,
            Compression::None => 0,
        }
    }

    /// The levels the codec takes: gzip 1 to 9, zstd 1 to 19, none only 0.
    pub fn levels(self) -> std::ops::RangeInclusive<u32> {
        match self {
            Compression::Gzip => 1..=9,
            Compression::Zstd => 1..=19,
            Compression::None => 0..=0,
        }
    }

    /// `level` if the codec takes it, else why not.
    pub fn check_level(self, level: u32) -> Result<u32, String> {
        let levels = self.levels();
        if levels.contains(&level) {
            Ok(level)
        } else {
            Err(format!(
                "--compression-level {level}: {} takes levels {} to {}",
                self.name(),
                levels.start(),
                levels.end()
            ))
        }
    }

    /// The codec's name, as `--compression` takes it.
    pub fn name(self) -> &'static str {
        match self {
            Compression::Gzip => "gzip",
            Compression::Zstd => "zstd",
            Compression::None => "none",
        }
    }
}

/// A writer that compresses into `out`: one gzip member or one zstd frame
/// (both concatenate, so a caller makes a stream of parts by finishing one
/// compressor and starting the next on the same writer). Its bytes depend
/// on what is written, never on how it is cut into writes or flushes.
pub struct Compressor<W: Write> {
    inner: Inner<W>,
}

enum Inner<W: Write> {
    Gzip(pgzip::Writer<W>),
    Zstd(zstd::stream::write::Encoder<'static, W>),
    None(W),
}

/// Cores to use.
pub fn threads() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

impl<W: Write> Compressor<W> {
    /// A compressor with `codec` at `level` (one [`Compression::check_level`]
    /// accepts).
    pub fn new(out: W, codec: Compression, level: u32) -> io::Result<Self> {
        let inner = match codec {
            Compression::Gzip => Inner::Gzip(pgzip::Writer::new(out, level, threads())?),
            Compression::Zstd => {
                let level = i32::try_from(level).unwrap_or(3);
                let mut enc = zstd::stream::write::Encoder::new(out, level)?;
                enc.multithread(u32::try_from(threads()).unwrap_or(1))?;
                enc.include_checksum(true)?;
                Inner::Zstd(enc)
            }
            Compression::None => Inner::None(out),
        };
        Ok(Compressor { inner })
    }

    /// Finishes the member or frame and returns the writer.
    pub fn finish(self) -> io::Result<W> {
        match self.inner {
            Inner::Gzip(w) => w.finish(),
            Inner::Zstd(enc) => enc.finish(),
            Inner::None(out) => Ok(out),
        }
    }
}

impl<W: Write> Write for Compressor<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match &mut self.inner {
            Inner::Gzip(w) => w.write(buf),
            Inner::Zstd(enc) => enc.write(buf),
            Inner::None(out) => out.write(buf),
        }
    }

    /// Does not cut the compressed stream: the bytes depend on the input
    /// alone, and reach the writer when the member or frame is finished. (A
    /// zstd flush ends a block and, multithreaded, hands the workers a job of
    /// what came since the last one; the cpio crate flushes after every
    /// padded entry, which made the bench's 327 MB initrd 8,580 blocks of
    /// small jobs: 1.2 s instead of 0.9 s, and 1.2% larger.)
    fn flush(&mut self) -> io::Result<()> {
        match &mut self.inner {
            Inner::Gzip(_) | Inner::Zstd(_) => Ok(()),
            Inner::None(out) => out.flush(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    #[test]
    fn gzip_members_decode_as_one_stream() {
        let data: Vec<u8> = (0..10_000_000u32)
            .map(|i| (i % 251).to_le_bytes()[0])
            .collect();
        let mut out = Vec::new();
        for piece in data.chunks(3_000_000) {
            let mut c = Compressor::new(&mut out, Compression::Gzip, 6).expect("new");
            c.write_all(piece).expect("write");
            c.finish().expect("finish");
        }
        let mut back = Vec::new();
        flate2::read::MultiGzDecoder::new(&out[..])
            .read_to_end(&mut back)
            .expect("decode");
        assert_eq!(back, data);
        let again = {
            let mut out = Vec::new();
            for piece in data.chunks(3_000_000) {
                let mut c = Compressor::new(&mut out, Compression::Gzip, 6).expect("new");
                c.write_all(piece).expect("write");
                c.finish().expect("finish");
            }
            out
        };
        assert_eq!(out, again, "deterministic");
    }

    #[test]
    fn zstd_round_trip() {
        let data = vec![42u8; 1_000_000];
        let mut c = Compressor::new(Vec::new(), Compression::Zstd, 3).expect("new");
        c.write_all(&data).expect("write");
        let out = c.finish().expect("finish");
        assert_eq!(zstd::decode_all(&out[..]).expect("decode"), data);
    }

    #[test]
    fn writes_and_flushes_do_not_change_the_bytes() {
        // Entries of a cpio: odd sizes, a flush after each, as the cpio crate does.
        let data: Vec<u8> = (0..3_000_000u32)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 23).to_le_bytes()[0] & 0x3f)
            .collect();
        for codec in [Compression::Gzip, Compression::Zstd, Compression::None] {
            let whole = {
                let mut c = Compressor::new(Vec::new(), codec, codec.default_level()).expect("new");
                c.write_all(&data).expect("write");
                c.finish().expect("finish")
            };
            let cut = {
                let mut c = Compressor::new(Vec::new(), codec, codec.default_level()).expect("new");
                let mut rest = &data[..];
                let mut n = 1usize;
                while !rest.is_empty() {
                    let (entry, next) = rest.split_at(n.min(rest.len()));
                    c.write_all(entry).expect("write");
                    c.flush().expect("flush");
                    rest = next;
                    n = n * 7 % 70_001 + 1;
                }
                c.finish().expect("finish")
            };
            assert!(whole == cut, "{}: flushes changed the bytes", codec.name());
        }
    }

    #[test]
    fn levels_have_defaults_and_ranges_per_codec() {
        assert_eq!(Compression::Gzip.default_level(), 6);
        assert_eq!(Compression::Zstd.default_level(), 3);
        assert_eq!(Compression::Zstd.check_level(19), Ok(19));
        let e = Compression::Gzip.check_level(12).expect_err("too high");
        assert!(e.contains("gzip takes levels 1 to 9"), "{e}");
        assert!(Compression::None.check_level(1).is_err());
        for codec in [Compression::Gzip, Compression::Zstd, Compression::None] {
            assert!(codec.levels().contains(&codec.default_level()));
        }
    }

    #[test]
    fn a_higher_zstd_level_gives_a_smaller_stream_of_the_same_bytes() {
        let data: Vec<u8> = (0..200_000u32)
            .flat_map(|i| (i % 251).to_le_bytes())
            .collect();
        let pack = |level| {
            let mut c = Compressor::new(Vec::new(), Compression::Zstd, level).expect("new");
            c.write_all(&data).expect("write");
            c.finish().expect("finish")
        };
        let (fast, small) = (pack(1), pack(19));
        assert!(
            small.len() <= fast.len(),
            "{} > {}",
            small.len(),
            fast.len()
        );
        for z in [fast, small] {
            assert_eq!(zstd::decode_all(&z[..]).expect("decodes"), data);
        }
    }
}
