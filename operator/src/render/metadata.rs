//! The metadata service and its state. Persistent backend (Pixie's `vizier_persistent`): a
//! one-replica StatefulSet `vizier-metadata` with the PVC `metadata-pv-claim` mounted at
//! `/metadata`. Etcd backend (Pixie's `vizier_etcd`): a Deployment `vizier-metadata` and a
//! three-member etcd StatefulSet `pl-etcd` with its peer and client Services, TLS from the Vizier's
//! service certificates. The service learns its backend from `PL_METADATA_STORE`.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{Deployment, DeploymentSpec, StatefulSet};
use k8s_openapi::api::core::v1::{
    Container, ContainerPort, EmptyDirVolumeSource, PersistentVolumeClaim, PersistentVolumeClaimSpec,
    PersistentVolumeClaimVolumeSource, PodSpec, Service, ServicePort, ServiceSpec, Volume, VolumeMount,
    VolumeResourceRequirements,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

use super::common::{self, PodShape, env, env_field, meta, selector, selector_labels};
use super::{Component, ETCD, ETCD_CLIENT_SERVICE, METADATA, METADATA_PVC, METADATA_SERVICE};
use crate::validate::Inputs;

pub const PORT: i32 = 50400;
pub const PVC_SIZE: &str = "16Gi";
pub const ETCD_MEMBERS: i32 = 3;

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

pub fn deployment(inputs: &Inputs, settings_hash: &str) -> Deployment {
    let endpoints = format!("https://{ETCD_CLIENT_SERVICE}.{}.svc:2379", inputs.namespace);
    let pod = metadata_pod(inputs, vec![env("PL_METADATA_STORE", "etcd"), env("PL_ETCD_ENDPOINTS", endpoints)], None);
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

/// Headless Service giving each etcd member its stable peer name.
pub fn etcd_peer_service(inputs: &Inputs) -> Service {
    Service {
        metadata: meta(inputs, ETCD, Some(Component::Etcd)),
        spec: Some(ServiceSpec {
            cluster_ip: Some("None".into()),
            publish_not_ready_addresses: Some(true),
            selector: Some(selector_labels(inputs, Component::Etcd)),
            ports: Some(vec![
                ServicePort { name: Some("client".into()), port: 2379, ..Default::default() },
                ServicePort { name: Some("peer".into()), port: 2380, ..Default::default() },
            ]),
            ..Default::default()
        }),
        ..Default::default()
    }
}

pub fn etcd_client_service(inputs: &Inputs) -> Service {
    Service {
        metadata: meta(inputs, ETCD_CLIENT_SERVICE, Some(Component::Etcd)),
        spec: Some(ServiceSpec {
            selector: Some(selector_labels(inputs, Component::Etcd)),
            ports: Some(vec![ServicePort { name: Some("client".into()), port: 2379, ..Default::default() }]),
            ..Default::default()
        }),
        ..Default::default()
    }
}

pub fn etcd_statefulset(inputs: &Inputs, settings_hash: &str) -> StatefulSet {
    let ns = &inputs.namespace;
    let peer = |member: &str| format!("https://{member}.{ETCD}.{ns}.svc:2380");
    let initial_cluster = (0..ETCD_MEMBERS)
        .map(|i| format!("{ETCD}-{i}={}", peer(&format!("{ETCD}-{i}"))))
        .collect::<Vec<_>>()
        .join(",");
    let tls = |prefix: &str| {
        vec![
            format!("--{prefix}trusted-ca-file=/certs/ca.crt"),
            format!("--{prefix}cert-file=/certs/server.crt"),
            format!("--{prefix}key-file=/certs/server.key"),
            format!("--{prefix}client-cert-auth=true"),
        ]
    };
    let mut command = vec![
        "etcd".to_owned(),
        "--name=$(POD_NAME)".to_owned(),
        "--data-dir=/var/run/etcd".to_owned(),
        "--listen-client-urls=https://0.0.0.0:2379".to_owned(),
        format!("--advertise-client-urls=https://$(POD_NAME).{ETCD}.{ns}.svc:2379"),
        "--listen-peer-urls=https://0.0.0.0:2380".to_owned(),
        format!("--initial-advertise-peer-urls=https://$(POD_NAME).{ETCD}.{ns}.svc:2380"),
        format!("--initial-cluster={initial_cluster}"),
        "--initial-cluster-state=new".to_owned(),
        format!("--initial-cluster-token={}", inputs.uid),
    ];
    command.extend(tls(""));
    command.extend(tls("peer-"));
    let container = Container {
        name: "etcd".to_owned(),
        image: Some(common::third_party_image(inputs, common::ETCD_IMAGE)),
        command: Some(command),
        env: Some(vec![env_field("POD_NAME", "metadata.name")]),
        ports: Some(vec![
            ContainerPort { name: Some("client".into()), container_port: 2379, ..Default::default() },
            ContainerPort { name: Some("peer".into()), container_port: 2380, ..Default::default() },
        ]),
        volume_mounts: Some(vec![
            VolumeMount { name: "etcd-data".into(), mount_path: "/var/run/etcd".into(), ..Default::default() },
            common::certs_mount(),
        ]),
        ..Default::default()
    };
    let pod = PodSpec {
        containers: vec![container],
        automount_service_account_token: Some(false),
        // Pixie keeps etcd in memory too: the metadata it holds is rebuilt from the cluster.
        volumes: Some(vec![
            Volume {
                name: "etcd-data".into(),
                empty_dir: Some(EmptyDirVolumeSource { medium: Some("Memory".into()), ..Default::default() }),
                ..Default::default()
            },
            common::certs_volume(),
        ]),
        ..Default::default()
    };
    let mut set = common::stateful_set(inputs, settings_hash, ETCD, ETCD, Component::Etcd, ETCD_MEMBERS, pod);
    // Members find each other through DNS, so they must start together.
    set.spec.pod_management_policy = Some("Parallel".into());
    set
}
