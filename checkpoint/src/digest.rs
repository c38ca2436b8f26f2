//! The digest every file of an image and of an archive carries: SHA-256
//! (sha2 crate), as lowercase hex. Files up to [`CHUNK`] bytes get the plain
//! SHA-256 of their content; larger ones (page files of GiBs) the SHA-256 of
//! a header, their length and the SHA-256 of each `CHUNK`-byte piece, so that
//! two cores can verify one file (the layout is in docs/image-format.md).

use sha2::{Digest, Sha256};

/// Piece size of the chunked form.
pub const CHUNK: usize = 64 << 20;
const CHUNKED_TAG: &[u8] = b"godwit chunked sha256 v1\n";

/// Streaming digest of one file.
#[derive(Clone, Default)]
pub struct Hasher {
    cur: Sha256,
    cur_len: usize,
    chunks: Vec<[u8; 32]>,
    total: u64,
}

impl Hasher {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn update(&mut self, mut data: &[u8]) {
        self.total += data.len() as u64;
        while !data.is_empty() {
            let n = (CHUNK - self.cur_len).min(data.len());
            self.cur.update(&data[..n]);
            self.cur_len += n;
            data = &data[n..];
            if self.cur_len == CHUNK {
                let h = std::mem::take(&mut self.cur).finalize();
                self.chunks.push(h.into());
                self.cur_len = 0;
            }
        }
    }

    /// The digest as hex.
    pub fn finalize(mut self) -> String {
        if self.total <= CHUNK as u64 {
            if self.chunks.len() == 1 {
                return hex::encode(self.chunks[0]);
            }
            return hex::encode(self.cur.finalize());
        }
        if self.cur_len > 0 {
            self.chunks.push(self.cur.finalize().into());
        }
        combine(self.total, &self.chunks)
    }
}

fn combine(total: u64, chunks: &[[u8; 32]]) -> String {
    let mut h = Sha256::new();
    h.update(CHUNKED_TAG);
    h.update(total.to_le_bytes());
    for c in chunks {
        h.update(c);
    }
    hex::encode(h.finalize())
}

/// The digest of `bytes`; a large buffer is hashed on two threads.
pub fn of(bytes: &[u8]) -> String {
    if bytes.len() <= CHUNK {
        return hex::encode(Sha256::digest(bytes));
    }
    let pieces: Vec<&[u8]> = bytes.chunks(CHUNK).collect();
    let half = pieces.len() / 2;
    let hash =
        |ps: &[&[u8]]| -> Vec<[u8; 32]> { ps.iter().map(|p| Sha256::digest(p).into()).collect() };
    let chunks = std::thread::scope(|s| {
        let second = s.spawn(|| {
            crate::boost::unpin_current();
            hash(&pieces[half..])
        });
        let mut v = hash(&pieces[..half]);
        match second.join() {
            Ok(w) => v.extend(w),
            Err(_) => v.extend(hash(&pieces[half..])),
        }
        v
    });
    combine(bytes.len() as u64, &chunks)
}

/// Whether `s` looks like a digest (64 lowercase hex digits).
pub fn is_digest(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn streaming_and_whole_agree_across_the_chunk_size() {
        for len in [0, 1, CHUNK - 1, CHUNK, CHUNK + 1, 2 * CHUNK + 5] {
            let data: Vec<u8> = (0..len).map(|i| (i * 7 % 251) as u8).collect();
            let mut h = Hasher::new();
            for piece in data.chunks(1_000_003) {
                h.update(piece);
            }
            assert_eq!(h.finalize(), of(&data), "len {len}");
        }
        // Small files: plain SHA-256 (anyone can check with sha256sum).
        assert_eq!(
            of(b"abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert!(is_digest(&of(b"")));
        assert!(!is_digest("ABC"));
    }
}
