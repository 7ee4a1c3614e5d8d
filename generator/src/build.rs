//! `generator build`: renders the static pages from the shared templates.

use std::path::Path;
use std::time::Instant;

use anyhow::Context as _;
use course_core::pages::{ErrorView, LoginView, Pages, STATIC_FILES};

use crate::cli::BuildArgs;

/// Headers for the static assets (Workers assets `_headers` format).
const HEADERS_FILE: &str = "\
/*
  X-Content-Type-Options: nosniff
  Referrer-Policy: strict-origin-when-cross-origin
  X-Frame-Options: DENY
";

pub(crate) fn run(args: &BuildArgs) -> anyhow::Result<()> {
    let started = Instant::now();
    let files = render()?;
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

/// Every file of the static site: (path inside the assets directory, content).
pub(crate) fn render() -> anyhow::Result<Vec<(String, String)>> {
    let pages = Pages::embedded().context("compiling the templates in site/templates")?;
    let not_found = ErrorView {
        heading: "Страница не найдена".into(),
        message: "Такой страницы на сайте нет. Проверьте адрес или начните с главной.".into(),
    };
    let mut files = vec![
        (
            "index.html".to_owned(),
            pages.index().context("rendering index.html")?,
        ),
        (
            "login.html".to_owned(),
            pages
                .login(&LoginView::default())
                .context("rendering login.html")?,
        ),
        (
            "404.html".to_owned(),
            pages.error(&not_found).context("rendering 404.html")?,
        ),
        ("_headers".to_owned(), HEADERS_FILE.to_owned()),
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

    #[test]
    fn builds_the_pages_into_a_directory_deterministically() {
        let dir = tempfile::tempdir().unwrap();
        let args = BuildArgs {
            out: dir.path().join("site"),
        };
        run(&args).unwrap();
        let first: Vec<_> = [
            "index.html",
            "login.html",
            "404.html",
            "style.css",
            "_headers",
        ]
        .iter()
        .map(|n| std::fs::read(args.out.join(n)).unwrap())
        .collect();
        run(&args).unwrap();
        let second: Vec<_> = [
            "index.html",
            "login.html",
            "404.html",
            "style.css",
            "_headers",
        ]
        .iter()
        .map(|n| std::fs::read(args.out.join(n)).unwrap())
        .collect();
        assert_eq!(first, second);
        let login = String::from_utf8(first[1].clone()).unwrap();
        assert!(login.contains(r#"<form class="card" method="post" action="/login">"#));
        assert!(login.contains(r#"name="email""#) && login.contains(r#"name="password""#));
    }

    #[test]
    fn an_unwritable_output_is_an_error_with_the_path() {
        let dir = tempfile::tempdir().unwrap();
        let blocker = dir.path().join("file");
        std::fs::write(&blocker, "x").unwrap();
        let err = run(&BuildArgs {
            out: blocker.join("sub"),
        })
        .unwrap_err();
        assert!(format!("{err:#}").contains("file/sub"), "{err:#}");
    }
}
