//! Languages: the path's (/en/...), then ?lang=, then the lang cookie, then Russian

use course_core::http::Method;
use course_core::session::KeyError;

use crate::support::*;

#[test]
fn the_english_login_form_answers_in_english_and_remembers_english() {
    let site = Site::new();
    for via in [https, local] {
        let req = via(login_request_to(EN_LOGIN, ANNA, "wrong password"));
        let resp = site.handle(&req);
        assert_page_in(&resp, 401, "en", "Wrong e-mail or password.");
        let body = html(&resp);
        assert!(body.contains(r#"action="/en/login""#), "{body}");
        assert!(body.contains(&format!("value=\"{ANNA}\"")), "{body}");
        assert!(!body.contains(LOGIN_FAILED));
        assert_eq!(resp.header_values("set-cookie").count(), 1, "{resp:?}");
        assert_lang_cookie(&resp, &req, Some("en"));

        let req = via(login_request_to(EN_LOGIN, ANNA, PASSWORD));
        let resp = site.handle(&req);
        assert_redirect(&resp, "/me");
        assert_eq!(resp.header_values("set-cookie").count(), 2, "{resp:?}");
        let (name, attrs) = cookie_kind(&req);
        let cookie = cookie_named(&resp, name, attrs, TTL);
        assert_eq!(claims_of(KEY_A, &cookie).user_id, ANNA_ID);
        assert_lang_cookie(&resp, &req, Some("en"));

        // The browser comes back with both cookies: /me in English.
        let req = with_cookies(via(get("/me")), Some(&cookie), Some("en"));
        let resp = site.handle(&req);
        assert_page_in(&resp, 200, "en", "You signed in with e-mail and password.");
        assert_lang_cookie(&resp, &req, None);
    }
}

#[test]
fn me_is_in_the_language_of_the_query_then_the_cookie_then_russian() {
    let site = Site::new();
    let cookie = site.signed_in();
    // What only the page of each language says, and its link to the other language.
    let (final_ru, final_en) = (
        final_unlock(course_core::site::Lang::Ru),
        final_unlock(course_core::site::Lang::En),
    );
    let russian = (
        [
            "<title>Мои видео",
            "Вы вошли по e-mail и паролю.",
            final_ru.as_str(),
        ],
        r#"href="/me?lang=en""#,
    );
    let english = (
        [
            "<title>My videos",
            "You signed in with e-mail and password.",
            final_en.as_str(),
        ],
        r#"href="/me?lang=ru""#,
    );
    // (path, lang cookie sent, the page's language, lang cookie set)
    let cases: [(&str, Option<&str>, &str, Option<&str>); 9] = [
        ("/me", None, "ru", None),
        ("/me", Some("ru"), "ru", None),
        ("/me", Some("en"), "en", None),
        ("/me?lang=en", None, "en", Some("en")),
        ("/me?lang=EN", Some("ru"), "en", Some("en")),
        ("/me?lang=ru", Some("en"), "ru", Some("ru")),
        // Languages the site does not have are ignored, in the query and the cookie.
        ("/me?lang=xx", None, "ru", None),
        ("/me?lang=xx", Some("en"), "en", None),
        ("/me", Some("xx"), "ru", None),
    ];
    for (path, lang_cookie, lang, remembered) in cases {
        let req = with_cookies(get(path), Some(&cookie), lang_cookie);
        let resp = site.handle(&req);
        let (mine, theirs) = if lang == "en" {
            (english, russian)
        } else {
            (russian, english)
        };
        for text in mine.0.into_iter().chain([mine.1]) {
            assert_page_in(&resp, 200, lang, text);
        }
        for text in theirs.0.into_iter().chain([theirs.1]) {
            assert!(
                !html(&resp).contains(text),
                "{path} {lang_cookie:?}: {text}"
            );
        }
        assert_lang_cookie(&resp, &req, remembered);
    }
}

#[test]
fn signing_in_is_asked_for_in_the_chosen_language() {
    let site = Site::new();
    // (request, where to sign in, lang cookie set)
    let cases = [
        (
            with_cookies(get("/me"), None, Some("en")),
            TO_EN_LOGIN,
            None,
        ),
        (get("/me?lang=en"), TO_EN_LOGIN, Some("en")),
        (
            with_cookies(get("/me?lang=xx"), None, Some("en")),
            TO_EN_LOGIN,
            None,
        ),
        (
            with_cookies(post(UNLINK, &[]), None, Some("en")),
            TO_EN_LOGIN,
            None,
        ),
        (with_cookies(get("/me"), None, Some("ru")), TO_LOGIN, None),
        (get("/me?lang=xx"), TO_LOGIN, None),
    ];
    for (req, location, remembered) in cases {
        let resp = site.handle(&req);
        assert_redirect(&resp, location);
        assert_lang_cookie(&resp, &req, remembered);
    }
    assert!(site.store.calls.borrow().is_empty());
}

#[test]
fn error_pages_come_in_the_chosen_language() {
    let mut site = Site::new();
    site.store.fail_all.set(true);
    let english = |req| with_cookies(req, None, Some("en"));
    let evil = |req| with_headers(req, &[("origin", EVIL)]);
    let cases = [
        (get("/en/nope"), 404, "Page not found"),
        (english(get("/nope")), 404, "Page not found"),
        (get("/nope?lang=en"), 404, "Page not found"),
        (
            with_method(get(EN_LOGIN), Method::Other),
            405,
            "Method not supported",
        ),
        (english(get(UNLINK)), 405, "Method not supported"),
        (
            evil(login_request_to(EN_LOGIN, ANNA, PASSWORD)),
            403,
            "Request refused",
        ),
        (english(evil(post("/logout", &[]))), 403, "Request refused"),
        (
            login_request_to(EN_LOGIN, ANNA, PASSWORD),
            503,
            "Service temporarily unavailable",
        ),
    ];
    for (req, status, heading) in cases {
        let resp = site.handle(&req);
        assert_page_in(&resp, status, "en", &format!("<h1>{heading}</h1>"));
        // Its links lead to the English pages.
        assert!(
            html(&resp).contains(r#"<a href="/en/">Home</a> · <a href="/en/login">Sign in</a>"#),
            "{resp:?}"
        );
    }
    site.keys = Err(KeyError::Missing);
    let resp = site.handle(&english(login_request(ANNA, PASSWORD)));
    assert_page_in(&resp, 503, "en", "<h1>The site is misconfigured</h1>");
    assert_no_cookie(&resp);
}

#[test]
fn the_language_switch_keeps_the_page_and_its_query_and_logout_keeps_the_language() {
    let site = Site::new();
    let english_login = site.handle(&get("/en/login?next=%2Fme"));
    assert!(
        html(&english_login).contains(r#"href="/login?next=/me&amp;lang=ru""#),
        "{english_login:?}"
    );
    let cookie = site.signed_in();
    let me = site.handle(&with_cookies(get("/me"), Some(&cookie), Some("en")));
    assert!(html(&me).contains(r#"href="/me?lang=ru""#));
    let logout = site.handle(&with_cookies(
        post("/logout", &[]),
        Some(&cookie),
        Some("en"),
    ));
    assert_redirect(&logout, "/en/login");
}
