//! The course structure: sections → units → lessons → steps, each level read by id
//! in batches.

use std::collections::{HashMap, HashSet};

use course_core::site::{CourseStructure, LessonInfo, SectionInfo};
use serde::Deserialize;
use serde::de::DeserializeOwned;

use super::{CourseMeta, StepikClient, StepikError};

/// Ids asked for in one request (Stepik answers 431 to very long URLs; then the batch
/// is split further).
const IDS_PER_REQUEST: usize = 50;

/// An object read by id.
trait Object: DeserializeOwned {
    /// Its resource: `/api/<resource>?ids[]=…`, and the answer's key.
    const RESOURCE: &'static str;
    fn id(&self) -> u64;
    fn update_date(&self) -> Option<&str>;
}

macro_rules! object {
    ($type:ty, $resource:literal) => {
        impl Object for $type {
            const RESOURCE: &'static str = $resource;
            fn id(&self) -> u64 {
                self.id
            }
            fn update_date(&self) -> Option<&str> {
                self.update_date.as_deref()
            }
        }
    };
}

#[derive(Deserialize)]
struct Section {
    id: u64,
    #[serde(default)]
    title: Option<String>,
    #[serde(default)]
    position: Option<i64>,
    #[serde(default)]
    units: Vec<u64>,
    #[serde(default)]
    update_date: Option<String>,
}

#[derive(Deserialize)]
struct Unit {
    id: u64,
    lesson: u64,
    #[serde(default)]
    position: Option<i64>,
    #[serde(default)]
    update_date: Option<String>,
}

#[derive(Deserialize)]
struct Lesson {
    id: u64,
    #[serde(default)]
    title: Option<String>,
    #[serde(default)]
    steps: Vec<u64>,
    #[serde(default)]
    update_date: Option<String>,
}

#[derive(Deserialize)]
struct Step {
    id: u64,
    #[serde(default)]
    position: Option<i64>,
    #[serde(default)]
    worth: Option<f64>,
    #[serde(default)]
    update_date: Option<String>,
}

object!(Section, "sections");
object!(Unit, "units");
object!(Lesson, "lessons");
object!(Step, "steps");

/// Objects by id; every id asked for is there.
struct ById<T>(HashMap<u64, T>);

impl<T: Object> ById<T> {
    fn get(&self, id: u64) -> Result<&T, StepikError> {
        self.0
            .get(&id)
            .ok_or_else(|| StepikError::Incomplete(format!("{} {id} is missing", T::RESOURCE)))
    }

    /// In the order of `ids`.
    fn ordered(&self, ids: &[u64]) -> Result<Vec<&T>, StepikError> {
        ids.iter().map(|id| self.get(*id)).collect()
    }

    fn dates(&self) -> impl Iterator<Item = &str> {
        self.0.values().filter_map(Object::update_date)
    }
}

fn by_position<T>(items: &mut [&T], position: impl Fn(&T) -> Option<i64>) {
    // Stable: objects without a position keep the order their parent lists them in.
    items.sort_by_key(|item| position(item).unwrap_or(i64::MAX));
}

pub(super) fn fetch(
    client: &StepikClient,
    course: &CourseMeta,
) -> Result<CourseStructure, StepikError> {
    let sections: ById<Section> = by_ids(client, &course.sections)?;
    let mut ordered_sections = sections.ordered(&dedup(&course.sections))?;
    by_position(&mut ordered_sections, |s| s.position);

    let unit_ids: Vec<u64> = ordered_sections
        .iter()
        .flat_map(|s| s.units.iter().copied())
        .collect();
    let units: ById<Unit> = by_ids(client, &unit_ids)?;
    let lesson_ids: Vec<u64> = units
        .ordered(&dedup(&unit_ids))?
        .iter()
        .map(|u| u.lesson)
        .collect();
    let lessons: ById<Lesson> = by_ids(client, &lesson_ids)?;
    let step_ids: Vec<u64> = lessons
        .ordered(&dedup(&lesson_ids))?
        .iter()
        .flat_map(|l| l.steps.iter().copied())
        .collect();
    let steps: ById<Step> = by_ids(client, &step_ids)?;

    let mut out = CourseStructure {
        course_id: Some(course.id),
        title: Some(course.title.clone()),
        ..CourseStructure::default()
    };
    for section in ordered_sections {
        let mut section_units = units.ordered(&section.units)?;
        by_position(&mut section_units, |u| u.position);
        let mut section_lessons = Vec::with_capacity(section_units.len());
        for unit in section_units {
            let lesson = lessons.get(unit.lesson)?;
            section_lessons.push(lesson.id);
            if out.lessons.contains_key(&lesson.id) {
                // A lesson placed twice: the first place is its home.
                continue;
            }
            let mut lesson_steps = steps.ordered(&lesson.steps)?;
            by_position(&mut lesson_steps, |s| s.position);
            let graded_steps = lesson_steps
                .iter()
                .filter(|s| s.worth.is_some_and(|w| w > 0.0))
                .map(|s| s.id)
                .collect();
            out.lessons.insert(
                lesson.id,
                LessonInfo {
                    title: lesson.title.clone().unwrap_or_default(),
                    section: Some(section.id),
                    unit: Some(unit.id),
                    graded_steps,
                },
            );
        }
        out.sections.insert(
            section.id,
            SectionInfo {
                title: section.title.clone().unwrap_or_default(),
                lessons: section_lessons,
            },
        );
    }
    out.update_date = course
        .update_date
        .as_deref()
        .into_iter()
        .chain(sections.dates())
        .chain(units.dates())
        .chain(lessons.dates())
        .chain(steps.dates())
        .max_by_key(|date| date_order(date))
        .map(str::to_owned);
    Ok(out)
}

/// `ids` without repeats, in order.
fn dedup(ids: &[u64]) -> Vec<u64> {
    let mut seen = HashSet::with_capacity(ids.len());
    ids.iter().copied().filter(|id| seen.insert(*id)).collect()
}

/// Reads every object of `ids` (repeats asked for once), `IDS_PER_REQUEST` at a time;
/// fails unless every one came back.
fn by_ids<T: Object>(client: &StepikClient, ids: &[u64]) -> Result<ById<T>, StepikError> {
    let wanted = dedup(ids);
    let mut found = HashMap::with_capacity(wanted.len());
    for batch in wanted.chunks(IDS_PER_REQUEST) {
        fetch_batch(client, batch, &mut found)?;
    }
    let missing: Vec<u64> = wanted
        .iter()
        .copied()
        .filter(|id| !found.contains_key(id))
        .collect();
    if !missing.is_empty() {
        return Err(StepikError::Incomplete(format!(
            "asked for {} {}, Stepik left out {}",
            wanted.len(),
            T::RESOURCE,
            describe_ids(&missing)
        )));
    }
    Ok(ById(found))
}

/// One batch, following `has_next`; split in halves on HTTP 431.
fn fetch_batch<T: Object>(
    client: &StepikClient,
    ids: &[u64],
    found: &mut HashMap<u64, T>,
) -> Result<(), StepikError> {
    let query = ids
        .iter()
        .map(|id| format!("ids%5B%5D={id}"))
        .collect::<Vec<_>>()
        .join("&");
    let what = format!("{} {}", T::RESOURCE, describe_ids(ids));
    let mut page = 1u32;
    loop {
        let path = match page {
            1 => format!("/api/{}?{query}", T::RESOURCE),
            _ => format!("/api/{}?{query}&page={page}", T::RESOURCE),
        };
        let listing = match client.http.get_page::<T>(&path, T::RESOURCE, &what) {
            Err(StepikError::Http { status: 431, .. }) if ids.len() > 1 && page == 1 => {
                client.http.log(&format!(
                    "{what}: HTTP 431 (URL too long), splitting the batch"
                ));
                let (first, second) = ids.split_at(ids.len() / 2);
                fetch_batch(client, first, found)?;
                return fetch_batch(client, second, found);
            }
            other => other?,
        };
        let more = listing.has_next && !listing.items.is_empty();
        for item in listing.items {
            found.entry(item.id()).or_insert(item);
        }
        if !more {
            return Ok(());
        }
        if page >= client.max_pages {
            return Err(StepikError::PageCapReached { pages: page, what });
        }
        page += 1;
    }
}

/// `1, 2, 3` or, for many, `1, 2, 3, … (120 ids)`.
fn describe_ids(ids: &[u64]) -> String {
    const SHOWN: usize = 5;
    let shown: Vec<String> = ids.iter().take(SHOWN).map(u64::to_string).collect();
    if ids.len() > SHOWN {
        format!("{}, … ({} ids)", shown.join(", "), ids.len())
    } else {
        shown.join(", ")
    }
}

/// Orders RFC 3339 UTC dates with or without fractional seconds
/// (`…T12:00:00Z` < `…T12:00:00.5Z`); anything else compares as text.
fn date_order(date: &str) -> String {
    match (date.get(..19), date.get(19..)) {
        (Some(seconds), Some(rest)) => {
            let fraction: String = rest
                .strip_prefix('.')
                .map(|r| r.chars().take_while(char::is_ascii_digit).collect())
                .unwrap_or_default();
            format!("{seconds}.{fraction:0<9}")
        }
        _ => date.to_owned(),
    }
}
