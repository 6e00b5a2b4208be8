//! Test support for the real-cluster suites: starts (or reuses) a real kube-apiserver, etcd,
//! controller-manager, scheduler and kwok-simulated nodes on loopback, and hands each test a client
//! and a namespace of its own.
//!
//! `make test` starts one control plane for the whole run and passes it in through
//! `PIXIE_TEST_KUBECONFIG`; a test binary run on its own starts a private one and tears it down when
//! the process exits (`tests/cluster/cluster.sh` also watches the process, so a killed run leaves
//! nothing behind).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use k8s_openapi::api::core::v1::Namespace;
use kube::api::{Api, ObjectMeta, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Client, Config};

pub mod child;
pub mod http_fixture;
pub mod nats;

pub use child::{ChildGuard, first_line};
pub use http_fixture::{PythonHttpServer, ResponseStatus, Traffic};
pub use nats::NatsServer;

/// Where the test control plane's scripts live.
pub const CLUSTER_DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/cluster");
/// The repository root, for tests that read checked-in manifests.
pub const REPO_ROOT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/..");

/// A running control plane: either one handed in by `make test`, or one this process started.
pub struct TestCluster {
    kubeconfig: PathBuf,
    bin_dir: PathBuf,
}

// The outcome is kept even when starting fails, so that the other tests of the process report that
// failure instead of each starting a control plane of its own.
static SHARED: OnceLock<Result<TestCluster, String>> = OnceLock::new();
static OWNED_STATE_DIR: OnceLock<PathBuf> = OnceLock::new();

impl TestCluster {
    /// The control plane for this test process, started on first use.
    pub fn shared() -> &'static TestCluster {
        let started = SHARED.get_or_init(|| {
            let bin_dir = match std::env::var_os("PIXIE_K8S_BIN") {
                Some(dir) => PathBuf::from(dir),
                None => PathBuf::from(run_cluster_script(&["bin-dir"])?),
            };
            let kubeconfig = match std::env::var_os("PIXIE_TEST_KUBECONFIG") {
                Some(path) => PathBuf::from(path),
                None => start_private_cluster()?,
            };
            Ok(TestCluster { kubeconfig, bin_dir })
        });
        match started {
            Ok(cluster) => cluster,
            Err(e) => panic!("the test control plane did not start: {e}"),
        }
    }

    pub fn kubeconfig(&self) -> &Path {
        &self.kubeconfig
    }

    /// A new client. Each `#[tokio::test]` has its own runtime, and a client must not outlive the
    /// runtime it was built on, so clients are never shared between tests.
    pub async fn client(&self) -> Client {
        let kubeconfig = Kubeconfig::read_from(&self.kubeconfig).expect("read test kubeconfig");
        let config = Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
            .await
            .expect("load test kubeconfig");
        Client::try_from(config).expect("build client")
    }

    /// Creates a namespace no other test uses and returns its name.
    pub async fn fresh_namespace(&self, client: &Client, prefix: &str) -> String {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let name = format!(
            "{prefix}-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        let ns = Namespace {
            metadata: ObjectMeta { name: Some(name.clone()), ..Default::default() },
            ..Default::default()
        };
        Api::<Namespace>::all(client.clone())
            .create(&PostParams::default(), &ns)
            .await
            .unwrap_or_else(|e| panic!("create namespace {name}: {e}"));
        // Pods are refused until the controller-manager has given the namespace its ServiceAccount.
        let sa = Api::<k8s_openapi::api::core::v1::ServiceAccount>::namespaced(client.clone(), &name);
        for _ in 0..150 {
            if sa.get_opt("default").await.ok().flatten().is_some() {
                return name;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("namespace {name} never got its default ServiceAccount");
    }

    /// `kubectl` of the same Kubernetes version as the server, pointed at this cluster.
    pub fn kubectl(&self) -> Command {
        let mut cmd = Command::new(self.bin_dir.join("kubectl"));
        cmd.arg("--kubeconfig").arg(&self.kubeconfig);
        cmd
    }

    /// Runs kubectl with `args` and returns stdout; panics with kubectl's stderr when it fails.
    pub fn kubectl_ok(&self, args: &[&str]) -> String {
        let out = self.kubectl().args(args).output().expect("run kubectl");
        assert!(
            out.status.success(),
            "kubectl {} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).expect("kubectl prints UTF-8")
    }

    /// Installs the checked-in CRDs (`crds/yaml/`) as a user would, and waits until they serve.
    pub fn install_crds(&self) {
        let dir = format!("{REPO_ROOT}/crds/yaml");
        let applied = self.kubectl_ok(&[
            "apply",
            "--server-side",
            "--force-conflicts",
            "-k",
            &dir,
            "-o",
            "name",
        ]);
        let mut wait = vec!["wait", "--for=condition=Established", "--timeout=60s"];
        wait.extend(applied.lines());
        self.kubectl_ok(&wait);
    }
}

fn run_cluster_script(args: &[&str]) -> Result<String, String> {
    let script = format!("{CLUSTER_DIR}/cluster.sh");
    let out = Command::new("bash")
        .arg(&script)
        .args(args)
        .stderr(std::process::Stdio::inherit())
        .output()
        .map_err(|e| format!("run {script}: {e}"))?;
    if !out.status.success() {
        return Err(format!("{script} {} failed (its log is above)", args.join(" ")));
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

fn start_private_cluster() -> Result<PathBuf, String> {
    let dir = std::env::temp_dir().join(format!("pixie-test-cluster-{}", std::process::id()));
    let owner = std::process::id().to_string();
    let kubeconfig =
        run_cluster_script(&["up", dir.to_str().expect("UTF-8 temp dir"), "--owner", &owner])?;
    OWNED_STATE_DIR.set(dir).expect("one private cluster per process");
    // The test harness exits the process without dropping statics; atexit still runs.
    unsafe { libc::atexit(stop_private_cluster) };
    Ok(PathBuf::from(kubeconfig))
}

extern "C" fn stop_private_cluster() {
    if let Some(dir) = OWNED_STATE_DIR.get() {
        let _ = Command::new("bash")
            .arg(format!("{CLUSTER_DIR}/cluster.sh"))
            .arg("down")
            .arg(dir)
            .status();
    }
}

/// Polls `check` until it returns `Ok`, and panics with the last `Err` once `timeout` has passed:
/// the cluster converges asynchronously, so tests assert on what it eventually shows.
pub async fn eventually<T, F, Fut>(what: &str, timeout: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, String>>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        match check().await {
            Ok(value) => return value,
            Err(last) if tokio::time::Instant::now() >= deadline => {
                panic!("{what}: not true after {timeout:?}; last seen: {last}")
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(150)).await,
        }
    }
}

/// A loopback port nothing listens on now (bound, then released), for servers that need their port
/// before they start.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// A plain HTTP/1.1 GET of `path` at `addr`: the status code and the body.
pub async fn http_get(addr: std::net::SocketAddr, path: &str) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let request = format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).await.unwrap();
    let code = response.split_whitespace().nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
    let body = response.split_once("\r\n\r\n").map_or("", |(_, body)| body).to_owned();
    (code, body)
}

/// Plays the cloud connector once the cloud accepted its deploy key (the real exchange is tested in
/// vizier/services/tests/connector.rs): the cluster ID goes into `pl-cluster-secrets` under a field
/// manager of its own, which is what the operator waits for before it calls a cloud-connected
/// Vizier Ready. Waits for the operator to have created the Secret.
pub async fn register_cluster(client: &Client, ns: &str) {
    use k8s_openapi::api::core::v1::Secret;
    use kube::api::{Patch, PatchParams};
    let secrets = Api::<Secret>::namespaced(client.clone(), ns);
    eventually("pl-cluster-secrets exists", Duration::from_secs(60), || async {
        secrets.get_opt("pl-cluster-secrets").await.map_err(|e| e.to_string())?.ok_or_else(|| "not yet".to_owned())
    })
    .await;
    let patch = serde_json::json!({
        "apiVersion": "v1", "kind": "Secret", "data": {"cluster-id": "Y2x1c3Rlci0x"} // "cluster-1"
    });
    secrets
        .patch("pl-cluster-secrets", &PatchParams::apply("pixie-cloud-connector").force(), &Patch::Apply(&patch))
        .await
        .expect("write the cluster ID as the connector does");
}

/// A private CA and the server and client certificates it signed, all PEM: what TLS tests serve
/// and trust.
pub struct TestPki {
    pub ca_pem: String,
    pub cert_pem: String,
    pub key_pem: String,
    pub client_cert_pem: String,
    pub client_key_pem: String,
}

/// A fresh CA, a server certificate for `names` (DNS names or IPs) and a client certificate, both
/// signed by it.
pub fn private_ca(names: &[&str]) -> TestPki {
    use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair};
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("CA parameters");
    ca_params.distinguished_name.push(DnType::CommonName, "pixie test CA");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate().expect("CA key")).expect("CA");
    let sign = |names: Vec<String>| {
        let key = KeyPair::generate().expect("key");
        let cert = CertificateParams::new(names).expect("names").signed_by(&key, &ca).expect("signing");
        (cert.pem(), key.serialize_pem())
    };
    let (cert_pem, key_pem) = sign(names.iter().map(|n| n.to_string()).collect());
    let (client_cert_pem, client_key_pem) = sign(Vec::new());
    TestPki { ca_pem: ca.pem(), cert_pem, key_pem, client_cert_pem, client_key_pem }
}

impl TestPki {
    /// Writes the files of a Vizier's `service-tls-certs` Secret as the pods see them mounted.
    pub fn write_service_tls(&self, dir: &Path) {
        std::fs::create_dir_all(dir).expect("creating the certificate directory");
        for (name, pem) in [
            ("ca.crt", &self.ca_pem),
            ("server.crt", &self.cert_pem),
            ("server.key", &self.key_pem),
            ("client.crt", &self.client_cert_pem),
            ("client.key", &self.client_key_pem),
        ] {
            std::fs::write(dir.join(name), pem).expect("writing a certificate file");
        }
    }
}
