//! Compiles the site's configuration and message files (`site/config.toml`,
//! `site/i18n/*.toml`) and the static files' hashed names into one JSON document for
//! the worker, so it needs no TOML parser at run time. A broken file does not stop the
//! build: the JSON then carries the error, the worker reports it (503 and a log line),
//! and `generator build` reports it with file and key.

#[path = "src/assets.rs"]
#[allow(dead_code, unreachable_pub)]
mod assets;

use std::path::Path;

fn toml_to_json(path: &Path) -> Result<serde_json::Value, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let value: toml::Value =
        toml::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?;
    serde_json::to_value(value).map_err(|e| format!("{}: {e}", path.display()))
}

fn main() {
    // Read at run time: a build script binary reused from a clone elsewhere (a shared
    // target directory) must still read this checkout's site.
    let manifest_dir = std::env::var_os("CARGO_MANIFEST_DIR").unwrap_or_default();
    let site = Path::new(&manifest_dir).join("../site");
    println!(
        "cargo:rerun-if-changed={}",
        site.join("config.toml").display()
    );
    println!("cargo:rerun-if-changed={}", site.join("i18n").display());
    println!("cargo:rerun-if-changed={}", site.join("static").display());

    let mut errors = Vec::new();
    let mut load = |path: &Path| {
        println!("cargo:rerun-if-changed={}", path.display());
        toml_to_json(path).unwrap_or_else(|e| {
            errors.push(e);
            serde_json::Value::Null
        })
    };
    let config = load(&site.join("config.toml"));
    let messages = serde_json::json!({
        "ru": load(&site.join("i18n/ru.toml")),
        "en": load(&site.join("i18n/en.toml")),
    });

    let mut assets = serde_json::Map::new();
    let mut names: Vec<_> = std::fs::read_dir(site.join("static"))
        .map(|dir| {
            dir.filter_map(|e| e.ok())
                .map(|e| e.path())
                .filter(|p| p.is_file())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    for path in names {
        println!("cargo:rerun-if-changed={}", path.display());
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default()
            .to_owned();
        match std::fs::read(&path) {
            Ok(content) => {
                let url = assets::url(&assets::hashed_name(&name, &content));
                assets.insert(name, url.into());
            }
            Err(e) => errors.push(format!("{}: {e}", path.display())),
        }
    }

    for e in &errors {
        println!("cargo:warning=site configuration: {e}");
    }
    // Lesson and section titles from the last sync, when there is one; else the bundled
    // demo course's (used only when the configuration is the demo course's).
    let synced = site.join("course-structure.json");
    let demo = site.join("demo/course-structure.json");
    println!("cargo:rerun-if-changed={}", synced.display());
    println!("cargo:rerun-if-changed={}", demo.display());
    let structure_is_demo = !synced.exists();
    let structure_path = if structure_is_demo { demo } else { synced };
    let structure = match std::fs::read_to_string(&structure_path) {
        Ok(text) => serde_json::from_str::<serde_json::Value>(&text).unwrap_or_else(|e| {
            errors.push(format!("{}: {e}", structure_path.display()));
            serde_json::Value::Null
        }),
        Err(_) => serde_json::Value::Null,
    };
    let document = serde_json::json!({
        "structure": structure,
        "structure_is_demo": structure_is_demo,
        "config": config,
        "messages": messages,
        "assets": assets,
        "errors": errors,
    });
    let out = Path::new(&std::env::var("OUT_DIR").expect("cargo sets OUT_DIR")).join("site.json");
    std::fs::write(&out, document.to_string()).expect("OUT_DIR is writable");
}
