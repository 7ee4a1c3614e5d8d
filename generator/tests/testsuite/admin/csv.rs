//! Reading the students' CSV: what a spreadsheet writes, and every problem named.

use generator::admin::import;

/// The problems `parse_csv` finds in `text`, as messages.
fn lines(text: &str) -> Vec<String> {
    import::parse_csv(text.as_bytes())
        .1
        .iter()
        .map(ToString::to_string)
        .collect()
}

#[test]
fn csv_bom_crlf_blank_lines_quotes_cyrillic_and_columns_in_any_order() {
    // BOM, CRLF, blank lines (also ones of empty cells), quoted commas, quotes and line
    // breaks inside quotes, Cyrillic, columns in any order and only some of them.
    let text = "\u{feff}Name, EMAIL ,telegram_id\r\n\
                \r\n\
                \"Doe, Anna\",Anna@Example.com,123\r\n\
                ,,\r\n\
                Иван «Ёлкин» O'Brien,ivan@example.com,\r\n\
                \"Say \"\"hi\"\"\",  hi@example.com  , 77 \r\n";
    let (rows, problems) = import::parse_csv(text.as_bytes());
    assert_eq!(problems, []);
    let summary: Vec<(u64, &str, Option<&str>, Option<i64>)> = rows
        .iter()
        .map(|r| (r.line, r.email.as_str(), r.name.as_deref(), r.telegram_id))
        .collect();
    assert_eq!(
        summary,
        [
            (3, "anna@example.com", Some("Doe, Anna"), Some(123)),
            (5, "ivan@example.com", Some("Иван «Ёлкин» O'Brien"), None),
            (6, "hi@example.com", Some("Say \"hi\""), Some(77)),
        ]
    );
    assert!(
        rows.iter()
            .all(|r| r.password.is_none() && r.stepik_user_id.is_none())
    );
}

#[test]
fn csv_password_cells_are_trimmed_and_kept_out_of_debug_output() {
    let (rows, problems) =
        import::parse_csv("email,password\na@example.com,\" s3cret-pass, ok \"\n".as_bytes());
    assert_eq!(problems, []);
    assert_eq!(rows[0].password.as_deref(), Some("s3cret-pass, ok"));
    assert!(!format!("{rows:?}").contains("s3cret"));
}

// Header problems stop at the header.

#[test]
fn a_csv_header_that_looks_like_data_is_named() {
    assert_eq!(
        lines("anna@example.com,Anna\nbob@example.com,Bob\n"),
        [
            "line 1: the first line must be the header naming the columns (email,name,password,telegram_id,stepik_user_id,access_code); this one looks like data"
        ]
    );
}

#[test]
fn unknown_and_repeated_csv_header_columns_are_named() {
    assert_eq!(
        lines("email,phone,name,name\na@example.com,1,A,B\n"),
        [
            "line 1: unknown column \"phone\" in the header (the columns are email,name,password,telegram_id,stepik_user_id,access_code)",
            "line 1: column \"name\" appears twice in the header",
        ]
    );
}

#[test]
fn a_csv_header_without_an_email_column_is_named() {
    assert_eq!(
        lines("name,password\nAnna,secret-pass\n"),
        [
            "line 1: the header has no email column (the columns are email,name,password,telegram_id,stepik_user_id,access_code)"
        ]
    );
}

#[test]
fn an_empty_csv_needs_a_header_and_rows() {
    assert_eq!(
        lines("\n\n"),
        [
            "the file is empty: it needs a header line (email,name,password,telegram_id,stepik_user_id,access_code) and rows"
        ]
    );
}

// Windows-1251 instead of UTF-8.

#[test]
fn a_windows_1251_row_is_named_as_not_utf8() {
    assert_eq!(
        import::parse_csv(b"email,name\na@example.com,\xc8\xe2\xe0\xed\n").1[0].to_string(),
        "line 2: not UTF-8 text (in a spreadsheet, save as \"CSV UTF-8\")"
    );
}

#[test]
fn a_windows_1251_header_means_the_file_is_not_utf8() {
    assert_eq!(
        import::parse_csv(b"\xc8\xec\xff,email\n").1[0].to_string(),
        "the file is not UTF-8 text (in a spreadsheet, save as \"CSV UTF-8\")"
    );
}

#[test]
fn every_csv_row_problem_is_named_with_its_line_and_only_valid_rows_come_back() {
    // Every row problem, with line numbers (a quoted line break moves them on).
    let text = "email,name,password,telegram_id,stepik_user_id\n\
                anna@example.com,Anna,secret-pass,100,200\n\
                bob@example,Bob,,,\n\
                carl@example.com,\"Carl\nSmith\",,abc,\n\
                ANNA@example.com,Anna again,,,\n\
                dora@example.com,Dora,short,100,200\n\
                eve@example.com,Doe, Eve,,,\n\
                frank@example.com,Frank,,-5,9007199254740992\n\
                ,Nobody,,,\n\
                gina@example.com,Gina,,,\n";
    assert_eq!(
        lines(text),
        [
            "line 3: e-mail \"bob@example\" is not valid: the domain \"example\" has no dot",
            "line 4: the name \"Carl\\nSmith\" contains a control character (a line break or tab?)",
            "line 4: telegram_id \"abc\" is not a number",
            "line 6: e-mail anna@example.com is already on line 2",
            "line 7: the password is shorter than 8 characters",
            "line 7: telegram_id 100 is already on line 2",
            "line 7: stepik_user_id 200 is already on line 2",
            "line 8: 6 fields, but the header has 5 columns (a value with a comma needs quotes: \"Doe, Anna\")",
            "line 9: telegram_id \"-5\" must be positive",
            "line 9: stepik_user_id \"9007199254740992\" is too large (at most 9007199254740991)",
            "line 10: the e-mail is empty",
        ]
    );
    let (rows, _) = import::parse_csv(text.as_bytes());
    assert_eq!(
        rows.iter().map(|r| r.line).collect::<Vec<_>>(),
        [2, 11],
        "only valid rows come back"
    );
}
