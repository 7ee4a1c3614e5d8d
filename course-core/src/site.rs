//! The site's configuration (`site/config.toml`) and texts (`site/i18n/<lang>.toml`):
//! one source of truth. The generator reads them from disk; the worker gets them
//! compiled in by the build script (see `build.rs`). Both validate them the same way.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// A language of the site.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Lang {
    /// Russian (the default).
    Ru,
    /// English.
    En,
}

impl Lang {
    /// Every language the site has.
    pub const ALL: [Lang; 2] = [Lang::Ru, Lang::En];

    /// The code: `ru`, `en`.
    pub fn code(self) -> &'static str {
        match self {
            Lang::Ru => "ru",
            Lang::En => "en",
        }
    }

    /// From a code (case-insensitive); `None` for anything else.
    pub fn parse(code: &str) -> Option<Lang> {
        Lang::ALL
            .into_iter()
            .find(|l| l.code().eq_ignore_ascii_case(code.trim()))
    }

    /// The other language.
    pub fn other(self) -> Lang {
        match self {
            Lang::Ru => Lang::En,
            Lang::En => Lang::Ru,
        }
    }
}

/// `site/config.toml`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SiteConfig {
    /// The course.
    pub course: Course,
    /// The videos, in course order.
    #[serde(default)]
    pub videos: Vec<Video>,
}

/// `[course]`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Course {
    /// Title, on every page.
    pub title: String,
    /// A sentence or two for the landing page.
    pub description: String,
    /// The language of the site's root (the other one lives under `/<code>/`).
    #[serde(default = "default_lang")]
    pub language: Lang,
    /// Public address, e.g. `https://course.example.com`.
    pub base_url: String,
    /// The Stepik course whose progress unlocks the videos.
    #[serde(default)]
    pub stepik_course_id: Option<u64>,
    /// What counts as a passed step on Stepik, for the sync and the worker's progress
    /// check alike.
    #[serde(default)]
    pub stepik_pass_rule: PassRuleSetting,
    /// How often the scheduled sync runs, in hours (what /me tells students when the
    /// worker cannot check progress itself). Keep it equal to the cron line of
    /// `.github/workflows/sync.yml` (a test checks).
    #[serde(default = "default_sync_hours")]
    pub sync_every_hours: u32,
    /// The Telegram Login Widget's bot; none = no Telegram sign-in.
    #[serde(default)]
    pub telegram_bot: Option<String>,
    /// Contact e-mail for the help page.
    #[serde(default)]
    pub contact_email: Option<String>,
    /// Contact Telegram username for the help page.
    #[serde(default)]
    pub contact_telegram: Option<String>,
    /// The Boomstream pay-per-view subscription that holds the videos (a video may name
    /// its own instead). Needed when the sync pushes grants to Boomstream.
    #[serde(default)]
    pub boomstream_subscription: Option<String>,
    /// What kind of subscription `boomstream_subscription` is; required with it.
    #[serde(default)]
    pub boomstream_subscription_kind: Option<SubscriptionKind>,
    /// The `access_expire` sent with every Boomstream buyer (`YYYY-MM-DD` or
    /// `YYYY-MM-DD HH:MM:SS`, Moscow time as Boomstream reads it); default
    /// [`DEFAULT_ACCESS_EXPIRE`], far in the future, so access does not run out.
    #[serde(default)]
    pub boomstream_access_expire: Option<String>,
}

/// The access expiry sent to Boomstream unless `boomstream_access_expire` says otherwise
/// (an independent client sends 2100-12-12 for the same reason).
pub const DEFAULT_ACCESS_EXPIRE: &str = "2100-12-31";

impl Course {
    /// The `access_expire` to send to Boomstream.
    pub fn access_expire(&self) -> &str {
        self.boomstream_access_expire
            .as_deref()
            .map(str::trim)
            .unwrap_or(DEFAULT_ACCESS_EXPIRE)
    }
}

/// How a Boomstream pay-per-view subscription gives access (Boomstream's user docs): a
/// buyer of a *group* subscription may watch every video in it; a *single* one sells
/// videos one by one, so a buyer gets only the media named when they were added.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SubscriptionKind {
    /// One `addbuyer` per student and video, naming that video's media.
    Single,
    /// One `addbuyer` per student and subscription: every video in it opens at once.
    Group,
}

/// `course.stepik_pass_rule`: what counts as a passed step.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PassRuleSetting {
    /// Stepik's `is_passed` (the default).
    #[default]
    IsPassed,
    /// `is_passed`, or a `first_success` attempt recorded (Stepik has been seen
    /// answering `is_passed: false` with a first success and a score).
    FirstSuccess,
}

impl PassRuleSetting {
    /// The grade-book reader's rule.
    pub fn rule(self) -> stepik::PassRule {
        match self {
            PassRuleSetting::IsPassed => stepik::PassRule::IsPassed,
            PassRuleSetting::FirstSuccess => stepik::PassRule::FirstSuccess,
        }
    }
}

fn default_sync_hours() -> u32 {
    6
}

fn default_lang() -> Lang {
    Lang::Ru
}

/// `[[videos]]`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Video {
    /// Stable slug (`videos.id` in D1).
    pub id: String,
    /// Title.
    pub title: String,
    /// Optional description.
    #[serde(default)]
    pub description: Option<String>,
    /// Boomstream media code.
    pub media_code: String,
    /// Its Boomstream subscription, when not the course's `boomstream_subscription`.
    #[serde(default)]
    pub boomstream_subscription: Option<String>,
    /// The kind of its own `boomstream_subscription`; required with it.
    #[serde(default)]
    pub boomstream_subscription_kind: Option<SubscriptionKind>,
    /// What unlocks it.
    pub unlock: UnlockRule,
}

impl Video {
    /// The subscription a grant of this video is pushed to.
    pub fn subscription<'a>(&'a self, course: &'a Course) -> Option<&'a str> {
        self.boomstream_subscription
            .as_deref()
            .or(course.boomstream_subscription.as_deref())
            .filter(|s| !s.trim().is_empty())
    }

    /// The kind of [`Video::subscription`]: the video's own with its own subscription,
    /// else the course's. `None` when the subscription named has no kind (a
    /// configuration problem, reported by [`SiteConfig::problems`]).
    pub fn subscription_kind(&self, course: &Course) -> Option<SubscriptionKind> {
        if self.boomstream_subscription.is_some() {
            self.boomstream_subscription_kind
        } else {
            course.boomstream_subscription_kind
        }
    }
}

/// What a student must have passed on Stepik to unlock a video.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UnlockRule {
    /// Open to every signed-in student.
    #[serde(default, skip_serializing_if = "is_false")]
    pub always: bool,
    /// Every graded step of these lessons…
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub lessons: Vec<u64>,
    /// …of these sections…
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub sections: Vec<u64>,
    /// …and these steps.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub steps: Vec<u64>,
    /// At least this share (0–1] of those steps instead of all of them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_share: Option<f64>,
    /// And at least this total score on them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_score: Option<f64>,
}

fn is_false(b: &bool) -> bool {
    !*b
}

impl SiteConfig {
    /// Every problem with the configuration, each naming its key.
    pub fn problems(&self) -> Vec<String> {
        let mut out = Vec::new();
        let c = &self.course;
        if c.title.trim().is_empty() {
            out.push("course.title: must not be empty".to_owned());
        }
        if !(c.base_url.starts_with("https://") || c.base_url.starts_with("http://"))
            || c.base_url.ends_with('/')
            || c.base_url.contains(char::is_whitespace)
        {
            out.push(format!(
                "course.base_url: {:?} is not an http(s) address without a trailing slash",
                c.base_url
            ));
        }
        if let Some(bot) = &c.telegram_bot
            && !is_telegram_username(bot)
        {
            out.push(format!(
                "course.telegram_bot: {bot:?} is not a bot username (5-32 letters, digits, _)"
            ));
        }
        if let Some(t) = &c.contact_telegram
            && !is_telegram_username(t)
        {
            out.push(format!(
                "course.contact_telegram: {t:?} is not a Telegram username"
            ));
        }
        if let Some(e) = &c.contact_email
            && (!e.contains('@') || e.contains(char::is_whitespace))
        {
            out.push(format!(
                "course.contact_email: {e:?} is not an e-mail address"
            ));
        }
        let mut seen: BTreeMap<&str, usize> = BTreeMap::new();
        for (i, v) in self.videos.iter().enumerate() {
            let key = format!("videos[{i}] (id {:?})", v.id);
            if v.id.is_empty()
                || !v
                    .id
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
            {
                out.push(format!(
                    "{key}.id: use lower-case letters, digits, - and _ only"
                ));
            }
            if let Some(first) = seen.insert(&v.id, i) {
                out.push(format!(
                    "{key}.id: duplicate video id (also videos[{first}])"
                ));
            }
            if v.title.trim().is_empty() {
                out.push(format!("{key}.title: must not be empty"));
            }
            if v.media_code.trim().is_empty() {
                out.push(format!("{key}.media_code: missing Boomstream media code"));
            }
            out.extend(
                v.unlock
                    .problems()
                    .into_iter()
                    .map(|p| format!("{key}.unlock: {p}")),
            );
            if v.boomstream_subscription.is_some() && v.boomstream_subscription_kind.is_none() {
                out.push(format!(
                    "{key}.boomstream_subscription_kind: required with boomstream_subscription (\"single\" or \"group\")"
                ));
            }
            if v.boomstream_subscription.is_none() && v.boomstream_subscription_kind.is_some() {
                out.push(format!(
                    "{key}.boomstream_subscription_kind: only with the video's own boomstream_subscription"
                ));
            }
        }
        if c.boomstream_subscription.is_some() && c.boomstream_subscription_kind.is_none() {
            out.push(
                "course.boomstream_subscription_kind: required with boomstream_subscription (\"single\" or \"group\")"
                    .to_owned(),
            );
        }
        if let Some(expire) = &c.boomstream_access_expire
            && boomstream::parse_date_time(expire).is_none()
        {
            out.push(format!(
                "course.boomstream_access_expire: {expire:?} is not a date (YYYY-MM-DD or YYYY-MM-DD HH:MM:SS)"
            ));
        }
        out.extend(self.shared_group_problems());
        out
    }

    /// A group subscription opens every video in it at once, so the videos sharing one
    /// must unlock together: the same rule.
    fn shared_group_problems(&self) -> Vec<String> {
        let mut groups: BTreeMap<&str, Vec<&Video>> = BTreeMap::new();
        for v in &self.videos {
            if let (Some(sub), Some(SubscriptionKind::Group)) = (
                v.subscription(&self.course),
                v.subscription_kind(&self.course),
            ) {
                groups.entry(sub).or_default().push(v);
            }
        }
        groups
            .into_iter()
            .filter(|(_, videos)| videos.iter().any(|v| v.unlock != videos[0].unlock))
            .map(|(sub, videos)| {
                let ids: Vec<String> = videos.iter().map(|v| format!("{:?}", v.id)).collect();
                format!(
                    "group subscription {sub:?} is shared by videos with different unlock rules ({}): a buyer of a group subscription may watch every video in it, so they would all open with the first; give them one rule, or use a single subscription",
                    ids.join(", ")
                )
            })
            .collect()
    }
}

impl UnlockRule {
    /// What is wrong with this rule, if anything.
    pub fn problems(&self) -> Vec<String> {
        let names_something =
            !(self.lessons.is_empty() && self.sections.is_empty() && self.steps.is_empty());
        let mut out = Vec::new();
        if self.always && (names_something || self.min_share.is_some() || self.min_score.is_some())
        {
            out.push("`always = true` cannot be combined with other conditions".to_owned());
        }
        if !self.always && !names_something {
            out.push(
                "the rule names nothing: give lessons, sections or steps, or always = true"
                    .to_owned(),
            );
        }
        if let Some(s) = self.min_share
            && !(s > 0.0 && s <= 1.0)
        {
            out.push(format!(
                "min_share must be more than 0 and at most 1, not {s}"
            ));
        }
        if let Some(s) = self.min_score
            && !(s.is_finite() && s >= 0.0)
        {
            out.push(format!("min_score must be a non-negative number, not {s}"));
        }
        out
    }
}

/// True for a Telegram username: 5–32 letters, digits and `_`.
pub fn is_telegram_username(s: &str) -> bool {
    (5..=32).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

/// One language's texts: a tree of string tables, as in `site/i18n/<lang>.toml`.
#[derive(Debug, Clone, Serialize)]
#[serde(transparent)]
pub struct Messages(Value);

impl Messages {
    /// Wraps a parsed message file; it must be a table of strings and tables.
    pub fn new(value: Value) -> Result<Self, String> {
        fn check(v: &Value, path: &str) -> Result<(), String> {
            match v {
                Value::String(_) => Ok(()),
                Value::Object(map) => map.iter().try_for_each(|(k, v)| {
                    check(
                        v,
                        &if path.is_empty() {
                            k.clone()
                        } else {
                            format!("{path}.{k}")
                        },
                    )
                }),
                _ => Err(format!("{path}: must be a string or a table of strings")),
            }
        }
        match &value {
            Value::Object(_) => check(&value, "").map(|()| Messages(value)),
            _ => Err("a message file must be a table".to_owned()),
        }
    }

    /// The text at a dotted path, e.g. `login.failed`; the path itself when missing
    /// (tests make sure no used key is missing).
    pub fn text(&self, path: &str) -> String {
        path.split('.')
            .try_fold(&self.0, |v, k| v.get(k))
            .and_then(Value::as_str)
            .unwrap_or(path)
            .to_owned()
    }

    /// The text at `path` with `{name}` placeholders filled in.
    pub fn fill(&self, path: &str, values: &[(&str, &str)]) -> String {
        values.iter().fold(self.text(path), |t, (name, value)| {
            t.replace(&format!("{{{name}}}"), value)
        })
    }

    /// Every dotted key.
    pub fn keys(&self) -> BTreeSet<String> {
        fn walk(v: &Value, path: String, out: &mut BTreeSet<String>) {
            match v {
                Value::Object(map) => {
                    for (k, v) in map {
                        walk(
                            v,
                            if path.is_empty() {
                                k.clone()
                            } else {
                                format!("{path}.{k}")
                            },
                            out,
                        );
                    }
                }
                _ => {
                    out.insert(path);
                }
            }
        }
        let mut out = BTreeSet::new();
        walk(&self.0, String::new(), &mut out);
        out
    }
}

/// What a Stepik sync learned of the course's structure (`site/course-structure.json`,
/// written by `generator sync`): titles for pages ("lesson «Basics»" instead of "lesson
/// 8001") and which steps are graded, for evaluating unlock rules.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct CourseStructure {
    /// The Stepik course.
    #[serde(default)]
    pub course_id: Option<u64>,
    /// Its title on Stepik.
    #[serde(default)]
    pub title: Option<String>,
    /// Newest `update_date` seen on the course and its parts (skip re-fetching when unchanged).
    #[serde(default)]
    pub update_date: Option<String>,
    /// Lessons by id.
    #[serde(default)]
    pub lessons: BTreeMap<u64, LessonInfo>,
    /// Sections by id.
    #[serde(default)]
    pub sections: BTreeMap<u64, SectionInfo>,
}

/// A lesson of the course.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct LessonInfo {
    /// Its title on Stepik.
    pub title: String,
    /// The section it is in (through its unit).
    #[serde(default)]
    pub section: Option<u64>,
    /// The unit that places it in the course (for step links).
    #[serde(default)]
    pub unit: Option<u64>,
    /// Its graded steps (worth > 0), in order.
    #[serde(default)]
    pub graded_steps: Vec<u64>,
}

/// A section of the course.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SectionInfo {
    /// Its title on Stepik.
    pub title: String,
    /// Its lessons, in order.
    #[serde(default)]
    pub lessons: Vec<u64>,
}

/// Where a Stepik lesson lives.
pub fn stepik_lesson_url(id: u64) -> String {
    format!("https://stepik.org/lesson/{id}")
}

impl UnlockRule {
    /// The rule in words, in the given language, with titles where the structure knows them.
    pub fn describe(&self, t: &Messages, structure: &CourseStructure) -> String {
        if self.always {
            return t.text("unlock.always");
        }
        let mut parts: Vec<String> = Vec::new();
        for id in &self.sections {
            parts.push(match structure.sections.get(id) {
                Some(s) => t.fill("unlock.section", &[("title", &s.title)]),
                None => t.fill("unlock.section_id", &[("id", &id.to_string())]),
            });
        }
        for id in &self.lessons {
            parts.push(match structure.lessons.get(id) {
                Some(l) => t.fill("unlock.lesson", &[("title", &l.title)]),
                None => t.fill("unlock.lesson_id", &[("id", &id.to_string())]),
            });
        }
        if !self.steps.is_empty() {
            let ids: Vec<String> = self.steps.iter().map(u64::to_string).collect();
            parts.push(t.fill("unlock.steps", &[("ids", &ids.join(", "))]));
        }
        let what = parts.join(", ");
        let mut text = match self.min_share {
            Some(share) if share < 1.0 => {
                let percent = format!("{}", (share * 100.0).round());
                t.fill("unlock.share", &[("percent", &percent), ("what", &what)])
            }
            _ => t.fill("unlock.all_steps", &[("what", &what)]),
        };
        if let Some(score) = self.min_score {
            text.push_str("; ");
            text.push_str(&t.fill("unlock.min_score", &[("score", &format!("{score}"))]));
        }
        text
    }
}

/// Everything a page needs besides its own data: configuration, texts, asset names.
#[derive(Debug, Clone)]
pub struct Site {
    /// `config.toml`.
    pub config: SiteConfig,
    /// Texts by language.
    pub messages: BTreeMap<Lang, Messages>,
    /// Static file name → its content-hashed URL.
    pub assets: BTreeMap<String, String>,
    /// Lesson and section titles from the last sync, if any.
    pub structure: CourseStructure,
}

impl Site {
    /// The course structure the worker may decide grants by: one a sync saved for the
    /// configured course (or, when the configuration names none, for any), with lessons.
    pub fn structure_for_checks(&self) -> Option<(u64, &CourseStructure)> {
        let course_id = self.structure.course_id?;
        let matches = self
            .config
            .course
            .stepik_course_id
            .is_none_or(|id| id == course_id);
        (matches && !self.structure.lessons.is_empty()).then_some((course_id, &self.structure))
    }
}

#[derive(Deserialize)]
struct Compiled {
    config: Value,
    messages: BTreeMap<Lang, Value>,
    assets: BTreeMap<String, String>,
    #[serde(default)]
    structure: Option<Value>,
    /// The structure is the bundled demo course's (no sync has saved one).
    #[serde(default)]
    structure_is_demo: bool,
    errors: Vec<String>,
}

impl Site {
    /// The site as compiled into this crate by the build script.
    pub fn embedded() -> Result<Site, String> {
        let compiled: Compiled =
            serde_json::from_str(include_str!(concat!(env!("OUT_DIR"), "/site.json")))
                .map_err(|e| format!("compiled site configuration: {e}"))?;
        if !compiled.errors.is_empty() {
            return Err(compiled.errors.join("; "));
        }
        let config: SiteConfig = serde_json::from_value(compiled.config)
            .map_err(|e| format!("site/config.toml: {e}"))?;
        let messages = compiled
            .messages
            .into_iter()
            .map(|(lang, v)| {
                Messages::new(v)
                    .map(|m| (lang, m))
                    .map_err(|e| format!("site/i18n/{}.toml: {e}", lang.code()))
            })
            .collect::<Result<_, _>>()?;
        let structure = match compiled.structure {
            Some(v) => {
                serde_json::from_value(v).map_err(|e| format!("site/course-structure.json: {e}"))?
            }
            None => CourseStructure::default(),
        };
        // The demo course's structure stands in only for the demo course itself.
        let structure = if compiled.structure_is_demo
            && config.course.stepik_course_id != structure.course_id
        {
            CourseStructure::default()
        } else {
            structure
        };
        Site::new(config, messages, compiled.assets, structure)
    }

    /// Checks the parts and puts them together; the error lists every problem.
    pub fn new(
        config: SiteConfig,
        messages: BTreeMap<Lang, Messages>,
        assets: BTreeMap<String, String>,
        structure: CourseStructure,
    ) -> Result<Site, String> {
        let mut problems = config.problems();
        let keys: BTreeMap<Lang, BTreeSet<String>> =
            messages.iter().map(|(l, m)| (*l, m.keys())).collect();
        for lang in Lang::ALL {
            match keys.get(&lang) {
                None => problems.push(format!("i18n/{}.toml: missing", lang.code())),
                Some(mine) => {
                    let other = lang.other();
                    if let Some(theirs) = keys.get(&other) {
                        for missing in theirs.difference(mine) {
                            problems.push(format!(
                                "i18n/{}.toml: key {missing} is missing (it is in {}.toml)",
                                lang.code(),
                                other.code()
                            ));
                        }
                    }
                }
            }
        }
        if problems.is_empty() {
            Ok(Site {
                config,
                messages,
                assets,
                structure,
            })
        } else {
            Err(problems.join("\n"))
        }
    }

    /// The texts of a language.
    pub fn messages(&self, lang: Lang) -> &Messages {
        // `new` guarantees both languages exist.
        &self.messages[&lang]
    }

    /// The root of a language's pages: `""` for the site's language, `/en` otherwise.
    pub fn prefix(&self, lang: Lang) -> String {
        if lang == self.config.course.language {
            String::new()
        } else {
            format!("/{}", lang.code())
        }
    }

    /// The language a path is in, by its prefix (`/en/...`), if any.
    pub fn lang_of_path(&self, path: &str) -> Option<Lang> {
        Lang::ALL.into_iter().find(|l| {
            let p = self.prefix(*l);
            !p.is_empty() && (path == p || path.starts_with(&format!("{p}/")))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(videos: &str) -> Result<SiteConfig, String> {
        let text = format!(
            "{{\"course\": {{\"title\": \"T\", \"description\": \"D\", \"base_url\": \"https://x.example\"}}, \"videos\": [{videos}]}}"
        );
        serde_json::from_str(&text).map_err(|e| e.to_string())
    }

    #[test]
    fn the_shipped_site_compiles_and_is_valid() {
        let site = Site::embedded().unwrap();
        assert_eq!(site.config.course.language, Lang::Ru);
        assert!(
            site.assets
                .get("style.css")
                .unwrap()
                .starts_with("/assets/style.")
        );
        assert_eq!(site.prefix(Lang::Ru), "");
        assert_eq!(site.prefix(Lang::En), "/en");
        assert_eq!(site.lang_of_path("/en/login"), Some(Lang::En));
        assert_eq!(site.lang_of_path("/enigma"), None);
        assert_eq!(site.lang_of_path("/login"), None);
        assert_eq!(
            site.messages(Lang::En).text("login.failed"),
            "Wrong e-mail or password."
        );
        assert_eq!(
            site.messages(Lang::Ru)
                .fill("login.throttled", &[("minutes", "15")]),
            "Слишком много неудачных попыток входа. Попробуйте снова через 15 мин."
        );
        assert_eq!(site.messages(Lang::Ru).text("no.such.key"), "no.such.key");
    }

    /// A named subscription needs its kind; a group subscription's videos must share
    /// one rule (its buyer may watch them all at once).
    #[test]
    fn subscription_kinds_are_required_and_groups_unlock_together() {
        let v = |id: &str, extra: &str, unlock: &str| {
            format!(
                "{{\"id\": \"{id}\", \"title\": \"t\", \"media_code\": \"m\", \"unlock\": {unlock}{extra}}}"
            )
        };
        let own = |sub: &str, kind: &str| {
            format!(
                ", \"boomstream_subscription\": \"{sub}\", \"boomstream_subscription_kind\": \"{kind}\""
            )
        };
        let mut c = config(&v(
            "a",
            ", \"boomstream_subscription\": \"S\"",
            "{\"always\": true}",
        ))
        .unwrap();
        c.course.boomstream_subscription = Some("C".into());
        let p = c.problems().join("\n");
        assert!(
            p.contains("videos[0] (id \"a\").boomstream_subscription_kind: required"),
            "{p}"
        );
        assert!(
            p.contains("course.boomstream_subscription_kind: required"),
            "{p}"
        );
        c.course.boomstream_subscription_kind = Some(SubscriptionKind::Single);
        c.videos[0].boomstream_subscription_kind = Some(SubscriptionKind::Group);
        assert!(c.problems().is_empty(), "{:?}", c.problems());
        assert_eq!(
            c.videos[0].subscription_kind(&c.course),
            Some(SubscriptionKind::Group)
        );

        let mixed = config(
            &[
                v("a", &own("G", "group"), "{\"always\": true}"),
                v("b", &own("G", "group"), "{\"lessons\": [1]}"),
                v("c", &own("H", "group"), "{\"lessons\": [2]}"),
                v("d", &own("H", "group"), "{\"lessons\": [2]}"),
            ]
            .join(","),
        )
        .unwrap();
        let p = mixed.problems();
        assert_eq!(p.len(), 1, "{p:?}");
        assert!(
            p[0].contains("group subscription \"G\" is shared by videos with different unlock rules (\"a\", \"b\")"),
            "{p:?}"
        );
    }

    #[test]
    fn the_access_expiry_must_be_a_date_and_defaults_far_ahead() {
        let mut c = config("").unwrap();
        assert_eq!(c.course.access_expire(), DEFAULT_ACCESS_EXPIRE);
        for good in ["2031-06-30", "2031-06-30 23:59:59"] {
            c.course.boomstream_access_expire = Some(good.into());
            assert!(c.problems().is_empty(), "{good}: {:?}", c.problems());
            assert_eq!(c.course.access_expire(), good);
        }
        c.course.boomstream_access_expire = Some("30.06.2031".into());
        assert_eq!(
            c.problems(),
            [
                "course.boomstream_access_expire: \"30.06.2031\" is not a date (YYYY-MM-DD or YYYY-MM-DD HH:MM:SS)"
            ]
        );
    }

    #[test]
    fn problems_name_the_key() {
        let v = |id: &str, unlock: &str| {
            format!(
                "{{\"id\": \"{id}\", \"title\": \"t\", \"media_code\": \"m\", \"unlock\": {unlock}}}"
            )
        };
        let c = config(&[v("a", "{\"always\": true}"), v("a", "{\"lessons\": [1]}")].join(","))
            .unwrap();
        assert_eq!(
            c.problems(),
            vec!["videos[1] (id \"a\").id: duplicate video id (also videos[0])"]
        );
        let c = config(&v("b", "{}")).unwrap();
        assert!(c.problems()[0].contains("videos[0] (id \"b\").unlock: the rule names nothing"));
        let c = config(&v("B c", "{\"always\": true, \"lessons\": [1]}")).unwrap();
        let p = c.problems().join("\n");
        assert!(
            p.contains(".id: use lower-case") && p.contains("cannot be combined"),
            "{p}"
        );
        let c = config(&v("c", "{\"lessons\": [1], \"min_share\": 1.5}")).unwrap();
        assert!(c.problems()[0].contains("min_share must be more than 0 and at most 1"));
        let c = config("{\"id\": \"d\", \"title\": \"t\", \"media_code\": \" \", \"unlock\": {\"steps\": [5]}}").unwrap();
        assert!(c.problems()[0].contains("media_code: missing"));
        let err = config("{\"id\": \"e\", \"title\": \"t\", \"media_code\": \"m\", \"unlock\": {\"lesson\": [1]}}").unwrap_err();
        assert!(err.contains("unknown field `lesson`"), "{err}");
    }

    #[test]
    fn rules_in_words() {
        let site = Site::embedded().unwrap();
        let (ru, en) = (site.messages(Lang::Ru), site.messages(Lang::En));
        let mut structure = CourseStructure::default();
        structure.lessons.insert(
            8001,
            LessonInfo {
                title: "Основы".into(),
                ..LessonInfo::default()
            },
        );
        let rule = |json: &str| -> UnlockRule { serde_json::from_str(json).unwrap() };
        assert_eq!(
            rule(r#"{"always": true}"#).describe(ru, &structure),
            "Открыто всем студентам курса"
        );
        assert_eq!(
            rule(r#"{"lessons": [8001, 8002]}"#).describe(ru, &structure),
            "Решить все задания: урок «Основы», урок 8002"
        );
        assert_eq!(
            rule(r#"{"sections": [501], "min_share": 0.8, "min_score": 30}"#)
                .describe(en, &structure),
            "Solve at least 80% of the quizzes of section 501; score at least 30 points"
        );
        assert_eq!(
            rule(r#"{"steps": [1, 2]}"#).describe(en, &structure),
            "Solve every quiz of steps 1, 2"
        );
    }

    #[test]
    fn message_files_must_have_the_same_keys() {
        let m = |v: Value| Messages::new(v).unwrap();
        let messages = BTreeMap::from([
            (Lang::Ru, m(serde_json::json!({"a": "x", "b": {"c": "y"}}))),
            (Lang::En, m(serde_json::json!({"a": "x"}))),
        ]);
        let err = Site::new(
            config("").unwrap(),
            messages,
            BTreeMap::new(),
            CourseStructure::default(),
        )
        .unwrap_err();
        assert_eq!(err, "i18n/en.toml: key b.c is missing (it is in ru.toml)");
        assert!(
            Messages::new(serde_json::json!({"a": 1}))
                .unwrap_err()
                .contains("a: must be a string")
        );
    }
}
