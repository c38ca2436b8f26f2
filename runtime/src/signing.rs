//! Authenticated archives: an Ed25519 signature (ed25519-dalek) over the
//! exact bytes of the archive's `config.dump` — the list of every other
//! entry with its size and SHA-256 — stored as `config.dump.sig` right after
//! it. Import checks the signature before it parses anything else, so a
//! tampered archive is refused by its signature; every entry is then checked
//! against its listed digest.
//!
//! Keys are the PEM files openssl writes (PKCS#8 private key, SubjectPublicKeyInfo
//! public key), or what `godwit keygen` writes (the same formats):
//!
//! ```text
//! openssl genpkey -algorithm ed25519 -out sign.pem
//! openssl pkey -in sign.pem -pubout -out verify.pem
//! ```

use std::io::Read;
use std::path::{Path, PathBuf};

use ed25519_dalek::pkcs8::{DecodePrivateKey, DecodePublicKey, EncodePrivateKey, EncodePublicKey};
use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
use serde::{Deserialize, Serialize};

/// The signature entry, second in a signed archive.
pub const SIGNATURE_ENTRY: &str = "config.dump.sig";
/// Env var naming the private key `checkpoint --export` signs with.
pub const SIGN_KEY_ENV: &str = "GODWIT_SIGN_KEY";
/// Env var naming the public key `restore --import` verifies with.
pub const VERIFY_KEY_ENV: &str = "GODWIT_VERIFY_KEY";
/// Env var: `1`/`true` refuses archives without a valid signature.
pub const REQUIRE_ENV: &str = "GODWIT_REQUIRE_SIGNATURE";
/// Largest signature entry import reads.
pub const MAX_SIGNATURE_BYTES: u64 = 4096;
const ALGORITHM: &str = "ed25519";

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("key file {path}: {reason}")]
    File { path: PathBuf, reason: String },
}

/// `config.dump.sig`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignatureEntry {
    pub algorithm: String,
    /// The signer's public key (hex), for messages: the key checked against
    /// is always the one import is given, never this one.
    pub public_key: String,
    pub signature: String,
}

fn read_key_file(path: &Path) -> Result<String, KeyError> {
    let bad = |reason: String| KeyError::File {
        path: path.to_path_buf(),
        reason,
    };
    let f = std::fs::File::open(path).map_err(|e| bad(e.to_string()))?;
    let meta = f.metadata().map_err(|e| bad(e.to_string()))?;
    if !meta.is_file() {
        return Err(bad("not a regular file".into()));
    }
    let mut text = String::new();
    f.take(64 << 10)
        .read_to_string(&mut text)
        .map_err(|e| bad(format!("not a PEM text file: {e}")))?;
    Ok(text)
}

/// A private key from a PEM (PKCS#8) file.
pub fn load_signing_key(path: &Path) -> Result<SigningKey, KeyError> {
    let text = read_key_file(path)?;
    SigningKey::from_pkcs8_pem(&text).map_err(|e| KeyError::File {
        path: path.to_path_buf(),
        reason: format!(
            "not an Ed25519 private key in PEM/PKCS#8 ({e}); make one with \
             `openssl genpkey -algorithm ed25519 -out KEY.pem` or `godwit keygen`"
        ),
    })
}

/// A public key from a PEM (SubjectPublicKeyInfo) file.
pub fn load_verifying_key(path: &Path) -> Result<VerifyingKey, KeyError> {
    let text = read_key_file(path)?;
    VerifyingKey::from_public_key_pem(&text).map_err(|e| KeyError::File {
        path: path.to_path_buf(),
        reason: format!(
            "not an Ed25519 public key in PEM ({e}); derive it from the private key with \
             `openssl pkey -in KEY.pem -pubout -out PUB.pem`"
        ),
    })
}

/// Signs the exact bytes of config.dump.
pub fn sign(key: &SigningKey, config_dump: &[u8]) -> SignatureEntry {
    SignatureEntry {
        algorithm: ALGORITHM.into(),
        public_key: hex::encode(key.verifying_key().as_bytes()),
        signature: hex::encode(key.sign(config_dump).to_bytes()),
    }
}

/// Checks `entry` (the raw bytes of config.dump.sig) over `config_dump`
/// with `key`; the reason it fails otherwise.
pub fn verify(key: &VerifyingKey, config_dump: &[u8], entry: &[u8]) -> Result<(), String> {
    let sig: SignatureEntry = serde_json::from_slice(entry)
        .map_err(|e| format!("{SIGNATURE_ENTRY} is not a signature record: {e}"))?;
    if sig.algorithm != ALGORITHM {
        return Err(format!(
            "{SIGNATURE_ENTRY}: algorithm {:?}, only {ALGORITHM} is accepted",
            sig.algorithm
        ));
    }
    let bytes: [u8; 64] = hex::decode(&sig.signature)
        .ok()
        .and_then(|b| b.try_into().ok())
        .ok_or_else(|| format!("{SIGNATURE_ENTRY}: the signature is not 64 bytes of hex"))?;
    let signature = Signature::from_bytes(&bytes);
    key.verify_strict(config_dump, &signature).map_err(|_| {
        let ours = hex::encode(key.as_bytes());
        if sig.public_key != ours {
            format!(
                "the archive was signed by key {} but the verify key is {ours}: refused",
                sig.public_key
            )
        } else {
            "the signature does not match config.dump (the archive was altered after it \
                 was signed): refused"
                .to_string()
        }
    })
}

/// PEM texts (private, public) of a new key pair from the kernel's random
/// source (getrandom(2)).
pub fn generate() -> std::io::Result<(String, String)> {
    let mut seed = [0u8; 32];
    let mut got = 0;
    while got < seed.len() {
        // SAFETY: getrandom(2) into the unfilled rest of a local buffer.
        let n = unsafe { libc::getrandom(seed[got..].as_mut_ptr().cast(), seed.len() - got, 0) };
        if n < 0 {
            let e = std::io::Error::last_os_error();
            if e.kind() == std::io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        got += n as usize;
    }
    let key = SigningKey::from_bytes(&seed);
    let private = key
        .to_pkcs8_pem(Default::default())
        .map_err(|e| std::io::Error::other(e.to_string()))?;
    let public = key
        .verifying_key()
        .to_public_key_pem(Default::default())
        .map_err(|e| std::io::Error::other(e.to_string()))?;
    Ok((private.to_string(), public))
}

/// `godwit keygen --sign FILE`: a new key pair, the private key in FILE
/// (0600) and the public key in FILE.pub (0644); neither may exist yet.
/// Returns the public key's path.
pub fn write_key_pair(path: &Path) -> Result<PathBuf, KeyError> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let bad = |p: &Path, reason: String| KeyError::File {
        path: p.to_path_buf(),
        reason,
    };
    let mut public_path = path.as_os_str().to_owned();
    public_path.push(".pub");
    let public_path = PathBuf::from(public_path);
    let (private, public) = generate().map_err(|e| bad(path, format!("getrandom: {e}")))?;
    let create = |p: &Path, mode: u32, text: &str| {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .open(p)
            .map_err(|e| match e.kind() {
                std::io::ErrorKind::AlreadyExists => bad(
                    p,
                    "it exists; keygen never overwrites a key (remove it first)".into(),
                ),
                _ => bad(p, e.to_string()),
            })?;
        f.write_all(text.as_bytes())
            .and_then(|()| f.sync_all())
            .map_err(|e| bad(p, e.to_string()))
    };
    if public_path.exists() {
        return Err(bad(
            &public_path,
            "it exists; keygen never overwrites a key (remove it first)".into(),
        ));
    }
    create(path, 0o600, &private)?;
    if let Err(e) = create(&public_path, 0o644, &public) {
        let _ = std::fs::remove_file(path);
        return Err(e);
    }
    Ok(public_path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_signature_checks_only_the_signed_bytes_with_the_signing_key() {
        let (private, public) = generate().unwrap();
        let dir = tempfile::tempdir().unwrap();
        let (sk, pk) = (dir.path().join("k.pem"), dir.path().join("p.pem"));
        std::fs::write(&sk, &private).unwrap();
        std::fs::write(&pk, &public).unwrap();
        let key = load_signing_key(&sk).unwrap();
        let vkey = load_verifying_key(&pk).unwrap();
        let entry = serde_json::to_vec(&sign(&key, b"digests")).unwrap();
        verify(&vkey, b"digests", &entry).unwrap();
        let e = verify(&vkey, b"digestz", &entry).unwrap_err();
        assert!(e.contains("altered"), "{e}");
        let (_, other) = generate().unwrap();
        std::fs::write(&pk, other).unwrap();
        let e = verify(&load_verifying_key(&pk).unwrap(), b"digests", &entry).unwrap_err();
        assert!(e.contains("signed by key"), "{e}");
        // A public key is no private key, and the reverse.
        assert!(load_signing_key(&pk).is_err());
        std::fs::write(&sk, "junk").unwrap();
        assert!(load_verifying_key(&sk)
            .unwrap_err()
            .to_string()
            .contains("openssl pkey"));
    }
}
