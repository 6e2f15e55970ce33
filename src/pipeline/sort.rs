//! A generic external merge sort with bounded memory.
//!
//! [`ExternalSorter`] buffers records until their [`SortRecord::mem_size`] adds up to the
//! budget, then sorts the buffer and writes it as a *run* file on a background thread while
//! pushing goes on into a second buffer (at most one spill in flight). [`ExternalSorter::finish`]
//! sorts in memory when nothing was spilled; otherwise it merges the runs (plus the last,
//! unspilled buffer, kept in memory) with a k-way heap merge, first merging consecutive runs
//! in passes when there are more than the fan-in allows open at once.
//!
//! The sort is stable: runs hold consecutive stretches of the input, each run is sorted
//! stably, and heap ties are broken by run index.
//!
//! Memory: about 2 × `buffer_bytes` (as counted by `mem_size`) while pushing, plus the
//! scratch of the in-memory sort (up to half a buffer's shallow size) and a 256 KiB write
//! block per spill; while merging, at most `buffer_bytes` (the last buffer) plus fan-in ×
//! 64 KiB of read buffers plus one decoded record per run.
//!
//! Run file format: per record, a `u32` little-endian length, then [`SortRecord::encode`]'s
//! bytes. Run files live in a [`tempfile::TempDir`] created (on first spill) under the
//! directory given to [`ExternalSorter::new`]; it is deleted when the sorter or the
//! [`SortedIter`] that holds it is dropped.

use std::cmp::Ordering;
use std::collections::binary_heap::PeekMut;
use std::collections::BinaryHeap;
use std::fs::File;
use std::io::{BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::thread::JoinHandle;

use crate::error::{Error, Result};

/// A record that [`ExternalSorter`] can sort and spill.
pub trait SortRecord: Send + Sized + 'static {
    /// The sort key; records are ordered by `key()` ascending (stably).
    type Key: Ord;

    /// Return the record's key. Called on every comparison, so it should be cheap.
    fn key(&self) -> Self::Key;

    /// Return the approximate number of bytes the record occupies in memory (its shallow
    /// size plus owned heap allocations); the sorter's budget counts these.
    fn mem_size(&self) -> usize;

    /// Append the record's self-contained encoding to `out`. On error the sorter fails.
    fn encode(&self, out: &mut Vec<u8>) -> Result<()>;

    /// Given exactly the bytes that [`SortRecord::encode`] wrote, decode the record and
    /// advance `input`; the sorter reports bytes left over as corrupt.
    fn decode(input: &mut &[u8]) -> Result<Self>;
}

/// The default number of runs merged at once.
pub const DEFAULT_FAN_IN: usize = 64;

const READ_BUFFER: usize = 64 * 1024;
const WRITE_BLOCK: usize = 256 * 1024;

/// One spilled run: its file, record count and longest record.
#[derive(Debug)]
struct Run {
    path: PathBuf,
    count: u64,
    max_len: u32,
}

type SpillResult<R> = (Result<Run>, Vec<R>);

/// Sorts records of any size with a bounded memory budget, spilling sorted runs to disk.
///
/// Use: [`ExternalSorter::new`], [`ExternalSorter::push`] each record, then
/// [`ExternalSorter::finish`] to iterate over them in key order. After `push` returns an
/// error the sorter is failed: later calls return an [`crate::error::ErrorKind::Internal`]
/// error.
pub struct ExternalSorter<R: SortRecord> {
    parent: PathBuf,
    budget: usize,
    fan_in: usize,
    buf: Vec<R>,
    buffered: usize,
    spare: Option<Vec<R>>,
    dir: Option<tempfile::TempDir>,
    runs: Vec<Run>,
    next_run: u64,
    in_flight: Option<JoinHandle<SpillResult<R>>>,
    pushed: u64,
    failed: bool,
}

impl<R: SortRecord> std::fmt::Debug for ExternalSorter<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ExternalSorter")
            .field("parent", &self.parent)
            .field("budget", &self.budget)
            .field("buffered", &self.buffered)
            .field("runs", &self.runs.len())
            .field("pushed", &self.pushed)
            .finish()
    }
}

impl<R: SortRecord> ExternalSorter<R> {
    /// Given the directory to hold the run files (a temporary directory is created inside
    /// it on the first spill) and the buffer budget in bytes, return an empty sorter.
    ///
    /// A buffer is spilled when adding a record would take it over `buffer_bytes`; a buffer
    /// holding exactly `buffer_bytes` stays in memory. A budget of 0 spills every record as
    /// a run of its own (only useful in tests).
    pub fn new(dir: &Path, buffer_bytes: usize) -> Self {
        ExternalSorter {
            parent: dir.to_path_buf(),
            budget: buffer_bytes,
            fan_in: DEFAULT_FAN_IN,
            buf: Vec::new(),
            buffered: 0,
            spare: None,
            dir: None,
            runs: Vec::new(),
            next_run: 0,
            in_flight: None,
            pushed: 0,
            failed: false,
        }
    }

    /// Return the sorter with the number of runs merged at once set to `fan_in` (at least 2;
    /// default [`DEFAULT_FAN_IN`]). Each open run costs a 64 KiB read buffer.
    pub fn with_fan_in(mut self, fan_in: usize) -> Self {
        self.fan_in = fan_in.max(2);
        self
    }

    /// Return the number of records pushed so far.
    pub fn len(&self) -> u64 {
        self.pushed
    }

    /// Return whether no record was pushed.
    pub fn is_empty(&self) -> bool {
        self.pushed == 0
    }

    /// Return the number of runs spilled (or being spilled) so far.
    pub fn spilled_runs(&self) -> u64 {
        self.next_run
    }

    /// Return the `mem_size` total of the records buffered in memory (not yet spilled).
    pub fn buffered_bytes(&self) -> usize {
        self.buffered
    }

    /// Given a record, add it. If it would take the buffer over the budget, the buffer is
    /// first handed to the background spill (waiting for the previous spill, if any, to end).
    ///
    /// Errors: [`crate::error::ErrorKind::Io`] (with the path) or the record's own encoding
    /// error, from this or the previous spill.
    pub fn push(&mut self, r: R) -> Result<()> {
        if self.failed {
            return Err(failed_earlier());
        }
        let size = r.mem_size();
        if !self.buf.is_empty() && self.buffered.saturating_add(size) > self.budget {
            if let Err(e) = self.spill_buffer() {
                self.failed = true;
                return Err(e);
            }
        }
        self.buf.push(r);
        self.buffered = self.buffered.saturating_add(size);
        self.pushed += 1;
        Ok(())
    }

    /// Wait for the spill in flight, if any, and record its run.
    fn wait_spill(&mut self) -> Result<()> {
        if let Some(handle) = self.in_flight.take() {
            let (run, spare) = handle
                .join()
                .map_err(|_| Error::internal("spill sort run", "the spill thread panicked"))?;
            self.runs.push(run?);
            self.spare = Some(spare);
        }
        Ok(())
    }

    fn temp_dir(&mut self) -> Result<&Path> {
        if self.dir.is_none() {
            self.dir = Some(create_sort_dir(&self.parent)?);
        }
        match &self.dir {
            Some(d) => Ok(d.path()),
            None => Err(Error::internal("create sort directory", "no directory")),
        }
    }

    fn run_path(&mut self) -> Result<PathBuf> {
        let n = self.next_run;
        let path = self.temp_dir()?.join(format!("run-{n:06}.bin"));
        self.next_run += 1;
        Ok(path)
    }

    /// Hand the current buffer to a background thread that sorts and writes it.
    fn spill_buffer(&mut self) -> Result<()> {
        self.wait_spill()?;
        let path = self.run_path()?;
        let next = self.spare.take().unwrap_or_default();
        let buf = std::mem::replace(&mut self.buf, next);
        self.buffered = 0;
        let handle = std::thread::Builder::new()
            .name("datacamp-spill".into())
            .spawn(move || spill(buf, path))
            .map_err(|e| Error::io("start spill thread", "datacamp-spill", e))?;
        self.in_flight = Some(handle);
        Ok(())
    }

    /// Finish pushing and return the records in key order.
    ///
    /// Without a spill, the buffer is sorted in memory. Otherwise the in-flight spill is
    /// awaited, runs are merged in passes of at most the fan-in until few enough remain,
    /// and the iterator merges those with the last buffer (sorted in memory).
    ///
    /// Errors: I/O and corruption errors of spills and merge passes.
    pub fn finish(mut self) -> Result<SortedIter<R>> {
        if self.failed {
            return Err(failed_earlier());
        }
        self.wait_spill()?;
        let mut buf = std::mem::take(&mut self.buf);
        sort_records(&mut buf);
        if self.runs.is_empty() {
            return Ok(SortedIter {
                inner: Inner::Mem(buf.into_iter()),
                _dir: self.dir.take(),
            });
        }
        // Merge passes: consecutive groups (keeps stability), until the file runs and the
        // in-memory buffer fit the fan-in together.
        let mem_slots = usize::from(!buf.is_empty());
        while self.runs.len() + mem_slots > self.fan_in {
            let runs = std::mem::take(&mut self.runs);
            let mut merged = Vec::with_capacity(runs.len() / self.fan_in + 1);
            let mut iter = runs.into_iter().peekable();
            while iter.peek().is_some() {
                let group: Vec<Run> = iter.by_ref().take(self.fan_in).collect();
                if group.len() == 1 {
                    merged.extend(group);
                    continue;
                }
                let path = self.run_path()?;
                merged.push(merge_to_file::<R>(group, path)?);
            }
            self.runs = merged;
        }
        let mut sources = Vec::with_capacity(self.runs.len() + 1);
        for run in std::mem::take(&mut self.runs) {
            sources.push(Source::File(RunReader::open(run)?));
        }
        if !buf.is_empty() {
            sources.push(Source::Mem(buf.into_iter()));
        }
        Ok(SortedIter {
            inner: Inner::Merge(Merger::new(sources)?),
            _dir: self.dir.take(),
        })
    }
}

impl<R: SortRecord> Drop for ExternalSorter<R> {
    fn drop(&mut self) {
        // Let a spill in flight end before the directory goes.
        if let Some(handle) = self.in_flight.take() {
            let _ = handle.join();
        }
    }
}

/// Create the temporary directory that holds a sorter's run files, inside `parent`: the
/// one place both sorters create it.
/// The spill folder of one sorter: readable by the owner only (0700), like its runs
/// ([`create_run_file`], 0600): the datoms are the database's data.
fn create_sort_dir(parent: &Path) -> Result<tempfile::TempDir> {
    tempfile::Builder::new()
        .prefix("datacamp-sort-")
        .permissions(std::os::unix::fs::PermissionsExt::from_mode(0o700))
        .tempdir_in(parent)
        .map_err(|e| Error::io("create sort directory", parent.display().to_string(), e))
}

/// A new run file readable by the owner only (0600), never created through a link.
fn create_run_file(path: &Path) -> Result<File> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(path)
        .map_err(|e| Error::io("create sort run", path.display().to_string(), e))
}

fn failed_earlier() -> Error {
    Error::internal("external sort", "the sorter failed earlier; drop it")
}

fn sort_records<R: SortRecord>(buf: &mut [R]) {
    buf.sort_by_key(R::key);
}

/// Sort `buf`, write it to `path`, and give back the emptied buffer for reuse.
fn spill<R: SortRecord>(mut buf: Vec<R>, path: PathBuf) -> SpillResult<R> {
    sort_records(&mut buf);
    let result = (|| {
        let mut w = RunWriter::create(path)?;
        for r in &buf {
            w.push(r)?;
        }
        w.finish()
    })();
    buf.clear();
    (result, buf)
}

/// Writes length-prefixed records into a run file through a block buffer.
struct RunWriter {
    file: File,
    path: PathBuf,
    block: Vec<u8>,
    count: u64,
    max_len: u32,
}

impl RunWriter {
    fn create(path: PathBuf) -> Result<Self> {
        let file = create_run_file(&path)?;
        Ok(RunWriter {
            file,
            path,
            block: Vec::with_capacity(WRITE_BLOCK + 4096),
            count: 0,
            max_len: 0,
        })
    }

    fn push<R: SortRecord>(&mut self, r: &R) -> Result<()> {
        let start = self.block.len();
        self.block.extend_from_slice(&[0; 4]);
        r.encode(&mut self.block)?;
        let len = self.block.len() - start - 4;
        let len = u32::try_from(len).map_err(|_| {
            Error::new(
                crate::error::ErrorKind::Unsupported,
                "write sort run",
                format!("record of {len} bytes exceeds u32::MAX"),
            )
        })?;
        self.block[start..start + 4].copy_from_slice(&len.to_le_bytes());
        self.max_len = self.max_len.max(len);
        self.count += 1;
        if self.block.len() >= WRITE_BLOCK {
            self.flush()?;
        }
        Ok(())
    }

    fn flush(&mut self) -> Result<()> {
        self.file
            .write_all(&self.block)
            .map_err(|e| Error::io("write sort run", self.path.display().to_string(), e))?;
        self.block.clear();
        Ok(())
    }

    fn finish(mut self) -> Result<Run> {
        self.flush()?;
        Ok(Run {
            path: self.path,
            count: self.count,
            max_len: self.max_len,
        })
    }
}

/// Reads the records of one run file back.
struct RunReader {
    reader: BufReader<File>,
    path: PathBuf,
    remaining: u64,
    max_len: u32,
    scratch: Vec<u8>,
}

impl RunReader {
    fn open(run: Run) -> Result<Self> {
        let file = File::open(&run.path)
            .map_err(|e| Error::io("open sort run", run.path.display().to_string(), e))?;
        Ok(RunReader {
            reader: BufReader::with_capacity(READ_BUFFER, file),
            path: run.path,
            remaining: run.count,
            max_len: run.max_len,
            scratch: Vec::new(),
        })
    }

    fn corrupt(&self, message: impl Into<String>) -> Error {
        Error::corrupt("read sort run", message).with_key(self.path.display().to_string())
    }

    fn read_exact(&mut self, n: usize) -> Result<()> {
        self.scratch.clear();
        self.scratch.resize(n, 0);
        self.reader.read_exact(&mut self.scratch).map_err(|e| {
            if e.kind() == std::io::ErrorKind::UnexpectedEof {
                self.corrupt("run file ends inside a record")
            } else {
                Error::io("read sort run", self.path.display().to_string(), e)
            }
        })
    }

    fn next<R: SortRecord>(&mut self) -> Result<Option<R>> {
        if self.remaining == 0 {
            let mut probe = [0u8; 1];
            let n = self
                .reader
                .read(&mut probe)
                .map_err(|e| Error::io("read sort run", self.path.display().to_string(), e))?;
            if n != 0 {
                return Err(self.corrupt("bytes after the last record"));
            }
            return Ok(None);
        }
        self.read_exact(4)?;
        let len = u32::from_le_bytes([
            self.scratch[0],
            self.scratch[1],
            self.scratch[2],
            self.scratch[3],
        ]);
        if len > self.max_len {
            return Err(self.corrupt(format!(
                "record length {len} exceeds the longest written ({})",
                self.max_len
            )));
        }
        self.read_exact(len as usize)?;
        let mut input: &[u8] = &self.scratch;
        let r = R::decode(&mut input).map_err(|e| e.with_key(self.path.display().to_string()))?;
        if !input.is_empty() {
            return Err(self.corrupt(format!("{} bytes left inside a record", input.len())));
        }
        self.remaining -= 1;
        Ok(Some(r))
    }
}

impl Drop for RunReader {
    fn drop(&mut self) {
        // Merged-away runs are not needed any more: free the disk early.
        let _ = std::fs::remove_file(&self.path);
    }
}

/// A sorted source for the merge.
enum Source<R> {
    File(RunReader),
    Mem(std::vec::IntoIter<R>),
}

impl<R: SortRecord> Source<R> {
    fn next(&mut self) -> Result<Option<R>> {
        match self {
            Source::File(r) => r.next(),
            Source::Mem(it) => Ok(it.next()),
        }
    }
}

/// A heap entry: the head record of run `run`.
struct Head<R: SortRecord> {
    key: R::Key,
    run: usize,
    rec: R,
}

impl<R: SortRecord> PartialEq for Head<R> {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl<R: SortRecord> Eq for Head<R> {}

impl<R: SortRecord> PartialOrd for Head<R> {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl<R: SortRecord> Ord for Head<R> {
    /// Reversed, so that the max-heap pops the smallest (key, run).
    fn cmp(&self, other: &Self) -> Ordering {
        other
            .key
            .cmp(&self.key)
            .then_with(|| other.run.cmp(&self.run))
    }
}

/// A k-way merge of sorted sources.
struct Merger<R: SortRecord> {
    sources: Vec<Source<R>>,
    heap: BinaryHeap<Head<R>>,
}

impl<R: SortRecord> Merger<R> {
    fn new(mut sources: Vec<Source<R>>) -> Result<Self> {
        let mut heap = BinaryHeap::with_capacity(sources.len());
        for (run, src) in sources.iter_mut().enumerate() {
            if let Some(rec) = src.next()? {
                heap.push(Head {
                    key: rec.key(),
                    run,
                    rec,
                });
            }
        }
        Ok(Merger { sources, heap })
    }

    fn next(&mut self) -> Result<Option<R>> {
        let Some(mut top) = self.heap.peek_mut() else {
            return Ok(None);
        };
        let run = top.run;
        let next = match self.sources.get_mut(run) {
            Some(src) => src.next()?,
            None => return Err(Error::internal("merge sort runs", "run index out of range")),
        };
        Ok(Some(match next {
            Some(rec) => {
                top.key = rec.key();
                std::mem::replace(&mut top.rec, rec)
            }
            None => PeekMut::pop(top).rec,
        }))
    }
}

/// Merge `group` into a new run file at `path`.
fn merge_to_file<R: SortRecord>(group: Vec<Run>, path: PathBuf) -> Result<Run> {
    let mut sources = Vec::with_capacity(group.len());
    for run in group {
        sources.push(Source::<R>::File(RunReader::open(run)?));
    }
    let mut merger = Merger::new(sources)?;
    let mut w = RunWriter::create(path)?;
    while let Some(r) = merger.next()? {
        w.push(&r)?;
    }
    w.finish()
}

enum Inner<R: SortRecord> {
    Mem(std::vec::IntoIter<R>),
    Merge(Merger<R>),
    Done,
}

/// The records of an [`ExternalSorter`] in key order.
///
/// Yields `Err` once if a run cannot be read or decoded, then ends. Holds the run files'
/// temporary directory, deleted when the iterator is dropped.
pub struct SortedIter<R: SortRecord> {
    inner: Inner<R>,
    _dir: Option<tempfile::TempDir>,
}

impl<R: SortRecord> std::fmt::Debug for SortedIter<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let state = match &self.inner {
            Inner::Mem(it) => format!("in memory, {} left", it.len()),
            Inner::Merge(m) => format!("merging {} runs", m.sources.len()),
            Inner::Done => "done".to_owned(),
        };
        f.debug_struct("SortedIter").field("state", &state).finish()
    }
}

impl<R: SortRecord> Iterator for SortedIter<R> {
    type Item = Result<R>;

    fn next(&mut self) -> Option<Result<R>> {
        let r = match &mut self.inner {
            Inner::Mem(it) => return it.next().map(Ok),
            Inner::Merge(m) => m.next(),
            Inner::Done => return None,
        };
        match r {
            Ok(Some(r)) => Some(Ok(r)),
            Ok(None) => {
                self.inner = Inner::Done;
                None
            }
            Err(e) => {
                self.inner = Inner::Done;
                Some(Err(e))
            }
        }
    }
}

impl<R: SortRecord> std::iter::FusedIterator for SortedIter<R> {}

// ---------------------------------------------------------------------------------------
// Byte records (#14): records that are bytes already, sorted by a u128 key. One arena per
// buffer instead of one object (and its allocations) per record; spilling copies bytes,
// merging hands out slices of a reused buffer per run.
// ---------------------------------------------------------------------------------------

/// Where one record of a [`RecordBuf`] lives.
#[derive(Clone, Copy, Debug)]
struct Slot {
    key: u128,
    off: u32,
    len: u32,
}

/// What a record costs in a buffer besides its bytes.
const SLOT_BYTES: usize = std::mem::size_of::<Slot>();

/// Records in one arena, and where each is.
#[derive(Debug, Default)]
pub struct RecordBuf {
    arena: Vec<u8>,
    slots: Vec<Slot>,
}

impl RecordBuf {
    /// Return an empty buffer.
    pub fn new() -> Self {
        Self::default()
    }

    /// The bytes the buffer is counted as: its records' bytes plus their slots.
    pub fn mem(&self) -> usize {
        self.arena.len() + self.slots.len() * SLOT_BYTES
    }

    /// The number of records.
    pub fn len(&self) -> usize {
        self.slots.len()
    }

    /// Whether the buffer holds no record.
    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    /// Forget the records, keeping the allocations.
    pub fn clear(&mut self) {
        self.arena.clear();
        self.slots.clear();
    }

    /// Append a record whose bytes `write` appends to the arena. On error nothing is added.
    pub fn push_with(
        &mut self,
        key: u128,
        write: impl FnOnce(&mut Vec<u8>) -> Result<()>,
    ) -> Result<()> {
        let start = self.arena.len();
        if let Err(e) = write(&mut self.arena) {
            self.arena.truncate(start);
            return Err(e);
        }
        let (off, len) = match (
            u32::try_from(start),
            u32::try_from(self.arena.len() - start),
        ) {
            (Ok(off), Ok(len)) => (off, len),
            _ => {
                self.arena.truncate(start);
                return Err(Error::new(
                    crate::error::ErrorKind::Unsupported,
                    "sort records",
                    "a sort buffer holds at most 4 GiB",
                ));
            }
        };
        self.slots.push(Slot { key, off, len });
        Ok(())
    }

    /// Sort by key; equal keys keep their push order.
    pub fn sort(&mut self) {
        self.slots.sort_unstable_by_key(|s| (s.key, s.off));
    }

    /// Record `i` (in the current order): its key and bytes.
    pub fn get(&self, i: usize) -> (u128, &[u8]) {
        let s = self.slots[i];
        (
            s.key,
            &self.arena[s.off as usize..s.off as usize + s.len as usize],
        )
    }

    fn last_bytes(&self) -> &[u8] {
        match self.slots.last() {
            Some(s) => &self.arena[s.off as usize..],
            None => &[],
        }
    }

    fn pop(&mut self) {
        if let Some(s) = self.slots.pop() {
            self.arena.truncate(s.off as usize);
        }
    }
}

type RecordSpill = (Result<Run>, RecordBuf);

/// Sorts byte records by a `u128` key with a bounded memory budget, spilling sorted runs
/// to disk: [`ExternalSorter`]'s design (budget, one spill in flight on a background
/// thread, stable k-way merge with passes of at most the fan-in, the last buffer merged
/// from memory) for records that are bytes already.
///
/// Run file format: per record, a `u32` little-endian length, the key (16 bytes, LE), the
/// bytes.
pub struct RecordSorter {
    parent: PathBuf,
    budget: usize,
    fan_in: usize,
    buf: RecordBuf,
    spare: Option<RecordBuf>,
    dir: Option<tempfile::TempDir>,
    runs: Vec<Run>,
    next_run: u64,
    in_flight: Option<JoinHandle<RecordSpill>>,
    pushed: u64,
    failed: bool,
}

impl std::fmt::Debug for RecordSorter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RecordSorter")
            .field("parent", &self.parent)
            .field("budget", &self.budget)
            .field("buffered", &self.buf.mem())
            .field("runs", &self.runs.len())
            .field("pushed", &self.pushed)
            .finish()
    }
}

impl RecordSorter {
    /// Given the directory to hold the run files (a temporary directory is created inside
    /// it on the first spill) and the buffer budget in bytes (records' bytes plus 24 per
    /// record), return an empty sorter. A budget of 0 spills every record as a run of its
    /// own (only useful in tests).
    pub fn new(dir: &Path, buffer_bytes: usize) -> Self {
        RecordSorter {
            parent: dir.to_path_buf(),
            budget: buffer_bytes,
            fan_in: DEFAULT_FAN_IN,
            buf: RecordBuf::new(),
            spare: None,
            dir: None,
            runs: Vec::new(),
            next_run: 0,
            in_flight: None,
            pushed: 0,
            failed: false,
        }
    }

    /// Return the sorter with the number of runs merged at once set to `fan_in` (at least 2).
    pub fn with_fan_in(mut self, fan_in: usize) -> Self {
        self.fan_in = fan_in.max(2);
        self
    }

    /// Return the number of records pushed so far.
    pub fn len(&self) -> u64 {
        self.pushed
    }

    /// Return whether no record was pushed.
    pub fn is_empty(&self) -> bool {
        self.pushed == 0
    }

    /// Return the number of runs spilled (or being spilled) so far.
    pub fn spilled_runs(&self) -> u64 {
        self.next_run
    }

    /// Add a record with `key` whose bytes `write` appends to the given buffer. If it takes
    /// the buffer over the budget, the buffer (without it) is first handed to the
    /// background spill. A failing `write` adds nothing and leaves the sorter usable.
    ///
    /// Errors: `write`'s own; [`crate::error::ErrorKind::Io`] (with the path) from this or
    /// the previous spill, after which the sorter is failed.
    pub fn push_with(
        &mut self,
        key: u128,
        write: impl FnOnce(&mut Vec<u8>) -> Result<()>,
    ) -> Result<()> {
        if self.failed {
            return Err(failed_earlier());
        }
        self.buf.push_with(key, write)?;
        if self.buf.len() > 1 && self.buf.mem() > self.budget {
            // The new record moves to the next buffer.
            let rec = self.buf.last_bytes().to_vec();
            self.buf.pop();
            if let Err(e) = self.spill_buffer() {
                self.failed = true;
                return Err(e);
            }
            self.buf.push_with(key, |out| {
                out.extend_from_slice(&rec);
                Ok(())
            })?;
        }
        self.pushed += 1;
        Ok(())
    }

    fn wait_spill(&mut self) -> Result<()> {
        if let Some(handle) = self.in_flight.take() {
            let (run, spare) = handle
                .join()
                .map_err(|_| Error::internal("spill sort run", "the spill thread panicked"))?;
            self.runs.push(run?);
            self.spare = Some(spare);
        }
        Ok(())
    }

    fn run_path(&mut self) -> Result<PathBuf> {
        if self.dir.is_none() {
            self.dir = Some(create_sort_dir(&self.parent)?);
        }
        let dir = match &self.dir {
            Some(d) => d.path(),
            None => return Err(Error::internal("create sort directory", "no directory")),
        };
        let path = dir.join(format!("run-{:06}.bin", self.next_run));
        self.next_run += 1;
        Ok(path)
    }

    fn spill_buffer(&mut self) -> Result<()> {
        self.wait_spill()?;
        let path = self.run_path()?;
        let next = self.spare.take().unwrap_or_default();
        let buf = std::mem::replace(&mut self.buf, next);
        let handle = std::thread::Builder::new()
            .name("datacamp-spill".into())
            .spawn(move || spill_records(buf, path))
            .map_err(|e| Error::io("start spill thread", "datacamp-spill", e))?;
        self.in_flight = Some(handle);
        Ok(())
    }

    /// Finish pushing and return the records in key order (see [`ExternalSorter::finish`]).
    ///
    /// Errors: I/O and corruption errors of spills and merge passes.
    pub fn finish(mut self) -> Result<SortedRecords> {
        if self.failed {
            return Err(failed_earlier());
        }
        self.wait_spill()?;
        let mut buf = std::mem::take(&mut self.buf);
        buf.sort();
        let mem_slots = usize::from(!buf.is_empty());
        while self.runs.len() + mem_slots > self.fan_in {
            let runs = std::mem::take(&mut self.runs);
            let mut merged = Vec::with_capacity(runs.len() / self.fan_in + 1);
            let mut iter = runs.into_iter().peekable();
            while iter.peek().is_some() {
                let group: Vec<Run> = iter.by_ref().take(self.fan_in).collect();
                if group.len() == 1 {
                    merged.extend(group);
                    continue;
                }
                let path = self.run_path()?;
                let mut sources = Vec::with_capacity(group.len());
                for run in group {
                    sources.push(RecSource::File(RecReader::open(run)?));
                }
                let mut m = SortedRecords::merge(sources, None)?;
                let mut w = RecWriter::create(path)?;
                while m.advance()? {
                    let (key, bytes) = m.current();
                    w.push(key, bytes)?;
                }
                merged.push(w.finish()?);
            }
            self.runs = merged;
        }
        let mut sources = Vec::with_capacity(self.runs.len() + 1);
        for run in std::mem::take(&mut self.runs) {
            sources.push(RecSource::File(RecReader::open(run)?));
        }
        if !buf.is_empty() {
            sources.push(RecSource::Mem { buf, pos: None });
        }
        SortedRecords::merge(sources, self.dir.take())
    }
}

impl Drop for RecordSorter {
    fn drop(&mut self) {
        if let Some(handle) = self.in_flight.take() {
            let _ = handle.join();
        }
    }
}

/// Sort `buf`, write it to `path`, and give back the emptied buffer for reuse.
fn spill_records(mut buf: RecordBuf, path: PathBuf) -> RecordSpill {
    buf.sort();
    let result = (|| {
        let mut w = RecWriter::create(path)?;
        for i in 0..buf.len() {
            let (key, bytes) = buf.get(i);
            w.push(key, bytes)?;
        }
        w.finish()
    })();
    buf.clear();
    (result, buf)
}

/// Writes byte records into a run file through a block buffer.
struct RecWriter {
    file: File,
    path: PathBuf,
    block: Vec<u8>,
    count: u64,
    max_len: u32,
}

impl RecWriter {
    fn create(path: PathBuf) -> Result<Self> {
        let file = create_run_file(&path)?;
        Ok(RecWriter {
            file,
            path,
            block: Vec::with_capacity(WRITE_BLOCK + 4096),
            count: 0,
            max_len: 0,
        })
    }

    fn push(&mut self, key: u128, bytes: &[u8]) -> Result<()> {
        let len = u32::try_from(bytes.len()).map_err(|_| {
            Error::new(
                crate::error::ErrorKind::Unsupported,
                "write sort run",
                format!("record of {} bytes exceeds u32::MAX", bytes.len()),
            )
        })?;
        self.block.extend_from_slice(&len.to_le_bytes());
        self.block.extend_from_slice(&key.to_le_bytes());
        self.block.extend_from_slice(bytes);
        self.max_len = self.max_len.max(len);
        self.count += 1;
        if self.block.len() >= WRITE_BLOCK {
            self.flush()?;
        }
        Ok(())
    }

    fn flush(&mut self) -> Result<()> {
        self.file
            .write_all(&self.block)
            .map_err(|e| Error::io("write sort run", self.path.display().to_string(), e))?;
        self.block.clear();
        Ok(())
    }

    fn finish(mut self) -> Result<Run> {
        self.flush()?;
        Ok(Run {
            path: self.path,
            count: self.count,
            max_len: self.max_len,
        })
    }
}

/// Reads the byte records of one run file back, one at a time into a reused buffer.
struct RecReader {
    reader: BufReader<File>,
    path: PathBuf,
    remaining: u64,
    max_len: u32,
    key: u128,
    cur: Vec<u8>,
}

impl RecReader {
    fn open(run: Run) -> Result<Self> {
        let file = File::open(&run.path)
            .map_err(|e| Error::io("open sort run", run.path.display().to_string(), e))?;
        Ok(RecReader {
            reader: BufReader::with_capacity(READ_BUFFER, file),
            path: run.path,
            remaining: run.count,
            max_len: run.max_len,
            key: 0,
            cur: Vec::new(),
        })
    }

    fn corrupt(&self, message: impl Into<String>) -> Error {
        Error::corrupt("read sort run", message).with_key(self.path.display().to_string())
    }

    fn read_into(&mut self, n: usize, into_cur: bool) -> Result<[u8; 20]> {
        let mut head = [0u8; 20];
        let r = if into_cur {
            self.cur.clear();
            self.cur.resize(n, 0);
            self.reader.read_exact(&mut self.cur)
        } else {
            self.reader.read_exact(&mut head[..n])
        };
        r.map_err(|e| {
            if e.kind() == std::io::ErrorKind::UnexpectedEof {
                self.corrupt("run file ends inside a record")
            } else {
                Error::io("read sort run", self.path.display().to_string(), e)
            }
        })?;
        Ok(head)
    }

    /// Read the next record; `false` at the end of the run.
    fn advance(&mut self) -> Result<bool> {
        if self.remaining == 0 {
            let mut probe = [0u8; 1];
            let n = self
                .reader
                .read(&mut probe)
                .map_err(|e| Error::io("read sort run", self.path.display().to_string(), e))?;
            if n != 0 {
                return Err(self.corrupt("bytes after the last record"));
            }
            return Ok(false);
        }
        let head = self.read_into(20, false)?;
        let (len, key) = head.split_at(4);
        let len = u32::from_le_bytes(len.try_into().unwrap_or_default());
        if len > self.max_len {
            return Err(self.corrupt(format!(
                "record length {len} exceeds the longest written ({})",
                self.max_len
            )));
        }
        self.key = u128::from_le_bytes(key.try_into().unwrap_or_default());
        self.read_into(len as usize, true)?;
        self.remaining -= 1;
        Ok(true)
    }
}

impl Drop for RecReader {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// A sorted source of byte records for the merge.
enum RecSource {
    File(RecReader),
    Mem { buf: RecordBuf, pos: Option<usize> },
}

impl RecSource {
    fn advance(&mut self) -> Result<bool> {
        match self {
            RecSource::File(r) => r.advance(),
            RecSource::Mem { buf, pos } => {
                let next = pos.map_or(0, |p| p + 1);
                *pos = Some(next);
                Ok(next < buf.len())
            }
        }
    }

    fn current(&self) -> (u128, &[u8]) {
        match self {
            RecSource::File(r) => (r.key, &r.cur),
            RecSource::Mem { buf, pos } => buf.get(pos.unwrap_or(0)),
        }
    }
}

/// The records of a [`RecordSorter`] in key order, read one at a time: [`SortedRecords::advance`],
/// then [`SortedRecords::current`]. Holds the run files' temporary directory, deleted when
/// it is dropped.
pub struct SortedRecords {
    sources: Vec<RecSource>,
    /// The sources' current keys, smallest (then lowest source) first.
    heap: BinaryHeap<std::cmp::Reverse<(u128, usize)>>,
    /// The source of the current record; it advances first on the next call.
    current: Option<usize>,
    started: bool,
    _dir: Option<tempfile::TempDir>,
}

impl std::fmt::Debug for SortedRecords {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SortedRecords")
            .field("sources", &self.sources.len())
            .finish()
    }
}

impl SortedRecords {
    fn merge(sources: Vec<RecSource>, dir: Option<tempfile::TempDir>) -> Result<Self> {
        Ok(SortedRecords {
            heap: BinaryHeap::with_capacity(sources.len()),
            sources,
            current: None,
            started: false,
            _dir: dir,
        })
    }

    /// Move to the next record; `false` when there is none.
    ///
    /// Errors: I/O or corruption of a run file.
    pub fn advance(&mut self) -> Result<bool> {
        if !self.started {
            self.started = true;
            for i in 0..self.sources.len() {
                if self.sources[i].advance()? {
                    let key = self.sources[i].current().0;
                    self.heap.push(std::cmp::Reverse((key, i)));
                }
            }
        } else if let Some(i) = self.current.take() {
            if self.sources[i].advance()? {
                let key = self.sources[i].current().0;
                self.heap.push(std::cmp::Reverse((key, i)));
            }
        }
        match self.heap.pop() {
            Some(std::cmp::Reverse((_, i))) => {
                self.current = Some(i);
                Ok(true)
            }
            None => Ok(false),
        }
    }

    /// The current record's key and bytes (after [`SortedRecords::advance`] returned
    /// `true`; empty before).
    pub fn current(&self) -> (u128, &[u8]) {
        match self.current {
            Some(i) => self.sources[i].current(),
            None => (0, &[]),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// A test record: key, original index (to check stability), counted as 8 bytes.
    #[derive(Debug, Clone, PartialEq)]
    struct Rec {
        key: u32,
        idx: u32,
    }

    impl SortRecord for Rec {
        type Key = u32;
        fn key(&self) -> u32 {
            self.key
        }
        fn mem_size(&self) -> usize {
            8
        }
        fn encode(&self, out: &mut Vec<u8>) -> Result<()> {
            out.extend_from_slice(&self.key.to_le_bytes());
            out.extend_from_slice(&self.idx.to_le_bytes());
            Ok(())
        }
        fn decode(input: &mut &[u8]) -> Result<Self> {
            let (k, rest) = input
                .split_first_chunk::<4>()
                .ok_or_else(|| Error::corrupt("decode rec", "short"))?;
            let (i, rest) = rest
                .split_first_chunk::<4>()
                .ok_or_else(|| Error::corrupt("decode rec", "short"))?;
            *input = rest;
            Ok(Rec {
                key: u32::from_le_bytes(*k),
                idx: u32::from_le_bytes(*i),
            })
        }
    }

    fn recs(keys: &[u32]) -> Vec<Rec> {
        keys.iter()
            .enumerate()
            .map(|(i, &key)| Rec { key, idx: i as u32 })
            .collect()
    }

    fn sort_ext(input: Vec<Rec>, budget: usize, fan_in: usize) -> (Vec<Rec>, u64) {
        let tmp = tempfile::tempdir().unwrap();
        let mut s = ExternalSorter::new(tmp.path(), budget).with_fan_in(fan_in);
        for r in input {
            s.push(r).unwrap();
        }
        let runs = s.spilled_runs();
        let out = s.finish().unwrap().collect::<Result<Vec<_>>>().unwrap();
        (out, runs)
    }

    fn std_sorted(mut v: Vec<Rec>) -> Vec<Rec> {
        v.sort_by_key(|r| r.key);
        v
    }

    fn dir_entries(p: &Path) -> usize {
        std::fs::read_dir(p).unwrap().count()
    }

    #[test]
    fn empty() {
        let (out, runs) = sort_ext(Vec::new(), 100, 64);
        assert!(out.is_empty());
        assert_eq!(runs, 0);
    }

    #[test]
    fn one_element() {
        let (out, runs) = sort_ext(recs(&[7]), 100, 64);
        assert_eq!(out, recs(&[7]));
        assert_eq!(runs, 0);
        let (out, runs) = sort_ext(recs(&[7]), 0, 64);
        assert_eq!(out, recs(&[7]));
        assert_eq!(runs, 0, "a single record stays in the buffer");
    }

    #[test]
    fn exact_budget_stays_in_memory() {
        let keys: Vec<u32> = (0..10).rev().collect();
        let (out, runs) = sort_ext(recs(&keys), 80, 64);
        assert_eq!(runs, 0);
        assert_eq!(out, std_sorted(recs(&keys)));
    }

    #[test]
    fn one_over_budget_spills_once() {
        let keys: Vec<u32> = (0..11).rev().collect();
        let (out, runs) = sort_ext(recs(&keys), 80, 64);
        assert_eq!(runs, 1);
        assert_eq!(out, std_sorted(recs(&keys)));
    }

    #[test]
    fn budget_boundaries_count_runs() {
        // 8-byte records, budget 16: runs of 2; 7 records → 3 spilled runs + 1 in memory.
        let keys = [5, 3, 9, 1, 1, 0, 2];
        let (out, runs) = sort_ext(recs(&keys), 16, 64);
        assert_eq!(runs, 3);
        assert_eq!(out, std_sorted(recs(&keys)));
        // Budget 17 (not a multiple): still 2 records per buffer.
        let (_, runs) = sort_ext(recs(&keys), 17, 64);
        assert_eq!(runs, 3);
        // Budget 15: one record per buffer.
        let (_, runs) = sort_ext(recs(&keys), 15, 64);
        assert_eq!(runs, 6);
    }

    #[test]
    fn zero_budget_many_runs_multi_pass_stable() {
        let keys: Vec<u32> = (0..1000u32).map(|i| (i * 7919) % 13).collect();
        let (out, runs) = sort_ext(recs(&keys), 0, 3);
        assert_eq!(runs, 999);
        assert_eq!(out, std_sorted(recs(&keys)));
    }

    #[test]
    fn spilled_runs_are_readable_by_the_owner_only() {
        use std::os::unix::fs::PermissionsExt;
        let tmp = tempfile::tempdir().unwrap();
        let mut s = ExternalSorter::new(tmp.path(), 16);
        for r in recs(&[4, 3, 2, 1, 0]) {
            s.push(r).unwrap();
        }
        assert_eq!(s.spilled_runs(), 2);
        let dir = std::fs::read_dir(tmp.path())
            .unwrap()
            .next()
            .unwrap()
            .unwrap()
            .path();
        let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&dir), 0o700, "{}", dir.display());
        let runs: Vec<_> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        assert!(!runs.is_empty());
        for run in runs {
            assert_eq!(mode(&run), 0o600, "{}", run.display());
        }
    }

    #[test]
    fn files_removed_after_drop() {
        let tmp = tempfile::tempdir().unwrap();
        let mut s = ExternalSorter::new(tmp.path(), 16);
        for r in recs(&[4, 3, 2, 1, 0]) {
            s.push(r).unwrap();
        }
        assert_eq!(s.spilled_runs(), 2);
        assert_eq!(dir_entries(tmp.path()), 1);
        let mut it = s.finish().unwrap();
        assert_eq!(it.next().unwrap().unwrap().key, 0);
        assert_eq!(dir_entries(tmp.path()), 1);
        drop(it);
        assert_eq!(dir_entries(tmp.path()), 0);

        // Dropping an unfinished sorter (possibly with a spill in flight) cleans up too.
        let mut s = ExternalSorter::new(tmp.path(), 8);
        for r in recs(&[4, 3, 2, 1, 0]) {
            s.push(r).unwrap();
        }
        drop(s);
        assert_eq!(dir_entries(tmp.path()), 0);
    }

    #[test]
    fn no_directory_without_spill() {
        let tmp = tempfile::tempdir().unwrap();
        let mut s = ExternalSorter::new(tmp.path(), 1000);
        for r in recs(&[3, 1, 2]) {
            s.push(r).unwrap();
        }
        assert_eq!(dir_entries(tmp.path()), 0);
        let out: Vec<u32> = s.finish().unwrap().map(|r| r.unwrap().key).collect();
        assert_eq!(out, vec![1, 2, 3]);
    }

    #[test]
    fn missing_directory_is_io_error() {
        let tmp = tempfile::tempdir().unwrap();
        let missing = tmp.path().join("nope");
        let mut s = ExternalSorter::new(&missing, 8);
        s.push(Rec { key: 1, idx: 0 }).unwrap();
        let e = s.push(Rec { key: 2, idx: 1 }).unwrap_err();
        assert_eq!(e.kind, crate::error::ErrorKind::NotFound);
        assert_eq!(
            e.key.as_deref(),
            Some(missing.display().to_string().as_str())
        );
        let e = s.push(Rec { key: 3, idx: 2 }).unwrap_err();
        assert_eq!(e.kind, crate::error::ErrorKind::Internal);
    }

    #[test]
    fn truncated_run_is_corrupt() {
        let tmp = tempfile::tempdir().unwrap();
        let mut s = ExternalSorter::new(tmp.path(), 16);
        for r in recs(&[9, 8, 7, 6, 5, 4, 3]) {
            s.push(r).unwrap();
        }
        s.wait_spill().unwrap();
        let first = s.runs[0].path.clone();
        let len = std::fs::metadata(&first).unwrap().len();
        std::fs::OpenOptions::new()
            .write(true)
            .open(&first)
            .unwrap()
            .set_len(len - 3)
            .unwrap();
        let results: Vec<Result<Rec>> = s.finish().unwrap().collect();
        let errs: Vec<&Error> = results.iter().filter_map(|r| r.as_ref().err()).collect();
        assert_eq!(errs.len(), 1);
        assert_eq!(errs[0].kind, crate::error::ErrorKind::Corrupt);
        assert!(
            results.last().unwrap().is_err(),
            "the error ends the iteration"
        );
    }

    #[test]
    fn trailing_bytes_in_run_are_corrupt() {
        let tmp = tempfile::tempdir().unwrap();
        let mut s = ExternalSorter::new(tmp.path(), 16);
        for r in recs(&[9, 8, 7]) {
            s.push(r).unwrap();
        }
        s.wait_spill().unwrap();
        let first = s.runs[0].path.clone();
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(&first)
            .unwrap();
        f.write_all(&[1]).unwrap();
        drop(f);
        let results: Vec<Result<Rec>> = s.finish().unwrap().collect();
        let err = results.iter().find_map(|r| r.as_ref().err()).unwrap();
        assert_eq!(err.kind, crate::error::ErrorKind::Corrupt);
        assert_eq!(err.message, "bytes after the last record");
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]
        #[test]
        fn matches_std_stable_sort(
            keys in proptest::collection::vec(0u32..50, 0..400),
            budget_recs in 0usize..12,
            fan_in in 2usize..6,
        ) {
            let input = recs(&keys);
            let (out, _) = sort_ext(input.clone(), budget_recs * 8, fan_in);
            prop_assert_eq!(out, std_sorted(input));
        }
    }

    #[test]
    fn seeded_large_matches_std() {
        let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
        let keys: Vec<u32> = (0..200_000)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                (x % 100_000) as u32
            })
            .collect();
        let input = recs(&keys);
        let (out, runs) = sort_ext(input.clone(), 8 * 1000, DEFAULT_FAN_IN);
        assert_eq!(runs, 199);
        assert_eq!(out, std_sorted(input));
    }
}

#[cfg(test)]
mod record_tests {
    use super::*;
    use proptest::prelude::*;

    /// Sort `(key, payload)` records with `budget` and `fan_in`; return them in output
    /// order and the number of runs spilled.
    fn sort_records(
        input: &[(u128, Vec<u8>)],
        budget: usize,
        fan_in: usize,
    ) -> (Vec<(u128, Vec<u8>)>, u64) {
        let tmp = tempfile::tempdir().unwrap();
        let mut s = RecordSorter::new(tmp.path(), budget).with_fan_in(fan_in);
        for (k, b) in input {
            s.push_with(*k, |out| {
                out.extend_from_slice(b);
                Ok(())
            })
            .unwrap();
        }
        assert_eq!(s.len(), input.len() as u64);
        let runs = s.spilled_runs();
        let mut it = s.finish().unwrap();
        let mut out = Vec::new();
        while it.advance().unwrap() {
            let (k, b) = it.current();
            out.push((k, b.to_vec()));
        }
        assert!(!it.advance().unwrap(), "stays at the end");
        drop(it);
        assert_eq!(
            std::fs::read_dir(tmp.path()).unwrap().count(),
            0,
            "run files removed"
        );
        (out, runs)
    }

    fn stable_sorted(input: &[(u128, Vec<u8>)]) -> Vec<(u128, Vec<u8>)> {
        let mut want = input.to_vec();
        want.sort_by_key(|(k, _)| *k);
        want
    }

    #[test]
    fn empty_and_single() {
        assert_eq!(sort_records(&[], 0, 2), (vec![], 0));
        let one = vec![(7u128, b"x".to_vec())];
        assert_eq!(sort_records(&one, 0, 2).0, one);
    }

    #[test]
    fn budgets_runs_passes_and_stability() {
        // Duplicate keys with distinct payloads in push order: the output keeps that order.
        let input: Vec<(u128, Vec<u8>)> = (0..500u32)
            .map(|i| {
                (
                    u128::from((i * 7919) % 37) << 70,
                    i.to_le_bytes().repeat(1 + (i % 5) as usize),
                )
            })
            .collect();
        let want = stable_sorted(&input);
        for (budget, fan_in) in [(0, 2), (0, 3), (1, 64), (200, 2), (2000, 4), (1 << 30, 64)] {
            let (got, runs) = sort_records(&input, budget, fan_in);
            assert_eq!(got, want, "budget {budget} fan-in {fan_in}");
            if budget == 1 << 30 {
                assert_eq!(runs, 0, "fits in memory");
            } else {
                assert!(runs > 1, "budget {budget}: {runs} runs");
            }
        }
    }

    #[test]
    fn a_failing_write_adds_nothing() {
        let tmp = tempfile::tempdir().unwrap();
        let mut s = RecordSorter::new(tmp.path(), 1 << 20);
        s.push_with(2, |out| {
            out.extend_from_slice(b"ok");
            Ok(())
        })
        .unwrap();
        let err = s
            .push_with(1, |out| {
                out.extend_from_slice(b"half");
                Err(Error::invalid("test", "no"))
            })
            .unwrap_err();
        assert_eq!(err.kind, crate::error::ErrorKind::InvalidArgument);
        let mut it = s.finish().unwrap();
        assert!(it.advance().unwrap());
        assert_eq!(it.current(), (2, &b"ok"[..]));
        assert!(!it.advance().unwrap());
    }

    #[test]
    fn damaged_run_files_are_corrupt() {
        for damage in ["truncate", "append"] {
            let tmp = tempfile::tempdir().unwrap();
            let mut s = RecordSorter::new(tmp.path(), 0);
            for k in 0..3u128 {
                s.push_with(k, |out| {
                    out.extend_from_slice(b"record");
                    Ok(())
                })
                .unwrap();
            }
            let mut s = s;
            s.wait_spill().unwrap();
            let run = s.runs[0].path.clone();
            let mut bytes = std::fs::read(&run).unwrap();
            if damage == "truncate" {
                bytes.truncate(bytes.len() - 2);
            } else {
                bytes.push(0);
            }
            std::fs::write(&run, bytes).unwrap();
            let mut it = s.finish().unwrap();
            let err = loop {
                match it.advance() {
                    Ok(true) => continue,
                    Ok(false) => panic!("{damage}: the damage went unnoticed"),
                    Err(e) => break e,
                }
            };
            assert_eq!(
                err.kind,
                crate::error::ErrorKind::Corrupt,
                "{damage}: {err}"
            );
            assert!(err.key.is_some(), "{damage}: names the run file");
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]
        #[test]
        fn matches_a_stable_sort(
            keys in proptest::collection::vec(0u128..50, 0..300),
            budget in 0usize..3000,
            fan_in in 2usize..6,
        ) {
            let input: Vec<(u128, Vec<u8>)> = keys
                .iter()
                .enumerate()
                .map(|(i, k)| (*k, (i as u32).to_le_bytes().to_vec()))
                .collect();
            let (got, _) = sort_records(&input, budget, fan_in);
            prop_assert_eq!(got, stable_sorted(&input));
        }
    }
}
