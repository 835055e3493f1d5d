//! The record read layer: an asset is its ASSET record if it has one, else its entry in
//! a run; its history is its run entry's labels, then its LABEL records. Every reader
//! above the engine goes through these functions.

use crate::model::asset::{Asset, AssetId};
use crate::model::error::Result;
use crate::model::label::{Label, LabelId};
use crate::store::{keys, run, Store};

/// Whether `n` ids from `first` to `last` are dense enough that range scans over the
/// span (reading at most 4 records per wanted one) beat point reads.
pub(crate) fn dense(first: u32, last: u32, n: usize) -> bool {
    u64::from(last - first) < 4 * n as u64
}

/// The key ranges `[start, end)` of the runs, the asset records and the label records
/// that hold the assets `first..=last`.
pub(crate) fn id_range(first: u32, last: u32) -> [(Vec<u8>, Vec<u8>); 3] {
    let end = |k: Vec<u8>| if last == u32::MAX { vec![k[0] + 1] } else { k };
    let next = AssetId(last.wrapping_add(1));
    [
        (keys::run(AssetId(first & !(run::BLOCK - 1))), end(keys::run(next))),
        (keys::asset(AssetId(first)), end(keys::asset(next))),
        (keys::labels_of(AssetId(first)), end(keys::labels_of(next))),
    ]
}

/// Every asset with its labels, in id order: one merged pass over the runs, the ASSET
/// records and the LABEL records (all ordered by asset id; see [`run`] for how they
/// combine). Records that fail to decode are left out (`verify` names them), so that a
/// damaged record never stops a rebuild.
pub(crate) fn assets_with_labels(store: &Store) -> impl Iterator<Item = (Asset, Vec<Label>)> + '_ {
    assets_with_labels_in(store, 0, u32::MAX).filter_map(Result::ok)
}

/// The assets `first..=last` with their labels, read as [`assets_with_labels`] reads
/// them, except that a record that fails to read or decode is an `Err` item where the
/// merge meets it (the merge goes on after it; an asset may then lack that label).
pub(crate) fn assets_with_labels_in(
    store: &Store,
    first: u32,
    last: u32,
) -> impl Iterator<Item = Result<(Asset, Vec<Label>)>> + '_ {
    let [runs, assets, labels] = id_range(first, last);
    let mut runs = run::scan_range(store, &runs, first..=last).peekable();
    let mut records = store
        .range::<Asset>(&assets.0, &assets.1)
        .map(|kv| kv.map(|(_, a)| a))
        .peekable();
    let mut labels = store
        .range::<Label>(&labels.0, &labels.1)
        .map(|kv| kv.map(|(_, l)| l))
        .peekable();
    std::iter::from_fn(move || {
        if let Some(Err(e)) = runs.next_if(Result::is_err) {
            return Some(Err(e));
        }
        if let Some(Err(e)) = records.next_if(Result::is_err) {
            return Some(Err(e));
        }
        if let Some(Err(e)) = labels.next_if(Result::is_err) {
            return Some(Err(e));
        }
        let next_run = runs.peek().and_then(|r| r.as_ref().ok()).map(|r| r.0);
        let next_record = records.peek().and_then(|a| a.as_ref().ok()).map(|a| a.id);
        let id = match (next_run, next_record) {
            (Some(r), Some(a)) => r.min(a),
            (r, a) => r.or(a)?,
        };
        let from_run = runs
            .next_if(|r| r.as_ref().is_ok_and(|r| r.0 == id))
            .and_then(Result::ok);
        let record = records
            .next_if(|a| a.as_ref().is_ok_and(|a| a.id == id))
            .and_then(Result::ok);
        let (asset, mut history) = match (record, from_run) {
            (Some(a), run) => (a, run.map(|r| r.2).unwrap_or_default()),
            (None, Some((_, a, h))) => (a, h),
            (None, None) => unreachable!("the id came from one of the two"),
        };
        while let Some(Ok(l)) = labels.next_if(|l| l.as_ref().is_ok_and(|l| l.asset() <= id)) {
            if l.asset() == id {
                history.push(l);
            }
        }
        Some(Ok((asset, history)))
    })
}

/// An asset and its history (as [`load_asset`] and [`read_history`] give them) with one
/// lookup of its run.
pub(crate) fn load_with_history(store: &Store, id: AssetId) -> Result<Option<(Asset, Vec<Label>)>> {
    let (added, mut history) = match run::asset_and_labels(store, id)? {
        Some((asset, labels)) => (Some(asset), labels),
        None => (None, Vec::new()),
    };
    let Some(asset) = store.get(&keys::asset(id))?.or(added) else {
        return Ok(None);
    };
    push_later_labels(store, id, &mut history)?;
    Ok(Some((asset, history)))
}

/// An asset: its ASSET record if it changed since it was added, else its run entry.
pub(crate) fn load_asset(store: &Store, id: AssetId) -> Result<Option<Asset>> {
    match store.get(&keys::asset(id))? {
        Some(a) => Ok(Some(a)),
        None => run::asset(store, id),
    }
}

/// An asset's labels in revision order: those it was added with, then its LABEL records.
pub(crate) fn read_history(store: &Store, asset: AssetId) -> Result<Vec<Label>> {
    let mut history = run::labels(store, asset)?;
    push_later_labels(store, asset, &mut history)?;
    Ok(history)
}

/// Appends an asset's LABEL records (the revisions added after the asset) to `history`.
fn push_later_labels(store: &Store, asset: AssetId, history: &mut Vec<Label>) -> Result<()> {
    for kv in store.scan::<Label>(&keys::labels_of(asset)) {
        history.push(kv?.1);
    }
    Ok(())
}

/// One label: its LABEL record, or its entry in its asset's run.
pub(crate) fn load_label(store: &Store, id: LabelId) -> Result<Option<Label>> {
    match store.get(&keys::label(id))? {
        Some(l) => Ok(Some(l)),
        None => Ok(run::labels(store, id.asset())?.into_iter().nth(id.revision() as usize)),
    }
}
