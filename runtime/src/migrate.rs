//! The wire of `godwit migrate` / `godwit receive` (docs/migrate.md): a TCP
//! connection secured with the Noise protocol (`snow`), pattern NNpsk0 keyed
//! by the 32-byte secret of a `godwit keygen` file, carrying the archive of a
//! checkpoint entry by entry, then the receiver's verdict.
//!
//! Every Noise message is `u16 length (big endian) ‖ ciphertext` (at most
//! 65535 bytes, as the Noise specification frames TCP); its plaintext is one
//! record: a kind byte and a body. A message that fails authentication (a
//! wrong key, a flipped bit, a reordered or replayed message: the nonces
//! count) ends the migration before its bytes are used.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::error::{Result, RuntimeError};

/// Length of the shared secret.
pub const KEY_LEN: usize = 32;
const NOISE_PARAMS: &str = "Noise_NNpsk0_25519_ChaChaPoly_BLAKE2s";
/// Bound into the handshake: both sides speak this protocol version.
const PROLOGUE: &[u8] = b"godwit-migrate/1";
const MAX_MSG: usize = 65535;
const TAG_LEN: usize = 16;
/// Largest record body (one kind byte, the AEAD tag).
pub const MAX_BODY: usize = MAX_MSG - TAG_LEN - 1;
/// Default port of `godwit receive --listen`.
pub const DEFAULT_PORT: u16 = 7676;

/// Record kinds. Source → receiver: an entry begins (its path), data of it
/// (raw or zstd), it ends (its length), the stream is complete (the source's
/// timings) or aborted (why). Receiver → source: restored (its timings) or
/// failed (why). Source → receiver after "restored": the source is gone.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Kind {
    Begin = 1,
    Data = 2,
    DataZstd = 3,
    End = 4,
    Done = 5,
    Abort = 6,
    Restored = 16,
    Failed = 17,
    SourceGone = 18,
}

impl Kind {
    fn from_u8(b: u8) -> Option<Kind> {
        Some(match b {
            1 => Kind::Begin,
            2 => Kind::Data,
            3 => Kind::DataZstd,
            4 => Kind::End,
            5 => Kind::Done,
            6 => Kind::Abort,
            16 => Kind::Restored,
            17 => Kind::Failed,
            18 => Kind::SourceGone,
            _ => return None,
        })
    }
}

/// What the source says first (inside the handshake's first, PSK-encrypted
/// message).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Hello {
    pub godwit_version: String,
    /// The container's id on the source.
    pub id: String,
    /// Pages are sent zstd-compressed where that makes them smaller.
    pub compress: Option<i32>,
}

/// Makes a new key file: 32 random bytes, hex, mode 0600; never overwrites.
pub fn keygen(path: &Path) -> Result<()> {
    let mut key = [0u8; KEY_LEN];
    let mut got = 0;
    while got < KEY_LEN {
        // SAFETY: getrandom(2) writes at most the given length into our buffer.
        let r = unsafe { libc::getrandom(key[got..].as_mut_ptr().cast(), KEY_LEN - got, 0) };
        if r < 0 {
            let e = std::io::Error::last_os_error();
            if e.kind() == std::io::ErrorKind::Interrupted {
                continue;
            }
            return Err(RuntimeError::io("getrandom", e));
        }
        got += r as usize;
    }
    let mut text: String = key.iter().map(|b| format!("{b:02x}")).collect();
    text.push('\n');
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::AlreadyExists => RuntimeError::InvalidValue {
                what: "key file",
                value: path.display().to_string(),
                reason: "it exists; keygen never overwrites a key (remove it first)".into(),
            },
            _ => RuntimeError::io(path, e),
        })?;
    f.write_all(text.as_bytes())
        .and_then(|()| f.sync_all())
        .map_err(|e| RuntimeError::io(path, e))
}

/// Reads a key file made by [`keygen`]; refuses one others may read.
pub fn read_key(path: &Path) -> Result<[u8; KEY_LEN]> {
    let bad = |reason: String| RuntimeError::InvalidValue {
        what: "key file",
        value: path.display().to_string(),
        reason,
    };
    let meta = std::fs::metadata(path).map_err(|e| RuntimeError::io(path, e))?;
    if meta.permissions().mode() & 0o077 != 0 {
        return Err(bad(format!(
            "its mode {:o} lets others read the secret; chmod 600 it",
            meta.permissions().mode() & 0o777
        )));
    }
    if meta.len() > 256 {
        return Err(bad("too large for a key made by `godwit keygen`".into()));
    }
    let text = std::fs::read_to_string(path).map_err(|e| RuntimeError::io(path, e))?;
    let hex = text.trim();
    if hex.len() != 2 * KEY_LEN || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(bad(format!(
            "not {} hex digits (make one with `godwit keygen FILE`)",
            2 * KEY_LEN
        )));
    }
    let mut key = [0u8; KEY_LEN];
    for (i, k) in key.iter_mut().enumerate() {
        *k = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16)
            .map_err(|e| bad(format!("byte {i}: {e}")))?;
    }
    Ok(key)
}

/// One authenticated, encrypted connection.
pub struct Channel {
    stream: TcpStream,
    noise: snow::TransportState,
    peer: String,
    role: &'static str,
    /// Ciphertext scratch (one message).
    wire: Vec<u8>,
    /// Plaintext of the last record received.
    plain: Vec<u8>,
    pub bytes_sent: u64,
    pub bytes_received: u64,
}

fn builder(key: &[u8; KEY_LEN]) -> std::result::Result<snow::Builder<'_>, snow::Error> {
    let params: snow::params::NoiseParams = NOISE_PARAMS
        .parse()
        .map_err(|_| snow::Error::Init(snow::error::InitStage::ValidateKeyLengths))?;
    snow::Builder::new(params).psk(0, key)?.prologue(PROLOGUE)
}

fn read_frame(stream: &mut TcpStream, buf: &mut Vec<u8>) -> std::io::Result<()> {
    let mut len = [0u8; 2];
    stream.read_exact(&mut len)?;
    let n = u16::from_be_bytes(len) as usize;
    buf.resize(n, 0);
    stream.read_exact(buf)
}

fn write_frame(stream: &mut TcpStream, msg: &[u8]) -> std::io::Result<()> {
    let mut frame = Vec::with_capacity(msg.len() + 2);
    frame.extend_from_slice(&(msg.len() as u16).to_be_bytes());
    frame.extend_from_slice(msg);
    stream.write_all(&frame)
}

impl Channel {
    fn fail(&self, reason: impl Into<String>) -> RuntimeError {
        RuntimeError::Migrate {
            role: self.role,
            peer: self.peer.clone(),
            reason: reason.into(),
        }
    }

    /// The source's side: connects to `addr` and proves it holds `key`.
    pub fn connect(addr: &str, key: &[u8; KEY_LEN], hello: &Hello) -> Result<Channel> {
        let fail = |reason: String| RuntimeError::Migrate {
            role: "to",
            peer: addr.to_string(),
            reason,
        };
        let addrs: Vec<SocketAddr> = std::net::ToSocketAddrs::to_socket_addrs(addr)
            .map_err(|e| fail(format!("not an address ADDR:PORT: {e}")))?
            .collect();
        let target = addrs
            .first()
            .ok_or_else(|| fail("the address resolves to nothing".into()))?;
        let mut stream =
            TcpStream::connect_timeout(target, Duration::from_secs(10)).map_err(|e| {
                fail(format!(
                    "connect: {e} (is `godwit receive` listening there?)"
                ))
            })?;
        stream.set_nodelay(true).ok();
        // A receiver that stops reading fails us within a minute, not never.
        stream
            .set_write_timeout(Some(Duration::from_secs(60)))
            .map_err(|e| fail(e.to_string()))?;
        let crypto = |e: snow::Error| fail(format!("Noise handshake: {e}"));
        let mut hs = builder(key)
            .and_then(|b| b.build_initiator())
            .map_err(crypto)?;
        let payload = serde_json::to_vec(hello).map_err(|e| fail(e.to_string()))?;
        let mut msg = vec![0u8; MAX_MSG];
        let n = hs.write_message(&payload, &mut msg).map_err(crypto)?;
        write_frame(&mut stream, &msg[..n]).map_err(|e| fail(format!("send: {e}")))?;
        let mut reply = Vec::new();
        stream
            .set_read_timeout(Some(Duration::from_secs(30)))
            .map_err(|e| fail(e.to_string()))?;
        read_frame(&mut stream, &mut reply).map_err(|e| {
            fail(format!(
                "the receiver closed the connection during the handshake ({e}): \
                 it refused us — a different key, or it is not `godwit receive`"
            ))
        })?;
        let mut out = vec![0u8; MAX_MSG];
        let n = hs.read_message(&reply, &mut out).map_err(|_| {
            fail(
                "the receiver's handshake does not authenticate with our key: \
                 the two sides hold different keys (give both the same --key file)"
                    .into(),
            )
        })?;
        if &out[..n] != b"ok" {
            return Err(fail(format!(
                "the receiver refused: {}",
                String::from_utf8_lossy(&out[..n])
            )));
        }
        stream.set_read_timeout(None).ok();
        let noise = hs.into_transport_mode().map_err(crypto)?;
        Ok(Channel {
            stream,
            noise,
            peer: addr.to_string(),
            role: "to",
            wire: vec![0u8; MAX_MSG],
            plain: vec![0u8; MAX_MSG],
            bytes_sent: 0,
            bytes_received: 0,
        })
    }

    /// The receiver's side: takes one connection from `listener` and checks
    /// that the peer holds `key` before anything else.
    pub fn accept(listener: &TcpListener, key: &[u8; KEY_LEN]) -> Result<(Channel, Hello)> {
        let local = listener
            .local_addr()
            .map(|a| a.to_string())
            .unwrap_or_default();
        let (mut stream, peer) = listener.accept().map_err(|e| RuntimeError::Migrate {
            role: "on",
            peer: local.clone(),
            reason: format!("accept: {e}"),
        })?;
        let peer = peer.to_string();
        let fail = |reason: String| RuntimeError::Migrate {
            role: "from",
            peer: peer.clone(),
            reason,
        };
        stream.set_nodelay(true).ok();
        stream
            .set_read_timeout(Some(Duration::from_secs(30)))
            .map_err(|e| fail(e.to_string()))?;
        let crypto = |e: snow::Error| fail(format!("Noise handshake: {e}"));
        let mut hs = builder(key)
            .and_then(|b| b.build_responder())
            .map_err(crypto)?;
        let mut first = Vec::new();
        read_frame(&mut stream, &mut first)
            .map_err(|e| fail(format!("reading the handshake: {e}")))?;
        let mut out = vec![0u8; MAX_MSG];
        // A wrong key (or any change on the way) fails here: nothing of the
        // stream is used, and the peer learns only that the connection closed.
        let n = hs.read_message(&first, &mut out).map_err(|_| {
            fail(
                "refused: the handshake does not authenticate with our key (the source \
                 holds a different key, or the message was altered)"
                    .into(),
            )
        })?;
        let hello: Hello = serde_json::from_slice(&out[..n])
            .map_err(|e| fail(format!("refused: malformed hello: {e}")))?;
        let mut msg = vec![0u8; MAX_MSG];
        let n = hs.write_message(b"ok", &mut msg).map_err(crypto)?;
        write_frame(&mut stream, &msg[..n]).map_err(|e| fail(format!("send: {e}")))?;
        // A source that stops sending (frozen, or gone without a FIN) fails
        // the receive instead of holding it forever.
        stream
            .set_read_timeout(Some(Duration::from_secs(120)))
            .map_err(|e| fail(e.to_string()))?;
        let noise = hs.into_transport_mode().map_err(crypto)?;
        Ok((
            Channel {
                stream,
                noise,
                peer,
                role: "from",
                wire: vec![0u8; MAX_MSG],
                plain: vec![0u8; MAX_MSG],
                bytes_sent: 0,
                bytes_received: 0,
            },
            hello,
        ))
    }

    pub fn peer(&self) -> &str {
        &self.peer
    }

    /// Sends one record (`body` at most [`MAX_BODY`] bytes).
    pub fn send(&mut self, kind: Kind, body: &[u8]) -> Result<()> {
        if body.len() > MAX_BODY {
            return Err(self.fail(format!("record of {} bytes (bug)", body.len())));
        }
        self.plain[0] = kind as u8;
        self.plain[1..1 + body.len()].copy_from_slice(body);
        let n = self
            .noise
            .write_message(&self.plain[..1 + body.len()], &mut self.wire)
            .map_err(|e| self.fail(format!("encrypt: {e}")))?;
        let mut len = [0u8; 2];
        len.copy_from_slice(&(n as u16).to_be_bytes());
        let r = self
            .stream
            .write_all(&len)
            .and_then(|()| self.stream.write_all(&self.wire[..n]));
        r.map_err(|e| self.fail(format!("send: {e} (the receiver went away)")))?;
        self.bytes_sent += n as u64 + 2;
        Ok(())
    }

    /// Receives one record: its kind and body (valid until the next call).
    pub fn recv(&mut self) -> Result<(Kind, &[u8])> {
        let mut len = [0u8; 2];
        self.stream
            .read_exact(&mut len)
            .map_err(|e| self.fail(format!("receive: {e} (the peer went away)")))?;
        let n = u16::from_be_bytes(len) as usize;
        self.wire.resize(MAX_MSG, 0);
        let r = self.stream.read_exact(&mut self.wire[..n]);
        r.map_err(|e| self.fail(format!("receive: {e} (the stream was cut short)")))?;
        self.bytes_received += n as u64 + 2;
        let got = self
            .noise
            .read_message(&self.wire[..n], &mut self.plain)
            .map_err(|_| {
                self.fail(format!(
                    "refused: message {} of the stream does not authenticate (altered on the way)",
                    self.noise.receiving_nonce()
                ))
            })?;
        if got == 0 {
            return Err(self.fail("refused: an empty record"));
        }
        let kind = Kind::from_u8(self.plain[0])
            .ok_or_else(|| self.fail(format!("refused: unknown record kind {}", self.plain[0])))?;
        Ok((kind, &self.plain[1..got]))
    }

    /// Receives a record of kind `want` (its body), or says what came instead.
    pub fn expect(&mut self, want: Kind) -> Result<Vec<u8>> {
        let (kind, body) = self.recv()?;
        let body = body.to_vec();
        match kind {
            k if k == want => Ok(body),
            Kind::Failed | Kind::Abort => Err(self.fail(format!(
                "the peer failed: {}",
                String::from_utf8_lossy(&body)
            ))),
            k => Err(self.fail(format!("expected {want:?}, got {k:?}"))),
        }
    }

    pub fn set_read_timeout(&self, t: Option<Duration>) {
        let _ = self.stream.set_read_timeout(t);
    }
}

/// Sends an archive's entries over a channel: an image sink for the dumper
/// (entries `checkpoint/NAME`) and whole top-level files. Pages are cut into
/// records and, with compression, sent zstd-compressed where that makes
/// them smaller (incompressible memory goes raw, paying only the attempt).
pub struct StreamSink<'a> {
    ch: &'a mut Channel,
    prefix: &'static str,
    buf: Vec<u8>,
    zstd: Option<zstd::bulk::Compressor<'static>>,
    zbuf: Vec<u8>,
    cur: Option<(String, u64)>,
    /// Every entry sent: (path, is_dir, size).
    pub entries: Vec<(String, bool, u64)>,
    pub raw_bytes: u64,
    pub progress: &'a Progress,
}

impl<'a> StreamSink<'a> {
    pub fn new(ch: &'a mut Channel, level: Option<i32>, progress: &'a Progress) -> Result<Self> {
        let zstd = match level {
            Some(l) => Some(
                zstd::bulk::Compressor::new(l).map_err(|e| RuntimeError::Migrate {
                    role: "to",
                    peer: ch.peer.clone(),
                    reason: format!("zstd level {l}: {e}"),
                })?,
            ),
            None => None,
        };
        Ok(StreamSink {
            ch,
            prefix: "",
            buf: Vec::with_capacity(MAX_BODY),
            zstd,
            zbuf: vec![0u8; MAX_BODY],
            cur: None,
            entries: Vec::new(),
            raw_bytes: 0,
            progress,
        })
    }

    /// Names of following entries are below `prefix` (e.g. `checkpoint/`).
    pub fn set_prefix(&mut self, prefix: &'static str) {
        self.prefix = prefix;
    }

    /// A directory entry.
    pub fn dir(&mut self, path: &str) -> Result<()> {
        self.ch.send(Kind::Begin, format!("{path}/").as_bytes())?;
        self.ch.send(Kind::End, &0u64.to_le_bytes())?;
        self.entries.push((path.to_string(), true, 0));
        Ok(())
    }

    /// A whole file from memory.
    pub fn file(&mut self, path: &str, bytes: &[u8]) -> Result<()> {
        self.begin_path(path.to_string())?;
        self.put(bytes)?;
        self.end_entry()
    }

    /// A whole file from disk, read in pieces.
    pub fn file_from(&mut self, path: &str, src: &Path) -> Result<()> {
        let mut f = std::fs::File::open(src).map_err(|e| RuntimeError::io(src, e))?;
        self.begin_path(path.to_string())?;
        let mut buf = vec![0u8; 1 << 20];
        loop {
            let n = f.read(&mut buf).map_err(|e| RuntimeError::io(src, e))?;
            if n == 0 {
                break;
            }
            self.put(&buf[..n])?;
        }
        self.end_entry()
    }

    fn begin_path(&mut self, path: String) -> Result<()> {
        self.ch.send(Kind::Begin, path.as_bytes())?;
        self.cur = Some((path, 0));
        Ok(())
    }

    fn flush_record(&mut self) -> Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let compressed = match &mut self.zstd {
            Some(c) => match c.compress_to_buffer(&self.buf, &mut self.zbuf) {
                // Worth it only when it saves an eighth.
                Ok(n) if n < self.buf.len() - self.buf.len() / 8 => Some(n),
                _ => None,
            },
            None => None,
        };
        match compressed {
            Some(n) => self.ch.send(Kind::DataZstd, &self.zbuf[..n])?,
            None => self.ch.send(Kind::Data, &self.buf)?,
        }
        self.buf.clear();
        Ok(())
    }

    fn put(&mut self, mut data: &[u8]) -> Result<()> {
        let n = data.len() as u64;
        match &mut self.cur {
            Some((_, len)) => *len += n,
            None => {
                return Err(RuntimeError::Migrate {
                    role: "to",
                    peer: self.ch.peer.clone(),
                    reason: "data outside an entry (bug)".into(),
                })
            }
        }
        while !data.is_empty() {
            let room = MAX_BODY - self.buf.len();
            let take = room.min(data.len());
            self.buf.extend_from_slice(&data[..take]);
            data = &data[take..];
            if self.buf.len() == MAX_BODY {
                self.flush_record()?;
            }
        }
        self.raw_bytes += n;
        self.progress.add(n);
        Ok(())
    }

    fn end_entry(&mut self) -> Result<()> {
        self.flush_record()?;
        let (path, len) = self.cur.take().ok_or_else(|| RuntimeError::Migrate {
            role: "to",
            peer: self.ch.peer.clone(),
            reason: "end outside an entry (bug)".into(),
        })?;
        self.ch.send(Kind::End, &len.to_le_bytes())?;
        self.entries.push((path, false, len));
        Ok(())
    }

    pub fn channel(&mut self) -> &mut Channel {
        self.ch
    }
}

fn to_ckpt(e: RuntimeError) -> godwit_checkpoint::Error {
    godwit_checkpoint::Error::Sink(Box::new(e))
}

impl godwit_checkpoint::Sink for StreamSink<'_> {
    fn begin(&mut self, name: &str) -> godwit_checkpoint::Result<()> {
        self.begin_path(format!("{}{name}", self.prefix))
            .map_err(to_ckpt)
    }

    fn write(&mut self, data: &[u8]) -> godwit_checkpoint::Result<()> {
        self.put(data).map_err(to_ckpt)
    }

    fn end(&mut self) -> godwit_checkpoint::Result<()> {
        self.end_entry().map_err(to_ckpt)
    }
}

/// Progress on stderr: a bar on a terminal, a plain line a second otherwise.
pub struct Progress {
    what: String,
    bar: Option<indicatif::ProgressBar>,
    start: Instant,
    state: std::sync::Mutex<(u64, Instant, String)>,
    quiet: bool,
}

impl Progress {
    pub fn new(what: impl Into<String>, quiet: bool) -> Progress {
        use std::io::IsTerminal;
        let what = what.into();
        let bar = (!quiet && std::io::stderr().is_terminal()).then(|| {
            let b = indicatif::ProgressBar::new_spinner();
            b.set_style(
                indicatif::ProgressStyle::with_template(
                    "{spinner} {prefix}: {msg} {bytes} ({bytes_per_sec}) {elapsed}",
                )
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_spinner()),
            );
            b.set_prefix(what.clone());
            b.enable_steady_tick(Duration::from_millis(200));
            b
        });
        let now = Instant::now();
        Progress {
            what,
            bar,
            start: now,
            state: std::sync::Mutex::new((0, now, String::new())),
            quiet,
        }
    }

    /// A new phase (shown with the bytes).
    pub fn phase(&self, name: &str) {
        if let Some(b) = &self.bar {
            b.set_message(name.to_string());
        } else if !self.quiet {
            let bytes = self.state.lock().map(|s| s.0).unwrap_or(0);
            eprintln!(
                "godwit: {}: {name} ({} sent, {:.1} s)",
                self.what,
                human(bytes),
                self.start.elapsed().as_secs_f64()
            );
        }
        if let Ok(mut s) = self.state.lock() {
            s.2 = name.to_string();
        }
    }

    pub fn add(&self, n: u64) {
        if let Some(b) = &self.bar {
            b.inc(n);
            return;
        }
        let Ok(mut s) = self.state.lock() else {
            return;
        };
        s.0 += n;
        if !self.quiet && s.1.elapsed() >= Duration::from_secs(1) {
            let secs = self.start.elapsed().as_secs_f64().max(1e-3);
            eprintln!(
                "godwit: {}: {}: {} ({}/s)",
                self.what,
                s.2,
                human(s.0),
                human((s.0 as f64 / secs) as u64)
            );
            s.1 = Instant::now();
        }
    }

    pub fn finish(&self) {
        if let Some(b) = &self.bar {
            b.finish_and_clear();
        }
    }
}

/// Bytes for people: KiB/MiB/GiB with one decimal.
pub fn human(n: u64) -> String {
    let f = n as f64;
    if f >= (1u64 << 30) as f64 {
        format!("{:.1} GiB", f / (1u64 << 30) as f64)
    } else if f >= (1u64 << 20) as f64 {
        format!("{:.1} MiB", f / (1u64 << 20) as f64)
    } else if f >= 1024.0 {
        format!("{:.1} KiB", f / 1024.0)
    } else {
        format!("{n} B")
    }
}

/// Microseconds since `t`.
pub fn us(t: Instant) -> u64 {
    t.elapsed().as_micros() as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pair(ka: [u8; KEY_LEN], kb: [u8; KEY_LEN]) -> (Result<Channel>, Result<(Channel, Hello)>) {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap().to_string();
        let t = std::thread::spawn(move || Channel::accept(&l, &kb));
        let hello = Hello {
            godwit_version: "t".into(),
            id: "c".into(),
            compress: None,
        };
        let a = Channel::connect(&addr, &ka, &hello);
        (a, t.join().unwrap())
    }

    #[test]
    fn same_key_talks_both_ways() {
        let (a, b) = pair([7; 32], [7; 32]);
        let (mut a, (mut b, hello)) = (a.unwrap(), b.unwrap());
        assert_eq!(hello.id, "c");
        a.send(Kind::Begin, b"x").unwrap();
        a.send(Kind::Data, &vec![9u8; MAX_BODY]).unwrap();
        assert_eq!(b.expect(Kind::Begin).unwrap(), b"x");
        assert_eq!(b.expect(Kind::Data).unwrap().len(), MAX_BODY);
        b.send(Kind::Restored, b"{}").unwrap();
        assert_eq!(a.expect(Kind::Restored).unwrap(), b"{}");
    }

    #[test]
    fn wrong_key_is_refused_by_both_sides() {
        let (a, b) = pair([7; 32], [8; 32]);
        let Err(e) = b else {
            panic!("receiver must refuse")
        };
        let eb = e.to_string();
        assert!(eb.contains("does not authenticate"), "{eb}");
        assert!(a.is_err(), "source must fail too");
    }

    #[test]
    fn a_flipped_bit_is_refused() {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap().to_string();
        let t = std::thread::spawn(move || Channel::accept(&l, &[1; 32]));
        let hello = Hello {
            godwit_version: "t".into(),
            id: "c".into(),
            compress: None,
        };
        let mut a = Channel::connect(&addr, &[1; 32], &hello).unwrap();
        let (mut b, _) = t.join().unwrap().unwrap();
        // Encrypt a record by hand, flip one bit, send it.
        let mut wire = vec![0u8; MAX_MSG];
        let n = a.noise.write_message(&[2, 1, 2, 3], &mut wire).unwrap();
        wire[3] ^= 1;
        write_frame(&mut a.stream, &wire[..n]).unwrap();
        let e = b.recv().expect_err("altered record").to_string();
        assert!(e.contains("does not authenticate"), "{e}");
    }

    #[test]
    fn key_files() {
        let tmp = tempfile::tempdir().unwrap();
        let k = tmp.path().join("k");
        keygen(&k).unwrap();
        let meta = std::fs::metadata(&k).unwrap();
        assert_eq!(meta.permissions().mode() & 0o777, 0o600);
        let key = read_key(&k).unwrap();
        assert_ne!(key, [0u8; 32]);
        assert!(keygen(&k).is_err(), "never overwrites");
        std::fs::set_permissions(&k, std::fs::Permissions::from_mode(0o644)).unwrap();
        assert!(read_key(&k).unwrap_err().to_string().contains("chmod 600"));
        let bad = tmp.path().join("bad");
        std::fs::write(&bad, "xyz").unwrap();
        std::fs::set_permissions(&bad, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert!(read_key(&bad).is_err());
    }
}
