//! The metadata equality index of a project: for each key, the assets holding each value.
//!
//! Metadata often names its asset (a file name, a URL, an id in another system), so a
//! key may have as many values as the project has assets. A roaring bitmap per value
//! cost ~400 bytes each in memory, and a hash map of a million keys made every open slow
//! and every facet or model query walk them all. Here a value held by one asset is that
//! asset's id; a bitmap is made only for a value that two or more assets share.

use std::borrow::Cow;

use croaring::Bitmap;

use super::{allocated, FastMap, MetaKey};

/// The assets holding one value. Always in its canonical form — one asset is `One`,
/// two or more `Many` — so that equal sets compare equal.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Ids {
    One(u32),
    /// Two or more assets (boxed: most values are `One`, and a bitmap is 40 bytes).
    Many(Box<Bitmap>),
}

impl Ids {
    /// The set a checkpoint stored as `bytes` (portable roaring format): `None` when they
    /// are not a bitmap, `Some(None)` when it is empty. A one-id set is read without
    /// building a bitmap.
    pub(crate) fn from_bytes(bytes: &[u8]) -> Option<Option<Ids>> {
        match single_id(bytes) {
            Some(id) => Some(Some(Ids::One(id))),
            None => super::from_bytes(bytes).map(Ids::of),
        }
    }

    /// The canonical form of a set; `None` when it is empty.
    pub(crate) fn of(bm: Bitmap) -> Option<Ids> {
        match bm.cardinality() {
            0 => None,
            1 => bm.minimum().map(Ids::One),
            _ => Some(Ids::Many(Box::new(bm))),
        }
    }

    /// The set as a bitmap: borrowed when it is one.
    pub(crate) fn bitmap(&self) -> Cow<'_, Bitmap> {
        match self {
            Ids::One(id) => Cow::Owned(Bitmap::of(&[*id])),
            Ids::Many(bm) => Cow::Borrowed(bm),
        }
    }

    fn add_many(&mut self, ids: &[u32]) {
        match self {
            Ids::One(id) if ids.iter().all(|i| i == id) => {}
            Ids::One(id) => {
                let mut bm = Bitmap::of(&[*id]);
                bm.add_many(ids);
                *self = Ids::Many(Box::new(bm));
            }
            Ids::Many(bm) => bm.add_many(ids),
        }
    }

    /// Takes `id` out; `false` when nothing is left.
    fn remove(&mut self, id: u32) -> bool {
        match self {
            Ids::One(one) => *one != id,
            Ids::Many(bm) => {
                bm.remove(id);
                if bm.cardinality() == 1 {
                    *self = Ids::One(bm.minimum().unwrap_or(id));
                }
                true
            }
        }
    }

    /// Takes `ids` out; `false` when nothing is left.
    fn subtract(&mut self, ids: &Bitmap) -> bool {
        match self {
            Ids::One(id) => !ids.contains(*id),
            Ids::Many(bm) => {
                **bm -= ids;
                match Ids::of(std::mem::take(&mut **bm)) {
                    Some(rest) => {
                        *self = rest;
                        true
                    }
                    None => false,
                }
            }
        }
    }

    fn memory(&self) -> usize {
        match self {
            Ids::One(_) => 0,
            Ids::Many(bm) => size_of::<Bitmap>() + allocated(bm),
        }
    }
}

/// The one id of a bitmap in the portable roaring format when the bytes are exactly how
/// CRoaring writes a one-id bitmap — cookie 12346 (no run containers), one container, its
/// key and cardinality − 1 = 0, its offset 16, its one low half — else `None` (the caller
/// decodes them as any bitmap). Opening 1M one-asset values spent a fifth of its time
/// building and freeing their bitmaps.
fn single_id(bytes: &[u8]) -> Option<u32> {
    let b: &[u8; 18] = bytes.try_into().ok()?;
    let u16_at = |i: usize| u16::from_le_bytes([b[i], b[i + 1]]);
    let u32_at = |i: usize| u32::from_le_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]]);
    (u32_at(0) == 12346 && u32_at(4) == 1 && u16_at(10) == 0 && u32_at(12) == 16)
        .then(|| u32::from(u16_at(8)) << 16 | u32::from(u16_at(16)))
}

/// Metadata key → value → assets.
#[derive(Clone, Debug, Default, PartialEq)]
pub(crate) struct MetaIndex(FastMap<String, FastMap<MetaKey, Ids>>);

impl MetaIndex {
    /// The assets whose metadata `key` is `value`.
    pub(crate) fn get(&self, key: &str, value: &MetaKey) -> Option<&Ids> {
        self.0.get(key)?.get(value)
    }

    /// Every (key, value, assets).
    pub(crate) fn iter(&self) -> impl Iterator<Item = (&String, &MetaKey, &Ids)> {
        self.0
            .iter()
            .flat_map(|(key, values)| values.iter().map(move |(value, ids)| (key, value, ids)))
    }

    /// Adds assets to a value's set. Strings are cloned only when new.
    pub(crate) fn add_many(&mut self, key: &str, value: &MetaKey, ids: &[u32]) {
        if ids.is_empty() {
            return;
        }
        let values = match self.0.get_mut(key) {
            Some(values) => values,
            None => self.0.entry(key.to_string()).or_default(),
        };
        match values.get_mut(value) {
            Some(set) => set.add_many(ids),
            None => {
                if let Some(set) = Ids::of(Bitmap::of(ids)) {
                    values.insert(value.clone(), set);
                }
            }
        }
    }

    /// The index of these sets (a checkpoint's); empty ones are left out. Each key's
    /// map is sized first: a key with a value per asset would otherwise grow by
    /// rehashing a million entries ~20 times (a third of opening such a database).
    pub(crate) fn from_sets(sets: Vec<(String, MetaKey, Option<Ids>)>) -> MetaIndex {
        let mut counts: FastMap<&str, usize> = FastMap::default();
        for (key, _, _) in &sets {
            *counts.entry(key).or_default() += 1;
        }
        let mut out: FastMap<String, FastMap<MetaKey, Ids>> = counts
            .into_iter()
            .map(|(key, n)| {
                let mut values = FastMap::default();
                values.reserve(n);
                (key.to_string(), values)
            })
            .collect();
        for (key, value, set) in sets {
            if let (Some(values), Some(set)) = (out.get_mut(&key), set) {
                values.insert(value, set);
            }
        }
        out.retain(|_, values| !values.is_empty());
        MetaIndex(out)
    }

    /// Takes an asset out of one value's set.
    pub(crate) fn remove(&mut self, key: &str, value: &MetaKey, id: u32) {
        let Some(values) = self.0.get_mut(key) else {
            return;
        };
        if values.get_mut(value).is_some_and(|set| !set.remove(id)) {
            values.remove(value);
            if values.is_empty() {
                self.0.remove(key);
            }
        }
    }

    /// Takes `ids` out of every set.
    pub(crate) fn forget(&mut self, ids: &Bitmap) {
        self.0.retain(|_, values| {
            values.retain(|_, set| set.subtract(ids));
            !values.is_empty()
        });
    }

    /// Heap bytes held: the strings, the map slots and the shared values' bitmaps.
    pub(crate) fn memory(&self) -> usize {
        self.0
            .iter()
            .map(|(key, values)| {
                key.capacity()
                    + values.capacity() * (size_of::<MetaKey>() + size_of::<Ids>() + 1)
                    + values
                        .iter()
                        .map(|(value, ids)| {
                            let text = match value {
                                MetaKey::Str(s) => s.capacity(),
                                MetaKey::Bool(_) => 0,
                            };
                            text + ids.memory()
                        })
                        .sum::<usize>()
            })
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn value(s: &str) -> MetaKey {
        MetaKey::Str(s.into())
    }

    fn ids(index: &MetaIndex, key: &str, v: &str) -> Vec<u32> {
        index
            .get(key, &value(v))
            .map_or_else(Vec::new, |set| set.bitmap().to_vec())
    }

    #[test]
    fn sets_stay_canonical_through_adds_and_removals() {
        let mut index = MetaIndex::default();
        index.add_many("file", &value("a.jpg"), &[7]);
        index.add_many("file", &value("a.jpg"), &[7]);
        assert_eq!(index.get("file", &value("a.jpg")), Some(&Ids::One(7)));
        index.add_many("file", &value("a.jpg"), &[3, 9]);
        assert_eq!(ids(&index, "file", "a.jpg"), [3, 7, 9]);
        index.remove("file", &value("a.jpg"), 3);
        index.remove("file", &value("a.jpg"), 4);
        assert_eq!(ids(&index, "file", "a.jpg"), [7, 9]);
        index.remove("file", &value("a.jpg"), 9);
        assert_eq!(index.get("file", &value("a.jpg")), Some(&Ids::One(7)), "back to one");
        index.remove("file", &value("a.jpg"), 8);
        assert_eq!(
            index.get("file", &value("a.jpg")),
            Some(&Ids::One(7)),
            "8 was not there"
        );
        index.remove("file", &value("a.jpg"), 7);
        assert_eq!(index, MetaIndex::default(), "no empty value or key is kept");

        // The same sets built in another order compare equal.
        let mut a = MetaIndex::default();
        a.add_many("k", &value("x"), &[1, 2]);
        a.add_many("k", &value("y"), &[5]);
        a.forget(&Bitmap::of(&[2]));
        let b = MetaIndex::from_sets(vec![
            ("k".into(), value("y"), Ids::of(Bitmap::of(&[5]))),
            ("k".into(), value("x"), Ids::of(Bitmap::of(&[1]))),
            ("k".into(), value("z"), Ids::of(Bitmap::new())),
            ("empty".into(), value("z"), None),
        ]);
        assert_eq!(a, b);
        assert_eq!(a.iter().count(), 2);
    }

    #[test]
    fn stored_sets_read_back_alike_whether_or_not_the_one_id_shortcut_applies() {
        let ids = [0, 1, 65_535, 65_536, 70_000, 1 << 31, u32::MAX - 1, u32::MAX];
        for &id in &ids {
            let bytes = crate::index::to_bytes(&Bitmap::of(&[id]));
            assert_eq!(single_id(&bytes), Some(id), "{id}: the form CRoaring writes");
            assert_eq!(Ids::from_bytes(&bytes), Some(Some(Ids::One(id))));
        }
        let mut runs = Bitmap::of(&[9]);
        runs.run_optimize();
        for bm in [Bitmap::new(), Bitmap::of(&[3, 4]), Bitmap::of(&[1, 1 << 20]), runs] {
            let bytes = crate::index::to_bytes(&bm);
            let expect = Some(Ids::of(bm.clone()));
            assert_eq!(Ids::from_bytes(&bytes), expect, "{bm:?}");
            if bm.cardinality() != 1 {
                assert_eq!(single_id(&bytes), None, "{bm:?}");
            }
        }
        // Damage is never a shortcut to a wrong id: it reads as CRoaring reads it.
        let good = crate::index::to_bytes(&Bitmap::of(&[77]));
        for at in 0..good.len() {
            let mut bad = good.clone();
            bad[at] ^= 0x10;
            let got = Ids::from_bytes(&bad);
            let via_croaring = crate::index::from_bytes(&bad).map(Ids::of);
            if single_id(&bad).is_none() {
                assert_eq!(got, via_croaring, "byte {at}");
            } else {
                // Only the value bytes (key and low half) can change and still fit the form.
                assert!(at == 8 || at == 9 || at == 16 || at == 17, "byte {at}");
                assert_eq!(got, via_croaring, "byte {at}");
            }
        }
        assert_eq!(Ids::from_bytes(b"not a bitmap"), None);
    }

    #[test]
    fn a_value_per_asset_costs_far_less_than_a_bitmap_per_asset() {
        let mut index = MetaIndex::default();
        for id in 0..10_000u32 {
            index.add_many("url", &value(&format!("https://example.com/{id}")), &[id]);
        }
        let per_value = index.memory() / 10_000;
        let bitmap = size_of::<Bitmap>() + allocated(&Bitmap::of(&[1]));
        assert!(per_value < bitmap, "{per_value} bytes a value, a bitmap alone {bitmap}");
    }
}
