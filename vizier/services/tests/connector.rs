//! `vizier connector` (the built binary) against the real control plane and a cloud served in this
//! process (artifact tracker and Vizier registry, TLS with a private CA the connector trusts through
//! `--cloud-ca-file`). The connector runs as its ServiceAccount with exactly the Role and ClusterRole
//! the operator renders for it (the test's kubeconfig impersonates it). A refused deploy key leaves the cluster unregistered and says why; with the
//! right key the cluster registers under kube-system's uid, its id lands in pl-cluster-secrets next
//! to the operator's key, and heartbeats carry the Vizier's phase and the node count.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Namespace, Node, Secret};
use kube::api::{Api, DeleteParams, DynamicObject, ListParams, Patch, PatchParams, PostParams};
use kube::config::Kubeconfig;
use pixie_cloud::catalog;
use pixie_cloud::client::{self as cloud, ClientSettings, Trust};
use pixie_cloud::proto::vizier_registry_client::VizierRegistryClient;
use pixie_cloud::proto::{ClusterInfo, ListClustersRequest};
use pixie_cloud::{DeployKeys, RegistryService, ServerCert, Versions, serve_cloud};
use pixie_crds::Vizier;
use pixie_operator::render::common::{DEFAULT_REGISTRY, cluster_scoped_name};
use pixie_operator::render::rbac::CLOUD_CONNECTOR_ACCOUNT;
use pixie_operator::resources::Kind;
use pixie_operator::validate::{BackendFacts, Outcome, validate};
use pixie_tests::{TestCluster, eventually};
use serde_json::json;
use tokio::process::{Child, Command};
use tokio::sync::oneshot;

const GOOD_KEY: &str = "px-dep-6f1d2c3b-0000-4000-8000-000000000001";
const WRONG_KEY: &str = "px-dep-6f1d2c3b-0000-4000-8000-00000000dead";
const TIMEOUT: Duration = Duration::from_secs(60);

/// The cloud's TLS: (CA PEM, server certificate for localhost).
fn private_ca() -> (String, ServerCert) {
    let pki = pixie_tests::private_ca(&["localhost"]);
    (pki.ca_pem, ServerCert { cert_pem: pki.cert_pem.into_bytes(), key_pem: pki.key_pem.into_bytes() })
}

/// The cloud, serving in this process until dropped.
struct Cloud {
    addr: String,
    ca: Vec<u8>,
    _stop: oneshot::Sender<()>,
}

impl Cloud {
    async fn start(keys_file: &Path) -> Cloud {
        let (ca, cert) = private_ca();
        let keys = pixie_cloud::registry::load_keys(keys_file).unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        // The certificate names localhost.
        let addr = format!("localhost:{}", listener.local_addr().unwrap().port());
        let (stop, stopped) = oneshot::channel::<()>();
        tokio::spawn(serve_cloud(
            listener,
            Versions::new(catalog::Catalog::default()),
            Some(RegistryService::new(keys)),
            Some(cert),
            async {
                let _ = stopped.await;
            },
        ));
        Cloud {
            addr,
            ca: ca.into_bytes(),
            _stop: stop,
        }
    }

    async fn clusters(&self) -> Vec<ClusterInfo> {
        let settings = ClientSettings::new(Trust::Ca(self.ca.clone()));
        let channel = cloud::connect(&self.addr, &settings).await.unwrap();
        VizierRegistryClient::new(channel)
            .list_clusters(ListClustersRequest {})
            .await
            .unwrap()
            .into_inner()
            .clusters
    }
}

/// A `vizier connector` process, killed when dropped; its log goes to a file.
struct Connector {
    child: Child,
    log: PathBuf,
}

impl Connector {
    fn start(
        kubeconfig: &Path,
        cloud: &Cloud,
        ca_file: &Path,
        ns: &str,
        key: &str,
        log: PathBuf,
    ) -> Connector {
        let child = Command::new(env!("CARGO_BIN_EXE_vizier"))
            .args(["connector", "--cloud-addr", &cloud.addr, "--cloud-ca-file"])
            .arg(ca_file)
            .args([
                "--namespace",
                ns,
                "--vizier",
                "pixie",
                "--cluster-name",
                "connector-test",
            ])
            .args(["--heartbeat-interval", "300ms", "--refused-retry", "500ms"])
            .env("KUBECONFIG", kubeconfig)
            .env("PL_DEPLOY_KEY", key)
            .env("RUST_LOG", "info")
            .env("NO_COLOR", "1")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .kill_on_drop(true)
            .spawn()
            .expect("start vizier connector");
        Connector { child, log }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    async fn stop(mut self) {
        self.child.kill().await.unwrap();
    }
}

/// Creates the cloud connector's ServiceAccount, Role, ClusterRole and bindings as the operator
/// renders them for `vizier`; returns the cluster-scoped ones (kind, name) for clean-up.
async fn grant_connector_rbac(client: &kube::Client, vizier: &Vizier) -> Vec<(Kind, String)> {
    let inputs = match validate(vizier, BackendFacts::default(), DEFAULT_REGISTRY, "0.1.0").unwrap()
    {
        Outcome::Deploy { inputs, .. } => inputs,
        other => panic!("not deployable: {other:?}"),
    };
    let ns = inputs.namespace.clone();
    let names = [
        CLOUD_CONNECTOR_ACCOUNT.to_owned(),
        "pl-cloud-connector-role".to_owned(),
        cluster_scoped_name(&inputs, "cloud-connector"),
    ];
    let rendered = pixie_operator::render::render(&inputs).unwrap();
    let mut cluster_scoped = Vec::new();
    let mut kinds = Vec::new();
    for object in rendered.objects.iter().filter(|o| names.contains(&o.name)) {
        let resource = object.kind.api_resource();
        let api: Api<DynamicObject> = match object.kind {
            Kind::ClusterRole | Kind::ClusterRoleBinding => {
                cluster_scoped.push((object.kind, object.name.clone()));
                Api::all_with(client.clone(), &resource)
            }
            _ => Api::namespaced_with(client.clone(), &ns, &resource),
        };
        let body: DynamicObject = serde_json::from_value(object.body.clone()).unwrap();
        api.create(&PostParams::default(), &body)
            .await
            .unwrap_or_else(|e| panic!("{} {}: {e}", object.kind.as_str(), object.name));
        kinds.push(object.kind);
    }
    for kind in [
        Kind::ServiceAccount,
        Kind::Role,
        Kind::RoleBinding,
        Kind::ClusterRole,
        Kind::ClusterRoleBinding,
    ] {
        assert!(
            kinds.contains(&kind),
            "no {} rendered for the connector",
            kind.as_str()
        );
    }
    cluster_scoped
}

/// The test's kubeconfig, acting as the connector's ServiceAccount in `ns`.
fn connector_kubeconfig(cluster: &TestCluster, ns: &str, path: &Path) {
    let mut kubeconfig = Kubeconfig::read_from(cluster.kubeconfig()).unwrap();
    for user in &mut kubeconfig.auth_infos {
        if let Some(info) = user.auth_info.as_mut() {
            info.impersonate = Some(format!(
                "system:serviceaccount:{ns}:{CLOUD_CONNECTOR_ACCOUNT}"
            ));
        }
    }
    // JSON is YAML: kubeconfig readers take it.
    std::fs::write(path, serde_json::to_string(&kubeconfig).unwrap()).unwrap();
}

fn cluster_id_of(secret: &Secret) -> Option<String> {
    let value = secret.data.as_ref()?.get("cluster-id")?;
    Some(String::from_utf8(value.0.clone()).unwrap())
}

#[tokio::test]
async fn the_connector_registers_with_the_deploy_key_and_heartbeats_the_vizier_phase() {
    let cluster = TestCluster::shared();
    let client = cluster.client().await;
    cluster.install_crds();
    let ns = cluster.fresh_namespace(&client, "connector").await;
    let dir = tempfile::tempdir().unwrap();
    let keys_file = dir.path().join("deploy-keys.yaml");
    std::fs::write(&keys_file, format!("- key: {GOOD_KEY}\n  org: test-org\n")).unwrap();
    assert_eq!(
        DeployKeys::parse(&std::fs::read_to_string(&keys_file).unwrap())
            .unwrap()
            .len(),
        1
    );
    let cloud = Cloud::start(&keys_file).await;
    let ca_file = dir.path().join("cloud-ca.pem");
    std::fs::write(&ca_file, &cloud.ca).unwrap();

    // What the operator would have made: the Vizier (with a phase) and pl-cluster-secrets.
    let secrets = Api::<Secret>::namespaced(client.clone(), &ns);
    let operator_secret: Secret = serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Secret", "metadata": {"name": "pl-cluster-secrets"},
        "type": "Opaque", "stringData": {"jwt-signing-key": "operator-made"},
    }))
    .unwrap();
    let created = PostParams {
        field_manager: Some("pixie-operator".into()),
        ..Default::default()
    };
    secrets.create(&created, &operator_secret).await.unwrap();
    let viziers = Api::<Vizier>::namespaced(client.clone(), &ns);
    let vizier: Vizier = serde_json::from_value(json!({
        "apiVersion": "px.dev/v1alpha1", "kind": "Vizier", "metadata": {"name": "pixie"},
        "spec": {"deployKey": GOOD_KEY, "clusterName": "connector-test", "cloudAddr": cloud.addr, "version": "0.14.15"},
    }))
    .unwrap();
    let vizier = viziers
        .create(&PostParams::default(), &vizier)
        .await
        .unwrap();
    let cluster_scoped = grant_connector_rbac(&client, &vizier).await;
    let kubeconfig = dir.path().join("connector-kubeconfig");
    connector_kubeconfig(cluster, &ns, &kubeconfig);
    let set_phase = |phase: &'static str| {
        let viziers = viziers.clone();
        async move {
            let status = json!({"status": {"vizierPhase": phase, "version": "0.14.15"}});
            viziers
                .patch_status("pixie", &PatchParams::default(), &Patch::Merge(&status))
                .await
                .unwrap();
        }
    };
    set_phase("Healthy").await;

    // A key the cloud does not know: not registered, a clear error, and the connector keeps trying.
    let mut wrong = Connector::start(
        &kubeconfig,
        &cloud,
        &ca_file,
        &ns,
        WRONG_KEY,
        dir.path().join("wrong.log"),
    );
    eventually("the refused key is logged twice", TIMEOUT, || {
        let log = wrong.log();
        async move {
            let refusals = log.matches("the cloud refused the deploy key").count();
            if refusals >= 2 && log.contains("unknown deploy key") {
                Ok(())
            } else {
                Err(log)
            }
        }
    })
    .await;
    assert!(
        wrong.child.try_wait().unwrap().is_none(),
        "the connector gave up: {}",
        wrong.log()
    );
    assert!(!wrong.log().contains(WRONG_KEY), "the key is never logged");
    assert!(cloud.clusters().await.is_empty());
    assert_eq!(
        cluster_id_of(&secrets.get("pl-cluster-secrets").await.unwrap()),
        None
    );
    wrong.stop().await;

    // The key is fixed (a new pod reads the fixed Secret): the cluster registers under kube-system's uid.
    let kube_system_uid = Api::<Namespace>::all(client.clone())
        .get("kube-system")
        .await
        .unwrap()
        .metadata
        .uid
        .unwrap();
    let nodes = Api::<Node>::all(client.clone())
        .list_metadata(&ListParams::default())
        .await
        .unwrap()
        .items
        .len() as i32;
    assert!(nodes >= 1, "the test cluster has nodes");
    let right = Connector::start(
        &kubeconfig,
        &cloud,
        &ca_file,
        &ns,
        GOOD_KEY,
        dir.path().join("right.log"),
    );
    let registered = eventually("registered and heartbeating as Healthy", TIMEOUT, || {
        let cloud = &cloud;
        async move {
            let clusters = cloud.clusters().await;
            match clusters.as_slice() {
                [c] if c
                    .last_heartbeat
                    .as_ref()
                    .is_some_and(|b| b.vizier_phase == "Healthy") =>
                {
                    Ok(c.clone())
                }
                other => Err(format!("{other:?}")),
            }
        }
    })
    .await;
    assert_eq!(registered.cluster_uid, kube_system_uid);
    assert_eq!(registered.cluster_name, "connector-test");
    assert_eq!(registered.vizier_version, "0.14.15");
    let beat = registered.last_heartbeat.clone().unwrap();
    assert_eq!(beat.node_count, nodes, "every node is counted");
    assert!(beat.time.is_some() && beat.received.is_some());

    // The cluster id is in pl-cluster-secrets, owned by the connector alone; the operator's key stays.
    let secret = eventually("cluster-id in pl-cluster-secrets", TIMEOUT, || {
        let secrets = secrets.clone();
        async move {
            let secret = secrets
                .get("pl-cluster-secrets")
                .await
                .map_err(|e| e.to_string())?;
            match cluster_id_of(&secret) {
                Some(_) => Ok(secret),
                None => Err(format!(
                    "{:?}",
                    secret
                        .data
                        .as_ref()
                        .map(|d| d.keys().cloned().collect::<Vec<_>>())
                )),
            }
        }
    })
    .await;
    assert_eq!(
        cluster_id_of(&secret).as_deref(),
        Some(registered.cluster_id.as_str())
    );
    assert_eq!(
        secret.data.as_ref().unwrap()["jwt-signing-key"].0,
        b"operator-made"
    );
    let managers = secret.metadata.managed_fields.clone().unwrap_or_default();
    let connector = managers
        .iter()
        .find(|m| m.manager.as_deref() == Some("pixie-cloud-connector"))
        .unwrap_or_else(|| panic!("no connector field manager: {managers:?}"));
    assert_eq!(connector.operation.as_deref(), Some("Apply"));
    let owned = serde_json::to_value(&connector.fields_v1).unwrap();
    assert_eq!(
        owned["f:data"],
        json!({"f:cluster-id": {}}),
        "the connector owns only cluster-id: {owned}"
    );

    // Heartbeats follow the Vizier's phase.
    set_phase("Degraded").await;
    eventually("a Degraded heartbeat", TIMEOUT, || {
        let cloud = &cloud;
        async move {
            let clusters = cloud.clusters().await;
            match clusters.as_slice() {
                [c] if c
                    .last_heartbeat
                    .as_ref()
                    .is_some_and(|b| b.vizier_phase == "Degraded") =>
                {
                    Ok(())
                }
                other => Err(format!("{other:?}")),
            }
        }
    })
    .await;
    right.stop().await;

    // A restarted connector finds the same cluster again.
    let again = Connector::start(
        &kubeconfig,
        &cloud,
        &ca_file,
        &ns,
        GOOD_KEY,
        dir.path().join("again.log"),
    );
    eventually("registered again", TIMEOUT, || {
        let log = again.log();
        async move {
            if log.contains("registered with the cloud") {
                Ok(())
            } else {
                Err(log)
            }
        }
    })
    .await;
    let clusters = cloud.clusters().await;
    assert_eq!(clusters.len(), 1, "{clusters:?}");
    assert_eq!(clusters[0].cluster_id, registered.cluster_id);
    again.stop().await;
    // Nothing in the log says the connector lacked a permission.
    for log in ["right.log", "again.log"] {
        let text = std::fs::read_to_string(dir.path().join(log)).unwrap();
        assert!(
            !text.contains("forbidden") && !text.contains("Forbidden"),
            "{log}: {text}"
        );
    }

    for (kind, name) in cluster_scoped {
        let api: Api<DynamicObject> = Api::all_with(client.clone(), &kind.api_resource());
        api.delete(&name, &DeleteParams::default()).await.unwrap();
    }
}
