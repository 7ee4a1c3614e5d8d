//! The site's pages: tera templates from `site/templates`, embedded at build time so
//! the generator (static pages) and the worker (dynamic pages) render the same files.

use serde::Serialize;
use tera::{Context, Tera};

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
    "login.html",
    "logout.html",
    "me.html",
    "error.html",
    "dev_telegram.html",
    "telegram_widget.html",
    "link_telegram.html",
];

/// Static files copied as they are into the assets directory.
pub const STATIC_FILES: &[(&str, &str)] =
    &[("style.css", include_str!("../../site/static/style.css"))];

/// The course's name and summary. (The static-site work moves these into the site
/// configuration file; until then they live here, once.)
#[derive(Debug, Clone, Serialize)]
pub struct CourseInfo {
    /// Shown in every page's header and title.
    pub course_title: &'static str,
    /// Shown on the landing page.
    pub course_description: &'static str,
}

/// The course this site serves.
pub const COURSE: CourseInfo = CourseInfo {
    course_title: "Видеокурс",
    course_description: "Видеоуроки курса открываются по мере того, как вы решаете задания на Stepik.",
};

/// The login form as rendered (statically, or by the worker with an error).
#[derive(Debug, Clone, Default, Serialize)]
pub struct LoginView {
    /// The one error message, if any.
    pub error: Option<String>,
    /// The e-mail to put back into the form.
    pub email: Option<String>,
    /// Where to go after login (already validated).
    pub next: Option<String>,
    /// The bot whose Login Widget to show, if Telegram sign-in is configured.
    pub telegram_bot: Option<String>,
}

/// One video on /me.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct VideoItem {
    /// Title.
    pub title: String,
    /// Where to watch it (granted videos only).
    pub watch_url: Option<String>,
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
    /// The bot for the "link Telegram" widget, if Telegram sign-in is configured.
    pub telegram_bot: Option<String>,
    /// The linked Telegram account.
    pub telegram_id: Option<i64>,
    /// Unlinking is offered only to accounts that can still sign in with a password.
    pub can_unlink_telegram: bool,
}

/// The confirmation asked before linking a Telegram account.
#[derive(Debug, Clone, Serialize)]
pub struct LinkTelegramView {
    /// The signed-in student.
    pub student_name: String,
    /// The Telegram account's name as Telegram sent it.
    pub telegram_name: String,
    /// Its id.
    pub telegram_id: i64,
    /// The widget's signed query, posted back on confirmation.
    pub payload: String,
}

/// The local development stand-in for the Telegram widget.
#[derive(Debug, Clone, Default, Serialize)]
pub struct DevTelegramView {}

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

/// The compiled templates.
pub struct Pages {
    tera: Tera,
}

impl std::fmt::Debug for Pages {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Pages(..)")
    }
}

impl Pages {
    /// Compiles the embedded templates.
    pub fn embedded() -> Result<Self, RenderError> {
        Self::from_templates(TEMPLATES.iter().copied())
    }

    /// Compiles the given templates (name, source).
    pub fn from_templates<'a>(
        templates: impl IntoIterator<Item = (&'a str, &'a str)>,
    ) -> Result<Self, RenderError> {
        let mut tera = Tera::default();
        tera.add_raw_templates(templates)?;
        Ok(Pages { tera })
    }

    fn render(&self, name: &str, view: &impl Serialize) -> Result<String, RenderError> {
        let mut ctx = Context::from_serialize(&COURSE)?;
        ctx.extend(Context::from_serialize(view)?);
        Ok(self.tera.render(name, &ctx)?)
    }

    /// The landing page.
    pub fn index(&self) -> Result<String, RenderError> {
        self.render("index.html", &NoView {})
    }

    /// The login page.
    pub fn login(&self, view: &LoginView) -> Result<String, RenderError> {
        self.render("login.html", view)
    }

    /// The page with the logout button.
    pub fn logout(&self) -> Result<String, RenderError> {
        self.render("logout.html", &NoView {})
    }

    /// The student's page.
    pub fn me(&self, view: &MeView) -> Result<String, RenderError> {
        self.render("me.html", view)
    }

    /// An error page.
    pub fn error(&self, view: &ErrorView) -> Result<String, RenderError> {
        self.render("error.html", view)
    }

    /// The confirmation before linking a Telegram account.
    pub fn link_telegram(&self, view: &LinkTelegramView) -> Result<String, RenderError> {
        self.render("link_telegram.html", view)
    }

    /// The local Telegram sign-in page (development only).
    pub fn dev_telegram(&self, view: &DevTelegramView) -> Result<String, RenderError> {
        self.render("dev_telegram.html", view)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_page_renders_in_russian_with_one_layout() {
        let pages = Pages::embedded().unwrap();
        let me = MeView {
            student_name: "Анна".into(),
            auth_method: "password",
            granted: vec![],
            locked: vec![],
            telegram_bot: None,
            telegram_id: None,
            can_unlink_telegram: false,
        };
        let error = ErrorView {
            heading: "Ошибка".into(),
            message: "Текст".into(),
        };
        for html in [
            pages.index().unwrap(),
            pages.login(&LoginView::default()).unwrap(),
            pages.logout().unwrap(),
            pages.me(&me).unwrap(),
            pages.error(&error).unwrap(),
            pages.dev_telegram(&DevTelegramView::default()).unwrap(),
        ] {
            assert!(html.starts_with("<!doctype html>\n<html lang=\"ru\">"));
            assert!(html.contains(r#"<meta name="viewport""#));
            assert!(html.contains(COURSE.course_title));
        }
    }

    #[test]
    fn login_page_escapes_what_it_echoes() {
        let pages = Pages::embedded().unwrap();
        let html = pages
            .login(&LoginView {
                error: Some("Неверный e-mail или пароль.".into()),
                email: Some("\"><script>alert(1)</script>".into()),
                next: Some("/me?a=\"b\"".into()),
                telegram_bot: None,
            })
            .unwrap();
        assert!(!html.contains("<script>"));
        assert!(html.contains("&quot;&gt;&lt;script&gt;"));
        assert!(html.contains(r#"name="next" value="/me?a=&quot;b&quot;""#));
        assert!(html.contains("Неверный e-mail или пароль."));
        let plain = pages.login(&LoginView::default()).unwrap();
        assert!(!plain.contains("name=\"next\""));
        assert!(!plain.contains("role=\"alert\""));
    }

    #[test]
    fn me_lists_granted_and_locked() {
        let pages = Pages::embedded().unwrap();
        let html = pages
            .me(&MeView {
                student_name: "<b>Иван</b>".into(),
                auth_method: "telegram",
                granted: vec![VideoItem {
                    title: "Введение".into(),
                    watch_url: Some("https://play.boomstream.com/abc".into()),
                }],
                locked: vec![VideoItem {
                    title: "Финал".into(),
                    watch_url: None,
                }],
                telegram_bot: Some("course_bot".into()),
                telegram_id: Some(5_000_000_001),
                can_unlink_telegram: true,
            })
            .unwrap();
        assert!(html.contains("&lt;b&gt;Иван&lt;/b&gt;"));
        assert!(html.contains("через Telegram"));
        assert!(html.contains(r#"href="https://play.boomstream.com/abc""#));
        assert!(html.contains("Финал"));
        assert!(html.contains(r#"action="/logout""#));
        assert!(html.contains("5000000001"));
        assert!(html.contains(r#"action="/me/telegram/unlink""#));
    }

    #[test]
    fn telegram_widget_only_when_a_bot_is_configured() {
        let pages = Pages::embedded().unwrap();
        let without = pages.login(&LoginView::default()).unwrap();
        assert!(!without.contains("telegram-widget.js"));
        let with = pages
            .login(&LoginView {
                telegram_bot: Some("course_bot".into()),
                ..LoginView::default()
            })
            .unwrap();
        assert!(with.contains(r#"data-telegram-login="course_bot""#));
        assert!(with.contains(r#"data-auth-url="/login/telegram/callback""#));
    }

    #[test]
    fn a_broken_template_reports_its_name_and_line() {
        let err = Pages::from_templates([("bad.html", "line one\n{% if %}\n")]).unwrap_err();
        let text = err.to_string();
        assert!(text.contains("bad.html"), "{text}");
        assert!(text.contains('2'), "{text}");
    }
}
