//! The real local D1: wrangler (needs Node ≥ 22: `<repo>/.tools/node` is put first on
//! PATH when present, as scripts/env.sh does) with a temporary `--persist-to` folder.

use std::path::{Path, PathBuf};
use std::process::Command;

use d1::LocalD1;

/// The repository root: the nearest directory above the crate holding wrangler.toml.
pub(crate) fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .find(|dir| dir.join("wrangler.toml").is_file())
        .expect("no wrangler.toml above the crate")
        .to_path_buf()
}

/// The `--persist-to` folder of a database from [`migrated_local_d1`].
pub(crate) fn persist_dir(dir: &tempfile::TempDir) -> PathBuf {
    dir.path().join("state")
}

/// A wrangler command run from the repository root, offline, with Node 22 on PATH.
pub(crate) fn wrangler(args: &[&str]) -> Command {
    let root = repo_root();
    let mut command = Command::new(root.join("node_modules/.bin/wrangler"));
    command
        .current_dir(&root)
        .args(args)
        .env("WRANGLER_SEND_METRICS", "false")
        .env("CLOUDFLARE_CF_FETCH_ENABLED", "false")
        .env("NO_COLOR", "1")
        .env_remove("CLOUDFLARE_API_TOKEN");
    if let Some(path) = d1::path_with_local_node(&root) {
        command.env("PATH", path);
    }
    command
}

/// A fresh local D1 with the project's migrations applied, in a temporary directory.
pub(crate) fn migrated_local_d1() -> (tempfile::TempDir, LocalD1) {
    let dir = tempfile::tempdir().expect("temporary directory");
    let persist = persist_dir(&dir);
    let output = wrangler(&["d1", "migrations", "apply", "DB", "--local", "--persist-to"])
        .arg(&persist)
        .output()
        .expect("running wrangler (did `npm ci` run?)");
    assert!(
        output.status.success(),
        "wrangler d1 migrations apply failed (Node >= 22 needed):\n{}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (dir, LocalD1::new(repo_root(), Some(persist)))
}
