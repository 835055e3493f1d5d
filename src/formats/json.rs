//! JSON views of stored records, in the vocabulary of the native JSONL format.
//!
//! Span offsets are converted back to code points, so an asset's JSON can be imported
//! again (docs/formats.md).

use serde_json::{json, Map, Value};

use crate::formats::to_codepoint;
use crate::model::asset::{Asset, Content, MetaValue};
use crate::model::event::Event;
use crate::model::label::{Answer, Label, Source};
use crate::model::project::Project;
use crate::query::Facets;

/// Metadata as a JSON object.
pub fn meta_json(meta: &std::collections::BTreeMap<String, MetaValue>) -> Value {
    meta.iter()
        .map(|(k, v)| {
            let v = match v {
                MetaValue::Str(s) => json!(s),
                MetaValue::Num(n) => json!(n),
                MetaValue::Bool(b) => json!(b),
            };
            (k.clone(), v)
        })
        .collect::<Map<_, _>>()
        .into()
}

/// An asset as a JSONL record without labels, plus its internal id, digest and state.
pub fn asset_json(a: &Asset) -> Value {
    let mut o = Map::new();
    o.insert("id".into(), json!(a.external_id));
    match &a.content {
        Content::Text(t) => {
            o.insert("text".into(), json!(t));
        }
        Content::Image { uri, width, height } => {
            o.insert("image".into(), json!(uri));
            o.insert("width".into(), json!(width));
            o.insert("height".into(), json!(height));
        }
    }
    o.insert("meta".into(), meta_json(&a.meta));
    o.insert("status".into(), json!(a.status.as_str()));
    o.insert("priority".into(), json!(a.priority));
    o.insert("honeypot".into(), json!(a.honeypot));
    o.insert("deleted".into(), json!(a.deleted));
    o.insert("asset_id".into(), json!(a.id.0));
    o.insert("digest".into(), json!(a.digest.to_string()));
    o.insert("revisions".into(), json!(a.revisions));
    o.insert("created_at".into(), json!(a.created_at));
    Value::Object(o)
}

/// A label as a JSONL label (code-point span offsets, for `content`), plus its id,
/// lineage links and creation time.
pub fn label_json(l: &Label, content: &Content) -> Value {
    let mut o = Map::new();
    match &l.source {
        Source::Human { user } => o.insert("author".into(), json!(user)),
        Source::Model { name, version } => o.insert("model".into(), json!(format!("{name}@{version}"))),
        Source::Rule { name, version } => o.insert("rule".into(), json!(format!("{name}@{version}"))),
    };
    o.insert("kind".into(), json!(l.kind.as_str()));
    let text = content.text().unwrap_or("");
    let answers: Map<String, Value> = l
        .answers
        .iter()
        .map(|(job, a)| {
            let v = match a {
                Answer::Classes(c) if c.len() == 1 => json!(c[0]),
                Answer::Classes(c) => json!(c),
                Answer::Spans(spans) => spans
                    .iter()
                    .map(|s| {
                        let mut v = json!({
                            "start": to_codepoint(text, s.start as usize),
                            "end": to_codepoint(text, s.end as usize),
                            "class": s.class,
                        });
                        if let Some(score) = s.score {
                            v["score"] = json!(score);
                        }
                        v
                    })
                    .collect(),
                Answer::Boxes(boxes) => boxes
                    .iter()
                    .map(|b| {
                        let mut v = json!({"x": b.x, "y": b.y, "w": b.w, "h": b.h, "class": b.class});
                        if let Some(score) = b.score {
                            v["score"] = json!(score);
                        }
                        v
                    })
                    .collect(),
            };
            (job.clone(), v)
        })
        .collect();
    o.insert("answers".into(), Value::Object(answers));
    if !l.scores.is_empty() {
        o.insert("scores".into(), json!(l.scores));
    }
    if let Some(v) = l.verdict {
        o.insert("verdict".into(), json!(format!("{v:?}").to_lowercase()));
    }
    o.insert("seconds".into(), json!(l.seconds));
    o.insert("label_id".into(), json!(l.id.to_string()));
    o.insert("parent".into(), json!(l.parent.map(|p| p.to_string())));
    o.insert("derived_from".into(), json!(l.derived_from.map(|p| p.to_string())));
    o.insert("created_at".into(), json!(l.created_at));
    Value::Object(o)
}

/// An event: seq, time, actor, a one-line description and the full action.
pub fn event_json(e: &Event) -> Value {
    json!({
        "seq": e.seq,
        "at": e.at,
        "actor": e.actor,
        "what": e.action.describe(),
        "action": serde_json::to_value(&e.action).unwrap_or(Value::Null),
    })
}

/// A project: name, id, schema and settings.
pub fn project_json(p: &Project) -> Value {
    json!({"name": p.name, "id": p.id.0, "schema": p.schema.to_json(), "settings": p.settings.to_json()})
}

/// The counts of a result set by status, class and author ([`Db::facets`](crate::Db::facets)).
pub fn facets_json(f: &Facets) -> Value {
    json!({
        "by_status": f.by_status.iter().map(|(k, v)| (k.as_str().to_string(), json!(v))).collect::<Map<_, _>>(),
        "by_class": f.by_class,
        "by_author": f.by_author,
    })
}
