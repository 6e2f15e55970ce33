//! A local directory as a [`Store`]: keys are relative paths below the root.
//!
//! Writes go to a temporary file in the destination folder, are fsynced, renamed into
//! place, and the folder is fsynced: a crash leaves the old state or the whole new file.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use super::{ObjectMeta, Store};
use crate::error::{Error, Result};

/// Marker inside temporary file names; listings skip such files.
const TMP_MARK: &str = ".tmp-";

/// A directory store rooted at a path.
#[derive(Debug)]
pub struct DirStore {
    root: PathBuf,
}

impl DirStore {
    /// Given a directory path, return a store rooted there (created if missing).
    ///
    /// A path that is (or runs through) a file fails with `Io`: "… is not a directory".
    pub fn open(root: impl AsRef<Path>) -> Result<Self> {
        let root = root.as_ref().to_path_buf();
        let op = "open backup directory";
        let not_a_dir = || {
            Error::new(
                crate::error::ErrorKind::Io,
                op,
                format!("{} is not a directory", root.display()),
            )
            .with_hint(":path must name a directory (it is created when missing)")
        };
        if root.exists() && !root.is_dir() {
            return Err(not_a_dir());
        }
        fs::create_dir_all(&root).map_err(|e| match e.kind() {
            std::io::ErrorKind::AlreadyExists | std::io::ErrorKind::NotADirectory => not_a_dir(),
            _ => Error::io(op, root.display().to_string(), e),
        })?;
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
}

fn sync_dir(dir: &Path) -> std::io::Result<()> {
    fs::File::open(dir)?.sync_all()
}

fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    fs::create_dir_all(dir)?;
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("file");
    let tmp = dir.join(format!("{name}{TMP_MARK}{}", uuid::Uuid::new_v4().simple()));
    let result = (|| {
        let mut f = fs::File::create(&tmp)?;
        let (first, rest) = bytes.split_at(bytes.len() / 2);
        f.write_all(first)?;
        crate::failpoint::hit("mid-write");
        f.write_all(rest)?;
        f.sync_all()?;
        fs::rename(&tmp, path)?;
        sync_dir(dir)
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

fn walk(dir: &Path, rel: &str, out: &mut Vec<ObjectMeta>) -> std::io::Result<()> {
    let entries = match fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    for entry in entries {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy().into_owned();
        let key = if rel.is_empty() {
            name.clone()
        } else {
            format!("{rel}/{name}")
        };
        let meta = entry.metadata()?;
        if meta.is_dir() {
            walk(&entry.path(), &key, out)?;
        } else if !name.contains(TMP_MARK) {
            out.push(ObjectMeta {
                key,
                size: meta.len(),
                modified: meta.modified().ok(),
            });
        }
    }
    Ok(())
}

impl Store for DirStore {
    fn put(&self, key: &str, bytes: &[u8]) -> Result<()> {
        let path = self.path_of(key)?;
        write_atomically(&path, bytes)
            .map_err(|e| Error::io("write file", path.display().to_string(), e))
    }

    fn get(&self, key: &str) -> Result<Vec<u8>> {
        let path = self.path_of(key)?;
        fs::read(&path).map_err(|e| Error::io("read file", path.display().to_string(), e))
    }

    fn size(&self, key: &str) -> Result<Option<u64>> {
        let path = self.path_of(key)?;
        match fs::metadata(&path) {
            Ok(m) if m.is_file() => Ok(Some(m.len())),
            Ok(_) => Ok(None),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(Error::io("stat file", path.display().to_string(), e)),
        }
    }

    fn list(&self, prefix: &str) -> Result<Vec<ObjectMeta>> {
        // Walk the deepest folder the prefix names completely, then filter by the rest.
        let folder = match prefix.rfind('/') {
            Some(i) => &prefix[..i],
            None => "",
        };
        let start = if folder.is_empty() {
            self.root.clone()
        } else {
            self.path_of(folder)?
        };
        let mut out = Vec::new();
        walk(&start, folder, &mut out)
            .map_err(|e| Error::io("list directory", start.display().to_string(), e))?;
        out.retain(|o| o.key.starts_with(prefix));
        out.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(out)
    }

    fn delete(&self, key: &str) -> Result<()> {
        let path = self.path_of(key)?;
        match fs::remove_file(&path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(Error::io("delete file", path.display().to_string(), e)),
        }
    }

    fn delete_prefix(&self, prefix: &str) -> Result<u64> {
        let objects = self.list(prefix)?;
        for o in &objects {
            self.delete(&o.key)?;
        }
        // A prefix ending in '/' names a folder: remove it with any temporaries left inside.
        if let Some(folder) = prefix.strip_suffix('/') {
            let path = self.path_of(folder)?;
            match fs::remove_dir_all(&path) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(Error::io("delete folder", path.display().to_string(), e)),
            }
        }
        Ok(objects.len() as u64)
    }

    fn location(&self, key: &str) -> String {
        self.root.join(key).display().to_string()
    }

    fn put_if_absent(&self, key: &str, bytes: &[u8]) -> Result<bool> {
        let path = self.path_of(key)?;
        let err = |e| Error::io("create file", path.display().to_string(), e);
        let dir = path.parent().unwrap_or(Path::new("."));
        fs::create_dir_all(dir).map_err(err)?;
        let tmp = dir.join(format!("lock{TMP_MARK}{}", uuid::Uuid::new_v4().simple()));
        let result = (|| {
            let mut f = fs::File::create(&tmp)?;
            f.write_all(bytes)?;
            f.sync_all()?;
            // link(2) fails if the name exists: the atomic create-if-absent.
            match fs::hard_link(&tmp, &path) {
                Ok(()) => sync_dir(dir).map(|_| true),
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(false),
                Err(e) => Err(e),
            }
        })();
        let _ = fs::remove_file(&tmp);
        result.map_err(err)
    }

    fn remove_temporaries(&self, prefix: &str) -> Result<u64> {
        let folder = prefix.trim_end_matches('/');
        let start = if folder.is_empty() {
            self.root.clone()
        } else {
            self.path_of(folder)?
        };
        let mut removed = 0;
        let mut stack = vec![start];
        while let Some(dir) = stack.pop() {
            let entries = match fs::read_dir(&dir) {
                Ok(e) => e,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(Error::io("list directory", dir.display().to_string(), e)),
            };
            for entry in entries {
                let entry =
                    entry.map_err(|e| Error::io("list directory", dir.display().to_string(), e))?;
                let path = entry.path();
                if path.is_dir() {
                    stack.push(path);
                } else if entry.file_name().to_string_lossy().contains(TMP_MARK) {
                    fs::remove_file(&path).map_err(|e| {
                        Error::io("remove temporary", path.display().to_string(), e)
                    })?;
                    removed += 1;
                }
            }
        }
        Ok(removed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
