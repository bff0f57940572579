//! Checks the data directory before RocksDB opens it.

use super::StorageError;
use std::path::{Path, PathBuf};

/// Creates `<data_dir>/rocksdb` if nothing is there yet; refuses a data directory that holds
/// something other than Warren's data.
pub(super) fn prepare(data_dir: &Path) -> Result<PathBuf, StorageError> {
    let access = |e: std::io::Error| StorageError::Access { path: data_dir.to_owned(), detail: e.to_string() };
    std::fs::create_dir_all(data_dir).map_err(access)?;
    let db = data_dir.join("rocksdb");
    if !db.exists() {
        // Anything else in a fresh data directory is suspicious: the operator pointed us at
        // the wrong place.
        let foreign: Vec<String> = std::fs::read_dir(data_dir)
            .map_err(access)?
            .filter_map(|e| e.ok())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| !n.starts_with('.') && n != super::identity::NODE_ID_FILE)
            .collect();
        if !foreign.is_empty() {
            return Err(StorageError::Foreign {
                path: data_dir.to_owned(),
                detail: format!("found {}", foreign.join(", ")),
            });
        }
        std::fs::create_dir(&db).map_err(access)?;
    } else if !db.join("CURRENT").exists() {
        let empty = std::fs::read_dir(&db).map_err(access)?.next().is_none();
        if !empty {
            return Err(StorageError::Corrupt { path: db, detail: "no CURRENT file".into() });
        }
    }
    Ok(db)
}
