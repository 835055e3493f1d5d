//! Key layout: one tag byte, then big-endian, order-preserving fields.
//!
//! Everything lives in one sled tree so that a logical write is one atomic
//! `apply_batch`. docs/format.md describes each key.

use crate::model::asset::AssetId;
use crate::model::event::Seq;
use crate::model::label::{LabelId, Source};
use crate::model::project::ProjectId;
use crate::model::selection::Selection;

/// Key tags. Never reuse or renumber one: they are on disk.
pub(crate) mod tag {
    pub const META: u8 = 0x00;
    pub const PROJECT: u8 = 0x01;
    pub const PROJECT_NAME: u8 = 0x02;
    pub const ASSET: u8 = 0x03;
    pub const EXTERNAL: u8 = 0x04;
    pub const LABEL: u8 = 0x05;
    pub const EVENT: u8 = 0x06;
    pub const ASSET_EVENT: u8 = 0x07;
    pub const ACTOR_EVENT: u8 = 0x08;
    pub const SOURCE_LABEL: u8 = 0x09;
    pub const INDEX_HEAD: u8 = 0x0A;
    pub const INDEX_CHUNK: u8 = 0x0B;
    pub const SNAPSHOT: u8 = 0x0C;
    pub const SNAPSHOT_CHUNK: u8 = 0x0D;
    pub const SNAPSHOT_MEMBERS: u8 = 0x0E;
    pub const SNAPSHOT_TAG: u8 = 0x0F;
    pub const MODEL: u8 = 0x10;
    pub const FACTS: u8 = 0x11;
    pub const CHOICES: u8 = 0x12;
    pub const RUN: u8 = 0x13;
    pub const CHOICE_DELTA: u8 = 0x14;
}

/// Names of the META records.
pub(crate) mod meta {
    pub const FORMAT: &str = "format";
    pub const COUNTERS: &str = "counters";
}

pub(crate) fn meta(name: &str) -> Vec<u8> {
    let mut k = vec![tag::META];
    k.extend_from_slice(name.as_bytes());
    k
}

pub(crate) fn project(id: ProjectId) -> Vec<u8> {
    with_tag(tag::PROJECT, &id.0.to_be_bytes())
}

pub(crate) fn project_name(name: &str) -> Vec<u8> {
    with_tag(tag::PROJECT_NAME, name.as_bytes())
}

pub(crate) fn asset(id: AssetId) -> Vec<u8> {
    with_tag(tag::ASSET, &id.0.to_be_bytes())
}

#[cfg(feature = "testing")]
/// An external id's record up to format 2 (format 3 keeps the map in memory, see
/// `crate::index::external`); only the upgrade removes them, and a test hook writes them.
pub(crate) fn external(project: ProjectId, external_id: &str) -> Vec<u8> {
    let mut k = with_tag(tag::EXTERNAL, &project.0.to_be_bytes());
    k.extend_from_slice(external_id.as_bytes());
    k
}

pub(crate) fn label(id: LabelId) -> Vec<u8> {
    with_tag(tag::LABEL, &id.0.to_be_bytes())
}

/// The asset id in an ASSET or LABEL key.
pub(crate) fn asset_of(key: &[u8]) -> Option<AssetId> {
    let id: [u8; 4] = key.get(1..5)?.try_into().ok()?;
    Some(AssetId(u32::from_be_bytes(id)))
}

/// Prefix of every label of an asset, in revision order.
pub(crate) fn labels_of(asset: AssetId) -> Vec<u8> {
    with_tag(tag::LABEL, &asset.0.to_be_bytes())
}

pub(crate) fn event(seq: Seq) -> Vec<u8> {
    with_tag(tag::EVENT, &seq.to_be_bytes())
}

pub(crate) fn asset_events(asset: AssetId) -> Vec<u8> {
    with_tag(tag::ASSET_EVENT, &asset.0.to_be_bytes())
}

pub(crate) fn asset_event(asset: AssetId, seq: Seq) -> Vec<u8> {
    let mut k = asset_events(asset);
    k.extend_from_slice(&seq.to_be_bytes());
    k
}

/// Length-prefixed so that one actor's prefix is never another's.
pub(crate) fn actor_events(actor: &str) -> Vec<u8> {
    let mut k = vec![tag::ACTOR_EVENT];
    push_str(&mut k, actor);
    k
}

pub(crate) fn actor_event(actor: &str, seq: Seq) -> Vec<u8> {
    let mut k = actor_events(actor);
    k.extend_from_slice(&seq.to_be_bytes());
    k
}

/// Prefix of the labels of a model or rule: its name, and its version when given.
/// Human sources are not indexed here (the author bitmaps serve them).
pub(crate) fn source_labels(source: &Source) -> Option<Vec<u8>> {
    let mut k = vec![tag::SOURCE_LABEL];
    match source {
        Source::Human { .. } => return None,
        Source::Model { name, version } => {
            k.push(b'm');
            push_str(&mut k, name);
            push_str(&mut k, version);
        }
        Source::Rule { name, version } => {
            k.push(b'r');
            push_str(&mut k, name);
            push_str(&mut k, version);
        }
    }
    Some(k)
}

pub(crate) fn source_label(source: &Source, label: LabelId) -> Option<Vec<u8>> {
    source_labels(source).map(|mut k| {
        k.extend_from_slice(&label.0.to_be_bytes());
        k
    })
}

pub(crate) fn index_head() -> Vec<u8> {
    vec![tag::INDEX_HEAD]
}

pub(crate) fn index_chunk(n: u32) -> Vec<u8> {
    with_tag(tag::INDEX_CHUNK, &n.to_be_bytes())
}

pub(crate) fn snapshots(project: ProjectId) -> Vec<u8> {
    with_tag(tag::SNAPSHOT, &project.0.to_be_bytes())
}

pub(crate) fn snapshot(project: ProjectId, name: &str) -> Vec<u8> {
    let mut k = snapshots(project);
    k.extend_from_slice(name.as_bytes());
    k
}

pub(crate) fn snapshot_chunk(snapshot: u32, n: u32) -> Vec<u8> {
    let mut k = with_tag(tag::SNAPSHOT_CHUNK, &snapshot.to_be_bytes());
    k.extend_from_slice(&n.to_be_bytes());
    k
}

pub(crate) fn snapshot_members(snapshot: u32) -> Vec<u8> {
    with_tag(tag::SNAPSHOT_MEMBERS, &snapshot.to_be_bytes())
}

pub(crate) fn snapshot_tags(project: ProjectId) -> Vec<u8> {
    with_tag(tag::SNAPSHOT_TAG, &project.0.to_be_bytes())
}

pub(crate) fn snapshot_tag(project: ProjectId, tag: &str) -> Vec<u8> {
    let mut k = snapshot_tags(project);
    k.extend_from_slice(tag.as_bytes());
    k
}

pub(crate) fn models(project: ProjectId) -> Vec<u8> {
    with_tag(tag::MODEL, &project.0.to_be_bytes())
}

pub(crate) fn model(project: ProjectId, name: &str, version: &str) -> Vec<u8> {
    let mut k = models(project);
    push_str(&mut k, name);
    push_str(&mut k, version);
    k
}

/// The run of assets starting at `first` (see `crate::store::run`).
pub(crate) fn run(first: AssetId) -> Vec<u8> {
    with_tag(tag::RUN, &first.0.to_be_bytes())
}

/// The FACTS block of assets `block << BLOCK_SHIFT ..` (see `snapshot::column`).
pub(crate) fn facts(block: u32) -> Vec<u8> {
    with_tag(tag::FACTS, &block.to_be_bytes())
}

/// Prefix of the CHOICES blocks of one selection: a code byte, then for a model its
/// length-prefixed name and version.
pub(crate) fn choices_of(selection: &Selection) -> Vec<u8> {
    let mut k = vec![tag::CHOICES];
    match selection {
        Selection::LatestHuman => k.push(b'h'),
        Selection::LatestReviewed => k.push(b'r'),
        Selection::Majority => k.push(b'j'),
        Selection::Model { name, version } => {
            k.push(b'm');
            push_str(&mut k, name);
            push_str(&mut k, version);
        }
    }
    k
}

/// The CHOICES block of a selection for assets `block << BLOCK_SHIFT ..`.
pub(crate) fn choices(selection: &Selection, block: u32) -> Vec<u8> {
    let mut k = choices_of(selection);
    k.extend_from_slice(&block.to_be_bytes());
    k
}

/// The selection and block number of a CHOICES key.
pub(crate) fn parse_choices(key: &[u8]) -> Option<(Selection, u32)> {
    let (&t, rest) = key.split_first()?;
    if t != tag::CHOICES || rest.len() < 5 {
        return None;
    }
    let (code, rest) = rest.split_first()?;
    let (middle, block) = rest.split_at(rest.len() - 4);
    let selection = match (code, middle) {
        (b'h', []) => Selection::LatestHuman,
        (b'r', []) => Selection::LatestReviewed,
        (b'j', []) => Selection::Majority,
        (b'm', _) => {
            let (name, rest) = take_str(middle)?;
            let (version, rest) = take_str(rest)?;
            if !rest.is_empty() {
                return None;
            }
            Selection::Model { name, version }
        }
        _ => return None,
    };
    Some((selection, u32_at(block, 0)?))
}

/// A pending change of one asset's entry in a CHOICES block: the block's key under the
/// CHOICE_DELTA tag, then the asset's slot. The deltas of a block sort together, and
/// those of a selection's blocks in block order, as the blocks do.
pub(crate) fn choice_delta(block_key: &[u8], slot: u8) -> Vec<u8> {
    let mut k = choice_deltas(block_key);
    k.push(slot);
    k
}

/// The prefix of every delta of a CHOICES block (see [`choice_delta`]); with a CHOICES
/// range's bounds, the bounds of its deltas.
pub(crate) fn choice_deltas(block_key: &[u8]) -> Vec<u8> {
    let mut k = block_key.to_vec();
    if let Some(t) = k.first_mut() {
        *t = tag::CHOICE_DELTA;
    }
    k
}

/// The CHOICES block key and the slot of a delta key.
pub(crate) fn parse_choice_delta(key: &[u8]) -> Option<(Vec<u8>, u8)> {
    let (&slot, block) = key.split_last()?;
    let mut block_key = block.to_vec();
    *block_key.first_mut()? = tag::CHOICES;
    parse_choices(&block_key)?;
    Some((block_key, slot))
}

/// The inverse of `push_str`: a length-prefixed UTF-8 string and the bytes after it.
fn take_str(b: &[u8]) -> Option<(String, &[u8])> {
    let len = usize::from(u16::from_be_bytes([*b.first()?, *b.get(1)?]));
    let s = b.get(2..2 + len)?;
    Some((String::from_utf8(s.to_vec()).ok()?, &b[2 + len..]))
}

fn with_tag(tag: u8, rest: &[u8]) -> Vec<u8> {
    let mut k = Vec::with_capacity(1 + rest.len());
    k.push(tag);
    k.extend_from_slice(rest);
    k
}

fn push_str(k: &mut Vec<u8>, s: &str) {
    // Names are at most MAX_NAME_LEN bytes, far below u16::MAX.
    k.extend_from_slice(&(s.len().min(u16::MAX as usize) as u16).to_be_bytes());
    k.extend_from_slice(s.as_bytes());
}

/// Reads a big-endian u32 at `at`, if the key is long enough.
pub(crate) fn u32_at(key: &[u8], at: usize) -> Option<u32> {
    key.get(at..at + 4)
        .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
}

/// Reads a big-endian u64 at `at`, if the key is long enough.
pub(crate) fn u64_at(key: &[u8], at: usize) -> Option<u64> {
    key.get(at..at + 8).map(|b| {
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        u64::from_be_bytes(a)
    })
}

/// The last 8 bytes as a big-endian u64 (seq or label id suffixes).
pub(crate) fn u64_suffix(key: &[u8]) -> Option<u64> {
    key.len().checked_sub(8).and_then(|at| u64_at(key, at))
}

/// A readable name for a key, for error messages (`asset/42`, `label/42/3`).
pub(crate) fn describe(key: &[u8]) -> String {
    let Some((&t, rest)) = key.split_first() else {
        return "<empty key>".into();
    };
    let id32 = || u32_at(key, 1).map_or_else(|| hex(rest), |v| v.to_string());
    match t {
        tag::META => format!("meta/{}", String::from_utf8_lossy(rest)),
        tag::PROJECT => format!("project/{}", id32()),
        tag::PROJECT_NAME => format!("project-name/{}", String::from_utf8_lossy(rest)),
        tag::ASSET => format!("asset/{}", id32()),
        tag::EXTERNAL => format!(
            "external/{}/{}",
            id32(),
            String::from_utf8_lossy(rest.get(4..).unwrap_or(&[]))
        ),
        tag::LABEL => match u64_at(key, 1) {
            Some(v) => format!("label/{}", LabelId(v)),
            None => format!("label/{}", hex(rest)),
        },
        tag::EVENT => format!("event/{}", u64_at(key, 1).map_or_else(|| hex(rest), |v| v.to_string())),
        tag::ASSET_EVENT => format!("asset-event/{}", hex(rest)),
        tag::ACTOR_EVENT => format!("actor-event/{}", hex(rest)),
        tag::SOURCE_LABEL => format!("source-label/{}", hex(rest)),
        tag::INDEX_HEAD => "index-checkpoint".into(),
        tag::INDEX_CHUNK => format!("index-chunk/{}", id32()),
        tag::SNAPSHOT => format!(
            "snapshot/{}/{}",
            id32(),
            String::from_utf8_lossy(rest.get(4..).unwrap_or(&[]))
        ),
        tag::SNAPSHOT_CHUNK => format!(
            "snapshot-chunk/{}/{}",
            id32(),
            u32_at(key, 5).map_or_else(|| hex(rest), |v| v.to_string())
        ),
        tag::SNAPSHOT_MEMBERS => format!("snapshot-members/{}", id32()),
        tag::SNAPSHOT_TAG => format!(
            "snapshot-tag/{}/{}",
            id32(),
            String::from_utf8_lossy(rest.get(4..).unwrap_or(&[]))
        ),
        tag::MODEL => format!("model/{}/{}", id32(), hex(rest.get(4..).unwrap_or(&[]))),
        tag::FACTS => format!("facts/{}", id32()),
        tag::RUN => format!("run/{}", id32()),
        tag::CHOICES => match parse_choices(key) {
            Some((selection, block)) => format!("choices/{selection}/{block}"),
            None => format!("choices/{}", hex(rest)),
        },
        tag::CHOICE_DELTA => match parse_choice_delta(key).and_then(|(b, slot)| Some((parse_choices(&b)?, slot))) {
            Some(((selection, block), slot)) => format!("choice-delta/{selection}/{block}/{slot}"),
            None => format!("choice-delta/{}", hex(rest)),
        },
        other => format!("unknown-tag-{other:02x}/{}", hex(rest)),
    }
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_keys_sort_by_asset_then_revision() {
        let a = label(LabelId::new(AssetId(1), 300));
        let b = label(LabelId::new(AssetId(2), 0));
        let c = label(LabelId::new(AssetId(2), 1));
        assert!(a < b && b < c);
        assert!(b.starts_with(&labels_of(AssetId(2))));
        assert!(!a.starts_with(&labels_of(AssetId(2))));
    }

    #[test]
    fn one_actor_prefix_never_covers_another() {
        assert!(!actor_event("alice2", 1).starts_with(&actor_events("alice")));
        assert!(actor_event("alice", 1).starts_with(&actor_events("alice")));
    }

    #[test]
    fn describe_names_keys_readably() {
        assert_eq!(describe(&asset(AssetId(42))), "asset/42");
        assert_eq!(describe(&label(LabelId::new(AssetId(42), 3))), "label/42/3");
        assert_eq!(describe(&event(17)), "event/17");
        assert_eq!(describe(&[]), "<empty key>");
        assert_eq!(describe(&facts(7)), "facts/7");
        assert_eq!(describe(&run(AssetId(64))), "run/64");
        let model = Selection::Model {
            name: "clf".into(),
            version: "2".into(),
        };
        assert_eq!(describe(&choices(&model, 3)), "choices/model:clf@2/3");
        assert_eq!(describe(&choices(&Selection::Majority, 0)), "choices/majority/0");
        let delta = choice_delta(&choices(&model, 3), 7);
        assert_eq!(describe(&delta), "choice-delta/model:clf@2/3/7");
        assert_eq!(parse_choice_delta(&delta), Some((choices(&model, 3), 7)));
        assert!(delta.starts_with(&choice_deltas(&choices(&model, 3))));
        assert_eq!(parse_choice_delta(&[tag::CHOICE_DELTA, b'h', 0, 0]), None);
    }

    #[test]
    fn choices_keys_parse_back_and_one_model_never_covers_another() {
        let selections = [
            Selection::LatestHuman,
            Selection::LatestReviewed,
            Selection::Majority,
            Selection::Model {
                name: "m".into(),
                version: "1".into(),
            },
        ];
        for s in &selections {
            for block in [0, 1, u32::MAX] {
                assert_eq!(parse_choices(&choices(s, block)), Some((s.clone(), block)));
            }
        }
        let m1 = Selection::Model {
            name: "m".into(),
            version: "1".into(),
        };
        let m10 = Selection::Model {
            name: "m".into(),
            version: "10".into(),
        };
        assert!(!choices(&m10, 0).starts_with(&choices_of(&m1)));
        assert_eq!(parse_choices(&[tag::CHOICES, b'x', 0, 0, 0, 0]), None);
        assert_eq!(parse_choices(&[tag::CHOICES, b'm', 0, 9, 0, 0, 0, 0]), None);
    }
}
