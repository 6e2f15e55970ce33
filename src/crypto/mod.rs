//! Client-side encryption of backups: envelope keys, authenticated encryption, key ids.
//!
//! ```text
//! user key (32 bytes, or Argon2id(passphrase, salt, params))  ── the key-encryption key
//!   └─ wraps (AES-256-GCM) ─► a random per-backup data key   ── stored wrapped, with the key id
//!        └─ seals (AES-256-GCM) every chunk / log segment:  "DCE1" | nonce (12) | ciphertext | tag (16)
//! ```
//! - Nonces are 96 random bits from the system's CSPRNG for every sealing; a data key seals
//!   at most one backup's objects (far below the 2^32 messages random GCM nonces allow), so
//!   a nonce never repeats under one data key in practice.
//! - The additional authenticated data ([`object_aad`]) binds the database id, the backup id,
//!   the object kind and its index: a chunk moved or swapped between backups or positions
//!   fails to open.
//! - A key id ([`MasterKey::key_id`]) is an HMAC-SHA256 fingerprint of the key, never the
//!   key: it tells which key a backup needs and whether the one given is it.
//! - Key material lives in [`Zeroizing`] buffers and is wiped when dropped.
//!
//! The primitives are aws-lc-rs's (AES-GCM with hardware acceleration, HMAC, the system
//! CSPRNG) and `rust-argon2`'s Argon2id; nothing here implements cryptography itself.

use aws_lc_rs::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM, NONCE_LEN};
use aws_lc_rs::hmac;
use aws_lc_rs::rand::{SecureRandom, SystemRandom};
use base64::Engine as _;
use zeroize::Zeroizing;

use crate::error::{Error, ErrorKind, Result};

pub mod envelope;

/// Bytes of a key (AES-256).
pub const KEY_LEN: usize = 32;
/// Bytes of an AES-GCM tag.
pub const TAG_LEN: usize = 16;
/// The magic at the start of every sealed object (format version 1).
pub const MAGIC: &[u8; 4] = b"DCE1";
/// Bytes a sealed object adds to its plaintext: magic, nonce, tag.
pub const OVERHEAD: usize = MAGIC.len() + NONCE_LEN + TAG_LEN;
/// The algorithm name recorded in backups.
pub const ALGORITHM: &str = "aes-256-gcm";

const OP: &str = "encryption";
const KEY_ID_LABEL: &[u8] = b"datacamp key id v1";
const WRAP_AAD_LABEL: &[u8] = b"datacamp data key v1";

fn random(out: &mut [u8]) -> Result<()> {
    SystemRandom::new()
        .fill(out)
        .map_err(|_| Error::internal(OP, "the system's random number generator failed"))
}

/// Parameters of the Argon2id derivation of a key from a passphrase (recorded in a backup).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KdfParams {
    /// The random salt (16 bytes for new backups).
    pub salt: Vec<u8>,
    /// Memory cost in KiB.
    pub memory_kib: u32,
    /// Iterations.
    pub iterations: u32,
    /// Lanes.
    pub parallelism: u32,
}

impl KdfParams {
    /// New parameters with a fresh random salt: 64 MiB, 3 iterations, 1 lane (above OWASP's
    /// recommended minimum for Argon2id; about a quarter of a second on one core).
    pub fn generate() -> Result<Self> {
        let mut salt = vec![0u8; 16];
        random(&mut salt)?;
        Ok(KdfParams {
            salt,
            memory_kib: 64 * 1024,
            iterations: 3,
            parallelism: 1,
        })
    }

    /// Check recorded parameters before using them: refuses (`Corrupt`) values a backup
    /// could only hold if it was damaged or crafted (a memory cost above 4 GiB, say).
    pub fn check(&self) -> Result<()> {
        let ok = (8..=64).contains(&self.salt.len())
            && (8..=4 * 1024 * 1024).contains(&self.memory_kib)
            && (1..=100).contains(&self.iterations)
            && (1..=16).contains(&self.parallelism);
        if ok {
            Ok(())
        } else {
            Err(Error::corrupt(
                OP,
                format!(
                    "unusable Argon2id parameters (salt {} bytes, {} KiB, {} iterations, {} lanes)",
                    self.salt.len(),
                    self.memory_kib,
                    self.iterations,
                    self.parallelism
                ),
            ))
        }
    }
}

/// The user's key (the key-encryption key): given directly, or derived from a passphrase.
pub struct MasterKey {
    key: Zeroizing<[u8; KEY_LEN]>,
    id: String,
    kdf: Option<KdfParams>,
}

impl std::fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MasterKey")
            .field("key_id", &self.id)
            .field("kdf", &self.kdf)
            .finish_non_exhaustive()
    }
}

fn key_id_of(key: &[u8; KEY_LEN]) -> String {
    let tag = hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, key), KEY_ID_LABEL);
    format!("dck1-{}", hex::encode(&tag.as_ref()[..10]))
}

impl MasterKey {
    /// Given exactly 32 key bytes, return the key (`InvalidArgument` for another length; the
    /// message never shows the bytes).
    pub fn from_bytes(bytes: &[u8]) -> Result<Self> {
        let key: [u8; KEY_LEN] = bytes.try_into().map_err(|_| {
            Error::invalid(
                OP,
                format!(
                    "an encryption key must be {KEY_LEN} bytes, got {}",
                    bytes.len()
                ),
            )
            .with_hint("generate one with `head -c 32 /dev/urandom | base64`, or use :passphrase")
        })?;
        let key = Zeroizing::new(key);
        Ok(MasterKey {
            id: key_id_of(&key),
            key,
            kdf: None,
        })
    }

    /// Given base64 text of 32 bytes (standard or URL-safe alphabet, padding optional, outer
    /// whitespace ignored), return the key.
    pub fn from_base64(text: &str) -> Result<Self> {
        let t = text.trim();
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(t)
            .or_else(|_| base64::engine::general_purpose::STANDARD_NO_PAD.decode(t))
            .or_else(|_| base64::engine::general_purpose::URL_SAFE.decode(t))
            .or_else(|_| base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(t))
            .map_err(|_| {
                Error::invalid(
                    OP,
                    "the encryption key is not valid base64 (the text is not shown)",
                )
            })?;
        Self::from_bytes(&Zeroizing::new(decoded))
    }

    /// Derive the key from a passphrase with Argon2id and `params` (recorded in the backup so
    /// that restores derive the same key).
    pub fn from_passphrase(passphrase: &[u8], params: &KdfParams) -> Result<Self> {
        params.check()?;
        if passphrase.is_empty() {
            return Err(Error::invalid(OP, "the passphrase is empty"));
        }
        let config = argon2::Config {
            ad: &[],
            hash_length: KEY_LEN as u32,
            lanes: params.parallelism,
            mem_cost: params.memory_kib,
            secret: &[],
            thread_mode: argon2::ThreadMode::Sequential,
            time_cost: params.iterations,
            variant: argon2::Variant::Argon2id,
            version: argon2::Version::Version13,
        };
        let derived = Zeroizing::new(
            argon2::hash_raw(passphrase, &params.salt, &config)
                .map_err(|e| Error::corrupt(OP, format!("unusable Argon2id parameters: {e}")))?,
        );
        let mut key = Zeroizing::new([0u8; KEY_LEN]);
        key.copy_from_slice(&derived);
        Ok(MasterKey {
            id: key_id_of(&key),
            key,
            kdf: Some(params.clone()),
        })
    }

    /// The key's fingerprint (`dck1-` and 20 hex digits): safe to store and to show.
    pub fn key_id(&self) -> &str {
        &self.id
    }

    /// The Argon2id parameters when the key came from a passphrase.
    pub fn kdf(&self) -> Option<&KdfParams> {
        self.kdf.as_ref()
    }

    fn sealing_key(&self) -> Result<LessSafeKey> {
        seal_key(self.key.as_ref())
    }

    /// Wrap (encrypt) a data key for the backup `context` (e.g. `database-id/backup-id`):
    /// the wrapped form is bound to that context.
    pub fn wrap(&self, dek: &DataKey, context: &str) -> Result<WrappedKey> {
        let sealed = seal_with(&self.sealing_key()?, &wrap_aad(context), dek.key.as_ref())?;
        Ok(WrappedKey {
            key_id: self.id.clone(),
            sealed,
        })
    }

    /// Unwrap a data key. A key whose id is not the wrapped key's fails with
    /// [`ErrorKind::WrongKey`] naming both ids; a wrapped key that does not open under the
    /// right key (edited, or moved from another backup) is `Corrupt`.
    pub fn unwrap(&self, wrapped: &WrappedKey, context: &str) -> Result<DataKey> {
        if wrapped.key_id != self.id {
            return Err(wrong_key(&wrapped.key_id, &self.id));
        }
        let plain = open_with(&self.sealing_key()?, &wrap_aad(context), &wrapped.sealed)
            .map_err(|_| {
                Error::corrupt(
                    OP,
                    "the wrapped data key does not open under its key: it was edited or copied from another backup",
                )
            })?;
        DataKey::from_slice(&plain)
    }
}

/// The error for a key that is not the one a backup was encrypted with.
pub fn wrong_key(expected: &str, given: &str) -> Error {
    Error::new(
        ErrorKind::WrongKey,
        OP,
        format!("the backup was encrypted with key {expected}, the key given is {given}"),
    )
    .with_hint(
        "pass the backup's key (key ids are fingerprints: the same key always has the same id)",
    )
}

fn wrap_aad(context: &str) -> Vec<u8> {
    let mut aad = WRAP_AAD_LABEL.to_vec();
    aad.push(0);
    aad.extend_from_slice(context.as_bytes());
    aad
}

/// A backup's data key: random, used only for that backup's objects.
pub struct DataKey {
    key: Zeroizing<[u8; KEY_LEN]>,
    sealing: LessSafeKey,
}

impl std::fmt::Debug for DataKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DataKey(** redacted **)")
    }
}

fn seal_key(key: &[u8]) -> Result<LessSafeKey> {
    let unbound = UnboundKey::new(&AES_256_GCM, key)
        .map_err(|_| Error::internal(OP, "AES-256-GCM refused a 32-byte key"))?;
    Ok(LessSafeKey::new(unbound))
}

fn seal_with(key: &LessSafeKey, aad: &[u8], plaintext: &[u8]) -> Result<Vec<u8>> {
    let mut nonce = [0u8; NONCE_LEN];
    random(&mut nonce)?;
    let mut out = Vec::with_capacity(plaintext.len() + OVERHEAD);
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&nonce);
    out.extend_from_slice(plaintext);
    let mut tail = out.split_off(MAGIC.len() + NONCE_LEN);
    key.seal_in_place_append_tag(
        Nonce::assume_unique_for_key(nonce),
        Aad::from(aad),
        &mut tail,
    )
    .map_err(|_| Error::internal(OP, "AES-256-GCM sealing failed"))?;
    out.extend_from_slice(&tail);
    Ok(out)
}

fn open_with(key: &LessSafeKey, aad: &[u8], sealed: &[u8]) -> Result<Vec<u8>> {
    if sealed.len() < OVERHEAD || &sealed[..MAGIC.len()] != MAGIC {
        return Err(Error::corrupt(
            OP,
            "not an encrypted object (too short, or no DCE1 header)",
        ));
    }
    let nonce: [u8; NONCE_LEN] = sealed[MAGIC.len()..MAGIC.len() + NONCE_LEN]
        .try_into()
        .map_err(|_| Error::internal(OP, "nonce slice"))?;
    let mut buf = sealed[MAGIC.len() + NONCE_LEN..].to_vec();
    let plain_len = key
        .open_in_place(
            Nonce::assume_unique_for_key(nonce),
            Aad::from(aad),
            &mut buf,
        )
        .map_err(|_| Error::corrupt(OP, "authentication failed"))?
        .len();
    buf.truncate(plain_len);
    Ok(buf)
}

impl DataKey {
    /// A new random data key.
    pub fn generate() -> Result<Self> {
        let mut key = Zeroizing::new([0u8; KEY_LEN]);
        random(key.as_mut())?;
        Self::from_slice(key.as_ref())
    }

    fn from_slice(bytes: &[u8]) -> Result<Self> {
        let key: [u8; KEY_LEN] = bytes
            .try_into()
            .map_err(|_| Error::corrupt(OP, "the unwrapped data key has the wrong length"))?;
        let key = Zeroizing::new(key);
        Ok(DataKey {
            sealing: seal_key(key.as_ref())?,
            key,
        })
    }

    /// Encrypt `plaintext` bound to `aad` (see [`object_aad`]): `DCE1 | nonce | ct | tag`.
    pub fn seal(&self, aad: &[u8], plaintext: &[u8]) -> Result<Vec<u8>> {
        seal_with(&self.sealing, aad, plaintext)
    }

    /// Decrypt what [`DataKey::seal`] produced with the same `aad`; `Corrupt` when the bytes
    /// were altered, truncated, or sealed for another object.
    pub fn open(&self, aad: &[u8], sealed: &[u8]) -> Result<Vec<u8>> {
        open_with(&self.sealing, aad, sealed)
    }
}

/// A data key wrapped by a [`MasterKey`], as a backup stores it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WrappedKey {
    /// The id of the key that wrapped it.
    pub key_id: String,
    /// `DCE1 | nonce | encrypted data key | tag`.
    pub sealed: Vec<u8>,
}

impl WrappedKey {
    /// The sealed bytes as base64 (for EDN metadata).
    pub fn sealed_base64(&self) -> String {
        base64::engine::general_purpose::STANDARD.encode(&self.sealed)
    }

    /// Given a key id and the base64 of the sealed bytes, return the wrapped key (`Corrupt`
    /// for bad base64).
    pub fn from_base64(key_id: &str, sealed: &str) -> Result<Self> {
        let sealed = base64::engine::general_purpose::STANDARD
            .decode(sealed.trim())
            .map_err(|_| Error::corrupt(OP, "the wrapped data key is not valid base64"))?;
        Ok(WrappedKey {
            key_id: key_id.to_owned(),
            sealed,
        })
    }
}

/// The additional authenticated data of one stored object: the database id, the backup
/// id, the object's kind (`"chunk"`, `"segment"`, `"config"`) and its index, each
/// length-prefixed so that no two different tuples give the same bytes.
pub fn object_aad(database_id: &str, backup_id: &str, kind: &str, index: u64) -> Vec<u8> {
    let mut aad = b"datacamp object v1".to_vec();
    for part in [
        database_id.as_bytes(),
        backup_id.as_bytes(),
        kind.as_bytes(),
    ] {
        aad.extend_from_slice(&(part.len() as u32).to_be_bytes());
        aad.extend_from_slice(part);
    }
    aad.extend_from_slice(&index.to_be_bytes());
    aad
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(byte: u8) -> MasterKey {
        MasterKey::from_bytes(&[byte; KEY_LEN]).unwrap()
    }

    #[test]
    fn sealed_objects_open_only_with_their_key_and_their_aad() {
        let dek = DataKey::generate().unwrap();
        let aad = object_aad("db", "b1", "chunk", 3);
        let sealed = dek.seal(&aad, b"datoms").unwrap();
        assert_eq!(sealed.len(), 6 + OVERHEAD);
        assert_eq!(&sealed[..4], MAGIC);
        assert_eq!(dek.open(&aad, &sealed).unwrap(), b"datoms");
        // Two sealings of the same plaintext differ (fresh nonces).
        assert_ne!(dek.seal(&aad, b"datoms").unwrap(), sealed);
        for other in [
            object_aad("db", "b1", "chunk", 4),
            object_aad("db", "b2", "chunk", 3),
            object_aad("db2", "b1", "chunk", 3),
            object_aad("db", "b1", "segment", 3),
        ] {
            assert_eq!(
                dek.open(&other, &sealed).unwrap_err().kind,
                ErrorKind::Corrupt
            );
        }
        let mut flipped = sealed.clone();
        flipped[20] ^= 1;
        assert_eq!(
            dek.open(&aad, &flipped).unwrap_err().kind,
            ErrorKind::Corrupt
        );
        assert!(dek.open(&aad, &sealed[..sealed.len() - 1]).is_err());
        assert!(dek.open(&aad, b"DCE1").is_err());
        assert!(DataKey::generate().unwrap().open(&aad, &sealed).is_err());
    }

    #[test]
    fn aad_fields_cannot_run_into_each_other() {
        assert_ne!(
            object_aad("ab", "c", "chunk", 0),
            object_aad("a", "bc", "chunk", 0)
        );
    }

    #[test]
    fn data_keys_wrap_and_unwrap_bound_to_their_backup() {
        let (k1, k2) = (key(1), key(2));
        assert_ne!(k1.key_id(), k2.key_id());
        assert_eq!(k1.key_id(), key(1).key_id(), "ids are stable");
        assert!(k1.key_id().starts_with("dck1-") && k1.key_id().len() == 25);
        let dek = DataKey::generate().unwrap();
        let wrapped = k1.wrap(&dek, "db/b1").unwrap();
        let back = WrappedKey::from_base64(&wrapped.key_id, &wrapped.sealed_base64()).unwrap();
        let again = k1.unwrap(&back, "db/b1").unwrap();
        let aad = object_aad("db", "b1", "chunk", 0);
        assert_eq!(
            again.open(&aad, &dek.seal(&aad, b"x").unwrap()).unwrap(),
            b"x"
        );
        let err = k2.unwrap(&wrapped, "db/b1").unwrap_err();
        assert_eq!(err.kind, ErrorKind::WrongKey);
        assert!(err.message.contains(k1.key_id()) && err.message.contains(k2.key_id()));
        assert_eq!(
            k1.unwrap(&wrapped, "db/b2").unwrap_err().kind,
            ErrorKind::Corrupt
        );
        let mut edited = wrapped.clone();
        edited.sealed[25] ^= 1;
        assert_eq!(
            k1.unwrap(&edited, "db/b1").unwrap_err().kind,
            ErrorKind::Corrupt
        );
    }

    #[test]
    fn argon2id_matches_the_reference_implementations_test_vector() {
        // phc-winner-argon2 test.c: Argon2id v1.3, m=2^16 KiB, t=2, p=1, "password", "somesalt".
        let params = KdfParams {
            salt: b"somesalt".to_vec(),
            memory_kib: 1 << 16,
            iterations: 2,
            parallelism: 1,
        };
        let k = MasterKey::from_passphrase(b"password", &params).unwrap();
        assert_eq!(
            hex::encode(k.key.as_ref()),
            "09316115d5cf24ed5a15a31a3ba326e5cf32edc24702987c02b6566f61913cf7"
        );
    }

    #[test]
    fn keys_from_base64_and_passphrases() {
        use base64::engine::general_purpose::STANDARD;
        let b64 = STANDARD.encode([7u8; KEY_LEN]);
        assert_eq!(
            MasterKey::from_base64(&format!(" {b64}\n"))
                .unwrap()
                .key_id(),
            key(7).key_id()
        );
        let err = MasterKey::from_base64("c2VjcmV0").unwrap_err();
        assert_eq!(err.kind, ErrorKind::InvalidArgument);
        assert!(!err.to_string().contains("c2VjcmV0"));
        assert!(MasterKey::from_base64("not base64 !!").is_err());
        let params = KdfParams {
            salt: vec![9; 16],
            memory_kib: 64,
            iterations: 1,
            parallelism: 1,
        };
        let p1 = MasterKey::from_passphrase(b"correct horse", &params).unwrap();
        let p2 = MasterKey::from_passphrase(b"correct horse", &params).unwrap();
        assert_eq!(p1.key_id(), p2.key_id());
        assert_eq!(p1.kdf(), Some(&params));
        let other_salt = KdfParams {
            salt: vec![8; 16],
            ..params.clone()
        };
        assert_ne!(
            MasterKey::from_passphrase(b"correct horse", &other_salt)
                .unwrap()
                .key_id(),
            p1.key_id()
        );
        assert_ne!(
            MasterKey::from_passphrase(b"wrong horse", &params)
                .unwrap()
                .key_id(),
            p1.key_id()
        );
        let crafted = KdfParams {
            memory_kib: u32::MAX,
            ..params
        };
        assert_eq!(
            MasterKey::from_passphrase(b"x", &crafted).unwrap_err().kind,
            ErrorKind::Corrupt
        );
        assert!(!format!("{p1:?}").contains("key:"));
        assert_eq!(KdfParams::generate().unwrap().salt.len(), 16);
    }
}
