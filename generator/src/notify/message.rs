//! The words of a notification: one digest per student, in the site's language, with
//! the texts of `site/i18n` (`notify.*`). Only titles and links: never an access code.

use course_core::site::Messages;

/// Telegram's limit, which the e-mail body keeps too (a digest is short).
const MAX_CHARS: usize = telegram_bot::MAX_TEXT_CHARS;

/// A video to tell about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewVideo {
    /// Its id (`/me/videos/<id>`).
    pub id: String,
    /// Its title.
    pub title: String,
}

/// A digest, ready for either channel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Digest {
    /// The e-mail's subject.
    pub subject: String,
    /// The text: the Telegram message, and the e-mail's plain-text body.
    pub text: String,
}

/// The digest telling `name` that `videos` (course order) opened. `base_url` is the
/// site's public address; the links are its `/me/videos/<id>` pages (which sign the
/// student in first when needed).
pub fn digest(
    t: &Messages,
    course: &str,
    base_url: &str,
    name: &str,
    videos: &[NewVideo],
) -> Digest {
    let base = base_url.trim_end_matches('/');
    let me = format!("{base}/me");
    let mut lines = Vec::new();
    if !name.trim().is_empty() {
        lines.push(t.fill("notify.greeting", &[("name", name.trim())]));
        lines.push(String::new());
    }
    lines.push(t.fill("notify.intro", &[("course", course)]));
    for v in videos {
        lines.push(t.fill(
            "notify.video",
            &[
                ("title", &v.title),
                (
                    "url",
                    &format!("{base}/me/videos/{}", outbound::encode_component(&v.id)),
                ),
            ],
        ));
    }
    let tail = [
        String::new(),
        t.fill("notify.all_videos", &[("url", &me)]),
        t.fill("notify.opt_out", &[("url", &me)]),
    ]
    .join("\n");
    let mut text = lines.join("\n");
    let room = MAX_CHARS.saturating_sub(tail.chars().count() + 1);
    if text.chars().count() > room {
        // A course of very many videos opened at once: the rest are on /me.
        let more = t.fill("notify.more", &[("url", &me)]);
        text = telegram_bot::fit(&text, room, &more);
    }
    text.push('\n');
    text.push_str(&tail);
    Digest {
        subject: t.fill("notify.subject", &[("course", course)]),
        text,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn texts() -> Messages {
        let value = serde_json::json!({ "notify": {
            "subject": "New videos in {course}",
            "greeting": "Hello, {name}!",
            "intro": "New videos in {course}:",
            "video": "• {title} — {url}",
            "more": "… and more on {url}",
            "all_videos": "All your videos: {url}",
            "opt_out": "Turn these messages off on {url}",
        }});
        Messages::new(value).expect("texts")
    }

    #[test]
    fn a_digest_lists_titles_and_links_only() {
        let videos = [
            NewVideo {
                id: "basics".into(),
                title: "Basics".into(),
            },
            NewVideo {
                id: "a b".into(),
                title: "Practice".into(),
            },
        ];
        let d = digest(&texts(), "Course", "https://c.example/", "Alice", &videos);
        assert_eq!(d.subject, "New videos in Course");
        assert_eq!(
            d.text,
            "Hello, Alice!\n\nNew videos in Course:\n• Basics — https://c.example/me/videos/basics\n\
             • Practice — https://c.example/me/videos/a%20b\n\nAll your videos: https://c.example/me\n\
             Turn these messages off on https://c.example/me"
        );
        let nameless = digest(&texts(), "Course", "https://c.example", " ", &videos[..1]);
        assert!(
            nameless.text.starts_with("New videos in Course:\n"),
            "{}",
            nameless.text
        );
    }

    #[test]
    fn a_huge_digest_fits_telegram() {
        let videos: Vec<NewVideo> = (0..400)
            .map(|i| NewVideo {
                id: format!("v{i}"),
                title: format!("Video number {i}"),
            })
            .collect();
        let d = digest(&texts(), "Course", "https://c.example", "Alice", &videos);
        assert!(d.text.chars().count() <= MAX_CHARS);
        assert!(d.text.contains("… and more on https://c.example/me"));
        assert!(
            d.text
                .ends_with("Turn these messages off on https://c.example/me")
        );
    }
}
