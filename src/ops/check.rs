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

use std::collections::{BTreeMap, HashMap, HashSet};

use crate::crypto::envelope::BackupCipher;
use crate::error::{clip, Error, ErrorKind, Result};
use crate::model::{Attr, Datom, Name, Value, TX0};
use crate::pipeline::chunk::{
    self, collect_into, ChunkLimits, DatomSink, DecodedChunk, MAX_STORED_BYTES,
};
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
    let mut datoms = Vec::new();
    decode_checked_into(
        meta,
        bytes,
        cipher,
        location,
        &mut collect_into(&mut datoms),
    )?;
    Ok(DecodedChunk {
        id: meta.id as i64,
        datoms,
    })
}

/// As [`decode_checked`], handing each datom to `sink` as it is decoded (see
/// [`chunk::decode_chunk_into`]); return the chunk's attributes (which the datoms' `a`
/// index). On error, the sink may have had some of the datoms.
pub fn decode_checked_into(
    meta: &ChunkMeta,
    bytes: &[u8],
    cipher: Option<&BackupCipher>,
    location: impl Fn() -> String,
    sink: &mut DatomSink<'_>,
) -> Result<Vec<Attr>> {
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
    let decoded = chunk::decode_chunk_into(bytes, &limits(meta), sink).map_err(|e| {
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
    if meta.datom_count != 0 && decoded.datoms != meta.datom_count {
        return Err(Error::corrupt(
            OP,
            format!(
                "chunk {} holds {} datoms, the manifest says {}",
                meta.id, decoded.datoms, meta.datom_count
            ),
        )
        .with_key(location()));
    }
    Ok(decoded.attrs)
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
///
/// Split in two so that most of the work runs where a chunk is decoded: [`ChunkRules::facts`]
/// checks one chunk's datoms alone (any thread, any order), [`ContentCheck::apply`] takes
/// the chunks' [`ChunkFacts`] in manifest order for what spans chunks (transactions
/// ascending, attributes declared, the datom total). [`ContentCheck::chunk`] does both.
#[derive(Debug)]
pub struct ContentCheck {
    rules: ChunkRules,
    expected_datoms: u64,
    /// Attributes declared so far, each with the transaction of its first declaration.
    declared: HashMap<Name, i64>,
    /// Attributes used while undeclared, with the first chunk and transaction using each
    /// (a later datom of that transaction, or for EAVT backups any later chunk, may
    /// declare them).
    undeclared: BTreeMap<Name, (u64, i64)>,
    last_tx: i64,
    datoms: u64,
}

/// What one chunk's datoms must satisfy on their own: the facts of its link's manifest.
#[derive(Clone, Debug)]
pub struct ChunkRules {
    order: ChunkOrder,
    max_eid: i64,
    max_tx: i64,
    /// Attributes must be declared (the source was schema-on-write, per `config.edn`).
    declared_only: bool,
}

/// What the in-order checks need of one chunk, worked out by [`ChunkRules::facts`].
#[derive(Clone, Debug, Default)]
pub struct ChunkFacts {
    datoms: u64,
    /// The chunk's first datom (its transaction must not go back) and last transaction.
    first: Option<Datom>,
    last_tx: i64,
    /// `:db/ident` values, with their transactions, in chunk order.
    declared: Vec<(Name, i64)>,
    /// Attributes that need a declaration, at their first use in the chunk (transaction).
    used: Vec<(Name, i64)>,
}

impl ChunkRules {
    /// Check chunk `meta`'s datoms alone and return what the in-order checks need of them.
    /// `Corrupt`, naming the chunk, the datom and what is wrong, on the first datom that
    /// contradicts the manifest.
    pub fn facts(&self, meta: &ChunkMeta, chunk: &DecodedChunk) -> Result<ChunkFacts> {
        let mut f = self.start(meta);
        for d in &chunk.datoms {
            f.push(d)?;
        }
        Ok(f.finish())
    }

    /// Start checking chunk `meta`'s datoms one by one, as they are decoded
    /// ([`FactsBuilder::push`]).
    pub fn start<'a>(&'a self, meta: &'a ChunkMeta) -> FactsBuilder<'a> {
        FactsBuilder {
            rules: self,
            meta,
            f: ChunkFacts::default(),
            ident: Name::new(Some("db"), "ident"),
            seen: HashSet::default(),
            kept: Vec::new(),
            prev: (0, 0),
        }
    }

    /// What is wrong with datom `d` of chunk `meta` (after a datom of transaction `prev`),
    /// if anything.
    fn datom(&self, meta: &ChunkMeta, d: &DatomRef<'_>, prev: Option<i64>) -> Option<String> {
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
        if let Some(prev) = prev.filter(|p| self.order == ChunkOrder::Restore && tx < *p) {
            return Some(descending(tx, prev));
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
        if let Attr::Id(a) = *d.a {
            if a <= 0 || beyond(a, self.max_eid) {
                return Some(format!("attribute id {a} is no entity of the backup"));
            }
        }
        None
    }
}

/// [`ChunkFacts`] being worked out datom by datom ([`ChunkRules::start`]).
pub struct FactsBuilder<'a> {
    rules: &'a ChunkRules,
    meta: &'a ChunkMeta,
    f: ChunkFacts,
    ident: Name,
    /// Attributes seen, by the address of their strings (names decoded through one cache
    /// share them; a name seen under two addresses is merely noted twice). `kept` holds
    /// each one, so that no address is reused by another name while the chunk is read.
    seen: HashSet<(usize, usize), foldhash::fast::FixedState>,
    kept: Vec<Name>,
    prev: (usize, usize),
}

impl FactsBuilder<'_> {
    /// Check the chunk's next datom. `Corrupt`, naming the chunk, the datom and what is
    /// wrong, when it contradicts the manifest.
    pub fn push(&mut self, d: &Datom) -> Result<()> {
        self.push_ref(d.into())
    }

    /// As [`FactsBuilder::push`], for a datom in parts.
    pub fn push_ref(&mut self, d: DatomRef<'_>) -> Result<()> {
        let f = &mut self.f;
        let i = f.datoms as usize;
        if let Some(what) = self
            .rules
            .datom(self.meta, &d, (i > 0).then_some(f.last_tx))
        {
            return Err(error(self.meta, i, &d, &what));
        }
        if i == 0 {
            f.first = Some(d.to_datom());
        }
        f.datoms += 1;
        f.last_tx = d.tx;
        match (d.a, d.v) {
            (Attr::Keyword(a), Value::Keyword(n)) if *a == self.ident => {
                f.declared.push((n.clone(), d.tx));
            }
            (Attr::Keyword(a), _) if self.rules.declared_only => {
                // Consecutive datoms mostly share the attribute.
                let ns = a.ns.as_ref().map_or(0, |s| s.as_ptr() as usize);
                let k = (ns, a.name.as_ptr() as usize);
                if k != self.prev && self.seen.insert(k) {
                    self.kept.push(a.clone());
                    if !is_system(a) {
                        f.used.push((a.clone(), d.tx));
                    }
                }
                self.prev = k;
            }
            _ => {}
        }
        Ok(())
    }

    /// The facts of the datoms pushed.
    pub fn finish(self) -> ChunkFacts {
        self.f
    }
}

fn descending(tx: i64, prev: i64) -> String {
    format!("tx {tx} comes after tx {prev} (transactions must ascend)")
}

/// A datom whose attribute and value are borrowed (from a chunk's attribute table and
/// the datom being decoded).
#[derive(Clone, Copy, Debug)]
pub struct DatomRef<'a> {
    /// The entity id.
    pub e: i64,
    /// The attribute.
    pub a: &'a Attr,
    /// The value.
    pub v: &'a Value,
    /// The transaction id.
    pub tx: i64,
    /// Assertion (`true`) or retraction.
    pub added: bool,
}

impl<'a> From<&'a Datom> for DatomRef<'a> {
    fn from(d: &'a Datom) -> Self {
        DatomRef {
            e: d.e,
            a: &d.a,
            v: &d.v,
            tx: d.tx,
            added: d.added,
        }
    }
}

impl DatomRef<'_> {
    fn to_datom(self) -> Datom {
        Datom {
            e: self.e,
            a: self.a.clone(),
            v: self.v.clone(),
            tx: self.tx,
            added: self.added,
        }
    }
}

fn error(meta: &ChunkMeta, i: usize, d: &DatomRef<'_>, what: &str) -> Error {
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

impl ContentCheck {
    /// Given a validated manifest and the backup's `config.edn` (if any), return the check.
    pub fn new(manifest: &Manifest, config: Option<&Value>) -> Self {
        let flexibility = config
            .and_then(|c| c.get("datahike/config"))
            .and_then(|c| c.get("schema-flexibility"));
        ContentCheck {
            rules: ChunkRules {
                order: manifest.order,
                max_eid: manifest.max_eid,
                max_tx: manifest.max_tx,
                declared_only: matches!(flexibility, Some(Value::Keyword(n)) if n.ns.is_none() && &*n.name == "write"),
            },
            expected_datoms: manifest.datom_count,
            declared: HashMap::new(),
            undeclared: BTreeMap::new(),
            last_tx: i64::MIN,
            datoms: 0,
        }
    }

    /// Go on with the next link of a chain (its manifest's facts; `expected` datoms in the
    /// chunks that will be read of it): attributes declared so far stay declared, and
    /// transactions must keep ascending. Call [`ContentCheck::finish`] at each link's end.
    pub fn next_link(&mut self, manifest: &Manifest, expected: u64) {
        self.rules.order = manifest.order;
        self.rules.max_eid = manifest.max_eid;
        self.rules.max_tx = manifest.max_tx;
        self.expected_datoms = expected;
        self.datoms = 0;
    }

    /// The rules each chunk of the current link must satisfy alone (for
    /// [`ChunkRules::facts`] on the thread that decodes it).
    pub fn rules(&self) -> ChunkRules {
        self.rules.clone()
    }

    /// Check chunk `meta`'s decoded datoms (chunks in manifest order). `Corrupt`, naming the
    /// chunk, the datom and what is wrong, on the first datom that contradicts the manifest.
    pub fn chunk(&mut self, meta: &ChunkMeta, chunk: &DecodedChunk) -> Result<()> {
        let facts = self.rules.facts(meta, chunk)?;
        self.apply(meta, &facts)
    }

    /// Take the facts of chunk `meta` (chunks in manifest order; see [`ChunkRules::facts`]):
    /// its transactions do not go back, and an attribute is declared in its own or an
    /// earlier transaction (restore order; EAVT backups: anywhere, judged at the end).
    pub fn apply(&mut self, meta: &ChunkMeta, f: &ChunkFacts) -> Result<()> {
        let restore = self.rules.order == ChunkOrder::Restore;
        if let (Some(first), true) = (&f.first, restore) {
            if first.tx > self.last_tx {
                self.resolve(Some(first.tx))?;
            }
            if first.tx < self.last_tx {
                let what = descending(first.tx, self.last_tx);
                return Err(error(meta, 0, &first.into(), &what));
            }
        }
        for (name, tx) in &f.declared {
            let at = self.declared.entry(name.clone()).or_insert(*tx);
            *at = (*at).min(*tx);
        }
        for (name, tx) in &f.used {
            if !self.is_declared(name, *tx) {
                self.undeclared
                    .entry(name.clone())
                    .or_insert((meta.id, *tx));
            }
        }
        if f.first.is_some() && restore {
            self.last_tx = f.last_tx;
            self.resolve(Some(f.last_tx))?;
        }
        self.datoms += f.datoms;
        Ok(())
    }

    /// Whether `name` is declared for a use in transaction `tx`.
    fn is_declared(&self, name: &Name, tx: i64) -> bool {
        self.declared
            .get(name)
            .is_some_and(|at| self.rules.order != ChunkOrder::Restore || *at <= tx)
    }

    /// Fail on an attribute used but not declared in time: used before transaction
    /// `before` (all of them for `None`).
    fn resolve(&mut self, before: Option<i64>) -> Result<()> {
        let undeclared = std::mem::take(&mut self.undeclared);
        self.undeclared = undeclared
            .into_iter()
            .filter(|(a, (_, tx))| !self.is_declared(a, *tx))
            .collect();
        let due = self
            .undeclared
            .iter()
            .find(|(_, (_, tx))| before.is_none_or(|b| *tx < b));
        match due {
            None => Ok(()),
            Some((a, (chunk, _))) => Err(Error::corrupt(
                OP,
                format!(
                    "chunk {chunk} uses attribute :{}, which the backup does not declare (no :db/ident datom for it)",
                    clip(&a.to_string())
                ),
            )
            .with_hint("the chunk's checksum matches but its content contradicts the schema: the backup was altered")),
        }
    }

    /// After the last chunk: every attribute used was declared somewhere, and the chunks
    /// held the manifest's datom total.
    pub fn finish(&mut self) -> Result<()> {
        self.resolve(None)?;
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
    fn an_attribute_is_declared_in_its_own_or_an_earlier_transaction_across_chunks() {
        let (m0, _) = decoded_backup();
        let write =
            crate::codec::edn::parse("{:datahike/config {:schema-flexibility :write}}").unwrap();
        let (t1, t2) = (TX0 + 1, TX0 + 2);
        let d = |e: i64, a: &str, v: Value, tx: i64| Datom {
            e,
            a: Attr::Keyword(Name::parse(a)),
            v,
            tx,
            added: true,
        };
        let use_at = |e, tx| d(e, "x/a", Value::Long(e), tx);
        let ident_at = |e, tx| d(e, "db/ident", Value::kw("x/a"), tx);
        let run = |chunks: Vec<Vec<Datom>>| {
            let mut m = m0.clone();
            let proto = m.chunks[0].clone();
            m.chunks = chunks
                .iter()
                .enumerate()
                .map(|(i, c)| ChunkMeta {
                    id: i as u64,
                    datom_count: c.len() as u64,
                    tx_range: None,
                    ..proto.clone()
                })
                .collect();
            m.datom_count = chunks.iter().map(|c| c.len() as u64).sum();
            let decoded: Vec<DecodedChunk> = chunks
                .into_iter()
                .enumerate()
                .map(|(i, datoms)| DecodedChunk {
                    id: i as i64,
                    datoms,
                })
                .collect();
            content_error(&m, Some(&write), &decoded)
        };
        // Used at the end of chunk 0, declared by the same transaction in chunk 1.
        assert_eq!(
            run(vec![
                vec![use_at(1, t1)],
                vec![ident_at(2, t1), use_at(3, t2)]
            ]),
            None
        );
        // Declared earlier in the chunk, or later in the same transaction.
        assert_eq!(run(vec![vec![ident_at(2, t1), use_at(1, t1)]]), None);
        assert_eq!(run(vec![vec![use_at(1, t1), ident_at(2, t1)]]), None);
        // Declared only by a later transaction: in the next chunk, in the same chunk, never.
        for chunks in [
            vec![vec![use_at(1, t1)], vec![ident_at(2, t2)]],
            vec![vec![use_at(1, t1), ident_at(2, t2)]],
            vec![vec![use_at(1, t1)], vec![use_at(3, t2)]],
            vec![vec![use_at(1, t1)]],
        ] {
            let e = run(chunks).unwrap_or_default();
            assert!(e.contains("chunk 0 uses attribute :x/a"), "{e}");
        }
        // A transaction going back across chunks is named at the chunk's first datom.
        let e = run(vec![vec![ident_at(2, t2)], vec![use_at(1, t1)]]).unwrap_or_default();
        assert!(
            e.contains("chunk 1, datom 0") && e.contains(&format!("tx {t1} comes after tx {t2}")),
            "{e}"
        );
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
