//! `kubectl pixie delete KIND NAME...` and `kubectl pixie delete operator`.

use std::time::Duration;

use k8s_openapi::api::core::v1::Namespace;
use kube::api::{Api, DeleteParams, ListParams};
use pixie_cli::cluster::{ClusterOptions, Connection};
use pixie_cli::kinds::PxKind;
use pixie_operator::install::InstallOptions;
use serde_json::Value;

use super::{Objects, connect, dry_run_suffix, explain, parse_timeout, px_api};
use crate::{DeleteArgs, RunError};

pub async fn delete(args: DeleteArgs, cluster: &ClusterOptions) -> Result<(), RunError> {
    let timeout = parse_timeout("--timeout", &args.timeout)?;
    if args.kind == "operator" {
        if !args.names.is_empty() {
            return Err(anyhow::anyhow!(
                "`delete operator` takes no NAME; use --operator-namespace to say where it runs"
            )
            .into());
        }
        let conn = connect(cluster).await?;
        return delete_operator(&conn, &args, timeout).await;
    }
    if args.crds {
        return Err(anyhow::anyhow!("--crds only goes with `delete operator`").into());
    }
    let kind = PxKind::parse(&args.kind).map_err(anyhow::Error::from)?;
    if args.names.is_empty() {
        return Err(anyhow::anyhow!(
            "`delete {}` needs the NAME of at least one object",
            args.kind
        )
        .into());
    }
    let conn = connect(cluster).await?;
    let api = px_api(&conn, kind, Some(&conn.namespace));
    let params = DeleteParams {
        dry_run: args.dry_run,
        ..DeleteParams::default()
    };
    let mut deleted = Vec::new();
    let mut failed = false;
    for name in &args.names {
        match api.delete(name, &params).await {
            Ok(_) => {
                println!(
                    "{} deleted{}",
                    kind.quoted(name),
                    dry_run_suffix(args.dry_run)
                );
                deleted.push(name.clone());
            }
            // Like kubectl: report each failure and go on with the other names.
            Err(e) => {
                failed = true;
                report(explain(&conn, e, true));
            }
        }
    }
    if args.wait && !args.dry_run {
        let deadline = tokio::time::Instant::now() + timeout;
        for name in &deleted {
            loop {
                let current = api
                    .get_opt(name)
                    .await
                    .map_err(|e| explain(&conn, e, true))?;
                let Some(object) = current else { break };
                if tokio::time::Instant::now() >= deadline {
                    let finalizers = object.metadata.finalizers.unwrap_or_default();
                    return Err(anyhow::anyhow!(
                        "timed out after {} waiting for {} to be deleted (finalizers left: {})",
                        args.timeout,
                        kind.quoted(name),
                        if finalizers.is_empty() {
                            "none".to_owned()
                        } else {
                            finalizers.join(", ")
                        }
                    )
                    .into());
                }
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
        }
    }
    if failed {
        return Err(RunError::Reported);
    }
    Ok(())
}

fn report(error: RunError) {
    match error {
        RunError::Cluster(e @ pixie_cli::cluster::ClusterError::Api { .. }) => eprintln!("{e}"),
        e => eprintln!("error: {e:#}"),
    }
}

/// Deletes what `deploy` installed for the operator, newest first. With `--crds` the CRDs go first
/// and are waited for, so that the operator is still there to run the Viziers' finalizers.
async fn delete_operator(
    conn: &Connection,
    args: &DeleteArgs,
    timeout: Duration,
) -> Result<(), RunError> {
    let install = InstallOptions {
        namespace: args.operator_namespace.clone(),
        ..InstallOptions::default()
    };
    install
        .validate()
        .map_err(|e| anyhow::anyhow!("--operator-{e}"))?;
    let mut objects = Objects::new(conn);
    let suffix = dry_run_suffix(args.dry_run);
    if args.crds {
        let crds: Vec<Value> = pixie_crds::all_crds()
            .iter()
            .map(|crd| serde_json::to_value(crd).expect("CRDs serialize"))
            .collect();
        for crd in &crds {
            if let Some(name) = objects.delete(crd, args.dry_run).await? {
                println!("{name} deleted{suffix}");
            }
        }
        if !args.dry_run {
            wait_gone(conn, &crds, timeout, &args.timeout).await?;
        }
    } else {
        let remaining = px_api(conn, PxKind::Vizier, None)
            .list(&ListParams::default())
            .await
            .map(|l| l.items.len())
            .unwrap_or(0);
        if remaining > 0 {
            eprintln!(
                "note: {remaining} Vizier(s) remain; they keep running, but deleting one waits for \
                 the operator to run its finalizer"
            );
        }
    }
    for object in pixie_operator::install::objects(&install).iter().rev() {
        if let Some(name) = objects.delete(object, args.dry_run).await? {
            println!("{name} deleted{suffix}");
        }
    }
    // The namespace is deleted in the background; say so rather than wait for it.
    if !args.dry_run {
        let namespaces: Api<Namespace> = Api::all(conn.client.clone());
        if let Ok(Some(_)) = namespaces.get_opt(&install.namespace).await {
            eprintln!("note: namespace {} is terminating", install.namespace);
        }
    }
    Ok(())
}

async fn wait_gone(
    conn: &Connection,
    crds: &[Value],
    timeout: Duration,
    timeout_text: &str,
) -> Result<(), RunError> {
    use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
    let api: Api<CustomResourceDefinition> = Api::all(conn.client.clone());
    let deadline = tokio::time::Instant::now() + timeout;
    for crd in crds {
        let name = crd["metadata"]["name"].as_str().unwrap_or_default();
        while api
            .get_opt(name)
            .await
            .map_err(|e| explain(conn, e, false))?
            .is_some()
        {
            if tokio::time::Instant::now() >= deadline {
                return Err(anyhow::anyhow!(
                    "timed out after {timeout_text} waiting for customresourcedefinition {name} to be deleted \
                     (its objects' finalizers need the operator)"
                )
                .into());
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }
    Ok(())
}
