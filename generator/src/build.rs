//! The static site: rendered from a site folder ([`crate::site_files`]), in every
//! language, and written into the assets directory wrangler serves. `generator build`
//! is [`render`] then [`write_all`].

use std::path::{Path, PathBuf};

use anyhow::Context as _;
use course_core::pages::{ErrorView, LoginView, PageLang, Pages};
use course_core::site::Lang;

use crate::site_files;

/// Long caching for content-hashed assets; HTML keeps the platform's default
/// (revalidate on every use).
const IMMUTABLE: &str = "/assets/*\n  cache-control: public, max-age=31536000, immutable\n";

/// Every file of the static site: (path inside the assets directory, content), in a
/// fixed order, so the same input always gives byte-identical output.
pub fn render(config: &Path, structure: Option<&Path>) -> anyhow::Result<Vec<(String, Vec<u8>)>> {
    let site_files::SiteFiles {
        site,
        templates,
        assets,
    } = site_files::load(config, structure)?;
    let pages = Pages::new(
        templates.iter().map(|(n, s)| (n.as_str(), s.as_str())),
        site,
    )
    .context("compiling the templates")?;
    let site = pages.site();
    let mut files: Vec<(String, Vec<u8>)> = Vec::new();
    for lang in Lang::ALL {
        let prefix = site.prefix(lang);
        let dir = prefix.trim_start_matches('/');
        let path_of = |name: &str| {
            if dir.is_empty() {
                name.to_owned()
            } else {
                format!("{dir}/{name}")
            }
        };
        // The same page in the other language: its prefix plus the page's path, and
        // `?lang=` for the root language, so that a page passing through the worker
        // also resets the language cookie.
        let other = lang.other();
        let page = |route: &str| PageLang {
            lang,
            switch_url: if site.prefix(other).is_empty() {
                format!("{route}?lang={}", other.code())
            } else {
                format!("{}{route}", site.prefix(other))
            },
        };
        let t = site.messages(lang);
        let not_found = ErrorView {
            heading: t.text("errors.not_found_title"),
            message: t.text("errors.not_found_text"),
        };
        let rendered = [
            ("index.html", pages.index(&page("/"))),
            (
                "login.html",
                pages.login(&page("/login"), &LoginView::default()),
            ),
            ("help.html", pages.help(&page("/help"))),
            ("404.html", pages.error(&page("/"), &not_found)),
        ];
        for (name, html) in rendered {
            let html =
                html.with_context(|| format!("rendering {} ({})", path_of(name), lang.code()))?;
            files.push((path_of(name), html.into_bytes()));
        }
    }
    for (hashed, content) in assets {
        files.push((format!("assets/{hashed}"), content));
    }
    let headers = format!("{}{IMMUTABLE}", course_core::headers::assets_file());
    files.push(("_headers".to_owned(), headers.into_bytes()));
    Ok(files)
}

/// Lists what the last build wrote, so the next one can remove what it no longer writes
/// (an old hashed stylesheet, say) without touching anything else in the folder.
const MANIFEST: &str = ".generator-files";

/// Writes `files` (from [`render`]) into `out`, creating folders as needed, and removes
/// what the previous build there wrote and this one does not (nothing else). Returns the
/// paths it removed.
pub fn write_all(out: &Path, files: &[(String, Vec<u8>)]) -> anyhow::Result<Vec<PathBuf>> {
    let mut removed = Vec::new();
    let manifest = out.join(MANIFEST);
    let previous = std::fs::read_to_string(&manifest).unwrap_or_default();
    for (name, content) in files {
        let path = out.join(name);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("creating {}", parent.display()))?;
        }
        std::fs::write(&path, content).with_context(|| format!("writing {}", path.display()))?;
    }
    for stale in previous
        .lines()
        .filter(|old| !files.iter().any(|(name, _)| name == old))
    {
        // Only plain relative names that a build wrote; never anything outside `out`.
        if !stale.is_empty()
            && !stale.starts_with('/')
            && !stale.split('/').any(|part| part == "..")
        {
            let path = out.join(stale);
            if path.is_file() {
                std::fs::remove_file(&path)
                    .with_context(|| format!("removing the stale {}", path.display()))?;
                removed.push(path);
            }
        }
    }
    let names: Vec<&str> = files.iter().map(|(name, _)| name.as_str()).collect();
    std::fs::write(&manifest, names.join("\n") + "\n")
        .with_context(|| format!("writing {}", manifest.display()))?;
    Ok(removed)
}
