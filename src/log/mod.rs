//! Continuous backup: every committed transaction durably in the target within seconds.
//!
//! A *log* is a link of a backup chain (like an incremental): it follows its parent — a
//! backup, or the log of an earlier capture — without gap, and holds a contiguous run of
//! *segments*, each covering the transactions `(after, through]` right after its
//! predecessor's, as a datom chunk of the backups' format (Fressian, gzip, SHA-256, restore
//! order). Its content is its segments' listing: no index grows with it.
//!
//! ```text
//! {database-id}/{log-id}/log.edn                head: parent, base, after (written first)
//! {database-id}/{log-id}/segments/{through}_{after}_{datoms}_{instants}_{kind}_{sha256}.fressian.gz
//! {database-id}/{log-id}/closed.edn             the capture stopped cleanly here
//! {database-id}/.continuous/lock-N.edn          one capture per database (a lease)
//! ```
//!
//! - [`name`]: the segment naming (names sort by transaction).
//! - [`head`]: `log.edn` and `closed.edn`.
//! - [`read`]: a stored log, its contiguity and durable point.
//! - [`tip`]: where a database's chains end (what a new capture continues).
//! - [`writer`]: the segment writer: open segment, sealing, the uploader, the durable point.
//! - [`spool`]: where sealed segments wait on local disk while the target is unreachable.
//! - [`catchup`]: transactions read from the history instead of seen live.
//!
//! The capture session that uses them (the lock, the plan, new chains, catch-ups) is an
//! operation: [`crate::ops::capture`]. The JVM side (`datacamp.continuous`) listens to the
//! database, computes each transaction's exact delta and pushes it there.

pub mod catchup;
pub mod head;
pub mod name;
pub mod read;
pub mod spool;
pub mod tip;
pub mod writer;

#[cfg(test)]
mod tests;
