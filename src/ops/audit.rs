//! The event log read back: the change feed and the audit trail by asset and by actor.

use crate::engine::Db;
use crate::model::asset::AssetId;
use crate::model::error::{Error, Result};
use crate::model::event::{Action, Event, Seq};
use crate::model::project::ProjectId;
use crate::store::keys;

impl Db {
    /// Every event after `seq`, in order: the change feed.
    pub fn changes_since(&self, seq: Seq) -> impl Iterator<Item = Result<Event>> + '_ {
        self.store()
            .range::<Event>(&keys::event(seq.saturating_add(1)), &[keys::tag::EVENT + 1])
            .map(|kv| kv.map(|(_, e)| e))
    }

    /// The event with this seq.
    pub fn event(&self, seq: Seq) -> Result<Option<Event>> {
        self.store().get(&keys::event(seq))
    }

    /// Every event about an asset, oldest first, starting with the one that created it.
    pub fn audit_asset(&self, id: AssetId) -> Result<Vec<Event>> {
        let asset = self.asset(id)?;
        let mut seqs = vec![asset.created_seq];
        for k in self.store().scan_keys(&keys::asset_events(id)) {
            let k = k?;
            seqs.extend(keys::u64_suffix(&k));
        }
        seqs.into_iter().map(|s| self.logged_event(s)).collect()
    }

    /// Every event by an actor with seq > `since`, oldest first, read as the caller
    /// iterates.
    pub fn audit_actor(&self, actor: &str, since: Seq) -> impl Iterator<Item = Result<Event>> + '_ {
        self.store()
            .scan_keys(&keys::actor_events(actor))
            .filter_map(move |k| match k {
                Ok(k) => keys::u64_suffix(&k).filter(|s| *s > since).map(Ok),
                Err(e) => Some(Err(e)),
            })
            .map(|seq| self.logged_event(seq?))
    }

    /// The events of a project with seq > `since`, oldest first, by one actor or by all:
    /// the audit trail of `labeldb audit`. A purged asset's events, whose project is no
    /// longer known, are left out.
    pub fn audit_project(&self, project: &str, actor: Option<&str>, since: Seq) -> Result<Vec<Event>> {
        let p = self.project(project)?;
        let events: Vec<Event> = match actor {
            Some(a) => self.audit_actor(a, since).collect::<Result<_>>()?,
            None => self.changes_since(since).collect::<Result<_>>()?,
        };
        let mut mine = Vec::with_capacity(events.len());
        for e in events {
            if self.event_project(&e)? == Some(p.id) {
                mine.push(e);
            }
        }
        Ok(mine)
    }

    /// The project an event belongs to.
    pub fn event_project(&self, e: &Event) -> Result<Option<ProjectId>> {
        Ok(match &e.action {
            Action::ProjectCreated { project, .. }
            | Action::AssetsAdded { project, .. }
            | Action::AssetPurged { project, .. }
            | Action::SnapshotCreated { project, .. }
            | Action::SnapshotDeleted { project, .. }
            | Action::SnapshotTagged { project, .. }
            | Action::ModelRegistered { project, .. }
            | Action::MemberSet { project, .. }
            | Action::MemberRemoved { project, .. }
            | Action::SettingChanged { project, .. } => Some(*project),
            Action::AccessDenied { project, .. } => *project,
            other => match other.asset().map(|a| self.asset(a)) {
                Some(Ok(a)) => Some(a.project),
                // A purged asset's events stay in the log; its project is no longer known.
                Some(Err(Error::UnknownAsset(_))) | None => None,
                Some(Err(e)) => return Err(e),
            },
        })
    }

    /// The event an index entry points to; a missing one is corruption.
    fn logged_event(&self, seq: Seq) -> Result<Event> {
        self.event(seq)?.ok_or_else(|| Error::Corruption {
            key: keys::describe(&keys::event(seq)),
            reason: "an index entry points to a missing event".into(),
        })
    }
}
