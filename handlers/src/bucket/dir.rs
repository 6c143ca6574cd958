//! The bucket port on a local directory, for the local mode: the same keys as
//! S3 (`emails/<id>.json` under the root), written atomically and at most once.
//!
//! Each object is written to a temporary file in its destination directory,
//! flushed to disk, then hard-linked to its key: `link` fails if the key
//! exists, which gives S3's `If-None-Match: *` rule without a window in which
//! a second writer could win. The directory is then flushed too, so a stored
//! object survives a crash. Readers never see a partial file. S3 metadata has
//! no place in a plain file and is not kept.

use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Component, Path, PathBuf};

use async_trait::async_trait;

use super::{Bucket, BucketError, NewObject, PutOutcome};

pub struct DirBucket {
    root: PathBuf,
}

impl DirBucket {
    /// Opens (creating) the directory, and removes temporary files that a
    /// killed writer left behind: their objects were never linked to a key,
    /// so their messages are still on the queue.
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
            fs::remove_file(entry.path())?;
        }
    }
    Ok(())
}

fn write_once(path: &Path, body: &[u8]) -> io::Result<PutOutcome> {
    if path.exists() {
        return Ok(PutOutcome::AlreadyExists);
    }
    let dir = path.parent().expect("keys have a parent: the root");
    fs::create_dir_all(dir)?;
    let temp = dir.join(format!("{TEMP_PREFIX}{}", uuid::Uuid::new_v4().simple()));
    let written = (|| {
        let mut file = File::create(&temp)?;
        file.write_all(body)?;
        file.sync_all()?;
        match fs::hard_link(&temp, path) {
            Ok(()) => Ok(PutOutcome::Created),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(PutOutcome::AlreadyExists),
            Err(e) => Err(e),
        }
    })();
    let _ = fs::remove_file(&temp);
    let outcome = written?;
    if outcome == PutOutcome::Created {
        File::open(dir)?.sync_all()?;
    }
    Ok(outcome)
}

#[async_trait]
impl Bucket for DirBucket {
    async fn put_if_absent(&self, object: &NewObject) -> Result<PutOutcome, BucketError> {
        let path = self.path_of(&object.key)?;
        let body = object.body.clone();
        tokio::task::spawn_blocking(move || {
            write_once(&path, &body).map_err(|e| BucketError(format!("{}: {e}", path.display())))
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
}
