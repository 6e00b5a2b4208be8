//! `kubectl pixie deploy`: the CRDs, the operator, the Vizier's namespace and the Vizier, each
//! server-side applied and reported as kubectl reports it; then the rollout, followed until Ready.

use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, PostParams};
use pixie_cli::cluster::{ClusterOptions, Connection};
use pixie_cli::deploy::{parse_patches, random_deploy_key, vizier_manifest};
use pixie_cli::kinds::PxKind;
use pixie_cli::progress::{Rollout, Verdict};
use pixie_operator::install::InstallOptions;
use serde_json::Value;

use super::{Objects, connect, explain, parse_timeout, px_api, to_value};
use crate::{DeployArgs, RunError};

pub async fn deploy(args: DeployArgs, cluster: &ClusterOptions) -> Result<(), RunError> {
    let timeout = parse_timeout("--timeout", &args.timeout)?;
    let patches = match &args.vizier.patches {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .map_err(|e| anyhow::anyhow!("--patches {}: {e}", path.display()))?;
            Some(parse_patches(&path.display().to_string(), &text).map_err(anyhow::Error::from)?)
        }
        None => None,
    };
    let conn = connect(cluster).await?;
    let mut objects = Objects::new(&conn);

    if !args.skip_operator {
        let mut install = InstallOptions {
            namespace: args.operator_namespace.clone(),
            ..InstallOptions::default()
        };
        if let Some(image) = &args.operator_image {
            install.image = image.clone();
        }
        install
            .validate()
            .map_err(|e| anyhow::anyhow!("--operator-{e}"))?;
        for crd in pixie_crds::all_crds() {
            let body = serde_json::to_value(&crd).expect("CRDs serialize");
            let (name, outcome) = objects.apply(&body).await?;
            println!("{name} {}", outcome.as_str());
        }
        wait_established(&conn).await?;
        for object in pixie_operator::install::objects(&install) {
            let (name, outcome) = objects.apply(&object).await?;
            println!("{name} {}", outcome.as_str());
        }
    }

    let namespace = conn.namespace.clone();
    ensure_namespace(&conn, &namespace).await?;
    let viziers = px_api(&conn, PxKind::Vizier, Some(&namespace));
    let existing = viziers
        .get_opt(&args.vizier.name)
        .await
        .map_err(|e| explain(&conn, e, true))?
        .map(|v| to_value(&v));
    let plan = vizier_manifest(
        &args.vizier,
        &namespace,
        existing.as_ref(),
        patches,
        random_deploy_key,
    )
    .map_err(anyhow::Error::from)?;
    for note in &plan.notes {
        eprintln!("note: {note}");
    }
    let (name, outcome) = objects.apply(&plan.manifest).await?;
    println!("{name} {}", outcome.as_str());

    if args.wait {
        follow_rollout(&conn, &viziers, &args.vizier.name, timeout, &args.timeout).await?;
    }
    Ok(())
}

/// Waits until every px.dev CRD serves, so that the Vizier applied next is not refused.
async fn wait_established(conn: &Connection) -> Result<(), RunError> {
    let api: Api<CustomResourceDefinition> = Api::all(conn.client.clone());
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    for crd in pixie_crds::all_crds() {
        let name = crd.metadata.name.clone().unwrap_or_default();
        loop {
            let current = api.get(&name).await.map_err(|e| explain(conn, e, false))?;
            let established = current
                .status
                .as_ref()
                .and_then(|s| s.conditions.as_ref())
                .is_some_and(|c| {
                    c.iter()
                        .any(|c| c.type_ == "Established" && c.status == "True")
                });
            if established {
                break;
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(anyhow::anyhow!(
                    "customresourcedefinition {name} is not Established after 60s"
                )
                .into());
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    Ok(())
}

/// Creates the Vizier's namespace when it does not exist, like Pixie's deploy; an existing one is
/// left alone (it may belong to someone else).
async fn ensure_namespace(conn: &Connection, name: &str) -> Result<(), RunError> {
    let api: Api<Namespace> = Api::all(conn.client.clone());
    if api
        .get_opt(name)
        .await
        .map_err(|e| explain(conn, e, false))?
        .is_some()
    {
        return Ok(());
    }
    let namespace: Namespace = serde_json::from_value(serde_json::json!({
        "metadata": {"name": name}
    }))
    .expect("a namespace");
    match api.create(&PostParams::default(), &namespace).await {
        Ok(_) => println!("namespace/{name} created"),
        // Created by someone else in the meantime: just as good.
        Err(kube::Error::Api(status)) if status.code == 409 => {}
        Err(e) => return Err(explain(conn, e, false)),
    }
    Ok(())
}

/// Prints each status change of the Vizier until it is Ready, fails, or `timeout` passes.
async fn follow_rollout(
    conn: &Connection,
    api: &Api<kube::api::DynamicObject>,
    name: &str,
    timeout: Duration,
    timeout_text: &str,
) -> Result<(), RunError> {
    let object = PxKind::Vizier.object_name(name);
    let mut rollout = Rollout::new(object.clone());
    let mut last: Option<Value> = None;
    let deadline = tokio::time::Instant::now() + timeout;
    let mut changes = Box::pin(kube::runtime::watcher::watch_object(api.clone(), name));
    loop {
        let next = match tokio::time::timeout_at(deadline, changes.next()).await {
            Ok(Some(next)) => next,
            Ok(None) => return Err(anyhow::anyhow!("the watch of {object} ended").into()),
            Err(_) => {
                return Err(
                    anyhow::anyhow!(rollout.timeout_message(last.as_ref(), timeout_text)).into(),
                );
            }
        };
        let vizier = match next {
            Ok(Some(vizier)) => to_value(&vizier),
            Ok(None) => {
                return Err(anyhow::anyhow!("{object} was deleted while waiting for it").into());
            }
            Err(e) => {
                // The watcher reconnects on its next poll; a short pause keeps a dead server
                // from being hammered, and the deadline still holds.
                pause_before_retry().await;
                if tokio::time::Instant::now() >= deadline {
                    return Err(RunError::Cluster(pixie_cli::cluster::ClusterError::Other {
                        server: conn.server.clone(),
                        reason: e.to_string(),
                    }));
                }
                continue;
            }
        };
        let (lines, verdict) = rollout.observe(&vizier);
        for line in lines {
            println!("{line}");
        }
        last = Some(vizier);
        match verdict {
            Verdict::Waiting => {}
            Verdict::Ready { warning } => {
                if let Some(warning) = warning {
                    eprintln!("warning: {warning}");
                }
                println!("{object} is Ready");
                return Ok(());
            }
            Verdict::Failed(message) => return Err(anyhow::anyhow!(message).into()),
        }
    }
}

async fn pause_before_retry() {
    tokio::time::sleep(Duration::from_secs(1)).await;
}
