use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{ContainerState, ContainerStateWaiting, ContainerStatus, Pod, PodCondition, PodStatus};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use serde_json::json;

use super::*;
use crate::validate::{Inputs, MetadataBackend};

fn inputs(backend: MetadataBackend, cloud: bool) -> Inputs {
    Inputs {
        name: "pixie".into(),
        namespace: "pl".into(),
        uid: "u".into(),
        version: "1".into(),
        cluster_name: "c".into(),
        backend,
        default_registry: "r".into(),
        spec: pixie_crds::VizierSpec {
            cloud_addr: cloud.then(|| "withpixie.ai:443".to_owned()),
            deploy_key: Some("k".into()),
            ..Default::default()
        },
        patches: Default::default(),
        cloud_trust: pixie_cloud::Trust::SystemRoots,
            tls_not_after: None,
    }
}

fn now() -> Timestamp {
    "2026-06-01T12:00:00Z".parse().unwrap()
}

fn pod(name: &str, component: Component, phase: &str) -> Pod {
    Pod {
        metadata: ObjectMeta {
            name: Some(name.into()),
            labels: Some(BTreeMap::from([
                (LABEL_COMPONENT.to_owned(), component.label().to_owned()),
                (LABEL_PLANE.to_owned(), component.plane().to_owned()),
            ])),
            creation_timestamp: Some(Time("2026-06-01T11:00:00Z".parse().unwrap())),
            ..Default::default()
        },
        status: Some(PodStatus { phase: Some(phase.into()), ..Default::default() }),
        ..Default::default()
    }
}

fn crashing(mut pod: Pod) -> Pod {
    pod.status.as_mut().unwrap().container_statuses = Some(vec![ContainerStatus {
        name: "pem".into(),
        state: Some(ContainerState {
            waiting: Some(ContainerStateWaiting { reason: Some("CrashLoopBackOff".into()), message: None }),
            ..Default::default()
        }),
        ..Default::default()
    }]);
    pod
}

fn unschedulable(mut pod: Pod, message: &str) -> Pod {
    pod.status = Some(PodStatus {
        phase: Some("Pending".into()),
        conditions: Some(vec![PodCondition {
            type_: "PodScheduled".into(),
            status: "False".into(),
            reason: Some("Unschedulable".into()),
            message: Some(message.into()),
            ..Default::default()
        }]),
        ..Default::default()
    });
    pod
}

fn healthy_pods(pems: usize) -> Vec<Pod> {
    let mut pods = vec![
        pod("pl-nats-0", Component::Nats, "Running"),
        pod("vizier-metadata-x", Component::Metadata, "Running"),
        pod("kelvin-x", Component::Kelvin, "Running"),
        pod("vizier-query-broker-x", Component::QueryBroker, "Running"),
    ];
    for i in 0..pems {
        pods.push(pod(&format!("vizier-pem-{i}"), Component::Pem, "Running"));
    }
    pods
}

fn deployment(generation: i64, updated: i32) -> Value {
    json!({"metadata": {"generation": generation}, "spec": {"replicas": 1, "selector": {}, "template": {}},
           "status": {"observedGeneration": generation, "replicas": 1, "updatedReplicas": updated, "availableReplicas": 1}})
}

fn observe_with(inputs: &Inputs, objects: &BTreeMap<(Kind, String), Value>, pods: &[Pod]) -> Observation {
    observe(&Facts {
        inputs,
        objects,
        pods,
        nodes: &[],
        tls_not_after: Some("2027-01-01T00:00:00Z".parse().unwrap()),
        deploy_key_secret_ok: None,
        cluster_registered: true,
        now: now(),
    })
}

fn reasons(observation: &Observation) -> Vec<&'static str> {
    observation.findings.iter().map(|f| f.reason).collect()
}

fn settled() -> BTreeMap<(Kind, String), Value> {
    BTreeMap::from([((Kind::Deployment, "kelvin".to_owned()), deployment(1, 1))])
}

#[test]
fn a_healthy_vizier_has_no_findings() {
    let inputs = inputs(MetadataBackend::Memory, false);
    let observation = observe_with(&inputs, &settled(), &healthy_pods(3));
    assert_eq!(reasons(&observation), Vec::<&str>::new());
    assert!(observation.rolled_out());
}

#[test]
fn pem_failures_are_degraded_by_share() {
    let inputs = inputs(MetadataBackend::Memory, false);
    let mut pods = healthy_pods(4);
    pods[4] = crashing(pods[4].clone());
    assert_eq!(reasons(&observe_with(&inputs, &settled(), &pods)), Vec::<&str>::new(), "1 of 4 is 25%, not more");
    pods[5] = crashing(pods[5].clone());
    let observation = observe_with(&inputs, &settled(), &pods);
    assert_eq!(reasons(&observation), vec!["PEMsHighFailureRate"]);
    assert_eq!(observation.findings[0].severity(), Severity::Degraded);
    for pod in &mut pods[6..8] {
        *pod = crashing(pod.clone());
    }
    let observation = observe_with(&inputs, &settled(), &pods);
    assert_eq!(reasons(&observation), vec!["PEMsAllFailing"]);
    assert_eq!(observation.findings[0].severity(), Severity::Unhealthy);
}

#[test]
fn a_failed_pod_phase_counts_as_failing() {
    let inputs = inputs(MetadataBackend::Memory, false);
    let mut pods = healthy_pods(1);
    pods[4] = pod("vizier-pem-0", Component::Pem, "Failed");
    assert_eq!(reasons(&observe_with(&inputs, &settled(), &pods)), vec!["PEMsAllFailing"]);
}

/// How the DaemonSet controller pins a pod to its node.
fn meant_for(mut pod: Pod, node: &str) -> Pod {
    pod.spec = Some(serde_json::from_value(json!({
        "containers": [],
        "affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
            {"matchFields": [{"key": "metadata.name", "operator": "In", "values": [node]}]}
        ]}}}
    })).unwrap());
    pod
}

#[test]
fn pems_short_of_memory_are_one_degraded_reason_naming_count_and_nodes() {
    let inputs = inputs(MetadataBackend::Memory, false);
    let mut pods = healthy_pods(2);
    pods[4] = unschedulable(meant_for(pods[4].clone(), "node-a"), "0/3 nodes are available: 3 Insufficient memory.");
    let observation = observe_with(&inputs, &settled(), &pods);
    assert_eq!(reasons(&observation), vec!["PEMsInsufficientMemory"]);
    assert_eq!(observation.findings[0].severity(), Severity::Degraded);
    let message = &observation.findings[0].message;
    assert!(message.starts_with("1 of 2 PEMs") && message.ends_with(": node-a"), "{message}");

    // A pod without the DaemonSet's affinity is named by itself.
    pods[5] = unschedulable(pods[5].clone(), "0/3 nodes are available: 3 Insufficient memory.");
    let observation = observe_with(&inputs, &settled(), &pods);
    assert_eq!(reasons(&observation), vec!["PEMsInsufficientMemory"]);
    assert_eq!(observation.findings[0].severity(), Severity::Degraded);
    let message = &observation.findings[0].message;
    assert!(message.starts_with("2 of 2 PEMs") && message.ends_with(": node-a, pod vizier-pem-1"), "{message}");
}

#[test]
fn control_plane_and_nats_checks() {
    let inputs = inputs(MetadataBackend::Memory, false);
    let mut pods = healthy_pods(1);
    pods[2] = unschedulable(pods[2].clone(), "0/3 nodes are available: 3 node(s) had untolerated taint {a: b}.");
    assert_eq!(reasons(&observe_with(&inputs, &settled(), &pods)), vec!["ControlPlaneFailedToScheduleBecauseOfTaints"]);
    pods[2] = pod("kelvin-x", Component::Kelvin, "Pending");
    assert_eq!(reasons(&observe_with(&inputs, &settled(), &pods)), vec!["ControlPlanePodsPending"]);
    pods[2] = pod("kelvin-x", Component::Kelvin, "Failed");
    assert_eq!(reasons(&observe_with(&inputs, &settled(), &pods)), vec!["ControlPlanePodsFailed"]);

    let mut pods = healthy_pods(1);
    pods.remove(0);
    assert_eq!(reasons(&observe_with(&inputs, &settled(), &pods)), vec!["NATSPodMissing"]);
    let mut pods = healthy_pods(1);
    pods[0] = crashing(pods[0].clone());
    assert_eq!(reasons(&observe_with(&inputs, &settled(), &pods)), vec!["NATSPodFailed"]);
}

#[test]
fn missing_or_pending_pods_are_not_reported_while_rolling_out() {
    let inputs = inputs(MetadataBackend::Memory, false);
    let rolling = BTreeMap::from([((Kind::Deployment, "kelvin".to_owned()), deployment(2, 0))]);
    let mut pods = healthy_pods(1);
    pods.remove(0);
    pods[1] = pod("kelvin-x", Component::Kelvin, "Pending");
    let observation = observe_with(&inputs, &rolling, &pods);
    assert_eq!(reasons(&observation), Vec::<&str>::new());
    assert!(!observation.rolled_out());
    assert_eq!(observation.pending_rollouts().len(), 1);
}

#[test]
fn the_cloud_connector_and_its_deploy_key() {
    let inputs = inputs(MetadataBackend::Memory, true);
    let observation = observe_with(&inputs, &settled(), &healthy_pods(1));
    assert_eq!(reasons(&observation), vec!["CloudConnectorMissing"]);
    assert_eq!(observation.findings[0].severity(), Severity::Disconnected);
    let mut pods = healthy_pods(1);
    pods.push(pod("vizier-cloud-connector-x", Component::CloudConnector, "Running"));
    assert_eq!(reasons(&observe_with(&inputs, &settled(), &pods)), Vec::<&str>::new());
    let facts = Facts {
        inputs: &inputs,
        objects: &settled(),
        pods: &pods,
        nodes: &[],
        tls_not_after: None,
        deploy_key_secret_ok: Some(false),
        cluster_registered: true,
        now: now(),
    };
    assert_eq!(reasons(&observe(&facts)), vec!["InvalidDeployKey"]);
    // Running but not registered yet: not Ready, and Pixie's phase for it is Disconnected.
    let unregistered = observe(&Facts { deploy_key_secret_ok: None, cluster_registered: false, ..facts });
    assert_eq!(reasons(&unregistered), vec!["CloudConnectorNotRegistered"]);
    assert_eq!(unregistered.findings[0].severity(), Severity::Disconnected);
}

#[test]
fn the_metadata_volume_and_certificates() {
    let inputs = inputs(MetadataBackend::Persistent, false);
    let mut objects = settled();
    assert_eq!(reasons(&observe_with(&inputs, &objects, &healthy_pods(1))), vec!["MetadataPVCMissing"]);
    objects.insert((Kind::PersistentVolumeClaim, METADATA_PVC.to_owned()), json!({"status": {"phase": "Pending"}}));
    assert_eq!(reasons(&observe_with(&inputs, &objects, &healthy_pods(1))), vec!["MetadataPVCPendingBinding"]);
    objects.insert((Kind::PersistentVolumeClaim, METADATA_PVC.to_owned()), json!({"status": {"phase": "Bound"}}));
    assert_eq!(reasons(&observe_with(&inputs, &objects, &healthy_pods(1))), Vec::<&str>::new());

    let inputs = super::tests::inputs(MetadataBackend::Memory, false);
    let observation = observe(&Facts {
        inputs: &inputs,
        objects: &settled(),
        pods: &healthy_pods(1),
        nodes: &[],
        tls_not_after: Some("2026-06-03T00:00:00Z".parse().unwrap()),
        deploy_key_secret_ok: None,
        cluster_registered: true,
        now: now(),
    });
    assert_eq!(reasons(&observation), vec!["TLSCertsExpired"]);
}

#[test]
fn findings_keep_pixies_order() {
    let inputs = inputs(MetadataBackend::Memory, false);
    let mut pods = healthy_pods(2);
    pods[0] = crashing(pods[0].clone());
    pods[4] = crashing(pods[4].clone());
    assert_eq!(reasons(&observe_with(&inputs, &settled(), &pods)), vec!["NATSPodFailed", "PEMsHighFailureRate"]);
}
