//! Pods with their containers and the Services selecting them, built from Kubernetes objects, and
//! whether each has stopped (phase Succeeded/Failed, or deleted: see [`crate::history`]).

use std::collections::{BTreeMap, HashMap};

use k8s_openapi::api::core::v1::{ContainerStatus, Pod, PodStatus, Service};
use serde::{Deserialize, Serialize};

use crate::cgroup::strip_runtime;
use crate::proto;

// Serialized in the terminated-pod history file (`crate::history`): fields added later need
// `#[serde(default)]` so that older files still load.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PodInfo {
    pub uid: String,
    pub name: String,
    pub namespace: String,
    pub node_name: String,
    pub pod_ip: String,
    pub containers: Vec<ContainerInfo>,
    /// `namespace/name` of each Service selecting the pod, sorted.
    pub services: Vec<String>,
    /// Deleted, or in phase Succeeded/Failed.
    #[serde(default)]
    pub terminated: bool,
    /// When it stopped (ms since the Unix epoch), when known: the last container's finish time for
    /// a completed pod, when the service saw it deleted otherwise.
    #[serde(default)]
    pub stopped_at_unix_ms: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContainerInfo {
    pub name: String,
    /// Without the runtime prefix; `None` until the kubelet reports it.
    pub id: Option<String>,
}

impl PodInfo {
    /// Pixie's pod name: `namespace/name`.
    pub fn qualified_name(&self) -> String {
        format!("{}/{}", self.namespace, self.name)
    }

    /// Pixie's `ctx['service']`: the one service, or a JSON array of them when several select the
    /// pod, or empty when none does.
    pub fn service_text(&self) -> Option<String> {
        match self.services.as_slice() {
            [] => None,
            [one] => Some(one.clone()),
            many => Some(serde_json::Value::from(many.to_vec()).to_string()),
        }
    }
}

/// Each namespace's Services as (`namespace/name`, selector).
type SelectorsByNamespace<'a> = HashMap<&'a str, Vec<(String, &'a BTreeMap<String, String>)>>;

/// Pods by container ID.
#[derive(Debug, Clone, Default)]
pub struct PodIndex {
    pods: Vec<PodInfo>,
    by_container: HashMap<String, (usize, usize)>,
}

impl PodIndex {
    /// Indexes `pods`, each with the `services` of its namespace whose selector matches its labels.
    pub fn build<'p, 's>(
        pods: impl IntoIterator<Item = &'p Pod>,
        services: impl IntoIterator<Item = &'s Service>,
    ) -> Self {
        let mut selectors = SelectorsByNamespace::new();
        for service in services {
            let (Some(ns), Some(name)) = (&service.metadata.namespace, &service.metadata.name)
            else {
                continue;
            };
            // A Service without a selector (or an empty one) selects no pod.
            let Some(selector) = service.spec.as_ref().and_then(|s| s.selector.as_ref()) else {
                continue;
            };
            if !selector.is_empty() {
                selectors
                    .entry(ns)
                    .or_default()
                    .push((format!("{ns}/{name}"), selector));
            }
        }
        Self::from_pods(pods.into_iter().filter_map(|pod| pod_info(pod, &selectors)))
    }

    /// Indexes pods already resolved (a node's cache, from the metadata API).
    pub fn from_pods(pods: impl IntoIterator<Item = PodInfo>) -> Self {
        let pods: Vec<PodInfo> = pods.into_iter().collect();
        let mut by_container = HashMap::new();
        for (p, pod) in pods.iter().enumerate() {
            for (c, container) in pod.containers.iter().enumerate() {
                if let Some(id) = &container.id {
                    by_container.insert(id.clone(), (p, c));
                }
            }
        }
        PodIndex { pods, by_container }
    }

    pub fn pods(&self) -> &[PodInfo] {
        &self.pods
    }

    pub fn into_pods(self) -> Vec<PodInfo> {
        self.pods
    }

    pub fn by_container_id(&self, id: &str) -> Option<(&PodInfo, &ContainerInfo)> {
        let &(p, c) = self.by_container.get(id)?;
        let pod = &self.pods[p];
        Some((pod, &pod.containers[c]))
    }
}

/// Init containers first, then the others; a container not yet started has no status.
fn container_statuses(status: Option<&PodStatus>) -> impl Iterator<Item = &ContainerStatus> {
    status.into_iter().flat_map(|s| {
        s.init_container_statuses
            .iter()
            .flatten()
            .chain(s.container_statuses.iter().flatten())
    })
}

fn pod_info(pod: &Pod, selectors: &SelectorsByNamespace<'_>) -> Option<PodInfo> {
    let meta = &pod.metadata;
    let namespace = meta.namespace.clone()?;
    let empty = BTreeMap::new();
    let labels = meta.labels.as_ref().unwrap_or(&empty);
    let mut services: Vec<String> = selectors
        .get(namespace.as_str())
        .into_iter()
        .flatten()
        .filter(|(_, selector)| selector.iter().all(|(k, v)| labels.get(k) == Some(v)))
        .map(|(name, _)| name.clone())
        .collect();
    services.sort();
    let status = pod.status.as_ref();
    let terminated = matches!(
        status.and_then(|s| s.phase.as_deref()),
        Some("Succeeded" | "Failed")
    );
    // A completed pod stopped when its last container finished.
    let stopped_at_unix_ms = terminated
        .then(|| {
            container_statuses(status)
                .filter_map(|c| c.state.as_ref()?.terminated.as_ref()?.finished_at.as_ref())
                .filter_map(|t| u64::try_from(t.0.as_millisecond()).ok())
                .max()
        })
        .flatten();
    // Init containers run processes too; a container not yet started has no status.
    let containers = container_statuses(status)
        .map(|c| ContainerInfo {
            name: c.name.clone(),
            id: c
                .container_id
                .as_deref()
                .and_then(strip_runtime)
                .map(str::to_owned),
        })
        .collect();
    Some(PodInfo {
        uid: meta.uid.clone().unwrap_or_default(),
        name: meta.name.clone()?,
        namespace,
        node_name: pod
            .spec
            .as_ref()
            .and_then(|s| s.node_name.clone())
            .unwrap_or_default(),
        pod_ip: status.and_then(|s| s.pod_ip.clone()).unwrap_or_default(),
        containers,
        services,
        terminated,
        stopped_at_unix_ms,
    })
}

impl From<PodInfo> for proto::Pod {
    fn from(p: PodInfo) -> Self {
        proto::Pod {
            uid: p.uid,
            name: p.name,
            namespace: p.namespace,
            node_name: p.node_name,
            pod_ip: p.pod_ip,
            containers: p
                .containers
                .into_iter()
                .map(|c| proto::Container {
                    name: c.name,
                    id: c.id.unwrap_or_default(),
                })
                .collect(),
            services: p.services,
            terminated: p.terminated,
            stopped_at_unix_ms: p.stopped_at_unix_ms.unwrap_or(0),
        }
    }
}

impl From<proto::Pod> for PodInfo {
    fn from(p: proto::Pod) -> Self {
        PodInfo {
            uid: p.uid,
            name: p.name,
            namespace: p.namespace,
            node_name: p.node_name,
            pod_ip: p.pod_ip,
            containers: p
                .containers
                .into_iter()
                .map(|c| ContainerInfo {
                    name: c.name,
                    id: Some(c.id).filter(|id| !id.is_empty()),
                })
                .collect(),
            services: p.services,
            terminated: p.terminated,
            stopped_at_unix_ms: Some(p.stopped_at_unix_ms).filter(|&t| t != 0),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(
        ns: &str,
        name: &str,
        labels: &[(&str, &str)],
        containers: &[(&str, Option<&str>)],
    ) -> Pod {
        serde_json::from_value(serde_json::json!({
            "metadata": {
                "namespace": ns, "name": name, "uid": format!("uid-{name}"),
                "labels": labels.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect::<BTreeMap<_, _>>(),
            },
            "spec": { "nodeName": "node-a", "containers": [] },
            "status": {
                "podIP": "10.0.0.7",
                "containerStatuses": containers.iter().map(|(n, id)| serde_json::json!({
                    "name": n, "containerID": id, "image": "x", "imageID": "", "ready": true, "restartCount": 0,
                })).collect::<Vec<_>>(),
            },
        }))
        .unwrap()
    }

    fn service(ns: &str, name: &str, selector: Option<&[(&str, &str)]>) -> Service {
        let selector = selector.map(|s| {
            s.iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect::<BTreeMap<_, _>>()
        });
        serde_json::from_value(serde_json::json!({
            "metadata": { "namespace": ns, "name": name },
            "spec": { "selector": selector },
        }))
        .unwrap()
    }

    #[test]
    fn services_select_pods_of_their_namespace_by_every_label() {
        let pods = [
            pod(
                "shop",
                "web-1",
                &[("app", "web"), ("tier", "front")],
                &[("nginx", Some("containerd://aa"))],
            ),
            pod("other", "web-2", &[("app", "web")], &[]),
        ];
        let services = [
            service("shop", "web", Some(&[("app", "web")])),
            service("shop", "front", Some(&[("app", "web"), ("tier", "front")])),
            service("shop", "back", Some(&[("app", "web"), ("tier", "back")])),
            service("shop", "headless-external", None),
            service("shop", "empty-selector", Some(&[])),
        ];
        let index = PodIndex::build(&pods, &services);
        assert_eq!(index.pods()[0].services, ["shop/front", "shop/web"]);
        assert!(
            index.pods()[1].services.is_empty(),
            "a service selects only its own namespace"
        );
    }

    #[test]
    fn containers_are_found_by_id_without_the_runtime_prefix() {
        let pods = [pod(
            "shop",
            "web-1",
            &[],
            &[("nginx", Some("containerd://aa11")), ("side", None)],
        )];
        let index = PodIndex::build(&pods, &[]);
        let (found, container) = index.by_container_id("aa11").unwrap();
        assert_eq!(found.qualified_name(), "shop/web-1");
        assert_eq!(found.node_name, "node-a");
        assert_eq!(found.pod_ip, "10.0.0.7");
        assert_eq!(container.name, "nginx");
        assert_eq!(
            found.containers[1],
            ContainerInfo {
                name: "side".into(),
                id: None
            }
        );
        assert!(index.by_container_id("containerd://aa11").is_none());
    }

    #[test]
    fn service_text_is_one_name_or_a_json_array() {
        let mut info = PodIndex::build(&[pod("ns", "p", &[], &[])], &[]).pods()[0].clone();
        assert_eq!(info.service_text(), None);
        info.services = vec!["ns/a".into()];
        assert_eq!(info.service_text().as_deref(), Some("ns/a"));
        info.services = vec!["ns/a".into(), "ns/b".into()];
        assert_eq!(info.service_text().as_deref(), Some(r#"["ns/a","ns/b"]"#));
    }

    #[test]
    fn a_completed_pod_is_terminated_since_its_last_container_finished() {
        let mut done = pod("jobs", "job-1", &[], &[("main", Some("containerd://cc"))]);
        let status = done.status.as_mut().unwrap();
        status.phase = Some("Succeeded".into());
        status.container_statuses.as_mut().unwrap()[0].state = Some(
            serde_json::from_value(serde_json::json!({
                "terminated": { "exitCode": 0, "finishedAt": "2025-01-02T03:04:05Z" },
            }))
            .unwrap(),
        );
        let mut running = pod("jobs", "job-2", &[], &[]);
        running.status.as_mut().unwrap().phase = Some("Running".into());
        let mut failed = pod("jobs", "job-3", &[], &[]);
        failed.status.as_mut().unwrap().phase = Some("Failed".into());
        let index = PodIndex::build(&[done, running, failed], &[]);
        let [done, running, failed] = index.pods() else {
            panic!("{index:?}")
        };
        assert!(done.terminated);
        assert_eq!(done.stopped_at_unix_ms, Some(1_735_787_045_000));
        assert!(!running.terminated);
        assert_eq!(running.stopped_at_unix_ms, None);
        // Failed before any container ran: terminated, stop time unknown.
        assert!(failed.terminated);
        assert_eq!(failed.stopped_at_unix_ms, None);
    }

    #[test]
    fn pods_survive_the_round_trip_through_the_api() {
        let pods = [pod(
            "shop",
            "web-1",
            &[("app", "web")],
            &[("nginx", Some("docker://bb")), ("side", None)],
        )];
        let info = PodIndex::build(&pods, &[service("shop", "web", Some(&[("app", "web")]))])
            .pods()[0]
            .clone();
        assert_eq!(PodInfo::from(proto::Pod::from(info.clone())), info);
        let gone = PodInfo {
            terminated: true,
            stopped_at_unix_ms: Some(1_700_000_000_000),
            ..info
        };
        let wire = proto::Pod::from(gone.clone());
        assert!(wire.terminated);
        assert_eq!(PodInfo::from(wire), gone);
    }
}
