//! A small HTTP proxy in front of a test registry that injects faults into blob
//! downloads: a connection cut mid-body, a 500, a flipped byte. Each request
//! gets its own upstream connection (`Connection: close`), so responses are
//! read whole and changed before they are sent on.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// Send the headers and half the body, then close.
    Cut,
    /// Answer 500 without asking upstream.
    ServerError,
    /// Flip one byte in the middle of the body.
    FlipByte,
    /// Send 50 MB more than the blob, with a Content-Length to match.
    Oversized,
    /// Answer manifest requests with a body that never ends (no length).
    EndlessManifest,
}

/// Bytes sent past the blob by [`Fault::Oversized`].
pub const OVERSIZE: usize = 50 << 20;

/// The proxy; it runs until the test process ends.
pub struct FaultProxy {
    pub addr: String,
    /// Request lines and Range headers of blob GETs, in order.
    pub log: Arc<Mutex<Vec<String>>>,
}

impl FaultProxy {
    pub fn start(upstream: &str, fault: Fault, times: u32) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind proxy");
        let addr = listener.local_addr().expect("addr").to_string();
        // How many more blob GETs get the fault (u32::MAX: all of them).
        let remaining = Arc::new(AtomicU32::new(times));
        let log = Arc::new(Mutex::new(Vec::new()));
        let (up, rem, lg) = (upstream.to_string(), remaining, log.clone());
        std::thread::spawn(move || {
            for conn in listener.incoming().flatten() {
                let (up, rem, lg) = (up.clone(), rem.clone(), lg.clone());
                std::thread::spawn(move || {
                    let _ = serve(conn, &up, fault, &rem, &lg);
                });
            }
        });
        FaultProxy { addr, log }
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

fn serve(
    mut client: TcpStream,
    upstream: &str,
    fault: Fault,
    remaining: &AtomicU32,
    log: &Mutex<Vec<String>>,
) -> std::io::Result<()> {
    // Read one request: headers, then a body of Content-Length bytes.
    let mut req = Vec::new();
    let mut buf = [0u8; 8192];
    let head_end = loop {
        let n = client.read(&mut buf)?;
        // Nothing, or a TLS handshake (Hull asking whether the registry
        // speaks TLS): hang up, as a plain HTTP server would.
        if n == 0 || (req.is_empty() && buf[0] == 0x16) {
            return Ok(());
        }
        req.extend_from_slice(&buf[..n]);
        if let Some(p) = find(&req, b"\r\n\r\n") {
            break p + 4;
        }
    };
    let head = String::from_utf8_lossy(&req[..head_end]).into_owned();
    let length: usize = head
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case("content-length")
                .then(|| v.trim().parse().ok())?
        })
        .unwrap_or(0);
    while req.len() < head_end + length {
        let n = client.read(&mut buf)?;
        if n == 0 {
            break;
        }
        req.extend_from_slice(&buf[..n]);
    }
    let request_line = head.lines().next().unwrap_or("").to_string();
    let is_blob_get = request_line.starts_with("GET ") && request_line.contains("/blobs/sha256:");
    let is_manifest_get = request_line.starts_with("GET ") && request_line.contains("/manifests/");
    if fault == Fault::EndlessManifest && is_manifest_get {
        return endless(&mut client);
    }
    // Forward with Connection: close.
    let mut out = String::new();
    for (i, line) in head.trim_end().lines().enumerate() {
        if i > 0 && line.to_ascii_lowercase().starts_with("connection:") {
            continue;
        }
        if i > 0 && line.to_ascii_lowercase().starts_with("host:") {
            out.push_str(&format!("Host: {upstream}\r\n"));
            continue;
        }
        out.push_str(line);
        out.push_str("\r\n");
    }
    out.push_str("Connection: close\r\n\r\n");
    let inject = is_blob_get
        && remaining
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |r| match r {
                0 => None,
                u32::MAX => Some(u32::MAX),
                r => Some(r - 1),
            })
            .is_ok();
    if is_blob_get {
        let range = head
            .lines()
            .find(|l| l.to_ascii_lowercase().starts_with("range:"))
            .unwrap_or("");
        if let Ok(mut l) = log.lock() {
            l.push(format!(
                "{request_line} {range}{}",
                if inject { " [fault]" } else { "" }
            ));
        }
    }
    if inject && fault == Fault::ServerError {
        client.write_all(
            b"HTTP/1.1 500 Internal Server Error\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
        )?;
        return Ok(());
    }
    let mut up = TcpStream::connect(upstream)?;
    up.write_all(out.as_bytes())?;
    up.write_all(&req[head_end..])?;
    let mut resp = Vec::new();
    up.read_to_end(&mut resp)?;
    let body_start = find(&resp, b"\r\n\r\n").map_or(resp.len(), |p| p + 4);
    let body_len = resp.len() - body_start;
    if inject && body_len > 1 {
        match fault {
            Fault::Cut => {
                client.write_all(&resp[..body_start + body_len / 2])?;
                client.flush()?;
                return Ok(()); // dropping the stream closes it mid-body
            }
            Fault::FlipByte => resp[body_start + body_len / 2] ^= 0x01,
            Fault::Oversized => {
                return oversized(&mut client, &resp[..body_start], &resp[body_start..])
            }
            Fault::ServerError | Fault::EndlessManifest => {}
        }
    }
    client.write_all(&resp)
}

/// The upstream answer with its body followed by [`OVERSIZE`] more bytes,
/// Content-Length raised to match; stops when the client hangs up.
fn oversized(client: &mut TcpStream, head: &[u8], body: &[u8]) -> std::io::Result<()> {
    let head = String::from_utf8_lossy(head);
    let mut out = String::new();
    for line in head.trim_end().lines() {
        if line.to_ascii_lowercase().starts_with("content-length:") {
            out.push_str(&format!("Content-Length: {}\r\n", body.len() + OVERSIZE));
        } else {
            out.push_str(line);
            out.push_str("\r\n");
        }
    }
    out.push_str("\r\n");
    client.write_all(out.as_bytes())?;
    client.write_all(body)?;
    let extra = vec![0u8; 1 << 20];
    for _ in 0..OVERSIZE / extra.len() {
        client.write_all(&extra)?;
    }
    Ok(())
}

/// A 200 with a manifest media type and a body without end, until the
/// client hangs up.
fn endless(client: &mut TcpStream) -> std::io::Result<()> {
    client.write_all(
        b"HTTP/1.1 200 OK\r\nContent-Type: application/vnd.oci.image.manifest.v1+json\r\nConnection: close\r\n\r\n{\"schemaVersion\":2,\"annotations\":{\"x\":\"",
    )?;
    let chunk = vec![b'x'; 1 << 20];
    loop {
        client.write_all(&chunk)?;
    }
}
