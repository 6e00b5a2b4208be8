//! The first step of a reconcile: read what exists. Every object of this Vizier (found by label, so
//! what a crashed earlier reconcile left half-done is found too), its pods, the nodes, and the few
//! cluster facts validation needs. Reads only.

use std::collections::BTreeMap;

use futures::future::try_join_all;
use k8s_openapi::api::core::v1::{Node, Pod, Secret};
use k8s_openapi::api::storage::v1::StorageClass;
use kube::api::{Api, DynamicObject, ListParams};
use kube::{Client, ResourceExt};
use pixie_crds::Vizier;
use serde_json::Value;

use crate::error::Error;
use crate::render::common::{cluster_selector, instance_selector};
use crate::render::{METADATA, METADATA_PVC};
use crate::resources::Kind;
use crate::validate::BackendFacts;

/// What the cluster holds for one Vizier.
#[derive(Debug, Default)]
pub struct Live {
    /// The Vizier's objects as stored, by kind and name.
    pub objects: BTreeMap<(Kind, String), Value>,
    pub pods: Vec<Pod>,
    pub nodes: Vec<Node>,
    pub facts: BackendFacts,
    /// Whether the user's `customDeployKeySecret` exists with a `deploy-key` (None: not asked).
    pub deploy_key_secret_ok: Option<bool>,
}

impl Live {
    pub fn get(&self, kind: Kind, name: &str) -> Option<&Value> {
        self.objects.get(&(kind, name.to_owned()))
    }
}

fn fetch_error(what: impl Into<String>) -> impl FnOnce(kube::Error) -> Error {
    let what = what.into();
    move |source| Error::Fetch { what, source }
}

pub async fn fetch(client: &Client, vizier: &Vizier) -> Result<Live, Error> {
    let namespace = vizier.namespace().unwrap_or_default();
    let name = vizier.name_any();
    let uid = vizier.uid().unwrap_or_default();

    let lists = Kind::ALL.iter().map(|&kind| {
        let ar = kind.api_resource();
        let (api, selector) = if kind.is_namespaced() {
            (Api::<DynamicObject>::namespaced_with(client.clone(), &namespace, &ar), instance_selector(&name))
        } else {
            (Api::<DynamicObject>::all_with(client.clone(), &ar), cluster_selector(&uid))
        };
        async move {
            let list = api.list(&ListParams::default().labels(&selector)).await.map_err(fetch_error(format!("{kind} list")))?;
            Ok::<_, Error>(list.items.into_iter().map(move |object| (kind, object)).collect::<Vec<_>>())
        }
    });
    let mut objects = BTreeMap::new();
    for (kind, object) in try_join_all(lists).await?.into_iter().flatten() {
        let Some(object_name) = object.metadata.name.clone() else { continue };
        let mut value = serde_json::to_value(&object)?;
        // Items of a list come without apiVersion and kind; put them back so that the stored object
        // can be compared with the rendered one field by field.
        let ar = kind.api_resource();
        value["apiVersion"] = Value::String(ar.api_version);
        value["kind"] = Value::String(ar.kind);
        objects.insert((kind, object_name), value);
    }

    let pods = Api::<Pod>::namespaced(client.clone(), &namespace)
        .list(&ListParams::default().labels(&instance_selector(&name)))
        .await
        .map_err(fetch_error("pods"))?
        .items;
    let nodes = Api::<Node>::all(client.clone()).list(&ListParams::default()).await.map_err(fetch_error("nodes"))?.items;
    let storage_classes =
        Api::<StorageClass>::all(client.clone()).list(&ListParams::default()).await.map_err(fetch_error("storage classes"))?;
    let default_storage_classes = storage_classes
        .items
        .iter()
        .filter(|sc| sc.annotations().get("storageclass.kubernetes.io/is-default-class").map(String::as_str) == Some("true"))
        .count();

    let deploy_key_secret_ok = match vizier.spec.custom_deploy_key_secret.as_deref() {
        Some(secret) if vizier.spec.cloud_addr.is_some() => {
            let found = Api::<Secret>::namespaced(client.clone(), &namespace)
                .get_opt(secret)
                .await
                .map_err(fetch_error(format!("secret {secret}")))?;
            Some(found.is_some_and(|s| {
                s.data.as_ref().is_some_and(|d| d.contains_key("deploy-key"))
                    || s.string_data.as_ref().is_some_and(|d| d.contains_key("deploy-key"))
            }))
        }
        _ => None,
    };

    let facts = BackendFacts {
        default_storage_classes,
        metadata_pvc_exists: objects.contains_key(&(Kind::PersistentVolumeClaim, METADATA_PVC.to_owned())),
        metadata_statefulset_exists: objects.contains_key(&(Kind::StatefulSet, METADATA.to_owned())),
        metadata_deployment_exists: objects.contains_key(&(Kind::Deployment, METADATA.to_owned())),
    };
    Ok(Live { objects, pods, nodes, facts, deploy_key_secret_ok })
}
