//! NATS, the in-cluster message bus: a one-replica StatefulSet `pl-nats`, its Service and its
//! configuration (client TLS with the Vizier's service certificates, monitoring on 8222).

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{
    ConfigMap, ConfigMapVolumeSource, Container, ContainerPort, HTTPGetAction, PodSpec, Probe, Service, ServicePort,
    ServiceSpec, Volume, VolumeMount,
};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::common::{self, meta, selector_labels};
use super::{Component, NATS, NATS_CONFIG};
use crate::validate::Inputs;

pub const CLIENT_PORT: i32 = 4222;
pub const MONITOR_PORT: i32 = 8222;

pub fn config(inputs: &Inputs) -> ConfigMap {
    let conf = format!(
        "port: {CLIENT_PORT}\nhttp: {MONITOR_PORT}\npid_file: \"/var/run/nats/nats.pid\"\n\
         tls {{\n  ca_file: \"/certs/ca.crt\"\n  cert_file: \"/certs/server.crt\"\n  key_file: \"/certs/server.key\"\n  \
         timeout: 3\n  verify: true\n}}\n"
    );
    ConfigMap {
        metadata: meta(inputs, NATS_CONFIG, Some(Component::Nats)),
        data: Some(BTreeMap::from([("nats.conf".to_owned(), conf)])),
        ..Default::default()
    }
}

pub fn service(inputs: &Inputs) -> Service {
    Service {
        metadata: meta(inputs, NATS, Some(Component::Nats)),
        spec: Some(ServiceSpec {
            selector: Some(selector_labels(inputs, Component::Nats)),
            ports: Some(vec![
                ServicePort { name: Some("client".into()), port: CLIENT_PORT, ..Default::default() },
                ServicePort { name: Some("monitor".into()), port: MONITOR_PORT, ..Default::default() },
            ]),
            ..Default::default()
        }),
        ..Default::default()
    }
}

pub fn statefulset(inputs: &Inputs, settings_hash: &str) -> StatefulSet {
    let healthz = || {
        Some(HTTPGetAction {
            path: Some("/healthz".into()),
            port: IntOrString::Int(MONITOR_PORT),
            ..Default::default()
        })
    };
    let container = Container {
        name: "nats".to_owned(),
        image: Some(common::third_party_image(inputs, common::NATS_IMAGE)),
        command: Some(vec!["nats-server".into(), "--config".into(), "/etc/nats-config/nats.conf".into()]),
        ports: Some(vec![
            ContainerPort { name: Some("client".into()), container_port: CLIENT_PORT, ..Default::default() },
            ContainerPort { name: Some("monitor".into()), container_port: MONITOR_PORT, ..Default::default() },
        ]),
        liveness_probe: Some(Probe { http_get: healthz(), initial_delay_seconds: Some(10), ..Default::default() }),
        // Ready only once the server answers, so the Service and the rollout wait for it; checked
        // more often than liveness so a restarted server rejoins quickly.
        readiness_probe: Some(Probe {
            http_get: healthz(),
            period_seconds: Some(5),
            failure_threshold: Some(3),
            ..Default::default()
        }),
        volume_mounts: Some(vec![
            VolumeMount { name: "nats-config".into(), mount_path: "/etc/nats-config".into(), ..Default::default() },
            common::certs_mount(),
        ]),
        ..Default::default()
    };
    let pod = PodSpec {
        containers: vec![container],
        automount_service_account_token: Some(false),
        volumes: Some(vec![
            Volume {
                name: "nats-config".into(),
                config_map: Some(ConfigMapVolumeSource { name: NATS_CONFIG.to_owned(), ..Default::default() }),
                ..Default::default()
            },
            common::certs_volume(),
        ]),
        ..Default::default()
    };
    common::stateful_set(inputs, settings_hash, NATS, NATS, Component::Nats, 1, pod)
}
