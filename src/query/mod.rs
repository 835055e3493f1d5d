//! Label and state queries: a [`Filter`] evaluates to a set of assets over the bitmap
//! indexes; results are paged in a chosen order with a cursor, and facets count a result
//! set by status, class and author from bitmap cardinalities.
//!
//! The textual language (docs/query.md) parses into the same [`Filter`].

mod ast;
mod parser;
mod view;

use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use croaring::Bitmap;

pub use ast::{CmpOp, Filter, NumField, TextQuery};
pub use parser::{parse, to_query_string, MAX_NESTING, MAX_OPERATORS};
pub(crate) use view::{Blind, ScopedLeaves, View};

use crate::engine::{read_history, Db};
use crate::index::numeric::BUCKET_SHIFT;
use crate::index::text::{union, TextIndex};
use crate::index::{self, Key, MetaKey, NumKey, ProjectIndex};
use crate::model::asset::{AssetId, Status};
use crate::model::error::{Error, Result};
use crate::model::label::LabelKind;
use crate::model::project::Project;

/// A set of assets of one project: the result of a filter.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct AssetSet(Bitmap);

impl AssetSet {
    /// Number of assets.
    pub fn len(&self) -> u64 {
        self.0.cardinality()
    }

    /// Whether it is empty.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Whether it holds this asset.
    pub fn contains(&self, id: AssetId) -> bool {
        self.0.contains(id.0)
    }

    /// The assets in ascending id order.
    pub fn iter(&self) -> impl Iterator<Item = AssetId> + '_ {
        self.0.iter().map(AssetId)
    }

    pub(crate) fn bitmap(&self) -> &Bitmap {
        &self.0
    }

    pub(crate) fn from_bitmap(bitmap: Bitmap) -> AssetSet {
        AssetSet(bitmap)
    }
}

/// The order of a page of results.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Sort {
    /// Ascending asset id.
    #[default]
    Id,
    /// Highest priority first, then ascending id.
    Priority,
    /// Least confident first: ascending prediction score (`prediction.score`), then id;
    /// assets without a scored prediction last.
    Score,
}

/// One page of results.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Page {
    /// The assets, in the requested order.
    pub ids: Vec<AssetId>,
    /// Pass this as `after` to get the next page; `None` when this is the last.
    pub next: Option<String>,
}

/// One full-text search result.
#[derive(Clone, Debug, PartialEq)]
pub struct Hit {
    /// The asset.
    pub asset: AssetId,
    /// Its BM25 score for the text part of the query.
    pub score: f32,
    /// A fragment of its text with the matched words in `[` `]`.
    pub snippet: String,
}

/// Counts over a result set.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Facets {
    /// Assets per status.
    pub by_status: BTreeMap<Status, u64>,
    /// job → class → assets whose latest human annotations (by any author) have it.
    pub by_class: BTreeMap<String, BTreeMap<String, u64>>,
    /// Assets per human annotator.
    pub by_author: BTreeMap<String, u64>,
}

impl Db {
    /// Parses a query in the query language (docs/query.md) and evaluates it.
    pub fn query(&self, project: &str, query: &str) -> Result<AssetSet> {
        self.select(project, &parse(query)?)
    }

    /// The assets of a project that match a filter. Soft-deleted assets are left out
    /// unless the filter mentions `deleted` (text filters never match them: the text
    /// index holds live assets only).
    pub fn select(&self, project: &str, filter: &Filter) -> Result<AssetSet> {
        self.select_viewed(&*self.project(project)?, filter, None)
    }

    /// [`Db::select`] as `view` sees the project (`None`: everything).
    pub(crate) fn select_viewed(
        &self,
        project: &Project,
        filter: &Filter,
        view: Option<&View<'_>>,
    ) -> Result<AssetSet> {
        self.evaluate(project, view, |ev| select_in(ev, filter).map(AssetSet))
    }

    /// How many assets of a project match a filter. `x AND y` and `x AND NOT y` are
    /// counted from the cardinality of the intersection or difference, without building
    /// the result.
    pub fn count(&self, project: &str, filter: &Filter) -> Result<u64> {
        self.count_viewed(&*self.project(project)?, filter, None)
    }

    /// [`Db::count`] as `view` sees the project (`None`: everything).
    pub(crate) fn count_viewed(&self, project: &Project, filter: &Filter, view: Option<&View<'_>>) -> Result<u64> {
        self.evaluate(project, view, |ev| {
            let Filter::And(a, b) = filter else {
                return Ok(select_in(ev, filter)?.cardinality());
            };
            if is_text_only(filter) {
                // One tantivy query (see `Eval::eval`), not two.
                return Ok(select_in(ev, filter)?.cardinality());
            }
            let (x, y, negated) = match (a.as_ref(), b.as_ref()) {
                (x, Filter::Not(y)) | (Filter::Not(y), x) => (x, y.as_ref(), true),
                _ => (a.as_ref(), b.as_ref(), false),
            };
            // `x` comes cut to the scope: the cut is pushed down to one of its leaves.
            let (l, r) = (ev.eval_scoped(x)?, ev.eval(y)?);
            Ok(match (ev.deleted(), negated) {
                (None, true) => l.andnot_cardinality(&r),
                (None, false) => l.and_cardinality(&r),
                (Some(deleted), true) => (l.as_ref() - r.as_ref()).andnot_cardinality(deleted),
                (Some(deleted), false) => (l.as_ref() & r.as_ref()).andnot_cardinality(deleted),
            })
        })
    }

    /// Runs `run` with an evaluator over the project's indexes as `view` sees them,
    /// under their read lock.
    fn evaluate<T>(
        &self,
        project: &Project,
        view: Option<&View<'_>>,
        run: impl FnOnce(&mut Eval<'_>) -> Result<T>,
    ) -> Result<T> {
        let index = self.indexes();
        let empty = ProjectIndex::default();
        let p = index.projects.get(&project.id).unwrap_or(&empty);
        run(&mut Eval {
            db: self,
            project,
            index: p,
            uses_deleted: false,
            view,
        })
    }

    /// Full-text search: `text` in the query language (bare words, `"phrases"`,
    /// `prefix*`, and any filter), AND `filter`; the best `limit` matches by BM25 score
    /// of the text part, with snippets. Returns the number of matches and the hits.
    pub fn search(&self, project: &str, text: &str, filter: Option<&Filter>, limit: usize) -> Result<(u64, Vec<Hit>)> {
        self.ranked(project, &search_filter(text, filter)?, limit)
    }

    /// The best `limit` assets matching `filter`, by BM25 score of its text leaves
    /// (by id when it has none), with snippets, and the number of matches.
    pub fn ranked(&self, project: &str, filter: &Filter, limit: usize) -> Result<(u64, Vec<Hit>)> {
        self.ranked_viewed(&*self.project(project)?, filter, limit, None)
    }

    /// [`Db::ranked`] as `view` sees the project (`None`: everything).
    pub(crate) fn ranked_viewed(
        &self,
        project: &Project,
        filter: &Filter,
        limit: usize,
        view: Option<&View<'_>>,
    ) -> Result<(u64, Vec<Hit>)> {
        let set = self.select_viewed(project, filter, view)?;
        let queries = self.text_queries(filter)?;
        let best = match split_text(filter) {
            // Scoring the text part's own query visits only its matches; the union of
            // the leaves would visit every asset that matches any one of them.
            Some((text, _)) => self.rank_text(&text, set.0.clone(), limit)?,
            None => self.best_of(&queries, &set.0, limit)?,
        };
        let best = with_unscored(best, &set.0, limit);
        let texts = best
            .iter()
            .map(|(id, _)| Ok(self.asset(*id)?.content.text().unwrap_or("").to_string()))
            .collect::<Result<Vec<_>>>()?;
        let snippets = if queries.is_empty() {
            texts.iter().map(|t| t.chars().take(150).collect()).collect()
        } else {
            self.text().snippets(&queries, &texts)?
        };
        let hits = best
            .into_iter()
            .zip(snippets)
            .map(|((asset, score), snippet)| Hit { asset, score, snippet })
            .collect();
        Ok((set.len(), hits))
    }

    /// The best `limit` assets matching `filter` by BM25 score of its text leaves, best
    /// first, then matches that no text leaf scores by id (score 0) — without counting
    /// every match or making snippets: the ids a work queue or a training job wants.
    /// A text-only filter, or `TEXT AND REST` where REST has no text filter, ranks the
    /// text query's matches among the project's live assets (or REST's): the full match
    /// set is never built.
    pub fn top(&self, project: &str, filter: &Filter, limit: usize) -> Result<Vec<(AssetId, f32)>> {
        self.top_viewed(&*self.project(project)?, filter, limit, None)
    }

    /// [`Db::top`] as `view` sees the project (`None`: everything).
    pub(crate) fn top_viewed(
        &self,
        project: &Project,
        filter: &Filter,
        limit: usize,
        view: Option<&View<'_>>,
    ) -> Result<Vec<(AssetId, f32)>> {
        if let Some((text, rest)) = split_text(filter) {
            let within = self.select_viewed(project, &rest, view)?;
            return self.rank_text(&text, within.0, limit);
        }
        let set = self.select_viewed(project, filter, view)?;
        let best = self.best_of(&self.text_queries(filter)?, &set.0, limit)?;
        Ok(with_unscored(best, &set.0, limit))
    }

    /// The best `limit` assets of `within` by the BM25 score of `text`, a text-only
    /// filter: from the posting lists for plain words joined by AND, else by its tantivy
    /// query.
    fn rank_text(&self, text: &Filter, within: Bitmap, limit: usize) -> Result<Vec<(AssetId, f32)>> {
        let index = self.text();
        let mut words = Vec::new();
        if conjunction_words(index, text, &mut words)? {
            return index.top_words(&words, &within, limit);
        }
        index.top(&*text_query(index, text)?, Arc::new(within), limit)
    }

    /// The text queries of a filter's scoring leaves (see [`text_leaves`]).
    fn text_queries(&self, filter: &Filter) -> Result<Vec<Box<dyn tantivy::query::Query>>> {
        let mut leaves = Vec::new();
        text_leaves(filter, &mut leaves);
        leaves.iter().map(|t| self.text().query(t)).collect()
    }

    /// The best `limit` of `set` by BM25 score for the union of `queries` (none without
    /// queries).
    fn best_of(
        &self,
        queries: &[Box<dyn tantivy::query::Query>],
        set: &Bitmap,
        limit: usize,
    ) -> Result<Vec<(AssetId, f32)>> {
        if queries.is_empty() {
            return Ok(Vec::new());
        }
        self.text().top(&union(queries), Arc::new(set.clone()), limit)
    }

    /// A page of `limit` assets of `set` in `sort` order, after the cursor `after`.
    pub fn page(&self, project: &str, set: &AssetSet, sort: Sort, limit: usize, after: Option<&str>) -> Result<Page> {
        let project = self.project(project)?;
        let after = after.map(|c| Cursor::parse(c, sort)).transpose()?;
        let mut out: Vec<(u64, u32)> = Vec::with_capacity(limit.min(10_000));
        let past = |k: (u64, u32)| after.is_none_or(|c| k > (c.key, c.id));
        let full = |out: &Vec<(u64, u32)>| out.len() > limit;
        match sort {
            Sort::Id => {
                let mut tail = set.0.clone();
                if let Some(c) = after {
                    tail.remove_range(..=c.id);
                }
                out.extend(tail.iter().take(limit + 1).map(|id| (0, id)));
            }
            Sort::Priority | Sort::Score => {
                let (key, descending) = match sort {
                    Sort::Priority => (NumKey::Priority, true),
                    _ => (NumKey::Score(LabelKind::Prediction, None), false),
                };
                let index = self.indexes();
                let empty = ProjectIndex::default();
                let p = index.projects.get(&project.id).unwrap_or(&empty);
                let mut covered = Bitmap::new();
                if let Some(nums) = p.nums.get(&key) {
                    for (bucket, bm) in nums.ordered(descending) {
                        let hi = bucket_max_key(bucket, descending);
                        let members = bm & &set.0;
                        covered |= &members;
                        if members.is_empty() || after.is_some_and(|c| hi < c.key) {
                            continue;
                        }
                        let mut keyed = Vec::with_capacity(members.cardinality() as usize);
                        for id in members.iter() {
                            let v = self.exact(AssetId(id), &key)?.unwrap_or(f64::NAN);
                            let k = sort_key(v, descending);
                            if past((k, id)) {
                                keyed.push((k, id));
                            }
                        }
                        keyed.sort_unstable();
                        out.extend(keyed);
                        if full(&out) {
                            break;
                        }
                    }
                }
                if !full(&out) {
                    // Assets without a value come last, by id.
                    let rest = &set.0 - &covered;
                    out.extend(
                        rest.iter()
                            .map(|id| (u64::MAX, id))
                            .filter(|k| past(*k))
                            .take(limit + 1),
                    );
                }
            }
        }
        let more = out.len() > limit;
        out.truncate(limit);
        let next = match out.last() {
            Some(&(key, id)) if more => Some(Cursor { key, id }.render(sort)),
            _ => None,
        };
        Ok(Page {
            ids: out.into_iter().map(|(_, id)| AssetId(id)).collect(),
            next,
        })
    }

    /// Counts a result set by status, by class of human annotations per job, and by
    /// author, from bitmap cardinalities.
    pub fn facets(&self, project: &str, set: &AssetSet) -> Result<Facets> {
        self.facets_viewed(&*self.project(project)?, set, None)
    }

    /// [`Db::facets`] as `view` sees the project (`None`: everything): over the visible
    /// part of `set`, and blind views count their user's own annotations only.
    pub(crate) fn facets_viewed(&self, project: &Project, set: &AssetSet, view: Option<&View<'_>>) -> Result<Facets> {
        let cut;
        let set = match view.and_then(|v| v.visible) {
            Some(visible) => {
                cut = AssetSet(set.bitmap() & visible);
                &cut
            }
            None => set,
        };
        let blind = view.and_then(|v| v.blind.as_ref());
        let index = self.indexes();
        let mut f = Facets::default();
        for s in Status::ALL {
            f.by_status.insert(s, 0);
        }
        let Some(p) = index.projects.get(&project.id) else {
            return Ok(f);
        };
        for (k, bm) in &p.bitmaps {
            let n = bm.and_cardinality(&set.0);
            match k {
                Key::Status(s) => {
                    f.by_status.insert(*s, n);
                }
                Key::Class(LabelKind::Annotation, job, class) if n > 0 && blind.is_none() => {
                    f.by_class.entry(job.clone()).or_default().insert(class.clone(), n);
                }
                Key::Author(a) if n > 0 && blind.is_none_or(|b| b.user == a) => {
                    f.by_author.insert(a.clone(), n);
                }
                _ => {}
            }
        }
        if let Some(b) = blind {
            // Their own latest annotation of each asset they annotated, from its records.
            let own = p
                .bitmap(&Key::Author(b.user.to_string()))
                .map_or_else(Bitmap::new, |a| a & &set.0);
            for id in own.iter() {
                let Some(label) = view::own_latest(self, b.user, AssetId(id))? else {
                    continue;
                };
                for (job, answer) in &label.answers {
                    let classes: BTreeSet<&str> = answer.class_occurrences().collect();
                    for class in classes {
                        *f.by_class
                            .entry(job.clone())
                            .or_default()
                            .entry(class.to_string())
                            .or_default() += 1;
                    }
                }
            }
        }
        Ok(f)
    }

    /// The assets of a project that a data scope's filter matches, soft-deleted ones
    /// included (a member in scope may restore them).
    pub(crate) fn scope_set(&self, project: &Project, filter: &Filter) -> Result<Bitmap> {
        self.evaluate(project, None, |ev| Ok(ev.eval(filter)?.into_owned()))
    }

    /// The exact value of a numeric field for an asset, from primary data.
    fn exact(&self, id: AssetId, key: &NumKey) -> Result<Option<f64>> {
        let asset = self.asset(id)?;
        match key {
            NumKey::Priority => Ok(Some(asset.priority)),
            NumKey::Created => Ok(Some(asset.created_at as f64)),
            NumKey::Score(kind, job) => {
                let history = read_history(self.store(), id)?;
                let per_job = index::top_scores(&history, *kind);
                Ok(match job {
                    Some(job) => per_job.get(job.as_str()).copied(),
                    None => per_job.values().copied().reduce(f32::min),
                }
                .map(f64::from))
            }
            _ => {
                let history = read_history(self.store(), id)?;
                Ok(index::derive(&asset, &history).nums.get(key).copied())
            }
        }
    }
}

/// The order key of a value: ascending sortable bits, or their complement when descending.
fn sort_key(v: f64, descending: bool) -> u64 {
    let s = index::numeric::sortable(v);
    if descending {
        !s
    } else {
        s
    }
}

/// The largest order key a bucket can hold: a bucket below the cursor is skipped whole.
fn bucket_max_key(bucket: u32, descending: bool) -> u64 {
    let lo = u64::from(bucket) << BUCKET_SHIFT;
    if descending {
        !lo
    } else {
        lo | ((1 << BUCKET_SHIFT) - 1)
    }
}

/// A position in a sorted result: the order key and id of the last asset returned.
#[derive(Clone, Copy, Debug)]
struct Cursor {
    key: u64,
    id: u32,
}

impl Cursor {
    fn tag(sort: Sort) -> &'static str {
        match sort {
            Sort::Id => "i",
            Sort::Priority => "p",
            Sort::Score => "s",
        }
    }

    fn render(self, sort: Sort) -> String {
        format!("{}{:016x}{:08x}", Self::tag(sort), self.key, self.id)
    }

    fn parse(s: &str, sort: Sort) -> Result<Cursor> {
        let bad = || Error::invalid("cursor", format!("{s:?} is not a cursor of a {sort:?}-sorted query"));
        let rest = s.strip_prefix(Self::tag(sort)).ok_or_else(bad)?;
        if rest.len() != 24 || !rest.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(bad());
        }
        let key = u64::from_str_radix(&rest[..16], 16).map_err(|_| bad())?;
        let id = u32::from_str_radix(&rest[16..], 16).map_err(|_| bad())?;
        Ok(Cursor { key, id })
    }
}

struct Eval<'a> {
    db: &'a Db,
    project: &'a Project,
    index: &'a ProjectIndex,
    uses_deleted: bool,
    /// What the caller may see; `None`: everything.
    view: Option<&'a View<'a>>,
}

impl<'a> Eval<'a> {
    /// The soft-deleted assets to leave out of the result: none when the filter
    /// mentioned `deleted` (call after evaluating it) or when there are none.
    fn deleted(&self) -> Option<&'a Bitmap> {
        let index: &'a ProjectIndex = self.index;
        index
            .bitmap(&Key::Deleted)
            .filter(|d| !self.uses_deleted && !d.is_empty())
    }

    /// A leaf's bitmap, borrowed from the index (no copy).
    fn bitmap(&self, key: &Key) -> Cow<'a, Bitmap> {
        match self.index.bitmap(key) {
            Some(bm) => Cow::Borrowed(bm),
            None => Cow::Owned(Bitmap::new()),
        }
    }

    /// Union of the bitmaps of the `name@version` keys that `spec` names: exactly, or by
    /// name alone (every version; a name may itself contain `@`).
    fn versioned(&self, spec: &str, of: fn(&Key) -> Option<&String>) -> Bitmap {
        let mut out = Bitmap::new();
        for (k, bm) in &self.index.bitmaps {
            let Some(key) = of(k) else { continue };
            if key == spec || key.rsplit_once('@').is_some_and(|(name, _)| name == spec) {
                out |= bm;
            }
        }
        out
    }

    /// The assets (of `within`, if given) whose value of `key` satisfies `OP value`:
    /// whole buckets from the index, the boundary bucket checked against primary data.
    fn numeric(&self, key: &NumKey, op: CmpOp, value: f64, within: Option<&Bitmap>) -> Result<Bitmap> {
        let Some(nums) = self.index.nums.get(key) else {
            return Ok(Bitmap::new());
        };
        let (mut sure, mut boundary) = nums.range(op, value);
        if let Some(within) = within {
            sure &= within;
            boundary &= within;
        }
        for id in boundary.iter() {
            if let Some(v) = self.db.exact(AssetId(id), key)? {
                if op.holds(v, value) {
                    sure.add(id);
                }
            }
        }
        Ok(sure)
    }

    /// The assets of the project that a text-only filter matches.
    fn text_matches(&self, f: &Filter) -> Result<Bitmap> {
        let text = self.db.text();
        let mut words = Vec::new();
        let matches = if conjunction_words(text, f, &mut words)? {
            text.matching_words(&words)?
        } else {
            text.matching_query(&*text_query(text, f)?)?
        };
        Ok(matches & &self.index.all)
    }

    fn eval(&mut self, f: &Filter) -> Result<Cow<'a, Bitmap>> {
        Ok(match f {
            Filter::All => Cow::Borrowed(&self.index.all),
            Filter::Status(s) => self.bitmap(&Key::Status(*s)),
            Filter::Class { kind, job, class } => {
                let j = self.project.schema.job(job).ok_or_else(|| {
                    Error::invalid("query", format!("project {:?} has no job {job:?}", self.project.name))
                })?;
                if !j.has_class(class) {
                    return Err(Error::invalid("query", format!("job {job:?} has no class {class:?}")));
                }
                if let Some(hidden) = self.blind_class(*kind, job, class)? {
                    return Ok(hidden);
                }
                self.bitmap(&Key::Class(*kind, job.clone(), class.clone()))
            }
            Filter::Author(a) if self.hides_author(a) => Cow::Owned(Bitmap::new()),
            Filter::Author(a) => self.bitmap(&Key::Author(a.clone())),
            Filter::Model(_) | Filter::Rule(_) if self.hides_predictions() => Cow::Owned(Bitmap::new()),
            Filter::Model(m) => Cow::Owned(self.versioned(m, |k| match k {
                Key::Model(n) => Some(n),
                _ => None,
            })),
            Filter::Rule(r) => Cow::Owned(self.versioned(r, |k| match k {
                Key::Rule(n) => Some(n),
                _ => None,
            })),
            Filter::Meta { key, value } => match self.index.meta.get(key, &MetaKey::of(value)) {
                Some(ids) => ids.bitmap(),
                None => Cow::Owned(Bitmap::new()),
            },
            Filter::Honeypot => self.bitmap(&Key::Honeypot),
            Filter::Deleted => {
                self.uses_deleted = true;
                self.bitmap(&Key::Deleted)
            }
            Filter::Numeric { field, op, value } => {
                let key = num_key(field)?;
                if value.is_nan() {
                    // Nothing compares true with NaN.
                    return Ok(Cow::Owned(Bitmap::new()));
                }
                if let Some(own) = self.blind_numeric(&key, *op, *value)? {
                    return Ok(Cow::Owned(own));
                }
                let mut out = self.numeric(&key, *op, *value, None)?;
                if let NumKey::Score(kind, Some(job)) = &key {
                    // Assets that score this job alone hold its value in the job-less index.
                    if let Some(only) = self.index.bitmap(&Key::ScoredOnly(*kind, job.clone())) {
                        out |= &self.numeric(&NumKey::Score(*kind, None), *op, *value, Some(only))?;
                    }
                }
                Cow::Owned(out)
            }
            // A subtree of text filters only is answered by the text index as a whole:
            // posting lists are intersected there, and only the matches become bitmap
            // entries. Plain words joined by AND take the posting-list path, the rest
            // one tantivy query.
            Filter::Text(_) => Cow::Owned(self.text_matches(f)?),
            Filter::And(..) | Filter::Or(..) if is_text_only(f) => Cow::Owned(self.text_matches(f)?),
            // `x AND NOT y` is a difference: no complement of y is ever built.
            Filter::And(a, b) => match (a.as_ref(), b.as_ref()) {
                (x, Filter::Not(y)) | (Filter::Not(y), x) => {
                    let (l, r) = (self.eval(x)?, self.eval(y)?);
                    Cow::Owned(l.as_ref() - r.as_ref())
                }
                _ => {
                    let (l, r) = (self.eval(a)?, self.eval(b)?);
                    Cow::Owned(l.as_ref() & r.as_ref())
                }
            },
            Filter::Or(a, b) => {
                let (l, r) = (self.eval(a)?, self.eval(b)?);
                Cow::Owned(l.as_ref() | r.as_ref())
            }
            Filter::Not(inner) => Cow::Owned(&self.index.all - self.eval(inner)?.as_ref()),
        })
    }
}

/// `best` followed, up to `limit`, by the other assets of `set` by id with score 0: the
/// matches no text part scored (another OR branch, images).
fn with_unscored(mut best: Vec<(AssetId, f32)>, set: &Bitmap, limit: usize) -> Vec<(AssetId, f32)> {
    if best.len() < limit {
        let shown: Bitmap = best.iter().map(|(id, _)| id.0).collect();
        let rest = set - &shown;
        best.extend(rest.iter().take(limit - best.len()).map(|id| (AssetId(id), 0.0)));
    }
    best
}

/// The assets matching `filter`, without soft-deleted ones unless it mentions `deleted`.
fn select_in(ev: &mut Eval<'_>, filter: &Filter) -> Result<Bitmap> {
    let mut out = ev.eval_scoped(filter)?.into_owned();
    if let Some(deleted) = ev.deleted() {
        out -= deleted;
    }
    Ok(out)
}

/// The filter of a full-text search: `text` in the query language AND `filter`.
pub(crate) fn search_filter(text: &str, filter: Option<&Filter>) -> Result<Filter> {
    let text_filter = parse(text)?;
    Ok(match filter {
        Some(f) => text_filter.and(f.clone()),
        None => text_filter,
    })
}

/// A filter that is the conjunction of text-only parts and of parts without text, as
/// `(TEXT, REST)`: the text parts ANDed, and the rest ANDed (`All` if there is none).
/// The text part's own query then matches exactly its assets and scores each as the sum
/// of the filter's text leaves — the score the union of those leaves would give.
fn split_text(f: &Filter) -> Option<(Filter, Filter)> {
    fn conjuncts<'f>(f: &'f Filter, out: &mut Vec<&'f Filter>) {
        match f {
            Filter::And(a, b) => {
                conjuncts(a, out);
                conjuncts(b, out);
            }
            f => out.push(f),
        }
    }
    let mut parts = Vec::new();
    conjuncts(f, &mut parts);
    let (text, rest): (Vec<&Filter>, Vec<&Filter>) = parts.into_iter().partition(|p| is_text_only(p));
    if text.is_empty() || rest.iter().any(|p| has_text(p)) {
        return None;
    }
    let and = |parts: Vec<&Filter>| parts.into_iter().cloned().reduce(Filter::and);
    Some((and(text)?, and(rest).unwrap_or(Filter::All)))
}

/// Whether a filter is made of text filters, AND and OR only.
fn is_text_only(f: &Filter) -> bool {
    match f {
        Filter::Text(_) => true,
        Filter::And(a, b) | Filter::Or(a, b) => is_text_only(a) && is_text_only(b),
        _ => false,
    }
}

/// Whether a filter is single words joined by AND (`w1 AND w2`, `text:w`, a one-word
/// phrase), collecting their analysed tokens into `out`.
fn conjunction_words(text: &TextIndex, f: &Filter, out: &mut Vec<String>) -> Result<bool> {
    Ok(match f {
        Filter::Text(TextQuery::Term(w)) => one_token(text.tokens(w)?, out),
        Filter::Text(TextQuery::Phrase(ws)) => one_token(text.tokens(&ws.join(" "))?, out),
        Filter::And(a, b) => conjunction_words(text, a, out)? && conjunction_words(text, b, out)?,
        _ => false,
    })
}

fn one_token(mut tokens: Vec<String>, out: &mut Vec<String>) -> bool {
    match (tokens.pop(), tokens.is_empty()) {
        (Some(t), true) => {
            out.push(t);
            true
        }
        _ => false,
    }
}

/// The tantivy query of a text-only filter (see [`is_text_only`]).
fn text_query(text: &TextIndex, f: &Filter) -> Result<Box<dyn tantivy::query::Query>> {
    use tantivy::query::{BooleanQuery, Occur};
    Ok(match f {
        Filter::Text(t) => text.query(t)?,
        Filter::And(a, b) => Box::new(BooleanQuery::new(vec![
            (Occur::Must, text_query(text, a)?),
            (Occur::Must, text_query(text, b)?),
        ])),
        Filter::Or(a, b) => Box::new(BooleanQuery::new(vec![
            (Occur::Should, text_query(text, a)?),
            (Occur::Should, text_query(text, b)?),
        ])),
        _ => return Err(Error::invalid("query", "not a text-only filter")),
    })
}

/// Whether a filter has a full-text part that can rank its matches.
pub fn has_text(f: &Filter) -> bool {
    let mut leaves = Vec::new();
    text_leaves(f, &mut leaves);
    !leaves.is_empty()
}

/// The text queries of a filter outside any NOT (those that can score a match).
fn text_leaves<'f>(f: &'f Filter, out: &mut Vec<&'f TextQuery>) {
    match f {
        Filter::Text(t) => out.push(t),
        Filter::And(a, b) | Filter::Or(a, b) => {
            text_leaves(a, out);
            text_leaves(b, out);
        }
        _ => {}
    }
}

fn num_key(field: &NumField) -> Result<NumKey> {
    Ok(match field {
        NumField::Score { kind, job } => match kind {
            LabelKind::Prediction | LabelKind::Inference => NumKey::Score(*kind, job.clone()),
            other => return Err(Error::invalid("query", format!("{other} labels have no score"))),
        },
        NumField::Priority => NumKey::Priority,
        NumField::Seconds => NumKey::Seconds,
        NumField::Created => NumKey::Created,
        NumField::Labels => NumKey::Labels,
    })
}
