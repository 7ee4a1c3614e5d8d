//! `generator build` as a user runs it: the compiled binary against copies of the
//! shipped site folder (`site/`), edited per test in a temp dir.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use tempfile::TempDir;

const SHIPPED_SITE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../site");

/// What a build leaves in the output besides the site: the list of files it wrote.
const MANIFEST: &str = ".generator-files";

/// The pages of one language, by file name.
const PAGES: [&str; 4] = ["index.html", "login.html", "help.html", "404.html"];

/// What one run of the binary did.
#[derive(Debug)]
struct Run {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

/// Runs `generator <args>` in `cwd`.
fn run_generator(cwd: &Path, args: &[&str]) -> Run {
    let output = Command::new(env!("CARGO_BIN_EXE_generator"))
        .args(args)
        .current_dir(cwd)
        .output()
        .expect("the generator binary runs");
    Run {
        code: output.status.code(),
        stdout: String::from_utf8(output.stdout).expect("stdout is UTF-8"),
        stderr: String::from_utf8(output.stderr).expect("stderr is UTF-8"),
    }
}

/// Asserts a run failed cleanly (exit 1, one `error:` report, no panic, nothing
/// reported as built) and that stderr holds every one of `needles`.
fn assert_failed(run: &Run, needles: &[&str]) {
    assert_eq!(run.code, Some(1), "expected a clean failure: {run:#?}");
    assert!(
        run.stderr.starts_with("error: ") && !run.stderr.contains("panicked"),
        "{}",
        run.stderr
    );
    assert!(!run.stdout.contains("built "), "{}", run.stdout);
    for needle in needles {
        assert!(
            run.stderr.contains(needle),
            "stderr lacks {needle:?}:\n{}",
            run.stderr
        );
    }
}

/// The value of an I/O result, or a panic naming the path.
fn io<T>(result: std::io::Result<T>, path: &Path) -> T {
    result.unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// A path as a command-line argument.
fn arg(path: &Path) -> &str {
    path.to_str().expect("temp paths are UTF-8")
}

/// The entries of a folder: (file name, path, is a folder), sorted by name.
fn entries(dir: &Path) -> Vec<(String, PathBuf, bool)> {
    let mut out: Vec<_> = io(fs::read_dir(dir), dir)
        .map(|entry| {
            let entry = io(entry, dir);
            let name = entry.file_name().into_string().expect("UTF-8 file names");
            (name, entry.path(), io(entry.file_type(), dir).is_dir())
        })
        .collect();
    out.sort();
    out
}

fn copy_dir(from: &Path, to: &Path) {
    io(fs::create_dir_all(to), to);
    for (name, path, is_dir) in entries(from) {
        let target = to.join(name);
        if is_dir {
            copy_dir(&path, &target);
        } else {
            io(fs::copy(&path, &target), &target);
        }
    }
}

/// A temp dir holding a copy of the shipped site as `site/` (configuration, texts,
/// templates, static files; no course structure), ready to be edited and built.
struct Fixture {
    root: TempDir,
}

impl Fixture {
    fn copy_site() -> Self {
        let root = tempfile::tempdir().expect("a temp dir");
        let shipped = Path::new(SHIPPED_SITE);
        let site = root.path().join("site");
        io(fs::create_dir(&site), &site);
        let config = site.join("config.toml");
        io(fs::copy(shipped.join("config.toml"), &config), &config);
        for dir in ["i18n", "templates", "static"] {
            copy_dir(&shipped.join(dir), &site.join(dir));
        }
        Fixture { root }
    }

    /// A path inside the temp dir (`site/config.toml`, `out`, …).
    fn path(&self, rel: &str) -> PathBuf {
        self.root.path().join(rel)
    }

    fn config(&self) -> PathBuf {
        self.path("site/config.toml")
    }

    fn read(&self, rel: &str) -> String {
        let path = self.path(rel);
        io(fs::read_to_string(&path), &path)
    }

    fn write(&self, rel: &str, content: &str) {
        let path = self.path(rel);
        let dir = path.parent().expect("a file in the temp dir");
        io(fs::create_dir_all(dir), dir);
        io(fs::write(&path, content), &path);
    }

    fn append(&self, rel: &str, text: &str) {
        let content = self.read(rel) + text;
        self.write(rel, &content);
    }

    /// Replaces `from`, which must occur exactly once in the file, with `to`.
    fn replace(&self, rel: &str, from: &str, to: &str) {
        let text = self.read(rel);
        assert_eq!(
            text.matches(from).count(),
            1,
            "the fixture {rel} should hold {from:?} once"
        );
        self.write(rel, &text.replacen(from, to, 1));
    }

    /// The 1-based number of the one line that starts with `start`.
    fn line_of(&self, rel: &str, start: &str) -> usize {
        let text = self.read(rel);
        let found: Vec<usize> = (1..)
            .zip(text.lines())
            .filter(|(_, l)| l.starts_with(start))
            .map(|(n, _)| n)
            .collect();
        assert_eq!(found.len(), 1, "{rel} should have one line {start:?}…");
        found[0]
    }

    /// Inserts `line` so that it becomes line number `number` (1-based).
    fn insert_line(&self, rel: &str, number: usize, line: &str) {
        let mut lines: Vec<String> = self.read(rel).lines().map(str::to_owned).collect();
        lines.insert(number - 1, line.to_owned());
        self.write(rel, &(lines.join("\n") + "\n"));
    }

    /// Removes the one line that starts with `start`.
    fn drop_line(&self, rel: &str, start: &str) {
        let number = self.line_of(rel, start);
        let text = self.read(rel);
        let kept: Vec<&str> = (1..)
            .zip(text.lines())
            .filter(|(n, _)| *n != number)
            .map(|(_, l)| l)
            .collect();
        self.write(rel, &(kept.join("\n") + "\n"));
    }

    /// Edits `site/config.toml` as data (comments and layout are lost).
    fn edit_config(&self, edit: impl FnOnce(&mut toml::Table)) {
        let mut config: toml::Table = self
            .read("site/config.toml")
            .parse()
            .expect("the shipped configuration is TOML");
        edit(&mut config);
        let text = toml::to_string(&config).expect("a TOML table serializes");
        self.write("site/config.toml", &text);
    }

    /// `generator build --config site/config.toml --out <out> <extra>`, run in the
    /// temp dir.
    fn build(&self, out: &str, extra: &[&str]) -> Run {
        let config = self.config();
        let out = self.path(out);
        let mut args = vec!["build", "--config", arg(&config), "--out", arg(&out)];
        args.extend_from_slice(extra);
        run_generator(self.root.path(), &args)
    }

    /// Builds into `out`, which must succeed.
    fn build_ok(&self, out: &str, extra: &[&str]) -> Built<'_> {
        let run = self.build(out, extra);
        assert_eq!(run.code, Some(0), "the build failed: {run:#?}");
        assert!(run.stderr.is_empty(), "{}", run.stderr);
        Built {
            dir: self.path(out),
            run,
            _fixture: self,
        }
    }

    /// Builds into `out`, which must fail cleanly naming `needles`.
    fn build_fails(&self, needles: &[&str]) -> Run {
        let run = self.build("out", &[]);
        assert_failed(&run, needles);
        run
    }
}

/// `[course]` of a configuration being edited.
fn course(config: &mut toml::Table) -> &mut toml::Table {
    config["course"]
        .as_table_mut()
        .expect("[course] is a table")
}

/// `videos[i]` of a configuration being edited.
fn video(config: &mut toml::Table, i: usize) -> &mut toml::Table {
    config["videos"]
        .as_array_mut()
        .expect("[[videos]] is an array")[i]
        .as_table_mut()
        .expect("a video is a table")
}

/// The copied site with one change to its configuration must not build; stderr
/// names the configuration file and holds every one of `needles`.
fn config_rejected(edit: impl FnOnce(&mut toml::Table), needles: &[&str]) {
    let f = Fixture::copy_site();
    f.edit_config(edit);
    let run = f.build_fails(needles);
    assert!(run.stderr.contains(arg(&f.config())), "{}", run.stderr);
}

/// A finished build; it borrows its fixture, whose temp dir holds the output.
struct Built<'a> {
    dir: PathBuf,
    run: Run,
    _fixture: &'a Fixture,
}

impl Built<'_> {
    /// Every file written: path relative to the output (with `/`) → content.
    fn tree(&self) -> BTreeMap<String, Vec<u8>> {
        fn walk(dir: &Path, prefix: &str, out: &mut BTreeMap<String, Vec<u8>>) {
            for (name, path, is_dir) in entries(dir) {
                let name = format!("{prefix}{name}");
                if is_dir {
                    walk(&path, &format!("{name}/"), out);
                } else {
                    out.insert(name, io(fs::read(&path), &path));
                }
            }
        }
        let mut out = BTreeMap::new();
        walk(&self.dir, "", &mut out);
        out
    }

    /// A written file as text.
    fn page(&self, rel: &str) -> String {
        fs::read_to_string(self.dir.join(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
    }

    /// Every HTML page: (path, content).
    fn pages(&self) -> Vec<(String, String)> {
        self.tree()
            .into_iter()
            .filter(|(name, _)| name.ends_with(".html"))
            .map(|(name, bytes)| {
                let html = String::from_utf8(bytes).unwrap_or_else(|e| panic!("{name}: {e}"));
                (name, html)
            })
            .collect()
    }

    /// The one hashed stylesheet in `assets/`: its file name.
    fn stylesheet(&self) -> String {
        let names: Vec<String> = entries(&self.dir.join("assets"))
            .into_iter()
            .map(|(name, _, _)| name)
            .collect();
        let [name] = <[String; 1]>::try_from(names)
            .unwrap_or_else(|names| panic!("one file in assets/, not {names:?}"));
        let hash = name
            .strip_prefix("style.")
            .and_then(|n| n.strip_suffix(".css"))
            .unwrap_or_else(|| panic!("{name} is not style.<hash>.css"));
        assert!(
            hash.len() == 16
                && hash
                    .bytes()
                    .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)),
            "{name} is not style.<16 hex digits>.css"
        );
        name
    }

    /// The site's files as listed by the manifest, which must list exactly what is in
    /// the output, without the manifest and the stylesheet.
    fn pages_and_headers(&self) -> BTreeSet<String> {
        let mut names: BTreeSet<String> = self.tree().into_keys().collect();
        assert!(names.remove(MANIFEST), "no {MANIFEST} in {names:?}");
        let listed: BTreeSet<String> = self.page(MANIFEST).lines().map(str::to_owned).collect();
        assert_eq!(listed, names, "{MANIFEST} should list every file written");
        assert!(names.remove(&format!("assets/{}", self.stylesheet())));
        names
    }

    /// Asserts every page links exactly the stylesheet in `assets/` and no other asset.
    fn assert_pages_use_the_stylesheet(&self) -> String {
        let sheet = self.stylesheet();
        let expected = BTreeSet::from([format!("/assets/{sheet}")]);
        for (name, html) in self.pages() {
            assert_eq!(asset_refs(&html), expected, "{name}");
            assert!(
                html.contains(&format!(
                    r#"<link rel="stylesheet" href="/assets/{sheet}">"#
                )),
                "{name}"
            );
        }
        sheet
    }
}

/// Every `/assets/…` URL a page mentions.
fn asset_refs(html: &str) -> BTreeSet<String> {
    html.match_indices("/assets/")
        .map(|(i, _)| {
            let rest = &html[i..];
            let end = rest.find(['"', '\'', ')', ' ', '>']).unwrap_or(rest.len());
            rest[..end].to_owned()
        })
        .collect()
}

/// Asserts `html` shows the items in order, each `(title, text)` with its text after
/// its title and before the next title.
fn assert_listed_in_order(html: &str, items: &[(&str, &str)]) {
    let mut from = 0;
    for (i, (title, text)) in items.iter().enumerate() {
        let at = |needle: &str, start: usize| {
            html[start..]
                .find(needle)
                .map(|p| p + start)
                .unwrap_or_else(|| panic!("{needle:?} missing after byte {start}:\n{html}"))
        };
        let title_at = at(title, from);
        let text_at = at(text, title_at);
        if let Some((next, _)) = items.get(i + 1) {
            assert!(
                text_at < at(next, title_at),
                "{text:?} should come before {next:?}"
            );
        }
        from = text_at;
    }
}

/// The shipped videos and what unlocks them, in Russian and English.
const SHIPPED_UNLOCKS: [(&str, &str, &str); 4] = [
    (
        "intro",
        "Открыто всем студентам курса",
        "Open to every student of the course",
    ),
    (
        "basics",
        "Решить все задания: урок 8001",
        "Solve every quiz of lesson 8001",
    ),
    (
        "practice",
        "Решить не меньше 80% заданий: урок 8002, урок 8003",
        "Solve at least 80% of the quizzes of lesson 8002, lesson 8003",
    ),
    (
        "final",
        "Решить все задания: раздел 501, раздел 502; набрать не меньше 30 баллов",
        "Solve every quiz of section 501, section 502; score at least 30 points",
    ),
];

/// The root's files plus the other language's under `other/`, and the rest.
fn expected_files(other: &str) -> BTreeSet<String> {
    PAGES
        .iter()
        .flat_map(|p| [p.to_string(), format!("{other}/{p}")])
        .chain(["_headers".to_owned()])
        .collect()
}

#[test]
fn the_shipped_site_builds_into_every_file_and_reports_each() {
    let f = Fixture::copy_site();
    let built = f.build_ok("out", &[]);
    assert_eq!(built.pages_and_headers(), expected_files("en"));
    let mut tree = built.tree();
    tree.remove(MANIFEST);
    let sheet = built.stylesheet();
    assert_eq!(
        tree[&format!("assets/{sheet}")],
        fs::read(f.path("site/static/style.css")).unwrap()
    );

    // One "wrote <path> (<n> bytes)" line per file, then the summary.
    let lines: Vec<&str> = built.run.stdout.lines().collect();
    assert_eq!(lines.len(), tree.len() + 1, "{}", built.run.stdout);
    let mut reported = BTreeSet::new();
    for line in &lines[..tree.len()] {
        let (path, size) = line
            .strip_prefix("  wrote ")
            .and_then(|l| l.rsplit_once(" ("))
            .unwrap_or_else(|| panic!("not a wrote line: {line:?}"));
        let rel = Path::new(path)
            .strip_prefix(&built.dir)
            .unwrap_or_else(|_| panic!("{path} is not in {}", built.dir.display()));
        let rel = arg(rel).replace('\\', "/");
        assert_eq!(size, format!("{} bytes)", tree[&rel].len()), "{line}");
        assert!(reported.insert(rel), "{line} twice");
    }
    assert_eq!(reported.len(), tree.len());
    let summary = lines[tree.len()]
        .strip_prefix(&format!(
            "built {} files into {} in ",
            tree.len(),
            built.dir.display()
        ))
        .and_then(|rest| rest.strip_suffix(" ms"))
        .unwrap_or_else(|| panic!("bad summary: {:?}", lines[tree.len()]));
    assert!(summary.parse::<u64>().is_ok(), "{summary}");
}

#[test]
fn the_shipped_site_has_both_languages_and_one_stylesheet() {
    let f = Fixture::copy_site();
    let built = f.build_ok("out", &[]);
    for page in PAGES {
        assert!(
            built
                .page(page)
                .starts_with("<!doctype html>\n<html lang=\"ru\">"),
            "{page}"
        );
        assert!(
            built
                .page(&format!("en/{page}"))
                .starts_with("<!doctype html>\n<html lang=\"en\">"),
            "en/{page}"
        );
    }
    built.assert_pages_use_the_stylesheet();
    assert!(built.page("404.html").contains("Страница не найдена"));
    assert!(built.page("en/404.html").contains("Page not found"));
}

#[test]
fn the_stylesheet_hash_follows_its_content() {
    let f = Fixture::copy_site();
    let before = f.build_ok("before", &[]).assert_pages_use_the_stylesheet();
    f.append("site/static/style.css", "\n/* changed */\n");
    let after = f.build_ok("after", &[]);
    let changed = after.assert_pages_use_the_stylesheet();
    assert_ne!(before, changed);
    assert!(
        after
            .page(&format!("assets/{changed}"))
            .ends_with("/* changed */\n")
    );
}

#[test]
fn a_rebuild_removes_only_what_the_last_build_wrote() {
    let f = Fixture::copy_site();
    let old = f.build_ok("out", &[]).stylesheet();
    f.write("out/mine.txt", "not the generator's");
    f.write("out/assets/mine.css", "neither");
    f.append("site/static/style.css", "\n/* changed */\n");
    let removed = |rel: &str| format!("  removed {}\n", f.path(rel).display());

    let built = f.build_ok("out", &[]);
    assert!(
        built
            .run
            .stdout
            .contains(&removed(&format!("out/assets/{old}")))
    );
    assert!(!f.path(&format!("out/assets/{old}")).exists());
    assert_eq!(f.read("out/mine.txt"), "not the generator's");
    assert_eq!(f.read("out/assets/mine.css"), "neither");

    // Switching the root language drops the pages under en/ for those under ru/.
    f.edit_config(|c| {
        course(c).insert("language".into(), "en".into());
    });
    let built = f.build_ok("out", &[]);
    for page in PAGES {
        assert!(
            built
                .run
                .stdout
                .contains(&removed(&format!("out/en/{page}")))
        );
        assert!(!f.path(&format!("out/en/{page}")).exists());
        assert!(f.path(&format!("out/ru/{page}")).is_file());
    }
}

#[test]
fn the_landing_page_lists_every_video_with_what_unlocks_it() {
    let f = Fixture::copy_site();
    let config: toml::Table = f.read("site/config.toml").parse().unwrap();
    let videos = config["videos"].as_array().unwrap();
    let ids: Vec<&str> = videos.iter().map(|v| v["id"].as_str().unwrap()).collect();
    let known: Vec<&str> = SHIPPED_UNLOCKS.iter().map(|(id, _, _)| *id).collect();
    assert_eq!(
        ids, known,
        "site/config.toml's videos changed: update SHIPPED_UNLOCKS"
    );

    let built = f.build_ok("out", &[]);
    for (page, english) in [("index.html", false), ("en/index.html", true)] {
        let html = built.page(page);
        let items: Vec<(&str, &str)> = videos
            .iter()
            .zip(SHIPPED_UNLOCKS)
            .map(|(v, (_, ru, en))| {
                let title = v["title"].as_str().unwrap();
                (title, if english { en } else { ru })
            })
            .collect();
        assert_listed_in_order(&html, &items);
        for v in videos {
            if let Some(d) = v.get("description") {
                assert!(html.contains(d.as_str().unwrap()), "{page}");
            }
        }
        assert!(
            html.contains(r#"href="https://stepik.org/course/9001""#),
            "{page}"
        );
    }
}

/// The address of a page's language switch (the link with `hreflang="<to>"`).
fn language_switch(html: &str, to: &str) -> String {
    let end = html
        .find(&format!(r#"" hreflang="{to}""#))
        .unwrap_or_else(|| panic!("no link to the {to} version:\n{html}"));
    let start = html[..end]
        .rfind(r#"href=""#)
        .expect("the link has an href")
        + 6;
    html[start..end].to_owned()
}

/// A login page of a build: where it posts, what labels the password field, and the
/// language it switches to and where.
struct LoginPage<'a> {
    file: &'a str,
    action: &'a str,
    password: &'a str,
    other: &'a str,
    switch: &'a str,
}

impl LoginPage<'_> {
    fn check(&self, built: &Built<'_>) {
        let Self {
            file,
            action,
            password,
            other,
            switch,
        } = self;
        let html = built.page(file);
        for needle in [
            format!(r#"method="post" action="{action}""#),
            r#"name="email" type="email""#.to_owned(),
            r#"name="password" type="password""#.to_owned(),
            password.to_string(),
        ] {
            assert!(html.contains(&needle), "{file} lacks {needle}:\n{html}");
        }
        // A link into the root language may add `?lang=<code>`, for the worker's cookie.
        let href = language_switch(&html, other);
        assert!(
            href == *switch || href == format!("{switch}?lang={other}"),
            "{file} switches to {href}, not {switch}"
        );
    }
}

#[test]
fn the_login_page_posts_the_form_and_switches_language() {
    let f = Fixture::copy_site();
    let built = f.build_ok("out", &[]);
    for page in [
        LoginPage {
            file: "login.html",
            action: "/login",
            password: "Пароль",
            other: "en",
            switch: "/en/login",
        },
        LoginPage {
            file: "en/login.html",
            action: "/en/login",
            password: "Password",
            other: "ru",
            switch: "/login",
        },
    ] {
        page.check(&built);
    }
}

#[test]
fn the_headers_file_has_the_security_headers_and_immutable_assets() {
    let headers = Fixture::copy_site().build_ok("out", &[]).page("_headers");
    assert!(headers.starts_with("/*\n"), "{headers}");
    for needle in [
        "  content-security-policy: default-src 'self';",
        "frame-ancestors 'none'",
        "  strict-transport-security: max-age=31536000\n",
        "  x-content-type-options: nosniff\n",
        "\n/assets/*\n  cache-control: public, max-age=31536000, immutable\n",
    ] {
        assert!(headers.contains(needle), "{needle}:\n{headers}");
    }
}

#[test]
fn defaults_are_site_config_toml_and_dist() {
    let f = Fixture::copy_site();
    let run = run_generator(f.root.path(), &["build"]);
    assert_eq!(run.code, Some(0), "{run:#?}");
    // The pages, `_headers` and the stylesheet.
    let files = expected_files("en").len() + 1;
    let summary = format!("built {files} files into dist in ");
    assert!(run.stdout.contains(&summary), "{run:#?}");
    assert!(f.path("dist/en/login.html").is_file());
}

#[test]
fn builds_are_byte_identical() {
    let f = Fixture::copy_site();
    let one = f.build_ok("one", &[]).tree();
    assert_eq!(one, f.build_ok("two", &[]).tree());
    // Nothing of where the site or the output lives leaks into the files.
    assert_eq!(one, Fixture::copy_site().build_ok("elsewhere", &[]).tree());
}

#[test]
fn course_and_video_texts_are_escaped_on_every_page() {
    const TITLE: &str = r#"<script>alert(1)</script> "quotes" & Tom & Jerry"#;
    const TITLE_HTML: &str =
        "&lt;script&gt;alert(1)&lt;/script&gt; &quot;quotes&quot; &amp; Tom &amp; Jerry";
    let f = Fixture::copy_site();
    f.edit_config(|c| {
        let course = course(c);
        course.insert("title".into(), TITLE.into());
        course.insert("description".into(), r#"AT&amp;T "<b>bold</b>""#.into());
        course.insert("contact_email".into(), r#""<i>x</i>"@example.com"#.into());
        let v = video(c, 1);
        v.insert(
            "title".into(),
            r#"<img src=x onerror="alert(2)"> & more"#.into(),
        );
        v.insert("description".into(), "<u>under</u> & \"over\"".into());
    });
    f.write(
        "site/course-structure.json",
        r#"{"lessons": {"8001": {"title": "<em>Основы</em> & \"ещё\""}}}"#,
    );
    let built = f.build_ok("out", &[]);
    let description =
        r#"<meta name="description" content="AT&amp;amp;T &quot;&lt;b&gt;bold&lt;/b&gt;&quot;">"#;
    let pages = built.pages();
    assert_eq!(pages.len(), 8);
    for (name, html) in &pages {
        for raw in [
            "<script>alert",
            "\"quotes\"",
            "<b>",
            "<img",
            "<u>",
            "<em>",
            "<i>",
        ] {
            assert!(!html.contains(raw), "{name} holds {raw:?} unescaped");
        }
        assert!(
            html.contains(&format!("<title>{TITLE_HTML}</title>"))
                || html.contains(&format!(" — {TITLE_HTML}</title>")),
            "{name}: {html}"
        );
        assert!(
            html.contains(&format!(r#"class="brand" href="/">{TITLE_HTML}</a>"#))
                || html.contains(&format!(r#"class="brand" href="/en/">{TITLE_HTML}</a>"#)),
            "{name}"
        );
        assert!(html.contains(description), "{name}");
    }
    for index in ["index.html", "en/index.html"] {
        let html = built.page(index);
        for needle in [
            TITLE_HTML,
            "&lt;img src=x onerror=&quot;alert(2)&quot;&gt; &amp; more",
            "&lt;u&gt;under&lt;/u&gt; &amp; &quot;over&quot;",
            "&lt;em&gt;Основы&lt;/em&gt; &amp; &quot;ещё&quot;",
        ] {
            assert!(html.contains(needle), "{index} lacks {needle}:\n{html}");
        }
    }
    for help in ["help.html", "en/help.html"] {
        assert!(
            built
                .page(help)
                .contains(r#"href="mailto:&quot;&lt;i&gt;x&lt;/i&gt;&quot;@example.com""#),
            "{help}"
        );
    }
}

#[test]
fn an_english_site_has_russian_under_ru() {
    let f = Fixture::copy_site();
    f.edit_config(|c| {
        course(c).insert("language".into(), "en".into());
    });
    let built = f.build_ok("out", &[]);
    assert_eq!(built.pages_and_headers(), expected_files("ru"));
    for page in PAGES {
        assert!(built.page(page).contains("<html lang=\"en\">"), "{page}");
        assert!(
            built
                .page(&format!("ru/{page}"))
                .contains("<html lang=\"ru\">"),
            "ru/{page}"
        );
    }
    built.assert_pages_use_the_stylesheet();
    for page in [
        LoginPage {
            file: "login.html",
            action: "/login",
            password: "Password",
            other: "ru",
            switch: "/ru/login",
        },
        LoginPage {
            file: "ru/login.html",
            action: "/ru/login",
            password: "Пароль",
            other: "en",
            switch: "/login",
        },
    ] {
        page.check(&built);
    }
    assert!(
        built
            .page("index.html")
            .contains("Open to every student of the course")
    );
    assert!(
        built
            .page("ru/index.html")
            .contains("Открыто всем студентам курса")
    );
}

#[test]
fn a_telegram_bot_adds_the_widget_to_the_login_pages() {
    let f = Fixture::copy_site();
    f.edit_config(|c| {
        course(c).insert("telegram_bot".into(), "course_bot".into());
    });
    let built = f.build_ok("out", &[]);
    for page in ["login.html", "en/login.html"] {
        let html = built.page(page);
        assert!(
            html.contains("https://telegram.org/js/telegram-widget.js"),
            "{page}"
        );
        assert!(
            html.contains(r#"data-telegram-login="course_bot""#),
            "{page}"
        );
    }
    assert!(built.page("help.html").contains("Вход через Telegram"));
    assert!(
        built
            .page("en/help.html")
            .contains("Signing in with Telegram")
    );
}

#[test]
fn without_a_telegram_bot_no_page_loads_the_widget() {
    let f = Fixture::copy_site();
    let config: toml::Table = f.read("site/config.toml").parse().unwrap();
    assert!(
        !config["course"]
            .as_table()
            .unwrap()
            .contains_key("telegram_bot"),
        "the shipped site now has a bot: remove it in this test"
    );
    let built = f.build_ok("out", &[]);
    for (name, html) in built.pages() {
        assert!(!html.contains("telegram-widget.js"), "{name}");
        assert!(!html.contains("data-telegram-login"), "{name}");
    }
}

const STRUCTURE: &str = r#"{
    "lessons": {"8001": {"title": "Основы"}},
    "sections": {"501": {"title": "Первый раздел"}}
}"#;

#[test]
fn a_course_structure_beside_the_config_names_lessons_and_sections() {
    let f = Fixture::copy_site();
    f.write("site/course-structure.json", STRUCTURE);
    let built = f.build_ok("out", &[]);
    let ru = built.page("index.html");
    assert!(ru.contains("урок «Основы»"), "{ru}");
    assert!(!ru.contains("урок 8001"), "{ru}");
    assert!(ru.contains("раздел «Первый раздел», раздел 502"), "{ru}");
    assert!(ru.contains("урок 8002"), "unknown lessons keep their id");
    let en = built.page("en/index.html");
    assert!(en.contains("lesson “Основы”"), "{en}");
    assert!(en.contains("section “Первый раздел”, section 502"), "{en}");
}

#[test]
fn structure_option_takes_another_file() {
    let f = Fixture::copy_site();
    // The option wins over the file beside the configuration.
    f.write("site/course-structure.json", STRUCTURE);
    f.write(
        "other.json",
        r#"{"lessons": {"8001": {"title": "Другие основы"}}}"#,
    );
    let built = f.build_ok("out", &["--structure", "other.json"]);
    let html = built.page("index.html");
    assert!(html.contains("урок «Другие основы»"), "{html}");
    assert!(!html.contains("Первый раздел"), "{html}");
}

#[test]
fn a_malformed_structure_file_is_named() {
    let f = Fixture::copy_site();
    f.write("site/course-structure.json", r#"{"lessons": {"8001": "#);
    let path = f.path("site/course-structure.json");
    f.build_fails(&[arg(&path), "is not a course structure"]);

    f.write("other.json", r#"{"lessons": {"x": {"title": "t"}}}"#);
    let run = f.build("out", &["--structure", "other.json"]);
    assert_failed(&run, &["other.json", "is not a course structure"]);

    let run = f.build("out", &["--structure", "missing.json"]);
    assert_failed(&run, &["missing.json"]);
}

#[test]
fn unknown_course_key_is_named() {
    config_rejected(
        |c| {
            course(c).insert("titel".into(), "x".into());
        },
        &["unknown field `titel`", "expected one of `title`"],
    );
}

#[test]
fn unknown_unlock_key_is_named() {
    config_rejected(
        |c| {
            let unlock = video(c, 1)["unlock"].as_table_mut().unwrap();
            unlock.insert("lesson".into(), toml::Value::Array(vec![8001.into()]));
        },
        &["unknown field `lesson`", "expected one of"],
    );
}

#[test]
fn duplicate_video_ids_are_named() {
    config_rejected(
        |c| {
            let first = video(c, 0)["id"].clone();
            video(c, 1).insert("id".into(), first);
        },
        &["videos[1] (id \"intro\").id: duplicate video id (also videos[0])"],
    );
}

#[test]
fn a_rule_naming_nothing_is_named() {
    config_rejected(
        |c| {
            video(c, 1).insert("unlock".into(), toml::Table::new().into());
        },
        &["videos[1]", ".unlock: the rule names nothing"],
    );
}

#[test]
fn a_missing_media_code_is_named() {
    config_rejected(
        |c| {
            video(c, 1).remove("media_code");
        },
        &["missing field `media_code`"],
    );
}

#[test]
fn an_empty_media_code_is_named() {
    config_rejected(
        |c| {
            video(c, 1).insert("media_code".into(), "".into());
        },
        &["videos[1]", ".media_code: missing Boomstream media code"],
    );
}

#[test]
fn a_share_over_one_is_named() {
    config_rejected(
        |c| {
            let unlock = video(c, 1)["unlock"].as_table_mut().unwrap();
            unlock.insert("min_share".into(), 1.5.into());
        },
        &[
            "videos[1]",
            ".unlock: min_share must be more than 0 and at most 1, not 1.5",
        ],
    );
}

#[test]
fn a_bad_base_url_is_named() {
    for bad in ["ftp://course.example.com", "https://course.example.com/"] {
        config_rejected(
            |c| {
                course(c).insert("base_url".into(), bad.into());
            },
            &["course.base_url", bad],
        );
    }
}

#[test]
fn a_bad_telegram_bot_is_named() {
    config_rejected(
        |c| {
            course(c).insert("telegram_bot".into(), "no bot".into());
        },
        &["course.telegram_bot", "\"no bot\""],
    );
}

#[test]
fn every_problem_is_reported_at_once() {
    config_rejected(
        |c| {
            course(c).insert("base_url".into(), "nope".into());
            video(c, 2).insert("media_code".into(), " ".into());
        },
        &["course.base_url", "videos[2]", ".media_code: missing"],
    );
}

#[test]
fn invalid_toml_shows_the_line() {
    let f = Fixture::copy_site();
    let line = f.line_of("site/config.toml", "base_url = ");
    f.replace("site/config.toml", "base_url = ", "base_url = = ");
    let config = f.config();
    f.build_fails(&[arg(&config), &format!("at line {line}, column")]);
}

#[test]
fn a_missing_config_file_is_named() {
    let f = Fixture::copy_site();
    fs::remove_file(f.config()).unwrap();
    let config = f.config();
    f.build_fails(&[&format!("reading {}", config.display())]);
}

#[test]
fn a_missing_english_text_is_named() {
    let f = Fixture::copy_site();
    f.drop_line("site/i18n/en.toml", "footer = ");
    f.build_fails(&["i18n/en.toml: key footer is missing (it is in ru.toml)"]);
}

#[test]
fn a_broken_message_file_is_named() {
    let f = Fixture::copy_site();
    let line = f.line_of("site/i18n/ru.toml", "footer = ");
    f.replace("site/i18n/ru.toml", "\nfooter = ", "\nfooter = = ");
    let ru = f.path("site/i18n/ru.toml");
    f.build_fails(&[
        &format!("{} is not valid TOML", ru.display()),
        &format!("line {line}"),
    ]);

    let f = Fixture::copy_site();
    f.replace("site/i18n/en.toml", "\nfooter = \"", "\nfooter = 1 #\"");
    f.build_fails(&[
        "i18n/en.toml",
        "footer: must be a string or a table of strings",
    ]);
}

#[test]
fn a_template_syntax_error_names_the_file_and_line() {
    let f = Fixture::copy_site();
    f.insert_line("site/templates/help.html", 3, "{% if %}");
    f.build_fails(&["compiling the templates", "help.html:3:"]);
}

#[test]
fn an_unknown_message_key_in_a_template_fails_the_build() {
    // tera 2 is strict: a missing field is an error naming the field, the template
    // and the line, not an empty string.
    let f = Fixture::copy_site();
    let line = f.line_of("site/templates/help.html", "{% block content %}") + 1;
    f.insert_line(
        "site/templates/help.html",
        line,
        "<p>{{ t.no_such_key }}</p>",
    );
    f.build_fails(&[
        "rendering help.html (ru)",
        "Field `no_such_key` is not defined",
        &format!("help.html:{line}:"),
    ]);
}

#[test]
fn an_unwritable_out_dir_is_named() {
    let f = Fixture::copy_site();
    f.write("file", "a regular file");
    let run = f.build("file/out", &[]);
    let out = f.path("file/out");
    assert_failed(&run, &[&format!("creating {}", out.display())]);
}
