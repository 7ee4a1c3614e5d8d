//! `generator build`: renders the static pages from the shared templates.

use std::path::Path;
use std::time::Instant;

use anyhow::Context as _;
use course_core::pages::{ErrorView, LoginView, Pages, STATIC_FILES};

use crate::cli::BuildArgs;

pub(crate) fn run(args: &BuildArgs) -> anyhow::Result<()> {
    let started = Instant::now();
    let telegram_bot = telegram_bot(&args.wrangler)?;
    let files = render(telegram_bot)?;
    write_all(&args.out, &files)?;
    for (name, content) in &files {
        println!(
            "  wrote {} ({} bytes)",
            args.out.join(name).display(),
            content.len()
        );
    }
    println!(
        "built {} files into {} in {} ms",
        files.len(),
        args.out.display(),
        started.elapsed().as_millis()
    );
    Ok(())
}

#[derive(serde::Deserialize)]
struct WranglerConfig {
    #[serde(default)]
    vars: std::collections::BTreeMap<String, toml::Value>,
}

/// `[vars] TELEGRAM_BOT_USERNAME` from wrangler.toml, validated as the worker does.
fn telegram_bot(wrangler: &Path) -> anyhow::Result<Option<String>> {
    let text = std::fs::read_to_string(wrangler)
        .with_context(|| format!("reading {}", wrangler.display()))?;
    let config: WranglerConfig =
        toml::from_str(&text).with_context(|| format!("parsing {}", wrangler.display()))?;
    let vars: Vec<(String, String)> = config
        .vars
        .into_iter()
        .filter_map(|(k, v)| v.as_str().map(|s| (k, s.to_owned())))
        .collect();
    let settings = course_core::app::Settings::from_env(|name| {
        vars.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone())
    })
    .map_err(anyhow::Error::msg)
    .with_context(|| format!("in [vars] of {}", wrangler.display()))?;
    Ok(settings.telegram_bot_username)
}

/// Every file of the static site: (path inside the assets directory, content).
pub(crate) fn render(telegram_bot: Option<String>) -> anyhow::Result<Vec<(String, String)>> {
    let pages = Pages::embedded().context("compiling the templates in site/templates")?;
    let not_found = ErrorView {
        heading: "Страница не найдена".into(),
        message: "Такой страницы на сайте нет. Проверьте адрес или начните с главной.".into(),
    };
    let login = LoginView {
        telegram_bot,
        ..LoginView::default()
    };
    let mut files = vec![
        (
            "index.html".to_owned(),
            pages.index().context("rendering index.html")?,
        ),
        (
            "login.html".to_owned(),
            pages.login(&login).context("rendering login.html")?,
        ),
        (
            "404.html".to_owned(),
            pages.error(&not_found).context("rendering 404.html")?,
        ),
        ("_headers".to_owned(), course_core::headers::assets_file()),
    ];
    files.extend(
        STATIC_FILES
            .iter()
            .map(|(n, c)| ((*n).to_owned(), (*c).to_owned())),
    );
    Ok(files)
}

fn write_all(out: &Path, files: &[(String, String)]) -> anyhow::Result<()> {
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    for (name, content) in files {
        let path = out.join(name);
        std::fs::write(&path, content).with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const FILES: [&str; 5] = [
        "index.html",
        "login.html",
        "404.html",
        "style.css",
        "_headers",
    ];

    fn args(dir: &Path, vars: &str) -> BuildArgs {
        let wrangler = dir.join("wrangler.toml");
        std::fs::write(&wrangler, format!("name = \"x\"\n[vars]\n{vars}\n")).unwrap();
        BuildArgs {
            out: dir.join("site"),
            wrangler,
        }
    }

    fn read_all(args: &BuildArgs) -> Vec<Vec<u8>> {
        FILES
            .iter()
            .map(|n| std::fs::read(args.out.join(n)).unwrap())
            .collect()
    }

    #[test]
    fn builds_the_pages_into_a_directory_deterministically() {
        let dir = tempfile::tempdir().unwrap();
        let args = args(dir.path(), "");
        run(&args).unwrap();
        let first = read_all(&args);
        run(&args).unwrap();
        assert_eq!(first, read_all(&args));
        let login = String::from_utf8(first[1].clone()).unwrap();
        assert!(login.contains(r#"<form class="card" method="post" action="/login">"#));
        assert!(login.contains(r#"name="email""#) && login.contains(r#"name="password""#));
        assert!(!login.contains("telegram-widget.js"));
        let headers = String::from_utf8(first[4].clone()).unwrap();
        assert!(headers.contains("content-security-policy: default-src 'self'"));
        assert!(headers.contains("strict-transport-security: max-age=31536000"));
    }

    #[test]
    fn the_login_page_shows_the_bot_from_wrangler_vars() {
        let dir = tempfile::tempdir().unwrap();
        let args = args(dir.path(), "TELEGRAM_BOT_USERNAME = \"course_bot\"");
        run(&args).unwrap();
        let login = std::fs::read_to_string(args.out.join("login.html")).unwrap();
        assert!(login.contains(r#"data-telegram-login="course_bot""#));
    }

    #[test]
    fn bad_vars_and_missing_config_are_errors_naming_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let bad = args(dir.path(), "TELEGRAM_BOT_USERNAME = \"not a bot!\"");
        let err = format!("{:#}", run(&bad).unwrap_err());
        assert!(
            err.contains("wrangler.toml") && err.contains("TELEGRAM_BOT_USERNAME"),
            "{err}"
        );
        let missing = BuildArgs {
            out: dir.path().join("o"),
            wrangler: dir.path().join("nope.toml"),
        };
        assert!(format!("{:#}", run(&missing).unwrap_err()).contains("nope.toml"));
    }

    #[test]
    fn an_unwritable_output_is_an_error_with_the_path() {
        let dir = tempfile::tempdir().unwrap();
        let blocker = dir.path().join("file");
        std::fs::write(&blocker, "x").unwrap();
        let mut args = args(dir.path(), "");
        args.out = blocker.join("sub");
        let err = run(&args).unwrap_err();
        assert!(format!("{err:#}").contains("file/sub"), "{err:#}");
    }
}
