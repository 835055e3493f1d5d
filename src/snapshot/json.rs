//! JSON views of snapshots and their diffs (the CLI's `--json` output).

use serde_json::{json, Value};

use super::{Diff, SnapshotInfo};

/// A snapshot's description: name, assets, digest, filter, selection, watermark, who/when.
pub fn snapshot_json(info: &SnapshotInfo, tags: &[String]) -> Value {
    json!({
        "name": info.name,
        "assets": info.assets,
        "digest": info.digest.to_string(),
        "filter": info.filter,
        "selection": info.selection.to_string(),
        "seq": info.seq,
        "created_by": info.created_by,
        "created_at": info.created_at,
        "schema": info.schema.to_json(),
        "tags": tags,
    })
}

/// What changed from one snapshot to another: added and removed external ids, and the
/// relabelled ones with the revision each snapshot chose.
pub fn diff_json(d: &Diff) -> Value {
    json!({
        "added": d.added,
        "removed": d.removed,
        "relabelled": d.relabelled.iter().map(|r| json!({
            "id": r.external_id, "before": r.before.to_string(), "after": r.after.to_string()
        })).collect::<Vec<_>>(),
    })
}
