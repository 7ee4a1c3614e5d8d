//! The student's page.

use super::{App, BOOMSTREAM_PLAYER, Store};
use crate::http::{self, Request, Response};
use crate::pages::{MeView, VideoItem};

impl<S: Store> App<'_, S> {
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
        let settings = self.settings.ok();
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
                })
                .collect(),
            locked: locked
                .into_iter()
                .map(|v| VideoItem {
                    title: v.title,
                    watch_url: None,
                })
                .collect(),
            telegram_bot: settings.and_then(|s| s.telegram_bot_username.clone()),
            telegram_id: current.row.telegram_id,
            can_unlink_telegram: current.row.has_password,
        };
        super::with_renewal(self.page(200, self.pages.me(&view)), &current)
    }
}
