//! This node's id in its cluster, in a small file beside the database
//! (`<data-dir>/cluster-node-id`): read before anything else starts, since the id decides
//! whether the node founds a cluster, rejoins one or joins one (`server/formation.rs`); written
//! once, when the cluster gave it. Ids are never reused: a node whose data directory was
//! emptied joins again under a new id.

use super::StorageError;
use std::io::Write;
use std::path::Path;

/// The file's name inside the data directory.
pub(super) const NODE_ID_FILE: &str = "cluster-node-id";

fn access(path: &Path) -> impl Fn(std::io::Error) -> StorageError + '_ {
    move |e| StorageError::Access { path: path.to_owned(), detail: e.to_string() }
}

/// The id stored in `data_dir`, if any.
pub fn read_node_id(data_dir: &Path) -> Result<Option<u64>, StorageError> {
    let path = data_dir.join(NODE_ID_FILE);
    match std::fs::read_to_string(&path) {
        Ok(s) => s
            .trim()
            .parse()
            .map(Some)
            .map_err(|_| StorageError::Corrupt { path, detail: format!("not a node id: {:?}", s.trim()) }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(access(&path)(e)),
    }
}

/// Stores the id durably (a new file renamed into place, both synced).
pub fn write_node_id(data_dir: &Path, id: u64) -> Result<(), StorageError> {
    std::fs::create_dir_all(data_dir).map_err(access(data_dir))?;
    let path = data_dir.join(NODE_ID_FILE);
    let tmp = data_dir.join(format!(".{NODE_ID_FILE}.new"));
    let mut f = std::fs::File::create(&tmp).map_err(access(&tmp))?;
    writeln!(f, "{id}").map_err(access(&tmp))?;
    f.sync_all().map_err(access(&tmp))?;
    std::fs::rename(&tmp, &path).map_err(access(&path))?;
    std::fs::File::open(data_dir).and_then(|d| d.sync_all()).map_err(access(data_dir))
}

/// Whether `data_dir` holds a database already (a node that ran before).
pub fn has_database(data_dir: &Path) -> bool {
    data_dir.join("rocksdb").join("CURRENT").exists()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_id_survives_and_garbage_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(read_node_id(dir.path()).unwrap(), None);
        write_node_id(dir.path(), 7).unwrap();
        assert_eq!(read_node_id(dir.path()).unwrap(), Some(7));
        // The database opens beside it.
        drop(crate::storage::Storage::open(dir.path()).unwrap());
        assert!(has_database(dir.path()));
        std::fs::write(dir.path().join(NODE_ID_FILE), "seven").unwrap();
        assert!(matches!(read_node_id(dir.path()), Err(StorageError::Corrupt { .. })));
    }
}
