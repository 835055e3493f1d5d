//! Selection columns: what `create_snapshot` needs of each asset, kept by the writer, so
//! that a snapshot of a million assets reads a few thousand packed records instead of a
//! million asset records and their labels.
//!
//! A FACTS block holds, for up to [`BLOCK`] consecutive asset ids, each asset's project,
//! external id, content digest and split hash (fixed when the asset is added); opening
//! also builds the external-id map from them. A CHOICES block of
//! a selection holds, for the same ids, the revision that selection chooses now, with
//! its canonical answers. Every write changes the columns in its own batch, so they land
//! with the records they derive from or not at all: a write that adds assets rewrites
//! their blocks whole; a label on an existing asset writes a CHOICE_DELTA record of that
//! asset's new entry instead (its own few bytes, whatever the block holds), which readers
//! apply over the block, and once a block has [`MAX_DELTAS`] deltas the write that would
//! add one more folds them into the block (so a label costs its delta plus, amortized, a
//! sixteenth of a block). `verify` recomputes them from the records; `verify --repair`, and opening
//! a database of format 1 (which had none), rebuild them.

use std::collections::btree_map::{BTreeMap, Entry};
use std::collections::{HashMap, HashSet};

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::model::asset::{Asset, AssetId, Digest};
use crate::model::error::Result;
use crate::model::label::{Answer, Label, LabelKind, Source, Verdict};
use crate::model::project::ProjectId;
use crate::model::selection::Selection;
use crate::store::{codec, keys, Batch, Store};

/// Asset ids per block: `id >> BLOCK_SHIFT` is the block, the low bits the slot.
pub(crate) const BLOCK_SHIFT: u32 = 8;
/// Asset ids per block.
pub(crate) const BLOCK: u32 = 1 << BLOCK_SHIFT;
/// Deltas a CHOICES block keeps before a write folds them into it.
pub(crate) const MAX_DELTAS: usize = 16;

/// The entries of one block, by slot (`id % BLOCK`), ascending and unique.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub(crate) struct Block<T> {
    pub entries: Vec<(u8, T)>,
}

impl<T> Default for Block<T> {
    fn default() -> Block<T> {
        Block { entries: Vec::new() }
    }
}

impl<T> Block<T> {
    /// Sets (`Some`) or clears (`None`) the entry of `asset`.
    fn set(&mut self, asset: AssetId, value: Option<T>) {
        self.set_slot(slot(asset), value);
    }

    /// Sets (`Some`) or clears (`None`) the entry at `slot`.
    pub(crate) fn set_slot(&mut self, slot: u8, value: Option<T>) {
        match (self.entries.binary_search_by_key(&slot, |e| e.0), value) {
            (Ok(i), Some(v)) => self.entries[i].1 = v,
            (Ok(i), None) => {
                self.entries.remove(i);
            }
            (Err(i), Some(v)) => self.entries.insert(i, (slot, v)),
            (Err(_), None) => {}
        }
    }

    /// Whether slots ascend strictly (what a stored block must hold).
    pub fn is_ordered(&self) -> bool {
        self.entries.windows(2).all(|w| w[0].0 < w[1].0)
    }
}

fn slot(asset: AssetId) -> u8 {
    (asset.0 & (BLOCK - 1)) as u8
}

/// The asset id of a slot in a block.
pub(crate) fn asset_at(block: u32, slot: u8) -> AssetId {
    AssetId(block << BLOCK_SHIFT | u32::from(slot))
}

/// What the snapshot digest and splits need of an asset; never changes. `S` is `String`
/// where it is written and `&str` where `create_snapshot` reads it, borrowing from the
/// stored block instead of allocating.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub(crate) struct Facts<S = String> {
    pub project: ProjectId,
    pub external_id: S,
    #[serde(with = "digest_bytes")]
    pub content: Digest,
    pub split_hash: u64,
}

/// A digest stored as bytes (length 32, then the bytes), which decodes with one copy
/// rather than 32 element reads.
mod digest_bytes {
    use std::fmt;

    use serde::de::{self, Visitor};
    use serde::{Deserializer, Serializer};

    use crate::model::asset::Digest;

    pub fn serialize<S: Serializer>(d: &Digest, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(&d.0)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Digest, D::Error> {
        struct Bytes32;
        impl Visitor<'_> for Bytes32 {
            type Value = Digest;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("32 bytes")
            }
            fn visit_bytes<E: de::Error>(self, v: &[u8]) -> Result<Digest, E> {
                <[u8; 32]>::try_from(v)
                    .map(Digest)
                    .map_err(|_| E::invalid_length(v.len(), &self))
            }
        }
        d.deserialize_bytes(Bytes32)
    }
}

impl Facts {
    pub(crate) fn of(asset: &Asset) -> Facts {
        Facts {
            project: asset.project,
            external_id: asset.external_id.clone(),
            content: asset.digest,
            split_hash: split_hash(&asset.external_id),
        }
    }
}

/// The revision a selection chooses for an asset, and its answers. `B` is `Vec<u8>`
/// where it is written and `&[u8]` where `create_snapshot` reads it (the two encode
/// alike: a length, then the bytes).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub(crate) struct Choice<B = Vec<u8>> {
    pub revision: u32,
    /// One past the last revision the selection looks at: choosing over the first `upto`
    /// revisions gives this same choice, whatever comes later.
    pub upto: u32,
    pub answers_hash: u64,
    /// The canonical bytes of the chosen answers (the digest's input).
    pub answers: B,
}

/// Whether a selection's choice depends on this label.
fn feeds(label: &Label, selection: &Selection) -> bool {
    match selection {
        Selection::LatestHuman | Selection::Majority => label.kind == LabelKind::Annotation,
        Selection::LatestReviewed => label.kind == LabelKind::Review,
        Selection::Model { name, version } => {
            label.kind == LabelKind::Prediction
                && matches!(&label.source, Source::Model { name: n, version: v } if n == name && v == version)
        }
    }
}

/// The selections whose choice depends on this label.
pub(crate) fn fed_by(label: &Label) -> Vec<Selection> {
    match (label.kind, &label.source) {
        (LabelKind::Annotation, _) => vec![Selection::LatestHuman, Selection::Majority],
        (LabelKind::Review, _) => vec![Selection::LatestReviewed],
        (LabelKind::Prediction, Source::Model { name, version }) => vec![Selection::Model {
            name: name.clone(),
            version: version.clone(),
        }],
        _ => Vec::new(),
    }
}

/// Every selection that some label of `history` feeds, each once.
fn fed_by_any(history: &[Label]) -> Vec<Selection> {
    let mut out: Vec<Selection> = Vec::new();
    for l in history {
        for s in fed_by(l) {
            if !out.contains(&s) {
                out.push(s);
            }
        }
    }
    out
}

/// The column a selection's stored entries fall back to: majority stores an entry only
/// where it chooses another revision than latest-human (with one annotator per asset,
/// the common case, it never does) and is read as latest-human's entries overridden by
/// its own. Both read the same labels, so they have an entry for the same assets and
/// the same `upto`.
pub(crate) fn base_of(selection: &Selection) -> Option<Selection> {
    (*selection == Selection::Majority).then_some(Selection::LatestHuman)
}

/// What the columns of `selections` store for an asset with this history: each one's
/// choice, or `None` where it chooses nothing or (see [`base_of`]) where its base's
/// entry says it. A selection's base is fed by the same labels, so whoever lists the
/// selections fed by a label lists its base too, and each choice is computed once.
fn stored_choices(selections: Vec<Selection>, history: &[Label]) -> Vec<(Selection, Option<Choice>)> {
    let chosen: Vec<_> = selections
        .into_iter()
        .map(|s| {
            let c = choose(&s, history);
            (s, c)
        })
        .collect();
    let revision_of = |s: &Selection| chosen.iter().find(|(c, _)| c == s).map(|(_, c)| c.map(|c| c.0));
    chosen
        .iter()
        .map(|(s, c)| {
            let as_base = base_of(s).is_some_and(|b| revision_of(&b) == Some(c.map(|c| c.0)));
            let stored = match c {
                Some((revision, answers)) if !as_base => choice(s, history, *revision, answers),
                _ => None,
            };
            (s.clone(), stored)
        })
        .collect()
}

/// The stored choice of `revision`, which `selection` chooses over `history`, with these
/// answers.
fn choice(
    selection: &Selection,
    history: &[Label],
    revision: u32,
    answers: &BTreeMap<String, Answer>,
) -> Option<Choice> {
    let upto = history.iter().rposition(|l| feeds(l, selection))? as u32 + 1;
    let answers = answers_bytes(answers);
    Some(Choice {
        revision,
        upto,
        answers_hash: hash64(&answers),
        answers,
    })
}

/// Every column entry of one asset: its facts, and its stored choice under each selection
/// that one of its labels feeds (`None`: no entry, see [`stored_choices`]).
pub(crate) fn entries(asset: &Asset, history: &[Label]) -> (Facts, Vec<(Selection, Option<Choice>)>) {
    (Facts::of(asset), stored_choices(fed_by_any(history), history))
}

/// Whole blocks, by key.
#[derive(Default)]
struct Blocks {
    facts: BTreeMap<Vec<u8>, Block<Facts>>,
    choices: BTreeMap<Vec<u8>, Block<Choice>>,
}

impl Blocks {
    /// Every block, encoded as stored (`None`: emptied, to be removed).
    fn encoded(self) -> impl Iterator<Item = (Vec<u8>, Option<Vec<u8>>)> {
        fn enc<T: Serialize>(blocks: BTreeMap<Vec<u8>, Block<T>>) -> impl Iterator<Item = (Vec<u8>, Option<Vec<u8>>)> {
            blocks.into_iter().map(|(k, b)| (k, encoded_block(&b)))
        }
        enc(self.facts).chain(enc(self.choices))
    }

    fn len(&self) -> usize {
        self.facts.len() + self.choices.len()
    }

    /// Puts every block into the batch (an emptied block is removed).
    fn write(self, batch: &mut Batch) {
        for (k, v) in self.encoded() {
            put_or_remove(batch, k, v);
        }
    }
}

fn encoded_block<T: Serialize>(b: &Block<T>) -> Option<Vec<u8>> {
    (!b.entries.is_empty()).then(|| codec::encode(b))
}

fn put_or_remove(batch: &mut Batch, key: Vec<u8>, value: Option<Vec<u8>>) {
    match value {
        Some(v) => batch.put_encoded(key, v),
        None => batch.remove(key),
    }
}

/// The changes one write makes to a CHOICES block.
#[derive(Default)]
struct BlockChanges {
    /// Slot → its new entry (`None`: no entry).
    slots: BTreeMap<u8, Option<Choice>>,
    /// Write the block whole (new or purged assets), folding its deltas in.
    whole: bool,
}

/// The column changes of one write, applied to the batch by [`Pending::write`].
#[derive(Default)]
pub(crate) struct Pending {
    facts: BTreeMap<Vec<u8>, Block<Facts>>,
    choices: BTreeMap<Vec<u8>, BlockChanges>,
}

/// The block under `key`, loaded into `map` on first use.
fn block<'m, T: DeserializeOwned>(
    map: &'m mut BTreeMap<Vec<u8>, Block<T>>,
    store: &Store,
    key: Vec<u8>,
) -> Result<&'m mut Block<T>> {
    Ok(match map.entry(key) {
        Entry::Occupied(e) => e.into_mut(),
        Entry::Vacant(e) => {
            let stored = store.get(e.key())?.unwrap_or_default();
            e.insert(stored)
        }
    })
}

impl Pending {
    fn set_facts(&mut self, store: &Store, asset: AssetId, facts: Option<Facts>) -> Result<()> {
        let key = keys::facts(asset.0 >> BLOCK_SHIFT);
        block(&mut self.facts, store, key)?.set(asset, facts);
        Ok(())
    }

    fn set_choice(&mut self, s: &Selection, asset: AssetId, choice: Option<Choice>, whole: bool) {
        let changes = self
            .choices
            .entry(keys::choices(s, asset.0 >> BLOCK_SHIFT))
            .or_default();
        changes.slots.insert(slot(asset), choice);
        changes.whole |= whole;
    }

    /// Records a new asset (with the labels it came with).
    pub(crate) fn add_asset(&mut self, store: &Store, asset: &Asset, history: &[Label]) -> Result<()> {
        let (facts, choices) = entries(asset, history);
        self.set_facts(store, asset.id, Some(facts))?;
        for (s, c) in choices {
            self.set_choice(&s, asset.id, c, true);
        }
        Ok(())
    }

    /// Records new labels of an existing asset: those of `history` from `first_new` on.
    pub(crate) fn add_labels(&mut self, asset: AssetId, history: &[Label], first_new: usize) {
        let new = history.get(first_new..).unwrap_or_default();
        for (s, c) in stored_choices(fed_by_any(new), history) {
            self.set_choice(&s, asset, c, false);
        }
    }

    /// Removes every entry of a purged asset.
    pub(crate) fn remove_asset(&mut self, store: &Store, asset: AssetId, history: &[Label]) -> Result<()> {
        self.set_facts(store, asset, None)?;
        for s in fed_by_any(history) {
            self.set_choice(&s, asset, None, true);
        }
        Ok(())
    }

    /// Puts every change into the batch: FACTS blocks whole, CHOICES changes as deltas,
    /// or folded with the block's deltas into the block when it is written whole or its
    /// deltas would pass [`MAX_DELTAS`].
    pub(crate) fn write(self, store: &Store, batch: &mut Batch) -> Result<()> {
        for (k, b) in self.facts {
            put_or_remove(batch, k, encoded_block(&b));
        }
        for (key, changes) in self.choices {
            let prefix = keys::choice_deltas(&key);
            let stored: Vec<Vec<u8>> = store.scan_keys(&prefix).collect::<Result<_>>()?;
            let fresh = changes
                .slots
                .keys()
                .filter(|slot| !stored.iter().any(|k| k.last() == Some(slot)))
                .count();
            if !changes.whole && stored.len() + fresh <= MAX_DELTAS {
                for (slot, c) in changes.slots {
                    batch.put(keys::choice_delta(&key, slot), &c);
                }
                continue;
            }
            let mut block: Block<Choice> = store.get(&key)?.unwrap_or_default();
            for raw in store.scan_undecoded(&prefix) {
                let raw = raw?;
                let slot = delta_slot(raw.key())?;
                block.set_slot(slot, raw.decode::<Option<Choice>>()?);
                batch.remove(raw.key().to_vec());
            }
            for (slot, c) in changes.slots {
                block.set_slot(slot, c);
            }
            put_or_remove(batch, key, encoded_block(&block));
        }
        Ok(())
    }
}

/// The slot of a CHOICE_DELTA key (its last byte).
fn delta_slot(key: &[u8]) -> Result<u8> {
    key.last()
        .copied()
        .ok_or_else(|| crate::model::error::Error::Corruption {
            key: keys::describe(key),
            reason: "empty delta key".into(),
        })
}

/// Applies decoded deltas, in key order, to decoded blocks (sorted by block number):
/// what a reader of a selection's blocks must do before using them.
pub(crate) fn apply_deltas<T>(blocks: &mut Vec<(u32, Block<T>)>, deltas: Vec<(u32, u8, Option<T>)>) {
    for (b, slot, value) in deltas {
        let i = match blocks.binary_search_by_key(&b, |(n, _)| *n) {
            Ok(i) => i,
            Err(i) => {
                blocks.insert(i, (b, Block::default()));
                i
            }
        };
        blocks[i].1.set_slot(slot, value);
    }
}

/// Derives whole blocks from every asset and its labels, fed in ascending id order (as
/// a scan of the records yields them).
#[derive(Default)]
struct Builder {
    current: Option<u32>,
    pending: Blocks,
}

impl Builder {
    /// Adds an asset; returns the blocks completed before it, if it starts a new block.
    fn push(&mut self, asset: &Asset, history: &[Label]) -> Option<Blocks> {
        let b = asset.id.0 >> BLOCK_SHIFT;
        let done = match self.current.replace(b) {
            Some(c) if c != b => Some(std::mem::take(&mut self.pending)),
            _ => None,
        };
        // Blocks start empty: they are computed whole, never read back.
        let (facts, choices) = entries(asset, history);
        let p = &mut self.pending;
        p.facts.entry(keys::facts(b)).or_default().set(asset.id, Some(facts));
        for (s, c) in choices {
            p.choices.entry(keys::choices(&s, b)).or_default().set(asset.id, c);
        }
        done
    }

    fn finish(self) -> Blocks {
        self.pending
    }
}

/// The stored column blocks to compare with what the records derive, for `verify`:
/// fed every asset with its labels in id order, then every stored block.
#[derive(Default)]
pub(crate) struct Check {
    builder: Builder,
    /// Key → hash of the expected encoded block.
    expected: HashMap<Vec<u8>, u64>,
}

impl Check {
    pub(crate) fn asset(&mut self, asset: &Asset, history: &[Label]) {
        if let Some(done) = self.builder.push(asset, history) {
            self.expect(done);
        }
    }

    fn expect(&mut self, p: Blocks) {
        for (k, v) in p.encoded() {
            if let Some(v) = v {
                self.expected.insert(k, hash64(&v));
            }
        }
    }

    /// Takes the last block of assets into what is expected, once they were all fed.
    fn assets_done(&mut self) {
        if self.builder.current.is_some() {
            let last = std::mem::take(&mut self.builder).finish();
            self.expect(last);
        }
    }

    /// A stored block (its raw value), after every asset; the problem it has, if any.
    pub(crate) fn stored(&mut self, key: &[u8], value: &[u8]) -> Option<String> {
        self.assets_done();
        match self.expected.remove(key) {
            Some(h) if h == hash64(value) => None,
            Some(_) => Some(format!(
                "{}: differs from what its assets' labels give",
                keys::describe(key)
            )),
            None => Some(format!("{}: holds no asset's entries", keys::describe(key))),
        }
    }

    /// Every stored CHOICES block with its deltas applied (a block that has deltas only
    /// starts empty; one they leave empty is as good as absent), after every asset; the
    /// problems found. Deltas that do not decode
    /// are left out here (the record scan reports them).
    pub(crate) fn stored_choices(&mut self, store: &Store) -> Result<Vec<String>> {
        let mut deltas: BTreeMap<Vec<u8>, Vec<(u8, Option<Choice>)>> = BTreeMap::new();
        for raw in store.scan_undecoded(&[keys::tag::CHOICE_DELTA]) {
            let raw = raw?;
            if let (Some((block, slot)), Ok(value)) = (keys::parse_choice_delta(raw.key()), raw.decode()) {
                deltas.entry(block).or_default().push((slot, value));
            }
        }
        let mut problems = Vec::new();
        let mut check = |key: &[u8], value: &[u8]| {
            problems.extend(self.stored(key, value));
        };
        for raw in store.scan_undecoded(&[keys::tag::CHOICES]) {
            let raw = raw?;
            match (deltas.remove(raw.key()), raw.decode::<Block<Choice>>()) {
                (Some(changes), Ok(mut block)) => {
                    for (slot, c) in changes {
                        block.set_slot(slot, c);
                    }
                    // A block its deltas empty reads as no block.
                    if let Some(bytes) = encoded_block(&block) {
                        check(raw.key(), &bytes);
                    }
                }
                _ => check(raw.key(), raw.value()),
            }
        }
        for (key, changes) in deltas {
            let mut block = Block::default();
            for (slot, c) in changes {
                block.set_slot(slot, c);
            }
            if let Some(bytes) = encoded_block(&block) {
                check(&key, &bytes);
            }
        }
        Ok(problems)
    }

    /// The blocks that should exist and do not.
    pub(crate) fn missing(mut self) -> Vec<String> {
        self.assets_done();
        let mut keys: Vec<_> = self.expected.into_keys().collect();
        keys.sort();
        keys.iter().map(|k| format!("{}: missing", keys::describe(k))).collect()
    }
}

/// Rewrites every column from `assets` (every asset with its history, in id order: the
/// engine's merged scan of the records), removing blocks nothing derives; `finish` adds
/// to the final batch (opening a format-1 database puts its new format version there).
pub(crate) fn rebuild(
    store: &Store,
    assets: impl Iterator<Item = (Asset, Vec<Label>)>,
    finish: impl FnOnce(&mut Batch),
) -> Result<()> {
    let mut stale: HashSet<Vec<u8>> = HashSet::new();
    for t in [keys::tag::FACTS, keys::tag::CHOICES, keys::tag::CHOICE_DELTA] {
        for k in store.scan_keys(&[t]) {
            stale.insert(k?);
        }
    }
    let mut builder = Builder::default();
    let mut batch = Batch::default();
    let mut blocks_in_batch = 0;
    let mut write = |done: Blocks, batch: &mut Batch, stale: &mut HashSet<Vec<u8>>| -> Result<()> {
        for k in done.facts.keys().chain(done.choices.keys()) {
            stale.remove(k);
        }
        blocks_in_batch += done.len();
        done.write(batch);
        if blocks_in_batch >= 1024 {
            blocks_in_batch = 0;
            store.apply(std::mem::take(batch))?;
        }
        Ok(())
    };
    for (asset, history) in assets {
        if let Some(done) = builder.push(&asset, &history) {
            write(done, &mut batch, &mut stale)?;
        }
    }
    write(builder.finish(), &mut batch, &mut stale)?;
    for k in stale {
        batch.remove(k);
    }
    finish(&mut batch);
    store.apply(batch)
}

/// Canonical bytes of answers (digest input): bincode with varint integers, without the
/// record version and crc, so the digest does not change with the storage encoding.
pub(crate) fn answers_bytes(answers: &BTreeMap<String, Answer>) -> Vec<u8> {
    codec::canonical(answers)
}

pub(crate) fn hash64(bytes: &[u8]) -> u64 {
    let h = blake3::hash(bytes);
    let mut a = [0u8; 8];
    a.copy_from_slice(&h.as_bytes()[..8]);
    u64::from_be_bytes(a)
}

pub(crate) fn split_hash(external_id: &str) -> u64 {
    hash64(external_id.as_bytes())
}

/// The chosen revision and answers of one asset under a selection, if it has one.
pub(crate) fn choose<'h>(selection: &Selection, history: &'h [Label]) -> Option<(u32, &'h BTreeMap<String, Answer>)> {
    match selection {
        Selection::LatestHuman => history
            .iter()
            .rev()
            .find(|l| l.kind == LabelKind::Annotation)
            .map(|l| (l.id.revision(), &l.answers)),
        Selection::Model { name, version } => history
            .iter()
            .rev()
            .find(|l| {
                l.kind == LabelKind::Prediction
                    && matches!(&l.source, Source::Model { name: n, version: v } if n == name && v == version)
            })
            .map(|l| (l.id.revision(), &l.answers)),
        Selection::LatestReviewed => {
            let review = history.iter().rev().find(|l| l.kind == LabelKind::Review)?;
            if review.verdict != Some(Verdict::Accept) {
                return None;
            }
            let answers = match review.derived_from {
                Some(r) if review.answers.is_empty() => &history.iter().find(|l| l.id == r)?.answers,
                _ => &review.answers,
            };
            Some((review.id.revision(), answers))
        }
        Selection::Majority => {
            let mut latest: BTreeMap<&Source, &Label> = BTreeMap::new();
            for l in history.iter().filter(|l| l.kind == LabelKind::Annotation) {
                latest.insert(&l.source, l);
            }
            if latest.len() == 1 {
                // One annotator: their latest label is the majority (and no answers need
                // comparing).
                return latest.into_values().next().map(|l| (l.id.revision(), &l.answers));
            }
            // answers bytes → (votes, most recent revision in the group)
            let mut groups: BTreeMap<Vec<u8>, (usize, u32, &Label)> = BTreeMap::new();
            for l in latest.values() {
                let g = groups.entry(answers_bytes(&l.answers)).or_insert((0, 0, l));
                g.0 += 1;
                if l.id.revision() >= g.1 {
                    g.1 = l.id.revision();
                    g.2 = l;
                }
            }
            groups
                .into_values()
                .max_by_key(|(votes, rev, _)| (*votes, *rev))
                .map(|(_, rev, l)| (rev, &l.answers))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::codec;

    fn facts(ext: &str) -> Facts {
        Facts {
            project: ProjectId(1),
            external_id: ext.into(),
            content: Digest([7; 32]),
            split_hash: 0x8000_0000_0000_0001,
        }
    }

    #[test]
    fn stored_blocks_decode_borrowed_as_create_snapshot_reads_them() {
        let mut f = Block::default();
        f.set(AssetId(258), Some(facts("b")));
        f.set(AssetId(257), Some(facts("a")));
        let bytes = codec::encode(&f);
        let borrowed: Block<Facts<&str>> = codec::decode(b"\x11k", &bytes).unwrap();
        assert_eq!(
            borrowed
                .entries
                .iter()
                .map(|(s, x)| (*s, x.external_id))
                .collect::<Vec<_>>(),
            [(1, "a"), (2, "b")]
        );
        assert_eq!(borrowed.entries[0].1.content, Digest([7; 32]));

        let mut c = Block::default();
        let choice = Choice {
            revision: 3,
            upto: 5,
            answers_hash: u64::MAX,
            answers: vec![1, 2, 3],
        };
        c.set(AssetId(9), Some(choice.clone()));
        let bytes = codec::encode(&c);
        let borrowed: Block<Choice<&[u8]>> = codec::decode(b"\x12k", &bytes).unwrap();
        let (slot, b) = &borrowed.entries[0];
        assert_eq!(
            (*slot, b.revision, b.upto, b.answers_hash, b.answers),
            (9, 3, 5, u64::MAX, &[1u8, 2, 3][..])
        );
        let owned: Block<Choice> = codec::decode(b"\x12k", &bytes).unwrap();
        assert_eq!(owned, c);
    }

    #[test]
    fn set_keeps_slots_ordered_and_unique_and_clears() {
        let mut b = Block::default();
        for id in [5, 1, 3, 1] {
            b.set(AssetId(id), Some(id));
        }
        assert_eq!(b.entries, [(1, 1), (3, 3), (5, 5)]);
        assert!(b.is_ordered());
        b.set(AssetId(3), None);
        b.set(AssetId(4), None);
        assert_eq!(b.entries, [(1, 1), (5, 5)]);
        assert!(!Block {
            entries: vec![(2, 0), (2, 0)]
        }
        .is_ordered());
    }

    #[test]
    fn a_digest_of_another_length_is_corruption_not_a_panic() {
        #[derive(Serialize)]
        struct Bad {
            project: u32,
            external_id: String,
            content: Vec<u8>,
            split_hash: u64,
        }
        let block = (vec![(
            0u8,
            Bad {
                project: 1,
                external_id: "x".into(),
                content: vec![1; 31],
                split_hash: 0,
            },
        )],);
        let bytes = codec::encode(&block);
        let r = codec::decode::<Block<Facts<&str>>>(&keys::facts(0), &bytes);
        assert!(matches!(r, Err(crate::model::error::Error::Corruption { .. })), "{r:?}");
    }
}
