//! Login throttle

use course_core::app::App;

use crate::support::*;

#[test]
fn five_wrong_passwords_lock_the_account_until_the_window_ends() {
    let site = Site::new();
    for i in 0..5 {
        site.now.set(NOW + i * 10);
        site.fail_login(None, ANNA);
    }
    site.now.set(NOW + 100);
    // Even the right password waits; case and spaces do not make another account.
    for email in [ANNA, " Anna@EXAMPLE.com "] {
        site.assert_throttled(&site.login(email, PASSWORD), 800, 14);
    }
    assert!(site.store.rows().is_empty());
    // Other accounts are not affected.
    assert_redirect(&site.login(WEAK, WEAK_PASSWORD), "/me");
    site.now.set(NOW + 899);
    site.assert_throttled(&site.login(ANNA, PASSWORD), 1, 1);
    site.now.set(NOW + 900);
    assert_redirect(&site.login(ANNA, PASSWORD), "/me");
}

#[test]
fn successful_login_clears_the_account_counter() {
    let site = Site::new();
    for _ in 0..4 {
        site.fail_login(None, ANNA);
    }
    assert_redirect(&site.login(ANNA, PASSWORD), "/me");
    // Counting starts again: the fifth failure after the success is still a 401.
    for _ in 0..5 {
        site.fail_login(None, ANNA);
    }
    site.assert_throttled(&site.login(ANNA, PASSWORD), 900, 15);
}

#[test]
fn one_address_failing_across_accounts_is_throttled_alone() {
    let site = Site::new();
    for i in 0..19 {
        site.fail_login(Some(IP), &format!("guess{i}@example.com"));
    }
    // A success from the address does not clear the address's count.
    assert_redirect(&site.login_from(Some(IP), ANNA, PASSWORD), "/me");
    site.fail_login(Some(IP), "guess19@example.com");
    site.now.set(NOW + 30);
    for email in [ANNA, "new@example.com"] {
        site.assert_throttled(&site.login_from(Some(IP), email, PASSWORD), 870, 15);
    }
    assert_redirect(&site.login_from(Some(OTHER_IP), ANNA, PASSWORD), "/me");
    assert_redirect(&site.login(ANNA, PASSWORD), "/me");
    // Counters are kept under hashes: no e-mail or address is stored.
    for window in site.store.failures.borrow().iter() {
        assert_eq!(window.key.len(), 64);
        assert!(!window.key.contains("guess") && !window.key.contains(IP));
    }
}

/// With Cloudflare's pseudo-IPv4 on, `cf-connecting-ip` of an IPv6 client is a made-up
/// Class E address; the real one is in `cf-connecting-ipv6`, and that is what is
/// counted — only then.
#[test]
fn ipv6_clients_are_counted_by_cf_connecting_ipv6() {
    let site = Site::with_env(&[("LOGIN_MAX_FAILURES_PER_ADDRESS", "3")]);
    let from = |pseudo: &str, v6: &str, email: &str, pw: &str| {
        site.handle(&with_headers(
            login_request(email, pw),
            &[("cf-connecting-ip", pseudo), ("cf-connecting-ipv6", v6)],
        ))
    };
    for (i, email) in ["a@example.com", "b@example.com", "c@example.com"]
        .iter()
        .enumerate()
    {
        // A new pseudo address and a new host in the same /64 every time.
        let resp = from(
            &format!("240.0.0.{i}"),
            &format!("2001:db8:5:6::{i}"),
            email,
            "wrong",
        );
        assert_page(&resp, 401, LOGIN_FAILED);
    }
    site.assert_throttled(
        &from("240.0.0.9", "2001:db8:5:6::9", ANNA, PASSWORD),
        900,
        15,
    );
    assert_redirect(&from("240.0.0.9", "2001:db8:5:7::1", ANNA, PASSWORD), "/me");

    // A real IPv4 client cannot escape its count with a forged IPv6 header.
    for i in 0..3 {
        let resp = from(
            "203.0.113.7",
            &format!("2001:db8:{i}::1"),
            &format!("x{i}@example.com"),
            "wrong",
        );
        assert_page(&resp, 401, LOGIN_FAILED);
    }
    site.assert_throttled(
        &from("203.0.113.7", "2001:db8:99::1", ANNA, PASSWORD),
        900,
        15,
    );
}

#[test]
fn throttle_limits_and_window_come_from_settings() {
    let site = Site::with_env(&[
        ("LOGIN_MAX_FAILURES_PER_ACCOUNT", "2"),
        ("LOGIN_MAX_FAILURES_PER_ADDRESS", "3"),
        ("LOGIN_THROTTLE_WINDOW_SECS", "60"),
    ]);
    for _ in 0..2 {
        site.fail_login(None, ANNA);
    }
    site.assert_throttled(&site.login(ANNA, PASSWORD), 60, 1);
    for email in ["a@example.com", "b@example.com", "c@example.com"] {
        site.fail_login(Some(IP), email);
    }
    site.assert_throttled(&site.login_from(Some(IP), WEAK, WEAK_PASSWORD), 60, 1);
    site.now.set(NOW + 60);
    assert_redirect(&site.login(ANNA, PASSWORD), "/me");
    assert_redirect(&site.login_from(Some(IP), WEAK, WEAK_PASSWORD), "/me");
}

#[test]
fn disabled_account_with_the_right_password_is_not_a_failure() {
    let site = Site::new();
    for _ in 0..6 {
        assert_page(&site.login(DISABLED, PASSWORD), 403, ACCOUNT_DISABLED);
    }
    assert!(site.store.failures.borrow().is_empty());
    // Wrong passwords count as for any account.
    for _ in 0..5 {
        site.fail_login(None, DISABLED);
    }
    site.assert_throttled(&site.login(DISABLED, PASSWORD), 900, 15);
}

#[test]
fn throttle_store_failures_only_log_when_writing() {
    // A failed guess writes nothing after its reservation.
    let site = Site::new();
    site.store.fail_only("release_login");
    site.fail_login(None, ANNA);
    assert!(site.logs().is_empty());
    // The right password gives the reservation back in the session's batch: no
    // release of its own.
    assert_eq!(site.login(ANNA, PASSWORD).status, 303);
    assert!(!site.store.called("release_login"));
    assert!(site.logs().is_empty());
    // A disabled account's right password: released by itself; that failing is
    // logged, and the answer stays 403.
    assert_page(&site.login(DISABLED, PASSWORD), 403, ACCOUNT_DISABLED);
    assert_eq!(
        site.logs(),
        ["login attempt not released: simulated failure in release_login"]
    );
    // Reserving fails: 503 before any password is checked.
    let site = Site::new();
    site.store.fail_only("reserve_login");
    assert_unavailable(&site, &site.login(ANNA, PASSWORD));
    assert_eq!(*site.store.calls.borrow(), ["reserve_login"]);
}

#[test]
fn attempts_arriving_at_once_are_counted_before_any_is_verified() {
    // Thirty wrong passwords for one account at the same moment: each reserves its
    // attempt first, so the sixth and later are refused without being verified.
    let site = Site::new();
    let log = |_: &str| {};
    let app = App {
        store: &site.store,
        keys: site.keys.as_ref(),
        settings: site.settings.as_ref().map_err(String::as_str),
        pages: &site.pages,
        now: NOW,
        log: &log,
        outside: &course_core::app::NoOutside,
        tokens: &course_core::app::TokenCache::new(),
        defer: &|_| {},
    };
    let requests: Vec<_> = (0..30)
        .map(|_| login_request(ANNA, "wrong password"))
        .collect();
    // Poll all thirty futures together, as concurrent requests to one database.
    let futures: Vec<_> = requests.iter().map(|req| app.handle(req)).collect();
    let statuses: Vec<u16> = pollster::block_on(join_all(futures))
        .into_iter()
        .map(|r| r.status)
        .collect();
    assert_eq!(
        statuses.iter().filter(|s| **s == 401).count(),
        5,
        "{statuses:?}"
    );
    assert_eq!(
        statuses.iter().filter(|s| **s == 429).count(),
        25,
        "{statuses:?}"
    );
    // The count is the five failures: refused attempts gave theirs back.
    let windows = site.store.failures.borrow();
    assert_eq!(windows.iter().map(|w| w.failures).collect::<Vec<_>>(), [5]);
}

/// Polls futures round-robin until all are done (`futures::future::join_all`, without
/// the dependency): they interleave at every await, as concurrent requests do.
async fn join_all<F: std::future::Future>(futures: Vec<F>) -> Vec<F::Output> {
    use std::pin::Pin;
    use std::task::Poll;
    let mut futures: Vec<Pin<Box<F>>> = futures.into_iter().map(Box::pin).collect();
    let mut out: Vec<Option<F::Output>> = futures.iter().map(|_| None).collect();
    std::future::poll_fn(|cx| {
        let mut pending = false;
        for (f, slot) in futures.iter_mut().zip(out.iter_mut()) {
            if slot.is_none() {
                match f.as_mut().poll(cx) {
                    Poll::Ready(v) => *slot = Some(v),
                    Poll::Pending => pending = true,
                }
            }
        }
        if pending {
            Poll::Pending
        } else {
            Poll::Ready(())
        }
    })
    .await;
    out.into_iter()
        .map(|o| o.expect("every future finished"))
        .collect()
}
