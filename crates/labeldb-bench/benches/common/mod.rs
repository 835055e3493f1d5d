//! What the benches share: a deterministic generator, criterion sample bookkeeping,
//! CPU and wall stopwatches, and formatting. Each bench uses a part of it.
#![allow(dead_code)]

use std::cell::RefCell;
use std::error::Error;
use std::hint::black_box;
use std::path::Path;
use std::time::{Duration, Instant};

pub type BoxResult<T> = Result<T, Box<dyn Error>>;

/// The number of assets, overriding each bench's default.
pub const ASSETS_ENV: &str = "LABELDB_BENCH_ASSETS";

/// Common English words, for generated ~200-byte texts.
pub const WORDS: [&str; 96] = [
    "the", "of", "and", "to", "in", "is", "you", "that", "it", "he", "was", "for", "on", "are", "as", "with", "his",
    "they", "at", "be", "this", "have", "from", "or", "one", "had", "by", "word", "but", "not", "what", "all", "were",
    "we", "when", "your", "can", "said", "there", "use", "an", "each", "which", "she", "do", "how", "their", "if",
    "will", "up", "other", "about", "out", "many", "then", "them", "these", "so", "some", "her", "would", "make",
    "like", "him", "into", "time", "has", "look", "two", "more", "write", "go", "see", "number", "no", "way", "could",
    "people", "my", "than", "first", "water", "been", "call", "who", "oil", "its", "now", "find", "long", "down",
    "day", "did", "get", "come", "made",
];

/// splitmix64: tiny, fast and deterministic, so data needs no `rand` crate.
pub struct SplitMix64(pub u64);

impl SplitMix64 {
    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    pub fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    /// Uniform in [0, 1).
    pub fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// `LABELDB_BENCH_ASSETS` (underscores allowed), or `test_default` under `--test` and
/// `default` otherwise; a bad value exits with code 2.
pub fn asset_count(test_default: usize, default: usize) -> usize {
    let test_mode = std::env::args().any(|a| a == "--test");
    match std::env::var(ASSETS_ENV) {
        Ok(v) => match v.replace('_', "").parse::<usize>() {
            Ok(n) if n > 0 => n,
            _ => {
                eprintln!("error: {ASSETS_ENV} must be a positive number, not {v:?}");
                std::process::exit(2);
            }
        },
        Err(_) if test_mode => test_default,
        Err(_) => default,
    }
}

/// Per-iteration times of criterion's samples, recorded through `iter_custom`.
#[derive(Default)]
pub struct Samples(RefCell<Vec<(String, Duration)>>);

impl Samples {
    /// Records the time per iteration of `total` over `iters` under `name`.
    pub fn record(&self, name: &str, iters: u64, total: Duration) -> Duration {
        let per = Duration::from_secs_f64(total.as_secs_f64() / iters.max(1) as f64);
        self.0.borrow_mut().push((name.to_string(), per));
        total
    }

    /// Times `iters` runs of `f` and records the mean under `name`.
    pub fn run<R>(&self, name: &str, iters: u64, mut f: impl FnMut() -> R) -> Duration {
        let start = Instant::now();
        for _ in 0..iters {
            black_box(f());
        }
        self.record(name, iters, start.elapsed())
    }

    /// The median of the last `n` samples of `name` (criterion's measurement samples;
    /// earlier calls are its warm-up), or `None` if it did not run.
    pub fn median(&self, name: &str, n: usize) -> Option<Duration> {
        let all = self.0.borrow();
        let mut xs: Vec<Duration> = all.iter().filter(|(k, _)| k == name).map(|(_, d)| *d).collect();
        let keep = xs.len().min(n);
        let mut xs = xs.split_off(xs.len() - keep);
        if xs.is_empty() {
            return None;
        }
        xs.sort();
        Some(xs[xs.len() / 2])
    }
}

/// Sums the wall time, and the CPU time of the whole process (every thread, background
/// ones included), of the timed sections of one load.
#[derive(Default)]
pub struct Stopwatch {
    pub wall: Duration,
    pub cpu: Duration,
}

impl Stopwatch {
    pub fn time<R>(&mut self, f: impl FnOnce() -> R) -> R {
        let cpu = process_cpu();
        let t = Instant::now();
        let r = f();
        self.wall += t.elapsed();
        self.cpu += process_cpu().saturating_sub(cpu);
        r
    }
}

/// User plus system time of this process, from /proc/self/stat (zero if unreadable).
pub fn process_cpu() -> Duration {
    // Clock ticks are 100 per second on every Linux this runs on (USER_HZ).
    const TICK: Duration = Duration::from_millis(10);
    let Ok(stat) = std::fs::read_to_string("/proc/self/stat") else {
        return Duration::ZERO;
    };
    // Fields after the parenthesised command name; utime and stime are the 12th and 13th.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let ticks: u32 = rest
        .split_whitespace()
        .skip(11)
        .take(2)
        .filter_map(|f| f.parse::<u32>().ok())
        .sum();
    TICK * ticks
}

/// Bytes of every file under `path`.
pub fn dir_bytes(path: &Path) -> BoxResult<u64> {
    let mut total = 0;
    for entry in std::fs::read_dir(path)? {
        let entry = entry?;
        let meta = entry.metadata()?;
        total += if meta.is_dir() {
            dir_bytes(&entry.path())?
        } else {
            meta.len()
        };
    }
    Ok(total)
}

/// The 1-minute load average: the machine is shared, so the figures say how busy it was.
pub fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|l| l.split_whitespace().next().map(str::to_string))
        .unwrap_or_else(|| "?".into())
}

pub fn fmt_duration(d: Duration) -> String {
    let s = d.as_secs_f64();
    if s < 1e-3 {
        format!("{:.2} µs", s * 1e6)
    } else if s < 1.0 {
        format!("{:.2} ms", s * 1e3)
    } else {
        format!("{s:.2} s")
    }
}

pub fn fmt_ratio(r: f64) -> String {
    if r >= 10.0 {
        format!("{r:.0}x")
    } else {
        format!("{r:.2}x")
    }
}

pub fn verdict(ok: bool) -> &'static str {
    if ok {
        "met"
    } else {
        "MISSED"
    }
}

pub fn mib(b: u64) -> f64 {
    b as f64 / (1024.0 * 1024.0)
}
