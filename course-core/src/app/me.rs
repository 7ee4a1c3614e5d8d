//! The student's page.

use super::{BOOMSTREAM_PLAYER, Handler, Store};
use crate::http::{self, Request, Response};
use crate::pages::{MeView, VideoItem};

impl<S: Store> Handler<'_, '_, S> {
    pub(super) async fn me(&self, req: &Request) -> Response {
        let current = match self.require_session(req, "/me").await {
            Ok(c) => c,
            Err(resp) => return resp,
        };
        let videos = match self.store.videos_for(current.claims.user_id).await {
            Ok(v) => v,
            Err(e) => return self.unavailable(&e),
        };
        let (granted, locked): (Vec<_>, Vec<_>) = videos.into_iter().partition(|v| v.granted);
        let view = MeView {
            student_name: current.row.user_name.clone(),
            auth_method: current.claims.method.as_str(),
            granted: granted
                .into_iter()
                .map(|v| VideoItem {
                    watch_url: Some(format!(
                        "{BOOMSTREAM_PLAYER}{}",
                        http::encode_component(&v.media_code)
                    )),
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
                })
                .collect(),
            telegram_id: current.row.telegram_id,
            can_unlink_telegram: current.row.has_password,
        };
        super::with_renewal(self.page(200, self.pages.me(&self.page, &view)), &current)
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
}
