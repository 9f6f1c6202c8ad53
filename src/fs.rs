//! Files as wmx writes them: atomically (a temporary file beside the target, synced,
//! renamed over it, the directory synced), and paths as experiment files name them.

use std::io::Write;
use std::path::{Component, Path, PathBuf};

/// Writes `bytes` to `path` atomically: a reader sees the old file or the new one,
/// and after a crash the rename is durable, so a checkpoint never points at a
/// half-written file.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = parent_dir(path);
    let mut file = tempfile::Builder::new()
        .prefix(&format!(".{}.", path.file_name().map(|n| n.to_string_lossy()).unwrap_or_default()))
        .suffix(".tmp")
        .tempfile_in(dir)?;
    file.write_all(bytes)?;
    file.as_file().sync_all()?;
    file.persist(path).map_err(|e| e.error)?;
    sync(dir)
}

/// Makes a file's contents, or a rename or removal in a directory, durable.
pub fn sync(path: &Path) -> std::io::Result<()> {
    std::fs::File::open(path)?.sync_all()
}

/// The directory holding `path` (`.` for a bare file name).
fn parent_dir(path: &Path) -> &Path {
    path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."))
}

/// A file's stem as a name (`experiments/base.toml` → `base`).
pub fn file_stem(path: &Path) -> String {
    path.file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "experiment".into())
}

/// Joins `relative` onto the directory of `file`, removing `.` and `..` lexically,
/// so paths in messages and resolved configs read cleanly.
pub fn relative_to(file: &Path, relative: &Path) -> PathBuf {
    let joined = file.parent().unwrap_or(Path::new("")).join(relative);
    let mut out = PathBuf::new();
    for component in joined.components() {
        match component {
            Component::CurDir => {}
            Component::ParentDir
                if matches!(out.components().next_back(), Some(Component::Normal(_))) =>
            {
                out.pop();
            }
            other => out.push(other),
        }
    }
    out
}

/// `to` as seen from directory `from`: a relative path when both resolve on one
/// filesystem tree (`../../../curricula/standard.toml`), else `to` made absolute.
/// Run directories store their paths this way, so they work from any directory and
/// move with the project.
pub fn path_from(from: &Path, to: &Path) -> PathBuf {
    let (Ok(from), Ok(to)) = (from.canonicalize(), to.canonicalize()) else {
        return std::path::absolute(to).unwrap_or_else(|_| to.to_path_buf());
    };
    let a: Vec<Component> = from.components().collect();
    let b: Vec<Component> = to.components().collect();
    let common = a.iter().zip(&b).take_while(|(x, y)| x == y).count();
    if common == 0 {
        return to;
    }
    let mut out = PathBuf::new();
    for _ in common..a.len() {
        out.push("..");
    }
    for c in &b[common..] {
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_atomic_write_replaces_the_file_and_leaves_no_temporary() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("meta.json");
        write_atomic(&path, b"old").unwrap();
        write_atomic(&path, b"new").unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"new");
        let names: Vec<_> = std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(names, vec![std::ffi::OsString::from("meta.json")]);
    }

    #[test]
    fn relative_paths_join_the_files_directory_lexically() {
        let p = relative_to(Path::new("experiments/base.toml"), Path::new("../curricula/standard.toml"));
        assert_eq!(p, Path::new("curricula/standard.toml"));
        assert_eq!(file_stem(Path::new("experiments/base.toml")), "base");
    }

    #[test]
    fn paths_from_a_run_directory_climb_to_the_shared_ancestor() {
        let root = tempfile::tempdir().unwrap();
        let run = root.path().join("runs/base/abc");
        std::fs::create_dir_all(&run).unwrap();
        std::fs::create_dir_all(root.path().join("curricula")).unwrap();
        let curriculum = root.path().join("curricula/standard.toml");
        std::fs::write(&curriculum, "").unwrap();
        let p = path_from(&run, &curriculum);
        assert_eq!(p, Path::new("../../../curricula/standard.toml"));
        assert!(run.join(&p).is_file());
        let missing = path_from(&run, Path::new("nowhere/x"));
        assert!(missing.is_absolute(), "{}", missing.display());
    }
}
