//! A small fuzzing engine that runs on stable Rust, inside the ordinary
//! test suite. Each target is a test (`crates/fuzz/tests/<target>.rs`, or
//! a unit test in a binary crate) that hands [`Target::run`] a function of
//! one input's bytes. The function calls berth's real parser and asserts
//! what must hold for any input: no panic, errors as errors, round trips
//! where berth has a writer, nothing written outside a destination.
//!
//! A run has two parts:
//!
//! 1. Every file of the committed corpus, `crates/fuzz/corpus/<target>/`:
//!    hand-made and generated seeds (valid inputs, so mutations reach deep
//!    code) and `regress-*` files, inputs that once failed. A failure here
//!    is a regression.
//! 2. Mutations of those seeds (bit flips, interesting numbers, inserted,
//!    deleted, duplicated and spliced ranges) for `BERTH_FUZZ_SECONDS`
//!    (default 2) of wall time. No coverage feedback: on stable Rust there
//!    is no sanitizer coverage to read, so the seeds carry the depth.
//!
//! A failing input (a panic, a failed check, or an input that runs longer
//! than `BERTH_FUZZ_HANG_SECONDS`, default 20) is saved under
//! `<target dir>/fuzz-crashes/<target>/` and the test fails naming the
//! file, the seed and how to replay it. Fix the bug, then commit the file
//! as `crates/fuzz/corpus/<target>/regress-<what>`: from then on every run
//! replays it first.
//!
//! Other knobs: `BERTH_FUZZ_SEED` (replay one mutation sequence; printed by
//! every run), `BERTH_FUZZ_INPUT=FILE` (run one input alone, for a
//! debugger), `BERTH_FUZZ_WRITE_SEEDS=1` (write the target's generated
//! seeds into its corpus directory, for a target that has a generator).

use std::{
    panic::{catch_unwind, AssertUnwindSafe},
    path::{Path, PathBuf},
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc, Mutex,
    },
    time::{Duration, Instant},
};

pub use arbitrary;

/// Bigger inputs are cut: the targets' parsers are about structure, and a
/// megabyte of mutated tar costs more time than it finds bugs.
const MAX_INPUT: usize = 256 * 1024;

/// One fuzz target: its name (the corpus directory) and its seeds.
pub struct Target {
    name: &'static str,
    generated: Vec<(String, Vec<u8>)>,
    write_seeds: bool,
}

impl Target {
    pub fn new(name: &'static str) -> Self {
        Self { name, generated: Vec::new(), write_seeds: std::env::var_os("BERTH_FUZZ_WRITE_SEEDS").is_some() }
    }

    /// Seeds made by code (a valid tar, a real frame sequence): run like
    /// corpus files, and written into the corpus with
    /// `BERTH_FUZZ_WRITE_SEEDS=1` so the committed corpus holds them.
    pub fn seed(mut self, name: &str, bytes: impl Into<Vec<u8>>) -> Self {
        self.generated.push((name.to_string(), bytes.into()));
        self
    }

    /// The committed corpus of this target.
    pub fn corpus_dir(&self) -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("corpus").join(self.name)
    }

    /// Runs `check` over the corpus, then over mutations until the time
    /// is up; panics (fails the test) at the first failing input.
    pub fn run(self, check: impl Fn(&[u8]) + Sync) {
        let corpus_dir = self.corpus_dir();
        if self.write_seeds {
            std::fs::create_dir_all(&corpus_dir).expect("create the corpus directory");
            for (name, bytes) in &self.generated {
                std::fs::write(corpus_dir.join(name), bytes).expect("write a seed");
            }
        }
        let mut corpus = read_corpus(&corpus_dir);
        for (name, bytes) in self.generated {
            if !corpus.iter().any(|(n, _)| *n == name) {
                corpus.push((name, bytes));
            }
        }
        let runner = Runner::new(self.name);
        if let Some(file) = std::env::var_os("BERTH_FUZZ_INPUT") {
            let bytes = std::fs::read(&file).unwrap_or_else(|e| panic!("read {}: {e}", Path::new(&file).display()));
            runner.one(&check, &bytes, &format!("input {}", Path::new(&file).display()), None);
            return;
        }
        assert!(!corpus.is_empty(), "fuzz target {}: no seeds in {} and none generated", self.name, corpus_dir.display());
        for (name, bytes) in &corpus {
            runner.one(&check, bytes, &format!("corpus file {name}"), None);
        }
        let seconds: f64 = env_number("BERTH_FUZZ_SECONDS", 2.0);
        let seed = std::env::var("BERTH_FUZZ_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or_else(time_seed);
        let mut rng = fastrand::Rng::with_seed(seed);
        let deadline = Instant::now() + Duration::from_secs_f64(seconds);
        let mut runs = 0u64;
        while Instant::now() < deadline {
            let (_, base) = &corpus[rng.usize(..corpus.len())];
            let other = &corpus[rng.usize(..corpus.len())].1;
            let input = mutate(&mut rng, base, other);
            runner.one(&check, &input, "a mutated input", Some(seed));
            runs += 1;
        }
        eprintln!("fuzz {}: {} corpus inputs, {runs} mutated inputs in {seconds}s (BERTH_FUZZ_SEED={seed})", self.name, corpus.len());
    }
}

/// The input running now and since when, for the hang watchdog.
type Running = Arc<Mutex<Option<(Instant, Vec<u8>)>>>;

/// Runs inputs one at a time, with a watchdog for hangs.
struct Runner {
    target: &'static str,
    current: Running,
    done: Arc<AtomicBool>,
}

impl Runner {
    fn new(target: &'static str) -> Self {
        let current = Running::default();
        let done = Arc::new(AtomicBool::new(false));
        let hang = Duration::from_secs_f64(env_number("BERTH_FUZZ_HANG_SECONDS", 20.0));
        let (watched, stop) = (current.clone(), done.clone());
        // A hang cannot be caught like a panic: the watchdog saves the
        // input and ends the process, which fails the test.
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                std::thread::sleep(Duration::from_millis(200));
                let guard = watched.lock().unwrap_or_else(|e| e.into_inner());
                if let Some((started, input)) = guard.as_ref().filter(|(started, _)| started.elapsed() > hang) {
                    let saved = save_failure(target, input);
                    eprintln!(
                        "fuzz {target}: an input ran for {:?} (over BERTH_FUZZ_HANG_SECONDS); saved to {}\n{}",
                        started.elapsed(),
                        saved.display(),
                        instructions(target, &saved)
                    );
                    std::process::abort();
                }
            }
        });
        Self { target, current, done }
    }

    fn one(&self, check: &(impl Fn(&[u8]) + Sync), input: &[u8], what: &str, seed: Option<u64>) {
        *self.current.lock().unwrap_or_else(|e| e.into_inner()) = Some((Instant::now(), input.to_vec()));
        let outcome = catch_unwind(AssertUnwindSafe(|| check(input)));
        *self.current.lock().unwrap_or_else(|e| e.into_inner()) = None;
        if let Err(panic) = outcome {
            let message = panic.downcast_ref::<String>().map(String::as_str).or_else(|| panic.downcast_ref::<&str>().copied()).unwrap_or("(not a string)");
            let saved = save_failure(self.target, input);
            let seed = seed.map(|s| format!(" (BERTH_FUZZ_SEED={s})")).unwrap_or_default();
            panic!(
                "fuzz {}: {what}{seed} failed: {message}\ninput ({} bytes, saved to {}): {}\n{}",
                self.target,
                input.len(),
                saved.display(),
                escaped(&input[..input.len().min(160)]),
                instructions(self.target, &saved)
            );
        }
    }
}

impl Drop for Runner {
    fn drop(&mut self) {
        self.done.store(true, Ordering::Relaxed);
    }
}

fn instructions(target: &str, saved: &Path) -> String {
    format!(
        "replay it alone: BERTH_FUZZ_INPUT={} cargo test -p {} {target}\n\
         once fixed, commit it as a regression case: cp {} crates/fuzz/corpus/{target}/regress-<what-it-found>",
        saved.display(),
        // Cargo and nextest run a test with its package's name set.
        std::env::var("CARGO_PKG_NAME").unwrap_or_else(|_| "<the target's package>".into()),
        saved.display()
    )
}

fn save_failure(target: &str, input: &[u8]) -> PathBuf {
    let dir = target_dir().join("fuzz-crashes").join(target);
    let _ = std::fs::create_dir_all(&dir);
    let path = dir.join(format!("crash-{:016x}", fnv1a(input)));
    if let Err(e) = std::fs::write(&path, input) {
        eprintln!("fuzz {target}: could not save the failing input to {}: {e}", path.display());
    }
    path
}

/// Cargo's target directory, as this test binary's own path tells it
/// (`<target>/debug/deps/<binary>`), or `./target`.
fn target_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("CARGO_TARGET_DIR") {
        return dir.into();
    }
    std::env::current_exe()
        .ok()
        .and_then(|exe| exe.ancestors().find(|a| a.file_name().is_some_and(|n| n == "deps")).and_then(|deps| deps.parent()?.parent()).map(Path::to_path_buf))
        .unwrap_or_else(|| PathBuf::from("target"))
}

fn read_corpus(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let Ok(entries) = std::fs::read_dir(dir) else { return Vec::new() };
    let mut corpus: Vec<(String, Vec<u8>)> = entries
        .filter_map(|e| e.ok())
        .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
        .map(|e| (e.file_name().to_string_lossy().into_owned(), std::fs::read(e.path()).unwrap_or_else(|err| panic!("read {}: {err}", e.path().display()))))
        .collect();
    // A fixed order: a seed replays the same mutations.
    corpus.sort();
    corpus
}

fn env_number(name: &str, default: f64) -> f64 {
    match std::env::var(name) {
        Ok(v) => v.parse().unwrap_or_else(|_| panic!("{name}={v:?} is not a number")),
        Err(_) => default,
    }
}

fn time_seed() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos() as u64).unwrap_or(0) ^ u64::from(std::process::id())
}

fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3))
}

fn escaped(bytes: &[u8]) -> String {
    bytes.escape_ascii().to_string()
}

/// Numbers that sit on the edges parsers get wrong: zero, one, sign bits,
/// all ones, and sizes around common limits.
const INTERESTING: [u32; 12] = [0, 1, 0x7f, 0x80, 0xff, 0x100, 0x7fff, 0xffff, 0x1_0000, 0x7fff_ffff, 0x8000_0000, 0xffff_ffff];

/// One to eight stacked mutations of `base`; `other` is another corpus
/// input to splice from.
pub fn mutate(rng: &mut fastrand::Rng, base: &[u8], other: &[u8]) -> Vec<u8> {
    let mut data = base.to_vec();
    for _ in 0..rng.usize(1..=8) {
        let len = data.len();
        match rng.u8(..10) {
            // Flip one bit.
            0 if len > 0 => {
                let i = rng.usize(..len);
                data[i] ^= 1 << rng.u8(..8);
            }
            // A random byte.
            1 if len > 0 => {
                let i = rng.usize(..len);
                data[i] = rng.u8(..);
            }
            // An interesting number, big- or little-endian, 1, 2 or 4 bytes.
            2 if len > 0 => {
                let value = INTERESTING[rng.usize(..INTERESTING.len())];
                let width = [1, 2, 4][rng.usize(..3)].min(len);
                let bytes = if rng.bool() { value.to_be_bytes() } else { value.to_le_bytes() };
                let at = rng.usize(..=len - width);
                let from = if rng.bool() { 4 - width } else { 0 };
                data[at..at + width].copy_from_slice(&bytes[from..from + width]);
            }
            // An ASCII digit run: octal and decimal fields (tar headers,
            // JSON numbers) are text.
            3 if len > 0 => {
                let at = rng.usize(..len);
                for b in data.iter_mut().skip(at).take(rng.usize(1..12)) {
                    *b = b'0' + rng.u8(..10);
                }
            }
            // Insert random bytes.
            4 => {
                let at = rng.usize(..=len);
                let n = rng.usize(1..=16);
                let bytes: Vec<u8> = (0..n).map(|_| rng.u8(..)).collect();
                data.splice(at..at, bytes);
            }
            // Delete a range.
            5 if len > 0 => {
                let at = rng.usize(..len);
                let n = rng.usize(1..=(len - at).min(64));
                data.drain(at..at + n);
            }
            // Duplicate a range.
            6 if len > 0 => {
                let at = rng.usize(..len);
                let n = rng.usize(1..=(len - at).min(512));
                let copy = data[at..at + n].to_vec();
                let to = rng.usize(..=len);
                data.splice(to..to, copy);
            }
            // Splice in a range of another input.
            7 if !other.is_empty() => {
                let at = rng.usize(..other.len());
                let n = rng.usize(1..=(other.len() - at).min(512));
                let to = rng.usize(..=len);
                let cut = rng.usize(to..=len.min(to + n));
                data.splice(to..cut, other[at..at + n].iter().copied());
            }
            // Truncate.
            8 if len > 0 => data.truncate(rng.usize(..len)),
            // Copy a range over another place in the same input.
            _ if len > 1 => {
                let (from, to) = (rng.usize(..len), rng.usize(..len));
                let n = rng.usize(1..=(len - from).min(len - to).min(64));
                data.copy_within(from..from + n, to);
            }
            _ => data.push(rng.u8(..)),
        }
    }
    data.truncate(MAX_INPUT);
    data
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mutations_stay_in_bounds_and_change_things() {
        let mut rng = fastrand::Rng::with_seed(7);
        let mut changed = 0;
        for i in 0..20_000 {
            let base: Vec<u8> = (0..i % 40).map(|b| b as u8).collect();
            let out = mutate(&mut rng, &base, b"other input");
            assert!(out.len() <= MAX_INPUT);
            changed += usize::from(out != base);
        }
        assert!(changed > 18_000, "only {changed} of 20000 mutations changed their input");
    }

    #[test]
    fn a_failing_input_fails_the_run_and_is_saved() {
        let target = Target { write_seeds: false, ..Target::new("engine-self-test") }.seed("boom", b"boom".to_vec()).seed("fine", b"fine".to_vec());
        // Corpus seeds come first, so the failure is found without mutation.
        let outcome = catch_unwind(AssertUnwindSafe(|| target.run(|input| assert_ne!(input, b"boom", "found it"))));
        let message = outcome.expect_err("the run fails").downcast::<String>().expect("a message");
        assert!(message.contains("corpus file boom") && message.contains("found it"), "{message}");
        assert!(message.contains("regress-"), "the message says how to keep the input: {message}");
    }
}
