//! The retention policy of `prune-backups` (restic's `forget` is the model), decided on
//! whole chains; pure: backups in, a decision out.
//!
//! Among the complete backups, newest first (by creation time; UTC calendar):
//! `keep_last` keeps the n newest; `keep_daily` the newest backup of each of the n most
//! recent days that have one; `keep_weekly` likewise per ISO week, `keep_monthly` per
//! month. A backup is kept when any rule keeps it. Then every backup that a kept backup
//! depends on — its parent, the parent's parent, … up to the base — is kept too, and so is
//! the ancestry of every incomplete backup (it may be resumed). What is left is deleted,
//! dependents before what they depend on, so that an interrupted prune never leaves a
//! complete backup whose chain is broken. Logs of continuous backup are not counted by the
//! rules: a log is kept when the backup or log it continues is kept, and deleted with it. Incomplete backups are never deleted (that is
//! `cleanup-incomplete`); backups a crashed prune had started to delete are finished.

use std::collections::{BTreeMap, HashMap, HashSet};

use chrono::{DateTime, Datelike};

/// How many backups each rule keeps (0: the rule is off).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Policy {
    /// The n newest.
    pub keep_last: u32,
    /// The newest of each of the n most recent days with a backup.
    pub keep_daily: u32,
    /// The newest of each of the n most recent ISO weeks with a backup.
    pub keep_weekly: u32,
    /// The newest of each of the n most recent months with a backup.
    pub keep_monthly: u32,
}

impl Policy {
    /// True when no rule is on (such a policy would delete everything: refused).
    pub fn is_empty(&self) -> bool {
        self.keep_last == 0
            && self.keep_daily == 0
            && self.keep_weekly == 0
            && self.keep_monthly == 0
    }
}

/// One backup as retention sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    /// The backup id.
    pub id: String,
    /// Creation time, epoch ms.
    pub created_ms: i64,
    /// The backup it depends on (its manifest's, or for an incomplete one its config's).
    pub parent: Option<String>,
    /// Complete (manifest, marker, no tombstone).
    pub complete: bool,
    /// A prune tombstone is present: an earlier prune started deleting it.
    pub pruning: bool,
    /// A log of continuous backup: not counted by the rules, kept with its parent.
    pub log: bool,
}

/// Why a backup is kept.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Reason {
    /// One of the `keep_last` newest.
    Last,
    /// The newest of its day.
    Daily,
    /// The newest of its ISO week.
    Weekly,
    /// The newest of its month.
    Monthly,
    /// The backup (kept or incomplete) with this id depends on it.
    DependencyOf(String),
    /// A log of continuous backup that continues this kept backup or log.
    LogOf(String),
}

/// What to do.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Decision {
    /// The backups kept, with why, newest first.
    pub keep: Vec<(String, Vec<Reason>)>,
    /// The complete backups to delete, in a safe order (dependents first).
    pub delete: Vec<String>,
    /// Backups an interrupted prune began to delete and nothing depends on: finish them.
    pub finish: Vec<String>,
    /// Incomplete backups, never touched.
    pub incomplete: Vec<String>,
}

fn bucket(ms: i64, rule: &Reason) -> (i32, u32) {
    let date = DateTime::from_timestamp_millis(ms)
        .unwrap_or_default()
        .date_naive();
    match rule {
        Reason::Daily => (date.year(), date.ordinal()),
        Reason::Weekly => {
            let w = date.iso_week();
            (w.year(), w.week())
        }
        _ => (date.year(), date.month()),
    }
}

/// Decide, for `entries` (any order), what `policy` keeps and deletes (see the module doc).
pub fn decide(policy: &Policy, entries: &[Entry]) -> Decision {
    let mut complete: Vec<&Entry> = entries.iter().filter(|e| e.complete).collect();
    complete.sort_by(|a, b| {
        b.created_ms
            .cmp(&a.created_ms)
            .then_with(|| b.id.cmp(&a.id))
    });
    // The rules count backups; a log is kept with the backup (or log) it continues.
    let ranked: Vec<&Entry> = complete.iter().copied().filter(|e| !e.log).collect();
    let mut reasons: BTreeMap<String, Vec<Reason>> = BTreeMap::new();
    for e in ranked.iter().take(policy.keep_last as usize) {
        reasons.entry(e.id.clone()).or_default().push(Reason::Last);
    }
    for (rule, n) in [
        (Reason::Daily, policy.keep_daily),
        (Reason::Weekly, policy.keep_weekly),
        (Reason::Monthly, policy.keep_monthly),
    ] {
        let mut seen = HashSet::new();
        for e in &ranked {
            if seen.len() >= n as usize {
                break;
            }
            if seen.insert(bucket(e.created_ms, &rule)) {
                reasons.entry(e.id.clone()).or_default().push(rule.clone());
            }
        }
    }
    // Everything a kept or incomplete backup depends on.
    let by_id: HashMap<&str, &Entry> = entries.iter().map(|e| (e.id.as_str(), e)).collect();
    let dependents: Vec<String> = reasons
        .keys()
        .cloned()
        .chain(
            entries
                .iter()
                .filter(|e| !e.complete && !e.pruning)
                .map(|e| e.id.clone()),
        )
        .collect();
    for dependent in dependents {
        let mut at = by_id.get(dependent.as_str()).and_then(|e| e.parent.clone());
        let mut steps = 0;
        while let Some(p) = at {
            let Some(parent) = by_id.get(p.as_str()) else {
                break;
            };
            let r = reasons.entry(p.clone()).or_default();
            if r.contains(&Reason::DependencyOf(dependent.clone())) || steps > entries.len() {
                break;
            }
            r.push(Reason::DependencyOf(dependent.clone()));
            at = parent.parent.clone();
            steps += 1;
        }
    }
    // Logs continuing a kept link (a log continues a backup or a log: to a fixed point).
    loop {
        let more: Vec<(String, String)> = complete
            .iter()
            .filter(|e| e.log && !reasons.contains_key(&e.id))
            .filter_map(|e| {
                let p = e.parent.as_ref()?;
                reasons.contains_key(p).then(|| (e.id.clone(), p.clone()))
            })
            .collect();
        if more.is_empty() {
            break;
        }
        for (id, parent) in more {
            reasons.entry(id).or_default().push(Reason::LogOf(parent));
        }
    }
    let depth = |id: &str| {
        let mut n = 0usize;
        let mut at = by_id.get(id).and_then(|e| e.parent.as_deref());
        while let Some(p) = at {
            n += 1;
            if n > entries.len() {
                break;
            }
            at = by_id.get(p).and_then(|e| e.parent.as_deref());
        }
        n
    };
    let mut delete: Vec<&Entry> = complete
        .iter()
        .copied()
        .filter(|e| !reasons.contains_key(&e.id))
        .collect();
    delete.sort_by(|a, b| {
        depth(&b.id)
            .cmp(&depth(&a.id))
            .then_with(|| b.created_ms.cmp(&a.created_ms))
    });
    let mut finish: Vec<&Entry> = entries
        .iter()
        .filter(|e| e.pruning && !reasons.contains_key(&e.id))
        .collect();
    finish.sort_by_key(|e| std::cmp::Reverse(depth(&e.id)));
    let mut keep: Vec<(String, Vec<Reason>)> = reasons
        .into_iter()
        .map(|(id, mut r)| {
            r.sort();
            r.dedup();
            (id, r)
        })
        .collect();
    let created = |id: &str| by_id.get(id).map_or(0, |e| e.created_ms);
    keep.sort_by(|a, b| {
        created(&b.0)
            .cmp(&created(&a.0))
            .then_with(|| b.0.cmp(&a.0))
    });
    let mut incomplete: Vec<&Entry> = entries
        .iter()
        .filter(|e| !e.complete && !e.pruning)
        .collect();
    incomplete.sort_by_key(|e| std::cmp::Reverse(e.created_ms));
    Decision {
        keep,
        delete: delete.into_iter().map(|e| e.id.clone()).collect(),
        finish: finish.into_iter().map(|e| e.id.clone()).collect(),
        incomplete: incomplete.into_iter().map(|e| e.id.clone()).collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAY: i64 = 86_400_000;
    /// 2026-01-05 00:00 UTC, a Monday.
    const MONDAY: i64 = 1_767_571_200_000;

    fn full(id: &str, ms: i64) -> Entry {
        Entry {
            id: id.into(),
            created_ms: ms,
            parent: None,
            complete: true,
            pruning: false,
            log: false,
        }
    }

    fn inc(id: &str, ms: i64, parent: &str) -> Entry {
        Entry {
            parent: Some(parent.into()),
            ..full(id, ms)
        }
    }

    fn kept(d: &Decision) -> Vec<&str> {
        let mut v: Vec<&str> = d.keep.iter().map(|(id, _)| id.as_str()).collect();
        v.sort();
        v
    }

    #[test]
    fn keep_last_keeps_the_newest_and_everything_they_depend_on() {
        // f1 ← i1 ← i2 ← i3, and a second chain f2 ← j1.
        let es = vec![
            full("f1", MONDAY),
            inc("i1", MONDAY + 1000, "f1"),
            inc("i2", MONDAY + 2000, "i1"),
            inc("i3", MONDAY + 3000, "i2"),
            full("f2", MONDAY + 4000),
            inc("j1", MONDAY + 5000, "f2"),
        ];
        let d = decide(
            &Policy {
                keep_last: 1,
                ..Policy::default()
            },
            &es,
        );
        assert_eq!(kept(&d), ["f2", "j1"]);
        assert_eq!(d.delete, ["i3", "i2", "i1", "f1"], "dependents first");
        let d = decide(
            &Policy {
                keep_last: 3,
                ..Policy::default()
            },
            &es,
        );
        assert_eq!(kept(&d), ["f1", "f2", "i1", "i2", "i3", "j1"]);
        let reasons: HashMap<_, _> = d.keep.iter().cloned().collect();
        assert_eq!(reasons["i3"], [Reason::Last]);
        assert_eq!(reasons["i1"], [Reason::DependencyOf("i3".into())]);
        assert_eq!(reasons["f1"], [Reason::DependencyOf("i3".into())]);
        assert_eq!(reasons["j1"], [Reason::Last]);
        assert_eq!(
            reasons["f2"],
            [Reason::Last, Reason::DependencyOf("j1".into())]
        );
        assert!(d.delete.is_empty());
    }

    #[test]
    fn daily_weekly_and_monthly_buckets() {
        // Two backups a day for 40 days.
        let mut es = Vec::new();
        for day in 0..40 {
            es.push(full(&format!("d{day:02}a"), MONDAY + day * DAY + 1000));
            es.push(full(&format!("d{day:02}b"), MONDAY + day * DAY + 2000));
        }
        let d = decide(
            &Policy {
                keep_daily: 3,
                ..Policy::default()
            },
            &es,
        );
        assert_eq!(kept(&d), ["d37b", "d38b", "d39b"]);
        // Days 0..39 from Monday 2026-01-05 span ISO weeks 2..7: the newest of the last 2
        // weeks are d39b (Fri of week 7, day 39) and d34b (Sunday of week 6).
        let d = decide(
            &Policy {
                keep_weekly: 2,
                ..Policy::default()
            },
            &es,
        );
        assert_eq!(kept(&d), ["d34b", "d39b"]);
        // January (days 0..26) and February.
        let d = decide(
            &Policy {
                keep_monthly: 5,
                ..Policy::default()
            },
            &es,
        );
        assert_eq!(kept(&d), ["d26b", "d39b"]);
        let d = decide(
            &Policy {
                keep_last: 1,
                keep_daily: 2,
                ..Policy::default()
            },
            &es,
        );
        let reasons: HashMap<_, _> = d.keep.iter().cloned().collect();
        assert_eq!(reasons["d39b"], [Reason::Last, Reason::Daily]);
        assert_eq!(d.delete.len(), 80 - 2);
    }

    #[test]
    fn incomplete_backups_are_untouched_and_protect_their_ancestry() {
        let mut broken = inc("i2", MONDAY + 3000, "i1");
        broken.complete = false;
        let es = vec![
            full("f1", MONDAY),
            inc("i1", MONDAY + 1000, "f1"),
            broken,
            full("f2", MONDAY + 4000),
        ];
        let d = decide(
            &Policy {
                keep_last: 1,
                ..Policy::default()
            },
            &es,
        );
        assert_eq!(kept(&d), ["f1", "f2", "i1"]);
        assert_eq!(d.incomplete, ["i2"]);
        assert!(d.delete.is_empty());
    }

    #[test]
    fn a_crashed_prunes_deletions_are_finished_unless_something_depends_on_them() {
        let mut half = inc("i1", MONDAY + 1000, "f1");
        half.complete = false;
        half.pruning = true;
        let es = vec![full("f1", MONDAY), half.clone(), full("f2", MONDAY + 4000)];
        let d = decide(
            &Policy {
                keep_last: 1,
                ..Policy::default()
            },
            &es,
        );
        assert_eq!(d.finish, ["i1"]);
        assert_eq!(d.delete, ["f1"]);
        // A kept backup depends on it (a backup raced the earlier prune): kept.
        let es = vec![full("f1", MONDAY), half, inc("i2", MONDAY + 5000, "i1")];
        let d = decide(
            &Policy {
                keep_last: 1,
                ..Policy::default()
            },
            &es,
        );
        assert!(d.finish.is_empty());
        assert_eq!(kept(&d), ["f1", "i1", "i2"]);
    }

    #[test]
    fn an_empty_policy_is_empty() {
        assert!(Policy::default().is_empty());
        assert!(!Policy {
            keep_monthly: 1,
            ..Policy::default()
        }
        .is_empty());
    }
}
