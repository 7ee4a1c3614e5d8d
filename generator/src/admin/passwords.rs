//! Password hashing for the admin commands: one at a time or many in parallel (rayon)
//! with a progress display, and generated passwords.

use std::io::IsTerminal as _;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use anyhow::{Context as _, anyhow};
use rayon::prelude::*;

/// Hashes and verifies passwords. [`Argon2`] is the real one; tests may use a cheaper
/// stand-in (its hashes must still start with `$argon2`, as the schema demands).
pub trait Hasher: Sync {
    /// A PHC string for `password` (already validated).
    fn hash(&self, password: &str) -> anyhow::Result<String>;
    /// Whether `password` matches `stored`.
    fn verify(&self, password: &str, stored: &str) -> bool;
}

/// Argon2id with the site's parameters (`course_core::password`).
#[derive(Debug, Clone, Copy, Default)]
pub struct Argon2;

impl Hasher for Argon2 {
    fn hash(&self, password: &str) -> anyhow::Result<String> {
        course_core::password::hash(password).map_err(|e| anyhow!("cannot hash a password: {e}"))
    }

    fn verify(&self, password: &str, stored: &str) -> bool {
        course_core::password::verify(password, stored)
    }
}

/// How jobs report progress on stderr (jobs of fewer than [`MIN_SHOWN`] items show
/// nothing).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Progress {
    /// Nothing.
    Off,
    /// A line every tenth of the way.
    Lines,
    /// A progress bar (for a terminal).
    Bar,
}

impl Progress {
    /// A bar when stderr is a terminal, lines otherwise.
    pub fn auto() -> Self {
        if std::io::stderr().is_terminal() {
            Self::Bar
        } else {
            Self::Lines
        }
    }
}

/// Jobs smaller than this show no progress: they finish in a moment.
pub const MIN_SHOWN: usize = 50;

/// Counts finished items and shows it as `progress` says.
struct Meter {
    label: &'static str,
    total: usize,
    done: AtomicUsize,
    bar: Option<indicatif::ProgressBar>,
    lines: bool,
}

impl Meter {
    fn new(progress: Progress, label: &'static str, total: usize) -> Self {
        let shown = total >= MIN_SHOWN;
        let bar = (progress == Progress::Bar && shown).then(|| {
            let bar = indicatif::ProgressBar::new(total as u64);
            bar.set_style(
                indicatif::ProgressStyle::with_template(
                    "{msg} [{bar:40}] {pos}/{len} ({eta} left)",
                )
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
                .progress_chars("=> "),
            );
            bar.set_message(label);
            bar.enable_steady_tick(Duration::from_millis(250));
            bar
        });
        Self {
            label,
            total,
            done: AtomicUsize::new(0),
            bar,
            lines: progress == Progress::Lines && shown,
        }
    }

    fn tick(&self) {
        let done = self.done.fetch_add(1, Ordering::Relaxed) + 1;
        if let Some(bar) = &self.bar {
            bar.inc(1);
        } else if self.lines {
            let step = self.total.div_ceil(10).max(1);
            if done.is_multiple_of(step) || done == self.total {
                eprintln!("{}: {done}/{}", self.label, self.total);
            }
        }
    }

    fn finish(self) {
        if let Some(bar) = self.bar {
            bar.finish_and_clear();
        }
    }
}

/// Hashes every password in parallel, in order. `label` names the job in the progress
/// display.
pub fn hash_all(
    hasher: &dyn Hasher,
    passwords: &[&str],
    progress: Progress,
    label: &'static str,
) -> anyhow::Result<Vec<String>> {
    let meter = Meter::new(progress, label, passwords.len());
    let hashes = passwords
        .par_iter()
        .map(|password| {
            let hash = hasher.hash(password);
            meter.tick();
            hash
        })
        .collect::<anyhow::Result<Vec<_>>>();
    meter.finish();
    hashes
}

/// Verifies `(password, stored hash)` pairs in parallel, in order.
pub fn verify_all(
    hasher: &dyn Hasher,
    pairs: &[(&str, &str)],
    progress: Progress,
    label: &'static str,
) -> Vec<bool> {
    let meter = Meter::new(progress, label, pairs.len());
    let matches = pairs
        .par_iter()
        .map(|(password, stored)| {
            let ok = hasher.verify(password, stored);
            meter.tick();
            ok
        })
        .collect();
    meter.finish();
    matches
}

/// Letters and digits no one confuses when reading them aloud or copying them by hand
/// (no 0/o, 1/l/i): 31 symbols.
const ALPHABET: &[u8; 31] = b"abcdefghjkmnpqrstuvwxyz23456789";

/// A new random password, `xxxx-xxxx-xxxx-xxxx` (16 symbols, 79 bits, from the OS
/// generator).
pub fn generate() -> anyhow::Result<String> {
    // Bytes from 248 up are dropped so that every symbol is equally likely.
    let limit = 256 - 256 % ALPHABET.len();
    let mut symbols = Vec::with_capacity(16);
    while symbols.len() < 16 {
        let mut bytes = [0_u8; 32];
        getrandom::fill(&mut bytes).context("the system random generator failed")?;
        symbols.extend(
            bytes
                .iter()
                .map(|b| usize::from(*b))
                .filter(|b| *b < limit)
                .map(|b| char::from(ALPHABET[b % ALPHABET.len()])),
        );
    }
    let mut out = String::with_capacity(19);
    for (i, c) in symbols.into_iter().take(16).enumerate() {
        if i > 0 && i % 4 == 0 {
            out.push('-');
        }
        out.push(c);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_passwords_are_valid_and_differ() {
        let a = generate().unwrap();
        let b = generate().unwrap();
        assert_ne!(a, b);
        assert_eq!(a.len(), 19);
        assert_eq!(a.matches('-').count(), 3);
        assert!(super::super::validate::password(&a).is_ok());
    }
}
