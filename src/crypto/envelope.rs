//! Encryption as a backup uses it: the `:encryption` option ([`KeySpec`]), the record a
//! backup keeps of it (`:format/encryption`, [`Envelope`]) and the per-backup sealing of
//! chunks and of `config.edn`'s schema facts ([`BackupCipher`]).
//!
//! ```text
//! {:encryption {:key … | :key-file … | :key-env … | :passphrase …}}  ──► KeySpec
//!   new backup:  KeySpec ─► MasterKey ─wrap─► Envelope (manifest, config.edn)
//!                                    └─► BackupCipher (random DataKey, db id, backup id)
//!   restore:     KeySpec + Envelope ─unwrap─► BackupCipher   (or WrongKey, naming key ids)
//! ```
//! The key given never reaches a message: errors name key ids (fingerprints) only.

use std::sync::Arc;

use base64::Engine as _;
use zeroize::Zeroizing;

use super::{
    wrong_key, DataKey, KdfParams, MasterKey, WrappedKey, ALGORITHM, KEY_LEN, MAGIC, OVERHEAD,
};
use crate::codec::edn;
use crate::error::{clip, Error, ErrorKind, Result};
use crate::model::{kw_map, Value};
use crate::options::{describe, Opts};

const OP: &str = "encryption";

/// The keys of the `:encryption` option map.
pub const OPTION_KEYS: &[&str] = &["key", "key-file", "key-env", "passphrase"];

/// The most bytes of a `:key-file` read (a key file holds 32 bytes or their base64).
const MAX_KEY_FILE_BYTES: u64 = 4096;

/// The user's key as the `:encryption` option gives it, resolved (files and environment
/// variables read) and held in native memory only.
#[derive(Clone)]
pub enum KeySpec {
    /// A 32-byte key (`:key`, `:key-file`, `:key-env`).
    Key(Arc<MasterKey>),
    /// A passphrase: the key is derived with Argon2id (fresh parameters for a new backup,
    /// the recorded ones for a restore).
    Passphrase(Arc<Zeroizing<Vec<u8>>>),
}

impl std::fmt::Debug for KeySpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            KeySpec::Key(k) => write!(f, "KeySpec::Key({})", k.key_id()),
            KeySpec::Passphrase(_) => f.write_str("KeySpec::Passphrase(** redacted **)"),
        }
    }
}

fn key_from_text_or_bytes(bytes: &[u8]) -> Result<MasterKey> {
    if bytes.len() == KEY_LEN {
        return MasterKey::from_bytes(bytes);
    }
    let text = std::str::from_utf8(bytes).map_err(|_| {
        Error::invalid(
            OP,
            format!(
                "a key must be {KEY_LEN} bytes or their base64, got {} bytes",
                bytes.len()
            ),
        )
    })?;
    MasterKey::from_base64(text)
}

impl KeySpec {
    /// Given an operation's options map, return its `:encryption` key (`None` when absent).
    /// `:key` is 32 bytes (EDN bytes) or their base64 text; `:key-file` a file holding the
    /// raw 32 bytes or their base64; `:key-env` an environment variable holding the base64;
    /// `:passphrase` text. Exactly one must be given. Errors never show a value.
    pub fn from_options(v: &Value, op: &'static str) -> Result<Option<Self>> {
        Self::from_option(v, "encryption", op)
    }

    /// As [`KeySpec::from_options`], for the key map under option `name` (`:old-key`, …).
    pub fn from_option(v: &Value, name: &str, op: &'static str) -> Result<Option<Self>> {
        let o = Opts::new(v, op)?;
        let Some(map) = o.get(name) else {
            return Ok(None);
        };
        let Value::Map(_) = map else {
            return Err(Error::invalid(
                op,
                format!(
                    ":{name} must be a map such as {{:key-file \"…\"}}, got {}",
                    describe(map)
                ),
            ));
        };
        let e = Opts::new(map, op)?;
        e.only_keys(OPTION_KEYS, ":encryption map")?;
        let given: Vec<&str> = OPTION_KEYS
            .iter()
            .copied()
            .filter(|k| e.get(k).is_some())
            .collect();
        if given.len() != 1 {
            return Err(Error::invalid(
                op,
                format!(
                    ":encryption needs exactly one of :key :key-file :key-env :passphrase, got {}",
                    if given.is_empty() {
                        "none".to_owned()
                    } else {
                        given
                            .iter()
                            .map(|k| format!(":{k}"))
                            .collect::<Vec<_>>()
                            .join(" ")
                    }
                ),
            ));
        }
        let bad = |k: &str, want: &str, got: &Value| {
            Error::invalid(
                op,
                format!(":encryption :{k} must be {want}, got {}", describe(got)),
            )
        };
        let spec = match (given[0], e.get(given[0]).unwrap_or(&Value::Nil)) {
            ("key", Value::Bytes(b)) => KeySpec::Key(Arc::new(MasterKey::from_bytes(b)?)),
            ("key", Value::String(s)) => KeySpec::Key(Arc::new(MasterKey::from_base64(s)?)),
            ("key", other) => return Err(bad("key", "32 bytes or their base64", other)),
            ("key-file", Value::String(path)) => {
                use std::io::Read;
                let file = std::fs::File::open(path).map_err(|err| {
                    Error::invalid(op, format!("cannot read the :key-file: {err}"))
                        .with_key(clip(path).into_owned())
                })?;
                let mut bytes = Zeroizing::new(Vec::new());
                file.take(MAX_KEY_FILE_BYTES)
                    .read_to_end(&mut bytes)
                    .map_err(|err| {
                        Error::invalid(op, format!("cannot read the :key-file: {err}"))
                            .with_key(clip(path).into_owned())
                    })?;
                KeySpec::Key(Arc::new(
                    key_from_text_or_bytes(&bytes)
                        .map_err(|err| err.with_key(clip(path).into_owned()))?,
                ))
            }
            ("key-file", other) => return Err(bad("key-file", "a path", other)),
            ("key-env", Value::String(var)) => {
                let text = Zeroizing::new(std::env::var(var).map_err(|_| {
                    Error::invalid(
                        op,
                        format!(
                            "the environment variable {} named by :key-env is not set (or not text)",
                            clip(var)
                        ),
                    )
                })?);
                KeySpec::Key(Arc::new(MasterKey::from_base64(&text)?))
            }
            ("key-env", other) => return Err(bad("key-env", "a variable name", other)),
            ("passphrase", Value::String(p)) if !p.is_empty() => {
                KeySpec::Passphrase(Arc::new(Zeroizing::new(p.as_bytes().to_vec())))
            }
            ("passphrase", other) => return Err(bad("passphrase", "non-empty text", other)),
            _ => return Err(Error::internal(op, "unhandled :encryption key")),
        };
        Ok(Some(spec))
    }

    /// For a new backup `database_id`/`backup_id`: a fresh data key, wrapped by this key
    /// (a passphrase is derived with `kdf`, the chain's parameters for an incremental, or
    /// fresh Argon2id parameters); return the record to store and the cipher.
    pub fn seal_new(
        &self,
        database_id: &str,
        backup_id: &str,
        kdf: Option<&KdfParams>,
    ) -> Result<(Envelope, BackupCipher)> {
        let derived;
        let master: &MasterKey = match self {
            KeySpec::Key(k) => k,
            KeySpec::Passphrase(p) => {
                let params = match kdf {
                    Some(k) => k.clone(),
                    None => KdfParams::generate()?,
                };
                derived = MasterKey::from_passphrase(p, &params)?;
                &derived
            }
        };
        let dek = DataKey::generate()?;
        let wrapped = master.wrap(&dek, &context(database_id, backup_id))?;
        let envelope = Envelope {
            algorithm: ALGORITHM.into(),
            key_id: wrapped.key_id.clone(),
            wrapped_key: wrapped.sealed_base64(),
            kdf: master.kdf().cloned(),
        };
        Ok((envelope, BackupCipher::new(dek, database_id, backup_id)))
    }

    /// Given backup `database_id`/`backup_id`'s record, opened with this (the old) key,
    /// return the record with its data key wrapped by `new` instead (a passphrase derived
    /// with `new_kdf`): the data key and so every sealed object stay as they are.
    pub fn rewrap(
        &self,
        envelope: &Envelope,
        new: &KeySpec,
        new_kdf: Option<&KdfParams>,
        database_id: &str,
        backup_id: &str,
    ) -> Result<Envelope> {
        let cipher = self.open(envelope, database_id, backup_id)?;
        let derived;
        let master: &MasterKey = match new {
            KeySpec::Key(k) => k,
            KeySpec::Passphrase(p) => {
                let params = new_kdf.ok_or_else(|| {
                    Error::internal(OP, "a new passphrase needs its Argon2id parameters")
                })?;
                derived = MasterKey::from_passphrase(p, params)?;
                &derived
            }
        };
        let wrapped = master.wrap(&cipher.dek, &context(database_id, backup_id))?;
        Ok(Envelope {
            algorithm: ALGORITHM.into(),
            key_id: wrapped.key_id.clone(),
            wrapped_key: wrapped.sealed_base64(),
            kdf: master.kdf().cloned(),
        })
    }

    /// The key id this spec gives with passphrase parameters `kdf` (for a key, its id).
    pub fn key_id_with(&self, kdf: Option<&KdfParams>) -> Result<Option<String>> {
        match (self, kdf) {
            (KeySpec::Key(k), _) => Ok(Some(k.key_id().to_owned())),
            (KeySpec::Passphrase(p), Some(params)) => Ok(Some(
                MasterKey::from_passphrase(p, params)?.key_id().to_owned(),
            )),
            (KeySpec::Passphrase(_), None) => Ok(None),
        }
    }

    /// Open backup `database_id`/`backup_id`'s data key recorded in `envelope` (validated
    /// first): [`ErrorKind::WrongKey`] naming the expected and given key ids when this is
    /// not the backup's key, `Corrupt` when the wrapped key was edited or moved.
    pub fn open(
        &self,
        envelope: &Envelope,
        database_id: &str,
        backup_id: &str,
    ) -> Result<BackupCipher> {
        envelope.check()?;
        let derived;
        let master: &MasterKey = match (self, envelope.kdf.as_ref()) {
            (KeySpec::Key(k), _) => k,
            (KeySpec::Passphrase(p), Some(params)) => {
                derived = MasterKey::from_passphrase(p, params)?;
                &derived
            }
            (KeySpec::Passphrase(_), None) => {
                return Err(wrong_key(&envelope.key_id, "a passphrase").with_hint(
                    "the backup was encrypted with a 32-byte key, not a passphrase: pass :key, :key-file or :key-env",
                ))
            }
        };
        let wrapped = WrappedKey::from_base64(&envelope.key_id, &envelope.wrapped_key)?;
        let dek = master
            .unwrap(&wrapped, &context(database_id, backup_id))
            .map_err(|e| e.in_op(format!("open backup {backup_id}")))?;
        Ok(BackupCipher::new(dek, database_id, backup_id))
    }
}

fn context(database_id: &str, backup_id: &str) -> String {
    format!("{database_id}/{backup_id}")
}

/// Given a backup's encryption record (if any) and the key given (if any), return the
/// backup's cipher: `None` for a plain backup read without a key; `WrongKey` (with a hint)
/// for an encrypted backup read without one; `InvalidArgument` for a plain backup read with
/// a key (it would be read unauthenticated, as if it were encrypted).
pub fn resolve(
    envelope: Option<&Envelope>,
    spec: Option<&KeySpec>,
    database_id: &str,
    backup_id: &str,
) -> Result<Option<Arc<BackupCipher>>> {
    match (envelope, spec) {
        (None, None) => Ok(None),
        (Some(env), Some(spec)) => Ok(Some(Arc::new(spec.open(env, database_id, backup_id)?))),
        (Some(env), None) => Err(missing_key(&env.key_id, backup_id)),
        (None, Some(_)) => Err(Error::invalid(
            OP,
            format!("backup {backup_id} is not encrypted, but :encryption was given"),
        )
        .with_hint("leave out :encryption to read a plain backup (an unencrypted backup proves nothing about who wrote it)")),
    }
}

/// The error for an encrypted backup read without a key.
pub fn missing_key(key_id: &str, backup_id: &str) -> Error {
    Error::new(
        ErrorKind::WrongKey,
        OP,
        format!("backup {backup_id} is encrypted with key {key_id}, and no key was given"),
    )
    .with_hint(
        "pass the backup's key: :encryption {:key-file \"…\"} (or :key, :key-env, :passphrase)",
    )
}

/// What a backup records of its encryption (`:format/encryption` in `manifest.edn` and
/// `config.edn`): the algorithm, the key id, the wrapped data key and, for a passphrase,
/// the Argon2id parameters. Never the key.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Envelope {
    /// `aes-256-gcm`.
    pub algorithm: String,
    /// The user key's id (`dck1-…`).
    pub key_id: String,
    /// The wrapped data key, base64.
    pub wrapped_key: String,
    /// The Argon2id parameters (passphrases only).
    #[serde(skip)]
    pub kdf: Option<KdfParams>,
}

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

impl Envelope {
    /// The EDN map stored in metadata.
    pub fn to_value(&self) -> Value {
        let mut v = kw_map([
            ("algorithm", Value::str(&self.algorithm)),
            ("key-id", Value::str(&self.key_id)),
            ("wrapped-key", Value::str(&self.wrapped_key)),
        ]);
        if let (Some(k), Value::Map(entries)) = (&self.kdf, &mut v) {
            entries.push((
                Value::kw("kdf"),
                kw_map([
                    ("algorithm", Value::str("argon2id")),
                    ("salt", Value::str(&b64(&k.salt))),
                    ("memory-kib", Value::Long(k.memory_kib.into())),
                    ("iterations", Value::Long(k.iterations.into())),
                    ("parallelism", Value::Long(k.parallelism.into())),
                ]),
            ));
        }
        v
    }

    /// Read `:format/encryption` (not nil) leniently: a map's fields as found (missing ones
    /// empty), anything else as an algorithm this version does not know. [`Envelope::check`]
    /// is the strict check.
    pub fn from_value(v: &Value) -> Self {
        let text = |m: &Value, k: &str| match m.get(k) {
            Some(Value::String(s)) => s.clone(),
            Some(Value::Keyword(n)) => n.to_string(),
            Some(Value::Nil) | None => String::new(),
            Some(other) => edn::write(other),
        };
        match v {
            Value::Map(_) => {
                let kdf = v.get("kdf").filter(|k| **k != Value::Nil).map(|k| {
                    let n = |key: &str| {
                        k.get(key)
                            .and_then(Value::as_long)
                            .and_then(|n| u32::try_from(n).ok())
                            .unwrap_or(0)
                    };
                    KdfParams {
                        salt: base64::engine::general_purpose::STANDARD
                            .decode(text(k, "salt"))
                            .unwrap_or_default(),
                        memory_kib: if text(k, "algorithm") == "argon2id" {
                            n("memory-kib")
                        } else {
                            0
                        },
                        iterations: n("iterations"),
                        parallelism: n("parallelism"),
                    }
                });
                Envelope {
                    algorithm: text(v, "algorithm"),
                    key_id: text(v, "key-id"),
                    wrapped_key: text(v, "wrapped-key"),
                    kdf,
                }
            }
            other => Envelope {
                algorithm: match other {
                    Value::String(s) => s.clone(),
                    Value::Keyword(n) => n.to_string(),
                    x => edn::write(x),
                },
                key_id: String::new(),
                wrapped_key: String::new(),
                kdf: None,
            },
        }
    }

    /// Whether this version reads this kind of record (else the backup is `Unsupported`):
    /// the algorithm is [`ALGORITHM`] and the record is a map naming a key (a bare
    /// `:aes-256-gcm`, say, is some other scheme's).
    pub fn known_algorithm(&self) -> bool {
        self.algorithm == ALGORITHM && !(self.key_id.is_empty() && self.wrapped_key.is_empty())
    }

    /// What is wrong with the record's shape, if anything (the algorithm aside): a key id
    /// `dck1-` and 20 hex digits, a wrapped key of base64 holding exactly a sealed 32-byte
    /// key, usable Argon2id parameters.
    pub fn problem(&self) -> Option<String> {
        let id_ok = self.key_id.len() == 25
            && self.key_id.starts_with("dck1-")
            && self.key_id[5..]
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
        if !id_ok {
            return Some(":key-id is not a datacamp key id (dck1- and 20 hex digits)".into());
        }
        let sealed = base64::engine::general_purpose::STANDARD.decode(self.wrapped_key.trim());
        match sealed {
            Ok(s) if s.len() == KEY_LEN + OVERHEAD && s.starts_with(MAGIC) => {}
            _ => return Some(":wrapped-key is not a wrapped 32-byte key in base64".into()),
        }
        if let Some(k) = &self.kdf {
            if let Err(e) = k.check() {
                return Some(format!(":kdf: {}", e.message));
            }
        }
        None
    }

    /// `Ok` when the record is one this version reads ([`Envelope::known_algorithm`],
    /// no [`Envelope::problem`]).
    pub fn check(&self) -> Result<()> {
        if !self.known_algorithm() {
            return Err(Error::new(
                ErrorKind::Unsupported,
                OP,
                format!(
                    ":format/encryption {} is not an encryption this version reads (it reads {{:algorithm \"{ALGORITHM}\" :key-id … :wrapped-key …}})",
                    clip(&self.algorithm)
                ),
            ));
        }
        match self.problem() {
            Some(p) => Err(Error::corrupt(OP, format!(":format/encryption {p}"))),
            None => Ok(()),
        }
    }
}

/// Seals and opens the objects of one backup under its data key, each bound to the
/// database id, the backup id, its kind and its index ([`super::object_aad`]).
pub struct BackupCipher {
    dek: DataKey,
    database_id: String,
    backup_id: String,
}

impl std::fmt::Debug for BackupCipher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "BackupCipher({}/{})", self.database_id, self.backup_id)
    }
}

/// The object kind of datom chunks (`chunks/…`).
pub const CHUNK: &str = "chunk";
/// The object kind of `:db/noHistory` state chunks (`state/…`).
pub const STATE: &str = "state";
/// The object kind of `config.edn`'s sealed part.
pub const CONFIG: &str = "config";

impl BackupCipher {
    fn new(dek: DataKey, database_id: &str, backup_id: &str) -> Self {
        BackupCipher {
            dek,
            database_id: database_id.to_owned(),
            backup_id: backup_id.to_owned(),
        }
    }

    /// Seal object `index` of `kind` ([`CHUNK`], [`CONFIG`]).
    pub fn seal(&self, kind: &str, index: u64, plain: &[u8]) -> Result<Vec<u8>> {
        self.dek.seal(
            &super::object_aad(&self.database_id, &self.backup_id, kind, index),
            plain,
        )
    }

    /// Seal the compressed bytes of chunk `id` stored under `rel_key` (relative to the
    /// backup folder: `chunks/…` is a datom chunk, `state/…` a state chunk; the kinds are
    /// bound separately so that neither can stand in for the other).
    pub fn seal_chunk(&self, rel_key: &str, id: u64, compressed: &[u8]) -> Result<Vec<u8>> {
        self.seal(chunk_kind(rel_key), id, compressed)
    }

    /// Open what [`BackupCipher::seal_chunk`] sealed.
    pub fn open_chunk(&self, rel_key: &str, id: u64, sealed: &[u8]) -> Result<Vec<u8>> {
        self.open(chunk_kind(rel_key), id, sealed)
    }

    /// Open object `index` of `kind`: `Corrupt` when it was altered, truncated, or sealed
    /// for another backup or position.
    pub fn open(&self, kind: &str, index: u64, sealed: &[u8]) -> Result<Vec<u8>> {
        self.dek.open(
            &super::object_aad(&self.database_id, &self.backup_id, kind, index),
            sealed,
        )
    }
}

fn chunk_kind(rel_key: &str) -> &'static str {
    if rel_key.starts_with("state/") {
        STATE
    } else {
        CHUNK
    }
}

/// The keys of `config.edn` that hold user data (the source's configuration and schema
/// facts): an encrypted backup stores them sealed under `:backup/sealed-config`.
pub const SEALED_CONFIG_KEYS: &[&str] = &[
    "datahike/config",
    "datahike/id",
    "schema/ref-attrs",
    "schema/tx-instant-attr",
    "schema/no-history-attrs",
];

/// Given the full `config.edn` map and a backup's cipher, return the map stored: the
/// [`SEALED_CONFIG_KEYS`] replaced by `:backup/sealed-config` (base64 of their EDN, sealed),
/// `:format/encryption` added. Without a cipher, the map as it is.
pub fn seal_config(
    config: Value,
    cipher: Option<&BackupCipher>,
    envelope: Option<&Envelope>,
) -> Result<Value> {
    let (Some(cipher), Some(envelope), Value::Map(entries)) = (cipher, envelope, &config) else {
        return Ok(config);
    };
    let (secret, mut plain): (Vec<_>, Vec<_>) = entries.iter().cloned().partition(|(k, _)| {
        matches!(k, Value::Keyword(n) if SEALED_CONFIG_KEYS.contains(&n.to_string().as_str()))
    });
    let text = Zeroizing::new(edn::write(&Value::Map(secret)));
    let sealed = cipher.seal(CONFIG, 0, text.as_bytes())?;
    plain.push((Value::kw("format/encryption"), envelope.to_value()));
    plain.push((Value::kw("backup/sealed-config"), Value::str(&b64(&sealed))));
    Ok(Value::Map(plain))
}

/// The inverse of [`seal_config`]: the stored `config.edn` with its sealed part opened and
/// merged back (`Corrupt` when it does not open). A config without a sealed part is
/// returned as it is.
pub fn open_config(config: Value, cipher: Option<&BackupCipher>) -> Result<Value> {
    let Some(Value::String(sealed)) = config.get("backup/sealed-config").cloned() else {
        return Ok(config);
    };
    let Some(cipher) = cipher else {
        return Ok(config);
    };
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(sealed.trim())
        .map_err(|_| Error::corrupt(OP, "config.edn's :backup/sealed-config is not base64"))?;
    let text = Zeroizing::new(cipher.open(CONFIG, 0, &bytes).map_err(|_| {
        Error::corrupt(
            OP,
            "config.edn's sealed part does not open under the backup's data key: it was edited or copied from another backup",
        )
    })?);
    let opened = edn::parse(
        std::str::from_utf8(&text)
            .map_err(|_| Error::corrupt(OP, "config.edn's sealed part is not text"))?,
    )?;
    let (Value::Map(mut entries), Value::Map(more)) = (config, opened) else {
        return Err(Error::corrupt(OP, "config.edn's sealed part is not a map"));
    };
    entries.retain(|(k, _)| !matches!(k, Value::Keyword(n) if &*n.name == "sealed-config"));
    entries.extend(more);
    Ok(Value::Map(entries))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts(text: &str) -> Value {
        edn::parse(text).unwrap()
    }

    #[test]
    fn the_option_takes_exactly_one_source_and_never_shows_it() {
        let b64 = b64(&[5u8; KEY_LEN]);
        let k = KeySpec::from_options(&opts(&format!("{{:encryption {{:key \"{b64}\"}}}}")), "t")
            .unwrap()
            .unwrap();
        let KeySpec::Key(k) = k else { panic!() };
        assert_eq!(
            k.key_id(),
            MasterKey::from_bytes(&[5; 32]).unwrap().key_id()
        );
        assert!(KeySpec::from_options(&opts("{}"), "t").unwrap().is_none());
        for bad in [
            "{:encryption {}}".to_owned(),
            format!("{{:encryption {{:key \"{b64}\" :passphrase \"x\"}}}}"),
            "{:encryption {:key \"c2VjcmV0c2VjcmV0\"}}".to_owned(),
            "{:encryption {:passphrase \"\"}}".to_owned(),
            "{:encryption {:kee \"c2VjcmV0c2VjcmV0\"}}".to_owned(),
            "{:encryption \"c2VjcmV0c2VjcmV0\"}".to_owned(),
            "{:encryption {:key-env \"DATACAMP_TEST_UNSET_VARIABLE\"}}".to_owned(),
        ] {
            let err = KeySpec::from_options(&opts(&bad), "t").unwrap_err();
            assert_eq!(err.kind, ErrorKind::InvalidArgument, "{bad}");
            let shown = format!("{err} {:?}", err.hint);
            assert!(
                !shown.contains("c2VjcmV0c2VjcmV0") && !shown.contains(&b64),
                "{shown}"
            );
        }
    }

    #[test]
    fn envelopes_round_trip_and_their_shape_is_checked() {
        let spec = KeySpec::Key(Arc::new(MasterKey::from_bytes(&[1; 32]).unwrap()));
        let (env, _) = spec.seal_new("db", "b1", None).unwrap();
        assert_eq!(Envelope::from_value(&env.to_value()), env);
        assert!(env.check().is_ok());
        let mut bad = env.clone();
        bad.key_id = "dck1-xyz".into();
        assert_eq!(bad.check().unwrap_err().kind, ErrorKind::Corrupt);
        let mut bad = env.clone();
        bad.wrapped_key = b64(&[0; 10]);
        assert_eq!(bad.check().unwrap_err().kind, ErrorKind::Corrupt);
        let other = Envelope::from_value(&Value::kw("aes-gcm"));
        assert_eq!(other.check().unwrap_err().kind, ErrorKind::Unsupported);
        let pass = KeySpec::Passphrase(Arc::new(Zeroizing::new(b"horse".to_vec())));
        let (penv, _) = pass.seal_new("db", "b1", None).unwrap();
        assert_eq!(Envelope::from_value(&penv.to_value()), penv);
        assert!(pass.open(&penv, "db", "b1").is_ok());
        assert_eq!(
            spec.open(&penv, "db", "b1").unwrap_err().kind,
            ErrorKind::WrongKey
        );
        assert_eq!(
            pass.open(&env, "db", "b1").unwrap_err().kind,
            ErrorKind::WrongKey
        );
    }

    #[test]
    fn config_schema_facts_are_sealed_and_open_again() {
        let spec = KeySpec::Key(Arc::new(MasterKey::from_bytes(&[1; 32]).unwrap()));
        let (env, cipher) = spec.seal_new("db", "b1", None).unwrap();
        let config = opts(
            "{:backup/id \"b1\" :schema/ref-attrs [:person/secret-friend] :datahike/config {:x 1}}",
        );
        let stored = seal_config(config.clone(), Some(&cipher), Some(&env)).unwrap();
        let text = edn::write(&stored);
        assert!(!text.contains("secret-friend"), "{text}");
        assert!(text.contains(":backup/id"));
        let opened = open_config(stored.clone(), Some(&cipher)).unwrap();
        assert_eq!(
            opened.get("schema/ref-attrs"),
            config.get("schema/ref-attrs")
        );
        assert_eq!(opened.get("datahike/config"), config.get("datahike/config"));
        let (_, other) = spec.seal_new("db", "b2", None).unwrap();
        assert_eq!(
            open_config(stored, Some(&other)).unwrap_err().kind,
            ErrorKind::Corrupt
        );
    }
}
