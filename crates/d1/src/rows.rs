//! Typed rows: [`from_row`] deserialises one result row (a JSON object, column → value)
//! into any `T: Deserialize`, and [`D1Ext::query_as`] every row of a query, as workers-rs's
//! `D1Result::results::<T>()` does; [`D1Ext::query_pages`] reads a table a page at a time.
//!
//! Columns arrive as D1 hands them to JavaScript: NULL as `null`, INTEGER and REAL as
//! numbers, TEXT as strings. A row fits a type by column name (extra columns are ignored);
//! two leniencies bridge SQLite's types and Rust's:
//! - an integer field takes any number without a fractional part (`3` or `3.0`);
//! - a `bool` field takes an integer, 0 being false and anything else true (SQLite's
//!   booleans: `x IS NOT NULL AS flag`).
//!
//! A tuple reads each of its types from the whole row: `(User, Counts)` for a query that
//! selects the columns of both.
//!
//! A missing column fits only an `Option` field (as `None`) or one with `#[serde(default)]`;
//! NULL fits only an `Option`. Anything that does not fit is a [`D1Error::Row`] naming the
//! query and the column, never a panic.

use std::fmt;

use serde::de::value::BorrowedStrDeserializer;
use serde::de::{self, DeserializeOwned, DeserializeSeed, MapAccess, SeqAccess, Visitor};
use serde::forward_to_deserialize_any;
use serde_json::Value;

use crate::{D1, D1Error, Row, Statement};

/// Deserialises `row` into `T`; `sql` (the query the row came from) names it in errors.
pub fn from_row<T: DeserializeOwned>(row: &Row, sql: &str) -> Result<T, D1Error> {
    T::deserialize(RowDeserializer(row)).map_err(|RowError(message)| D1Error::Row {
        query: sql_head(sql),
        message,
    })
}

/// For `#[serde(deserialize_with = "d1::null_as_default")]`: NULL as the type's default
/// (a SQL boolean expression over a `LEFT JOIN` that may be NULL, read as `false`).
pub fn null_as_default<'de, D, T>(deserializer: D) -> Result<T, D::Error>
where
    D: de::Deserializer<'de>,
    T: Default + de::Deserialize<'de>,
{
    <Option<T> as de::Deserialize>::deserialize(deserializer).map(Option::unwrap_or_default)
}

/// The start of a query's SQL, for messages.
fn sql_head(sql: &str) -> String {
    let sql = sql.split_whitespace().collect::<Vec<_>>().join(" ");
    match sql.char_indices().nth(80) {
        Some((i, _)) => format!("{}…", &sql[..i]),
        None => sql,
    }
}

/// Typed reads, for every [`D1`] (`dyn D1` included).
pub trait D1Ext: D1 {
    /// Runs a read query and deserialises each row into `T` (see [`from_row`]).
    fn query_as<T: DeserializeOwned>(&mut self, statement: &Statement) -> Result<Vec<T>, D1Error> {
        self.query(statement)?
            .iter()
            .map(|row| from_row(row, &statement.sql))
            .collect()
    }

    /// The first row of a read query as `T`, or `None` when there is none.
    fn query_first<T: DeserializeOwned>(
        &mut self,
        statement: &Statement,
    ) -> Result<Option<T>, D1Error> {
        self.query(statement)?
            .first()
            .map(|row| from_row(row, &statement.sql))
            .transpose()
    }

    /// Reads a query a page at a time (keyset pagination) and hands each row to `each`.
    ///
    /// `page(after, limit)` is the statement for at most `limit` rows following the key
    /// `after` in its `ORDER BY` (`first` for the first page); `key` is a row's key, that of
    /// each page's last row starting the next page. Reading stops after a page of fewer
    /// than `page_rows` rows.
    fn query_pages<T, K>(
        &mut self,
        page_rows: usize,
        first: K,
        mut page: impl FnMut(&K, i64) -> Statement,
        key: impl Fn(&T) -> K,
        mut each: impl FnMut(T),
    ) -> Result<(), D1Error>
    where
        T: DeserializeOwned,
    {
        let page_rows = page_rows.max(1);
        let limit = i64::try_from(page_rows).unwrap_or(i64::MAX);
        let mut after = first;
        loop {
            let statement = page(&after, limit);
            let rows = self.query(&statement)?;
            let full = rows.len() >= page_rows;
            let mut last = None;
            for row in &rows {
                let row: T = from_row(row, &statement.sql)?;
                last = Some(key(&row));
                each(row);
            }
            match last {
                Some(next) if full => after = next,
                _ => return Ok(()),
            }
        }
    }
}

impl<D: D1 + ?Sized> D1Ext for D {}

/// What went wrong deserialising a row (the column is in the message).
#[derive(Debug)]
struct RowError(String);

impl fmt::Display for RowError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for RowError {}

impl de::Error for RowError {
    fn custom<M: fmt::Display>(message: M) -> Self {
        Self(message.to_string())
    }

    fn missing_field(field: &'static str) -> Self {
        Self(format!("no column `{field}`"))
    }
}

/// A row: a map of columns, or for a tuple the same row for each of its types.
struct RowDeserializer<'a>(&'a Row);

impl<'a> de::Deserializer<'a> for RowDeserializer<'a> {
    type Error = RowError;

    fn deserialize_any<V: Visitor<'a>>(self, visitor: V) -> Result<V::Value, RowError> {
        visitor.visit_map(Columns {
            entries: self.0.iter(),
            value: None,
        })
    }

    fn deserialize_tuple<V: Visitor<'a>>(
        self,
        len: usize,
        visitor: V,
    ) -> Result<V::Value, RowError> {
        visitor.visit_seq(SameRow {
            row: self.0,
            left: len,
        })
    }

    forward_to_deserialize_any! {
        <W: Visitor<'a>>
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf
        option unit unit_struct newtype_struct seq tuple_struct map struct enum
        identifier ignored_any
    }
}

/// A tuple's elements, each read from the whole row.
struct SameRow<'a> {
    row: &'a Row,
    left: usize,
}

impl<'a> SeqAccess<'a> for SameRow<'a> {
    type Error = RowError;

    fn next_element_seed<T: DeserializeSeed<'a>>(
        &mut self,
        seed: T,
    ) -> Result<Option<T::Value>, RowError> {
        if self.left == 0 {
            return Ok(None);
        }
        self.left -= 1;
        seed.deserialize(RowDeserializer(self.row)).map(Some)
    }

    fn size_hint(&self) -> Option<usize> {
        Some(self.left)
    }
}

/// A row's columns, as a map.
struct Columns<'a> {
    entries: serde_json::map::Iter<'a>,
    /// The column whose key was just read, for its value.
    value: Option<(&'a str, &'a Value)>,
}

impl<'a> MapAccess<'a> for Columns<'a> {
    type Error = RowError;

    fn next_key_seed<K: DeserializeSeed<'a>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, RowError> {
        let Some((key, value)) = self.entries.next() else {
            return Ok(None);
        };
        self.value = Some((key, value));
        seed.deserialize(BorrowedStrDeserializer::new(key))
            .map(Some)
    }

    fn next_value_seed<V: DeserializeSeed<'a>>(&mut self, seed: V) -> Result<V::Value, RowError> {
        let (key, value) = self
            .value
            .take()
            .ok_or_else(|| RowError("a value without its column".to_owned()))?;
        seed.deserialize(Cell(value))
            .map_err(|e| RowError(format!("column `{key}`: {e}")))
    }

    fn size_hint(&self) -> Option<usize> {
        Some(self.entries.len())
    }
}

/// One column's value, with the leniencies of the module's documentation.
struct Cell<'a>(&'a Value);

impl Cell<'_> {
    /// The value as an integer, when it is a number without a fractional part.
    fn integer(&self) -> Option<i64> {
        let Value::Number(n) = self.0 else {
            return None;
        };
        n.as_i64().or_else(|| {
            // 2^63 as f64 is exact; every integral f64 in [-2^63, 2^63) fits an i64.
            n.as_f64()
                .filter(|f| {
                    f.fract() == 0.0
                        && (-9.223_372_036_854_776e18..9.223_372_036_854_776e18).contains(f)
                })
                .map(|f| f as i64)
        })
    }
}

macro_rules! integers {
    ($($method:ident)*) => {
        $(
            fn $method<V: Visitor<'a>>(self, visitor: V) -> Result<V::Value, Self::Error> {
                match self.0 {
                    // A float without a fractional part: as the integer it is.
                    Value::Number(n) if n.is_f64() => match self.integer() {
                        Some(i) => visitor.visit_i64(i),
                        None => self.0.$method(visitor),
                    },
                    _ => self.0.$method(visitor),
                }
            }
        )*
    };
}

macro_rules! delegate {
    ($($method:ident)*) => {
        $(
            fn $method<V: Visitor<'a>>(self, visitor: V) -> Result<V::Value, Self::Error> {
                self.0.$method(visitor)
            }
        )*
    };
}

impl<'a> de::Deserializer<'a> for Cell<'a> {
    type Error = serde_json::Error;

    fn deserialize_bool<V: Visitor<'a>>(self, visitor: V) -> Result<V::Value, Self::Error> {
        match self.integer() {
            Some(i) => visitor.visit_bool(i != 0),
            None => self.0.deserialize_bool(visitor),
        }
    }

    fn deserialize_option<V: Visitor<'a>>(self, visitor: V) -> Result<V::Value, Self::Error> {
        match self.0 {
            Value::Null => visitor.visit_none(),
            _ => visitor.visit_some(self),
        }
    }

    fn deserialize_newtype_struct<V: Visitor<'a>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, Self::Error> {
        visitor.visit_newtype_struct(self)
    }

    fn deserialize_unit_struct<V: Visitor<'a>>(
        self,
        name: &'static str,
        visitor: V,
    ) -> Result<V::Value, Self::Error> {
        self.0.deserialize_unit_struct(name, visitor)
    }

    fn deserialize_tuple<V: Visitor<'a>>(
        self,
        len: usize,
        visitor: V,
    ) -> Result<V::Value, Self::Error> {
        self.0.deserialize_tuple(len, visitor)
    }

    fn deserialize_tuple_struct<V: Visitor<'a>>(
        self,
        name: &'static str,
        len: usize,
        visitor: V,
    ) -> Result<V::Value, Self::Error> {
        self.0.deserialize_tuple_struct(name, len, visitor)
    }

    fn deserialize_struct<V: Visitor<'a>>(
        self,
        name: &'static str,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Self::Error> {
        self.0.deserialize_struct(name, fields, visitor)
    }

    fn deserialize_enum<V: Visitor<'a>>(
        self,
        name: &'static str,
        variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Self::Error> {
        self.0.deserialize_enum(name, variants, visitor)
    }

    integers! {
        deserialize_i8 deserialize_i16 deserialize_i32 deserialize_i64 deserialize_i128
        deserialize_u8 deserialize_u16 deserialize_u32 deserialize_u64 deserialize_u128
    }

    delegate! {
        deserialize_any deserialize_f32 deserialize_f64 deserialize_char deserialize_str
        deserialize_string deserialize_bytes deserialize_byte_buf deserialize_unit
        deserialize_seq deserialize_map deserialize_identifier deserialize_ignored_any
    }
}

#[cfg(test)]
mod tests {
    use serde::Deserialize;
    use serde_json::json;

    use super::*;
    use crate::SqlValue;

    fn row(value: Value) -> Row {
        match value {
            Value::Object(map) => map,
            _ => unreachable!("a test row is an object"),
        }
    }

    #[derive(Debug, Deserialize, PartialEq)]
    struct User {
        id: i64,
        email: Option<String>,
        flag: bool,
        score: f64,
        #[serde(default)]
        count: u32,
    }

    #[test]
    fn rows_fit_structs_with_sqlite_leniencies() {
        let user: User = from_row(
            &row(json!({"id": 3.0, "email": null, "flag": 1, "score": 2, "extra": "x"})),
            "SELECT …",
        )
        .unwrap();
        assert_eq!(
            user,
            User {
                id: 3,
                email: None,
                flag: true,
                score: 2.0,
                count: 0
            }
        );
        let user: User = from_row(
            &row(json!({"id": 4, "email": "a@b", "flag": 0, "score": 0.5, "count": 7})),
            "",
        )
        .unwrap();
        assert_eq!(
            (user.email.as_deref(), user.flag, user.count),
            (Some("a@b"), false, 7)
        );
        // Option<bool> and newtypes take the same leniencies.
        #[derive(Deserialize)]
        struct Flags {
            a: Option<bool>,
            b: Option<bool>,
        }
        let flags: Flags = from_row(&row(json!({"a": 2, "b": null})), "").unwrap();
        assert_eq!((flags.a, flags.b), (Some(true), None));
        #[derive(Deserialize)]
        struct Defaults {
            #[serde(deserialize_with = "crate::null_as_default")]
            a: bool,
            #[serde(deserialize_with = "crate::null_as_default")]
            b: bool,
        }
        let defaults: Defaults = from_row(&row(json!({"a": null, "b": 1})), "").unwrap();
        assert_eq!((defaults.a, defaults.b), (false, true));
    }

    #[test]
    fn a_tuple_reads_each_type_from_the_whole_row() {
        #[derive(Deserialize)]
        struct Count {
            n: i64,
        }
        let (user, Count { n }): (User, Count) =
            from_row(&row(json!({"id": 1, "flag": 1, "score": 0, "n": 5})), "").unwrap();
        assert_eq!((user.id, user.flag, n), (1, true, 5));
    }

    #[test]
    fn misfits_name_the_query_and_the_column() {
        let error = from_row::<User>(
            &row(json!({"id": "seven", "flag": 0, "score": 1})),
            "SELECT id,\n  flag FROM users",
        )
        .unwrap_err();
        let message = error.to_string();
        assert!(message.contains("SELECT id, flag FROM users"), "{message}");
        assert!(message.contains("column `id`"), "{message}");
        assert!(message.contains("invalid type"), "{message}");

        let missing = from_row::<User>(&row(json!({"flag": 0, "score": 1})), "Q").unwrap_err();
        assert!(missing.to_string().contains("no column `id`"), "{missing}");

        let null =
            from_row::<User>(&row(json!({"id": null, "flag": 0, "score": 1})), "Q").unwrap_err();
        assert!(null.to_string().contains("column `id`"), "{null}");

        let fraction =
            from_row::<User>(&row(json!({"id": 1.5, "flag": 0, "score": 1})), "Q").unwrap_err();
        assert!(fraction.to_string().contains("column `id`"), "{fraction}");

        let overflow = from_row::<User>(
            &row(json!({"id": 1, "flag": 0, "score": 1, "count": -1})),
            "Q",
        )
        .unwrap_err();
        assert!(
            overflow.to_string().contains("column `count`"),
            "{overflow}"
        );
    }

    /// Serves `SELECT n … WHERE n > ?1 ORDER BY n LIMIT ?2` from a list.
    struct Numbers {
        rows: Vec<Value>,
        queries: usize,
    }

    impl D1 for Numbers {
        fn query(&mut self, statement: &Statement) -> Result<Vec<Row>, D1Error> {
            self.queries += 1;
            let [SqlValue::Integer(after), SqlValue::Integer(limit)] = statement.params[..] else {
                unreachable!("two integer parameters")
            };
            Ok(self
                .rows
                .iter()
                .filter(|n| n.as_i64().is_none_or(|n| n > after))
                .take(limit as usize)
                .map(|n| row(json!({ "n": n })))
                .collect())
        }

        fn execute(&mut self, _: &[Statement]) -> Result<crate::ExecuteReport, D1Error> {
            unreachable!("no writes")
        }
    }

    fn pages(rows: Vec<Value>, page_rows: usize) -> (Result<Vec<i64>, D1Error>, usize) {
        #[derive(Deserialize)]
        struct N {
            n: i64,
        }
        let mut db = Numbers { rows, queries: 0 };
        let mut seen = Vec::new();
        let result = (&mut db as &mut dyn D1).query_pages(
            page_rows,
            0,
            |after, limit| {
                Statement::new("SELECT n FROM t WHERE n > ?1 ORDER BY n LIMIT ?2")
                    .bind(*after)
                    .bind(limit)
            },
            |row: &N| row.n,
            |row| seen.push(row.n),
        );
        (result.map(|()| seen), db.queries)
    }

    #[test]
    fn pages_follow_the_last_key_until_a_short_page() {
        let (seen, queries) = pages((1..=7).map(Value::from).collect(), 3);
        assert_eq!((seen.unwrap(), queries), ((1..=7).collect(), 3));
        // A last page exactly full costs one more, empty, query.
        let (seen, queries) = pages((1..=6).map(Value::from).collect(), 3);
        assert_eq!((seen.unwrap(), queries), ((1..=6).collect(), 3));
        let (seen, queries) = pages(Vec::new(), 3);
        assert_eq!((seen.unwrap(), queries), (Vec::new(), 1));
        // A row that does not fit stops the reading with an error.
        let (seen, _) = pages(vec![json!(1), json!("two")], 3);
        let message = seen.unwrap_err().to_string();
        assert!(message.contains("column `n`"), "{message}");
    }

    #[test]
    fn long_queries_are_shortened_in_messages() {
        let sql = format!("SELECT {} FROM t", "x, ".repeat(100));
        let message = from_row::<User>(&Row::new(), &sql).unwrap_err().to_string();
        assert!(message.contains('…'), "{message}");
        assert!(message.len() < 200, "{message}");
    }
}
