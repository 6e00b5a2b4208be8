//! The metadata service and its state. Persistent backend (Pixie's `vizier_persistent`): a
//! one-replica StatefulSet `vizier-metadata` with the PVC `metadata-pv-claim` mounted at
//! `/metadata`. Memory backend (where Pixie would use `vizier_etcd`): a Deployment
//! `vizier-metadata` with no volume. The service rebuilds its state from the API server either
//! way; only its terminated-pod history is kept, in the file store, so the memory backend loses it
//! on a restart. The service learns its backend from `PL_METADATA_STORE`.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{Deployment, DeploymentSpec, StatefulSet};
use k8s_openapi::api::core::v1::{
    Container, ContainerPort, PersistentVolumeClaim, PersistentVolumeClaimSpec, PersistentVolumeClaimVolumeSource,
    PodSpec, Service, ServicePort, ServiceSpec, Volume, VolumeMount, VolumeResourceRequirements,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

use super::common::{self, PodShape, env, meta, selector, selector_labels};
use super::{Component, METADATA, METADATA_PVC, METADATA_SERVICE};
use crate::validate::Inputs;

pub const PORT: i32 = 50400;
pub const PVC_SIZE: &str = "16Gi";

pub fn service(inputs: &Inputs) -> Service {
    Service {
        metadata: meta(inputs, METADATA_SERVICE, Some(Component::Metadata)),
        spec: Some(ServiceSpec {
            selector: Some(selector_labels(inputs, Component::Metadata)),
            ports: Some(vec![ServicePort { name: Some("grpc".into()), port: PORT, ..Default::default() }]),
            ..Default::default()
        }),
        ..Default::default()
    }
}

pub fn pvc(inputs: &Inputs) -> PersistentVolumeClaim {
    PersistentVolumeClaim {
        metadata: meta(inputs, METADATA_PVC, Some(Component::Metadata)),
        spec: Some(PersistentVolumeClaimSpec {
            access_modes: Some(vec!["ReadWriteOnce".into()]),
            resources: Some(VolumeResourceRequirements {
                requests: Some(BTreeMap::from([("storage".to_owned(), Quantity(PVC_SIZE.to_owned()))])),
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn metadata_pod(inputs: &Inputs, store: Vec<k8s_openapi::api::core::v1::EnvVar>, extra: Option<(Volume, VolumeMount)>) -> PodSpec {
    let mut container: Container = common::vizier_container(inputs, Component::Metadata, "metadata");
    let vars = container.env.get_or_insert_with(Vec::new);
    for var in store {
        common::set_env(vars, var);
    }
    container.args = Some(vec!["--listen".into(), format!("0.0.0.0:{PORT}")]);
    container.ports = Some(vec![ContainerPort { name: Some("grpc".into()), container_port: PORT, ..Default::default() }]);
    common::add_health_probes(&mut container);
    let mut volumes = vec![common::certs_volume()];
    if let Some((volume, mount)) = extra {
        volumes.push(volume);
        container.volume_mounts.get_or_insert_with(Vec::new).push(mount);
    }
    PodSpec {
        containers: vec![container],
        service_account_name: Some(super::rbac::METADATA_ACCOUNT.to_owned()),
        volumes: Some(volumes),
        ..Default::default()
    }
}

pub fn statefulset(inputs: &Inputs, settings_hash: &str) -> StatefulSet {
    let volume = Volume {
        name: "metadata-volume".into(),
        persistent_volume_claim: Some(PersistentVolumeClaimVolumeSource {
            claim_name: METADATA_PVC.to_owned(),
            read_only: None,
        }),
        ..Default::default()
    };
    let mount = VolumeMount { name: "metadata-volume".into(), mount_path: "/metadata".into(), ..Default::default() };
    let pod = metadata_pod(inputs, vec![env("PL_METADATA_STORE", "file:/metadata")], Some((volume, mount)));
    common::stateful_set(inputs, settings_hash, METADATA, METADATA_SERVICE, Component::Metadata, 1, pod)
}

/// The memory backend: nothing to mount, so a Deployment.
pub fn deployment(inputs: &Inputs, settings_hash: &str) -> Deployment {
    let pod = metadata_pod(inputs, vec![env("PL_METADATA_STORE", "memory")], None);
    Deployment {
        metadata: meta(inputs, METADATA, Some(Component::Metadata)),
        spec: DeploymentSpec {
            replicas: Some(1),
            selector: selector(inputs, Component::Metadata),
            template: common::pod_template(
                inputs,
                settings_hash,
                PodShape { component: Component::Metadata, privileged: false, spec: pod },
            ),
            ..Default::default()
        },
        ..Default::default()
    }
}
