//! Status of the script kinds. The operator owns only some of each kind's status (the query
//! broker writes run and delivery results into the same status), so every write is a server-side
//! apply of exactly the fields it owns: its condition types (conditions are a map-list keyed by
//! `type`, so the broker's `Degraded` stays), `observedGeneration` and kind-specific fields. It is
//! written only when those fields change, and each condition change is published as an Event.

use std::fmt::Debug;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::events::{Event, EventType, Recorder};
use kube::{Resource, ResourceExt};
use pixie_crds::common::{CONDITION_COMPILED, CONDITION_DEGRADED, CONDITION_READY};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Map, Value, json};

use crate::FIELD_MANAGER;
use crate::status::{Want, merge_conditions, transitions};

/// A condition as a reconcile wants it.
pub fn want(type_: &'static str, status: bool, reason: &str, message: impl Into<String>) -> Want {
    Want {
        type_,
        status,
        reason: reason.to_owned(),
        message: message.into(),
    }
}

/// The part of an object's status that the operator owns.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct OwnedStatus {
    /// Only the condition types the operator writes for this kind.
    pub conditions: Vec<Condition>,
    pub observed_generation: Option<i64>,
    /// Other owned fields by their JSON name; a field that is absent is removed on write.
    pub fields: Map<String, Value>,
}

impl OwnedStatus {
    /// What `status` (the object's status as JSON) holds of the owned condition types and fields.
    pub fn read(
        status: Option<&Value>,
        condition_types: &[&str],
        field_names: &[&str],
    ) -> OwnedStatus {
        let Some(status) = status.and_then(Value::as_object) else {
            return OwnedStatus::default();
        };
        let conditions = status
            .get("conditions")
            .and_then(|c| serde_json::from_value::<Vec<Condition>>(c.clone()).ok())
            .unwrap_or_default()
            .into_iter()
            .filter(|c| condition_types.contains(&c.type_.as_str()))
            .collect();
        let fields = field_names
            .iter()
            .filter_map(|name| {
                status
                    .get(*name)
                    .map(|value| ((*name).to_owned(), value.clone()))
            })
            .collect();
        OwnedStatus {
            conditions,
            observed_generation: status.get("observedGeneration").and_then(Value::as_i64),
            fields,
        }
    }

    /// The owned status after a reconcile that wants `wanted` and `fields`: conditions keep their
    /// lastTransitionTime unless their status flips.
    pub fn next(
        &self,
        wanted: &[Want],
        generation: Option<i64>,
        fields: Map<String, Value>,
        now: Timestamp,
    ) -> Self {
        // Stored times have whole seconds; so must ours, or every comparison would see a change.
        let now = Time(Timestamp::from_second(now.as_second()).expect("now is a valid time"));
        let conditions = merge_conditions(&self.conditions, wanted, generation, now)
            .into_iter()
            .filter(|c| wanted.iter().any(|w| w.type_ == c.type_))
            .collect();
        OwnedStatus {
            conditions,
            observed_generation: generation,
            fields,
        }
    }

    /// The status part of a server-side apply patch.
    fn to_patch(&self) -> Value {
        let mut status = self.fields.clone();
        status.insert(
            "conditions".into(),
            serde_json::to_value(&self.conditions).expect("conditions serialize"),
        );
        if let Some(generation) = self.observed_generation {
            status.insert("observedGeneration".into(), generation.into());
        }
        Value::Object(status)
    }
}

/// Warning for a condition that says something is wrong, Normal otherwise.
pub fn event_type(condition: &Condition) -> EventType {
    let bad = match condition.type_.as_str() {
        CONDITION_READY | CONDITION_COMPILED => condition.status == "False",
        CONDITION_DEGRADED => condition.status == "True",
        _ => false,
    };
    if bad {
        EventType::Warning
    } else {
        EventType::Normal
    }
}

/// Writes the owned status of `object` when it differs from what is stored, then publishes an
/// Event per changed condition. `field_names` are the kind's owned fields besides conditions and
/// observedGeneration; `fields` their new values. Returns whether anything was written.
pub async fn write<K>(
    api: &Api<K>,
    recorder: &Recorder,
    object: &K,
    wanted: &[Want],
    field_names: &[&str],
    fields: Map<String, Value>,
) -> Result<bool, kube::Error>
where
    K: Resource<DynamicType = ()> + Clone + Debug + Serialize + DeserializeOwned,
{
    let as_json = serde_json::to_value(object).expect("objects serialize");
    let types: Vec<&str> = wanted.iter().map(|w| w.type_).collect();
    let live = OwnedStatus::read(as_json.get("status"), &types, field_names);
    let next = live.next(wanted, object.meta().generation, fields, Timestamp::now());
    if next == live {
        return Ok(false);
    }
    let patch = json!({
        "apiVersion": K::api_version(&()),
        "kind": K::kind(&()),
        "status": next.to_patch(),
    });
    // Forced: these fields are the operator's alone; the broker applies its own under its manager.
    api.patch_status(
        &object.name_any(),
        &PatchParams::apply(FIELD_MANAGER).force(),
        &Patch::Apply(&patch),
    )
    .await?;
    let reference = object.object_ref(&());
    for changed in transitions(&live.conditions, &next.conditions) {
        let event = Event {
            type_: event_type(changed),
            reason: changed.reason.clone(),
            note: Some(format!(
                "{} is {}: {}",
                changed.type_,
                changed.status,
                truncate(&changed.message, 900)
            )),
            action: format!("Set{}", changed.type_),
            secondary: None,
        };
        // An Event that cannot be written must not fail the reconcile that already wrote status.
        if let Err(error) = recorder.publish(&event, &reference).await {
            tracing::warn!(%error, "publishing an event");
        }
    }
    Ok(true)
}

/// At most `max` characters of `text`.
pub fn truncate(text: &str, max: usize) -> &str {
    match text.char_indices().nth(max) {
        Some((index, _)) => &text[..index],
        None => text,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(seconds: i64) -> Timestamp {
        Timestamp::from_second(seconds).unwrap()
    }

    #[test]
    fn only_owned_conditions_and_fields_are_read() {
        let status = json!({
            "conditions": [
                {"type": "Ready", "status": "True", "reason": "Scheduled", "message": "ok",
                 "lastTransitionTime": "2026-01-01T00:00:00Z", "observedGeneration": 2},
                {"type": "Degraded", "status": "True", "reason": "RunsFailing", "message": "x",
                 "lastTransitionTime": "2026-01-01T00:00:00Z"},
            ],
            "observedGeneration": 2,
            "lastRun": {"outcome": "Failed"},
        });
        let owned = OwnedStatus::read(Some(&status), &["Ready"], &[]);
        assert_eq!(owned.conditions.len(), 1);
        assert_eq!(owned.conditions[0].type_, "Ready");
        assert_eq!(owned.observed_generation, Some(2));
        assert!(owned.fields.is_empty());
        let patch = owned.to_patch();
        assert!(
            patch.get("lastRun").is_none(),
            "the broker's fields are never in the patch: {patch}"
        );
    }

    #[test]
    fn an_unchanged_verdict_changes_nothing_and_a_flip_moves_the_transition_time() {
        let wanted = [want("Ready", false, "VizierNotFound", "no Vizier pixie")];
        let first = OwnedStatus::default().next(&wanted, Some(1), Map::new(), at(100));
        assert_eq!(first.conditions[0].last_transition_time.0, at(100));
        assert_eq!(first.next(&wanted, Some(1), Map::new(), at(200)), first);

        let reworded = [want(
            "Ready",
            false,
            "VizierNotFound",
            "still no Vizier pixie",
        )];
        let second = first.next(&reworded, Some(2), Map::new(), at(300));
        assert_eq!(
            second.conditions[0].last_transition_time.0,
            at(100),
            "same status: time kept"
        );
        assert_eq!(second.conditions[0].observed_generation, Some(2));

        let fixed = [want("Ready", true, "Scheduled", "runs every 10s")];
        let third = second.next(&fixed, Some(2), Map::new(), at(400));
        assert_eq!(third.conditions[0].last_transition_time.0, at(400));
        assert_eq!(transitions(&second.conditions, &third.conditions).len(), 1);
    }

    #[test]
    fn a_cleared_field_is_a_change() {
        let mut fields = Map::new();
        fields.insert("outputs".into(), json!([{"name": "t"}]));
        let wanted = [want("Compiled", true, "Compiled", "outputs: t")];
        let with = OwnedStatus::default().next(&wanted, Some(1), fields, at(1));
        let without = with.next(&wanted, Some(1), Map::new(), at(2));
        assert_ne!(with, without);
        assert!(without.to_patch().get("outputs").is_none());
    }

    #[test]
    fn failures_are_warnings() {
        let condition = |type_: &str, status: &str| Condition {
            type_: type_.into(),
            status: status.into(),
            reason: "R".into(),
            message: String::new(),
            observed_generation: None,
            last_transition_time: Time(at(0)),
        };
        assert_eq!(
            event_type(&condition("Compiled", "False")),
            EventType::Warning
        );
        assert_eq!(event_type(&condition("Ready", "True")), EventType::Normal);
        assert_eq!(
            event_type(&condition("Degraded", "True")),
            EventType::Warning
        );
        assert_eq!(
            event_type(&condition("Degraded", "False")),
            EventType::Normal
        );
    }
}
