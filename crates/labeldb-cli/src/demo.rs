//! The demo: generated customer-order emails run through the whole labelling loop.
//!
//! Emails are classified (`category`: order / complaint / question / other) and carry
//! PRODUCT / QUANTITY / DATE entities. The demo writes them as native JSONL, imports
//! the file, pre-annotates with a simulated model (with scores), has simulated
//! annotators of different accuracy label (correcting the model's predictions) and a
//! reviewer accept or reject, then reports what happened. Everything is generated from a
//! seed, so two runs give the same data.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{bail, Result};
use labeldb::{
    Answer, AssetId, Db, Error, Format, ImportOptions, LabelKind, NewLabel, Schema, Source, Span, Stats, Status,
    Verdict,
};

/// The demo's generator: seeded, so that two runs give the same data.
struct Rng(fastrand::Rng);

impl Rng {
    fn new(seed: u64) -> Rng {
        Rng(fastrand::Rng::with_seed(seed))
    }

    /// A float in `[0, 1)`.
    fn unit(&mut self) -> f64 {
        self.0.f64()
    }

    /// An index in `0..n` (n > 0).
    fn below(&mut self, n: usize) -> usize {
        self.0.usize(..n)
    }

    /// One element of a non-empty slice.
    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }
}

/// The demo project's name.
pub const PROJECT: &str = "orders";
/// The categories of the `category` job.
pub const CATEGORIES: [&str; 4] = ["order", "complaint", "question", "other"];
/// The entity classes of the `entities` job.
pub const ENTITIES: [&str; 3] = ["PRODUCT", "QUANTITY", "DATE"];

/// Predictions per atomic write in the pre-annotation phase.
const PREDICTION_BATCH: usize = 2_000;

const PRODUCTS: [&str; 12] = [
    "X-200 router",
    "AquaPure filter",
    "Nordlys lamp",
    "café grinder",
    "Zoë desk chair",
    "ThermoMax kettle",
    "SolarPeak panel",
    "Kōbe knife set",
    "UltraView monitor",
    "EcoWash detergent",
    "PixelPro camera",
    "Müller bike lock",
];
const QUANTITIES: [&str; 8] = ["3", "12", "two", "a dozen", "150", "five", "1", "40"];
const DATES: [&str; 8] = [
    "Friday",
    "12 March",
    "next Monday",
    "the end of the month",
    "2026-12-01",
    "tomorrow",
    "3 January",
    "Christmas",
];
const NAMES: [&str; 6] = ["José", "Anna", "Chen Wei", "Siobhán", "Otto", "Amélie"];

/// One generated email with its true answers.
#[derive(Clone, Debug, PartialEq)]
pub struct Email {
    /// External id.
    pub id: String,
    /// The email text.
    pub text: String,
    /// The true category.
    pub category: &'static str,
    /// The true entities (byte offsets).
    pub entities: Vec<Span>,
}

/// Builds a text from pieces, recording entity spans as it goes.
struct Builder {
    text: String,
    spans: Vec<Span>,
}

impl Builder {
    fn lit(&mut self, s: &str) -> &mut Builder {
        self.text.push_str(s);
        self
    }

    fn ent(&mut self, class: &str, s: &str) -> &mut Builder {
        let start = self.text.len() as u32;
        self.text.push_str(s);
        self.spans.push(Span {
            start,
            end: self.text.len() as u32,
            class: class.to_string(),
            score: None,
        });
        self
    }
}

/// Generates `n` emails from `seed`.
pub fn generate(n: usize, seed: u64) -> Vec<Email> {
    let mut rng = Rng::new(seed);
    (0..n)
        .map(|i| {
            let category = *rng.pick(&CATEGORIES);
            let (p, q, d, name) = (
                *rng.pick(&PRODUCTS),
                *rng.pick(&QUANTITIES),
                *rng.pick(&DATES),
                *rng.pick(&NAMES),
            );
            let mut b = Builder {
                text: String::new(),
                spans: Vec::new(),
            };
            match (category, rng.below(2)) {
                ("order", 0) => b
                    .lit("Hello, please send ")
                    .ent("QUANTITY", q)
                    .lit(" units of the ")
                    .ent("PRODUCT", p)
                    .lit(" by ")
                    .ent("DATE", d)
                    .lit(". Thanks, "),
                ("order", _) => b
                    .lit("We would like to order ")
                    .ent("QUANTITY", q)
                    .lit(" x ")
                    .ent("PRODUCT", p)
                    .lit(", delivery before ")
                    .ent("DATE", d)
                    .lit(". Regards, "),
                ("complaint", 0) => b
                    .lit("The ")
                    .ent("PRODUCT", p)
                    .lit(" delivered on ")
                    .ent("DATE", d)
                    .lit(" arrived broken, all ")
                    .ent("QUANTITY", q)
                    .lit(" of them. Very disappointed. "),
                ("complaint", _) => b
                    .lit("Still waiting for my ")
                    .ent("PRODUCT", p)
                    .lit(" ordered on ")
                    .ent("DATE", d)
                    .lit("; this late delivery is unacceptable. "),
                ("question", 0) => b
                    .lit("Do you have the ")
                    .ent("PRODUCT", p)
                    .lit(" in stock? I would need ")
                    .ent("QUANTITY", q)
                    .lit(" before ")
                    .ent("DATE", d)
                    .lit(". "),
                ("question", _) => b
                    .lit("Is the ")
                    .ent("PRODUCT", p)
                    .lit(" compatible with the older model? Asking for a friend. "),
                (_, 0) => b.lit("Please update my billing address for future invoices. "),
                (_, _) => b.lit("Thank you for the great service last week, keep it up! "),
            };
            b.lit(name);
            Email {
                id: format!("email-{}", i + 1),
                text: b.text,
                category,
                entities: b.spans,
            }
        })
        .collect()
}

/// The demo project's schema.
pub fn schema() -> Schema {
    Schema {
        jobs: vec![
            labeldb::Job {
                name: "category".into(),
                kind: labeldb::JobKind::Classification { multi: false },
                classes: CATEGORIES.iter().map(|c| c.to_string()).collect(),
            },
            labeldb::Job {
                name: "entities".into(),
                kind: labeldb::JobKind::Spans,
                classes: ENTITIES.iter().map(|c| c.to_string()).collect(),
            },
        ],
    }
}

/// Writes emails as native JSONL (span offsets in code points), without labels.
pub fn write_jsonl(emails: &[Email], path: &Path) -> Result<()> {
    let io = |cause| Error::Io {
        path: path.display().to_string(),
        cause,
    };
    let mut out = BufWriter::new(File::create(path).map_err(io)?);
    for (i, e) in emails.iter().enumerate() {
        let line = serde_json::json!({
            "id": e.id,
            "text": e.text,
            "meta": {"source": if i % 3 == 0 { "crm" } else { "web" }, "vip": i % 10 == 0},
            "priority": (i % 5) as f64,
        });
        writeln!(out, "{line}").map_err(io)?;
    }
    Ok(out.flush().map_err(io)?)
}

/// A simulated annotator.
#[derive(Clone, Debug)]
pub struct Annotator {
    /// User name.
    pub name: &'static str,
    /// Probability of answering the true category and finding each entity.
    pub accuracy: f64,
}

/// The demo's annotators.
pub const ANNOTATORS: [Annotator; 4] = [
    Annotator {
        name: "alice",
        accuracy: 0.97,
    },
    Annotator {
        name: "bob",
        accuracy: 0.92,
    },
    Annotator {
        name: "carol",
        accuracy: 0.85,
    },
    Annotator {
        name: "dave",
        accuracy: 0.72,
    },
];

/// What the demo did.
#[derive(Clone, Debug)]
pub struct DemoReport {
    /// Phase name and how long it took, with the number of writes in it.
    pub phases: Vec<(String, Duration, u64)>,
    /// Project statistics at the end.
    pub stats: Stats,
    /// Per annotator: (labels, category answers that match the truth).
    pub annotators: BTreeMap<String, (u64, u64)>,
    /// The model's category accuracy against the truth.
    pub model_accuracy: f64,
    /// Events in the log.
    pub events: u64,
    /// Bytes on disk.
    pub bytes_on_disk: u64,
    /// Whether `verify` found the database clean.
    pub verified: bool,
    /// Example queries: the query, its count and how long it took.
    pub queries: Vec<(String, u64, Duration)>,
    /// A full-text search: the text, the number of matches and the best hits
    /// (external id, snippet).
    pub search: (String, u64, Vec<(String, String)>),
    /// The training snapshot: its info, how long creating it took, and the sizes of its
    /// train/val/test splits.
    pub snapshot: (labeldb::SnapshotInfo, Duration, [usize; 3]),
}

/// Runs the demo in `dir` (which must not hold a demo database yet) with `n` emails.
pub fn run(dir: &Path, n: usize, mut on_phase: impl FnMut(&str)) -> Result<DemoReport> {
    let io = |cause| Error::Io {
        path: dir.display().to_string(),
        cause,
    };
    std::fs::create_dir_all(dir).map_err(io)?;
    let db_path = dir.join("demo.labeldb");
    if db_path.exists() {
        bail!("{} already exists; remove it or pick another --dir", db_path.display());
    }
    let db = Db::open(&db_path)?;
    let mut rng = Rng::new(7);
    let mut phases = Vec::new();
    let mut timed = |name: &str, f: &mut dyn FnMut() -> Result<u64>| -> Result<()> {
        on_phase(name);
        let t = Instant::now();
        let writes = f()?;
        phases.push((name.to_string(), t.elapsed(), writes));
        Ok(())
    };

    let emails = generate(n, 42);
    let jsonl = dir.join("emails.jsonl");
    timed("generate emails.jsonl", &mut || {
        write_jsonl(&emails, &jsonl)?;
        Ok(emails.len() as u64)
    })?;
    db.create_project("admin", PROJECT, schema())?;
    let mut ids: Vec<AssetId> = Vec::new();
    timed("import", &mut || {
        let r = db.import_file("admin", PROJECT, &jsonl, &ImportOptions::new(Format::Jsonl), |_| {})?;
        ids = db.asset_ids(PROJECT)?;
        Ok(r.imported)
    })?;

    // The model: right on the category 85% of the time, finds each entity 80% of the time.
    let model = Source::Model {
        name: "clf".into(),
        version: "1".into(),
    };
    let mut predictions = Vec::with_capacity(ids.len());
    let mut model_right = 0u64;
    // Bulk: one atomic write per batch of predictions, as a pre-annotation job writes.
    timed("model pre-annotation", &mut || {
        let mut batch = Vec::with_capacity(PREDICTION_BATCH);
        for (id, e) in ids.iter().zip(&emails) {
            let right = rng.unit() < 0.85;
            let guess = if right { e.category } else { *rng.pick(&CATEGORIES) };
            model_right += u64::from(guess == e.category);
            let confidence = if right {
                0.6 + 0.4 * rng.unit()
            } else {
                0.3 + 0.4 * rng.unit()
            } as f32;
            let mut label =
                NewLabel::new(LabelKind::Prediction, model.clone()).answer("category", Answer::class(guess));
            for c in CATEGORIES {
                let s = if c == guess {
                    confidence
                } else {
                    (1.0 - confidence) / 3.0
                };
                label = label.score("category", c, s);
            }
            let mut spans = Vec::new();
            for s in &e.entities {
                if rng.unit() < 0.8 {
                    let score = Some(0.5 + 0.5 * rng.unit() as f32);
                    spans.push(Span { score, ..s.clone() });
                }
            }
            label = label.answer("entities", Answer::Spans(spans));
            batch.push((*id, label));
            if batch.len() == PREDICTION_BATCH {
                predictions.extend(db.add_labels(std::mem::take(&mut batch))?.results.into_iter().flatten());
            }
        }
        predictions.extend(db.add_labels(batch)?.results.into_iter().flatten());
        Ok(ids.len() as u64)
    })?;

    // Annotators label 70% of the assets, correcting the model's prediction; 10% get a second annotator.
    let mut annotators: BTreeMap<String, (u64, u64)> = BTreeMap::new();
    timed("human annotation", &mut || {
        let mut writes = 0;
        for (i, (id, e)) in ids.iter().zip(&emails).enumerate() {
            if rng.unit() >= 0.7 {
                continue;
            }
            let first = rng.below(ANNOTATORS.len());
            let who: Vec<&Annotator> = if rng.unit() < 0.1 {
                vec![&ANNOTATORS[first], &ANNOTATORS[(first + 1) % ANNOTATORS.len()]]
            } else {
                vec![&ANNOTATORS[first]]
            };
            for a in who {
                let answer = if rng.unit() < a.accuracy {
                    e.category
                } else {
                    *rng.pick(&CATEGORIES)
                };
                let spans: Vec<Span> = e.entities.iter().filter(|_| rng.unit() < a.accuracy).cloned().collect();
                let mut label = NewLabel::annotation(a.name)
                    .answer("category", Answer::class(answer))
                    .answer("entities", Answer::Spans(spans));
                label.derived_from = Some(predictions[i]);
                label.seconds = (5.0 + 35.0 * rng.unit()) as f32;
                db.add_label(*id, label)?;
                let entry = annotators.entry(a.name.to_string()).or_default();
                entry.0 += 1;
                entry.1 += u64::from(answer == e.category);
                writes += 1;
            }
        }
        Ok(writes)
    })?;

    // A reviewer looks at 25% of the labelled assets: accepts right ones, rejects the rest.
    timed("review", &mut || {
        let mut writes = 0;
        for (id, e) in ids.iter().zip(&emails) {
            let asset = db.asset(*id)?;
            if asset.status != Status::Labeled || rng.unit() >= 0.25 {
                continue;
            }
            db.set_status("reviewer", *id, Status::ToReview)?;
            let history = db.history(*id)?;
            let latest = history.iter().rev().find(|l| l.kind == LabelKind::Annotation);
            let right = latest.and_then(|l| l.answers.get("category")) == Some(&Answer::class(e.category));
            let mut review = NewLabel::new(LabelKind::Review, Source::human("reviewer"))
                .answer("category", Answer::class(e.category));
            review.verdict = Some(if right { Verdict::Accept } else { Verdict::Reject });
            review.derived_from = latest.map(|l| l.id);
            db.add_label(*id, review)?;
            db.set_status("reviewer", *id, if right { Status::Reviewed } else { Status::Todo })?;
            writes += 3;
        }
        Ok(writes)
    })?;
    db.flush()?;

    // What a data engineer asks next: queries, a search, a snapshot for training.
    let mut queries = Vec::new();
    for q in [
        "status:labeled AND label.category:complaint AND NOT author:dave",
        "prediction.score < 0.5 AND status:todo",
        "label.entities:PRODUCT AND meta.source:crm",
        "text:\"late delivery\" AND NOT status:reviewed",
    ] {
        let t = Instant::now();
        let n = db.query(PROJECT, q)?.len();
        queries.push((q.to_string(), n, t.elapsed()));
    }
    let text = "broken";
    let filter = labeldb::query::parse("label.category:complaint")?;
    let (matches, hits) = db.search(PROJECT, text, Some(&filter), 3)?;
    let hits = hits
        .into_iter()
        .map(|h| Ok((db.asset(h.asset)?.external_id, h.snippet)))
        .collect::<Result<Vec<_>>>()?;
    let t = Instant::now();
    let info = db.create_snapshot(
        "trainer",
        PROJECT,
        "v1",
        &labeldb::query::parse("status:labeled OR status:reviewed")?,
        &labeldb::Selection::LatestHuman,
    )?;
    let took = t.elapsed();
    let snap = db.snapshot(PROJECT, "v1")?;
    let ratios = [("train", 0.8), ("val", 0.1), ("test", 0.1)];
    let mut sizes = [0; 3];
    for (i, (name, _)) in ratios.iter().enumerate() {
        sizes[i] = snap.split(name, &ratios)?.len();
    }
    drop(snap);
    db.flush()?;
    let stats = db.stats(PROJECT)?;
    let verified = db.verify()?.is_clean();
    Ok(DemoReport {
        phases,
        stats,
        annotators,
        model_accuracy: model_right as f64 / ids.len().max(1) as f64,
        events: db.last_seq(),
        bytes_on_disk: db.size_on_disk()?,
        verified,
        queries,
        search: (text.to_string(), matches, hits),
        snapshot: (info, took, sizes),
    })
}
