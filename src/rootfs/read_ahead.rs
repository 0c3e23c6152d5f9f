//! Reading ahead on another thread: a decompressing reader runs on its own
//! core while the caller works through what it already produced.
//!
//! Owns: [`ReadAhead`], a reader over at most [`DEPTH`] buffers of
//! [`BUF`] bytes filled by a worker thread. Must not know what it reads.

use std::io::{self, Read};
use std::sync::mpsc;

/// Bytes per buffer.
pub const BUF: usize = 1 << 20;
/// Buffers filled and not yet read, at most.
pub const DEPTH: usize = 4;

/// A reader fed by a worker thread reading `inner`.
pub struct ReadAhead {
    rx: mpsc::Receiver<io::Result<Vec<u8>>>,
    current: Vec<u8>,
    pos: usize,
    done: bool,
}

impl ReadAhead {
    /// Starts reading `inner` on a new thread.
    pub fn new(mut inner: Box<dyn Read + Send>) -> Self {
        let (tx, rx) = mpsc::sync_channel(DEPTH);
        std::thread::spawn(move || loop {
            let mut buf = vec![0u8; BUF];
            let mut filled = 0;
            let result = loop {
                match inner.read(&mut buf[filled..]) {
                    Ok(0) => break Ok(()),
                    Ok(n) => {
                        filled += n;
                        if filled == BUF {
                            break Ok(());
                        }
                    }
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => break Err(e),
                }
            };
            buf.truncate(filled);
            let end = filled < BUF;
            let message = match result {
                Ok(()) => Ok(buf),
                Err(e) => Err(e),
            };
            let failed = message.is_err();
            // A reader that went away stops the worker.
            if tx.send(message).is_err() || failed || end {
                return;
            }
        });
        ReadAhead {
            rx,
            current: Vec::new(),
            pos: 0,
            done: false,
        }
    }
}

impl Read for ReadAhead {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        while self.pos == self.current.len() {
            if self.done {
                return Ok(0);
            }
            match self.rx.recv() {
                Ok(Ok(buf)) => {
                    self.done = buf.len() < BUF;
                    self.current = buf;
                    self.pos = 0;
                }
                Ok(Err(e)) => {
                    self.done = true;
                    return Err(e);
                }
                Err(_) => return Err(io::Error::other("the reading thread stopped")),
            }
        }
        let n = out.len().min(self.current.len() - self.pos);
        out[..n].copy_from_slice(&self.current[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passes_every_byte_in_order_and_ends() {
        for len in [0, 1, BUF - 1, BUF, BUF + 1, 5 * BUF + 17] {
            let data: Vec<u8> = (0..len).map(|i| (i % 253).to_le_bytes()[0]).collect();
            let mut back = Vec::new();
            ReadAhead::new(Box::new(io::Cursor::new(data.clone())))
                .read_to_end(&mut back)
                .expect("read");
            assert_eq!(back, data, "{len}");
        }
    }

    struct Failing(usize);
    impl Read for Failing {
        fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
            if self.0 == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    "corrupt deflate",
                ));
            }
            let n = out.len().min(self.0);
            self.0 -= n;
            Ok(n)
        }
    }

    #[test]
    fn the_error_comes_through_after_the_bytes_before_it() {
        let mut r = ReadAhead::new(Box::new(Failing(BUF + 10)));
        let mut back = Vec::new();
        let e = r.read_to_end(&mut back).expect_err("fails");
        assert_eq!(e.kind(), io::ErrorKind::InvalidData);
        assert!(e.to_string().contains("corrupt deflate"));
        assert_eq!(back.len(), BUF, "the full buffer before it");
    }
}
