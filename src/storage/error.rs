//! Storage errors, each saying what is wrong with which directory.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    #[error(
        "data directory {path} is in use by another process (its lock is held); stop that process or choose another --data-dir"
    )]
    Locked { path: PathBuf },
    #[error("data directory {path} cannot be accessed: {detail}")]
    Access { path: PathBuf, detail: String },
    #[error("data directory {path} is corrupt: {detail}; refusing to start over it")]
    Corrupt { path: PathBuf, detail: String },
    #[error(
        "data directory {path} was written in storage format {found}, this build reads format {supported}; refusing to start over it"
    )]
    IncompatibleFormat { path: PathBuf, found: u64, supported: u64 },
    #[error("data directory {path} is not empty and holds no Warren data ({detail}); refusing to start over it")]
    Foreign { path: PathBuf, detail: String },
    #[error("storage column family '{0}' is missing")]
    MissingColumnFamily(&'static str),
    #[error("storage I/O failed: {0}")]
    Io(String),
    #[error("storage is shut down")]
    Closed,
}

impl StorageError {
    pub(super) fn io(e: rocksdb::Error) -> Self {
        StorageError::Io(e.into_string())
    }

    /// Classifies an error from opening the database.
    pub(super) fn from_open(path: &std::path::Path, e: rocksdb::Error) -> Self {
        let text = e.into_string();
        let path = path.to_owned();
        if text.contains("lock") && (text.contains("Resource temporarily unavailable") || text.contains("lock hold")) {
            StorageError::Locked { path }
        } else if text.contains("Permission denied") {
            StorageError::Access { path, detail: text }
        } else if text.contains("Corruption")
            || text.contains("corrupt")
            || text.contains("does not exist")
            || text.contains("Invalid argument")
        {
            StorageError::Corrupt { path, detail: text }
        } else {
            StorageError::Io(text)
        }
    }
}
