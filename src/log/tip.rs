//! Where a database's chains end: the candidates a new capture can continue.
//!
//! An end is a complete backup of ours (restore order, with its `config.edn`; an
//! incremental when its chain is intact) or a log whose
//! links back to its base full backup are intact: every log continues exactly its parent's
//! end (`after` = the parent's basis, or the parent log's durable point), every backup on
//! the way is complete. Each link is read once (one listing of the database's folder).

use std::collections::{BTreeMap, HashMap};

use crate::error::{ErrorKind, Result};
use crate::model::Value;
use crate::repo::layout;
use crate::repo::manifest::{ChunkOrder, Manifest};
use crate::repo::meta::read_edn;
use crate::store::{ObjectMeta, Store};

use super::read::{read_listed, StoredLog};

/// The longest chain followed (a guard against hand-written cycles).
const MAX_LINKS: usize = 100_000;

/// The end of an intact chain.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct End {
    /// The backup or log id.
    pub id: String,
    /// A log (else a backup).
    pub is_log: bool,
    /// Its last transaction (a backup's basis, a log's durable point).
    pub through: i64,
    /// The chain's base full backup.
    pub base: String,
    /// The source's `:datahike/id`, as recorded.
    pub datahike_id: Option<String>,
    /// Whether the chain holds history.
    pub history: bool,
    /// When the link was created, epoch ms.
    pub created_at_ms: i64,
    /// Its chain is encrypted (a backup's manifest names a key; logs are never sealed).
    pub encrypted: bool,
}

/// One link as read.
enum Node {
    Log(Box<StoredLog>),
    Backup {
        manifest: Box<Manifest>,
        config: Value,
        complete: bool,
    },
}

/// Every link of one database, read from one listing.
pub struct Links {
    nodes: BTreeMap<String, Node>,
    intact: HashMap<String, Option<End>>,
}

impl Links {
    /// Read every backup and log of `database_id` (one listing of its folder; a link that
    /// cannot be read is left out).
    pub fn read(store: &dyn Store, database_id: &str) -> Result<Self> {
        layout::check_segment("database-id", database_id)?;
        let mut by_id: BTreeMap<String, Vec<ObjectMeta>> = BTreeMap::new();
        for o in store.list(&layout::database_prefix(database_id))? {
            if let Some(id) = layout::backup_id_of(database_id, &o.key) {
                by_id.entry(id.to_owned()).or_default().push(o);
            }
        }
        let mut nodes = BTreeMap::new();
        for (id, objects) in by_id {
            let has = |name: &str| {
                let key = layout::backup_file(database_id, &id, name);
                objects.iter().any(|o| o.key == key)
            };
            if has(layout::LOG_HEAD) {
                match read_listed(store, database_id, &id, &objects) {
                    Ok(log) => {
                        nodes.insert(id, Node::Log(Box::new(log)));
                    }
                    Err(e) if matches!(e.kind, ErrorKind::Corrupt | ErrorKind::NotFound) => {}
                    Err(e) => return Err(e),
                }
            } else if has(layout::MANIFEST) {
                let m = read_edn(
                    store,
                    &layout::backup_file(database_id, &id, layout::MANIFEST),
                )
                .and_then(|v| Manifest::from_value(&v));
                let config = if has(layout::CONFIG) {
                    read_edn(
                        store,
                        &layout::backup_file(database_id, &id, layout::CONFIG),
                    )
                    .unwrap_or(Value::Nil)
                } else {
                    Value::Nil
                };
                if let Ok(m) = m {
                    let complete = m.completed && has(layout::COMPLETE_MARKER);
                    nodes.insert(
                        id,
                        Node::Backup {
                            manifest: Box::new(m),
                            config,
                            complete,
                        },
                    );
                }
            }
        }
        Ok(Links {
            nodes,
            intact: HashMap::new(),
        })
    }

    /// The stored log `id`, if it is one.
    pub fn log(&self, id: &str) -> Option<&StoredLog> {
        match self.nodes.get(id)? {
            Node::Log(l) => Some(l),
            Node::Backup { .. } => None,
        }
    }

    /// Every end of an intact chain.
    pub fn ends(&mut self) -> Vec<End> {
        let ids: Vec<String> = self.nodes.keys().cloned().collect();
        ids.iter().filter_map(|id| self.end_of(id, 0)).collect()
    }

    /// The end `id` makes, when its chain is intact.
    fn end_of(&mut self, id: &str, depth: usize) -> Option<End> {
        if let Some(known) = self.intact.get(id) {
            return known.clone();
        }
        // Guard: mark as broken while resolving (a cycle resolves to broken).
        self.intact.insert(id.to_owned(), None);
        let end = if depth > MAX_LINKS {
            None
        } else {
            self.resolve(id, depth)
        };
        self.intact.insert(id.to_owned(), end.clone());
        end
    }

    fn resolve(&mut self, id: &str, depth: usize) -> Option<End> {
        match self.nodes.get(id)? {
            Node::Backup {
                manifest,
                config,
                complete,
            } => {
                let ours = manifest.order == ChunkOrder::Restore && *config != Value::Nil;
                if !complete || !ours {
                    return None;
                }
                let end = End {
                    id: id.to_owned(),
                    is_log: false,
                    through: manifest.max_tx,
                    base: manifest.link.base.clone().unwrap_or_else(|| id.to_owned()),
                    datahike_id: config
                        .get("datahike/id")
                        .and_then(Value::as_str)
                        .map(String::from),
                    history: manifest.history,
                    created_at_ms: manifest.created_at_ms,
                    encrypted: manifest.encryption.is_some(),
                };
                match manifest.backup_type.as_str() {
                    "full" => Some(end),
                    "incremental" => {
                        // An incremental ends its chain when it continues an intact one.
                        let (parent_id, after) =
                            (manifest.link.parent.clone()?, manifest.link.after_tx?);
                        let parent = self.end_of(&parent_id, depth + 1)?;
                        (parent.through == after
                            && parent.base == end.base
                            && parent.datahike_id == end.datahike_id)
                            .then_some(end)
                    }
                    _ => None,
                }
            }
            Node::Log(log) => {
                let head = log.head.clone();
                let through = log.through;
                let parent = self.end_of(&head.parent, depth + 1)?;
                let continues = parent.through == head.after_tx
                    && parent.base == head.base
                    && parent.datahike_id == head.datahike_id;
                continues.then(|| End {
                    id: id.to_owned(),
                    is_log: true,
                    through,
                    base: head.base.clone(),
                    datahike_id: head.datahike_id.clone(),
                    history: head.history,
                    created_at_ms: head.created_at_ms,
                    encrypted: parent.encrypted,
                })
            }
        }
    }
}

/// The links of `id`'s chain, `id` first, back to its base (empty when `id` is not read).
pub fn chain_of(links: &Links, id: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut next = Some(id.to_owned());
    while let Some(cur) = next.take() {
        if out.len() > MAX_LINKS || out.contains(&cur) {
            break;
        }
        next = match links.nodes.get(&cur) {
            Some(Node::Log(l)) => Some(l.head.parent.clone()),
            Some(Node::Backup { manifest, .. }) => manifest.link.parent.clone(),
            None => break,
        };
        out.push(cur);
    }
    out
}

fn furthest(a: &End, b: &End) -> std::cmp::Ordering {
    a.through
        .cmp(&b.through)
        .then(a.created_at_ms.cmp(&b.created_at_ms))
        .then(a.is_log.cmp(&b.is_log))
        .then(a.id.cmp(&b.id))
}

/// The newest state captured of `database_id` (what `:latest? true` restores): the
/// furthest end of an intact chain — of the chain that holds `within` when given (its
/// base or any link). `NotFound` when there is none.
pub fn latest(store: &dyn Store, database_id: &str, within: Option<&str>) -> Result<End> {
    let mut links = Links::read(store, database_id)?;
    let ends = links.ends();
    ends.iter()
        .filter(|e| within.is_none_or(|w| chain_of(&links, &e.id).iter().any(|l| l == w)))
        .max_by(|a, b| furthest(a, b))
        .cloned()
        .ok_or_else(|| {
            crate::error::Error::new(
                ErrorKind::NotFound,
                "restore",
                match within {
                    Some(w) => {
                        format!("no intact chain of database {database_id} holds backup or log {w}")
                    }
                    None => format!("no complete backup of database {database_id} to restore"),
                },
            )
        })
}

/// Of `ends`, the one a capture of a database whose `:datahike/id` is `datahike_id` and
/// `:max-tx` is `max_tx` continues: the furthest end of that database not ahead of it
/// (ties: the newest link).
pub fn newest<'a>(ends: &'a [End], datahike_id: Option<&str>, max_tx: i64) -> Option<&'a End> {
    ends.iter()
        .filter(|e| e.datahike_id.as_deref() == datahike_id && e.through <= max_tx)
        .max_by(|a, b| furthest(a, b))
}
