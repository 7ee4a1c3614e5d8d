use std::process::Command;

use super::local_d1::repo_root;

/// Every variable through which the developer's own services could reach a test run.
const SERVICE_VARS: &[&str] = &[
    "STEPIK_CLIENT_ID",
    "STEPIK_CLIENT_SECRET",
    "STEPIK_COURSE_ID",
    "STEPIK_API_URL",
    "CLOUDFLARE_ACCOUNT_ID",
    "CLOUDFLARE_API_TOKEN",
    "CLOUDFLARE_D1_DATABASE_ID",
    "CLOUDFLARE_API_BASE_URL",
    "BOOMSTREAM_API_KEY",
    "BOOMSTREAM_API_URL",
    "TELEGRAM_BOT_TOKEN",
    "TELEGRAM_API_URL",
    "SMTP_URL",
    "MAIL_FROM",
];

/// The generator binary run from the repository root with `args`, with none of the
/// developer's service settings, wrangler quiet and offline, and the Node.js that
/// `scripts/setup.sh` installed on the PATH (the local D1 runs through wrangler).
pub(crate) fn generator(args: &[&str]) -> Command {
    let root = repo_root();
    let mut command = Command::new(env!("CARGO_BIN_EXE_generator"));
    command
        .current_dir(&root)
        .args(args)
        .env("WRANGLER_SEND_METRICS", "false")
        .env("CLOUDFLARE_CF_FETCH_ENABLED", "false");
    for name in SERVICE_VARS {
        command.env_remove(name);
    }
    if let Some(path) = d1::path_with_local_node(&root) {
        command.env("PATH", path);
    }
    command
}
