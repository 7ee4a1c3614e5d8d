//! The site's pages: tera templates from `site/templates`, embedded at build time so
//! the generator (static pages) and the worker (dynamic pages) render the same files,
//! in either language, with the texts of `site/i18n`.

use serde::Serialize;
use tera::{Context, Tera};

use crate::site::{Lang, Messages, Site};

/// Embeds templates from `site/templates` under their file names.
macro_rules! templates {
    ($($name:literal),* $(,)?) => {
        &[$(($name, include_str!(concat!("../../site/templates/", $name)))),*]
    };
}

/// Every template, by name, as compiled into this crate.
pub const TEMPLATES: &[(&str, &str)] = templates![
    "base.html",
    "index.html",
    "help.html",
    "video.html",
    "login.html",
    "logout.html",
    "me.html",
    "error.html",
    "dev_telegram.html",
    "telegram_widget.html",
    "link_telegram.html",
];

/// The login form as rendered (statically, or by the worker with an error).
#[derive(Debug, Clone, Default, Serialize)]
pub struct LoginView {
    /// The one error message, if any.
    pub error: Option<String>,
    /// The e-mail to put back into the form.
    pub email: Option<String>,
    /// Where to go after login (already validated).
    pub next: Option<String>,
}

/// One video on /me or the landing page.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct VideoItem {
    /// Title.
    pub title: String,
    /// Where to watch it (granted videos only).
    pub watch_url: Option<String>,
    /// What unlocks it, in words (locked videos and the landing page).
    pub unlock: Option<String>,
    /// The video's description, if the configuration has one.
    pub description: Option<String>,
    /// Its watch page on this site (granted videos on /me).
    pub page_url: Option<String>,
}

/// The student's page.
#[derive(Debug, Clone, Serialize)]
pub struct MeView {
    /// Their name (or e-mail when no name is known).
    pub student_name: String,
    /// `password` or `telegram`.
    pub auth_method: &'static str,
    /// Videos they may watch, in course order.
    pub granted: Vec<VideoItem>,
    /// Videos not yet unlocked, in course order.
    pub locked: Vec<VideoItem>,
    /// Progress from the last sync, in words, if any.
    pub progress: Option<ProgressView>,
    /// The student's Boomstream access code, if the sync has made one.
    pub access_code: Option<String>,
    /// The linked Telegram account.
    pub telegram_id: Option<i64>,
    /// Unlinking is offered only to accounts that can still sign in with a password.
    pub can_unlink_telegram: bool,
    /// The student pressed "link Telegram" a moment ago: the widget is shown (else the
    /// button that starts linking).
    pub telegram_link_open: bool,
    /// The progress check: its button, or why there is none.
    pub check: CheckView,
    /// The messages about new videos.
    pub notify: NotifyView,
}

/// The messages about new videos on /me.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct NotifyView {
    /// The student gets them (else they turned them off).
    pub on: bool,
    /// Where they go (when on).
    pub channel: Option<String>,
    /// What a channel refused (a blocked bot, a bounced address).
    pub problems: Vec<String>,
}

/// The progress check on /me.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct CheckView {
    /// The button «Проверить прогресс» is shown.
    pub button: bool,
    /// Instead: how to link a Stepik account (the student has none linked).
    pub link_hint: Option<String>,
    /// Instead: when the scheduled sync updates progress (the worker cannot check).
    pub schedule: Option<String>,
    /// What the last check the student asked for came to.
    pub notice: Option<String>,
    /// The notice is a problem (shown as a warning).
    pub notice_is_warning: bool,
}

/// The student's Stepik progress on /me.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ProgressView {
    /// "Passed 12 of 40 graded steps."
    pub summary: String,
    /// "Next: «Lesson 2» — 3 more steps." (none when everything is open)
    pub next: Option<String>,
    /// "Updated 25.11.2026 14:05 UTC."
    pub updated: String,
}

/// The watch page of one video.
#[derive(Debug, Clone, Serialize)]
pub struct VideoView {
    /// Title.
    pub title: String,
    /// The configuration's description.
    pub description: Option<String>,
    /// The player's address (pre-authorised when Boomstream confirmed the grant).
    pub player_url: String,
    /// Whether the player is pre-authorised; else the student may need their access code.
    pub preauthorised: bool,
    /// The student's access code, if any.
    pub access_code: Option<String>,
}

/// The confirmation asked before linking a Telegram account.
#[derive(Debug, Clone, Serialize)]
pub struct LinkTelegramView {
    /// The signed-in student.
    pub student_name: String,
    /// The Telegram account's name as Telegram sent it (data: rendered escaped, in its
    /// own element, never as part of a template or message).
    pub telegram_name: String,
    /// Its @username, if it has one.
    pub telegram_username: Option<String>,
    /// Its id.
    pub telegram_id: i64,
    /// The widget's signed query, posted back on confirmation.
    pub payload: String,
}

/// An error page.
#[derive(Debug, Clone, Serialize)]
pub struct ErrorView {
    /// Heading.
    pub heading: String,
    /// One or two sentences.
    pub message: String,
}

/// A render failure, with the template's own report (file and line).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct RenderError(String);

impl From<tera::Error> for RenderError {
    fn from(e: tera::Error) -> Self {
        use std::error::Error as _;
        let mut message = e.to_string();
        let mut source = e.source();
        while let Some(s) = source {
            message.push_str(": ");
            message.push_str(&s.to_string());
            source = s.source();
        }
        RenderError(message)
    }
}

/// The context of pages that show nothing but the course.
#[derive(Serialize)]
struct NoView {}

/// Which language a page is rendered in, and where its other-language version is.
#[derive(Debug, Clone)]
pub struct PageLang {
    /// The page's language.
    pub lang: Lang,
    /// The same page in the other language.
    pub switch_url: String,
}

/// The landing page.
#[derive(Debug, Clone, Serialize)]
struct IndexView {
    videos: Vec<VideoItem>,
    stepik_url: Option<String>,
}

/// What every page's context holds besides its own view.
#[derive(Serialize)]
struct Common<'a> {
    lang: &'static str,
    t: &'a Messages,
    course: &'a crate::site::Course,
    assets: &'a std::collections::BTreeMap<String, String>,
    prefix: String,
    switch_url: &'a str,
    telegram_bot: Option<&'a str>,
}

/// The compiled templates and the site they render.
pub struct Pages {
    tera: Tera,
    site: Site,
}

impl std::fmt::Debug for Pages {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Pages(..)")
    }
}

impl Pages {
    /// The templates and the site compiled into this crate (what the worker uses).
    pub fn embedded() -> Result<Self, RenderError> {
        let site = Site::embedded().map_err(RenderError)?;
        Self::new(TEMPLATES.iter().copied(), site)
    }

    /// Compiles the given templates (name, source) for a site.
    pub fn new<'a>(
        templates: impl IntoIterator<Item = (&'a str, &'a str)>,
        site: Site,
    ) -> Result<Self, RenderError> {
        let mut tera = Tera::default();
        tera.add_raw_templates(templates)?;
        Ok(Pages { tera, site })
    }

    /// The site these pages render.
    pub fn site(&self) -> &Site {
        &self.site
    }

    /// Renders one template in a language, with the common context plus `view`.
    pub fn render(
        &self,
        name: &str,
        page: &PageLang,
        view: &impl Serialize,
    ) -> Result<String, RenderError> {
        let course = &self.site.config.course;
        let common = Common {
            lang: page.lang.code(),
            t: self.site.messages(page.lang),
            course,
            assets: &self.site.assets,
            prefix: self.site.prefix(page.lang),
            switch_url: &page.switch_url,
            telegram_bot: course.telegram_bot.as_deref(),
        };
        let mut ctx = Context::from_serialize(&common)?;
        ctx.extend(Context::from_serialize(view)?);
        Ok(self.tera.render(name, &ctx)?)
    }

    /// The landing page: the course and every video with what unlocks it.
    pub fn index(&self, page: &PageLang) -> Result<String, RenderError> {
        let t = self.site.messages(page.lang);
        let view = IndexView {
            videos: self
                .site
                .config
                .videos
                .iter()
                .map(|v| VideoItem {
                    title: v.title.clone(),
                    watch_url: None,
                    unlock: Some(v.unlock.describe(t, &self.site.structure)),
                    description: v.description.clone(),
                    page_url: None,
                })
                .collect(),
            stepik_url: self
                .site
                .config
                .course
                .stepik_course_id
                .map(|id| format!("https://stepik.org/course/{id}")),
        };
        self.render("index.html", page, &view)
    }

    /// The help page.
    pub fn help(&self, page: &PageLang) -> Result<String, RenderError> {
        self.render("help.html", page, &NoView {})
    }

    /// The login page.
    pub fn login(&self, page: &PageLang, view: &LoginView) -> Result<String, RenderError> {
        self.render("login.html", page, view)
    }

    /// The page with the logout button.
    pub fn logout(&self, page: &PageLang) -> Result<String, RenderError> {
        self.render("logout.html", page, &NoView {})
    }

    /// The student's page.
    pub fn me(&self, page: &PageLang, view: &MeView) -> Result<String, RenderError> {
        self.render("me.html", page, view)
    }

    /// A video's watch page.
    pub fn video(&self, page: &PageLang, view: &VideoView) -> Result<String, RenderError> {
        self.render("video.html", page, view)
    }

    /// An error page.
    pub fn error(&self, page: &PageLang, view: &ErrorView) -> Result<String, RenderError> {
        self.render("error.html", page, view)
    }

    /// The confirmation before linking a Telegram account.
    pub fn link_telegram(
        &self,
        page: &PageLang,
        view: &LinkTelegramView,
    ) -> Result<String, RenderError> {
        self.render("link_telegram.html", page, view)
    }

    /// The local Telegram sign-in page (development only).
    pub fn dev_telegram(&self, page: &PageLang) -> Result<String, RenderError> {
        self.render("dev_telegram.html", page, &NoView {})
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ru() -> PageLang {
        PageLang {
            lang: Lang::Ru,
            switch_url: "/en/".into(),
        }
    }

    fn en() -> PageLang {
        PageLang {
            lang: Lang::En,
            switch_url: "/".into(),
        }
    }

    fn me_view() -> MeView {
        MeView {
            student_name: "<b>Иван</b>".into(),
            auth_method: "telegram",
            granted: vec![VideoItem {
                title: "Введение".into(),
                watch_url: Some("https://play.boomstream.com/abc".into()),
                unlock: None,
                description: None,
                page_url: Some("/me/videos/intro".into()),
            }],
            locked: vec![VideoItem {
                title: "Финал".into(),
                watch_url: None,
                unlock: Some("Решить все задания: урок 8001".into()),
                description: None,
                page_url: None,
            }],
            progress: Some(ProgressView {
                summary: "Пройдено 2 из 4".into(),
                next: Some("Дальше: «Финал»".into()),
                updated: "Обновлено".into(),
            }),
            access_code: Some("CODE-123".into()),
            check: CheckView {
                button: true,
                notice: Some("<i>Открыто</i>".into()),
                ..CheckView::default()
            },
            telegram_id: Some(5_000_000_001),
            can_unlink_telegram: true,
            telegram_link_open: false,
            notify: NotifyView {
                on: true,
                channel: Some("<b>В Telegram</b>".into()),
                problems: vec!["<i>Почта не принята</i>".into()],
            },
        }
    }

    #[test]
    fn every_page_renders_in_both_languages_with_one_layout() {
        let pages = Pages::embedded().unwrap();
        let error = ErrorView {
            heading: "Ошибка".into(),
            message: "Текст".into(),
        };
        let link = LinkTelegramView {
            student_name: "A".into(),
            telegram_name: "B".into(),
            telegram_username: None,
            telegram_id: 1,
            payload: "x".into(),
        };
        for (page, code) in [(ru(), "ru"), (en(), "en")] {
            for html in [
                pages.index(&page).unwrap(),
                pages.help(&page).unwrap(),
                pages.login(&page, &LoginView::default()).unwrap(),
                pages.logout(&page).unwrap(),
                pages.me(&page, &me_view()).unwrap(),
                pages.error(&page, &error).unwrap(),
                pages.dev_telegram(&page).unwrap(),
                pages.link_telegram(&page, &link).unwrap(),
                pages
                    .video(
                        &page,
                        &VideoView {
                            title: "V".into(),
                            description: None,
                            player_url: "https://play.boomstream.com/abc".into(),
                            preauthorised: false,
                            access_code: None,
                        },
                    )
                    .unwrap(),
            ] {
                assert!(
                    html.starts_with(&format!("<!doctype html>\n<html lang=\"{code}\">")),
                    "{html}"
                );
                assert!(html.contains(r#"<meta name="viewport""#));
                assert!(html.contains("Видеокурс"));
                assert!(html.contains(pages.site().assets["style.css"].as_str()));
                assert!(html.contains(&format!(r#"href="{}""#, page.switch_url)));
            }
        }
        assert!(
            pages
                .login(&en(), &LoginView::default())
                .unwrap()
                .contains("Password")
        );
        assert!(
            pages
                .login(&ru(), &LoginView::default())
                .unwrap()
                .contains("Пароль")
        );
    }

    #[test]
    fn login_page_escapes_what_it_echoes() {
        let pages = Pages::embedded().unwrap();
        let html = pages
            .login(
                &ru(),
                &LoginView {
                    error: Some("Неверный e-mail или пароль.".into()),
                    email: Some("\"><script>alert(1)</script>".into()),
                    next: Some("/me?a=\"b\"".into()),
                },
            )
            .unwrap();
        assert!(!html.contains("<script>alert"));
        assert!(html.contains("&quot;&gt;&lt;script&gt;"));
        assert!(html.contains(r#"name="next" value="/me?a=&quot;b&quot;""#));
        assert!(html.contains("Неверный e-mail или пароль."));
        let plain = pages.login(&ru(), &LoginView::default()).unwrap();
        assert!(!plain.contains("name=\"next\""));
        assert!(!plain.contains("role=\"alert\""));
    }

    #[test]
    fn me_lists_granted_and_locked_with_what_unlocks_them() {
        let pages = Pages::embedded().unwrap();
        let html = pages.me(&ru(), &me_view()).unwrap();
        assert!(html.contains("&lt;b&gt;Иван&lt;/b&gt;"));
        assert!(html.contains("через Telegram"));
        assert!(html.contains(r#"href="https://play.boomstream.com/abc""#));
        assert!(html.contains("Финал"));
        assert!(html.contains("Решить все задания: урок 8001"));
        assert!(html.contains("Пройдено 2 из 4") && html.contains("Дальше: «Финал»"));
        assert!(html.contains(r#"action="/logout""#));
        assert!(html.contains("5000000001"));
        assert!(html.contains(r#"action="/me/telegram/unlink""#));
    }

    #[test]
    fn the_landing_page_lists_the_videos_and_their_rules() {
        let pages = Pages::embedded().unwrap();
        let html = pages.index(&ru()).unwrap();
        for v in &pages.site().config.videos {
            assert!(html.contains(&v.title), "{}", v.title);
        }
        assert!(html.contains("Открыто всем студентам курса"));
        assert!(html.contains("https://stepik.org/course/9001"));
    }

    #[test]
    fn a_broken_template_reports_its_name_and_line() {
        let site = Site::embedded().unwrap();
        let err = Pages::new([("bad.html", "line one\n{% if %}\n")], site).unwrap_err();
        let text = err.to_string();
        assert!(text.contains("bad.html"), "{text}");
        assert!(text.contains('2'), "{text}");
    }
}
