//! The metadata service against a real control plane: pods on a kwok node come back from `ListPods`
//! with their Services, stay listed as terminated when deleted (across a restart of the service with
//! a file store), and a PEM's `K8sMetadata` names a process's pod from its cgroup, deleted or not,
//! over mutual TLS.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Node, Pod, Service};
use kube::api::{Api, DeleteParams, ListParams, PostParams};
use pixie_engine::{ClientTls, ServiceTls};
use pixie_metadata::proto::metadata_client::MetadataClient;
use pixie_metadata::proto::{self, ListPodsRequest};
use pixie_metadata::{
    HISTORY_FILE, HistoryStore, K8sMetadata, MetadataConfig, MetadataService, serve,
};
use pixie_pxl::{MetadataField, MetadataResolver};
use pixie_tests::{TestCluster, eventually};
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tonic::transport::Channel;

const WAIT: Duration = Duration::from_secs(60);

async fn start_service(
    client: kube::Client,
    tls: Option<&ServiceTls>,
) -> (MetadataService, SocketAddr) {
    let service = MetadataService::watch(client);
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (served, tls) = (service.clone(), tls.cloned());
    tokio::spawn(
        async move { serve(listener, served, tls.as_ref(), std::future::pending()).await },
    );
    (service, addr)
}

/// A service that can be stopped: send on `stop`, then await `served`.
struct Running {
    service: MetadataService,
    addr: SocketAddr,
    stop: oneshot::Sender<()>,
    served: JoinHandle<Result<(), tonic::transport::Error>>,
}

async fn start_stoppable(client: kube::Client, config: MetadataConfig) -> Running {
    let service = MetadataService::watch_with(client, config);
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = oneshot::channel::<()>();
    let served = tokio::spawn(serve(listener, service.clone(), None, async {
        let _ = stopped.await;
    }));
    Running {
        service,
        addr,
        stop,
        served,
    }
}

async fn wait_synced(api: &MetadataClient<Channel>) {
    eventually("metadata service synced", WAIT, || {
        let mut api = api.clone();
        async move {
            api.health(proto::HealthRequest {})
                .await
                .map(|_| ())
                .map_err(|s| s.to_string())
        }
    })
    .await;
}

async fn first_node(client: &kube::Client) -> String {
    let nodes = Api::<Node>::all(client.clone())
        .list(&ListParams::default())
        .await
        .unwrap();
    nodes
        .items
        .iter()
        .filter_map(|n| n.metadata.name.clone())
        .min()
        .expect("the test cluster has nodes")
}

async fn api_client(addr: SocketAddr, tls: Option<&ClientTls>) -> MetadataClient<Channel> {
    let endpoint = pixie_engine::client::endpoint(&addr.to_string(), tls).unwrap();
    MetadataClient::new(endpoint.connect().await.unwrap())
}

fn pod(name: &str, node: &str, labels: &[(&str, &str)], containers: &[&str]) -> Pod {
    serde_json::from_value(serde_json::json!({
        "metadata": {
            "name": name,
            "labels": labels.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect::<BTreeMap<_, _>>(),
        },
        "spec": {
            "nodeName": node,
            "tolerations": [{ "operator": "Exists" }],
            "containers": containers.iter().map(|c| serde_json::json!({ "name": c, "image": "busybox" })).collect::<Vec<_>>(),
        },
    }))
    .unwrap()
}

fn service(name: &str, selector: &[(&str, &str)]) -> Service {
    serde_json::from_value(serde_json::json!({
        "metadata": { "name": name },
        "spec": {
            "selector": selector.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect::<BTreeMap<_, _>>(),
            "ports": [{ "port": 80 }],
        },
    }))
    .unwrap()
}

/// kwok runs no containers, so it reports none of their IDs: give each running container one, as a
/// kubelet would (`containerd://` + 64 hex digits, made unique from the pod's UID).
async fn set_container_ids(pods: &Api<Pod>, name: &str) -> BTreeMap<String, String> {
    eventually(
        &format!("pod {name} running with container IDs"),
        WAIT,
        || async {
            let mut pod = pods.get(name).await.map_err(|e| e.to_string())?;
            let uid = pod
                .metadata
                .uid
                .clone()
                .unwrap_or_default()
                .replace('-', "");
            let statuses = pod
                .status
                .as_mut()
                .and_then(|s| s.container_statuses.as_mut())
                .ok_or("no container statuses yet")?;
            let mut ids = BTreeMap::new();
            for (i, status) in statuses.iter_mut().enumerate() {
                let id = format!("{uid}{i:032x}");
                status.container_id = Some(format!("containerd://{id}"));
                ids.insert(status.name.clone(), id);
            }
            pods.replace_status(name, &PostParams::default(), &pod)
                .await
                .map_err(|e| e.to_string())?;
            Ok(ids)
        },
    )
    .await
}

async fn pods_of(
    client: &mut MetadataClient<Channel>,
    node: &str,
    ns: &str,
) -> Result<Vec<proto::Pod>, String> {
    let response = client
        .list_pods(ListPodsRequest {
            node_name: node.to_owned(),
        })
        .await
        .map_err(|s| s.to_string())?;
    let mut pods: Vec<_> = response
        .into_inner()
        .pods
        .into_iter()
        .filter(|p| p.namespace == ns)
        .collect();
    pods.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(pods)
}

/// Waits until `pem` resolves `upid`'s `field` to `want`.
async fn wait_resolves(
    pem: &K8sMetadata,
    what: &str,
    upid: &str,
    field: MetadataField,
    want: String,
) {
    eventually(what, WAIT, || {
        let got = pem.resolve(upid, field);
        let want = want.clone();
        async move {
            if got.as_deref() == Some(want.as_str()) {
                Ok(())
            } else {
                Err(format!("{got:?}"))
            }
        }
    })
    .await;
}

fn now_unix_ms() -> u64 {
    let since_epoch = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap();
    since_epoch.as_millis() as u64
}

fn stat_line(pid: u32, start: u64) -> String {
    let mut fields = vec!["S".to_owned()];
    fields.extend((4..=21).map(|_| "0".to_owned()));
    fields.push(start.to_string());
    format!("{pid} (nginx) {} 0 0\n", fields.join(" "))
}

#[tokio::test]
async fn node_pods_come_with_their_services_and_resolve_processes_to_pods() {
    let cluster = TestCluster::shared();
    let client = cluster.client().await;
    let ns = cluster.fresh_namespace(&client, "metadata").await;
    let nodes = Api::<Node>::all(client.clone())
        .list(&ListParams::default())
        .await
        .unwrap();
    let mut node_names: Vec<String> = nodes
        .items
        .iter()
        .filter_map(|n| n.metadata.name.clone())
        .collect();
    node_names.sort();
    let (node, other_node) = (node_names[0].clone(), node_names[1].clone());

    // The PEMs and the metadata service talk over mutual TLS, as in a Vizier.
    let certs = tempfile::tempdir().unwrap();
    pixie_tests::private_ca(&["localhost"]).write_service_tls(certs.path());
    let tls = ServiceTls::load(certs.path()).unwrap();
    let (_service, addr) = start_service(client.clone(), Some(&tls)).await;
    let mut api = api_client(addr, Some(tls.client())).await;
    wait_synced(&api).await;
    let empty = api
        .list_pods(ListPodsRequest {
            node_name: String::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(empty.code(), tonic::Code::InvalidArgument);
    assert!(empty.message().contains("node_name"), "{}", empty.message());

    let services = Api::<Service>::namespaced(client.clone(), &ns);
    services
        .create(&PostParams::default(), &service("web", &[("app", "web")]))
        .await
        .unwrap();
    services
        .create(
            &PostParams::default(),
            &service("shop", &[("tier", "shop")]),
        )
        .await
        .unwrap();
    services
        .create(&PostParams::default(), &service("db", &[("app", "db")]))
        .await
        .unwrap();
    let pods = Api::<Pod>::namespaced(client.clone(), &ns);
    let web = pod(
        "web-0",
        &node,
        &[("app", "web"), ("tier", "shop")],
        &["nginx", "sidecar"],
    );
    pods.create(&PostParams::default(), &web).await.unwrap();
    pods.create(
        &PostParams::default(),
        &pod("db-0", &node, &[("app", "db")], &["postgres"]),
    )
    .await
    .unwrap();
    pods.create(
        &PostParams::default(),
        &pod("elsewhere", &other_node, &[("app", "web")], &["nginx"]),
    )
    .await
    .unwrap();
    let web_ids = set_container_ids(&pods, "web-0").await;

    let listed = eventually(
        "web-0 and db-0 listed on their node with container IDs",
        WAIT,
        || {
            let mut api = api.clone();
            let (node, ns, nginx) = (node.clone(), ns.clone(), web_ids["nginx"].clone());
            async move {
                let pods = pods_of(&mut api, &node, &ns).await?;
                let names: Vec<_> = pods.iter().map(|p| p.name.as_str()).collect();
                let has_id = pods
                    .iter()
                    .any(|p| p.containers.iter().any(|c| c.id == nginx));
                if names == ["db-0", "web-0"] && has_id {
                    Ok(pods)
                } else {
                    Err(format!("{pods:?}"))
                }
            }
        },
    )
    .await;
    let (db, web) = (&listed[0], &listed[1]);
    assert_eq!(web.services, [format!("{ns}/shop"), format!("{ns}/web")]);
    assert_eq!(db.services, [format!("{ns}/db")]);
    assert_eq!(web.node_name, node);
    assert!(!web.uid.is_empty());
    let containers: BTreeMap<_, _> = web
        .containers
        .iter()
        .map(|c| (c.name.clone(), c.id.clone()))
        .collect();
    assert_eq!(containers, web_ids);
    let elsewhere = pods_of(&mut api, &other_node, &ns).await.unwrap();
    assert_eq!(
        elsewhere
            .iter()
            .map(|p| p.name.as_str())
            .collect::<Vec<_>>(),
        ["elsewhere"]
    );

    // A PEM on `node`: one process runs in web-0's nginx container, one on the host.
    let proc_root = tempfile::tempdir().unwrap();
    let nginx_id = &web_ids["nginx"];
    for (pid, cgroup) in [
        (
            4242,
            format!(
                "0::/kubepods.slice/kubepods-besteffort.slice/cri-containerd-{nginx_id}.scope\n"
            ),
        ),
        (17, "0::/system.slice/sshd.service\n".to_owned()),
    ] {
        let dir = proc_root.path().join(pid.to_string());
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("stat"), stat_line(pid, 777)).unwrap();
        std::fs::write(dir.join("cgroup"), cgroup).unwrap();
        std::fs::write(dir.join("cmdline"), b"nginx\0-g\0daemon off;\0").unwrap();
    }
    // A PEM of `node` reading the fake /proc, refreshing every 200 ms.
    let pem = || {
        K8sMetadata::connect_with_proc_root(
            &addr.to_string(),
            &node,
            proc_root.path(),
            Duration::from_millis(200),
            Some(tls.client()),
        )
        .unwrap()
    };
    let meta = pem();
    let upid = "0:4242:777";
    wait_resolves(
        &meta,
        "the nginx process resolves to web-0",
        upid,
        MetadataField::Pod,
        format!("{ns}/web-0"),
    )
    .await;
    let field = |upid: &str, f| meta.resolve(upid, f);
    assert_eq!(
        field(upid, MetadataField::Service),
        Some(format!(r#"["{ns}/shop","{ns}/web"]"#))
    );
    assert_eq!(field(upid, MetadataField::Namespace), Some(ns.clone()));
    assert_eq!(
        field(upid, MetadataField::Container).as_deref(),
        Some("nginx")
    );
    assert_eq!(field(upid, MetadataField::Node), Some(node.clone()));
    assert_eq!(field(upid, MetadataField::Pid).as_deref(), Some("4242"));
    assert_eq!(
        field(upid, MetadataField::Cmdline).as_deref(),
        Some("nginx -g daemon off;")
    );
    // The host process, and a reused pid (other start time), have no pod.
    assert_eq!(field("0:17:777", MetadataField::Pod), None);
    assert_eq!(field("0:17:777", MetadataField::Node), Some(node.clone()));
    assert_eq!(field("0:4242:778", MetadataField::Pod), None);

    // A deleted pod stays listed, terminated, with its containers: its processes' rows still
    // resolve, even for a PEM that first asks after the deletion.
    pods.delete("web-0", &DeleteParams::default().grace_period(0))
        .await
        .unwrap();
    let listed = eventually("web-0 listed as terminated", WAIT, || {
        let mut api = api.clone();
        let (node, ns) = (node.clone(), ns.clone());
        async move {
            let pods = pods_of(&mut api, &node, &ns).await?;
            let terminated: Vec<_> = pods
                .iter()
                .map(|p| (p.name.as_str(), p.terminated))
                .collect();
            if terminated == [("db-0", false), ("web-0", true)] {
                Ok(pods)
            } else {
                Err(format!("{pods:?}"))
            }
        }
    })
    .await;
    let gone = &listed[1];
    assert_ne!(gone.stopped_at_unix_ms, 0);
    assert_eq!(gone.services, [format!("{ns}/shop"), format!("{ns}/web")]);
    assert!(gone.containers.iter().any(|c| &c.id == nginx_id));
    let health = api
        .health(proto::HealthRequest {})
        .await
        .unwrap()
        .into_inner();
    assert!(health.terminated_pods >= 1, "{health:?}");
    let late_pem = pem();
    for (pem, what) in [
        (
            &meta,
            "the nginx process still resolves to the deleted web-0",
        ),
        (
            &late_pem,
            "a PEM started after the deletion resolves web-0's process",
        ),
    ] {
        wait_resolves(
            pem,
            what,
            upid,
            MetadataField::Service,
            format!(r#"["{ns}/shop","{ns}/web"]"#),
        )
        .await;
        assert_eq!(
            pem.resolve(upid, MetadataField::Pod),
            Some(format!("{ns}/web-0"))
        );
    }
    let _ = Api::<k8s_openapi::api::core::v1::Namespace>::all(client)
        .delete(&ns, &DeleteParams::default())
        .await;
}

#[tokio::test]
async fn deleted_pods_survive_a_restart_of_the_service_with_a_file_store() {
    let cluster = TestCluster::shared();
    let client = cluster.client().await;
    let ns = cluster.fresh_namespace(&client, "metadata-store").await;
    let node = first_node(&client).await;
    let dir = tempfile::tempdir().unwrap();
    let config = MetadataConfig {
        retain_terminated: Duration::from_secs(3600),
        store: HistoryStore::File(dir.path().to_owned()),
    };

    let first = start_stoppable(client.clone(), config.clone()).await;
    let api = api_client(first.addr, None).await;
    wait_synced(&api).await;
    let pods = Api::<Pod>::namespaced(client.clone(), &ns);
    pods.create(
        &PostParams::default(),
        &pod("crashy-0", &node, &[("app", "crashy")], &["app"]),
    )
    .await
    .unwrap();
    let ids = set_container_ids(&pods, "crashy-0").await;
    let listed_as = |api: &MetadataClient<Channel>, terminated: bool| {
        let api = api.clone();
        let (node, ns, id) = (node.clone(), ns.clone(), ids["app"].clone());
        move || {
            let mut api = api.clone();
            let (node, ns, id) = (node.clone(), ns.clone(), id.clone());
            async move {
                let pods = pods_of(&mut api, &node, &ns).await?;
                match pods.as_slice() {
                    [p] if p.name == "crashy-0"
                        && p.terminated == terminated
                        && p.containers.iter().any(|c| c.id == id) =>
                    {
                        Ok(p.clone())
                    }
                    _ => Err(format!("{pods:?}")),
                }
            }
        }
    };
    let live = eventually("crashy-0 listed running", WAIT, listed_as(&api, false)).await;
    assert_eq!(live.stopped_at_unix_ms, 0);

    pods.delete("crashy-0", &DeleteParams::default().grace_period(0))
        .await
        .unwrap();
    let gone = eventually("crashy-0 listed as terminated", WAIT, listed_as(&api, true)).await;
    assert_ne!(gone.stopped_at_unix_ms, 0);
    assert_eq!(gone.uid, live.uid);
    // Written within the debounce, without waiting for the shutdown.
    let file = dir.path().join(HISTORY_FILE);
    eventually("the history file names crashy-0", WAIT, || {
        let text = std::fs::read_to_string(&file).map_err(|e| e.to_string());
        let uid = live.uid.clone();
        async move {
            let text = text?;
            if text.contains(&uid) {
                Ok(())
            } else {
                Err(text)
            }
        }
    })
    .await;

    // A pod in another namespace, deleted while the service is down below.
    let quiet_ns = cluster
        .fresh_namespace(&client, "metadata-store-quiet")
        .await;
    let quiet = Api::<Pod>::namespaced(client.clone(), &quiet_ns);
    quiet
        .create(
            &PostParams::default(),
            &pod("quiet-0", &node, &[], &["app"]),
        )
        .await
        .unwrap();
    eventually("quiet-0 listed running", WAIT, || {
        let mut api = api.clone();
        let (node, ns) = (node.clone(), quiet_ns.clone());
        async move {
            match pods_of(&mut api, &node, &ns).await?.as_slice() {
                [p] if !p.terminated => Ok(()),
                other => Err(format!("{other:?}")),
            }
        }
    })
    .await;
    eventually("the file lists quiet-0 as running", WAIT, || {
        let text = std::fs::read_to_string(&file).unwrap_or_default();
        async move {
            if text.contains("quiet-0") {
                Ok(())
            } else {
                Err(text)
            }
        }
    })
    .await;

    // Stopped as `vizier metadata` stops: serving ends, the history is written, the service goes.
    let Running {
        service,
        stop,
        served,
        ..
    } = first;
    stop.send(()).unwrap();
    served.await.unwrap().unwrap();
    service.save_history().await.unwrap();
    drop((service, api));
    quiet
        .delete("quiet-0", &DeleteParams::default().grace_period(0))
        .await
        .unwrap();
    let deleted_while_down = now_unix_ms();

    let second = start_stoppable(client.clone(), config).await;
    // Other tests delete pods too: at least crashy-0.
    assert!(
        second.service.terminated_pods() >= 1,
        "loaded before the first list"
    );
    let api = api_client(second.addr, None).await;
    wait_synced(&api).await;
    let kept = eventually(
        "crashy-0 still listed as terminated after the restart",
        WAIT,
        listed_as(&api, true),
    )
    .await;
    assert_eq!(kept, gone);
    // The pod deleted while no service watched is kept too, stopped when the service noticed.
    let quiet_gone = eventually(
        "quiet-0 listed as terminated after the restart",
        WAIT,
        || {
            let mut api = api.clone();
            let (node, ns) = (node.clone(), quiet_ns.clone());
            async move {
                match pods_of(&mut api, &node, &ns).await?.as_slice() {
                    [p] if p.terminated => Ok(p.clone()),
                    other => Err(format!("{other:?}")),
                }
            }
        },
    )
    .await;
    assert!(
        quiet_gone.stopped_at_unix_ms >= deleted_while_down,
        "{quiet_gone:?}"
    );

    // A corrupt file is ignored: the service starts with no history rather than failing. (Its own
    // directory: the second service may still write its history to the first.)
    let corrupt = tempfile::tempdir().unwrap();
    std::fs::write(corrupt.path().join(HISTORY_FILE), b"{not json").unwrap();
    let third = start_stoppable(
        client.clone(),
        MetadataConfig {
            retain_terminated: Duration::from_secs(3600),
            store: HistoryStore::File(corrupt.path().to_owned()),
        },
    )
    .await;
    assert_eq!(third.service.terminated_pods(), 0);
    let api = api_client(third.addr, None).await;
    wait_synced(&api).await;
    assert!(
        pods_of(&mut api.clone(), &node, &ns)
            .await
            .unwrap()
            .is_empty()
    );
    let _ = Api::<k8s_openapi::api::core::v1::Namespace>::all(client)
        .delete(&ns, &DeleteParams::default())
        .await;
}

#[tokio::test]
async fn an_unreachable_api_server_keeps_the_service_unready_and_says_why() {
    // Nothing listens on a port just released.
    let port = pixie_tests::free_port();
    let config = kube::Config::new(format!("http://127.0.0.1:{port}").parse().unwrap());
    let (service, addr) = start_service(kube::Client::try_from(config).unwrap(), None).await;
    let mut api = api_client(addr, None).await;
    let status = eventually("Health names the watch failure", WAIT, || {
        let mut api = api.clone();
        async move {
            match api.health(proto::HealthRequest {}).await {
                Err(s) if s.message().contains("watching") => Ok(s),
                other => Err(format!("{other:?}")),
            }
        }
    })
    .await;
    assert_eq!(status.code(), tonic::Code::Unavailable);
    // The reason goes down to the refused connection.
    assert!(status.message().contains("not in"), "{}", status.message());
    assert!(status.message().contains("onnect"), "{}", status.message());
    let listed = api
        .list_pods(ListPodsRequest {
            node_name: "node-a".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(listed.code(), tonic::Code::Unavailable);
    assert!(!service.is_synced());
}
