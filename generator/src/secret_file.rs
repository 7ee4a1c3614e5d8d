//! Files that may hold password hashes or passwords (SQL files, generated passwords):
//! always created new (`O_EXCL`, so never an existing file and never through a symbolic
//! link) and readable by their owner only (mode 0600 on Unix).

use std::fs::{self, File};
use std::io::{self, Write as _};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use anyhow::{Context as _, bail};

/// Creates `path`, which must not exist yet (not even as a symbolic link), for writing,
/// with mode 0600 on Unix.
pub fn create_new(path: &Path) -> io::Result<File> {
    let mut options = fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        options.mode(0o600);
    }
    options.open(path)
}

/// Checks that [`replace`] can write `path`: its folder exists, and `path` is neither a
/// symbolic link (refused rather than followed) nor a folder. Lets a command fail before
/// doing any work.
pub fn check_destination(path: &Path) -> anyhow::Result<()> {
    let folder = folder_of(path);
    if !folder.is_dir() {
        bail!(
            "cannot write {}: no folder {}",
            path.display(),
            folder.display()
        );
    }
    match fs::symlink_metadata(path) {
        Ok(meta) if meta.file_type().is_symlink() => bail!(
            "{} is a symbolic link; refusing to write through it (give the path of a regular file, or remove the link)",
            path.display()
        ),
        Ok(meta) if meta.is_dir() => bail!("cannot write {}: it is a folder", path.display()),
        Ok(_) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e).with_context(|| format!("checking {}", path.display())),
    }
}

/// Writes `contents` to `path`, replacing any file there: the text goes into a fresh
/// file in the same folder (created new, mode 0600), which is then renamed over `path`.
/// An existing file's permissions are never reused, and `path` holds either the old or
/// the new text, never part of it. A symbolic link at `path` is refused (see
/// [`check_destination`]); a rename never writes through one anyway.
pub fn replace(path: &Path, contents: &[u8]) -> anyhow::Result<()> {
    check_destination(path)?;
    let (temp, file) = create_temp_beside(path)?;
    let result = write_synced(file, contents)
        .with_context(|| format!("writing {}", temp.display()))
        .and_then(|()| {
            fs::rename(&temp, path)
                .with_context(|| format!("replacing {} with {}", path.display(), temp.display()))
        });
    if result.is_err() {
        let _ = fs::remove_file(&temp);
    }
    result
}

/// Writes `contents`, flushes them to disk, and closes the file.
fn write_synced(mut file: File, contents: &[u8]) -> io::Result<()> {
    file.write_all(contents)?;
    file.sync_all()
}

/// A new owner-only file beside `path`: `.NAME.PID-N.tmp`.
fn create_temp_beside(path: &Path) -> anyhow::Result<(PathBuf, File)> {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let name = path
        .file_name()
        .with_context(|| format!("{} does not name a file", path.display()))?
        .to_string_lossy();
    let folder = folder_of(path);
    let mut attempts = 0;
    loop {
        let temp = folder.join(format!(
            ".{name}.{}-{}.tmp",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        ));
        match create_new(&temp) {
            Ok(file) => return Ok((temp, file)),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists && attempts < 100 => {
                attempts += 1;
            }
            Err(e) => return Err(e).with_context(|| format!("creating {}", temp.display())),
        }
    }
}

fn folder_of(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}
