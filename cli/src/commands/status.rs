//! `kubectl pixie status [NAME]`: reads the Vizier, the workloads the operator labelled as its own,
//! and its PEM pods.

use std::io::Write;

use k8s_openapi::api::apps::v1::{DaemonSet, Deployment, StatefulSet};
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, ListParams};
use pixie_cli::cluster::{ClusterOptions, Connection};
use pixie_cli::kinds::PxKind;
use pixie_cli::status::{ReportFormat, StatusReport, render, report};
use pixie_operator::render::common::{LABEL_COMPONENT, instance_selector};
use serde_json::Value;

use super::{connect, explain, now, px_api, to_value};
use crate::{RunError, StatusArgs};

pub async fn status(args: StatusArgs, cluster: &ClusterOptions) -> Result<(), RunError> {
    let conn = connect(cluster).await?;
    let api = px_api(&conn, PxKind::Vizier, Some(&conn.namespace));
    let viziers: Vec<Value> = match &args.name {
        Some(name) => vec![to_value(
            &api.get(name).await.map_err(|e| explain(&conn, e, true))?,
        )],
        None => api
            .list(&ListParams::default())
            .await
            .map_err(|e| explain(&conn, e, true))?
            .items
            .iter()
            .map(to_value)
            .collect(),
    };
    if viziers.is_empty() {
        return Err(anyhow::anyhow!(
            "no Vizier in namespace {ns}; create one with `kubectl pixie deploy -n {ns}`",
            ns = conn.namespace
        )
        .into());
    }
    let mut reports = Vec::new();
    for vizier in &viziers {
        reports.push(report_of(&conn, vizier).await?);
    }
    let text = match args.output {
        ReportFormat::Table => {
            let now = now();
            reports
                .iter()
                .map(|r| render(r, now))
                .collect::<Vec<_>>()
                .join("\n")
        }
        ReportFormat::Json => {
            serde_json::to_string_pretty(&one_or_all(&reports)).map_err(anyhow::Error::from)? + "\n"
        }
        ReportFormat::Yaml => {
            serde_saphyr::to_string(&one_or_all(&reports)).map_err(anyhow::Error::from)?
        }
    };
    std::io::stdout()
        .lock()
        .write_all(text.as_bytes())
        .map_err(anyhow::Error::from)?;
    Ok(())
}

fn one_or_all(reports: &[StatusReport]) -> Value {
    match reports {
        [one] => serde_json::to_value(one),
        all => serde_json::to_value(all),
    }
    .expect("reports serialize")
}

async fn report_of(conn: &Connection, vizier: &Value) -> Result<StatusReport, RunError> {
    let name = vizier["metadata"]["name"].as_str().unwrap_or_default();
    let ns = conn.namespace.as_str();
    let selector = instance_selector(name);
    let params = ListParams::default().labels(&selector);
    let mut workloads = Vec::new();
    macro_rules! collect {
        ($kind:ty, $label:literal) => {
            let list = Api::<$kind>::namespaced(conn.client.clone(), ns)
                .list(&params)
                .await
                .map_err(|e| explain(conn, e, false))?;
            for object in list.items {
                workloads.push((
                    $label.to_owned(),
                    serde_json::to_value(&object).expect("objects serialize"),
                ));
            }
        };
    }
    collect!(Deployment, "Deployment");
    collect!(StatefulSet, "StatefulSet");
    collect!(DaemonSet, "DaemonSet");
    let pems = Api::<Pod>::namespaced(conn.client.clone(), ns)
        .list(&ListParams::default().labels(&format!("{selector},{LABEL_COMPONENT}=pem")))
        .await
        .map_err(|e| explain(conn, e, false))?
        .items
        .iter()
        .map(|p| serde_json::to_value(p).expect("pods serialize"))
        .collect::<Vec<_>>();
    Ok(report(vizier, &workloads, &pems))
}
