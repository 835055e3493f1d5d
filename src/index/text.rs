//! The full-text index of text assets: tantivy, in `<db>/text/`.
//!
//! One document per live (not soft-deleted) text asset: its content, analysed by a
//! simple tokenizer (split on non-alphanumerics) with lower-casing and ASCII folding, and
//! its asset id as an indexed fast field. Writers add and delete documents in the same
//! logical write as the primary data but never wait for a commit: a background thread
//! commits about once a second (and `flush` and close commit), always through
//! `prepare_commit` with the event-log seq as payload, after flushing sled, so the
//! index never holds a document whose primary data could be lost in a crash. On open
//! the log after the payload's seq is replayed; replay is idempotent. An index that
//! cannot be opened, or whose segment files fail their checksums, is derived data: it is
//! emptied and rebuilt.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use croaring::Bitmap;
use parking_lot::Mutex;
use tantivy::collector::{Collector, SegmentCollector, TopDocs};
use tantivy::columnar::Column;
use tantivy::index::SegmentId;
use tantivy::postings::BlockSegmentPostings;
use tantivy::query::{AllQuery, Bm25Weight, BooleanQuery, EmptyQuery, Occur, PhraseQuery, Query, TermQuery};
use tantivy::schema::{Field, IndexRecordOption, Schema, TextFieldIndexing, TextOptions, FAST, INDEXED};
use tantivy::snippet::SnippetGenerator;
use tantivy::tokenizer::{
    AsciiFoldingFilter, LowerCaser, SimpleTokenizer, TextAnalyzer, Token, TokenFilter, TokenStream, Tokenizer,
};
use tantivy::{doc, DocId, Index, IndexReader, IndexWriter, ReloadPolicy, Score, SegmentOrdinal, SegmentReader, Term};

use crate::model::asset::{Asset, AssetId, Content};
use crate::model::error::{Error, Result};
use crate::model::event::Seq;

const TOKENIZER: &str = "labeldb";
const WRITER_HEAP: usize = 64 << 20;
/// The most words a prefix query may expand to.
pub const MAX_COMPLETIONS: usize = 100_000;

/// A change to the text index.
#[derive(Clone, Debug)]
pub(crate) enum TextOp {
    /// Add the asset's document. The caller deletes any previous one first: a new asset
    /// has none, so the common case pays no delete.
    Insert(AssetId, String),
    Delete(AssetId),
}

impl TextOp {
    /// The insert that makes the index agree with an asset's current state, after a
    /// delete of its old document (if it may have one).
    pub(crate) fn for_asset(a: &Asset) -> Option<TextOp> {
        match &a.content {
            Content::Text(t) if !a.deleted => Some(TextOp::Insert(a.id, t.clone())),
            _ => None,
        }
    }
}

pub(crate) struct TextIndex {
    /// The index directory.
    dir: PathBuf,
    index: Index,
    asset: Field,
    content: Field,
    writer: Mutex<IndexWriter>,
    reader: IndexReader,
    /// The seq of the last write whose text ops were handed to the writer.
    applied: AtomicU64,
    /// The seq in the last commit's payload.
    committed: AtomicU64,
    /// Set when the writer failed: the index misses changes until a rebuild.
    broken: Mutex<Option<String>>,
    /// The `asset` fast-field column of each segment, opened once: opening it costs
    /// more than collecting a few hundred matches from it.
    columns: Columns,
}

/// Per-segment `asset` columns, kept while their segment is searchable.
#[derive(Default)]
struct Columns(Mutex<HashMap<SegmentId, Column<u64>>>);

impl Columns {
    fn of(&self, reader: &SegmentReader) -> tantivy::Result<Column<u64>> {
        let id = reader.segment_id();
        if let Some(c) = self.0.lock().get(&id) {
            return Ok(c.clone());
        }
        let column = reader.fast_fields().u64("asset")?;
        self.0.lock().insert(id, column.clone());
        Ok(column)
    }

    /// Forgets the columns of segments that `searcher` no longer has (merged away).
    fn keep_only(&self, searcher: &tantivy::Searcher) {
        let live: HashSet<SegmentId> = searcher.segment_readers().iter().map(|r| r.segment_id()).collect();
        self.0.lock().retain(|id, _| live.contains(id));
    }
}

/// The file in the index directory that lists the segment files that passed their
/// checksums, one `name length mtime_ns` line each: segment files never change, so each
/// is read once, by the first open that finds it, unless its length or time changes.
const CHECKED: &str = "checked-files";

/// Checks the files of the index's segments against their checksums, skipping a segment
/// whose files all have a line in `checked` (see [`CHECKED`]); returns the lines of every
/// file of the index's segments. A file that fails is `DataCorruption` naming it.
fn check_files(index: &Index, dir: &Path, checked: &HashSet<String>) -> tantivy::Result<HashSet<String>> {
    let managed = index.directory().list_managed_files();
    let mut now = HashSet::new();
    for segment in index.searchable_segment_metas()? {
        let files: Vec<PathBuf> = segment.list_files().intersection(&managed).cloned().collect();
        let mut lines = Vec::with_capacity(files.len());
        for file in &files {
            let meta = std::fs::metadata(dir.join(file))?;
            let mtime = meta
                .modified()
                .ok()
                .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                .map_or(0, |d| d.as_nanos());
            lines.push(format!("{} {} {mtime}", file.display(), meta.len()));
        }
        if !lines.iter().all(|l| checked.contains(l)) {
            for file in &files {
                if !index.directory().validate_checksum(file)? {
                    let corruption =
                        tantivy::error::DataCorruption::new(file.clone(), "the file fails its checksum".into());
                    return Err(corruption.into());
                }
            }
        }
        now.extend(lines);
    }
    Ok(now)
}

fn text_error(e: impl std::fmt::Display) -> Error {
    Error::storage(format!("text index: {e}"))
}

fn schema() -> (Schema, Field, Field) {
    let mut b = Schema::builder();
    let asset = b.add_u64_field("asset", INDEXED | FAST);
    let indexing = TextFieldIndexing::default()
        .set_tokenizer(TOKENIZER)
        .set_index_option(IndexRecordOption::WithFreqsAndPositions);
    let content = b.add_text_field("content", TextOptions::default().set_indexing_options(indexing));
    (b.build(), asset, content)
}

impl TextIndex {
    /// Opens the index in `dir`, creating it if it does not exist. Returns the index and
    /// what it held: `Ok(Some(seq))` for the seq of its last commit, `Ok(None)` when it
    /// has no commit, and `Err(why)` when it was damaged (unreadable metadata, a segment
    /// file missing, unreadable or failing its checksum) and was started again empty, in
    /// which case the caller rebuilds it: it is derived data.
    pub(crate) fn open(dir: &Path) -> Result<(TextIndex, std::result::Result<Option<Seq>, String>)> {
        std::fs::create_dir_all(dir).map_err(text_error)?;
        let why = match TextIndex::open_in(dir) {
            Ok(opened) => return Ok(opened),
            // Another writer holds the index: it is in use, not damaged.
            Err(e @ tantivy::TantivyError::LockFailure(..)) => return Err(text_error(e)),
            Err(e) => format!("the text index was damaged ({e})"),
        };
        std::fs::remove_dir_all(dir).map_err(text_error)?;
        std::fs::create_dir_all(dir).map_err(text_error)?;
        let (index, _) = TextIndex::open_in(dir).map_err(text_error)?;
        Ok((index, Err(why)))
    }

    /// Opens (or creates) the index in `dir` and checks its files: any error means the
    /// index cannot be used as it is.
    fn open_in(dir: &Path) -> tantivy::Result<(TextIndex, std::result::Result<Option<Seq>, String>)> {
        let (schema, asset, content) = schema();
        let index = Index::open_or_create(tantivy::directory::MmapDirectory::open(dir)?, schema)?;
        // Opening reads only the files' footers: a flipped byte inside a segment would
        // show (or panic) only when a search reads it. Files unchanged since an earlier
        // open checked them are not read again (`verify` reads them all).
        let checked_list = dir.join(CHECKED);
        let checked: HashSet<String> = std::fs::read_to_string(&checked_list)
            .map(|list| list.lines().map(str::to_string).collect())
            .unwrap_or_default();
        let now = check_files(&index, dir, &checked)?;
        if now != checked {
            // Best effort: a list not written only means checking those files again.
            let list: Vec<&str> = now.iter().map(String::as_str).collect();
            let temporary = dir.join(format!("{CHECKED}.tmp"));
            if std::fs::write(&temporary, list.join("\n")).is_ok() {
                let _ = std::fs::rename(&temporary, &checked_list);
            }
        }
        index.tokenizers().register(
            TOKENIZER,
            TextAnalyzer::builder(SimpleTokenizer::default())
                .filter(LowerCaser)
                .filter(FinalSigma)
                .filter(AsciiFoldingFilter)
                .build(),
        );
        let seq = index.load_metas()?.payload.and_then(|p| p.parse::<Seq>().ok());
        let writer = index.writer(WRITER_HEAP)?;
        let reader = index.reader_builder().reload_policy(ReloadPolicy::Manual).try_into()?;
        let t = TextIndex {
            dir: dir.to_path_buf(),
            index,
            asset,
            content,
            writer: Mutex::new(writer),
            reader,
            applied: AtomicU64::new(seq.unwrap_or(0)),
            committed: AtomicU64::new(seq.unwrap_or(0)),
            broken: Mutex::new(None),
            columns: Columns::default(),
        };
        Ok((t, Ok(seq)))
    }

    /// Applies ops of the write with this seq (called by the writer, in seq order).
    pub(crate) fn apply(&self, ops: Vec<TextOp>, seq: Seq) -> Result<()> {
        if !ops.is_empty() {
            let w = self.writer.lock();
            for op in ops {
                match op {
                    TextOp::Insert(id, text) => {
                        w.add_document(doc!(self.asset => u64::from(id.0), self.content => text))
                            .map_err(text_error)?;
                    }
                    TextOp::Delete(id) => {
                        w.delete_term(Term::from_field_u64(self.asset, u64::from(id.0)));
                    }
                }
            }
        }
        self.applied.store(seq, Ordering::Release);
        Ok(())
    }

    pub(crate) fn mark_broken(&self, why: String) {
        *self.broken.lock() = Some(why);
    }

    /// Why the index misses changes, if its writer failed since the last rebuild.
    pub(crate) fn broken(&self) -> Option<String> {
        self.broken.lock().clone()
    }

    /// Removes every document (before a rebuild).
    pub(crate) fn clear(&self) -> Result<()> {
        self.writer.lock().delete_all_documents().map_err(text_error)?;
        *self.broken.lock() = None;
        Ok(())
    }

    /// Commits what was applied, if anything moved, after `make_durable` (a sled flush)
    /// so that no committed document outlives its primary data in a crash, and reloads
    /// the reader: when this returns, searches see everything applied before the call.
    pub(crate) fn commit(&self, make_durable: impl FnOnce() -> Result<()>, force: bool) -> Result<()> {
        let mut w = self.writer.lock();
        let seq = self.applied.load(Ordering::Acquire);
        if !force && seq == self.committed.load(Ordering::Acquire) {
            return Ok(());
        }
        make_durable()?;
        let mut prepared = w.prepare_commit().map_err(text_error)?;
        prepared.set_payload(&seq.to_string());
        prepared.commit().map_err(text_error)?;
        // Reload before letting go of the writer: a commit that finds nothing new to
        // commit (`verify`'s) must find the reader already showing the last one, not
        // race the committer thread between its commit and its reload.
        self.reader.reload().map_err(text_error)?;
        self.columns.keep_only(&self.reader.searcher());
        self.committed.store(seq, Ordering::Release);
        drop(w);
        Ok(())
    }

    /// Checks every file of the index's segments against its checksum (for `verify`):
    /// `Some(problem)` naming a file that fails or cannot be read. A merge may remove
    /// files while they are listed: a check that fails for another reason than a
    /// checksum is tried again, twice, before it counts.
    pub(crate) fn check_all_files(&self) -> Option<String> {
        let mut attempt = 0;
        loop {
            match check_files(&self.index, &self.dir, &HashSet::new()) {
                Ok(_) => return None,
                Err(e @ tantivy::TantivyError::DataCorruption(_)) => {
                    return Some(format!("text index: {e}; run verify --repair"))
                }
                Err(_) if attempt < 2 => attempt += 1,
                Err(e) => {
                    return Some(format!(
                        "text index: its files cannot be checked ({e}); run verify --repair"
                    ))
                }
            }
        }
    }

    /// Whether applied changes wait for a commit.
    pub(crate) fn dirty(&self) -> bool {
        self.applied.load(Ordering::Acquire) != self.committed.load(Ordering::Acquire)
    }

    /// The analysed tokens of a text.
    pub(crate) fn tokens(&self, text: &str) -> Result<Vec<String>> {
        let mut analyzer = self.index.tokenizer_for_field(self.content).map_err(text_error)?;
        let mut stream = analyzer.token_stream(text);
        let mut out = Vec::new();
        while stream.advance() {
            out.push(stream.token().text.clone());
        }
        Ok(out)
    }

    fn term(&self, token: &str) -> Term {
        Term::from_field_text(self.content, token)
    }

    /// The tantivy query of a text query.
    pub(crate) fn query(&self, q: &TextQuery) -> Result<Box<dyn Query>> {
        let words = |tokens: Vec<String>| -> Box<dyn Query> {
            match tokens.len() {
                0 => Box::new(EmptyQuery),
                1 => Box::new(TermQuery::new(self.term(&tokens[0]), IndexRecordOption::WithFreqs)),
                _ => Box::new(PhraseQuery::new(tokens.iter().map(|t| self.term(t)).collect())),
            }
        };
        Ok(match q {
            TextQuery::Term(w) => words(self.tokens(w)?),
            TextQuery::Phrase(ws) => words(self.tokens(&ws.join(" "))?),
            TextQuery::Prefix(p) => {
                let mut tokens = self.tokens(p)?;
                let Some(last) = tokens.pop() else {
                    return Ok(Box::new(EmptyQuery));
                };
                // Expand the last word to the indexed words it begins: each completion is
                // then a plain term or phrase, so scoring and snippets work as for words.
                let alternatives: Vec<(Occur, Box<dyn Query>)> = self
                    .completions(&last)?
                    .into_iter()
                    .map(|word| {
                        let mut phrase = tokens.clone();
                        phrase.push(word);
                        (Occur::Should, words(phrase))
                    })
                    .collect();
                Box::new(BooleanQuery::new(alternatives))
            }
        })
    }

    /// The indexed words that start with `prefix`, over the last commit.
    fn completions(&self, prefix: &str) -> Result<Vec<String>> {
        let searcher = self.reader.searcher();
        let mut out = std::collections::BTreeSet::new();
        for segment in searcher.segment_readers() {
            let inverted = segment.inverted_index(self.content).map_err(text_error)?;
            let mut stream = inverted
                .terms()
                .range()
                .ge(prefix.as_bytes())
                .into_stream()
                .map_err(text_error)?;
            while stream.advance() {
                let key = stream.key();
                if !key.starts_with(prefix.as_bytes()) {
                    break;
                }
                if let Ok(word) = std::str::from_utf8(key) {
                    out.insert(word.to_string());
                }
                if out.len() > MAX_COMPLETIONS {
                    return Err(Error::invalid(
                        "prefix",
                        format!("{prefix:?}* matches more than {MAX_COMPLETIONS} words; use a longer prefix"),
                    ));
                }
            }
        }
        Ok(out.into_iter().collect())
    }

    /// Assets whose text holds every one of `words` (analysed tokens), over the last
    /// commit: the conjunction of plain words that most searches are. In each segment
    /// the posting lists (doc ids only) are decoded block by block, the shortest whole,
    /// and the others walked alongside it, skipping the blocks it has no doc in; only
    /// the docs left are mapped to asset ids. Running the same conjunction as a tantivy
    /// `BooleanQuery` costs about twice as much (BENCHMARKS.md, "Full-text search").
    pub(crate) fn matching_words(&self, words: &[String]) -> Result<Bitmap> {
        let searcher = self.reader.searcher();
        let terms: Vec<Term> = words.iter().map(|w| self.term(w)).collect();
        let mut out = Bitmap::new();
        for segment in searcher.segment_readers() {
            let docs = self.conjunction(segment, &terms)?;
            let column = self.columns.of(segment).map_err(text_error)?;
            // As the bitmap collector does: an id that is no asset id is left out.
            for id in docs
                .into_iter()
                .filter_map(|d| column.first(d).and_then(|v| u32::try_from(v).ok()))
            {
                out.add(id);
            }
        }
        Ok(out)
    }

    /// The best `limit` assets of `within` whose text holds every one of `words`
    /// (analysed tokens), best first (ties by asset id), with the score a tantivy
    /// `BooleanQuery` of one `Must` term query per word gives: the sum of each term's
    /// BM25 score. The docs are found as [`TextIndex::matching_words`] finds them; only
    /// those left in `within` have their term frequencies read and are scored.
    pub(crate) fn top_words(&self, words: &[String], within: &Bitmap, limit: usize) -> Result<Vec<(AssetId, f32)>> {
        let searcher = self.reader.searcher();
        let terms: Vec<Term> = words.iter().map(|w| self.term(w)).collect();
        let weights = terms
            .iter()
            .map(|t| Bm25Weight::for_terms(&searcher, std::slice::from_ref(t)))
            .collect::<tantivy::Result<Vec<_>>>()
            .map_err(text_error)?;
        let mut hits: Vec<(AssetId, f32)> = Vec::new();
        for segment in searcher.segment_readers() {
            let column = self.columns.of(segment).map_err(text_error)?;
            let (docs, ids): (Vec<DocId>, Vec<u32>) = self
                .conjunction(segment, &terms)?
                .into_iter()
                .filter_map(|d| column.first(d).and_then(|v| u32::try_from(v).ok()).map(|id| (d, id)))
                .filter(|(_, id)| within.contains(*id))
                .unzip();
            if docs.is_empty() {
                continue;
            }
            let inverted = segment.inverted_index(self.content).map_err(text_error)?;
            let fieldnorms = segment.get_fieldnorms_reader(self.content).map_err(text_error)?;
            let mut scores = vec![0.0; docs.len()];
            for (term, weight) in terms.iter().zip(&weights) {
                let mut postings = inverted
                    .read_block_postings(term, IndexRecordOption::WithFreqs)
                    .map_err(text_error)?
                    .unwrap_or_else(BlockSegmentPostings::empty);
                let mut at = 0;
                walk(&docs, &mut postings, |d, freq| {
                    // `docs` all hold the term, so `at` follows them one by one.
                    scores[at] += weight.score(fieldnorms.fieldnorm_id(d), freq);
                    at += 1;
                });
            }
            hits.extend(ids.into_iter().map(AssetId).zip(scores));
        }
        let best_first = |a: &(AssetId, f32), b: &(AssetId, f32)| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0));
        if hits.len() > limit {
            if limit > 0 {
                hits.select_nth_unstable_by(limit - 1, best_first);
            }
            hits.truncate(limit);
        }
        hits.sort_unstable_by(best_first);
        Ok(hits)
    }

    /// The live docs of `segment` whose text holds every one of `terms`: the shortest
    /// posting list (doc ids only) decoded whole, the others walked alongside it,
    /// skipping the blocks it has no doc in.
    fn conjunction(&self, segment: &SegmentReader, terms: &[Term]) -> Result<Vec<DocId>> {
        let inverted = segment.inverted_index(self.content).map_err(text_error)?;
        let mut lists = Vec::with_capacity(terms.len());
        for t in terms {
            match inverted
                .read_block_postings(t, IndexRecordOption::Basic)
                .map_err(text_error)?
            {
                Some(p) => lists.push(p),
                None => return Ok(Vec::new()), // a word this segment lacks: no match here
            }
        }
        lists.sort_by_key(BlockSegmentPostings::doc_freq);
        let Some((shortest, others)) = lists.split_first_mut() else {
            return Ok(Vec::new());
        };
        let mut docs = decode_all(shortest);
        for p in others {
            let mut kept = Vec::with_capacity(docs.len());
            walk(&docs, p, |d, _| kept.push(d));
            docs = kept;
        }
        if let Some(alive) = segment.alive_bitset() {
            docs.retain(|&d| alive.is_alive(d));
        }
        Ok(docs)
    }

    /// Assets matching a tantivy query, over the last commit.
    pub(crate) fn matching_query(&self, query: &dyn Query) -> Result<Bitmap> {
        self.reader
            .searcher()
            .search(query, &BitmapCollector(&self.columns))
            .map_err(text_error)
    }

    /// Every asset in the index, over the last commit.
    pub(crate) fn all(&self) -> Result<Bitmap> {
        self.reader
            .searcher()
            .search(&AllQuery, &BitmapCollector(&self.columns))
            .map_err(text_error)
    }

    /// The best `limit` assets of `within` by BM25 score for `query`.
    pub(crate) fn top(&self, query: &dyn Query, within: Arc<Bitmap>, limit: usize) -> Result<Vec<(AssetId, f32)>> {
        let searcher = self.reader.searcher();
        let collector = WithinCollector {
            columns: &self.columns,
            within,
            inner: TopDocs::with_limit(limit.max(1)),
        };
        let top = searcher.search(query, &collector).map_err(text_error)?;
        let mut out = Vec::with_capacity(top.len());
        for (score, addr) in top.into_iter().take(limit) {
            let col = self
                .columns
                .of(searcher.segment_reader(addr.segment_ord))
                .map_err(text_error)?;
            if let Some(id) = col.first(addr.doc_id).and_then(|v| u32::try_from(v).ok()) {
                out.push((AssetId(id), score));
            }
        }
        Ok(out)
    }

    /// A fragment of each text with the words that `queries` match in `[` `]` (the start
    /// of the text when they name no words, as prefix queries do).
    pub(crate) fn snippets(&self, queries: &[Box<dyn Query>], texts: &[String]) -> Result<Vec<String>> {
        let searcher = self.reader.searcher();
        let snippets = SnippetGenerator::create(&searcher, &union(queries), self.content).map_err(text_error)?;
        Ok(texts
            .iter()
            .map(|text| {
                let snippet = snippets.snippet(text);
                if snippet.fragment().is_empty() {
                    text.chars().take(150).collect()
                } else {
                    highlight(snippet.fragment(), snippet.highlighted())
                }
            })
            .collect())
    }

    /// The directory of the index under a database directory.
    pub(crate) fn dir(db: &Path) -> PathBuf {
        db.join("text")
    }
}

/// One query matching what any of `queries` matches, scored by their sum.
pub(crate) fn union(queries: &[Box<dyn Query>]) -> BooleanQuery {
    BooleanQuery::new(queries.iter().map(|q| (Occur::Should, q.box_clone())).collect())
}

/// Maps the Greek final sigma `ς` to `σ`, so that a word matches whatever its case was
/// (`ΟΔΟΣ` lower-cases letter by letter to `οδοσ`, but as a word to `οδος`).
#[derive(Clone)]
struct FinalSigma;

#[derive(Clone)]
struct FinalSigmaFilter<T>(T);

struct FinalSigmaStream<S>(S);

impl TokenFilter for FinalSigma {
    type Tokenizer<T: Tokenizer> = FinalSigmaFilter<T>;

    fn transform<T: Tokenizer>(self, tokenizer: T) -> FinalSigmaFilter<T> {
        FinalSigmaFilter(tokenizer)
    }
}

impl<T: Tokenizer> Tokenizer for FinalSigmaFilter<T> {
    type TokenStream<'a> = FinalSigmaStream<T::TokenStream<'a>>;

    fn token_stream<'a>(&'a mut self, text: &'a str) -> Self::TokenStream<'a> {
        FinalSigmaStream(self.0.token_stream(text))
    }
}

impl<S: TokenStream> TokenStream for FinalSigmaStream<S> {
    fn advance(&mut self) -> bool {
        if !self.0.advance() {
            return false;
        }
        let token = self.0.token_mut();
        if token.text.contains('ς') {
            token.text = token.text.replace('ς', "σ");
        }
        true
    }

    fn token(&self) -> &Token {
        self.0.token()
    }

    fn token_mut(&mut self) -> &mut Token {
        self.0.token_mut()
    }
}

/// A fragment with its highlighted ranges in `[` `]`.
fn highlight(fragment: &str, ranges: &[std::ops::Range<usize>]) -> String {
    let mut out = String::with_capacity(fragment.len() + 2 * ranges.len());
    let mut at = 0;
    for r in ranges {
        let (Some(before), Some(word)) = (fragment.get(at..r.start), fragment.get(r.clone())) else {
            continue;
        };
        out.push_str(before);
        out.push('[');
        out.push_str(word);
        out.push(']');
        at = r.end;
    }
    out.push_str(fragment.get(at..).unwrap_or(""));
    out
}

/// Every doc id of a posting list, in order.
fn decode_all(p: &mut BlockSegmentPostings) -> Vec<DocId> {
    let mut out = Vec::with_capacity(p.doc_freq() as usize);
    loop {
        let block = p.docs();
        if block.is_empty() {
            return out;
        }
        out.extend_from_slice(block);
        p.advance();
    }
}

/// Walks posting list `p` alongside `docs` (ascending), calling `found` with each doc of
/// `docs` that `p` holds and its term frequency (meaningless unless `p` was read with
/// frequencies): a merge within the loaded block, and a skip to the block that may hold
/// the next doc once it is passed.
fn walk(docs: &[DocId], p: &mut BlockSegmentPostings, mut found: impl FnMut(DocId, u32)) {
    let mut at = 0;
    for &d in docs {
        loop {
            let block = p.docs();
            while at < block.len() && block[at] < d {
                at += 1;
            }
            if at < block.len() {
                if block[at] == d {
                    found(d, p.freqs().get(at).copied().unwrap_or(0));
                }
                break;
            }
            // Past this block: load the one that may hold `d` (docs only ascend).
            p.seek(d);
            at = 0;
            if p.docs().last().is_none_or(|&last| last < d) {
                return;
            }
        }
    }
}

/// Collects the asset ids of matching documents into a bitmap.
struct BitmapCollector<'a>(&'a Columns);

struct BitmapSegment {
    column: Column<u64>,
    out: Bitmap,
}

impl Collector for BitmapCollector<'_> {
    type Fruit = Bitmap;
    type Child = BitmapSegment;

    fn for_segment(&self, _ord: SegmentOrdinal, reader: &SegmentReader) -> tantivy::Result<BitmapSegment> {
        Ok(BitmapSegment {
            column: self.0.of(reader)?,
            out: Bitmap::new(),
        })
    }

    fn requires_scoring(&self) -> bool {
        false
    }

    fn merge_fruits(&self, fruits: Vec<Bitmap>) -> tantivy::Result<Bitmap> {
        let mut out = Bitmap::new();
        for f in fruits {
            out |= f;
        }
        Ok(out)
    }
}

impl SegmentCollector for BitmapSegment {
    type Fruit = Bitmap;

    fn collect(&mut self, doc: DocId, _score: Score) {
        if let Some(id) = self.column.first(doc).and_then(|v| u32::try_from(v).ok()) {
            self.out.add(id);
        }
    }

    fn harvest(self) -> Bitmap {
        self.out
    }
}

/// Passes to `inner` only the documents whose asset is in `within`.
struct WithinCollector<'a, C> {
    columns: &'a Columns,
    within: Arc<Bitmap>,
    inner: C,
}

struct WithinSegment<S> {
    column: Column<u64>,
    within: Arc<Bitmap>,
    inner: S,
}

impl<C: Collector> Collector for WithinCollector<'_, C> {
    type Fruit = C::Fruit;
    type Child = WithinSegment<C::Child>;

    fn for_segment(&self, ord: SegmentOrdinal, reader: &SegmentReader) -> tantivy::Result<Self::Child> {
        Ok(WithinSegment {
            column: self.columns.of(reader)?,
            within: self.within.clone(),
            inner: self.inner.for_segment(ord, reader)?,
        })
    }

    fn requires_scoring(&self) -> bool {
        self.inner.requires_scoring()
    }

    fn merge_fruits(&self, fruits: Vec<<C::Child as SegmentCollector>::Fruit>) -> tantivy::Result<C::Fruit> {
        self.inner.merge_fruits(fruits)
    }
}

impl<S: SegmentCollector> SegmentCollector for WithinSegment<S> {
    type Fruit = S::Fruit;

    fn collect(&mut self, doc: DocId, score: Score) {
        if self
            .column
            .first(doc)
            .and_then(|v| u32::try_from(v).ok())
            .is_some_and(|id| self.within.contains(id))
        {
            self.inner.collect(doc, score);
        }
    }

    fn harvest(self) -> S::Fruit {
        self.inner.harvest()
    }
}

/// A full-text query over text assets.
#[derive(Clone, Debug, PartialEq)]
pub enum TextQuery {
    /// One word.
    Term(String),
    /// Words that must appear in order.
    Phrase(Vec<String>),
    /// Words starting with this prefix (`deliv*`).
    Prefix(String),
}
