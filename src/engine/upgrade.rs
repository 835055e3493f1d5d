//! The format upgrade: brings a database written by an older labeldb to
//! [`FORMAT_VERSION`] when it is opened.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::read::assets_with_labels;
use crate::index::columns;
use crate::model::error::Result;
use crate::model::project::{Member, Project, ProjectId, Schema, Settings};
use crate::store::{codec, keys, run, Batch, Store, FORMAT_VERSION};

/// Brings a database of an older format to [`FORMAT_VERSION`], writing the new format
/// version in the last batch (an interrupted upgrade runs again on the next open).
/// - Format 1 had no selection columns and format 2's FACTS had no project: their columns
///   are derived again, and their EXTERNAL records removed (format 3 keeps external ids in
///   memory); their asset and label records stay, read as they are.
/// - Format 3's runs listed their entries; format 4's have an offset table: the runs are
///   rewritten.
/// - Formats up to 4 stored project settings as bincode fields; format 5 stores them as
///   JSON, so that a new setting reads as its default: the project records are rewritten
///   in the batch that writes the format version.
pub(super) fn upgrade(store: &Store, from: u32) -> Result<()> {
    let projects = legacy_projects(store)?;
    let last_batch = |b: &mut Batch| {
        for p in &projects {
            b.put(keys::project(p.id), p);
        }
        b.put(keys::meta(keys::meta::FORMAT), &FORMAT_VERSION);
    };
    if from >= 3 {
        if from == 3 {
            run::upgrade(store, 256)?;
        }
        let mut b = Batch::default();
        last_batch(&mut b);
        store.apply(b)?;
        return store.flush();
    }
    let mut external = Vec::new();
    for k in store.scan_keys(&[keys::tag::EXTERNAL]) {
        external.push(k?);
    }
    columns::rebuild(store, assets_with_labels(store), |b| {
        for k in external {
            b.remove(k);
        }
        last_batch(b);
    })?;
    store.flush()
}

/// A project record as formats 1 to 4 stored it.
#[derive(Serialize, Deserialize)]
struct LegacyProject {
    id: ProjectId,
    name: String,
    schema: Schema,
    members: BTreeMap<String, Member>,
    settings: LegacySettings,
    created_at: u64,
}

/// Settings as formats 1 to 4 stored them.
#[derive(Serialize, Deserialize)]
struct LegacySettings {
    consensus: u32,
    review_coverage: f32,
    honeypot_rate: f32,
    routing: BTreeMap<String, f32>,
}

/// The project records of a database of format 4 or older, in the current shape.
fn legacy_projects(store: &Store) -> Result<Vec<Project>> {
    store
        .scan::<LegacyProject>(&[keys::tag::PROJECT])
        .map(|kv| Ok(current(kv?.1)))
        .collect()
}

/// A project record stored under `key` by format 4 or older, in the current shape
/// (`verify` reads a database that has not been upgraded yet).
pub(crate) fn decode_legacy_project(key: &[u8], bytes: &[u8]) -> Result<Project> {
    Ok(current(codec::decode(key, bytes)?))
}

/// The current shape of a legacy project record.
fn current(p: LegacyProject) -> Project {
    Project {
        id: p.id,
        name: p.name,
        schema: p.schema,
        members: p.members,
        settings: Settings {
            consensus: p.settings.consensus,
            review_coverage: p.settings.review_coverage,
            honeypot_rate: p.settings.honeypot_rate,
            routing: p.settings.routing,
            ..Settings::default()
        },
        created_at: p.created_at,
    }
}

#[cfg(feature = "testing")]
/// Test hook: writes the project records as formats 1 to 4 stored them.
pub(super) fn downgrade_projects(store: &Store, b: &mut Batch) -> Result<()> {
    for kv in store.scan::<Project>(&[keys::tag::PROJECT]) {
        let (_, p) = kv?;
        let legacy = LegacyProject {
            id: p.id,
            name: p.name,
            schema: p.schema,
            members: p.members,
            settings: LegacySettings {
                consensus: p.settings.consensus,
                review_coverage: p.settings.review_coverage,
                honeypot_rate: p.settings.honeypot_rate,
                routing: p.settings.routing,
            },
            created_at: p.created_at,
        };
        b.put(keys::project(legacy.id), &legacy);
    }
    Ok(())
}
