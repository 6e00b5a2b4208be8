//! The operator's Cloud version source against the real control plane: an artifact tracker served
//! in-process over TLS with a private CA (the operator trusts it through `--cloud-ca-file`), and
//! operators scoped to fresh namespaces. An unpinned Vizier with a cloud deploys the tracker's latest
//! release, upgrades when a newer one is published, and a tracker outage only stops first deploys.
//! A Vizier with a cloud is Ready only once its connector has registered it (the cluster id in
//! pl-cluster-secrets), and the connector trusts the cloud as the operator does.

use std::path::{Path, PathBuf};
use std::time::Duration;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::api::{Api, ListParams, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::Client;
use pixie_cloud::tracker::{self, ServerCert, Versions};
use pixie_crds::Vizier;
use pixie_operator::version::CloudSettings;
use pixie_operator::{ApiWriteLayer, Metrics, Settings};
use pixie_tests::TestCluster;
use serde_json::json;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

const RELEASES: &str = "
- version: 0.14.2
  timestamp: 2024-06-01T00:00:00Z
- version: 0.14.15
  timestamp: 2025-01-10T12:00:00Z
  changelog: Faster PEM start-up.
# A pre-release is never deployed by itself.
- version: 0.16.0-rc1
  timestamp: 2025-02-01T00:00:00Z
";

const NEWER: &str = "
- version: 0.15.0
  timestamp: 2025-03-01T00:00:00Z
  changelog: A newer release.
";

/// The cloud's TLS: (CA PEM, server certificate for localhost).
fn private_ca() -> (String, ServerCert) {
    let pki = pixie_tests::private_ca(&["localhost"]);
    (pki.ca_pem, ServerCert { cert_pem: pki.cert_pem.into_bytes(), key_pem: pki.key_pem.into_bytes() })
}

/// The artifact tracker, serving and following its versions file in this process.
struct Tracker {
    addr: String,
    stop: Option<oneshot::Sender<()>>,
    server: JoinHandle<()>,
    follower: JoinHandle<()>,
}

impl Tracker {
    async fn start(versions_file: &Path, cert: ServerCert) -> Tracker {
        let (catalog, text) = tracker::load(versions_file).unwrap();
        let versions = Versions::new(catalog);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        // The certificate names localhost, so that is the address the Viziers use.
        let addr = format!("localhost:{}", listener.local_addr().unwrap().port());
        let (stop, stopped) = oneshot::channel::<()>();
        let stopped = futures::FutureExt::shared(async move {
            let _ = stopped.await;
        });
        let follower = tokio::spawn(tracker::follow(
            versions_file.to_owned(),
            versions.clone(),
            text,
            Duration::from_millis(100),
            stopped.clone(),
        ));
        let server = tokio::spawn(async move {
            tracker::serve(listener, versions, Some(cert), stopped).await.expect("the artifact tracker serves")
        });
        Tracker { addr, stop: Some(stop), server, follower }
    }

    async fn stop(mut self) {
        self.stop.take().unwrap().send(()).unwrap();
        tokio::time::timeout(Duration::from_secs(10), self.server).await.unwrap().unwrap();
        self.follower.await.unwrap();
    }
}

/// An operator running in this process, scoped to one namespace.
struct Operator {
    task: JoinHandle<Result<(), pixie_operator::Error>>,
    stop: oneshot::Sender<()>,
}

impl Operator {
    async fn start(cluster: &TestCluster, ns: &str, ca_file: &Path) -> Operator {
        let kubeconfig = Kubeconfig::read_from(cluster.kubeconfig()).unwrap();
        let config = kube::Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default()).await.unwrap();
        let metrics = Metrics::new();
        let client = kube::client::ClientBuilder::try_from(config)
            .unwrap()
            .with_layer(&ApiWriteLayer::new(metrics.clone()))
            .build();
        let settings = Settings {
            namespace: Some(ns.to_owned()),
            resync: Duration::from_secs(2),
            cloud: CloudSettings {
                ca_file: Some(ca_file.to_owned()),
                insecure: false,
                version_ttl: Duration::from_secs(1),
            },
            ..Settings::default()
        };
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(pixie_operator::run(client, settings, metrics, async move {
            let _ = stopped.await;
        }));
        Operator { task, stop }
    }

    async fn stop(self) {
        let _ = self.stop.send(());
        tokio::time::timeout(Duration::from_secs(30), self.task).await.unwrap().unwrap().unwrap();
    }
}

fn vizier(name: &str, cloud_addr: &str, version: Option<&str>) -> Vizier {
    let mut spec = json!({
        "deployKey": "px-dep-00000000-0000-0000-0000-000000000000",
        "clusterName": name,
        "cloudAddr": cloud_addr,
    });
    if let Some(version) = version {
        spec["version"] = json!(version);
    }
    serde_json::from_value(json!({"apiVersion": "px.dev/v1alpha1", "kind": "Vizier", "metadata": {"name": name}, "spec": spec}))
        .unwrap()
}

fn condition<'a>(vizier: &'a Vizier, type_: &str) -> Option<&'a Condition> {
    vizier.status.as_ref()?.conditions.iter().find(|c| c.type_ == type_)
}

fn is(vizier: &Vizier, type_: &str, status: &str) -> bool {
    condition(vizier, type_).is_some_and(|c| c.status == status)
}

fn version(vizier: &Vizier) -> Option<&str> {
    vizier.status.as_ref()?.version.as_deref()
}

fn summary(vizier: &Vizier) -> String {
    let status = vizier.status.clone().unwrap_or_default();
    let conditions: Vec<_> =
        status.conditions.iter().map(|c| format!("{}={} {} ({})", c.type_, c.status, c.reason, c.message)).collect();
    format!("version={:?} {}", status.version, conditions.join("; "))
}

/// Waits until the Vizier's status, for its current generation, satisfies `check`.
async fn wait_vizier(api: &Api<Vizier>, name: &str, what: &str, check: impl Fn(&Vizier) -> bool) -> Vizier {
    let timeout = Duration::from_secs(120);
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let vizier = api.get(name).await.unwrap();
        let current = vizier.status.as_ref().and_then(|s| s.observed_generation) == vizier.metadata.generation;
        if current && check(&vizier) {
            return vizier;
        }
        if tokio::time::Instant::now() >= deadline {
            panic!("{name}: {what}: not true after {timeout:?}; last seen: {}", summary(&vizier));
        }
        tokio::time::sleep(Duration::from_millis(150)).await;
    }
}

fn ready_on(want: &'static str) -> impl Fn(&Vizier) -> bool {
    move |v| is(v, "Ready", "True") && is(v, "Progressing", "False") && version(v) == Some(want)
}

/// The images of the Vizier's own containers (vizier-*), from its live pods.
async fn vizier_images(client: &Client, ns: &str, name: &str) -> Vec<String> {
    let pods = Api::<Pod>::namespaced(client.clone(), ns)
        .list(&ListParams::default().labels(&format!("app.kubernetes.io/instance={name}")))
        .await
        .unwrap();
    pods.items
        .iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .flat_map(|p| p.spec.iter().flat_map(|s| s.containers.iter().filter_map(|c| c.image.clone())))
        .filter(|image| image.contains("vizier-"))
        .collect()
}

fn write(path: &PathBuf, text: &str) {
    // Write then rename, as editors and ConfigMap mounts do, so the tracker never reads half a file.
    let partial = path.with_extension("partial");
    std::fs::write(&partial, text).unwrap();
    std::fs::rename(&partial, path).unwrap();
}

#[tokio::test]
async fn unpinned_viziers_follow_the_clouds_latest_release_and_survive_its_outage() {
    let cluster = TestCluster::shared();
    let client = cluster.client().await;
    cluster.install_crds();
    let dir = tempfile::tempdir().unwrap();
    let (ca, cert) = private_ca();
    let ca_file = dir.path().join("cloud-ca.pem");
    std::fs::write(&ca_file, &ca).unwrap();
    let versions_file = dir.path().join("versions.yaml");
    write(&versions_file, RELEASES);
    let tracker = Tracker::start(&versions_file, cert).await;

    // An unpinned Vizier gets the newest stable release from the tracker.
    let auto_ns = cluster.fresh_namespace(&client, "cloud-auto").await;
    let auto_operator = Operator::start(cluster, &auto_ns, &ca_file).await;
    let auto = Api::<Vizier>::namespaced(client.clone(), &auto_ns);
    auto.create(&PostParams::default(), &vizier("auto", &tracker.addr, None)).await.unwrap();
    let waiting = wait_vizier(&auto, "auto", "rolled out, waiting for the connector", |v| {
        version(v) == Some("0.14.15")
            && condition(v, "Ready").is_some_and(|c| c.status == "False" && c.reason == "CloudConnectorNotRegistered")
    })
    .await;
    assert_eq!(waiting.status.as_ref().unwrap().vizier_phase.as_ref().map(|p| format!("{p:?}")).as_deref(), Some("Disconnected"));
    // The connector dials the cloud the operator asked, trusting the operator's CA for it.
    let connector = Api::<Deployment>::namespaced(client.clone(), &auto_ns).get("vizier-cloud-connector").await.unwrap();
    let pod = connector.spec.template.spec.unwrap();
    let env: Vec<_> = pod.containers[0].env.iter().flatten().map(|e| (e.name.clone(), e.value.clone())).collect();
    assert!(env.contains(&("PL_CLOUD_CA_FILE".into(), Some("/cloud-ca/ca.crt".into()))), "{env:?}");
    let trusted = Api::<ConfigMap>::namespaced(client.clone(), &auto_ns).get("pl-cloud-ca").await.unwrap();
    assert_eq!(trusted.data.unwrap().get("ca.crt"), Some(&ca));
    pixie_tests::register_cluster(&client, &auto_ns).await;
    wait_vizier(&auto, "auto", "Ready on the latest release", ready_on("0.14.15")).await;
    let images = vizier_images(&client, &auto_ns, "auto").await;
    assert!(!images.is_empty() && images.iter().all(|i| i.ends_with(":0.14.15")), "{images:?}");

    // A pinned Vizier with the same cloud runs its own version.
    let pinned_ns = cluster.fresh_namespace(&client, "cloud-pinned").await;
    let pinned_operator = Operator::start(cluster, &pinned_ns, &ca_file).await;
    let pinned = Api::<Vizier>::namespaced(client.clone(), &pinned_ns);
    pinned.create(&PostParams::default(), &vizier("pinned", &tracker.addr, Some("0.14.2"))).await.unwrap();
    pixie_tests::register_cluster(&client, &pinned_ns).await;
    wait_vizier(&pinned, "pinned", "Ready on its pinned version", ready_on("0.14.2")).await;

    // A newer release is published: the unpinned Vizier upgrades, reporting Progressing meanwhile.
    write(&versions_file, &format!("{RELEASES}{NEWER}"));
    wait_vizier(&auto, "auto", "upgraded to the new release", ready_on("0.15.0")).await;
    let images = vizier_images(&client, &auto_ns, "auto").await;
    assert!(!images.is_empty() && images.iter().all(|i| i.ends_with(":0.15.0")), "{images:?}");
    let events = Api::<k8s_openapi::api::events::v1::Event>::namespaced(client.clone(), &auto_ns)
        .list(&ListParams::default())
        .await
        .unwrap();
    assert!(
        events.items.iter().any(|e| e.reason.as_deref() == Some("Upgrading")
            && e.note.as_deref().is_some_and(|n| n.starts_with("Progressing is True"))),
        "no Progressing=True Upgrading event: {:?}",
        events.items.iter().map(|e| (e.reason.clone(), e.note.clone())).collect::<Vec<_>>()
    );
    assert_eq!(version(&pinned.get("pinned").await.unwrap()), Some("0.14.2"), "the pinned Vizier did not move");

    // The tracker goes away.
    let addr = tracker.addr.clone();
    tracker.stop().await;

    // A new unpinned Vizier cannot be deployed and says why, with the address.
    let late_ns = cluster.fresh_namespace(&client, "cloud-late").await;
    let late_operator = Operator::start(cluster, &late_ns, &ca_file).await;
    let late = Api::<Vizier>::namespaced(client.clone(), &late_ns);
    late.create(&PostParams::default(), &vizier("late", &addr, None)).await.unwrap();
    let vizier = wait_vizier(&late, "late", "ArtifactTrackerUnavailable", |v| {
        condition(v, "Ready").is_some_and(|c| c.status == "False" && c.reason == "ArtifactTrackerUnavailable")
    })
    .await;
    let message = &condition(&vizier, "Ready").unwrap().message;
    assert!(message.contains(&addr), "{message}");
    assert_eq!(version(&vizier), None);

    // The running unpinned Vizier stays on its release and says the tracker is unavailable.
    let vizier = wait_vizier(&auto, "auto", "a note about the tracker", |v| {
        ready_on("0.15.0")(v) && condition(v, "Ready").is_some_and(|c| c.message.contains("staying on 0.15.0"))
    })
    .await;
    assert!(condition(&vizier, "Ready").unwrap().message.contains(&addr), "{}", summary(&vizier));
    // The pinned one never needed the tracker: still Ready on its version after several resyncs.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let vizier = pinned.get("pinned").await.unwrap();
    assert!(ready_on("0.14.2")(&vizier), "{}", summary(&vizier));
    assert!(!condition(&vizier, "Ready").unwrap().message.contains("artifact tracker"), "{}", summary(&vizier));

    for operator in [auto_operator, pinned_operator, late_operator] {
        operator.stop().await;
    }
}
