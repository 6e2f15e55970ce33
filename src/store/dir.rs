//! A local directory as a [`Store`]: keys are relative paths below the root.
//!
//! Writes go to a temporary file in the destination folder, are fsynced, renamed into
//! place, and the folder is fsynced: a crash leaves the old state or the whole new file.
//!
//! A backup folder is input from outside the process (other users and programs can write
//! it), so below the root nothing is trusted:
//! - **No link is ever followed.** Every path is resolved one folder at a time from the
//!   root (`openat` with `O_NOFOLLOW`), so a symbolic link anywhere inside — a chunk, the
//!   `chunks/` folder, a backup or database folder — is never read through, written
//!   through, listed through or deleted through. The root itself (the `:path` the caller
//!   named) may be a link.
//! - **Only regular files are objects.** A file is opened with `O_NONBLOCK | O_NOFOLLOW`
//!   and `fstat` must say it is a regular file, so a FIFO or a device is refused at once
//!   instead of blocking or reading forever; listings show regular files only.
//! - **Reads are bounded** ([`Store::get_max`]): a sparse terabyte file is refused by its
//!   size, and at most `max + 1` bytes are ever read.
//! - **Walks are iterative and bounded**: listings descend at most [`MAX_LIST_DEPTH`]
//!   folders below the root, removals at most [`MAX_REMOVE_DEPTH`]; no recursion on the
//!   caller's stack, and folder cycles cannot exist without links, which are not followed.

use std::fs;
use std::io::{Read, Write};
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rustix::fs::{AtFlags, FileType, Mode, OFlags};
use rustix::io::Errno;

use super::{too_large, Leftover, LeftoverKind, ObjectMeta, Store};
use crate::error::{Error, ErrorKind, Result};

/// Marker inside temporary file names; listings skip such files.
const TMP_MARK: &str = ".tmp-";

/// The deepest folder a listing descends into, counted in key segments below the root
/// (a chunk key `db/backup/chunks/datoms-0.fressian.gz` has 4). Deeper folders are not
/// part of any backup and are skipped.
pub const MAX_LIST_DEPTH: usize = 16;

/// The deepest folder nesting that removing a backup's folder clears; deeper trees are
/// refused (remove them by hand).
pub const MAX_REMOVE_DEPTH: usize = 64;

/// A directory store rooted at a path.
#[derive(Debug)]
pub struct DirStore {
    root: PathBuf,
}

fn errno_io(e: Errno) -> std::io::Error {
    e.into()
}

impl DirStore {
    /// Given a directory path, return a store rooted there. Nothing is created until the
    /// first write (listing or verifying a missing directory leaves no trace).
    ///
    /// Errors (`Io`): "… is not a directory" when the path is (or runs through) a file.
    pub fn open(root: impl AsRef<Path>) -> Result<Self> {
        let root = root.as_ref().to_path_buf();
        let op = "open backup directory";
        let not_a_dir = || {
            Error::new(
                ErrorKind::Io,
                op,
                format!("{} is not a directory", root.display()),
            )
            .with_hint(":path must name a directory (it is created when missing)")
        };
        match fs::metadata(&root) {
            Ok(m) if m.is_dir() => {}
            Ok(_) => return Err(not_a_dir()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotADirectory => return Err(not_a_dir()),
            Err(e) => return Err(Error::io(op, root.display().to_string(), e)),
        }
        Ok(DirStore { root })
    }

    /// The store's root directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    fn path_of(&self, key: &str) -> Result<PathBuf> {
        crate::repo::layout::check_key(key)?;
        Ok(self.root.join(key))
    }

    fn display(&self, segments: &[&str]) -> String {
        let mut p = self.root.clone();
        p.extend(segments);
        p.display().to_string()
    }

    /// Open the root folder (following a link: the caller named it); `None` if it does
    /// not exist and `create` is false.
    fn root_fd(&self, create: bool) -> Result<Option<OwnedFd>> {
        let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC;
        let err = |e: Errno| {
            Error::io(
                "open backup directory",
                self.root.display().to_string(),
                errno_io(e),
            )
        };
        match rustix::fs::open(&self.root, flags, Mode::empty()) {
            Ok(fd) => Ok(Some(fd)),
            Err(Errno::NOENT) if create => {
                fs::create_dir_all(&self.root).map_err(|e| {
                    Error::io(
                        "create backup directory",
                        self.root.display().to_string(),
                        e,
                    )
                })?;
                rustix::fs::open(&self.root, flags, Mode::empty())
                    .map(Some)
                    .map_err(err)
            }
            Err(Errno::NOENT) => Ok(None),
            Err(e) => Err(err(e)),
        }
    }

    /// Open the folder `segments` below the root, one segment at a time, never following
    /// a link; create missing folders when `create`. `None` when a folder is missing and
    /// `create` is false. A link or a file where a folder should be is `Corrupt`.
    fn open_dir(&self, segments: &[&str], create: bool) -> Result<Option<OwnedFd>> {
        let Some(mut dir) = self.root_fd(create)? else {
            return Ok(None);
        };
        for (i, seg) in segments.iter().enumerate() {
            let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
            let mut opened = rustix::fs::openat(&dir, *seg, flags, Mode::empty());
            if create && matches!(opened, Err(Errno::NOENT)) {
                match rustix::fs::mkdirat(&dir, *seg, Mode::from_raw_mode(0o777)) {
                    Ok(()) | Err(Errno::EXIST) => {}
                    Err(e) => {
                        return Err(Error::io(
                            "create folder",
                            self.display(&segments[..=i]),
                            errno_io(e),
                        ))
                    }
                }
                opened = rustix::fs::openat(&dir, *seg, flags, Mode::empty());
            }
            dir = match opened {
                Ok(fd) => fd,
                Err(Errno::NOENT) => return Ok(None),
                Err(Errno::LOOP | Errno::NOTDIR) => {
                    return Err(not_followed(
                        &dir,
                        seg,
                        self.display(&segments[..=i]),
                        "a folder",
                    ))
                }
                Err(e) => {
                    return Err(Error::io(
                        "open folder",
                        self.display(&segments[..=i]),
                        errno_io(e),
                    ))
                }
            };
        }
        Ok(Some(dir))
    }

    /// Split a checked key into its folder segments and its file name.
    fn split<'k>(&self, key: &'k str) -> Result<(Vec<&'k str>, &'k str)> {
        crate::repo::layout::check_key(key)?;
        let mut segments: Vec<&str> = key.split('/').collect();
        let name = segments.pop().unwrap_or(key);
        Ok((segments, name))
    }

    /// Open the regular file under `key` for reading (never through a link, never a FIFO
    /// or device); `None` when it is missing.
    fn open_regular(&self, key: &str) -> Result<Option<(fs::File, u64)>> {
        let (segments, name) = self.split(key)?;
        let Some(dir) = self.open_dir(&segments, false)? else {
            return Ok(None);
        };
        let flags =
            OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::NOCTTY | OFlags::CLOEXEC;
        let location = || self.display(&[key]);
        let fd = match rustix::fs::openat(&dir, name, flags, Mode::empty()) {
            Ok(fd) => fd,
            Err(Errno::NOENT) => return Ok(None),
            Err(Errno::LOOP) => return Err(not_followed(&dir, name, location(), "a file")),
            Err(e) => return Err(Error::io("read file", location(), errno_io(e))),
        };
        let st =
            rustix::fs::fstat(&fd).map_err(|e| Error::io("read file", location(), errno_io(e)))?;
        let kind = FileType::from_raw_mode(st.st_mode);
        if kind != FileType::RegularFile {
            return Err(not_regular(kind, location()));
        }
        Ok(Some((fs::File::from(fd), st.st_size.max(0) as u64)))
    }

    /// The folder `segments` (below the root) as the list of entries a walk needs: every
    /// sub-folder (not a link) and every regular file with its size and modification time.
    fn read_folder(&self, dir: &OwnedFd, at: &str) -> Result<Vec<Entry>> {
        let err = |e: Errno| Error::io("list directory", at.to_owned(), errno_io(e));
        let mut entries = Vec::new();
        for entry in rustix::fs::Dir::read_from(dir).map_err(err)? {
            let entry = entry.map_err(err)?;
            let raw = entry.file_name();
            if raw.to_bytes() == b"." || raw.to_bytes() == b".." {
                continue;
            }
            let Ok(name) = raw.to_str() else {
                continue; // not UTF-8: no key of ours
            };
            let st = match rustix::fs::statat(dir, raw, AtFlags::SYMLINK_NOFOLLOW) {
                Ok(st) => st,
                Err(Errno::NOENT) => continue, // removed meanwhile
                Err(e) => return Err(err(e)),
            };
            let kind = match FileType::from_raw_mode(st.st_mode) {
                FileType::Directory => EntryKind::Folder,
                FileType::RegularFile => EntryKind::File {
                    size: st.st_size.max(0) as u64,
                    modified: UNIX_EPOCH
                        .checked_add(Duration::new(
                            st.st_mtime.max(0) as u64,
                            (st.st_mtime_nsec as u32).min(999_999_999),
                        ))
                        .unwrap_or(UNIX_EPOCH),
                },
                _ => EntryKind::Other,
            };
            entries.push(Entry {
                name: name.to_owned(),
                kind,
            });
        }
        Ok(entries)
    }

    /// Visit every folder below `start` (itself included, at depth `start.len()`) up to
    /// [`MAX_LIST_DEPTH`], never through a link: `visit(segments, entries)`.
    fn walk(
        &self,
        start: Vec<String>,
        mut visit: impl FnMut(&[String], &OwnedFd, Vec<Entry>) -> Result<()>,
    ) -> Result<()> {
        let mut stack = vec![start];
        while let Some(segments) = stack.pop() {
            let refs: Vec<&str> = segments.iter().map(String::as_str).collect();
            let Some(dir) = self.open_dir(&refs, false)? else {
                continue;
            };
            let entries = self.read_folder(&dir, &self.display(&refs))?;
            if segments.len() < MAX_LIST_DEPTH {
                for e in &entries {
                    if matches!(e.kind, EntryKind::Folder) {
                        let mut child = segments.clone();
                        child.push(e.name.clone());
                        stack.push(child);
                    }
                }
            }
            visit(&segments, &dir, entries)?;
        }
        Ok(())
    }

    /// Remove the folder `segments` and everything in it, never following a link (a link
    /// inside is removed itself, its target untouched). Iterative, at most
    /// [`MAX_REMOVE_DEPTH`] folders deep.
    fn remove_tree(&self, segments: &[&str]) -> Result<()> {
        let Some((name, parents)) = segments.split_last() else {
            return Ok(());
        };
        let Some(parent) = self.open_dir(parents, false)? else {
            return Ok(());
        };
        let at = || self.display(segments);
        let err = |e: Errno| Error::io("delete folder", at(), errno_io(e));
        match rustix::fs::statat(&parent, *name, AtFlags::SYMLINK_NOFOLLOW) {
            Err(Errno::NOENT) => return Ok(()),
            Err(e) => return Err(err(e)),
            Ok(st) if FileType::from_raw_mode(st.st_mode) != FileType::Directory => {
                return unlink(&parent, name, AtFlags::empty()).map_err(err);
            }
            Ok(_) => {}
        }
        let open = |parent: &OwnedFd, name: &str| {
            rustix::fs::openat(
                parent,
                name,
                OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                Mode::empty(),
            )
        };
        // Each frame: a folder's descriptor and its name in the folder below it.
        let mut stack: Vec<(OwnedFd, String)> =
            vec![(open(&parent, name).map_err(err)?, (*name).to_owned())];
        while let Some((dir, _)) = stack.last() {
            let mut sub = None;
            for e in self.read_folder(dir, &at())? {
                match e.kind {
                    EntryKind::Folder => sub = sub.or(Some(e.name)),
                    _ => unlink(dir, &e.name, AtFlags::empty()).map_err(err)?,
                }
            }
            if let Some(child) = sub {
                if stack.len() >= MAX_REMOVE_DEPTH {
                    return Err(Error::new(
                        ErrorKind::Corrupt,
                        "delete folder",
                        format!("folders nest deeper than {MAX_REMOVE_DEPTH} levels"),
                    )
                    .with_key(at())
                    .with_hint("no backup nests folders like this; remove it by hand"));
                }
                let fd = open(dir, &child).map_err(err)?;
                stack.push((fd, child));
            } else if let Some((dir, name)) = stack.pop() {
                drop(dir);
                let holder = stack.last().map_or(&parent, |(d, _)| d);
                unlink(holder, &name, AtFlags::REMOVEDIR).map_err(err)?;
            }
        }
        Ok(())
    }
}

fn unlink(dir: &OwnedFd, name: &str, flags: AtFlags) -> rustix::io::Result<()> {
    match rustix::fs::unlinkat(dir, name, flags) {
        Err(Errno::NOENT) => Ok(()),
        r => r,
    }
}

/// One entry of a folder, as a walk sees it.
struct Entry {
    name: String,
    kind: EntryKind,
}

enum EntryKind {
    Folder,
    File {
        size: u64,
        modified: SystemTime,
    },
    /// A link, FIFO, device or socket: never an object, never followed.
    Other,
}

fn kind_name(kind: FileType) -> &'static str {
    match kind {
        FileType::Symlink => "a symbolic link",
        FileType::Fifo => "a FIFO",
        FileType::CharacterDevice => "a character device",
        FileType::BlockDevice => "a block device",
        FileType::Socket => "a socket",
        FileType::Directory => "a folder",
        FileType::RegularFile => "a regular file",
        _ => "not a regular file",
    }
}

fn not_regular(kind: FileType, location: String) -> Error {
    Error::corrupt(
        "read file",
        format!("{} where a regular file should be", kind_name(kind)),
    )
    .with_key(location)
    .with_hint("datacamp reads only regular files inside a backup and never follows links")
}

/// The error for a name that is a link (or a file) where `want` (a folder or a file)
/// should be: it is not followed.
fn not_followed(dir: &OwnedFd, name: &str, location: String, want: &str) -> Error {
    let what = match rustix::fs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW) {
        Ok(st) => kind_name(FileType::from_raw_mode(st.st_mode)),
        Err(_) => "something else",
    };
    Error::corrupt(
        "resolve path",
        format!("{what} where {want} should be; it is not followed"),
    )
    .with_key(location)
    .with_hint(
        "datacamp never follows links inside a backup; replace the link by the real folder or file",
    )
}

fn sync_dir(dir: &OwnedFd) -> std::io::Result<()> {
    rustix::fs::fsync(dir).map_err(errno_io)
}

/// Create `name` in `dir` exclusively (never through a link), write `bytes`, fsync.
fn create_file(dir: &OwnedFd, name: &str, bytes: &[u8], mid_write: bool) -> std::io::Result<()> {
    let fd = rustix::fs::openat(
        dir,
        name,
        OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::from_raw_mode(0o666),
    )
    .map_err(errno_io)?;
    let mut f = fs::File::from(fd);
    let (first, rest) = bytes.split_at(bytes.len() / 2);
    f.write_all(first)?;
    if mid_write {
        crate::failpoint::hit("mid-write");
    }
    f.write_all(rest)?;
    f.sync_all()
}

fn tmp_name(name: &str) -> String {
    format!("{name}{TMP_MARK}{}", uuid::Uuid::new_v4().simple())
}

fn write_atomically(dir: &OwnedFd, name: &str, bytes: &[u8]) -> std::io::Result<()> {
    let tmp = tmp_name(name);
    let result = (|| {
        create_file(dir, &tmp, bytes, true)?;
        rustix::fs::renameat(dir, tmp.as_str(), dir, name).map_err(errno_io)?;
        sync_dir(dir)
    })();
    if result.is_err() {
        let _ = rustix::fs::unlinkat(dir, tmp.as_str(), AtFlags::empty());
    }
    result
}

impl Store for DirStore {
    fn put(&self, key: &str, bytes: &[u8]) -> Result<()> {
        let (segments, name) = self.split(key)?;
        let location = || self.display(&[key]);
        let dir = self.open_dir(&segments, true)?.ok_or_else(|| {
            Error::internal("write file", "the folder vanished").with_key(location())
        })?;
        write_atomically(&dir, name, bytes).map_err(|e| Error::io("write file", location(), e))
    }

    fn get(&self, key: &str) -> Result<Vec<u8>> {
        self.get_max(key, u64::MAX)
    }

    fn get_max(&self, key: &str, max: u64) -> Result<Vec<u8>> {
        let location = || self.display(&[key]);
        let Some((file, size)) = self.open_regular(key)? else {
            return Err(
                Error::new(ErrorKind::NotFound, "read file", "no such file").with_key(location())
            );
        };
        if size > max {
            return Err(too_large(location(), size, max));
        }
        // Never trust the size for the allocation alone: read at most max + 1 bytes.
        let mut out = Vec::with_capacity(size.min(64 << 20) as usize);
        file.take(max.saturating_add(1))
            .read_to_end(&mut out)
            .map_err(|e| Error::io("read file", location(), e))?;
        if out.len() as u64 > max {
            return Err(too_large(location(), out.len() as u64, max));
        }
        Ok(out)
    }

    fn size(&self, key: &str) -> Result<Option<u64>> {
        let (segments, name) = self.split(key)?;
        let Some(dir) = self.open_dir(&segments, false)? else {
            return Ok(None);
        };
        match rustix::fs::statat(&dir, name, AtFlags::SYMLINK_NOFOLLOW) {
            Ok(st) => match FileType::from_raw_mode(st.st_mode) {
                FileType::RegularFile => Ok(Some(st.st_size.max(0) as u64)),
                FileType::Directory => Ok(None),
                other => Err(not_regular(other, self.display(&[key]))),
            },
            Err(Errno::NOENT) => Ok(None),
            Err(e) => Err(Error::io("stat file", self.display(&[key]), errno_io(e))),
        }
    }

    fn list(&self, prefix: &str) -> Result<Vec<ObjectMeta>> {
        // Walk the deepest folder the prefix names completely, then filter by the rest.
        let folder = match prefix.rfind('/') {
            Some(i) => &prefix[..i],
            None => "",
        };
        let start: Vec<String> = if folder.is_empty() {
            Vec::new()
        } else {
            self.path_of(folder)?;
            folder.split('/').map(String::from).collect()
        };
        let mut out = Vec::new();
        self.walk(start, |segments, _, entries| {
            for e in entries {
                if let EntryKind::File { size, modified } = e.kind {
                    if e.name.contains(TMP_MARK) {
                        continue;
                    }
                    let mut key = segments.join("/");
                    if !key.is_empty() {
                        key.push('/');
                    }
                    key.push_str(&e.name);
                    if key.starts_with(prefix) {
                        out.push(ObjectMeta {
                            key,
                            size,
                            modified: Some(modified),
                        });
                    }
                }
            }
            Ok(())
        })?;
        out.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(out)
    }

    fn list_after(&self, prefix: &str, start_after: &str) -> Result<Vec<ObjectMeta>> {
        let mut out = self.list(prefix)?;
        out.retain(|o| o.key.as_str() > start_after);
        Ok(out)
    }

    fn delete(&self, key: &str) -> Result<()> {
        let (segments, name) = self.split(key)?;
        let Some(dir) = self.open_dir(&segments, false)? else {
            return Ok(());
        };
        unlink(&dir, name, AtFlags::empty())
            .map_err(|e| Error::io("delete file", self.display(&[key]), errno_io(e)))
    }

    fn delete_prefix(&self, prefix: &str) -> Result<u64> {
        let objects = self.list(prefix)?;
        for o in &objects {
            self.delete(&o.key)?;
        }
        // A prefix ending in '/' names a folder: remove it with whatever is left inside
        // (temporaries, links — the links themselves, never their targets).
        if let Some(folder) = prefix.strip_suffix('/') {
            self.path_of(folder)?;
            let segments: Vec<&str> = folder.split('/').collect();
            self.remove_tree(&segments)?;
        }
        Ok(objects.len() as u64)
    }

    fn location(&self, key: &str) -> String {
        self.root.join(key).display().to_string()
    }

    fn put_if_absent(&self, key: &str, bytes: &[u8]) -> Result<bool> {
        let (segments, name) = self.split(key)?;
        let location = || self.display(&[key]);
        let err = |e| Error::io("create file", location(), e);
        let dir = self.open_dir(&segments, true)?.ok_or_else(|| {
            Error::internal("create file", "the folder vanished").with_key(location())
        })?;
        let tmp = format!("lock{TMP_MARK}{}", uuid::Uuid::new_v4().simple());
        let result = (|| {
            create_file(&dir, &tmp, bytes, false)?;
            // link(2) fails if the name exists: the atomic create-if-absent.
            match rustix::fs::linkat(&dir, tmp.as_str(), &dir, name, AtFlags::empty()) {
                Ok(()) => sync_dir(&dir).map(|_| true),
                Err(Errno::EXIST) => Ok(false),
                Err(e) => Err(errno_io(e)),
            }
        })();
        let _ = rustix::fs::unlinkat(&dir, tmp.as_str(), AtFlags::empty());
        result.map_err(err)
    }

    fn leftovers(&self, prefix: &str) -> Result<Vec<Leftover>> {
        // The temporaries under `prefix`, with their modification times: what writes killed
        // between create and rename left behind. Links are neither followed nor reported.
        let folder = prefix.rfind('/').map_or("", |i| &prefix[..i]);
        let start: Vec<String> = if folder.is_empty() {
            Vec::new()
        } else {
            self.path_of(folder)?;
            folder.split('/').map(String::from).collect()
        };
        let mut out = Vec::new();
        self.walk(start, |segments, _, entries| {
            for e in entries {
                if let EntryKind::File { modified, .. } = e.kind {
                    if !e.name.contains(TMP_MARK) {
                        continue;
                    }
                    let mut key = segments.join("/");
                    if !key.is_empty() {
                        key.push('/');
                    }
                    key.push_str(&e.name);
                    if key.starts_with(prefix) {
                        out.push(Leftover {
                            key,
                            started: Some(modified),
                            kind: LeftoverKind::Temporary,
                        });
                    }
                }
            }
            Ok(())
        })?;
        out.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(out)
    }

    fn remove_leftover(&self, leftover: &Leftover) -> Result<()> {
        let key = leftover.key.as_str();
        match leftover.kind {
            // A directory has no uploads.
            LeftoverKind::Upload { .. } => return Ok(()),
            LeftoverKind::Temporary => {}
        }
        let (segments, name) = self.split(key)?;
        if !name.contains(TMP_MARK) {
            return Err(Error::invalid(
                "remove leftover",
                format!("{} is not a temporary file", crate::error::excerpt(key)),
            ));
        }
        let Some(dir) = self.open_dir(&segments, false)? else {
            return Ok(());
        };
        unlink(&dir, name, AtFlags::empty())
            .map_err(|e| Error::io("remove temporary", self.display(&[key]), errno_io(e)))?;
        drop(dir);
        // Then the folders this leaves empty, up to (not including) the database folder:
        // `rmdir` fails, and the tidying stops, at the first one that is not empty.
        for depth in (2..=segments.len()).rev() {
            let (parents, last) = segments[..depth].split_at(depth - 1);
            let Some(parent) = self.open_dir(parents, false)? else {
                break;
            };
            if rustix::fs::unlinkat(&parent, last[0], AtFlags::REMOVEDIR).is_err() {
                break;
            }
        }
        Ok(())
    }

    fn remove_temporaries(&self, prefix: &str) -> Result<u64> {
        let folder = prefix.trim_end_matches('/');
        let start: Vec<String> = if folder.is_empty() {
            Vec::new()
        } else {
            self.path_of(folder)?;
            folder.split('/').map(String::from).collect()
        };
        let mut removed = 0;
        self.walk(start, |segments, dir, entries| {
            for e in entries {
                // Only our own temporaries: regular files; a link is never touched.
                if matches!(e.kind, EntryKind::File { .. }) && e.name.contains(TMP_MARK) {
                    unlink(dir, &e.name, AtFlags::empty()).map_err(|err| {
                        let mut at: Vec<&str> = segments.iter().map(String::as_str).collect();
                        at.push(&e.name);
                        Error::io("remove temporary", self.display(&at), errno_io(err))
                    })?;
                    removed += 1;
                }
            }
            Ok(())
        })?;
        Ok(removed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    #[test]
    fn dir_store_passes_the_conformance_suite() {
        let tmp = tempfile::tempdir().unwrap();
        let store = DirStore::open(tmp.path().join("root")).unwrap();
        crate::store::conformance::run(&store);
    }

    #[test]
    fn a_file_is_not_a_directory() {
        let tmp = tempfile::tempdir().unwrap();
        let file = tmp.path().join("f");
        fs::write(&file, b"x").unwrap();
        for path in [file.clone(), file.join("below")] {
            let err = DirStore::open(&path).unwrap_err();
            assert_eq!(err.kind, crate::error::ErrorKind::Io);
            assert_eq!(
                err.message,
                format!("{} is not a directory", path.display()),
                "{err}"
            );
        }
    }

    #[test]
    fn temporaries_are_invisible_and_keys_cannot_escape() {
        let tmp = tempfile::tempdir().unwrap();
        let store = DirStore::open(tmp.path()).unwrap();
        fs::create_dir_all(tmp.path().join("db/b")).unwrap();
        fs::write(tmp.path().join("db/b/manifest.edn.tmp-123"), b"x").unwrap();
        assert!(store.list("db/").unwrap().is_empty());
        for bad in ["../x", "a/../../x", "/etc/passwd", "a//b", ""] {
            assert!(store.put(bad, b"x").is_err(), "{bad}");
        }
    }

    #[test]
    fn opening_listing_and_reading_create_nothing() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("missing");
        let store = DirStore::open(&root).unwrap();
        assert!(store.list("db/").unwrap().is_empty());
        assert_eq!(store.size("db/b/manifest.edn").unwrap(), None);
        assert_eq!(
            store.get("db/b/manifest.edn").unwrap_err().kind,
            ErrorKind::NotFound
        );
        assert!(!root.exists(), "nothing was created");
        store.put("db/b/x", b"1").unwrap();
        assert_eq!(store.get("db/b/x").unwrap(), b"1");
    }

    /// A folder `outside` with a file, and a store whose `db/b/` holds links to it.
    fn linked() -> (tempfile::TempDir, DirStore, PathBuf) {
        let tmp = tempfile::tempdir().unwrap();
        let outside = tmp.path().join("outside");
        fs::create_dir_all(&outside).unwrap();
        fs::write(outside.join("secret"), b"key material").unwrap();
        fs::write(
            outside.join("datoms-0.fressian.gz.tmp-1"),
            b"someone's file",
        )
        .unwrap();
        let store = DirStore::open(tmp.path().join("root")).unwrap();
        store.put("db/b/manifest.edn", b"{}").unwrap();
        (tmp, store, outside)
    }

    #[test]
    fn links_inside_are_never_read_written_listed_or_deleted_through() {
        let (tmp, store, outside) = linked();
        let b = tmp.path().join("root/db/b");
        symlink(outside.join("secret"), b.join("config.edn")).unwrap();
        symlink(&outside, b.join("chunks")).unwrap();
        // Read through a linked file or folder: refused, naming the link.
        let err = store.get("db/b/config.edn").unwrap_err();
        assert_eq!(err.kind, ErrorKind::Corrupt, "{err}");
        assert!(err.message.contains("symbolic link"), "{err}");
        assert!(!err.to_string().contains("key material"));
        let err = store.get("db/b/chunks/secret").unwrap_err();
        assert_eq!(err.kind, ErrorKind::Corrupt, "{err}");
        assert!(store.size("db/b/config.edn").is_err());
        assert!(store.size("db/b/chunks/secret").is_err());
        // Listing shows neither the link nor what is behind it.
        let keys: Vec<String> = store
            .list("db/")
            .unwrap()
            .into_iter()
            .map(|o| o.key)
            .collect();
        assert_eq!(keys, ["db/b/manifest.edn"]);
        // Writing through the linked folder is refused; nothing lands outside.
        let err = store
            .put("db/b/chunks/datoms-0.fressian.gz", b"data")
            .unwrap_err();
        assert_eq!(err.kind, ErrorKind::Corrupt, "{err}");
        assert!(!outside.join("datoms-0.fressian.gz").exists());
        // Temporaries behind the link survive; deleting the backup removes only the links.
        assert_eq!(store.remove_temporaries("db/b/").unwrap(), 0);
        assert!(outside.join("datoms-0.fressian.gz.tmp-1").exists());
        assert_eq!(store.delete_prefix("db/b/").unwrap(), 1);
        assert!(!b.exists());
        assert_eq!(fs::read(outside.join("secret")).unwrap(), b"key material");
        assert!(outside.join("datoms-0.fressian.gz.tmp-1").exists());
    }

    #[test]
    fn fifos_and_devices_are_refused_without_blocking() {
        let (tmp, store, _) = linked();
        let b = tmp.path().join("root/db/b");
        rustix::fs::mkfifoat(
            rustix::fs::CWD,
            b.join("checkpoint.edn"),
            Mode::from_raw_mode(0o644),
        )
        .unwrap();
        let err = store.get("db/b/checkpoint.edn").unwrap_err();
        assert!(err.message.contains("a FIFO"), "{err}");
        assert!(store.size("db/b/checkpoint.edn").is_err());
        assert!(store
            .list("db/")
            .unwrap()
            .iter()
            .all(|o| !o.key.contains("checkpoint")));
        assert_eq!(store.delete_prefix("db/b/").unwrap(), 1);
        assert!(!b.exists());
    }

    #[test]
    fn reads_are_bounded_and_sparse_files_are_refused_by_size() {
        let (tmp, store, _) = linked();
        let f = fs::File::create(tmp.path().join("root/db/b/huge")).unwrap();
        f.set_len(1 << 40).unwrap(); // a sparse terabyte: 0 bytes on disk
        let err = store.get_max("db/b/huge", 1 << 20).unwrap_err();
        assert_eq!(err.kind, ErrorKind::Corrupt, "{err}");
        assert!(err.message.contains("1099511627776 bytes"), "{err}");
        assert_eq!(store.get_max("db/b/manifest.edn", 2).unwrap(), b"{}");
        assert!(store.get_max("db/b/manifest.edn", 1).is_err());
    }

    #[test]
    fn deep_folders_and_self_links_do_not_recurse_or_loop() {
        let (tmp, store, _) = linked();
        let b = tmp.path().join("root/db/b");
        // 2,000 nested folders (made one level at a time: linear, unlike create_dir_all).
        fs::create_dir_all(b.join("chunks")).unwrap();
        let mut dir = rustix::fs::open(b.join("chunks"), OFlags::RDONLY, Mode::empty()).unwrap();
        for _ in 0..2000 {
            rustix::fs::mkdirat(&dir, "d", Mode::from_raw_mode(0o755)).unwrap();
            dir = rustix::fs::openat(&dir, "d", OFlags::RDONLY, Mode::empty()).unwrap();
        }
        let f = rustix::fs::openat(
            &dir,
            "x.tmp-1",
            OFlags::WRONLY | OFlags::CREATE,
            Mode::from_raw_mode(0o644),
        );
        drop(f.unwrap());
        symlink(".", b.join("chunks/self")).unwrap();
        symlink("..", b.join("chunks/up")).unwrap();
        // On a small stack: nothing recurses.
        let keys = std::thread::Builder::new()
            .stack_size(64 << 10)
            .spawn(move || {
                let keys = store.list("db/").unwrap();
                store.remove_temporaries("db/b/").unwrap();
                (keys, store)
            })
            .unwrap()
            .join()
            .unwrap();
        assert_eq!(keys.0.len(), 1);
        // Removal refuses trees deeper than it clears, and removes the rest.
        let err = keys.1.delete_prefix("db/b/").unwrap_err();
        assert!(err.message.contains("deeper than"), "{err}");
        let mut shallow = b.join("chunks");
        for _ in 0..10 {
            shallow.push("e");
        }
        // (clear the deep tree from the bottom, as a person would)
        while rustix::fs::unlinkat(&dir, "x.tmp-1", AtFlags::empty()).is_ok()
            || rustix::fs::unlinkat(&dir, "d", AtFlags::REMOVEDIR).is_ok()
        {
            dir = rustix::fs::openat(&dir, "..", OFlags::RDONLY, Mode::empty()).unwrap();
        }
        assert!(!b.join("chunks/d").exists());
        fs::create_dir_all(&shallow).unwrap();
        keys.1.delete_prefix("db/b/").unwrap();
        assert!(!b.exists());
        assert!(tmp.path().join("outside/secret").exists());
    }

    #[test]
    fn temporaries_are_leftovers_with_their_age_and_removal_tidies_folders() {
        let tmp = tempfile::tempdir().unwrap();
        let store = DirStore::open(tmp.path()).unwrap();
        store.put("db/b0/manifest.edn", b"m").unwrap();
        fs::create_dir_all(tmp.path().join("db/b1/chunks")).unwrap();
        fs::create_dir_all(tmp.path().join("dbx/b9")).unwrap();
        for (name, bytes) in [
            ("db/b1/config.edn.tmp-0a1b", &b"{:partial"[..]),
            ("db/b1/chunks/datoms-0.fressian.gz.tmp-77", b"gz"),
            ("db/b0/lock.tmp-5", b"x"),
            ("dbx/b9/config.edn.tmp-1", b"other database"),
        ] {
            fs::write(tmp.path().join(name), bytes).unwrap();
        }
        let old = std::time::SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(86_400);
        fs::File::options()
            .write(true)
            .open(tmp.path().join("db/b1/config.edn.tmp-0a1b"))
            .unwrap()
            .set_modified(old)
            .unwrap();
        assert!(store
            .list("db/")
            .unwrap()
            .iter()
            .all(|o| !o.key.contains(".tmp-")));
        let found = store.leftovers("db/").unwrap();
        let keys: Vec<&str> = found.iter().map(|l| l.key.as_str()).collect();
        assert_eq!(
            keys,
            [
                "db/b0/lock.tmp-5",
                "db/b1/chunks/datoms-0.fressian.gz.tmp-77",
                "db/b1/config.edn.tmp-0a1b"
            ]
        );
        assert!(found.iter().all(|l| l.kind == LeftoverKind::Temporary));
        assert_eq!(found[2].started, Some(old));
        assert!(found[0].started.unwrap() > old);
        for l in &found[1..] {
            store.remove_leftover(l).unwrap();
            store.remove_leftover(l).unwrap(); // already gone: still fine
        }
        assert!(
            !tmp.path().join("db/b1").exists(),
            "the emptied backup folder is gone"
        );
        assert!(tmp.path().join("db/b0/lock.tmp-5").exists());
        assert!(tmp.path().join("dbx/b9/config.edn.tmp-1").exists());
        // Only temporaries can be removed as leftovers.
        let real = Leftover {
            key: "db/b0/manifest.edn".into(),
            started: None,
            kind: LeftoverKind::Temporary,
        };
        assert!(store.remove_leftover(&real).is_err());
        assert_eq!(store.get("db/b0/manifest.edn").unwrap(), b"m");
    }
}
