//! Parallel gzip: one gzip member made of blocks deflated on several cores.
//!
//! Owns: [`Writer`], which cuts its input into [`BLOCK`]-sized blocks, has a
//! pool of worker threads deflate each (primed with the previous block's last
//! 32 KiB, as a single-threaded deflate could have referred to them) and ending
//! in a sync flush, so the blocks concatenate into one raw deflate stream; the
//! member ends with an empty final block, the combined CRC-32 and the length.
//! Written by hand because no maintained crate makes a gzip member of
//! deterministic bytes with bounded memory (the output depends only on the
//! input and the level, never on the number of cores). Must not know what it
//! compresses.

use std::collections::BTreeMap;
use std::io::{self, Write};
use std::sync::mpsc;
use std::thread::JoinHandle;

/// Uncompressed bytes per block.
pub const BLOCK: usize = 1 << 20;
/// Deflate's window: how far back a block may refer.
const WINDOW: usize = 32 << 10;
/// Blocks queued or being deflated per worker, at most.
const IN_FLIGHT_PER_WORKER: usize = 2;

/// The gzip header: no name, no time, unknown OS (deterministic).
const HEADER: [u8; 10] = [0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0xff];
/// An empty final fixed-Huffman deflate block: ends the stream.
const LAST_BLOCK: [u8; 2] = [0x03, 0x00];

struct Job {
    seq: u64,
    dictionary: Vec<u8>,
    data: Vec<u8>,
}

struct Done {
    seq: u64,
    len: u64,
    deflated: io::Result<Vec<u8>>,
    crc: crc32fast::Hasher,
}

/// Deflates `data` as raw deflate blocks ending in a sync flush (byte
/// aligned, not final), after priming with `dictionary`.
fn deflate_block(dictionary: &[u8], data: &[u8], level: u32) -> io::Result<Vec<u8>> {
    let mut c = flate2::Compress::new(flate2::Compression::new(level), false);
    if !dictionary.is_empty() {
        c.set_dictionary(dictionary).map_err(io::Error::other)?;
    }
    let mut out = Vec::with_capacity(data.len() / 2 + 4096);
    loop {
        let consumed = usize::try_from(c.total_in()).unwrap_or(usize::MAX);
        let rest = data.get(consumed..).unwrap_or_default();
        c.compress_vec(rest, &mut out, flate2::FlushCompress::Sync)
            .map_err(io::Error::other)?;
        let all_in = usize::try_from(c.total_in()).is_ok_and(|n| n == data.len());
        // The flush is complete when it left room in the output.
        if all_in && out.len() < out.capacity() {
            return Ok(out);
        }
        out.reserve(out.capacity().max(4096));
    }
}

fn worker(
    jobs: std::sync::Arc<std::sync::Mutex<mpsc::Receiver<Job>>>,
    done: mpsc::Sender<Done>,
    level: u32,
) {
    loop {
        let job = match jobs.lock() {
            Ok(rx) => rx.recv(),
            Err(_) => return,
        };
        let Ok(job) = job else { return };
        let mut crc = crc32fast::Hasher::new();
        crc.update(&job.data);
        let deflated = deflate_block(&job.dictionary, &job.data, level);
        if done
            .send(Done {
                seq: job.seq,
                len: job.data.len() as u64,
                deflated,
                crc,
            })
            .is_err()
        {
            return;
        }
    }
}

/// A writer that makes one gzip member of everything written to it.
pub struct Writer<W: Write> {
    out: W,
    block: Vec<u8>,
    /// The last [`WINDOW`] bytes before `block`.
    tail: Vec<u8>,
    pool: Pool,
    done: mpsc::Receiver<Done>,
    sent: u64,
    written: u64,
    /// Finished blocks waiting for earlier ones.
    ready: BTreeMap<u64, Done>,
    crc: crc32fast::Hasher,
    len: u64,
}

impl<W: Write> Writer<W> {
    /// A member at `level` (1 to 9) deflated by `threads` workers.
    pub fn new(mut out: W, level: u32, threads: usize) -> io::Result<Self> {
        out.write_all(&HEADER)?;
        let (job_tx, job_rx) = mpsc::channel::<Job>();
        let (done_tx, done_rx) = mpsc::channel::<Done>();
        let job_rx = std::sync::Arc::new(std::sync::Mutex::new(job_rx));
        let workers = (0..threads.max(1))
            .map(|_| {
                let (rx, tx) = (job_rx.clone(), done_tx.clone());
                std::thread::spawn(move || worker(rx, tx, level))
            })
            .collect();
        Ok(Writer {
            out,
            block: Vec::with_capacity(BLOCK),
            tail: Vec::new(),
            pool: Pool {
                jobs: Some(job_tx),
                workers,
            },
            done: done_rx,
            sent: 0,
            written: 0,
            ready: BTreeMap::new(),
            crc: crc32fast::Hasher::new(),
            len: 0,
        })
    }

    fn in_flight_max(&self) -> u64 {
        (self.pool.workers.len() * IN_FLIGHT_PER_WORKER) as u64
    }

    /// Hands the current block to the workers.
    fn send_block(&mut self) -> io::Result<()> {
        if self.block.is_empty() {
            return Ok(());
        }
        while self.sent - self.written >= self.in_flight_max() {
            self.receive_one()?;
        }
        let data = std::mem::replace(&mut self.block, Vec::with_capacity(BLOCK));
        let dictionary = std::mem::take(&mut self.tail);
        self.tail = data[data.len().saturating_sub(WINDOW)..].to_vec();
        let job = Job {
            seq: self.sent,
            dictionary,
            data,
        };
        self.pool
            .jobs
            .as_ref()
            .ok_or_else(|| io::Error::other("gzip workers are gone"))?
            .send(job)
            .map_err(|_| io::Error::other("gzip workers are gone"))?;
        self.sent += 1;
        Ok(())
    }

    /// Waits for one block and writes every block now in order.
    fn receive_one(&mut self) -> io::Result<()> {
        let d = self
            .done
            .recv()
            .map_err(|_| io::Error::other("a gzip worker failed"))?;
        self.ready.insert(d.seq, d);
        while let Some(d) = self.ready.remove(&self.written) {
            self.out.write_all(&d.deflated?)?;
            self.crc.combine(&d.crc);
            self.len += d.len;
            self.written += 1;
        }
        Ok(())
    }

    /// Ends the member and returns the writer.
    pub fn finish(mut self) -> io::Result<W> {
        self.send_block()?;
        while self.written < self.sent {
            self.receive_one()?;
        }
        self.pool.stop()?;
        self.out.write_all(&LAST_BLOCK)?;
        self.out
            .write_all(&self.crc.clone().finalize().to_le_bytes())?;
        // ISIZE is the length modulo 2^32 (RFC 1952).
        self.out.write_all(&self.len.to_le_bytes()[..4])?;
        Ok(self.out)
    }
}

impl<W: Write> Write for Writer<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let room = BLOCK - self.block.len();
        let n = buf.len().min(room);
        self.block.extend_from_slice(&buf[..n]);
        if self.block.len() == BLOCK {
            self.send_block()?;
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// The worker threads and their queue.
struct Pool {
    jobs: Option<mpsc::Sender<Job>>,
    workers: Vec<JoinHandle<()>>,
}

impl Pool {
    /// Closes the queue and waits for the workers.
    fn stop(&mut self) -> io::Result<()> {
        self.jobs = None;
        let mut result = Ok(());
        for w in std::mem::take(&mut self.workers) {
            if w.join().is_err() {
                result = Err(io::Error::other("a gzip worker panicked"));
            }
        }
        result
    }
}

impl Drop for Pool {
    fn drop(&mut self) {
        // A writer dropped unfinished (its output failed) stops its workers
        // here; their failure is already the error being returned.
        let _ = self.stop();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    fn sample(len: usize) -> Vec<u8> {
        let mut x = 12345u32;
        (0..len)
            .map(|i| {
                x = x.wrapping_mul(1_103_515_245).wrapping_add(12345);
                if i % 3 == 0 {
                    x.to_be_bytes()[0]
                } else {
                    b"hull initramfs "[i % 15]
                }
            })
            .collect()
    }

    fn pack(data: &[u8], level: u32, threads: usize) -> Vec<u8> {
        let mut w = Writer::new(Vec::new(), level, threads).expect("new");
        for piece in data.chunks(70_000) {
            w.write_all(piece).expect("write");
        }
        w.finish().expect("finish")
    }

    #[test]
    fn one_member_that_gzip_decodes_whatever_the_threads() {
        let data = sample(3 * BLOCK + 12_345);
        let one = pack(&data, 6, 1);
        assert_eq!(one, pack(&data, 6, 4), "same bytes on any number of cores");
        let mut back = Vec::new();
        let mut dec = flate2::read::GzDecoder::new(&one[..]);
        dec.read_to_end(&mut back).expect("decodes");
        assert_eq!(back, data);
        // One member: nothing after it.
        let member_len = one.len();
        assert_eq!(&one[..3], &[0x1f, 0x8b, 8]);
        assert_eq!(
            u64::from(u32::from_le_bytes(
                one[member_len - 4..].try_into().expect("4")
            )),
            data.len() as u64
        );
    }

    #[test]
    fn dictionaries_keep_the_ratio_of_a_single_stream() {
        let data = sample(2 * BLOCK);
        let ours = pack(&data, 6, 2).len();
        let whole = {
            let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::new(6));
            e.write_all(&data).expect("write");
            e.finish().expect("finish").len()
        };
        assert!(ours <= whole + whole / 100, "{ours} vs {whole}");
    }

    #[test]
    fn empty_and_tiny_inputs_make_valid_members() {
        for data in [Vec::new(), b"x".to_vec()] {
            let z = pack(&data, 9, 2);
            let mut back = Vec::new();
            flate2::read::GzDecoder::new(&z[..])
                .read_to_end(&mut back)
                .expect("decodes");
            assert_eq!(back, data);
        }
    }
}
