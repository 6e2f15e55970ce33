//! The checks of a stored backup's chunks against its manifest: one implementation, used
//! by verify, restore and resume alike, with the same messages.
//!
//! Per chunk ([`fetch_checked`]): present ([`present`], from one listing), its size and
//! SHA-256 those of the manifest entry, for an encrypted backup opening under its data key
//! (AES-256-GCM bound to the backup and the chunk's position), decompressing to the entry's uncompressed size
//! ([`limits`]: never beyond it, never beyond the hard cap), decoding to the chunk the entry
//! names (its `:chunk/id`, no more datoms than its count). Across chunks ([`ContentCheck`]):
//! cheap facts the manifest states about the content — tx ascending (restore order) and
//! within the chunk's `:chunk/tx-range` and the backup's tx0..`:stats/max-tx`, entity ids in
//! `1..=max-eid` (or a transaction's own id), attributes declared (for schema-on-write
//! databases: a `:db/ident` in the backup, or a system attribute), and the datom total.
//!
//! What the checks prove: the bytes are the ones the manifest describes, and they decode
//! to datoms consistent with it. Checksums detect accidents — bit rot, truncation, a lost,
//! swapped or half-written file — not an attacker: whoever can rewrite a chunk can rewrite
//! the manifest's checksum too. Against attackers, only authenticated encryption (a key
//! the attacker does not have) helps.

use std::collections::{BTreeMap, HashSet};

use crate::crypto::envelope::BackupCipher;
use crate::error::{clip, Error, ErrorKind, Result};
use crate::model::{Attr, Datom, Name, Value, TX0};
use crate::pipeline::chunk::{self, ChunkLimits, DecodedChunk, MAX_STORED_BYTES};
use crate::repo::manifest::{ChunkMeta, ChunkOrder, Manifest};
use crate::store::Store;

const OP: &str = "check chunk";

/// What decoding chunk `meta` may produce: its recorded uncompressed size and datom count.
pub fn limits(meta: &ChunkMeta) -> ChunkLimits {
    ChunkLimits {
        uncompressed_bytes: (meta.uncompressed_bytes > 0).then_some(meta.uncompressed_bytes),
        max_datoms: (meta.datom_count > 0).then_some(meta.datom_count),
    }
}

/// The most stored bytes read for chunk `meta`: its recorded size, else the hard cap.
fn max_stored(meta: &ChunkMeta) -> u64 {
    if meta.size_bytes > 0 {
        meta.size_bytes.min(MAX_STORED_BYTES)
    } else {
        MAX_STORED_BYTES
    }
}

/// The error for a chunk the manifest lists but the store does not hold.
pub fn missing(meta: &ChunkMeta, location: String) -> Error {
    Error::corrupt(OP, format!("chunk {} is missing", meta.id)).with_key(location)
}

/// The error for a chunk whose stored size differs from the manifest's.
pub fn wrong_size(meta: &ChunkMeta, size: u64, location: String) -> Error {
    Error::corrupt(
        OP,
        format!(
            "chunk {} has {size} bytes, the manifest says {} (truncated?)",
            meta.id, meta.size_bytes
        ),
    )
    .with_key(location)
}

/// Check a stored chunk's size (when the manifest records one) against its entry.
pub fn check_size(meta: &ChunkMeta, size: u64, location: impl FnOnce() -> String) -> Result<()> {
    if meta.size_bytes != 0 && size != meta.size_bytes {
        return Err(wrong_size(meta, size, location()));
    }
    if size > MAX_STORED_BYTES {
        return Err(Error::corrupt(
            OP,
            format!(
                "chunk {} has {size} bytes, more than a chunk may hold",
                meta.id
            ),
        )
        .with_key(location()));
    }
    Ok(())
}

/// Whether a chunk is stored, as one listing shows it ([`present`]).
#[derive(Debug)]
pub enum Presence {
    /// Stored, with its manifest size: its stored size.
    Stored(u64),
    /// Not stored.
    Missing(Error),
    /// Stored with another size than the manifest's, or larger than a chunk may be.
    WrongSize(Error),
}

impl Presence {
    /// The stored size, or the error.
    pub fn into_result(self) -> Result<u64> {
        match self {
            Presence::Stored(n) => Ok(n),
            Presence::Missing(e) | Presence::WrongSize(e) => Err(e),
        }
    }
}

/// Given the backup folder `prefix`, its chunks and a listing that covers them (of `prefix`
/// or of its `chunks/`), return each chunk's [`Presence`]: one listing, shared by verify and
/// restore so both judge presence the same way (a directory store lists regular files
/// only: a link or FIFO in place of a chunk counts as missing).
pub fn present(
    store: &dyn Store,
    prefix: &str,
    chunks: &[ChunkMeta],
    objects: &[crate::store::ObjectMeta],
) -> Vec<Presence> {
    let sizes: std::collections::HashMap<&str, u64> =
        objects.iter().map(|o| (o.key.as_str(), o.size)).collect();
    chunks
        .iter()
        .map(|c| {
            let key = crate::repo::layout::chunk_in(prefix, c);
            match sizes.get(key.as_str()) {
                None => Presence::Missing(missing(c, store.location(&key))),
                Some(&n) => match check_size(c, n, || store.location(&key)) {
                    Ok(()) => Presence::Stored(n),
                    Err(e) => Presence::WrongSize(e),
                },
            }
        })
        .collect()
}

/// Given the backup folder `prefix`, its chunks and a listing that covers them, return the
/// chunk files stored under `{prefix}chunks/` that the manifest does not list (a dropped
/// entry leaves its chunk behind), as keys relative to the backup folder.
pub fn unlisted(
    prefix: &str,
    chunks: &[ChunkMeta],
    objects: &[crate::store::ObjectMeta],
) -> Vec<String> {
    let listed: HashSet<&str> = chunks.iter().map(|c| c.key.as_str()).collect();
    objects
        .iter()
        .filter_map(|o| o.key.strip_prefix(prefix))
        .filter(|rel| rel.starts_with("chunks/") && !listed.contains(rel))
        .map(|rel| clip(rel).into_owned())
        .collect()
}

/// The error for chunk files the manifest does not list ([`unlisted`]).
pub fn unlisted_error(unlisted: &[String], location: String) -> Error {
    Error::corrupt(
        OP,
        format!(
            "{} is stored but not in the manifest{}",
            unlisted[0],
            match unlisted.len() {
                1 => String::new(),
                n => format!(" (and {} more)", n - 1),
            }
        ),
    )
    .with_key(location)
    .with_hint("a chunk entry was dropped from the manifest: the backup is not what it says")
}

/// Check a stored chunk's bytes: size and SHA-256 against its manifest entry.
pub fn check_stored(meta: &ChunkMeta, bytes: &[u8], location: impl Fn() -> String) -> Result<()> {
    check_size(meta, bytes.len() as u64, &location)?;
    if chunk::sha256_hex(bytes) != meta.checksum {
        return Err(
            Error::corrupt(OP, format!("chunk {} fails its SHA-256 checksum", meta.id))
                .with_key(location()),
        );
    }
    Ok(())
}

/// Decode a chunk whose bytes passed [`check_stored`] within its entry's [`limits`], and
/// check that it is the chunk its entry names: its `:chunk/id` and (when recorded) its
/// datom count. An encrypted backup's chunk is first opened with its `cipher` (`Corrupt`
/// when it does not authenticate: altered, or moved from another backup or position;
/// `WrongKey` when it is sealed and no cipher is given).
pub fn decode_checked(
    meta: &ChunkMeta,
    bytes: &[u8],
    cipher: Option<&BackupCipher>,
    location: impl Fn() -> String,
) -> Result<DecodedChunk> {
    let opened;
    let bytes = match cipher {
        Some(c) => {
            opened = c.open_chunk(&meta.key, meta.id, bytes).map_err(|_| {
                Error::corrupt(
                    OP,
                    format!(
                        "chunk {} does not decrypt under the backup's data key: it was altered, or copied from another backup or position",
                        meta.id
                    ),
                )
                .with_key(location())
            })?;
            &opened[..]
        }
        None if bytes.starts_with(crate::crypto::MAGIC) => {
            return Err(Error::new(
                ErrorKind::WrongKey,
                OP,
                format!("chunk {} is encrypted and no key was given", meta.id),
            )
            .with_key(location())
            .with_hint("pass the backup's key with :encryption"))
        }
        None => bytes,
    };
    let decoded = chunk::decode_chunk(bytes, &limits(meta)).map_err(|e| {
        Error::new(
            if e.kind == ErrorKind::Unsupported {
                ErrorKind::Unsupported
            } else {
                ErrorKind::Corrupt
            },
            OP,
            format!("chunk {} does not decode: {}", meta.id, e.message),
        )
        .with_key(location())
    })?;
    if decoded.id != meta.id as i64 {
        return Err(Error::corrupt(
            OP,
            format!("chunk {} holds :chunk/id {}", meta.id, decoded.id),
        )
        .with_key(location()));
    }
    if meta.datom_count != 0 && decoded.datoms.len() as u64 != meta.datom_count {
        return Err(Error::corrupt(
            OP,
            format!(
                "chunk {} holds {} datoms, the manifest says {}",
                meta.id,
                decoded.datoms.len(),
                meta.datom_count
            ),
        )
        .with_key(location()));
    }
    Ok(decoded)
}

/// Read chunk `meta` of the backup under `prefix`, check its bytes and decode it:
/// `Corrupt` (naming the chunk and its location) when it is missing or fails a check.
pub fn fetch_checked(
    store: &dyn Store,
    prefix: &str,
    meta: &ChunkMeta,
    cipher: Option<&BackupCipher>,
) -> Result<DecodedChunk> {
    let bytes = fetch_stored(store, prefix, meta)?;
    let key = crate::repo::layout::chunk_in(prefix, meta);
    decode_checked(meta, &bytes, cipher, || store.location(&key))
}

/// Read chunk `meta` of the backup under `prefix` (never more than its recorded size) and
/// check its size and SHA-256.
pub fn fetch_stored(store: &dyn Store, prefix: &str, meta: &ChunkMeta) -> Result<Vec<u8>> {
    let key = crate::repo::layout::chunk_in(prefix, meta);
    let location = || store.location(&key);
    let bytes = store
        .get_max(&key, max_stored(meta))
        .map_err(|e| match e.kind {
            ErrorKind::NotFound => missing(meta, location()),
            _ => e,
        })?;
    check_stored(meta, &bytes, location)?;
    Ok(bytes)
}

/// Whether `a` is one of Datahike's own attributes (namespace `db` or `db.*`).
fn is_system(a: &Name) -> bool {
    a.ns.as_deref()
        .is_some_and(|ns| ns == "db" || ns.starts_with("db."))
}

/// The checks of decoded chunks against what the manifest states about their content,
/// chunk by chunk in manifest order; see the module documentation.
#[derive(Debug)]
pub struct ContentCheck {
    order: ChunkOrder,
    max_eid: i64,
    max_tx: i64,
    expected_datoms: u64,
    /// Attributes must be declared (the source was schema-on-write, per `config.edn`).
    declared_only: bool,
    declared: HashSet<Name>,
    /// EAVT backups: undeclared attributes seen so far, with the first chunk using each
    /// (a later chunk may declare them: judged at [`ContentCheck::finish`]).
    undeclared: BTreeMap<Name, u64>,
    last_tx: i64,
    datoms: u64,
}

impl ContentCheck {
    /// Given a validated manifest and the backup's `config.edn` (if any), return the check.
    pub fn new(manifest: &Manifest, config: Option<&Value>) -> Self {
        let flexibility = config
            .and_then(|c| c.get("datahike/config"))
            .and_then(|c| c.get("schema-flexibility"));
        ContentCheck {
            order: manifest.order,
            max_eid: manifest.max_eid,
            max_tx: manifest.max_tx,
            expected_datoms: manifest.datom_count,
            declared_only: matches!(flexibility, Some(Value::Keyword(n)) if n.ns.is_none() && &*n.name == "write"),
            declared: HashSet::new(),
            undeclared: BTreeMap::new(),
            last_tx: i64::MIN,
            datoms: 0,
        }
    }

    /// Go on with the next link of a chain (its manifest's facts; `expected` datoms in the
    /// chunks that will be read of it): attributes declared so far stay declared, and
    /// transactions must keep ascending. Call [`ContentCheck::finish`] at each link's end.
    pub fn next_link(&mut self, manifest: &Manifest, expected: u64) {
        self.order = manifest.order;
        self.max_eid = manifest.max_eid;
        self.max_tx = manifest.max_tx;
        self.expected_datoms = expected;
        self.datoms = 0;
    }

    /// Check chunk `meta`'s decoded datoms (chunks in manifest order). `Corrupt`, naming the
    /// chunk, the datom and what is wrong, on the first datom that contradicts the manifest.
    pub fn chunk(&mut self, meta: &ChunkMeta, chunk: &DecodedChunk) -> Result<()> {
        let ident = Name::new(Some("db"), "ident");
        for (i, d) in chunk.datoms.iter().enumerate() {
            // Restore order: an attribute is declared in its own or an earlier transaction,
            // so every attribute of the transactions before this one must be known now.
            if self.order == ChunkOrder::Restore && d.tx > self.last_tx {
                self.resolve()?;
            }
            if let Some(what) = self.datom(meta, d) {
                return Err(self.error(meta, i, d, &what));
            }
            match (&d.a, &d.v) {
                (Attr::Keyword(a), Value::Keyword(n)) if *a == ident => {
                    self.declared.insert(n.clone());
                }
                (Attr::Keyword(a), _)
                    if self.declared_only && !is_system(a) && !self.declared.contains(a) =>
                {
                    self.undeclared.entry(a.clone()).or_insert(meta.id);
                }
                _ => {}
            }
        }
        self.datoms += chunk.datoms.len() as u64;
        let declared = &self.declared;
        self.undeclared.retain(|a, _| !declared.contains(a));
        Ok(())
    }

    /// Fail on an attribute used but not declared (so far).
    fn resolve(&mut self) -> Result<()> {
        let declared = &self.declared;
        self.undeclared.retain(|a, _| !declared.contains(a));
        match self.undeclared.iter().next() {
            None => Ok(()),
            Some((a, chunk)) => Err(Error::corrupt(
                OP,
                format!(
                    "chunk {chunk} uses attribute :{}, which the backup does not declare (no :db/ident datom for it)",
                    clip(&a.to_string())
                ),
            )
            .with_hint("the chunk's checksum matches but its content contradicts the schema: the backup was altered")),
        }
    }

    /// What is wrong with datom `d` of chunk `meta`, if anything.
    fn datom(&mut self, meta: &ChunkMeta, d: &Datom) -> Option<String> {
        let tx = d.tx;
        if tx < TX0 || (self.max_tx > 0 && tx > self.max_tx) {
            return Some(format!(
                "tx {tx} is outside the backup's transactions ({TX0}..={})",
                self.max_tx
            ));
        }
        if let Some((lo, hi)) = meta.tx_range {
            if tx < lo || tx > hi {
                return Some(format!(
                    "tx {tx} is outside the chunk's :chunk/tx-range [{lo} {hi}]"
                ));
            }
        }
        if self.order == ChunkOrder::Restore {
            if tx < self.last_tx {
                return Some(format!(
                    "tx {tx} comes after tx {} (transactions must ascend)",
                    self.last_tx
                ));
            }
            self.last_tx = tx;
        }
        // Entity ids: 1..=max-eid, or a transaction's own id (its txInstant, its meta).
        let is_tx_entity = d.e >= TX0 && (self.max_tx == 0 || d.e <= self.max_tx);
        let beyond = |e: i64, max: i64| max > 0 && e > max;
        if d.e <= 0 || beyond(d.e, meta.max_eid) || (beyond(d.e, self.max_eid) && !is_tx_entity) {
            return Some(format!(
                "entity id {} is outside 1..={} (the backup's :stats/max-eid) and is no transaction",
                d.e, self.max_eid
            ));
        }
        if let Attr::Id(a) = d.a {
            if a <= 0 || beyond(a, self.max_eid) {
                return Some(format!("attribute id {a} is no entity of the backup"));
            }
        }
        None
    }

    fn error(&self, meta: &ChunkMeta, i: usize, d: &Datom, what: &str) -> Error {
        Error::corrupt(
            OP,
            format!(
                "chunk {}, datom {i} (e {}, a {}, tx {}): {what}",
                meta.id,
                d.e,
                clip(&d.a.to_string()),
                d.tx
            ),
        )
        .with_hint("the chunk's checksum matches but its content contradicts the manifest: the backup was altered")
    }

    /// After the last chunk: every attribute used was declared somewhere, and the chunks
    /// held the manifest's datom total.
    pub fn finish(&mut self) -> Result<()> {
        self.resolve()?;
        if self.datoms != self.expected_datoms {
            return Err(Error::corrupt(
                OP,
                format!(
                    "the chunks hold {} datoms, :stats/datom-count says {}",
                    self.datoms, self.expected_datoms
                ),
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ErrorKind;
    use crate::model::{Attr, Datom, Name, Value};
    use crate::pipeline::chunk::ChunkEncoder;
    use crate::store::memory::MemoryStore;

    fn stored_chunk(id: u64, n: i64) -> (ChunkMeta, Vec<u8>) {
        let mut enc = ChunkEncoder::starting_at(1 << 20, id).unwrap();
        for e in 1..=n {
            let d = Datom {
                e,
                a: Attr::Keyword(Name::parse("x/y")),
                v: Value::Long(e),
                tx: 536870913,
                added: true,
            };
            assert!(enc.push(&d).unwrap().is_none());
        }
        let c = enc.finish().unwrap().unwrap();
        let gz = chunk::gzip(&c.fressian, 6).unwrap();
        let meta = ChunkMeta {
            id,
            key: crate::repo::layout::chunk_relative(id),
            s3_key: None,
            tx_range: c.tx_range,
            max_eid: c.max_eid,
            datom_count: c.datom_count,
            size_bytes: gz.len() as u64,
            uncompressed_bytes: c.fressian.len() as u64,
            checksum: chunk::sha256_hex(&gz),
            raw_checksum: None,
            instant_range: None,
        };
        (meta, gz)
    }

    #[test]
    fn intact_chunks_pass_and_damage_is_named() {
        let store = MemoryStore::new();
        let (meta, gz) = stored_chunk(3, 10);
        let prefix = "db/b1/";
        let key = format!("{prefix}{}", meta.key);
        let err = fetch_checked(&store, prefix, &meta, None).unwrap_err();
        assert_eq!(err.kind, ErrorKind::Corrupt);
        assert!(err.message.contains("chunk 3 is missing"), "{err}");
        store.put(&key, &gz).unwrap();
        assert_eq!(
            fetch_checked(&store, prefix, &meta, None)
                .unwrap()
                .datoms
                .len(),
            10
        );
        store.put(&key, &gz[..gz.len() - 1]).unwrap();
        let err = fetch_checked(&store, prefix, &meta, None).unwrap_err();
        assert!(err.message.contains("chunk 3 has"), "{err}");
        let mut flipped = gz.clone();
        flipped[20] ^= 1;
        store.put(&key, &flipped).unwrap();
        let err = fetch_checked(&store, prefix, &meta, None).unwrap_err();
        assert!(err.message.contains("chunk 3 fails its SHA-256"), "{err}");
        assert_eq!(
            err.key.as_deref(),
            Some("memory:db/b1/chunks/datoms-3.fressian.gz")
        );
    }

    #[test]
    fn decoded_id_and_count_must_match_the_entry() {
        let (meta, gz) = stored_chunk(2, 5);
        let wrong_id = ChunkMeta {
            id: 4,
            ..meta.clone()
        };
        let err = decode_checked(&wrong_id, &gz, None, String::new).unwrap_err();
        assert!(err.message.contains("chunk 4 holds :chunk/id 2"), "{err}");
        let wrong_count = ChunkMeta {
            datom_count: 6,
            ..meta.clone()
        };
        let err = decode_checked(&wrong_count, &gz, None, String::new).unwrap_err();
        assert!(
            err.message
                .contains("chunk 2 holds 5 datoms, the manifest says 6"),
            "{err}"
        );
        let err = decode_checked(&meta, b"not gzip", None, String::new).unwrap_err();
        assert!(err.message.contains("chunk 2 does not decode"), "{err}");
    }

    /// A real backup's manifest and decoded chunks, to be altered.
    fn decoded_backup() -> (Manifest, Vec<DecodedChunk>) {
        let (mem, store) = crate::ops::testing::store();
        let r = crate::ops::testing::backup(
            &store,
            crate::ops::testing::options("db", 600, 30),
            &crate::ops::testing::history(30),
        );
        let prefix = crate::repo::layout::backup_prefix("db", &r.manifest.backup_id);
        let chunks = r
            .manifest
            .chunks
            .iter()
            .map(|c| fetch_checked(&mem, &prefix, c, None).unwrap())
            .collect();
        (r.manifest, chunks)
    }

    /// Run the content check over `chunks`; the first error's message.
    fn content_error(
        m: &Manifest,
        config: Option<&Value>,
        chunks: &[DecodedChunk],
    ) -> Option<String> {
        let mut c = ContentCheck::new(m, config);
        for (meta, chunk) in m.chunks.iter().zip(chunks) {
            if let Err(e) = c.chunk(meta, chunk) {
                return Some(e.message);
            }
        }
        c.finish().err().map(|e| e.message)
    }

    #[test]
    fn content_that_contradicts_the_manifest_is_named() {
        let (m, chunks) = decoded_backup();
        assert_eq!(content_error(&m, None, &chunks), None);
        let altered = |f: &dyn Fn(&mut Vec<DecodedChunk>)| {
            let mut c = chunks
                .iter()
                .map(|c| DecodedChunk {
                    id: c.id,
                    datoms: c.datoms.clone(),
                })
                .collect();
            f(&mut c);
            content_error(&m, None, &c).unwrap_or_default()
        };
        // Transactions out of order within a chunk (both still inside its range).
        let e = altered(&|c| c[1].datoms.reverse());
        assert!(e.contains("transactions must ascend"), "{e}");
        let e = altered(&|c| c[1].datoms[0].tx = m.chunks[1].tx_range.unwrap().1 + 1);
        assert!(e.contains("outside the chunk's :chunk/tx-range"), "{e}");
        let e = altered(&|c| c[0].datoms[0].tx = TX0 - 5);
        assert!(e.contains("outside the backup's transactions"), "{e}");
        for bad in [i64::MAX, -1, 0, m.max_eid + 1] {
            let e = altered(&|c| c[0].datoms[1].e = bad);
            assert!(
                e.contains(&format!("entity id {bad} is outside")),
                "{bad}: {e}"
            );
        }
        let e = altered(&|c| c[0].datoms[0].a = Attr::Id(0));
        assert!(e.contains("attribute id 0"), "{e}");
        let e = altered(&|c| {
            c.last_mut().unwrap().datoms.pop();
        });
        assert!(e.contains(":stats/datom-count says"), "{e}");
        // A transaction's own entity (its txInstant) is no entity beyond max-eid.
        assert!(chunks[0]
            .datoms
            .iter()
            .any(|d| d.e == d.tx && d.e > m.max_eid));
    }

    #[test]
    fn schema_on_write_backups_use_declared_attributes_only() {
        let (m, chunks) = decoded_backup();
        let write =
            crate::codec::edn::parse("{:datahike/config {:schema-flexibility :write}}").unwrap();
        let read =
            crate::codec::edn::parse("{:datahike/config {:schema-flexibility :read}}").unwrap();
        let e = content_error(&m, Some(&write), &chunks).unwrap_or_default();
        assert!(e.contains("does not declare"), "{e}");
        assert_eq!(content_error(&m, Some(&read), &chunks), None);
        // Declared in the first transaction: known from then on.
        let mut declared: Vec<DecodedChunk> = chunks
            .iter()
            .map(|c| DecodedChunk {
                id: c.id,
                datoms: c.datoms.clone(),
            })
            .collect();
        let first = &mut declared[0].datoms;
        let tx = first[0].tx;
        for (i, name) in ["person/name", "person/friend"].iter().enumerate() {
            first.insert(
                1,
                Datom {
                    e: 1 + i as i64,
                    a: Attr::Keyword(Name::parse("db/ident")),
                    v: Value::kw(name),
                    tx,
                    added: true,
                },
            );
        }
        let mut m2 = m.clone();
        m2.datom_count += 2;
        m2.chunks[0].datom_count += 2;
        assert_eq!(content_error(&m2, Some(&write), &declared), None);
    }
}
