//! The query broker, Kelvin, the PEM DaemonSet and the cloud connector.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{
    DaemonSet, DaemonSetSpec, DaemonSetUpdateStrategy, Deployment, DeploymentSpec, RollingUpdateDaemonSet,
};
use k8s_openapi::api::core::v1::{
    ConfigMapVolumeSource, ContainerPort, HostPathVolumeSource, PodSpec, ResourceRequirements, SecurityContext, Service, ServicePort,
    ServiceSpec, Toleration, Volume, VolumeMount,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use pixie_cloud::Trust;
use pixie_crds::DataAccess;

use super::common::{self, PodShape, env, env_field, env_secret, meta, selector, selector_labels, set_env};
use super::rbac::{CLOUD_CONNECTOR_ACCOUNT, QUERY_BROKER_ACCOUNT};
use super::{
    CLOUD_CA, CLOUD_CA_KEY, CLOUD_CONNECTOR, Component, KELVIN, KELVIN_SERVICE, METADATA_SERVICE, PEM, PEM_SERVICE, QUERY_BROKER,
    QUERY_BROKER_SERVICE, metadata,
};
use crate::quantity;
use crate::validate::Inputs;

pub const QUERY_BROKER_PORT: i32 = 50300;
pub const KELVIN_PORT: i32 = 59300;
/// The PEMs' query API, on each node's network (PEMs run in the host's network namespace).
pub const PEM_PORT: i32 = 50400;
pub const CLOUD_CONNECTOR_PORT: i32 = 50800;
/// Where the connector finds `pl-cloud-ca`.
pub const CLOUD_CA_DIR: &str = "/cloud-ca";
/// Pixie's default PEM memory limit.
pub const DEFAULT_PEM_MEMORY: &str = "2Gi";
/// Share of the PEM's memory limit given to its table store (Pixie's docs: 60%).
pub const TABLE_STORE_PERCENT: u64 = 60;

fn data_access(inputs: &Inputs) -> &'static str {
    match inputs.spec.data_access.unwrap_or(DataAccess::Full) {
        DataAccess::Full => "Full",
        DataAccess::Restricted => "Restricted",
        DataAccess::PiiRestricted => "PIIRestricted",
    }
}

fn service(inputs: &Inputs, name: &str, component: Component, port: i32) -> Service {
    Service {
        metadata: meta(inputs, name, Some(component)),
        spec: Some(ServiceSpec {
            selector: Some(selector_labels(inputs, component)),
            ports: Some(vec![ServicePort { name: Some("grpc".into()), port, ..Default::default() }]),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// `<service>.<namespace>.svc:<port>`, how the Vizier's services find each other.
fn service_addr(inputs: &Inputs, service: &str, port: i32) -> String {
    format!("{service}.{}.svc:{port}", inputs.namespace)
}

fn grpc_port(port: i32) -> Option<Vec<ContainerPort>> {
    Some(vec![ContainerPort { name: Some("grpc".into()), container_port: port, ..Default::default() }])
}

fn deployment(inputs: &Inputs, name: &str, component: Component, settings_hash: &str, pod: PodSpec) -> Deployment {
    Deployment {
        metadata: meta(inputs, name, Some(component)),
        spec: DeploymentSpec {
            replicas: Some(1),
            selector: selector(inputs, component),
            template: common::pod_template(inputs, settings_hash, PodShape { component, privileged: false, spec: pod }),
            ..Default::default()
        },
        ..Default::default()
    }
}

pub fn query_broker_service(inputs: &Inputs) -> Service {
    service(inputs, QUERY_BROKER_SERVICE, Component::QueryBroker, QUERY_BROKER_PORT)
}

/// The query broker compiles PxL and applies the data-access level to results.
pub fn query_broker(inputs: &Inputs, settings_hash: &str) -> Deployment {
    let mut container = common::vizier_container(inputs, Component::QueryBroker, "broker");
    // Clients' queries go to Kelvin, and so do the CronScripts'.
    container.args = Some(vec![
        "--listen".into(),
        format!("0.0.0.0:{QUERY_BROKER_PORT}"),
        "--kelvin-addr".into(),
        service_addr(inputs, KELVIN_SERVICE, KELVIN_PORT),
        "--vizier".into(),
        inputs.name.clone(),
    ]);
    let vars = container.env.get_or_insert_with(Vec::new);
    set_env(vars, env("PL_DATA_ACCESS", data_access(inputs)));
    // The CronScript runner's namespace and lease identity.
    set_env(vars, env_field("POD_NAMESPACE", "metadata.namespace"));
    set_env(vars, env_field("POD_NAME", "metadata.name"));
    container.ports = grpc_port(QUERY_BROKER_PORT);
    common::add_health_probes(&mut container);
    let pod = PodSpec {
        containers: vec![container],
        service_account_name: Some(QUERY_BROKER_ACCOUNT.to_owned()),
        volumes: Some(vec![common::certs_volume()]),
        ..Default::default()
    };
    deployment(inputs, QUERY_BROKER, Component::QueryBroker, settings_hash, pod)
}

pub fn kelvin_service(inputs: &Inputs) -> Service {
    service(inputs, KELVIN_SERVICE, Component::Kelvin, KELVIN_PORT)
}

/// Kelvin merges the PEMs' partial results; it redacts like the broker. It queries the PEMs whose
/// heartbeats reach it on NATS (`PL_NATS_URL` from the settings).
pub fn kelvin(inputs: &Inputs, settings_hash: &str) -> Deployment {
    let mut container = common::vizier_container(inputs, Component::Kelvin, "kelvin");
    container.args = Some(vec!["--listen".into(), format!("0.0.0.0:{KELVIN_PORT}")]);
    set_env(container.env.get_or_insert_with(Vec::new), env("PL_DATA_ACCESS", data_access(inputs)));
    container.ports = grpc_port(KELVIN_PORT);
    common::add_health_probes(&mut container);
    let pod = PodSpec {
        containers: vec![container],
        automount_service_account_token: Some(false),
        volumes: Some(vec![common::certs_volume()]),
        ..Default::default()
    };
    deployment(inputs, KELVIN, Component::Kelvin, settings_hash, pod)
}

/// Headless (no cluster IP): its DNS name resolves to the address of every ready PEM, for people
/// and tools (`kubectl get endpoints`); Kelvin itself goes by the PEMs' NATS heartbeats.
pub fn pem_service(inputs: &Inputs) -> Service {
    let mut service = service(inputs, PEM_SERVICE, Component::Pem, PEM_PORT);
    if let Some(spec) = service.spec.as_mut() {
        spec.cluster_ip = Some("None".into());
    }
    service
}

fn host_path(name: &str, path: &str) -> Volume {
    Volume {
        name: name.to_owned(),
        host_path: Some(HostPathVolumeSource { path: path.to_owned(), type_: Some("Directory".into()) }),
        ..Default::default()
    }
}

/// The PEM on every node: privileged, in the host's PID and network namespaces (as Pixie runs it),
/// with the host's /proc and /sys, memory from `pemMemoryLimit`/`pemMemoryRequest`, and the data
/// collector parameters as environment variables.
pub fn pem(inputs: &Inputs, settings_hash: &str) -> DaemonSet {
    let spec = &inputs.spec;
    let limit = spec.pem_memory_limit.clone().unwrap_or_else(|| DEFAULT_PEM_MEMORY.to_owned());
    let request = spec.pem_memory_request.clone().unwrap_or_else(|| limit.clone());

    let mut container = common::vizier_container(inputs, Component::Pem, "pem");
    // The query API over this node's store, for Kelvin. Not declared as a container port: on a
    // host-network pod that becomes a hostPort, and the scheduler would then refuse a second
    // Vizier's PEMs (as in the test bed, where every test runs its own) instead of letting them run.
    // The metadata service names the pods of this node's processes (PL_NODE_NAME says which node).
    container.args = Some(vec![
        "--listen".into(),
        format!("0.0.0.0:{PEM_PORT}"),
        "--metadata-addr".into(),
        service_addr(inputs, METADATA_SERVICE, metadata::PORT),
    ]);
    let vars = container.env.get_or_insert_with(Vec::new);
    set_env(vars, env_field("PL_NODE_NAME", "spec.nodeName"));
    // Announced on NATS for Kelvin; the host's address, as the PEM shares the host's network.
    set_env(vars, env_field("PL_POD_IP", "status.podIP"));
    set_env(vars, env("PL_ADVERTISE_ADDR", format!("$(PL_POD_IP):{PEM_PORT}")));
    set_env(vars, env("PL_HOST_PATH", "/host"));
    if let Some(mb) = quantity::mebibytes(&limit) {
        set_env(vars, env("PL_TABLE_STORE_DATA_LIMIT_MB", (mb * TABLE_STORE_PERCENT / 100).to_string()));
    }
    if let Some(clock) = spec.clock_converter {
        let value = serde_json::to_value(clock).ok().and_then(|v| v.as_str().map(str::to_owned));
        set_env(vars, env("PL_CLOCK_CONVERTER", value.unwrap_or_default()));
    }
    if let Some(params) = spec.data_collector_params.as_ref() {
        if let Some(size) = params.datastream_buffer_size {
            set_env(vars, env("PL_DATASTREAM_BUFFER_SIZE", size.to_string()));
        }
        if let Some(size) = params.datastream_buffer_spike_size {
            set_env(vars, env("PL_DATASTREAM_BUFFER_SPIKE_SIZE", size.to_string()));
        }
        if let Some(size) = params.table_store_table_size_limit {
            set_env(vars, env("PL_TABLE_STORE_TABLE_SIZE_LIMIT", size.to_string()));
        }
        // customPEMFlags come last so they override the derived settings above.
        for (name, value) in params.custom_pem_flags.iter().flatten() {
            set_env(vars, env(name, value.clone()));
        }
    }
    container.security_context = Some(SecurityContext { privileged: Some(true), ..Default::default() });
    common::add_health_probes(&mut container);
    container.resources = Some(ResourceRequirements {
        limits: Some(BTreeMap::from([("memory".to_owned(), Quantity(limit))])),
        requests: Some(BTreeMap::from([("memory".to_owned(), Quantity(request))])),
        ..Default::default()
    });
    let mounts = container.volume_mounts.get_or_insert_with(Vec::new);
    mounts.push(VolumeMount {
        name: "host-proc".into(),
        mount_path: "/host/proc".into(),
        read_only: Some(true),
        ..Default::default()
    });
    mounts.push(VolumeMount { name: "host-sys".into(), mount_path: "/sys".into(), ..Default::default() });

    let pod = PodSpec {
        containers: vec![container],
        host_pid: Some(true),
        host_network: Some(true),
        dns_policy: Some("ClusterFirstWithHostNet".into()),
        automount_service_account_token: Some(false),
        termination_grace_period_seconds: Some(10),
        // Collect on control-plane nodes too, as Pixie does.
        tolerations: Some(vec![
            Toleration {
                key: Some("node-role.kubernetes.io/master".into()),
                effect: Some("NoSchedule".into()),
                operator: Some("Exists".into()),
                ..Default::default()
            },
            Toleration {
                key: Some("node-role.kubernetes.io/control-plane".into()),
                effect: Some("NoSchedule".into()),
                operator: Some("Exists".into()),
                ..Default::default()
            },
        ]),
        volumes: Some(vec![common::certs_volume(), host_path("host-proc", "/proc"), host_path("host-sys", "/sys")]),
        ..Default::default()
    };
    DaemonSet {
        metadata: meta(inputs, PEM, Some(Component::Pem)),
        spec: DaemonSetSpec {
            selector: selector(inputs, Component::Pem),
            template: common::pod_template(inputs, settings_hash, PodShape { component: Component::Pem, privileged: true, spec: pod }),
            update_strategy: Some(DaemonSetUpdateStrategy {
                type_: Some("RollingUpdate".into()),
                rolling_update: Some(RollingUpdateDaemonSet {
                    max_unavailable: Some(IntOrString::String("20%".into())),
                    ..Default::default()
                }),
            }),
            ..Default::default()
        },
        ..Default::default()
    }
}

/// The cloud connector registers the Vizier with the cloud and bridges NATS to it. Only rendered
/// when `spec.cloudAddr` is set.
pub fn cloud_connector(inputs: &Inputs, settings_hash: &str) -> Deployment {
    let (secret, key) = inputs.deploy_key_secret();
    let mut container = common::vizier_container(inputs, Component::CloudConnector, "connector");
    // The cloud address (PL_CLOUD_ADDR) and cluster name (PL_CLUSTER_NAME) come from the settings.
    container.args = Some(vec!["--vizier".into(), inputs.name.clone()]);
    let vars = container.env.get_or_insert_with(Vec::new);
    set_env(vars, env_secret("PL_DEPLOY_KEY", &secret, key));
    // Where the Vizier and pl-cluster-secrets are.
    set_env(vars, env_field("POD_NAMESPACE", "metadata.namespace"));
    let mut volumes = vec![common::certs_volume()];
    // The connector trusts the cloud as the operator does.
    match &inputs.cloud_trust {
        Trust::SystemRoots => {}
        Trust::Plaintext => set_env(vars, env("PL_CLOUD_INSECURE", "true")),
        Trust::Ca(_) => {
            set_env(vars, env("PL_CLOUD_CA_FILE", format!("{CLOUD_CA_DIR}/{CLOUD_CA_KEY}")));
            volumes.push(Volume {
                name: "cloud-ca".into(),
                config_map: Some(ConfigMapVolumeSource { name: CLOUD_CA.to_owned(), ..Default::default() }),
                ..Default::default()
            });
            container.volume_mounts.get_or_insert_with(Vec::new).push(VolumeMount {
                name: "cloud-ca".into(),
                mount_path: CLOUD_CA_DIR.into(),
                read_only: Some(true),
                ..Default::default()
            });
        }
    }
    container.ports = grpc_port(CLOUD_CONNECTOR_PORT);
    let pod = PodSpec {
        containers: vec![container],
        service_account_name: Some(CLOUD_CONNECTOR_ACCOUNT.to_owned()),
        volumes: Some(volumes),
        ..Default::default()
    };
    deployment(inputs, CLOUD_CONNECTOR, Component::CloudConnector, settings_hash, pod)
}
