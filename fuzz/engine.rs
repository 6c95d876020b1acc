//! The fuzzing engine shared by the fuzz tests of several crates (included with `#[path]`): a
//! seeded mutation fuzzer on stable Rust (cargo-fuzz needs a nightly compiler, which the build
//! machines do not have). Each target starts from the corpus in `fuzz/corpus/<target>/`,
//! applies random mutations (bit flips, interesting bytes and lengths, truncation, insertion,
//! deletion, duplication, splicing with another entry), and checks every input against the
//! target's property; a panic fails every target.
//!
//! Each target runs for `CHAINIAC_FUZZ_SECONDS` (default 1) with seed `CHAINIAC_FUZZ_SEED`
//! (default: from the clock, printed on failure). A failing input is written to
//! `fuzz/crashes/<target>/`; moved to `fuzz/regressions/<target>/`, it is checked on every run.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

fn fuzz_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join("fuzz")
}

/// A small deterministic generator (xorshift64*), so that a seed replays a run exactly.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Self {
        Self(seed.max(1))
    }

    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            0
        } else {
            (self.next() % n as u64) as usize
        }
    }
}

fn files_in(dir: &Path) -> Vec<Vec<u8>> {
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .map(|entries| entries.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    files.sort();
    files
        .iter()
        .filter_map(|path| std::fs::read(path).ok())
        .collect()
}

const INTERESTING_U32: [u32; 9] = [
    0,
    1,
    2,
    0x7f,
    0x80,
    0xffff,
    0x0001_0000,
    0x7fff_ffff,
    0xffff_ffff,
];

/// Applies one random mutation to `input`.
fn mutate(rng: &mut Rng, input: &mut Vec<u8>, others: &[Vec<u8>]) {
    let len = input.len();
    match rng.below(9) {
        0 if len > 0 => {
            let at = rng.below(len);
            input[at] ^= 1 << rng.below(8);
        }
        1 if len > 0 => {
            let at = rng.below(len);
            input[at] = [0, 1, 2, 0x7f, 0x80, 0xfe, 0xff][rng.below(7)];
        }
        2 if len >= 4 => {
            let at = rng.below(len - 3);
            let value = INTERESTING_U32[rng.below(INTERESTING_U32.len())]
                .wrapping_add(rng.below(3) as u32)
                .wrapping_sub(1);
            input[at..at + 4].copy_from_slice(&value.to_le_bytes());
        }
        3 => input.truncate(rng.below(len + 1)),
        4 => {
            let at = rng.below(len + 1);
            let count = 1 + rng.below(16);
            let bytes: Vec<u8> = (0..count).map(|_| rng.next() as u8).collect();
            input.splice(at..at, bytes);
        }
        5 if len > 0 => {
            let at = rng.below(len);
            let end = (at + 1 + rng.below(64)).min(len);
            input.drain(at..end);
        }
        6 if len > 0 => {
            let at = rng.below(len);
            let end = (at + 1 + rng.below(256)).min(len);
            let copy = input[at..end].to_vec();
            let to = rng.below(len + 1);
            input.splice(to..to, copy);
        }
        7 if !others.is_empty() => {
            let other = &others[rng.below(others.len())];
            let cut = rng.below(len + 1);
            let from = rng.below(other.len() + 1);
            input.truncate(cut);
            input.extend_from_slice(&other[from..]);
        }
        8 if len > 0 => {
            // A length or count prefix set far off: the decoder must bound it before
            // allocating.
            let at = rng.below(len);
            input[at] = 0xff;
            for byte in input.iter_mut().skip(at + 1).take(3) {
                *byte = 0xff;
            }
        }
        _ => input.push(rng.next() as u8),
    }
}

/// A target: whether it accepted the input, or the property the input broke.
pub(crate) type Target = fn(&[u8]) -> Result<bool, String>;

/// Whether an input was accepted, or why it failed the target (a panic fails every target).
fn check(target: Target, input: &[u8]) -> Result<bool, String> {
    match std::panic::catch_unwind(|| target(input)) {
        Err(_) => Err("the target panicked".into()),
        Ok(outcome) => outcome,
    }
}

fn seconds() -> f64 {
    std::env::var("CHAINIAC_FUZZ_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1.0)
}

fn seed(target: &str) -> u64 {
    let base = std::env::var("CHAINIAC_FUZZ_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(1, |d| d.as_nanos() as u64)
        });
    // Each target gets its own stream from one printed seed.
    target
        .bytes()
        .fold(base, |acc, b| acc.rotate_left(5) ^ u64::from(b))
}

/// Runs target `name`: the regressions, the corpus (`corpus`: the target directories whose
/// entries it starts from; all targets' entries are used for splicing), then mutations.
pub(crate) fn fuzz(name: &str, corpus: &[&str], decode: Target) {
    let dir = fuzz_dir();
    for input in files_in(&dir.join("regressions").join(name)) {
        if let Err(error) = check(decode, &input) {
            panic!("{name}: regression input fails again: {error}");
        }
    }
    let mut seeds = Vec::new();
    for target in corpus {
        let entries = files_in(&dir.join("corpus").join(target));
        assert!(
            !entries.is_empty(),
            "no corpus for {target}: run `cargo test --workspace -- --ignored write_the_fuzzing_corpus`"
        );
        for entry in &entries {
            if let Err(error) = check(decode, entry) {
                panic!("{name}: corpus entry of {target} fails: {error}");
            }
        }
        seeds.extend(entries);
    }
    let others: Vec<Vec<u8>> = std::fs::read_dir(dir.join("corpus"))
        .map(|targets| {
            targets
                .flatten()
                .flat_map(|target| files_in(&target.path()))
                .collect()
        })
        .unwrap_or_default();
    if seeds.is_empty() {
        seeds = others.clone();
    }
    let seed = seed(name);
    let mut rng = Rng::new(seed);
    let deadline = Instant::now() + Duration::from_secs_f64(seconds());
    let mut runs = 0u64;
    let mut decoded = 0u64;
    while Instant::now() < deadline {
        for _ in 0..64 {
            let mut input = seeds[rng.below(seeds.len())].clone();
            for _ in 0..1 + rng.below(4) {
                mutate(&mut rng, &mut input, &others);
            }
            runs += 1;
            let checked = check(decode, &input);
            decoded += u64::from(checked == Ok(true));
            if let Err(error) = checked {
                let crashes = dir.join("crashes").join(name);
                let _ = std::fs::create_dir_all(&crashes);
                let file = crashes.join(format!("{seed}-{runs}"));
                let _ = std::fs::write(&file, &input);
                panic!(
                    "{name}: {error} on input {} ({} bytes); seed {seed} (CHAINIAC_FUZZ_SEED), run {runs}; saved as {}",
                    hex_prefix(&input),
                    input.len(),
                    file.display()
                );
            }
        }
    }
    eprintln!("fuzz {name}: {runs} inputs, {decoded} decoded, seed {seed}");
}

fn hex_prefix(bytes: &[u8]) -> String {
    bytes
        .iter()
        .take(64)
        .map(|b| format!("{b:02x}"))
        .collect::<String>()
}
