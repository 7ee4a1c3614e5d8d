//! SQL literals: [`quote`] renders one value, [`inline`] a whole statement's placeholders.

use crate::{D1Error, SqlValue, Statement, invalid};

/// SQLite's limit on a `?NNN` placeholder's number.
const MAX_PLACEHOLDER: usize = 32_766;

/// The SQL literal for `value`: `NULL`; integers (negative ones parenthesised, so that
/// `1-?1` cannot become a `--` comment); reals in Rust's shortest round-trip form (always
/// with `.` or an exponent, so SQLite reads a REAL); text as `'…'` with `'` doubled and
/// every other character (backslashes, newlines, any Unicode) verbatim, NUL characters as
/// `('a'||char(0)||'b')`. A non-finite real renders as `NULL`, but [`inline`] and the D1
/// implementations refuse statements carrying one.
pub fn quote(value: &SqlValue) -> String {
    match value {
        SqlValue::Null => "NULL".to_owned(),
        // `-9223372036854775808` would be read as minus a too-large (hence REAL) literal.
        SqlValue::Integer(i64::MIN) => "(-9223372036854775807-1)".to_owned(),
        SqlValue::Integer(i) if *i < 0 => format!("({i})"),
        SqlValue::Integer(i) => i.to_string(),
        SqlValue::Real(f) if !f.is_finite() => "NULL".to_owned(),
        SqlValue::Real(f) if f.is_sign_negative() => format!("({f:?})"),
        SqlValue::Real(f) => format!("{f:?}"),
        SqlValue::Text(s) => quote_text(s),
    }
}

fn quote_text(text: &str) -> String {
    fn push_literal(out: &mut String, part: &str) {
        out.push('\'');
        for c in part.chars() {
            if c == '\'' {
                out.push('\'');
            }
            out.push(c);
        }
        out.push('\'');
    }
    let mut out = String::with_capacity(text.len() + 2);
    if text.contains('\0') {
        out.push('(');
        for (i, part) in text.split('\0').enumerate() {
            if i > 0 {
                out.push_str("||char(0)||");
            }
            push_literal(&mut out, part);
        }
        out.push(')');
    } else {
        push_literal(&mut out, text);
    }
    out
}

/// Replaces the statement's placeholders (`?NNN`, or bare `?` meaning one more than the
/// largest number so far, as in SQLite) with [`quote`]d literals. Placeholders inside
/// string literals, quoted identifiers (`"…"`, `` `…` ``, `[…]`) and comments are left
/// alone. Errors when a placeholder has no value, when values are left unused (D1 refuses
/// a wrong parameter count too), on named parameters (`:name`, `@name`, `$name`: not
/// supported), on non-finite reals and on unterminated literals.
pub fn inline(statement: &Statement) -> Result<String, D1Error> {
    check_reals(statement)?;
    let sql = statement.sql.as_str();
    let params = &statement.params;
    let bytes = sql.as_bytes();
    let mut out = String::with_capacity(sql.len() + 16 * params.len());
    let mut copied = 0; // bytes of `sql` already in `out`
    let mut largest = 0; // largest placeholder number seen
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            quote_char @ (b'\'' | b'"' | b'`') => {
                i = skip_quoted(bytes, i, quote_char)?;
            }
            b'[' => {
                i = bytes[i..]
                    .iter()
                    .position(|&b| b == b']')
                    .map(|p| i + p + 1)
                    .ok_or_else(|| invalid("unterminated [identifier]"))?;
            }
            b'-' if bytes.get(i + 1) == Some(&b'-') => {
                i = bytes[i..]
                    .iter()
                    .position(|&b| b == b'\n')
                    .map_or(bytes.len(), |p| i + p + 1);
            }
            b'/' if bytes.get(i + 1) == Some(&b'*') => {
                // An unterminated comment runs to the end of the input, as in SQLite.
                i = sql[i + 2..]
                    .find("*/")
                    .map_or(bytes.len(), |p| i + 2 + p + 2);
            }
            b'?' => {
                let digits = bytes[i + 1..]
                    .iter()
                    .take_while(|b| b.is_ascii_digit())
                    .count();
                let number = if digits == 0 {
                    largest + 1
                } else {
                    sql[i + 1..i + 1 + digits]
                        .parse::<usize>()
                        .ok()
                        .filter(|n| (1..=MAX_PLACEHOLDER).contains(n))
                        .ok_or_else(|| {
                            invalid(format!(
                                "placeholder ?{} is out of range (?1 to ?{MAX_PLACEHOLDER})",
                                &sql[i + 1..i + 1 + digits]
                            ))
                        })?
                };
                let value = params.get(number - 1).ok_or_else(|| {
                    invalid(format!(
                        "placeholder ?{number} has no value ({} parameter(s) given)",
                        params.len()
                    ))
                })?;
                largest = largest.max(number);
                out.push_str(&sql[copied..i]);
                out.push_str(&quote(value));
                i += 1 + digits;
                copied = i;
            }
            prefix @ (b':' | b'@' | b'$')
                if bytes.get(i + 1).is_some_and(|&b| is_identifier_byte(b))
                    && (prefix != b'$' || i == 0 || !is_identifier_byte(bytes[i - 1])) =>
            {
                return Err(invalid(format!(
                    "named parameters such as {}… are not supported; use ?1, ?2, …",
                    prefix as char
                )));
            }
            _ => i += 1,
        }
    }
    if largest != params.len() {
        return Err(invalid(format!(
            "{} parameter(s) given but the statement uses {largest}",
            params.len()
        )));
    }
    out.push_str(&sql[copied..]);
    Ok(out)
}

fn is_identifier_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_' || b >= 0x80
}

/// The index just past the literal that starts at `start` (quote doubled to escape).
fn skip_quoted(bytes: &[u8], start: usize, quote_char: u8) -> Result<usize, D1Error> {
    let mut i = start + 1;
    loop {
        match bytes[i..].iter().position(|&b| b == quote_char) {
            None => {
                return Err(invalid(format!(
                    "unterminated {} literal",
                    if quote_char == b'\'' {
                        "string"
                    } else {
                        "quoted identifier"
                    }
                )));
            }
            Some(p) if bytes.get(i + p + 1) == Some(&quote_char) => i += p + 2,
            Some(p) => return Ok(i + p + 1),
        }
    }
}
fn check_reals(statement: &Statement) -> Result<(), D1Error> {
    match statement
        .params
        .iter()
        .position(|p| matches!(p, SqlValue::Real(f) if !f.is_finite()))
    {
        Some(index) => Err(invalid(format!(
            "parameter ?{} is a non-finite real ({:?}); D1 cannot store it faithfully",
            index + 1,
            statement.params[index]
        ))),
        None => Ok(()),
    }
}
