//! The student's page.

use super::{BOOMSTREAM_PLAYER, Handler, ProgressInfo, SessionWant, Store, VideoAccess};
use crate::http::{self, Request, Response};
use crate::pages::{CheckView, ErrorView, MeView, NotifyView, ProgressView, VideoItem, VideoView};

impl<S: Store> Handler<'_, '_, S> {
    pub(super) async fn me(&self, req: &Request) -> Response {
        // One round trip: the session, the videos and the progress together.
        let want = SessionWant {
            videos: true,
            progress: true,
            renew: None,
        };
        let mut current = match self.require_session(req, "/me", want).await {
            Ok(c) => c,
            Err(resp) => return resp,
        };
        let videos = std::mem::take(&mut current.videos);
        let progress = current.progress.take();
        let titles: std::collections::HashMap<String, String> = videos
            .iter()
            .map(|v| (v.id.clone(), v.title.clone()))
            .collect();
        // A video open to everyone needs no grant row: a student not on Stepik (yet) sees it too.
        let site = self.pages.site();
        let always = |id: &str| {
            site.config
                .videos
                .iter()
                .any(|v| v.id == id && v.unlock.always)
        };
        let (granted, locked): (Vec<_>, Vec<_>) =
            videos.into_iter().partition(|v| v.granted || always(&v.id));
        let view = MeView {
            student_name: current.row.user_name.clone(),
            auth_method: current.claims.method.as_str(),
            granted: granted
                .into_iter()
                .map(|v| VideoItem {
                    watch_url: Some(player_url(&v, current.row.access_code.as_deref())),
                    page_url: Some(format!("/me/videos/{}", http::encode_component(&v.id))),
                    title: v.title,
                    unlock: None,
                    description: None,
                })
                .collect(),
            locked: locked
                .into_iter()
                .map(|v| VideoItem {
                    unlock: self.unlock_text(&v.id),
                    title: v.title,
                    watch_url: None,
                    description: None,
                    page_url: None,
                })
                .collect(),
            progress: progress
                .as_ref()
                .map(|p| self.progress_view(p, current.row.last_sync_at, &titles)),
            access_code: current.row.access_code.clone(),
            telegram_id: current.row.telegram_id,
            can_unlink_telegram: current.row.has_password,
            telegram_link_open: current.row.intends(super::LinkKind::Telegram, self.now),
            check: self.check_view(req, &current.row, progress.as_ref()),
            notify: self.notify_view(&current.row),
        };
        let mut resp = self.page(200, self.pages.me(&self.page, &view));
        if super::check::flash_of(req).is_some() {
            resp = resp.with_header("set-cookie", super::check::flash_cookie(req, "", 0));
        }
        super::with_renewal(resp, &current)
    }

    /// `POST /me/notifications/off` and `…/on`: the student's choice, stored; back to /me.
    pub(super) async fn set_notify(&self, req: &Request, off: bool) -> Response {
        let current = match self
            .require_session(req, "/me", SessionWant::default())
            .await
        {
            Ok(c) => c,
            Err(resp) => return resp,
        };
        let resp = match self
            .store
            .set_notify(current.claims.user_id, off, self.now)
            .await
        {
            Ok(()) => Response::see_other("/me#notify"),
            Err(e) => self.unavailable(&e),
        };
        super::with_renewal(resp, &current)
    }

    /// The messages about new videos on /me: where they go, what went wrong, the switch.
    fn notify_view(&self, row: &super::StoredSession) -> NotifyView {
        let t = self.pages.site().messages(self.page.lang);
        let n = &row.notify;
        let email = n.email.as_deref().filter(|_| !n.email_bounced);
        let telegram = row.telegram_id.filter(|_| !n.telegram_blocked);
        let mut problems = Vec::new();
        if row.telegram_id.is_some() && n.telegram_blocked {
            problems.push(t.text("me.notify_telegram_blocked"));
        }
        if let (Some(address), true) = (n.email.as_deref(), n.email_bounced) {
            problems.push(t.fill("me.notify_email_bounced", &[("email", address)]));
        }
        let channel = match (telegram, email) {
            (Some(_), _) => t.text("me.notify_telegram"),
            (None, Some(address)) => t.fill("me.notify_email", &[("email", address)]),
            (None, None) => t.text("me.notify_nowhere"),
        };
        NotifyView {
            on: !n.off,
            channel: (!n.off).then_some(channel),
            problems,
        }
    }

    /// The progress check on /me: the button (and what the last check came to), or why
    /// there is none. Starts a check in the background when what /me shows is older
    /// than `PROGRESS_REFRESH_SECS`.
    fn check_view(
        &self,
        req: &Request,
        row: &super::StoredSession,
        progress: Option<&ProgressInfo>,
    ) -> CheckView {
        let t = self.pages.site().messages(self.page.lang);
        let Some((cfg, _)) = self.app.can_check() else {
            let hours = self.pages.site().config.course.sync_every_hours.to_string();
            return CheckView {
                schedule: Some(t.fill("me.check_schedule", &[("hours", &hours)])),
                ..CheckView::default()
            };
        };
        if row.stepik_user_id.is_none() {
            return CheckView {
                link_hint: Some(t.text("me.check_link_hint")),
                ..CheckView::default()
            };
        }
        let as_of = [
            progress.map(|p| p.updated_at),
            row.last_sync_at,
            row.last_check_at,
        ]
        .into_iter()
        .flatten()
        .max();
        if req.method == crate::http::Method::Get
            && as_of.is_none_or(|t| self.now - t >= cfg.refresh_secs)
        {
            (self.defer)(row.user_id);
        }
        let mut view = CheckView {
            button: true,
            ..CheckView::default()
        };
        let flash = super::check::flash_of(req).unwrap_or_default();
        let count = |n: &str| t.fill("check.opened", &[("count", n)]);
        match flash.split('.').collect::<Vec<_>>()[..] {
            ["ok", opened, unconfirmed] => {
                let (Ok(opened), Ok(unconfirmed)) =
                    (opened.parse::<u32>(), unconfirmed.parse::<u32>())
                else {
                    return view;
                };
                let mut notice = if opened > 0 {
                    count(&opened.to_string())
                } else {
                    t.text("check.nothing_new")
                };
                if unconfirmed > 0 {
                    notice.push(' ');
                    notice.push_str(
                        &t.fill("check.unconfirmed", &[("count", &unconfirmed.to_string())]),
                    );
                    view.notice_is_warning = true;
                }
                view.notice = Some(notice);
            }
            ["stepik"] => {
                view.notice = Some(t.text("check.stepik_failed"));
                view.notice_is_warning = true;
            }
            ["absent"] => {
                view.notice = Some(t.text("check.not_a_learner"));
                view.notice_is_warning = true;
            }
            _ => {}
        }
        view
    }

    /// `GET /me/videos/<id>`: the player for a granted video; 403 with what unlocks it
    /// for a locked one; 404 for an unknown id.
    pub(super) async fn video(&self, req: &Request, id: &str) -> Response {
        let back = format!("/me/videos/{}", http::encode_component(id));
        let want = SessionWant {
            videos: true,
            ..SessionWant::default()
        };
        let mut current = match self.require_session(req, &back, want).await {
            Ok(c) => c,
            Err(resp) => return resp,
        };
        let videos = std::mem::take(&mut current.videos);
        let Some(video) = videos.into_iter().find(|v| v.id == id) else {
            return super::with_renewal(self.not_found(), &current);
        };
        let site = self.pages.site();
        let configured = site.config.videos.iter().find(|v| v.id == video.id);
        let resp = if video.granted || configured.is_some_and(|v| v.unlock.always) {
            let code = current.row.access_code.as_deref();
            let view = VideoView {
                player_url: player_url(&video, code),
                preauthorised: video.boomstream_confirmed && code.is_some(),
                access_code: code.map(str::to_owned),
                description: configured.and_then(|v| v.description.clone()),
                title: video.title,
            };
            self.page(200, self.pages.video(&self.page, &view))
        } else {
            let rule = self.unlock_text(&video.id).unwrap_or_default();
            let t = site.messages(self.page.lang);
            let view = ErrorView {
                heading: t.text("video.not_granted_title"),
                message: t.fill("video.not_granted_text", &[("rule", &rule)]),
            };
            self.page(403, self.pages.error(&self.page, &view))
        };
        super::with_renewal(resp, &current)
    }

    /// What unlocks a video, from the site configuration (none for a video it lacks).
    fn unlock_text(&self, video_id: &str) -> Option<String> {
        let site = self.pages.site();
        let video = site.config.videos.iter().find(|v| v.id == video_id)?;
        Some(
            video
                .unlock
                .describe(site.messages(self.page.lang), &site.structure),
        )
    }

    /// The sync's progress snapshot in words.
    fn progress_view(
        &self,
        p: &ProgressInfo,
        last_sync_at: Option<i64>,
        titles: &std::collections::HashMap<String, String>,
    ) -> ProgressView {
        let t = self.pages.site().messages(self.page.lang);
        let next = p.next_video_id.as_ref().map(|id| {
            let title = titles.get(id).map_or(id.as_str(), String::as_str);
            match p.next_missing {
                Some(missing) if missing > 0 => t.fill(
                    "me.progress_next",
                    &[("title", title), ("missing", &missing.to_string())],
                ),
                // Enough steps, but the rule wants more (a score): say the rule.
                _ => t.fill(
                    "me.progress_next_score",
                    &[
                        ("title", title),
                        ("rule", &self.unlock_text(id).unwrap_or_default()),
                    ],
                ),
            }
        });
        ProgressView {
            summary: t.fill(
                "me.progress_summary",
                &[
                    ("passed", &p.steps_passed.to_string()),
                    ("total", &p.steps_total.to_string()),
                ],
            ),
            next,
            updated: t.fill(
                "me.progress_updated",
                // The row changes only when the progress does: it is current as of the
                // last sync that read it, or the last check that wrote it.
                &[(
                    "date",
                    &crate::time::utc_date_time(p.updated_at.max(last_sync_at.unwrap_or(0))),
                )],
            ),
        }
    }
}

/// The Boomstream player for a video: pre-authorised for this student (`id_recovery`)
/// once Boomstream has confirmed their grant, plain otherwise.
fn player_url(video: &VideoAccess, access_code: Option<&str>) -> String {
    let base = format!(
        "{BOOMSTREAM_PLAYER}{}",
        http::encode_component(&video.media_code)
    );
    match access_code {
        Some(code) if video.boomstream_confirmed => {
            format!("{base}?id_recovery={}", http::encode_component(code))
        }
        _ => base,
    }
}
