//! Reading a site folder from disk: configuration, texts, templates, static files and
//! the optional course structure, each error naming its file. The site build
//! ([`crate::build`]) reads it all; the sync and the admin commands, the configuration.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context as _, bail};
use course_core::site::{CourseStructure, Lang, Messages, Site, SiteConfig};

/// A site folder as read from disk.
pub struct SiteFiles {
    /// Configuration, texts, hashed asset names and structure, checked.
    pub site: Site,
    /// `templates/*.html`: (name, source), sorted by name.
    pub templates: Vec<(String, String)>,
    /// `static/*`: (hashed name, content), sorted.
    pub assets: Vec<(String, Vec<u8>)>,
}

fn read(path: &Path) -> anyhow::Result<String> {
    std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))
}

fn files_in(dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let mut out: Vec<PathBuf> = std::fs::read_dir(dir)
        .with_context(|| format!("reading the folder {}", dir.display()))?
        .map(|e| e.map(|e| e.path()))
        .collect::<Result<_, _>>()
        .with_context(|| format!("reading the folder {}", dir.display()))?;
    out.retain(|p| p.is_file());
    out.sort();
    Ok(out)
}

fn file_name(path: &Path) -> anyhow::Result<String> {
    path.file_name()
        .and_then(|n| n.to_str())
        .map(str::to_owned)
        .with_context(|| format!("{} has no UTF-8 file name", path.display()))
}

/// Reads and checks just the configuration (what the sync needs).
pub fn load_config(config_path: &Path) -> anyhow::Result<SiteConfig> {
    let config: SiteConfig = toml::from_str(&read(config_path)?).with_context(|| {
        format!(
            "{} is not a valid site configuration",
            config_path.display()
        )
    })?;
    let problems = config.problems();
    if !problems.is_empty() {
        bail!("{}:\n  {}", config_path.display(), problems.join("\n  "));
    }
    Ok(config)
}

/// The texts of one language, `i18n/<lang>.toml` in the site folder `dir`.
fn read_messages(dir: &Path, lang: Lang) -> anyhow::Result<Messages> {
    let path = dir.join("i18n").join(format!("{}.toml", lang.code()));
    let value: toml::Value = toml::from_str(&read(&path)?)
        .with_context(|| format!("{} is not valid TOML", path.display()))?;
    let json =
        serde_json::to_value(value).with_context(|| format!("converting {}", path.display()))?;
    Messages::new(json)
        .map_err(anyhow::Error::msg)
        .with_context(|| format!("in {}", path.display()))
}

/// The configuration and the texts of its language (what the notifications need).
pub fn load_config_and_texts(config_path: &Path) -> anyhow::Result<(SiteConfig, Messages)> {
    let config = load_config(config_path)?;
    let dir = config_path.parent().unwrap_or(Path::new("."));
    let texts = read_messages(dir, config.course.language)?;
    Ok((config, texts))
}

/// Reads and checks the site whose configuration is `config_path`.
pub fn load(config_path: &Path, structure: Option<&Path>) -> anyhow::Result<SiteFiles> {
    let dir = config_path.parent().unwrap_or(Path::new("."));
    let config = load_config(config_path)?;

    let mut messages = BTreeMap::new();
    for lang in Lang::ALL {
        messages.insert(lang, read_messages(dir, lang)?);
    }

    let mut assets = Vec::new();
    let mut asset_urls = BTreeMap::new();
    for path in files_in(&dir.join("static"))? {
        let name = file_name(&path)?;
        let content =
            std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
        let hashed = course_core::assets::hashed_name(&name, &content);
        asset_urls.insert(name, course_core::assets::url(&hashed));
        assets.push((hashed, content));
    }

    let default_structure = dir.join("course-structure.json");
    let structure_path = structure
        .map(Path::to_path_buf)
        .or_else(|| default_structure.is_file().then_some(default_structure));
    let structure: CourseStructure = match structure_path {
        Some(path) => serde_json::from_str(&read(&path)?)
            .with_context(|| format!("{} is not a course structure", path.display()))?,
        None => CourseStructure::default(),
    };

    let site = Site::new(config, messages, asset_urls, structure)
        .map_err(anyhow::Error::msg)
        .with_context(|| format!("in the site at {}", dir.display()))?;

    let mut templates = Vec::new();
    for path in files_in(&dir.join("templates"))? {
        if path.extension().is_some_and(|e| e == "html") {
            templates.push((file_name(&path)?, read(&path)?));
        }
    }
    Ok(SiteFiles {
        site,
        templates,
        assets,
    })
}
