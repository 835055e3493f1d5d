//! The command line's grammar: every command, its arguments and their defaults.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

#[derive(Parser)]
#[command(name = "labeldb", version, about = "An embedded data-labelling database")]
pub(crate) struct Cli {
    /// The database directory.
    #[arg(long, global = true, default_value = "./labeldb.db")]
    pub(crate) db: PathBuf,
    /// sled's page cache in MiB. A large import's memory grows to about twice this
    /// (1M assets: ~1 GB at 256, ~0.5 GB at 32, in the same time).
    #[arg(long, global = true, default_value_t = 256, value_parser = clap::value_parser!(u64).range(1..=1 << 20))]
    pub(crate) cache_mib: u64,
    /// Act as this user: every call is authorized by their role and data scope in the
    /// project (docs/access.md). Without it the CLI is the application, with every right.
    /// (Its id differs from the field name: `member add` has a positional USER.)
    #[arg(
        long = "user",
        id = "acting_user",
        value_name = "NAME",
        global = true,
        env = "LABELDB_USER"
    )]
    pub(crate) acting_user: Option<String>,
    #[command(subcommand)]
    pub(crate) command: Command,
}

#[derive(Subcommand)]
pub(crate) enum Command {
    /// Create an empty database.
    Init,
    /// Manage projects.
    Project {
        #[command(subcommand)]
        command: ProjectCommand,
    },
    /// Import assets and labels from a JSONL or CoNLL file.
    Import(ImportArgs),
    /// Counts by status, label kind, source and class.
    Stats(StatsArgs),
    /// One asset: content, state, label history and lineage.
    Show(ShowArgs),
    /// The event log of a project.
    Audit(AuditArgs),
    /// Check every record and invariant; exit 0 only when all hold (1 when not).
    Verify(VerifyArgs),
    /// Rewrite the database without the space overwritten values still hold on disk
    /// (the database must not be open elsewhere).
    Compact(CompactArgs),
    /// Full-text search over text assets, best matches first (BM25), with snippets.
    Search(SearchArgs),
    /// Query a project's assets with the query language (docs/query.md).
    Query(QueryArgs),
    /// Snapshot dataset versions: create, list, show, diff, tag, delete, verify, export.
    Snapshot {
        #[command(subcommand)]
        command: SnapshotCommand,
    },
    /// Register model versions with the snapshot they were trained on.
    Model {
        #[command(subcommand)]
        command: ModelCommand,
    },
    /// Manage a project's members: their roles and data scopes.
    Member {
        #[command(subcommand)]
        command: MemberCommand,
    },
    /// Run the whole labelling loop on generated customer-order emails.
    Demo(DemoArgs),
}

#[derive(Subcommand)]
pub(crate) enum MemberCommand {
    /// Make USER a member with a role (and a scope), or change their role or scope.
    Add(MemberAddArgs),
    /// List the members with their roles and scopes.
    List(MemberListArgs),
    /// Remove a member (not the last admin).
    Remove(MemberRemoveArgs),
}

#[derive(Args)]
pub(crate) struct MemberAddArgs {
    /// The project.
    pub(crate) project: String,
    /// The user, as the application names them.
    pub(crate) user: String,
    /// admin, team-manager, reviewer, labeler or read-only.
    #[arg(long)]
    pub(crate) role: String,
    /// Only the assets matching this query (query language), e.g. 'meta.country:fr'.
    #[arg(long)]
    pub(crate) scope: Option<String>,
    /// Who makes the change (recorded in the event log).
    #[arg(long, default_value = "admin")]
    pub(crate) actor: String,
}

#[derive(Args)]
pub(crate) struct MemberListArgs {
    /// The project.
    pub(crate) project: String,
    /// Print JSON: [{"user", "role", "scope"}].
    #[arg(long)]
    pub(crate) json: bool,
}

#[derive(Args)]
pub(crate) struct MemberRemoveArgs {
    /// The project.
    pub(crate) project: String,
    /// The user.
    pub(crate) user: String,
    /// Who makes the change (recorded in the event log).
    #[arg(long, default_value = "admin")]
    pub(crate) actor: String,
}

#[derive(Subcommand)]
pub(crate) enum ProjectCommand {
    /// Create a project from a schema file.
    Create(ProjectCreateArgs),
    /// List projects.
    List(ProjectListArgs),
}

#[derive(Subcommand)]
pub(crate) enum SnapshotCommand {
    /// Freeze the assets matching a filter with the labels a selection policy chooses.
    Create(SnapshotCreateArgs),
    /// List a project's snapshots.
    List(SnapshotListArgs),
    /// Describe a snapshot (by name or tag).
    Show(SnapshotShowArgs),
    /// Assets added, removed and relabelled from snapshot A to snapshot B.
    Diff(SnapshotDiffArgs),
    /// Point a tag at a snapshot (moving it if it exists).
    Tag(SnapshotTagArgs),
    /// Delete a snapshot and its tags.
    Delete(SnapshotDeleteArgs),
    /// Recompute a snapshot's digest from the data and compare; exit 1 on a difference.
    Verify(SnapshotVerifyArgs),
    /// Write a snapshot (or a shard or split of it) as native JSONL.
    Export(SnapshotExportArgs),
}

#[derive(Subcommand)]
pub(crate) enum ModelCommand {
    /// Register NAME@VERSION as trained on a snapshot.
    Register(ModelRegisterArgs),
}

#[derive(Clone, Copy, ValueEnum)]
pub(crate) enum SortArg {
    Id,
    Priority,
    Score,
}

#[derive(Clone, Copy, ValueEnum)]
pub(crate) enum FormatArg {
    Jsonl,
    Conll,
}

/// What an import adds.
#[derive(Clone, Copy, Default, PartialEq, Eq, ValueEnum)]
pub(crate) enum ImportMode {
    /// New assets, with their labels (JSONL or CoNLL).
    #[default]
    Assets,
    /// Labels for assets that exist: JSONL lines {"id": EXTERNAL_ID, "labels": [...]}.
    AddLabels,
}

/// Import assets and labels from a JSONL or CoNLL file.
#[derive(Args)]
pub(crate) struct ImportArgs {
    /// The project.
    pub(crate) project: String,
    /// The file.
    pub(crate) file: PathBuf,
    /// The format (default: from the file extension, .jsonl → jsonl, else conll).
    #[arg(long, value_enum)]
    pub(crate) format: Option<FormatArg>,
    /// CoNLL: the spans job the tags answer.
    #[arg(long)]
    pub(crate) job: Option<String>,
    /// CoNLL: the author of the imported annotations.
    #[arg(long, default_value = "gold")]
    pub(crate) author: String,
    /// Skip and count bad records instead of stopping at the first.
    #[arg(long)]
    pub(crate) skip_invalid: bool,
    /// Who is importing (recorded in the event log).
    #[arg(long, default_value = "import")]
    pub(crate) actor: String,
    /// `assets` (default) adds new assets; `add-labels` adds labels to existing assets,
    /// skipping a label equal to the latest of its source (a re-run writes nothing).
    #[arg(long, value_enum, default_value_t)]
    pub(crate) mode: ImportMode,
    /// Print the counts as JSON (add-labels: {"lines", "labels", "unchanged", "skipped",
    /// "seconds"}; assets: {"records", "imported", "duplicates", "labels", "invalid",
    /// "seconds"}).
    #[arg(long)]
    pub(crate) json: bool,
}

/// Counts by status, label kind, source and class.
#[derive(Args)]
pub(crate) struct StatsArgs {
    /// The project.
    pub(crate) project: String,
    /// Print JSON.
    #[arg(long)]
    pub(crate) json: bool,
}

/// One asset: content, state, label history and lineage.
#[derive(Args)]
pub(crate) struct ShowArgs {
    /// The project.
    pub(crate) project: String,
    /// The asset's external id.
    pub(crate) external_id: String,
    /// Print JSON.
    #[arg(long)]
    pub(crate) json: bool,
}

/// The event log of a project.
#[derive(Args)]
pub(crate) struct AuditArgs {
    /// The project.
    pub(crate) project: String,
    /// Only events by this actor.
    #[arg(long)]
    pub(crate) actor: Option<String>,
    /// Only events after this seq.
    #[arg(long, default_value_t = 0)]
    pub(crate) since: u64,
    /// Only events of this action (`AccessDenied`, `LabelAdded`, `MemberSet`, ...; case
    /// and dashes ignored: `access-denied`).
    #[arg(long)]
    pub(crate) action: Option<String>,
    /// Only events at or after this time (RFC 3339, e.g. 2026-12-07T09:00:00Z).
    #[arg(long, value_parser = parse_time)]
    pub(crate) from: Option<u64>,
    /// Only events before this time (RFC 3339).
    #[arg(long, value_parser = parse_time)]
    pub(crate) to: Option<u64>,
    /// Print JSON (one array).
    #[arg(long)]
    pub(crate) json: bool,
}

/// Rewrite the database without the space overwritten values still hold on disk.
#[derive(Args)]
pub(crate) struct CompactArgs {
    /// Print JSON: {"before", "after", "seconds"} (bytes on disk).
    #[arg(long)]
    pub(crate) json: bool,
}

/// Check every record and invariant; exit 0 only when all hold (1 when not).
#[derive(Args)]
pub(crate) struct VerifyArgs {
    /// Rebuild the derived indexes from primary data first.
    #[arg(long)]
    pub(crate) repair: bool,
    /// Print JSON.
    #[arg(long)]
    pub(crate) json: bool,
}

/// Full-text search over text assets, best matches first (BM25), with snippets.
#[derive(Args)]
pub(crate) struct SearchArgs {
    /// The project.
    pub(crate) project: String,
    /// Words, "phrases", prefix*, in the query language.
    pub(crate) text: String,
    /// Also require this filter (query language).
    #[arg(long)]
    pub(crate) filter: Option<String>,
    /// How many results.
    #[arg(long, default_value_t = 10)]
    pub(crate) limit: usize,
    /// Print JSON.
    #[arg(long)]
    pub(crate) json: bool,
}

/// Query a project's assets with the query language (docs/query.md).
#[derive(Args)]
pub(crate) struct QueryArgs {
    /// The project.
    pub(crate) project: String,
    /// The query, e.g. 'status:labeled AND label.category:order AND NOT author:bob'.
    pub(crate) query: String,
    /// Print only the number of matching assets.
    #[arg(long)]
    pub(crate) count: bool,
    /// Assets per page.
    #[arg(long, default_value_t = 20)]
    pub(crate) limit: usize,
    /// Continue after this cursor (printed with the previous page).
    #[arg(long)]
    pub(crate) after: Option<String>,
    /// Order of the results (default: relevance for text queries, else id).
    #[arg(long, value_enum)]
    pub(crate) sort: Option<SortArg>,
    /// Also count the results by status, class and author.
    #[arg(long)]
    pub(crate) facets: bool,
    /// Print JSON.
    #[arg(long)]
    pub(crate) json: bool,
}

/// Run the whole labelling loop on generated customer-order emails.
#[derive(Args)]
pub(crate) struct DemoArgs {
    /// Where to put the demo database (default: a new directory under the temp dir).
    #[arg(long)]
    pub(crate) dir: Option<PathBuf>,
    /// How many emails.
    #[arg(long, default_value_t = 10_000)]
    pub(crate) assets: usize,
}

/// Create a project from a schema file.
#[derive(Args)]
pub(crate) struct ProjectCreateArgs {
    /// Its name.
    pub(crate) name: String,
    /// The schema file: {"jobs": [{"name", "kind", "classes"}]}.
    #[arg(long)]
    pub(crate) schema: PathBuf,
    /// Who creates it.
    #[arg(long, default_value = "admin")]
    pub(crate) actor: String,
}

/// List projects.
#[derive(Args)]
pub(crate) struct ProjectListArgs {
    /// Print JSON.
    #[arg(long)]
    pub(crate) json: bool,
}

/// Freeze the assets matching a filter with the labels a selection policy chooses.
#[derive(Args)]
pub(crate) struct SnapshotCreateArgs {
    /// The project.
    pub(crate) project: String,
    /// The snapshot's name.
    pub(crate) name: String,
    /// Which assets (query language; default all live assets).
    #[arg(long, default_value = "*")]
    pub(crate) filter: String,
    /// latest-reviewed, majority, latest-human or model:NAME@VERSION.
    #[arg(long = "select", default_value = "latest-human")]
    pub(crate) selection: String,
    /// Who creates it.
    #[arg(long, default_value = "admin")]
    pub(crate) actor: String,
    /// Print JSON.
    #[arg(long)]
    pub(crate) json: bool,
}

/// List a project's snapshots.
#[derive(Args)]
pub(crate) struct SnapshotListArgs {
    /// The project.
    pub(crate) project: String,
    /// Print JSON.
    #[arg(long)]
    pub(crate) json: bool,
}

/// Describe a snapshot (by name or tag).
#[derive(Args)]
pub(crate) struct SnapshotShowArgs {
    /// The project.
    pub(crate) project: String,
    /// Name or tag.
    pub(crate) name: String,
    /// Print JSON.
    #[arg(long)]
    pub(crate) json: bool,
}

/// Assets added, removed and relabelled from snapshot A to snapshot B.
#[derive(Args)]
pub(crate) struct SnapshotDiffArgs {
    /// The project.
    pub(crate) project: String,
    /// The first snapshot.
    pub(crate) a: String,
    /// The second snapshot.
    pub(crate) b: String,
    /// Print JSON.
    #[arg(long)]
    pub(crate) json: bool,
}

/// Point a tag at a snapshot (moving it if it exists).
#[derive(Args)]
pub(crate) struct SnapshotTagArgs {
    /// The project.
    pub(crate) project: String,
    /// The tag.
    pub(crate) tag: String,
    /// The snapshot.
    pub(crate) name: String,
    /// Who moves it.
    #[arg(long, default_value = "admin")]
    pub(crate) actor: String,
}

/// Delete a snapshot and its tags.
#[derive(Args)]
pub(crate) struct SnapshotDeleteArgs {
    /// The project.
    pub(crate) project: String,
    /// The snapshot.
    pub(crate) name: String,
    /// Who deletes it.
    #[arg(long, default_value = "admin")]
    pub(crate) actor: String,
}

/// Recompute a snapshot's digest from the data and compare; exit 1 on a difference.
#[derive(Args)]
pub(crate) struct SnapshotVerifyArgs {
    /// The project.
    pub(crate) project: String,
    /// Name or tag.
    pub(crate) name: String,
    /// Print JSON.
    #[arg(long)]
    pub(crate) json: bool,
}

/// Write a snapshot (or a shard or split of it) as native JSONL.
#[derive(Args)]
pub(crate) struct SnapshotExportArgs {
    /// The project.
    pub(crate) project: String,
    /// Name or tag.
    pub(crate) name: String,
    /// The output file.
    #[arg(long)]
    pub(crate) out: PathBuf,
    /// Only shard RANK/WORLD, e.g. 0/4.
    #[arg(long)]
    pub(crate) shard: Option<String>,
    /// Only this split (by a stable hash of the external id).
    #[arg(long)]
    pub(crate) split: Option<String>,
    /// The split ratios.
    #[arg(long, default_value = "train=0.8,val=0.1,test=0.1")]
    pub(crate) ratios: String,
    /// Shuffle with this seed first.
    #[arg(long)]
    pub(crate) seed: Option<u64>,
}

/// Register NAME@VERSION as trained on a snapshot.
#[derive(Args)]
pub(crate) struct ModelRegisterArgs {
    /// The project.
    pub(crate) project: String,
    /// NAME@VERSION.
    pub(crate) model: String,
    /// The snapshot (name or tag) it was trained on.
    #[arg(long)]
    pub(crate) trained_on: String,
    /// Who registers it.
    #[arg(long, default_value = "admin")]
    pub(crate) actor: String,
}

/// An RFC 3339 time as milliseconds since the Unix epoch.
fn parse_time(s: &str) -> Result<u64, String> {
    let t = humantime::parse_rfc3339_weak(s).map_err(|e| format!("{s:?} is not an RFC 3339 time: {e}"))?;
    let since = t
        .duration_since(std::time::UNIX_EPOCH)
        .map_err(|_| format!("{s:?} is before 1970"))?;
    u64::try_from(since.as_millis()).map_err(|_| format!("{s:?} is too far in the future"))
}
