//! The operator against the real control plane: kube-apiserver, controller-manager, scheduler and
//! three kwok nodes. Each test runs its own operator in-process, scoped to a fresh namespace, with a
//! client whose writes are counted (the operator's own tower layer).

use std::collections::{BTreeMap, BTreeSet};
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use k8s_openapi::api::apps::v1::{DaemonSet, Deployment, ReplicaSet, StatefulSet};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{ConfigMap, PersistentVolumeClaim, Pod, Secret, Service, ServiceAccount};
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, Role, RoleBinding};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Client, Resource, ResourceExt};
use pixie_crds::{Vizier, VizierPhase};
use pixie_operator::leader::LeaderSettings;
use pixie_operator::{ApiWriteLayer, Metrics, Settings};
use pixie_tests::{REPO_ROOT, TestCluster, eventually, free_port, http_get};
use k8s_openapi::serde::de::DeserializeOwned;
use serde_json::json;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

const INSTANCE: &str = "app.kubernetes.io/instance";


/// After this many writes every further request hangs: the operator is stuck mid-reconcile, as if
/// the process had frozen, until the test kills it.
#[derive(Clone)]
struct StallAfterWrites {
    limit: u64,
    writes: Arc<AtomicU64>,
}

impl<S> tower::Layer<S> for StallAfterWrites {
    type Service = Stalling<S>;
    fn layer(&self, inner: S) -> Stalling<S> {
        Stalling { inner, gate: self.clone() }
    }
}

#[derive(Clone)]
struct Stalling<S> {
    inner: S,
    gate: StallAfterWrites,
}

impl<S, B> tower::Service<http::Request<B>> for Stalling<S>
where
    S: tower::Service<http::Request<B>>,
    S::Future: Send + 'static,
    S::Response: Send + 'static,
    S::Error: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<S::Response, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        let read = matches!(*request.method(), http::Method::GET | http::Method::HEAD);
        let stalled = self.gate.writes.load(Ordering::SeqCst) >= self.gate.limit;
        if stalled {
            return Box::pin(futures::future::pending());
        }
        if !read {
            self.gate.writes.fetch_add(1, Ordering::SeqCst);
        }
        Box::pin(self.inner.call(request))
    }
}

/// An operator running in this process.
struct Operator {
    task: JoinHandle<Result<(), pixie_operator::Error>>,
    stop: Option<oneshot::Sender<()>>,
    metrics: Arc<Metrics>,
}

async fn kube_config(cluster: &TestCluster) -> kube::Config {
    let kubeconfig = Kubeconfig::read_from(cluster.kubeconfig()).expect("read kubeconfig");
    kube::Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default()).await.expect("kubeconfig")
}

fn settings(ns: &str) -> Settings {
    Settings { namespace: Some(ns.to_owned()), resync: Duration::from_secs(2), ..Settings::default() }
}

impl Operator {
    async fn start(cluster: &TestCluster, settings: Settings) -> Operator {
        Self::start_with(cluster, settings, None).await
    }

    async fn start_with(cluster: &TestCluster, settings: Settings, stall: Option<StallAfterWrites>) -> Operator {
        let metrics = Metrics::new();
        let builder = kube::client::ClientBuilder::try_from(kube_config(cluster).await)
            .expect("client builder")
            .with_layer(&ApiWriteLayer::new(metrics.clone()));
        let client = match stall {
            Some(stall) => builder.with_layer(&stall).build(),
            None => builder.build(),
        };
        let (stop, stopped) = oneshot::channel::<()>();
        let shutdown = async move {
            let _ = stopped.await;
        };
        let task = tokio::spawn(pixie_operator::run(client, settings, metrics.clone(), shutdown));
        Operator { task, stop: Some(stop), metrics }
    }

    /// Graceful shutdown: running reconciles finish.
    async fn stop(mut self) {
        let _ = self.stop.take().expect("running").send(());
        tokio::time::timeout(Duration::from_secs(30), self.task)
            .await
            .expect("the operator stops within 30 s")
            .expect("the operator task did not panic")
            .expect("the operator stops cleanly");
    }

    /// Like a SIGKILL: every future of the operator is dropped wherever it is.
    async fn kill(self) {
        self.task.abort();
        let _ = self.task.await;
    }
}

fn minimal_vizier(name: &str, version: &str) -> Vizier {
    serde_json::from_value(json!({
        "apiVersion": "px.dev/v1alpha1",
        "kind": "Vizier",
        "metadata": {"name": name},
        "spec": {"version": version, "deployKey": "px-dep-00000000-0000-0000-0000-000000000000", "clusterName": "test"}
    }))
    .unwrap()
}

fn condition<'a>(vizier: &'a Vizier, type_: &str) -> Option<&'a Condition> {
    vizier.status.as_ref()?.conditions.iter().find(|c| c.type_ == type_)
}

fn summary(vizier: &Vizier) -> String {
    let status = vizier.status.clone().unwrap_or_default();
    let conditions: Vec<_> =
        status.conditions.iter().map(|c| format!("{}={} {} ({})", c.type_, c.status, c.reason, c.message)).collect();
    format!("version={:?} phase={:?} {}", status.version, status.vizier_phase, conditions.join("; "))
}

/// Waits until the Vizier's status, for its current generation, satisfies `check`.
async fn wait_vizier(api: &Api<Vizier>, name: &str, what: &str, check: impl Fn(&Vizier) -> bool) -> Vizier {
    eventually(what, Duration::from_secs(90), || async {
        let vizier = api.get(name).await.map_err(|e| e.to_string())?;
        let current = vizier.status.as_ref().and_then(|s| s.observed_generation) == vizier.metadata.generation;
        if current && check(&vizier) { Ok(vizier) } else { Err(summary(&vizier)) }
    })
    .await
}

fn is(vizier: &Vizier, type_: &str, status: &str) -> bool {
    condition(vizier, type_).is_some_and(|c| c.status == status)
}

async fn wait_ready(api: &Api<Vizier>, name: &str) -> Vizier {
    wait_vizier(api, name, "Ready=True", |v| is(v, "Ready", "True") && is(v, "Progressing", "False")).await
}

async fn names<K>(client: &Client, ns: &str, selector: &str) -> BTreeSet<String>
where
    K: Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope> + Clone + DeserializeOwned + std::fmt::Debug,
{
    Api::<K>::namespaced(client.clone(), ns)
        .list(&ListParams::default().labels(selector))
        .await
        .unwrap()
        .items
        .iter()
        .map(|o| o.name_any())
        .collect()
}

async fn cluster_names<K>(client: &Client, selector: &str) -> BTreeSet<String>
where
    K: Resource<DynamicType = (), Scope = k8s_openapi::ClusterResourceScope> + Clone + DeserializeOwned + std::fmt::Debug,
{
    Api::<K>::all(client.clone()).list(&ListParams::default().labels(selector)).await.unwrap().items.iter().map(|o| o.name_any()).collect()
}

/// Every object the operator made for the Vizier `name`, as "Kind/name" (pods and ReplicaSets included).
async fn inventory(client: &Client, ns: &str, name: &str, uid: &str) -> BTreeSet<String> {
    let selector = format!("app.kubernetes.io/managed-by=pixie-operator,{INSTANCE}={name}");
    let cluster_selector = format!("px.dev/vizier-uid={uid}");
    let mut all = BTreeSet::new();
    macro_rules! add {
        ($kind:ty, $label:literal) => {
            all.extend(names::<$kind>(client, ns, &selector).await.into_iter().map(|n| format!("{}/{n}", $label)));
        };
    }
    add!(Deployment, "Deployment");
    add!(StatefulSet, "StatefulSet");
    add!(DaemonSet, "DaemonSet");
    add!(Service, "Service");
    add!(ConfigMap, "ConfigMap");
    add!(Secret, "Secret");
    add!(ServiceAccount, "ServiceAccount");
    add!(Role, "Role");
    add!(RoleBinding, "RoleBinding");
    add!(PersistentVolumeClaim, "PersistentVolumeClaim");
    add!(Pod, "Pod");
    // ReplicaSets carry the pod template's labels.
    add!(ReplicaSet, "ReplicaSet");
    all.extend(cluster_names::<ClusterRole>(client, &cluster_selector).await.into_iter().map(|n| format!("ClusterRole/{n}")));
    all.extend(
        cluster_names::<ClusterRoleBinding>(client, &cluster_selector).await.into_iter().map(|n| format!("ClusterRoleBinding/{n}")),
    );
    all
}

async fn pem_pods(client: &Client, ns: &str) -> Vec<Pod> {
    let pods = Api::<Pod>::namespaced(client.clone(), ns)
        .list(&ListParams::default().labels("app.kubernetes.io/component=pem"))
        .await
        .unwrap();
    pods.items.into_iter().filter(|p| p.metadata.deletion_timestamp.is_none()).collect()
}

/// Makes a PEM pod crash-loop: kwok stops managing it, and its container status says CrashLoopBackOff.
async fn crash(client: &Client, ns: &str, pod: &str) {
    let pods = Api::<Pod>::namespaced(client.clone(), ns);
    pods.patch(pod, &PatchParams::default(), &Patch::Merge(json!({"metadata": {"annotations": {"kwok.x-k8s.io/status": "custom"}}})))
        .await
        .unwrap();
    let status = json!({"status": {"containerStatuses": [{
        "name": "pem", "image": "pem", "imageID": "", "ready": false, "restartCount": 4, "started": false,
        "state": {"waiting": {"reason": "CrashLoopBackOff", "message": "back-off restarting failed container"}}
    }]}});
    pods.patch_status(pod, &PatchParams::default(), &Patch::Merge(status)).await.unwrap();
}

/// Repairs a crashed PEM: its container runs again.
async fn repair(client: &Client, ns: &str, pod: &str) {
    let status = json!({"status": {"containerStatuses": [{
        "name": "pem", "image": "pem", "imageID": "", "ready": true, "restartCount": 4, "started": true,
        "state": {"running": {"startedAt": "2026-01-01T00:00:00Z"}}
    }]}});
    Api::<Pod>::namespaced(client.clone(), ns).patch_status(pod, &PatchParams::default(), &Patch::Merge(status)).await.unwrap();
}

async fn setup(prefix: &str) -> (&'static TestCluster, Client, String) {
    let cluster = TestCluster::shared();
    let client = cluster.client().await;
    cluster.install_crds();
    let ns = cluster.fresh_namespace(&client, prefix).await;
    (cluster, client, ns)
}

#[tokio::test]
async fn the_sample_vizier_deploys_every_workload_and_turns_ready() {
    let (cluster, client, ns) = setup("op-sample").await;
    // The sample keeps its deploy key in a Secret of its own.
    let secret: Secret = serde_json::from_value(json!({
        "metadata": {"name": "pixie-deploy-key"}, "stringData": {"deploy-key": "px-dep-sample"}
    }))
    .unwrap();
    Api::<Secret>::namespaced(client.clone(), &ns).create(&PostParams::default(), &secret).await.unwrap();
    let operator = Operator::start(cluster, settings(&ns)).await;
    let sample = format!("{REPO_ROOT}/config/samples/px_v1alpha1_vizier.yaml");
    cluster.kubectl_ok(&["apply", "-n", &ns, "-f", &sample]);
    pixie_tests::register_cluster(&client, &ns).await;

    let viziers = Api::<Vizier>::namespaced(client.clone(), &ns);
    let vizier = wait_ready(&viziers, "pixie").await;
    let status = vizier.status.clone().unwrap();
    assert_eq!(status.version.as_deref(), Some("0.14.15"));
    assert_eq!(status.vizier_phase, Some(VizierPhase::Healthy), "{}", summary(&vizier));
    assert!(is(&vizier, "Degraded", "False"));

    // Every workload, with the PEM on each of the three simulated nodes.
    let selector = format!("{INSTANCE}=pixie");
    let deployments = names::<Deployment>(&client, &ns, &selector).await;
    let expected: BTreeSet<String> =
        ["kelvin", "vizier-cloud-connector", "vizier-metadata", "vizier-query-broker"].map(String::from).into();
    assert_eq!(deployments, expected);
    // No default StorageClass here, so metadata runs as a Deployment without a volume (where Pixie
    // would choose etcd); NATS is the only StatefulSet.
    assert_eq!(names::<StatefulSet>(&client, &ns, &selector).await, ["pl-nats"].map(String::from).into());
    let pem = Api::<DaemonSet>::namespaced(client.clone(), &ns).get("vizier-pem").await.unwrap();
    assert_eq!(pem.status.as_ref().unwrap().desired_number_scheduled, 3);
    let pems = pem_pods(&client, &ns).await;
    let nodes: BTreeSet<_> = pems.iter().filter_map(|p| p.spec.as_ref()?.node_name.clone()).collect();
    assert_eq!(nodes, ["kwok-node-0", "kwok-node-1", "kwok-node-2"].map(String::from).into());
    let image = pems[0].spec.as_ref().unwrap().containers[0].image.clone().unwrap();
    assert_eq!(image, "registry.example.com/pixie-mirror/vizier-pem:0.14.15");

    let table = cluster.kubectl_ok(&["get", "vz", "-n", &ns]);
    let row = table.lines().find(|l| l.starts_with("pixie ")).unwrap_or_else(|| panic!("no row for pixie:\n{table}"));
    let columns: Vec<_> = row.split_whitespace().collect();
    assert_eq!(&columns[1..4], ["True", "0.14.15", "Healthy"], "{table}");

    // Events tell the story of the rollout.
    let events = Api::<k8s_openapi::api::events::v1::Event>::namespaced(client.clone(), &ns)
        .list(&ListParams::default())
        .await
        .unwrap();
    let reasons: BTreeSet<_> = events.items.iter().filter_map(|e| e.reason.clone()).collect();
    assert!(reasons.contains("Deploying") && reasons.contains("Available"), "{reasons:?}");
    operator.stop().await;
}

#[tokio::test]
async fn failing_pems_flip_degraded_and_repairing_them_flips_it_back() {
    let (cluster, client, ns) = setup("op-degraded").await;
    let operator = Operator::start(cluster, settings(&ns)).await;
    let viziers = Api::<Vizier>::namespaced(client.clone(), &ns);
    viziers.create(&PostParams::default(), &minimal_vizier("pixie", "0.2.0")).await.unwrap();
    wait_ready(&viziers, "pixie").await;
    let pems: Vec<String> = pem_pods(&client, &ns).await.iter().map(|p| p.name_any()).collect();
    assert_eq!(pems.len(), 3);

    // Two of three (67% > 25%): degraded, still queryable.
    crash(&client, &ns, &pems[0]).await;
    crash(&client, &ns, &pems[1]).await;
    let vizier = wait_vizier(&viziers, "pixie", "Degraded PEMsHighFailureRate", |v| {
        condition(v, "Degraded").is_some_and(|c| c.status == "True" && c.reason == "PEMsHighFailureRate")
    })
    .await;
    assert!(is(&vizier, "Ready", "True"), "{}", summary(&vizier));
    let status = vizier.status.unwrap();
    assert_eq!(status.vizier_phase, Some(VizierPhase::Degraded));
    assert_eq!(status.vizier_reason.as_deref(), Some("PEMsHighFailureRate"));

    // All of them: no longer Ready.
    crash(&client, &ns, &pems[2]).await;
    let vizier = wait_vizier(&viziers, "pixie", "Degraded PEMsAllFailing", |v| {
        condition(v, "Degraded").is_some_and(|c| c.reason == "PEMsAllFailing")
    })
    .await;
    assert_eq!(condition(&vizier, "Ready").map(|c| c.reason.as_str()), Some("PEMsAllFailing"));
    assert_eq!(vizier.status.unwrap().vizier_phase, Some(VizierPhase::Unhealthy));

    for pem in &pems {
        repair(&client, &ns, pem).await;
    }
    let vizier = wait_vizier(&viziers, "pixie", "repaired", |v| is(v, "Degraded", "False") && is(v, "Ready", "True")).await;
    assert_eq!(vizier.status.unwrap().vizier_phase, Some(VizierPhase::Healthy));
    let warnings = Api::<k8s_openapi::api::events::v1::Event>::namespaced(client.clone(), &ns)
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .filter(|e| e.type_.as_deref() == Some("Warning"))
        .filter_map(|e| e.reason)
        .collect::<BTreeSet<_>>();
    assert!(warnings.contains("PEMsHighFailureRate") && warnings.contains("PEMsAllFailing"), "{warnings:?}");
    operator.stop().await;
}

#[tokio::test]
async fn spec_edits_converge_and_an_upgrade_reports_progressing() {
    let (cluster, client, ns) = setup("op-edit").await;
    let operator = Operator::start(cluster, settings(&ns)).await;
    let viziers = Api::<Vizier>::namespaced(client.clone(), &ns);
    viziers.create(&PostParams::default(), &minimal_vizier("pixie", "0.2.0")).await.unwrap();
    wait_ready(&viziers, "pixie").await;
    let daemonsets = Api::<DaemonSet>::namespaced(client.clone(), &ns);
    let deployments = Api::<Deployment>::namespaced(client.clone(), &ns);

    let edit = json!({"spec": {
        "pemMemoryLimit": "3Gi",
        "pod": {"tolerations": [{"key": "dedicated", "operator": "Equal", "value": "pixie", "effect": "NoSchedule"}]},
        "patches": {"kelvin": "{\"spec\": {\"template\": {\"spec\": {\"containers\": [{\"name\": \"kelvin\", \"env\": [{\"name\": \"PL_EXTRA\", \"value\": \"1\"}]}]}}}}"}
    }});
    viziers.patch("pixie", &PatchParams::default(), &Patch::Merge(&edit)).await.unwrap();
    wait_ready(&viziers, "pixie").await;
    let pem = daemonsets.get("vizier-pem").await.unwrap();
    let pod = pem.spec.template.spec.as_ref().unwrap();
    let limits = pod.containers[0].resources.as_ref().unwrap().limits.clone().unwrap();
    assert_eq!(limits["memory"].0, "3Gi");
    assert!(pod.tolerations.as_ref().unwrap().iter().any(|t| t.key.as_deref() == Some("dedicated")));
    let kelvin = deployments.get("kelvin").await.unwrap();
    let container = &kelvin.spec.template.spec.as_ref().unwrap().containers[0];
    assert!(container.env.as_ref().unwrap().iter().any(|e| e.name == "PL_EXTRA"));
    assert_eq!(container.image.as_deref(), Some("ghcr.io/pixie-rs/vizier-kelvin:0.2.0"), "a patch keeps the rest");
    // PEM pods were rolled with the new limit.
    eventually("PEM pods with the new limit", Duration::from_secs(60), || async {
        let pods = pem_pods(&client, &ns).await;
        let limits: Vec<_> = pods
            .iter()
            .map(|p| p.spec.as_ref().unwrap().containers[0].resources.as_ref().unwrap().limits.clone().unwrap()["memory"].0.clone())
            .collect();
        if limits.len() == 3 && limits.iter().all(|l| l == "3Gi") { Ok(()) } else { Err(format!("{limits:?}")) }
    })
    .await;

    // Removing the patch removes what it added.
    viziers.patch("pixie", &PatchParams::default(), &Patch::Merge(json!({"spec": {"patches": null}}))).await.unwrap();
    wait_ready(&viziers, "pixie").await;
    let kelvin = deployments.get("kelvin").await.unwrap();
    let env = kelvin.spec.template.spec.as_ref().unwrap().containers[0].env.clone().unwrap();
    assert!(!env.iter().any(|e| e.name == "PL_EXTRA"), "{env:?}");

    // Upgrade: every component rolls; Progressing is reported until it is done.
    viziers.patch("pixie", &PatchParams::default(), &Patch::Merge(json!({"spec": {"version": "0.3.0"}}))).await.unwrap();
    let vizier = wait_vizier(&viziers, "pixie", "upgraded", |v| {
        is(v, "Ready", "True") && v.status.as_ref().and_then(|s| s.version.as_deref()) == Some("0.3.0")
    })
    .await;
    assert_eq!(vizier.status.unwrap().vizier_phase, Some(VizierPhase::Healthy));
    let pods = Api::<Pod>::namespaced(client.clone(), &ns).list(&ListParams::default().labels(&format!("{INSTANCE}=pixie"))).await.unwrap();
    for pod in pods.items.iter().filter(|p| p.metadata.deletion_timestamp.is_none()) {
        let image = pod.spec.as_ref().unwrap().containers[0].image.clone().unwrap();
        if image.contains("vizier-") {
            assert!(image.ends_with(":0.3.0"), "{} still runs {image}", pod.name_any());
        }
    }
    let events = Api::<k8s_openapi::api::events::v1::Event>::namespaced(client.clone(), &ns).list(&ListParams::default()).await.unwrap();
    assert!(
        events.items.iter().any(|e| e.reason.as_deref() == Some("Upgrading")
            && e.note.as_deref().is_some_and(|n| n.starts_with("Progressing is True"))),
        "no Progressing=True Upgrading event"
    );
    operator.stop().await;
}

#[tokio::test]
async fn deleting_the_vizier_leaves_nothing_behind() {
    let (cluster, client, ns) = setup("op-delete").await;
    let operator = Operator::start(cluster, settings(&ns)).await;
    let viziers = Api::<Vizier>::namespaced(client.clone(), &ns);
    viziers.create(&PostParams::default(), &minimal_vizier("pixie", "0.2.0")).await.unwrap();
    let vizier = wait_ready(&viziers, "pixie").await;
    let uid = vizier.uid().unwrap();
    let before = inventory(&client, &ns, "pixie", &uid).await;
    for kind in ["Deployment/", "StatefulSet/", "DaemonSet/", "Service/", "ConfigMap/", "Secret/", "ServiceAccount/",
        "Role/", "RoleBinding/", "ClusterRole/", "ClusterRoleBinding/", "Pod/"] {
        assert!(before.iter().any(|o| o.starts_with(kind)), "nothing of {kind} was created: {before:?}");
    }

    viziers.delete("pixie", &DeleteParams::default()).await.unwrap();
    eventually("the Vizier is gone", Duration::from_secs(60), || async {
        match viziers.get_opt("pixie").await.map_err(|e| e.to_string())? {
            None => Ok(()),
            Some(v) => Err(format!("finalizers {:?}", v.finalizers())),
        }
    })
    .await;
    eventually("every object is gone", Duration::from_secs(90), || async {
        let left = inventory(&client, &ns, "pixie", &uid).await;
        if left.is_empty() { Ok(()) } else { Err(format!("{left:?}")) }
    })
    .await;
    // Also anything in the namespace not found by label: only the namespace's own objects remain.
    let configmaps = names::<ConfigMap>(&client, &ns, "").await;
    assert_eq!(configmaps, ["kube-root-ca.crt".to_owned()].into());
    let secrets = names::<Secret>(&client, &ns, "").await;
    assert!(secrets.is_empty(), "{secrets:?}");
    operator.stop().await;
}

#[tokio::test]
async fn a_killed_operator_converges_without_duplicates_and_idles_without_writes() {
    let (cluster, client, ns) = setup("op-kill").await;
    let viziers = Api::<Vizier>::namespaced(client.clone(), &ns);
    viziers.create(&PostParams::default(), &minimal_vizier("pixie", "0.2.0")).await.unwrap();

    // The first operator adds its finalizer, creates the secrets and applies a few objects, then freezes.
    let stall = StallAfterWrites { limit: 8, writes: Arc::new(AtomicU64::new(0)) };
    let first = Operator::start_with(cluster, settings(&ns), Some(stall.clone())).await;
    eventually("the first operator is stuck mid-reconcile", Duration::from_secs(60), || async {
        let writes = stall.writes.load(Ordering::SeqCst);
        if writes >= 8 { Ok(()) } else { Err(format!("{writes} writes")) }
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    first.kill().await;
    let secrets = Api::<Secret>::namespaced(client.clone(), &ns);
    let tls_before = secrets.get("service-tls-certs").await.expect("created before the kill");
    let workloads_before = names::<Deployment>(&client, &ns, "").await.len() + names::<DaemonSet>(&client, &ns, "").await.len();
    assert!(workloads_before < 4, "the first operator was killed before it applied every workload");

    let second = Operator::start(cluster, settings(&ns)).await;
    let vizier = wait_ready(&viziers, "pixie").await;
    assert_eq!(vizier.finalizers(), ["px.dev/cluster-resources"], "one finalizer, not two");
    let tls_after = secrets.get("service-tls-certs").await.unwrap();
    assert_eq!(tls_after.data, tls_before.data, "generated secrets are kept, not regenerated");
    // Let pods settle, then check there is exactly one of everything.
    eventually("one ReplicaSet per Deployment and the expected pods", Duration::from_secs(60), || async {
        let uid = vizier.uid().unwrap();
        let all = inventory(&client, &ns, "pixie", &uid).await;
        let count = |prefix: &str| all.iter().filter(|o| o.starts_with(prefix)).count();
        let found = (count("Deployment/"), count("ReplicaSet/"), count("Pod/"));
        // 3 Deployments (metadata, broker, kelvin) with one ReplicaSet each; pods: 3 of them,
        // 1 NATS, 3 PEMs.
        if found == (3, 3, 7) { Ok(()) } else { Err(format!("{found:?}: {all:?}")) }
    })
    .await;

    // Steady state: reconciles keep coming (resync every 2 s, and a touch of the Vizier), writes do not.
    let writes = second.metrics.api_writes_total();
    let reconciles = second.metrics.reconciles_total();
    viziers
        .patch("pixie", &PatchParams::default(), &Patch::Merge(json!({"metadata": {"annotations": {"touched": "yes"}}})))
        .await
        .unwrap();
    eventually("three more reconciles", Duration::from_secs(30), || async {
        let done = second.metrics.reconciles_total() - reconciles;
        if done >= 3 { Ok(()) } else { Err(format!("{done} reconciles")) }
    })
    .await;
    assert_eq!(
        second.metrics.api_writes_total(),
        writes,
        "a reconcile with nothing to change must not write:\n{}",
        second.metrics.encode()
    );
    second.stop().await;
}

#[tokio::test]
async fn an_invalid_spec_is_reported_and_waits_for_a_fix() {
    let (cluster, client, ns) = setup("op-invalid").await;
    let operator = Operator::start(cluster, settings(&ns)).await;
    let viziers = Api::<Vizier>::namespaced(client.clone(), &ns);
    let mut vizier = minimal_vizier("pixie", "0.2.0");
    vizier.spec.patches = Some(BTreeMap::from([("kelvin".to_owned(), r#"{"spec": {"replicas": "many"}}"#.to_owned())]));
    viziers.create(&PostParams::default(), &vizier).await.unwrap();
    let vizier = wait_vizier(&viziers, "pixie", "InvalidSpec", |v| {
        condition(v, "Ready").is_some_and(|c| c.status == "False" && c.reason == "InvalidSpec")
    })
    .await;
    assert!(condition(&vizier, "Ready").unwrap().message.contains("kelvin"), "{}", summary(&vizier));
    assert_eq!(vizier.status.as_ref().unwrap().reconciliation_phase, Some(pixie_crds::ReconciliationPhase::Failed));
    assert!(names::<Deployment>(&client, &ns, "").await.is_empty(), "nothing is deployed from an invalid spec");
    // Waiting for a change means no retries: once the echo of our own status write has been
    // reconciled, the failure count stays put although the resync period is 2 s.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let failures = operator.metrics.encode();
    tokio::time::sleep(Duration::from_secs(5)).await;
    let count = |text: &str| text.lines().find(|l| l.contains("reason=\"invalid_spec\"")).map(str::to_owned);
    assert_eq!(count(&operator.metrics.encode()), count(&failures));

    viziers.patch("pixie", &PatchParams::default(), &Patch::Merge(json!({"spec": {"patches": null}}))).await.unwrap();
    wait_ready(&viziers, "pixie").await;
    operator.stop().await;
}

#[tokio::test]
async fn certificates_near_their_expiry_are_renewed_from_the_same_ca_and_roll_the_pods() {
    use k8s_openapi::jiff::{Timestamp, ToSpan};
    let (cluster, client, ns) = setup("op-renew").await;
    let operator = Operator::start(cluster, settings(&ns)).await;
    let viziers = Api::<Vizier>::namespaced(client.clone(), &ns);
    viziers.create(&PostParams::default(), &minimal_vizier("pixie", "0.2.0")).await.unwrap();
    wait_ready(&viziers, "pixie").await;

    let secrets = Api::<Secret>::namespaced(client.clone(), &ns);
    let deployments = Api::<Deployment>::namespaced(client.clone(), &ns);
    fn pod_hash(deployment: &Deployment) -> String {
        let annotations = deployment.spec.template.metadata.as_ref().and_then(|m| m.annotations.as_ref());
        annotations.and_then(|a| a.get("px.dev/settings-hash")).cloned().unwrap_or_default()
    }
    let before = secrets.get("service-tls-certs").await.unwrap();
    let hash_before = pod_hash(&deployments.get("kelvin").await.unwrap());
    assert!(secrets.get_opt("service-tls-ca").await.unwrap().is_some(), "the CA is kept for renewals");

    // Ten days left: inside the 30-day renewal window.
    let soon = Timestamp::now().checked_add(240.hours()).unwrap();
    secrets
        .patch(
            "service-tls-certs",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"annotations": {"px.dev/not-after": soon.to_string()}}})),
        )
        .await
        .unwrap();
    let renewed = eventually("the certificates are renewed", Duration::from_secs(60), || async {
        let secret = secrets.get("service-tls-certs").await.map_err(|e| e.to_string())?;
        let not_after: Timestamp = secret.annotations()["px.dev/not-after"].parse().unwrap();
        if not_after.duration_since(Timestamp::now()).as_hours() > 300 * 24 { Ok(secret) } else { Err(format!("expires {not_after}")) }
    })
    .await;
    let (old, new) = (before.data.unwrap(), renewed.data.unwrap());
    assert_eq!(old["ca.crt"], new["ca.crt"], "the same CA: pods not yet rolled keep trusting the new certificates");
    assert_ne!(old["server.crt"], new["server.crt"]);
    assert_ne!(old["client.key"], new["client.key"]);

    // The pods roll onto them, and the Vizier says why.
    eventually("kelvin's pod template changed", Duration::from_secs(30), || async {
        let hash = pod_hash(&deployments.get("kelvin").await.map_err(|e| e.to_string())?);
        if hash != hash_before { Ok(()) } else { Err(hash) }
    })
    .await;
    let events = Api::<k8s_openapi::api::events::v1::Event>::namespaced(client.clone(), &ns)
        .list(&ListParams::default())
        .await
        .unwrap();
    assert!(events.items.iter().any(|e| e.reason.as_deref() == Some("CertificatesRenewed")), "an Event says so");
    wait_ready(&viziers, "pixie").await;

    // Renewed once: the next reconciles leave them alone.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let again = secrets.get("service-tls-certs").await.unwrap();
    assert_eq!(again.metadata.resource_version, renewed.metadata.resource_version);
    operator.stop().await;
}

#[tokio::test]
async fn only_the_lease_holder_reconciles_and_serves_metrics() {
    let (cluster, client, ns) = setup("op-lease").await;
    let leader = |identity: &str| LeaderSettings {
        namespace: ns.clone(),
        lease_name: "pixie-operator".into(),
        identity: identity.into(),
        duration_secs: 6,
        grace_secs: 2,
    };
    let port = free_port();
    let first = Operator::start(
        cluster,
        Settings { leader: Some(leader("first")), metrics_addr: Some(([127, 0, 0, 1], port).into()), ..settings(&ns) },
    )
    .await;
    let viziers = Api::<Vizier>::namespaced(client.clone(), &ns);
    viziers.create(&PostParams::default(), &minimal_vizier("pixie", "0.2.0")).await.unwrap();
    wait_ready(&viziers, "pixie").await;
    let lease = Api::<Lease>::namespaced(client.clone(), &ns).get("pixie-operator").await.unwrap();
    assert_eq!(lease.spec.unwrap().holder_identity.as_deref(), Some("first"));

    let (code, body) = http_get(([127, 0, 0, 1], port).into(), "/metrics").await;
    assert_eq!(code, 200, "{body}");
    assert!(body.contains("pixie_operator_reconciles_total") && body.contains("pixie_operator_leader 1"), "{body}");
    assert!(body.contains("pixie_operator_api_writes_total{method=\"PATCH\",resource=\"deployments\"}"), "{body}");
    assert!(body.contains("pixie_operator_reconcile_duration_seconds_bucket"), "{body}");
    assert_eq!(http_get(([127, 0, 0, 1], port).into(), "/healthz").await.0, 200);
    assert_eq!(http_get(([127, 0, 0, 1], port).into(), "/readyz").await.0, 200);

    let second = Operator::start(cluster, Settings { leader: Some(leader("second")), ..settings(&ns) }).await;
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert_eq!(second.metrics.reconciles_total(), 0, "a standby must not reconcile");

    // The leader steps down (releasing the lease); the standby takes over and reconciles.
    first.stop().await;
    eventually("the standby reconciles", Duration::from_secs(30), || async {
        let n = second.metrics.reconciles_total();
        if n > 0 { Ok(()) } else { Err("no reconcile yet".to_owned()) }
    })
    .await;
    let lease = Api::<Lease>::namespaced(client.clone(), &ns).get("pixie-operator").await.unwrap();
    assert_eq!(lease.spec.unwrap().holder_identity.as_deref(), Some("second"));
    second.stop().await;
}

/// `make bench-operator`: seconds from `kubectl apply` of the sample Vizier to Ready=True, and the
/// writes the operator makes at steady state over 30 s.
#[tokio::test]
#[ignore = "benchmark; run with make bench-operator"]
async fn bench_operator_apply_to_ready() {
    let (cluster, client, ns) = setup("op-bench").await;
    let secret: Secret = serde_json::from_value(json!({
        "metadata": {"name": "pixie-deploy-key"}, "stringData": {"deploy-key": "px-dep-bench"}
    }))
    .unwrap();
    Api::<Secret>::namespaced(client.clone(), &ns).create(&PostParams::default(), &secret).await.unwrap();
    // A steady-state check every 10 s, so the window below holds a few reconciles with nothing to do.
    let operator = Operator::start(cluster, Settings { resync: Duration::from_secs(10), ..settings(&ns) }).await;
    tokio::time::sleep(Duration::from_secs(1)).await;

    let viziers = Api::<Vizier>::namespaced(client.clone(), &ns);
    let sample = format!("{REPO_ROOT}/config/samples/px_v1alpha1_vizier.yaml");
    let started = Instant::now();
    cluster.kubectl_ok(&["apply", "-n", &ns, "-f", &sample]);
    // The connector's part, as soon as the operator has created the Secret it writes to.
    pixie_tests::register_cluster(&client, &ns).await;
    eventually("Ready", Duration::from_secs(120), || async {
        let vizier = viziers.get("pixie").await.map_err(|e| e.to_string())?;
        if is(&vizier, "Ready", "True") { Ok(()) } else { Err(summary(&vizier)) }
    })
    .await;
    let to_ready = started.elapsed();
    let writes_to_ready = operator.metrics.api_writes_total();

    // Let the last pod updates land, then measure.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let writes = operator.metrics.api_writes_total();
    let reconciles = operator.metrics.reconciles_total();
    let window = Duration::from_secs(30);
    tokio::time::sleep(window).await;
    let steady_writes = operator.metrics.api_writes_total() - writes;
    let steady_reconciles = operator.metrics.reconciles_total() - reconciles;
    println!("operator bench: kubectl apply -> Ready=True in {:.2} s ({writes_to_ready} API writes)", to_ready.as_secs_f64());
    println!(
        "operator bench: steady state over {} s: {steady_writes} API writes, {steady_reconciles} reconciles",
        window.as_secs()
    );
    operator.stop().await;
}
