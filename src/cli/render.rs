//! Human-readable output: tables and summaries of the typed results of
//! [`datacamp::ops`] (the `--json` and `--edn` forms are serde's and `jni::convert`'s).

use std::fmt::Write as _;

use datacamp::chain::retention::Reason;
use datacamp::ops::cleanup::CleanupReport;
use datacamp::ops::inspect::Inspection;
use datacamp::ops::list::Listing;
use datacamp::ops::prune::PruneReport;
use datacamp::ops::verify::VerifyReport;

/// `1234567` → `"1,234,567"`.
pub fn count(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// Bytes in IEC units: `"512 B"`, `"2.53 MiB"`.
pub fn bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["KiB", "MiB", "GiB", "TiB", "PiB"];
    if n < 1024 {
        return format!("{n} B");
    }
    let mut x = n as f64 / 1024.0;
    let mut unit = 0;
    while x >= 1024.0 && unit < UNITS.len() - 1 {
        x /= 1024.0;
        unit += 1;
    }
    format!("{x:.2} {}", UNITS[unit])
}

/// Epoch millis as `"2026-01-15 10:30:00 UTC"`.
pub fn time(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .map(|t| t.format("%Y-%m-%d %H:%M:%S UTC").to_string())
        .unwrap_or_else(|| format!("{ms} ms"))
}

fn tx_range(r: Option<(i64, i64)>) -> String {
    r.map_or_else(|| "-".into(), |(a, b)| format!("{a}–{b}"))
}

/// Rows under a header, each column as wide as its widest cell (the last one unpadded).
pub fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    let mut line = |cells: Vec<&str>| {
        let n = cells.len();
        let mut l = String::new();
        for (i, (cell, w)) in cells.into_iter().zip(&widths).enumerate() {
            if i + 1 == n {
                l.push_str(cell);
            } else {
                let _ = write!(l, "{cell:<w$}  ");
            }
        }
        out.push_str(l.trim_end());
        out.push('\n');
    };
    line(header.to_vec());
    for row in rows {
        line(row.iter().map(String::as_str).collect());
    }
    out
}

/// The `list` table.
pub fn listing(database_id: &str, where_: &str, list: &[Listing]) -> String {
    if list.is_empty() {
        return format!("no backups of database {database_id} in {where_}\n");
    }
    let rows: Vec<Vec<String>> = list
        .iter()
        .map(|l| {
            let status = match &l.progress {
                None => "complete".to_owned(),
                Some(p) => match p.phase {
                    Some(ph) => format!(
                        "INCOMPLETE (last checkpoint: {}, {} chunks stored)",
                        ph.keyword(),
                        p.chunks_stored
                    ),
                    None => "INCOMPLETE (no checkpoint)".to_owned(),
                },
            };
            vec![
                l.backup_id.clone(),
                time(l.created_at_ms),
                l.backup_type.clone(),
                count(l.datom_count),
                bytes(l.size_bytes),
                count(l.chunk_count),
                status,
            ]
        })
        .collect();
    table(
        &[
            "BACKUP ID",
            "CREATED",
            "TYPE",
            "DATOMS",
            "SIZE",
            "CHUNKS",
            "STATUS",
        ],
        &rows,
    )
}

/// The `verify` report.
pub fn verify(r: &VerifyReport) -> String {
    let mut out = String::new();
    let checked = if r.deep {
        format!(
            "sizes, SHA-256 and contents checked, {} datoms decoded",
            count(r.datoms_verified.unwrap_or(0))
        )
    } else {
        "sizes and SHA-256 checked".to_owned()
    };
    if r.success() {
        let _ = writeln!(
            out,
            "OK: backup {} of {} is complete and intact ({} chunks, {checked})",
            r.backup_id, r.database_id, r.chunk_count
        );
    } else {
        let _ = writeln!(
            out,
            "PROBLEMS: backup {} of {} ({} chunks, {checked}):",
            r.backup_id, r.database_id, r.chunk_count
        );
        for p in &r.problems {
            let _ = writeln!(out, "  - {p}");
        }
    }
    out
}

/// The `inspect` summary and chunk table.
pub fn inspection(i: &Inspection) -> String {
    let mut out = String::new();
    let mut field = |k: &str, v: String| {
        let _ = writeln!(out, "{k:<12}{v}");
    };
    field("Backup", i.backup_id.clone());
    field("Database", i.database_id.clone());
    field(
        "Status",
        if i.complete {
            "complete".into()
        } else {
            "INCOMPLETE (no manifest and completion marker: interrupted, running or damaged)".into()
        },
    );
    if let Some(e) = &i.manifest_error {
        field("Manifest", format!("UNREADABLE: {e}"));
    }
    field(
        "Stored",
        format!("{} in {} files", bytes(i.stored_bytes), i.objects),
    );
    if let Some(m) = &i.manifest {
        field(
            "Type",
            format!(
                "{}, {}",
                m.backup_type,
                if m.history {
                    "with history"
                } else {
                    "current datoms only"
                }
            ),
        );
        field(
            "Format",
            format!(
                "{} ({} order), {}",
                m.order.format_name(),
                match m.order {
                    datacamp::repo::manifest::ChunkOrder::Restore => "restore",
                    datacamp::repo::manifest::ChunkOrder::Eavt => "EAVT",
                },
                m.compression
            ),
        );
        field(
            "Created",
            format!(
                "{}, completed {} ({:.1} s)",
                time(m.created_at_ms),
                time(m.completed_at_ms),
                (m.completed_at_ms - m.created_at_ms) as f64 / 1000.0
            ),
        );
        if let Some(v) = &m.datahike_version {
            field("Datahike", v.clone());
        }
        let uncompressed: u64 = m.chunks.iter().map(|c| c.uncompressed_bytes).sum();
        field(
            "Datoms",
            format!(
                "{} in {} chunks, {}{}",
                count(m.datom_count),
                m.chunks.len(),
                bytes(m.size_bytes),
                if uncompressed > 0 {
                    format!(" ({} uncompressed)", bytes(uncompressed))
                } else {
                    String::new()
                }
            ),
        );
        field("Tx range", tx_range(m.tx_range));
        field(
            "Time range",
            i.time_range.map_or_else(
                || "-".into(),
                |(a, b)| format!("{} – {} (:db/txInstant)", time(a), time(b)),
            ),
        );
        field("Max eid", format!("{}, max tx {}", m.max_eid, m.max_tx));
        field(
            "Chain",
            i.chain
                .iter()
                .map(|l| format!("{} {}", l.backup_type, l.backup_id))
                .collect::<Vec<_>>()
                .join(" → "),
        );
    }
    if let Some(c) = i.checkpoint.as_ref().filter(|_| !i.complete) {
        field(
            "Checkpoint",
            format!(
                "{}, {} chunks stored, {} datoms received, updated {}{}",
                c.phase.keyword(),
                c.chunks.len(),
                count(c.datoms_received),
                time(c.updated_at_ms),
                c.error
                    .as_deref()
                    .map_or_else(String::new, |e| format!("; error: {e}"))
            ),
        );
    }
    let chunks = datacamp::ops::inspect::readable_chunks(i);
    if !chunks.is_empty() {
        out.push('\n');
        let rows: Vec<Vec<String>> = chunks
            .iter()
            .map(|c| {
                vec![
                    c.id.to_string(),
                    count(c.datom_count),
                    bytes(c.size_bytes),
                    tx_range(c.tx_range),
                    c.max_eid.to_string(),
                    c.checksum.chars().take(16).collect(),
                    c.key.clone(),
                ]
            })
            .collect();
        out.push_str(&table(
            &[
                "CHUNK", "DATOMS", "SIZE", "TX RANGE", "MAX EID", "SHA-256", "KEY",
            ],
            &rows,
        ));
    }
    out
}

/// The `cleanup-incomplete` report.
pub fn cleanup(r: &CleanupReport, older_than: &str) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "removed {} incomplete backup(s) of {} older than {older_than} ({} files/objects deleted, {} unfinished uploads aborted)",
        r.removed.len(),
        r.database_id,
        r.objects_deleted,
        r.uploads_aborted
    );
    for id in &r.removed {
        let _ = writeln!(out, "  removed {id}");
    }
    for id in &r.kept_incomplete {
        let _ = writeln!(out, "  kept    {id} (active more recently)");
    }
    out
}

/// The `prune` report.
pub fn prune(r: &PruneReport) -> String {
    let mut out = String::new();
    let (verb, what) = if r.dry_run {
        ("would delete", "dry run: nothing deleted; --apply deletes")
    } else {
        ("deleted", "")
    };
    let _ = writeln!(
        out,
        "{} of {}: kept {}, {verb} {} ({} files/objects deleted){}",
        if r.dry_run {
            "prune (dry run)"
        } else {
            "prune"
        },
        r.database_id,
        r.kept.len(),
        r.deleted.len(),
        r.objects_deleted,
        if what.is_empty() {
            String::new()
        } else {
            format!("; {what}")
        }
    );
    for (id, why) in &r.kept {
        let reasons: Vec<String> = why
            .iter()
            .map(|w| match w {
                Reason::Last => "last".to_owned(),
                Reason::Daily => "daily".to_owned(),
                Reason::Weekly => "weekly".to_owned(),
                Reason::Monthly => "monthly".to_owned(),
                Reason::DependencyOf(d) => format!("needed by {d}"),
                Reason::LogOf(d) => format!("log continuing {d}"),
            })
            .collect();
        let _ = writeln!(out, "  keep    {id} ({})", reasons.join(", "));
    }
    for id in &r.deleted {
        let _ = writeln!(out, "  {verb:<7} {id}");
    }
    for id in &r.finished {
        let _ = writeln!(
            out,
            "  finished deleting {id} (an interrupted prune had begun)"
        );
    }
    for id in &r.incomplete {
        let _ = writeln!(out, "  skip    {id} (incomplete: untouched)");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_and_tables() {
        assert_eq!(count(0), "0");
        assert_eq!(count(1234567), "1,234,567");
        assert_eq!(bytes(512), "512 B");
        assert_eq!(bytes(2_654_143), "2.53 MiB");
        assert_eq!(time(0), "1970-01-01 00:00:00 UTC");
        assert_eq!(
            table(&["A", "BB"], &[vec!["xyz".into(), "1".into()]]),
            "A    BB\nxyz  1\n"
        );
    }
}
