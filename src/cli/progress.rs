//! Progress on stderr for the long commands (verify, cat): a [`Store`] decorator that
//! advances a bar for every chunk read, so the operations themselves stay as they are. The
//! bar draws only when stderr is a terminal (and not with `--quiet`); pipes and scripts
//! see nothing.

use std::sync::Arc;

use datacamp::store::{Leftover, ObjectMeta, Store};
use datacamp::Result;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// A bar over `total` chunks, on stderr; hidden when `quiet` or stderr is not a terminal.
pub fn bar(total: u64, what: &str, quiet: bool) -> ProgressBar {
    let target = if quiet {
        ProgressDrawTarget::hidden()
    } else {
        ProgressDrawTarget::stderr()
    };
    let bar = ProgressBar::with_draw_target(Some(total), target);
    bar.set_style(
        ProgressStyle::with_template("{msg} [{bar:30}] {pos}/{len} chunks ({eta})")
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    bar.set_message(what.to_owned());
    bar
}

/// A store that reports every chunk it reads to a progress bar.
pub struct Counting {
    inner: Arc<dyn Store>,
    bar: ProgressBar,
}

impl Counting {
    /// Wrap `inner`; every chunk read advances `bar` by one.
    pub fn wrap(inner: Arc<dyn Store>, bar: ProgressBar) -> Arc<dyn Store> {
        Arc::new(Counting { inner, bar })
    }
}

fn is_chunk(key: &str) -> bool {
    key.contains("/chunks/")
}

impl Store for Counting {
    fn put(&self, key: &str, bytes: &[u8]) -> Result<()> {
        self.inner.put(key, bytes)
    }
    fn get(&self, key: &str) -> Result<Vec<u8>> {
        let bytes = self.inner.get(key)?;
        if is_chunk(key) {
            self.bar.inc(1);
        }
        Ok(bytes)
    }
    fn get_max(&self, key: &str, max: u64) -> Result<Vec<u8>> {
        let bytes = self.inner.get_max(key, max)?;
        if is_chunk(key) {
            self.bar.inc(1);
        }
        Ok(bytes)
    }
    fn size(&self, key: &str) -> Result<Option<u64>> {
        self.inner.size(key)
    }
    fn list(&self, prefix: &str) -> Result<Vec<ObjectMeta>> {
        self.inner.list(prefix)
    }
    fn delete(&self, key: &str) -> Result<()> {
        self.inner.delete(key)
    }
    fn delete_prefix(&self, prefix: &str) -> Result<u64> {
        self.inner.delete_prefix(prefix)
    }
    fn location(&self, key: &str) -> String {
        self.inner.location(key)
    }
    fn leftovers(&self, prefix: &str) -> Result<Vec<Leftover>> {
        self.inner.leftovers(prefix)
    }
    fn remove_leftover(&self, leftover: &Leftover) -> Result<()> {
        self.inner.remove_leftover(leftover)
    }
    fn object_key_of(&self, key: &str) -> Option<String> {
        self.inner.object_key_of(key)
    }
    fn put_if_absent(&self, key: &str, bytes: &[u8]) -> Result<bool> {
        self.inner.put_if_absent(key, bytes)
    }
    fn remove_temporaries(&self, prefix: &str) -> Result<u64> {
        self.inner.remove_temporaries(prefix)
    }
}
