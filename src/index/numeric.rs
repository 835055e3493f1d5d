//! A numeric index: bitmaps of assets per value bucket.
//!
//! A bucket is the top 23 bits of the value's order-preserving bit pattern (sign,
//! exponent and 11 mantissa bits: 2048 buckets per power of two). Finer buckets make
//! the boundary check cheaper but cost memory: a bucket of a few assets spread over
//! many containers is mostly container overhead. A range query takes
//! whole buckets inside the range from the bitmaps and returns the one boundary bucket
//! separately, for the caller to check exactly against primary data.

use std::collections::BTreeMap;
use std::ops::Bound;

use croaring::Bitmap;

#[derive(Clone, Debug, Default, PartialEq)]
pub(crate) struct NumIndex {
    pub buckets: BTreeMap<u32, Bitmap>,
}

/// Order-preserving bits of a finite f64 (with -0.0 folded into 0.0).
pub(crate) fn sortable(v: f64) -> u64 {
    let bits = (v + 0.0).to_bits();
    if bits >> 63 == 1 {
        !bits
    } else {
        bits | (1 << 63)
    }
}

/// Bits of [`sortable`] below the bucket number.
pub(crate) const BUCKET_SHIFT: u32 = 41;

pub(crate) fn bucket(v: f64) -> u32 {
    (sortable(v) >> BUCKET_SHIFT) as u32
}

/// Whether `v` is the smallest value of its bucket.
fn starts_bucket(v: f64) -> bool {
    sortable(v) & ((1 << BUCKET_SHIFT) - 1) == 0
}

impl NumIndex {
    pub(crate) fn insert(&mut self, id: u32, v: f64) {
        self.buckets.entry(bucket(v)).or_default().add(id);
    }

    /// Inserts many values; ids of consecutive values in one bucket go in together.
    pub(crate) fn insert_many(&mut self, values: &[(u32, f64)]) {
        let mut ids = Vec::new();
        let mut values = values.iter().peekable();
        while let Some(&(id, v)) = values.next() {
            let b = bucket(v);
            ids.clear();
            ids.push(id);
            while let Some(&(id, _)) = values.next_if(|(_, v)| bucket(*v) == b) {
                ids.push(id);
            }
            self.buckets.entry(b).or_default().add_many(&ids);
        }
    }

    pub(crate) fn remove(&mut self, id: u32, v: f64) {
        let b = bucket(v);
        if let Some(bm) = self.buckets.get_mut(&b) {
            bm.remove(id);
            if bm.is_empty() {
                self.buckets.remove(&b);
            }
        }
    }

    /// Assets whose value surely satisfies `OP value`, and the boundary bucket's assets,
    /// which may or may not.
    pub(crate) fn range(&self, op: CmpOp, value: f64) -> (Bitmap, Bitmap) {
        let b = bucket(value);
        let union = |r: (Bound<u32>, Bound<u32>)| -> Bitmap {
            Bitmap::fast_or(&self.buckets.range(r).map(|(_, bm)| bm).collect::<Vec<_>>())
        };
        let sure = match op {
            CmpOp::Lt | CmpOp::Le => union((Bound::Unbounded, Bound::Excluded(b))),
            CmpOp::Gt | CmpOp::Ge => union((Bound::Excluded(b), Bound::Unbounded)),
            CmpOp::Eq => Bitmap::new(),
        };
        let boundary = match self.buckets.get(&b) {
            // Below the first value of a bucket: nothing in the bucket is below it.
            Some(_) if op == CmpOp::Lt && starts_bucket(value) => Bitmap::new(),
            Some(bm) => bm.clone(),
            None => Bitmap::new(),
        };
        (sure, boundary)
    }

    /// Buckets in ascending (or descending) value order.
    pub(crate) fn ordered(&self, descending: bool) -> Box<dyn Iterator<Item = (u32, &Bitmap)> + '_> {
        let it = self.buckets.iter().map(|(b, bm)| (*b, bm));
        if descending {
            Box::new(it.rev())
        } else {
            Box::new(it)
        }
    }

    pub(crate) fn memory(&self) -> usize {
        self.buckets.values().map(|b| super::allocated(b) + 4).sum()
    }
}

/// A comparison operator.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CmpOp {
    /// `<`
    Lt,
    /// `<=`
    Le,
    /// `>`
    Gt,
    /// `>=`
    Ge,
    /// `=`
    Eq,
}

impl CmpOp {
    /// Whether `lhs OP rhs` holds.
    pub fn holds(self, lhs: f64, rhs: f64) -> bool {
        match self {
            CmpOp::Lt => lhs < rhs,
            CmpOp::Le => lhs <= rhs,
            CmpOp::Gt => lhs > rhs,
            CmpOp::Ge => lhs >= rhs,
            CmpOp::Eq => lhs == rhs,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_preserve_order_across_signs_and_zero() {
        let vals = [-1e9, -2.5, -1.0, -0.0, 0.0, 1e-300, 0.25, 0.5, 0.7, 1.0, 3.0, 1.7e12];
        for w in vals.windows(2) {
            assert!(bucket(w[0]) <= bucket(w[1]), "{} vs {}", w[0], w[1]);
        }
        assert_eq!(bucket(-0.0), bucket(0.0));
    }

    #[test]
    fn range_splits_sure_and_boundary() {
        let mut ix = NumIndex::default();
        for (id, v) in [(1, 0.1), (2, 0.5), (3, 0.50001), (4, 0.9)] {
            ix.insert(id, v);
        }
        let (sure, boundary) = ix.range(CmpOp::Lt, 0.5);
        assert_eq!(sure.iter().collect::<Vec<_>>(), vec![1]);
        assert!(
            boundary.is_empty(),
            "0.5 starts its bucket, so nothing in it is below 0.5"
        );
        let (sure, boundary) = ix.range(CmpOp::Ge, 0.5);
        assert_eq!(sure.iter().collect::<Vec<_>>(), vec![4]);
        assert_eq!(boundary.iter().collect::<Vec<_>>(), vec![2, 3]);
        ix.remove(4, 0.9);
        assert_eq!(ix.buckets.len(), 2);
    }
}
