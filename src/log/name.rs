//! The name of a log segment: everything a listing needs to know about it.
//!
//! ```text
//! {through:020}_{after:020}_{datoms}_{first-instant}_{last-instant}_{kind}_{sha256}.fressian.gz
//! 00000000000536871012_00000000000536871000_174_1767225600000_1767225600950_t_9f86…08.fressian.gz
//! ```
//! - `after`, `through`: the segment holds every transaction `t` with `after < t <= through`
//!   (`after` is its predecessor's `through`); both zero-padded to 20 digits, so names sort
//!   by transaction and "every segment after tx t" is one listing that starts after
//!   [`start_after`]`(t)`.
//! - `datoms`: how many datoms it holds.
//! - the `:db/txInstant` (epoch ms, decimal, may be negative) of its first and last
//!   transaction that carries one, or `x` for none.
//! - `kind`: `t` (transactions captured as they were committed) or `c` (some were caught up
//!   from the database's history), followed by `h` when it holds datoms of `:db/noHistory`
//!   attributes.
//! - the SHA-256 of the stored bytes (lowercase hex): the checksum verify and restore check.
//!
//! A name is never rewritten: a segment is stored once, complete, under its final name.

use crate::model::TX0;

/// The file name extension of a segment (the chunk format of a backup).
pub const EXTENSION: &str = ".fressian.gz";

/// What a segment holds besides live transactions.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Kind {
    /// Some of its transactions were caught up from the history (not seen live).
    pub caught_up: bool,
    /// It holds datoms of `:db/noHistory` attributes.
    pub no_history: bool,
}

/// A parsed segment name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SegmentName {
    /// The last transaction covered.
    pub through: i64,
    /// The transaction before the first one covered (the predecessor's `through`).
    pub after: i64,
    /// Datoms held.
    pub datoms: u64,
    /// `:db/txInstant` of the first and last transaction carrying one.
    pub instants: Option<(i64, i64)>,
    /// What it holds.
    pub kind: Kind,
    /// SHA-256 of the stored bytes, lowercase hex.
    pub sha256: String,
}

fn tx(n: i64) -> String {
    format!("{n:020}")
}

/// The file-name start key after which exactly the segments with `through > tx` sort.
pub fn start_after(tx_id: i64) -> String {
    // '~' sorts after '_' and every digit: a name whose `through` is `tx_id` sorts before.
    format!("{}~", tx(tx_id))
}

impl SegmentName {
    /// The file name (no folder).
    pub fn file_name(&self) -> String {
        let inst = |x: Option<i64>| x.map_or_else(|| "x".to_owned(), |ms| ms.to_string());
        let kind = format!(
            "{}{}",
            if self.kind.caught_up { "c" } else { "t" },
            if self.kind.no_history { "h" } else { "" }
        );
        format!(
            "{}_{}_{}_{}_{}_{kind}_{}{EXTENSION}",
            tx(self.through),
            tx(self.after),
            self.datoms,
            inst(self.instants.map(|r| r.0)),
            inst(self.instants.map(|r| r.1)),
            self.sha256
        )
    }

    /// Parse a file name; `None` when it is not a segment name (or an impossible one:
    /// `through <= after`, a transaction below tx0, a bad checksum field).
    pub fn parse(file: &str) -> Option<SegmentName> {
        let stem = file.strip_suffix(EXTENSION)?;
        let parts: Vec<&str> = stem.split('_').collect();
        let [through, after, datoms, first, last, kind, sha] = parts.as_slice() else {
            return None;
        };
        let padded = |s: &str| -> Option<i64> {
            (s.len() == 20 && s.bytes().all(|b| b.is_ascii_digit()))
                .then(|| s.parse().ok())
                .flatten()
        };
        let (through, after) = (padded(through)?, padded(after)?);
        if through <= after || after < TX0 {
            return None;
        }
        let inst = |s: &str| -> Option<Option<i64>> {
            if s == "x" {
                Some(None)
            } else {
                s.parse().ok().map(Some)
            }
        };
        let instants = match (inst(first)?, inst(last)?) {
            (Some(a), Some(b)) => Some((a, b)),
            (None, None) => None,
            _ => return None,
        };
        let kind = match *kind {
            "t" => Kind::default(),
            "c" => Kind {
                caught_up: true,
                no_history: false,
            },
            "th" => Kind {
                caught_up: false,
                no_history: true,
            },
            "ch" => Kind {
                caught_up: true,
                no_history: true,
            },
            _ => return None,
        };
        let hex = sha.len() == 64 && sha.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
        if !hex || datoms.is_empty() || !datoms.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        Some(SegmentName {
            through,
            after,
            datoms: datoms.parse().ok()?,
            instants,
            kind,
            sha256: (*sha).to_owned(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name(after: i64, through: i64, instants: Option<(i64, i64)>, kind: Kind) -> SegmentName {
        SegmentName {
            through,
            after,
            datoms: 17,
            instants,
            kind,
            sha256: "0123456789abcdef".repeat(4),
        }
    }

    #[test]
    fn names_round_trip_and_sort_by_transaction() {
        let kinds = [
            Kind::default(),
            Kind {
                caught_up: true,
                no_history: false,
            },
            Kind {
                caught_up: false,
                no_history: true,
            },
            Kind {
                caught_up: true,
                no_history: true,
            },
        ];
        for kind in kinds {
            for instants in [
                None,
                Some((-5, 3)),
                Some((1_767_225_600_000, 1_767_225_600_950)),
            ] {
                let n = name(TX0 + 9, TX0 + 12, instants, kind);
                let file = n.file_name();
                assert_eq!(SegmentName::parse(&file), Some(n.clone()), "{file}");
            }
        }
        let a = name(TX0, TX0 + 9, None, Kind::default()).file_name();
        let b = name(TX0 + 9, TX0 + 10, None, Kind::default()).file_name();
        let c = name(TX0 + 10, TX0 + 100, Some((1, 2)), Kind::default()).file_name();
        assert!(a < b && b < c, "{a} {b} {c}");
        assert!(a.starts_with("00000000000536870921_00000000000536870912_17_x_x_t_"));
        // "After tx t" starts exactly after the segment ending at t.
        assert!(a < start_after(TX0 + 9) && start_after(TX0 + 9) < b);
        assert!(b < start_after(TX0 + 10) && start_after(TX0 + 10) < c);
    }

    #[test]
    fn other_names_are_not_segments() {
        let good = name(TX0, TX0 + 1, Some((1, 2)), Kind::default()).file_name();
        assert!(SegmentName::parse(&good).is_some());
        let bad = [
            "log.edn".to_owned(),
            good.replace(".fressian.gz", ".tmp"),
            good.replacen("00000000000536870913", "536870913", 1),
            // through <= after
            name(TX0 + 2, TX0 + 2, None, Kind::default()).file_name(),
            // after below tx0
            name(5, TX0 + 2, None, Kind::default()).file_name(),
            good.replace("_t_", "_z_"),
            good.replace("_1_2_", "_1_x_"),
            good.replace(&"0123456789abcdef".repeat(4), "abc"),
            good.replace("_17_", "_-1_"),
        ];
        for b in bad {
            assert_eq!(SegmentName::parse(&b), None, "{b}");
        }
    }
}
