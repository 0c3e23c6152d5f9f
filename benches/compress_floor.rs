//! The floor for `ci/bench/build.sh`: compress a file with gzip at level 6 on
//! one thread, with the same codec crate and backend `hull build` uses.
//! Prints the seconds taken and the compressed size.
//!
//! `cargo bench --bench compress_floor -- FILE`

use std::io::Write;
use std::time::Instant;

fn main() {
    let Some(path) = std::env::args().skip(1).find(|a| !a.starts_with('-')) else {
        eprintln!("usage: compress_floor FILE");
        std::process::exit(2);
    };
    let data = match std::fs::read(&path) {
        Ok(d) => d,
        Err(e) => {
            eprintln!("cannot read {path}: {e}");
            std::process::exit(1);
        }
    };
    let start = Instant::now();
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::new(6));
    let out = enc.write_all(&data).and_then(|()| enc.finish());
    let secs = start.elapsed().as_secs_f64();
    match out {
        Ok(out) => println!("{secs:.3} {}", out.len()),
        Err(e) => {
            eprintln!("gzip failed: {e}");
            std::process::exit(1);
        }
    }
}
