//! Database round trips: each `Store` call is one D1 query or batch

use crate::support::*;

/// Each store call is one D1 round trip (a query or a batch): the pages students open
/// most stay within their budget, whatever the state of the session.
#[test]
fn routes_stay_within_their_round_trip_budgets() {
    let site = Site::with_telegram();
    let cookie = site.signed_in();
    let budgets: [(&str, i64, usize, Action); 6] = [
        ("/me", 0, 1, |site, cookie| site.me(cookie)),
        ("/me, renewal due", 2 * HOUR, 1, |site, cookie| {
            site.me(cookie)
        }),
        ("/me/videos/<id>", 0, 1, |site, cookie| {
            site.get_with(cookie, "/me/videos/intro")
        }),
        (
            "/me/videos/<id>, renewal due",
            4 * HOUR,
            1,
            |site, cookie| site.get_with(cookie, "/me/videos/final"),
        ),
        ("POST /login", 0, 2, |site, _| site.login(ANNA, PASSWORD)),
        ("Telegram callback", 0, 2, |site, _| {
            site.telegram(&payload(TG_NO_PASSWORD, NOW))
        }),
    ];
    for (route, later, budget, request) in budgets {
        site.now.set(NOW + later);
        let (resp, calls) = site.round_trips(|site| request(site, &cookie));
        assert!(resp.status < 500, "{route}: {resp:?}");
        eprintln!("{route}: {} round trip(s): {calls:?}", calls.len());
        assert!(
            calls.len() <= budget,
            "{route}: {calls:?} over its budget of {budget}"
        );
    }
    let (resp, calls) =
        site.round_trips(|site| site.handle(&with_cookie(post("/logout", &[]), &cookie)));
    assert_eq!(resp.status, 303);
    assert_eq!(calls, ["delete_session"], "POST /logout");
}
