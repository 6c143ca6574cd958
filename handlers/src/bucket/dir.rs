//! The bucket port on a local directory, for the local mode: the same keys as
//! S3 under the root (`<prefix><unix-seconds>-<id>.json`, or
//! `<prefix><2 hex digits>/<unix-seconds>-<id>.json` with
//! `S3_KEY_LAYOUT=hashed`: see `keys.rs`), written atomically and at most once.
//!
//! Each object is written to a temporary file in its destination directory,
//! flushed to disk, then hard-linked to its key: `link` fails if the key
//! exists, which gives S3's `If-None-Match: *` rule without a window in which
//! a second writer could win. The directory is then flushed too (and so is
//! the parent of any directory created on the way), so a stored object
//! survives a crash; a key found already there is flushed the same way before
//! it is reported, since the writer that linked it may have died before its
//! own flush. Readers never see a partial file. S3 metadata has no place in a
//! plain file and is not kept.
//!
//! Several processes may share a bucket directory (`queue2bucket dev` and the
//! Lambda functions' local mode): a writer holds a lock on its temporary
//! file, and only temporary files that nobody holds are removed as leftovers.

use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Component, Path, PathBuf};

use async_trait::async_trait;
use bytes::Bytes;

use super::{Bucket, BucketError, NewObject, PutOutcome};

pub struct DirBucket {
    root: PathBuf,
}

impl DirBucket {
    /// Opens (creating) the directory, and removes temporary files that a
    /// killed writer left behind (their objects were never linked to a key,
    /// so their messages are still on the queue); a live writer's, locked,
    /// are left alone.
    pub fn open(root: impl Into<PathBuf>) -> Result<Self, BucketError> {
        let root = root.into();
        let error = |e: io::Error| BucketError(format!("{}: {e}", root.display()));
        fs::create_dir_all(&root).map_err(error)?;
        remove_leftovers(&root).map_err(error)?;
        Ok(Self { root })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The file of a key; keys that would leave the root are refused.
    pub fn path_of(&self, key: &str) -> Result<PathBuf, BucketError> {
        let relative = Path::new(key);
        let plain = relative
            .components()
            .all(|c| matches!(c, Component::Normal(_)));
        if key.is_empty() || !plain {
            return Err(BucketError(format!("invalid key {key:?}")));
        }
        Ok(self.root.join(relative))
    }
}

const TEMP_PREFIX: &str = ".tmp-";

fn remove_leftovers(dir: &Path) -> io::Result<()> {
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        let kind = entry.file_type()?;
        if kind.is_dir() {
            remove_leftovers(&entry.path())?;
        } else if entry.file_name().to_string_lossy().starts_with(TEMP_PREFIX) {
            // A file that vanished meanwhile was its writer's to remove.
            let Ok(file) = File::open(entry.path()) else {
                continue;
            };
            if file.try_lock().is_ok() {
                let _ = fs::remove_file(entry.path());
            }
        }
    }
    Ok(())
}

fn write_once(root: &Path, path: &Path, body: &[u8]) -> io::Result<PutOutcome> {
    let dir = path.parent().expect("keys have a parent: the root");
    if path.exists() {
        flush_existing(path, dir)?;
        return Ok(PutOutcome::AlreadyExists);
    }
    create_dirs(root, dir)?;
    let write = || {
        let temp = dir.join(format!("{TEMP_PREFIX}{}", uuid::Uuid::new_v4().simple()));
        let written = (|| {
            let mut file = File::create_new(&temp)?;
            // Held until the file is removed below, so that another
            // process's clean-up leaves it alone.
            file.lock()?;
            file.write_all(body)?;
            file.sync_all()?;
            match fs::hard_link(&temp, path) {
                Ok(()) => Ok(PutOutcome::Created),
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(PutOutcome::AlreadyExists),
                Err(e) => Err(e),
            }
        })();
        let _ = fs::remove_file(&temp);
        written
    };
    // Another process's clean-up may take a temporary file in the instant
    // between its creation and its lock; the link then finds no file, and a
    // new temporary file is the remedy.
    let mut attempt = write();
    for _ in 0..2 {
        match &attempt {
            Err(e) if e.kind() == io::ErrorKind::NotFound => attempt = write(),
            _ => break,
        }
    }
    match attempt? {
        PutOutcome::Created => {
            File::open(dir)?.sync_all()?;
            Ok(PutOutcome::Created)
        }
        PutOutcome::AlreadyExists => {
            flush_existing(path, dir)?;
            Ok(PutOutcome::AlreadyExists)
        }
    }
}

/// Makes an object found at its key durable before it counts as stored.
fn flush_existing(path: &Path, dir: &Path) -> io::Result<()> {
    File::open(path)?.sync_all()?;
    File::open(dir)?.sync_all()
}

/// Creates `dir` and any missing parent below `root`, flushing each new
/// directory's entry in its parent.
fn create_dirs(root: &Path, dir: &Path) -> io::Result<()> {
    if dir.is_dir() {
        return Ok(());
    }
    let parent = dir.parent().filter(|p| p.starts_with(root)).unwrap_or(root);
    if parent != dir {
        create_dirs(root, parent)?;
    }
    match fs::create_dir(dir) {
        Ok(()) => File::open(parent)?.sync_all(),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(e),
    }
}

/// Runs a file operation on the blocking pool.
async fn blocking<T: Send + 'static>(
    path: PathBuf,
    f: impl FnOnce(&Path) -> io::Result<T> + Send + 'static,
) -> Result<T, BucketError> {
    tokio::task::spawn_blocking(move || {
        f(&path).map_err(|e| BucketError(format!("{}: {e}", path.display())))
    })
    .await
    .map_err(|e| BucketError(format!("file task: {e}")))?
}

#[async_trait]
impl Bucket for DirBucket {
    async fn get(&self, key: &str) -> Result<Option<Bytes>, BucketError> {
        blocking(self.path_of(key)?, |path| match fs::read(path) {
            Ok(body) => Ok(Some(Bytes::from(body))),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        })
        .await
    }

    async fn exists(&self, key: &str) -> Result<bool, BucketError> {
        blocking(self.path_of(key)?, |path| path.try_exists()).await
    }

    async fn delete(&self, key: &str) -> Result<(), BucketError> {
        blocking(self.path_of(key)?, |path| match fs::remove_file(path) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        })
        .await
    }

    async fn put_if_absent(&self, object: &NewObject) -> Result<PutOutcome, BucketError> {
        let path = self.path_of(&object.key)?;
        let root = self.root.clone();
        let body = object.body.clone();
        tokio::task::spawn_blocking(move || {
            write_once(&root, &path, &body)
                .map_err(|e| BucketError(format!("{}: {e}", path.display())))
        })
        .await
        .map_err(|e| BucketError(format!("write task: {e}")))?
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_cannot_leave_the_root() {
        let bucket = DirBucket::open(std::env::temp_dir().join("q2b-dir-keys")).unwrap();
        for bad in ["", "../x", "/etc/passwd", "a/../../b", "./a"] {
            assert!(bucket.path_of(bad).is_err(), "{bad}");
        }
        assert!(bucket.path_of("emails/x.json").is_ok());
    }

    fn scratch(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("q2b-dir-{name}-{}", uuid::Uuid::new_v4()));
        fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn only_unheld_temporary_files_are_leftovers() {
        let root = scratch("leftovers");
        let emails = root.join("emails");
        fs::create_dir_all(&emails).unwrap();
        let orphan = emails.join(format!("{TEMP_PREFIX}orphan"));
        let live = emails.join(format!("{TEMP_PREFIX}live"));
        fs::write(&orphan, b"x").unwrap();
        let held = File::create(&live).unwrap();
        held.lock().unwrap();
        DirBucket::open(&root).unwrap();
        assert!(!orphan.exists(), "a dead writer's file is removed");
        assert!(live.exists(), "a live writer's file is left alone");
        drop(held);
        DirBucket::open(&root).unwrap();
        assert!(!live.exists());
        fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn nested_keys_create_their_directories_and_write_once() {
        let root = scratch("nested");
        let path = root.join("a/b/c.json");
        assert_eq!(write_once(&root, &path, b"1").unwrap(), PutOutcome::Created);
        assert_eq!(
            write_once(&root, &path, b"2").unwrap(),
            PutOutcome::AlreadyExists
        );
        assert_eq!(fs::read(&path).unwrap(), b"1");
        fs::remove_dir_all(&root).unwrap();
    }
}
