//! Validation: new users, passwords, users named on the command line, video ids.

use generator::admin::passwords::{self, Argon2, Progress};
use generator::admin::users::{self, NewUser};
use generator::admin::{SqlScript, Target, UserRef, grants, validate};

use super::{FastHasher, user_ref};

fn error(result: anyhow::Result<NewUser>) -> String {
    result.expect_err("the new user is refused").to_string()
}

#[test]
fn a_new_user_is_trimmed_and_its_e_mail_lowercased() {
    let ok = NewUser::new(" Anna@Example.COM ", "  Анна  ", Some("123"), Some(" 456 ")).unwrap();
    assert_eq!(
        ok,
        NewUser {
            email: "anna@example.com".into(),
            name: "Анна".into(),
            telegram_id: Some(123),
            stepik_user_id: Some(456),
        }
    );
}

#[test]
fn every_problem_of_a_new_user_is_in_one_message() {
    let message = error(NewUser::new("anna@", "A\tB", Some("12ab"), Some("0")));
    for part in [
        "e-mail \"anna@\" is not valid: no domain after the @",
        "the name \"A\\tB\" contains a control character",
        "--telegram-id \"12ab\" is not a number",
        "--stepik-id \"0\" must be positive",
    ] {
        assert!(message.contains(part), "{part:?} not in {message}");
    }
}

#[test]
fn an_e_mail_needs_exactly_one_at() {
    assert!(error(NewUser::new("anna.example.com", "", None, None)).contains("exactly one @"));
}

#[test]
fn an_e_mail_domain_needs_a_dot() {
    assert!(error(NewUser::new("anna@example", "", None, None)).contains("has no dot"));
}

#[test]
fn an_e_mail_with_a_space_is_refused() {
    assert!(error(NewUser::new("an na@example.com", "", None, None)).contains("space"));
}

#[test]
fn an_empty_e_mail_is_refused() {
    assert!(error(NewUser::new("", "", None, None)).contains("the e-mail is empty"));
}

#[test]
fn a_name_over_200_characters_is_refused() {
    assert!(
        error(NewUser::new("a@example.com", &"я".repeat(201), None, None)).contains("at most 200")
    );
}

#[test]
fn a_telegram_id_beyond_the_safe_integers_is_too_large() {
    assert!(
        error(NewUser::new(
            "a@example.com",
            "",
            Some("9007199254740992"),
            None
        ))
        .contains("too large")
    );
}

/// A password longer than the site accepts.
fn too_long_password() -> String {
    "x".repeat(course_core::password::MAX_PASSWORD_BYTES + 1)
}

/// The password is refused with `expected`, and never quoted back.
fn assert_password_refused(password: &str, expected: &str) {
    let message = validate::password(password).expect_err("the password is refused");
    assert!(message.contains(expected), "{message}");
    if !password.is_empty() {
        assert!(
            !message.contains(password),
            "the password leaked: {message}"
        );
    }
}

#[test]
fn an_empty_password_is_refused() {
    assert_password_refused("", "the password is empty");
}

#[test]
fn a_password_under_8_characters_is_refused_without_quoting_it() {
    assert_password_refused("abc12", "shorter than 8 characters");
}

#[test]
fn a_password_over_1024_bytes_is_refused_without_quoting_it() {
    assert_password_refused(&too_long_password(), "at most 1024 are allowed");
}

#[test]
fn a_password_with_a_control_character_is_refused_without_quoting_it() {
    assert_password_refused("two\nlines!", "control character");
}

#[test]
fn a_cyrillic_password_with_punctuation_is_valid() {
    assert!(validate::password("пароль-ёлка").is_ok());
}

#[test]
fn a_user_named_by_id() {
    assert_eq!(user_ref("id:7"), UserRef::Id(7));
}

#[test]
fn a_user_named_by_telegram_id() {
    assert_eq!(user_ref("telegram:42"), UserRef::Telegram(42));
}

#[test]
fn a_user_named_by_stepik_id() {
    assert_eq!(user_ref("stepik:9"), UserRef::Stepik(9));
}

#[test]
fn a_user_named_by_e_mail_is_lowercased() {
    assert_eq!(
        user_ref("ANNA@example.com"),
        UserRef::Email("anna@example.com".into())
    );
}

#[test]
fn a_user_ref_with_a_bad_number_is_refused() {
    assert!(
        "telegram:abc"
            .parse::<UserRef>()
            .unwrap_err()
            .contains("not a number")
    );
}

#[test]
fn a_user_ref_of_an_unknown_kind_is_refused() {
    assert!(
        "vk:1"
            .parse::<UserRef>()
            .unwrap_err()
            .contains("unknown kind")
    );
}

#[test]
fn a_bad_password_stops_users_add_before_anything_is_read_or_written() {
    let mut script = SqlScript::new("test");
    let user = NewUser::new("anna@example.com", "", None, None).unwrap();
    let err = users::add(
        &mut Target::Script(&mut script),
        &user,
        &too_long_password(),
        &FastHasher,
    )
    .unwrap_err();
    assert!(err.to_string().contains("at most 1024"), "{err}");
    assert!(script.is_empty());
}

#[test]
fn grants_add_refuses_a_video_id_the_schema_does_not_allow() {
    let mut script = SqlScript::new("test");
    let err = grants::add(
        &mut Target::Script(&mut script),
        &user_ref("anna@example.com"),
        &["Intro".to_owned(), "ok".to_owned()],
    )
    .unwrap_err();
    assert!(
        err.to_string().contains("video id \"Intro\" is not valid"),
        "{err}"
    );
    assert!(script.is_empty());
}

#[test]
fn generated_passwords_pass_validation_and_hash_with_argon2_in_parallel() {
    let generated: Vec<String> = (0..8).map(|_| passwords::generate().unwrap()).collect();
    for p in &generated {
        assert!(validate::password(p).is_ok(), "{p}");
    }
    let refs: Vec<&str> = generated.iter().map(String::as_str).collect();
    let hashes = passwords::hash_all(&Argon2, &refs, Progress::Off, "test").unwrap();
    for (p, h) in refs.iter().zip(&hashes) {
        assert!(h.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{h}");
        assert!(course_core::password::verify(p, h));
    }
    let pairs: Vec<(&str, &str)> = vec![(refs[0], &hashes[0]), (refs[0], &hashes[1])];
    assert_eq!(
        passwords::verify_all(&Argon2, &pairs, Progress::Off, "test"),
        [true, false]
    );
}
