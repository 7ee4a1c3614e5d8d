//! Videos: the links on /me and the watch pages, /me/videos/<id>

use crate::support::*;

#[test]
fn granted_videos_link_to_their_page_and_a_preauthorised_player_once_confirmed() {
    let site = Site::new();
    let cookie = site.signed_in();
    // No access code yet: plain player links, no code section.
    let body = site.me_html(&cookie);
    assert!(
        body.contains(r#"href="https://play.boomstream.com/abc123""#),
        "{body}"
    );
    assert!(body.contains(r#"<a href="/me/videos/intro">Введение</a>"#));
    assert!(!body.contains("access-code"));
    site.store
        .access_codes
        .borrow_mut()
        .push((ANNA_ID, "Zx9-code_ABC".into()));
    site.store.confirmed.borrow_mut().push((ANNA_ID, "intro"));
    let body = site.me_html(&cookie);
    assert!(body.contains(r#"href="https://play.boomstream.com/abc123?id_recovery=Zx9-code_ABC""#));
    // Not confirmed yet for the second video: a plain link.
    assert!(body.contains(r#"href="https://play.boomstream.com/x%20y""#));
    assert!(body.contains(r#"<code id="access-code">Zx9-code_ABC</code>"#));
}

#[test]
fn the_watch_page_embeds_the_player_for_granted_videos_only() {
    let site = Site::new();
    let cookie = site.signed_in();
    site.store
        .access_codes
        .borrow_mut()
        .push((ANNA_ID, "CODE".into()));
    site.store.confirmed.borrow_mut().push((ANNA_ID, "intro"));
    let page = site.handle(&with_cookie(get("/me/videos/intro"), &cookie));
    assert_eq!(page.status, 200);
    assert!(
        html(&page)
            .contains(r#"<iframe src="https://play.boomstream.com/abc123?id_recovery=CODE""#)
    );
    assert!(
        !html(&page).contains("access-code"),
        "pre-authorised: no code needed"
    );
    let unconfirmed = site.handle(&with_cookie(get("/me/videos/basics"), &cookie));
    assert_eq!(unconfirmed.status, 200);
    assert!(html(&unconfirmed).contains(r#"<iframe src="https://play.boomstream.com/x%20y""#));
    assert!(html(&unconfirmed).contains(r#"<code id="access-code">CODE</code>"#));
    let locked = site.handle(&with_cookie(get("/me/videos/final"), &cookie));
    assert_eq!(locked.status, 403);
    assert!(html(&locked).contains("Это видео пока закрыто"));
    assert!(html(&locked).contains(&final_unlock(course_core::site::Lang::Ru)));
    assert!(!html(&locked).contains("iframe"));
    for missing in [
        "/me/videos/nope",
        "/me/videos/%FF",
        "/me/videos/a%2Fb",
        "/me/videos/",
    ] {
        assert_eq!(
            site.handle(&with_cookie(get(missing), &cookie)).status,
            404,
            "{missing}"
        );
    }
    let anonymous = site.handle(&get("/me/videos/intro"));
    assert_redirect(&anonymous, "/login?next=/me/videos/intro");
}

#[test]
fn a_video_open_to_everyone_needs_no_grant_row() {
    let site = Site::with_telegram();
    // This student has no grant for "intro", whose rule is `always = true`.
    let cookie = site.telegram_signed_in(TG_NO_PASSWORD);
    let body = site.me_html(&cookie);
    let granted = &body[body.find(r#"id="granted""#).expect("granted list")..];
    let granted = &granted[..granted.find("</ul>").expect("end of the list")];
    assert!(
        granted.contains(r#"<a href="/me/videos/intro">Введение</a>"#),
        "{granted}"
    );
    let page = site.handle(&with_cookie(get("/me/videos/intro"), &cookie));
    assert_eq!(page.status, 200);
}
