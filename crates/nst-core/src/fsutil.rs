//! Atomic writes: a reader never sees a half-written output or checkpoint.
use crate::{Error, Result};
use std::io::Write;
use std::path::{Path, PathBuf};

fn temp_sibling(path: &Path) -> PathBuf {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    path.with_file_name(format!(".{name}.tmp-{}", std::process::id()))
}

fn unwritable(path: &Path, e: impl std::fmt::Display) -> Error {
    Error::Unwritable {
        path: path.to_path_buf(),
        reason: e.to_string(),
    }
}

/// Writes a file through `write` into a temporary sibling, syncs it, then
/// renames it over `path`. On any error the temporary file is removed and
/// `path` is left as it was.
pub fn write_atomic<F>(path: &Path, write: F) -> Result<()>
where
    F: FnOnce(&Path) -> Result<()>,
{
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent).map_err(|e| unwritable(path, e))?;
    }
    let tmp = temp_sibling(path);
    let result = write(&tmp).and_then(|()| {
        std::fs::File::open(&tmp)
            .and_then(|f| f.sync_all())
            .map_err(|e| unwritable(path, e))?;
        std::fs::rename(&tmp, path).map_err(|e| unwritable(path, e))
    });
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// Writes bytes atomically (see [`write_atomic`]).
pub fn write_bytes_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    write_atomic(path, |tmp| {
        let mut f = std::fs::File::create(tmp).map_err(|e| unwritable(path, e))?;
        f.write_all(bytes).map_err(|e| unwritable(path, e))
    })
}

/// Checks, before any long computation, that `path` can be created: its
/// folder exists or can be made, and a file can be written there.
pub fn check_writable(path: &Path) -> Result<()> {
    if path.is_dir() {
        return Err(unwritable(path, "is a directory"));
    }
    let parent = match path.parent().filter(|p| !p.as_os_str().is_empty()) {
        Some(p) => p.to_path_buf(),
        None => PathBuf::from("."),
    };
    std::fs::create_dir_all(&parent).map_err(|e| unwritable(path, e))?;
    let probe = temp_sibling(path);
    std::fs::File::create(&probe).map_err(|e| unwritable(path, e))?;
    let _ = std::fs::remove_file(&probe);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn atomic_write_leaves_no_partial_file_on_error() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("out.bin");
        std::fs::write(&target, b"old").unwrap();
        let r = write_atomic(&target, |tmp| {
            std::fs::write(tmp, b"half").unwrap();
            Err(Error::Unwritable {
                path: tmp.to_path_buf(),
                reason: "boom".into(),
            })
        });
        assert!(r.is_err());
        assert_eq!(std::fs::read(&target).unwrap(), b"old");
        assert_eq!(
            std::fs::read_dir(dir.path()).unwrap().count(),
            1,
            "temp file left behind"
        );
        write_bytes_atomic(&target, b"new").unwrap();
        assert_eq!(std::fs::read(&target).unwrap(), b"new");
    }

    #[test]
    fn check_writable_rejects_directories_and_missing_roots() {
        let dir = tempfile::tempdir().unwrap();
        assert!(check_writable(dir.path()).is_err());
        assert!(check_writable(&dir.path().join("a/b/c.png")).is_ok());
        assert!(check_writable(Path::new("/proc/nst-cannot-write/x.png")).is_err());
    }
}
