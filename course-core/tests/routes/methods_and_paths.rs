//! GET /login, other methods and paths

use course_core::http::{Body, Method};

use crate::support::*;

#[test]
fn login_page_is_the_static_asset_unless_next_is_safe() {
    let site = Site::new();
    // Russian at the root; English under /en, which the browser is told to remember.
    for (prefix, lang, password_label) in [("", "ru", "Пароль"), ("/en", "en", "Password")] {
        let login = format!("{prefix}/login");
        let remembered = (!prefix.is_empty()).then_some(lang);
        for query in [
            "",
            "?next=//evil.com",
            "?next=https://evil.com",
            "?next=%ZZ",
            "?other=1",
        ] {
            let req = get(&format!("{login}{query}"));
            let resp = site.handle(&req);
            assert_eq!(resp.status, 200, "{login}{query}");
            assert_eq!(resp.body, Body::Asset(login.clone()), "{login}{query}");
            assert_eq!(resp.header("content-type"), None);
            assert_eq!(resp.header("cache-control"), None);
            assert_lang_cookie(&resp, &req, remembered);
        }
        for via in [https, local] {
            for (query, next) in [("?next=/me", "/me"), ("?next=%2Fme%3Fx%3D1", "/me?x=1")] {
                let req = via(get(&format!("{login}{query}")));
                let resp = site.handle(&req);
                assert_page_in(&resp, 200, lang, password_label);
                assert_eq!(resp.header("cache-control"), Some("no-store"));
                let body = html(&resp);
                assert!(
                    body.contains(&format!(
                        r#"<input type="hidden" name="next" value="{next}">"#
                    )),
                    "{body}"
                );
                assert!(body.contains(&format!(r#"action="{login}""#)), "{body}");
                assert_lang_cookie(&resp, &req, remembered);
            }
        }
    }
    assert!(site.store.calls.borrow().is_empty());
}

#[test]
fn other_methods_are_405_with_allow_and_unknown_paths_404() {
    let site = Site::with_telegram();
    let cases = [
        (with_method(get("/login"), Method::Other), "GET, HEAD, POST"),
        (with_method(get("/me"), Method::Other), "GET, HEAD, POST"),
        (
            with_method(get("/logout"), Method::Other),
            "GET, HEAD, POST",
        ),
        (post("/me", &[]), "GET, HEAD, POST"),
        (get(UNLINK), "POST"),
        (with_method(get(UNLINK), Method::Head), "POST"),
        (post(CALLBACK, &[]), "GET, HEAD"),
        (
            with_method(callback(&payload(TG_NO_PASSWORD, NOW)), Method::Other),
            "GET, HEAD",
        ),
        (post("/dev/telegram", &[]), "GET, HEAD"),
    ];
    for (req, allow) in cases {
        let resp = site.handle(&req);
        assert_page(&resp, 405, "Метод не поддерживается");
        assert_eq!(
            resp.header("allow"),
            Some(allow),
            "{} {:?}",
            req.path,
            req.method
        );
    }
    for path in [
        "/nope",
        "/login/",
        "/ME",
        "/login/telegram",
        "/me/telegram/unlink/",
    ] {
        let resp = site.handle(&get(path));
        assert_page(&resp, 404, NOT_FOUND);
        assert_eq!(resp.header("cache-control"), Some("no-store"));
    }
    assert!(site.store.calls.borrow().is_empty());
}
