//! The test bed itself: a real apiserver whose controllers and simulated nodes behave like a cluster.

use std::time::Duration;

use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::{Api, DeleteParams, ListParams, PostParams};
use pixie_tests::{TestCluster, eventually};
use serde_json::json;


#[tokio::test]
async fn simulated_nodes_are_ready() {
    let cluster = TestCluster::shared();
    let client = cluster.client().await;
    let nodes = Api::<Node>::all(client).list(&ListParams::default()).await.unwrap();
    assert!(nodes.items.len() >= 2, "expected simulated nodes, got {}", nodes.items.len());
    for node in &nodes.items {
        let ready = node
            .status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .and_then(|c| c.iter().find(|c| c.type_ == "Ready"))
            .map(|c| c.status.as_str());
        assert_eq!(ready, Some("True"), "node {:?} not Ready", node.metadata.name);
    }
    let version = cluster.kubectl_ok(&["version", "-o", "json"]);
    let version: serde_json::Value = serde_json::from_str(&version).unwrap();
    assert_eq!(version["serverVersion"]["gitVersion"], "v1.37.2", "{version}");
}

#[tokio::test]
async fn deployment_gets_running_pods_and_is_garbage_collected() {
    let cluster = TestCluster::shared();
    let client = cluster.client().await;
    let ns = cluster.fresh_namespace(&client, "harness").await;
    let deployments = Api::<Deployment>::namespaced(client.clone(), &ns);
    let pods = Api::<Pod>::namespaced(client.clone(), &ns);
    let replica_sets = Api::<ReplicaSet>::namespaced(client.clone(), &ns);

    let deployment: Deployment = serde_json::from_value(json!({
        "metadata": {"name": "web"},
        "spec": {
            "replicas": 2,
            "selector": {"matchLabels": {"app": "web"}},
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {"containers": [{"name": "web", "image": "registry.invalid/web:1"}]}
            }
        }
    }))
    .unwrap();
    deployments.create(&PostParams::default(), &deployment).await.unwrap();

    eventually("2 Running pods on simulated nodes", Duration::from_secs(60), || async {
        let list = pods.list(&ListParams::default().labels("app=web")).await.map_err(|e| e.to_string())?;
        let running: Vec<_> = list
            .items
            .iter()
            .filter(|p| p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running"))
            .filter(|p| {
                p.spec.as_ref().and_then(|s| s.node_name.as_deref()).is_some_and(|n| n.starts_with("kwok-node-"))
            })
            .collect();
        if running.len() == 2 { Ok(()) } else { Err(format!("{} running of {}", running.len(), list.items.len())) }
    })
    .await;

    deployments.delete("web", &DeleteParams::background()).await.unwrap();
    eventually("ReplicaSet and pods garbage-collected", Duration::from_secs(60), || async {
        let rs = replica_sets.list(&ListParams::default()).await.map_err(|e| e.to_string())?.items.len();
        let p = pods.list(&ListParams::default()).await.map_err(|e| e.to_string())?.items.len();
        if rs == 0 && p == 0 { Ok(()) } else { Err(format!("{rs} ReplicaSets, {p} pods left")) }
    })
    .await;
}
