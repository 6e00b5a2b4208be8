//! `kubectl pixie get KIND [NAME]`.

use std::io::Write;

use kube::api::ListParams;
use pixie_cli::cluster::ClusterOptions;
use pixie_cli::get::{ObjectFormat, nothing_found, render};
use pixie_cli::kinds::PxKind;

use super::{connect, explain, now, px_api, to_value};
use crate::{GetArgs, RunError};

pub async fn get(args: GetArgs, cluster: &ClusterOptions) -> Result<(), RunError> {
    let kind = PxKind::parse(&args.kind).map_err(anyhow::Error::from)?;
    if args.all_namespaces && args.name.is_some() {
        return Err(anyhow::anyhow!(
            "a resource cannot be retrieved by name across all namespaces"
        )
        .into());
    }
    let conn = connect(cluster).await?;
    let namespace = (!args.all_namespaces).then_some(conn.namespace.as_str());
    let api = px_api(&conn, kind, namespace);
    let objects = match &args.name {
        Some(name) => vec![to_value(
            &api.get(name).await.map_err(|e| explain(&conn, e, true))?,
        )],
        None => {
            let mut list: Vec<_> = api
                .list(&ListParams::default())
                .await
                .map_err(|e| explain(&conn, e, true))?
                .items
                .iter()
                .map(to_value)
                .collect();
            // The server sorts by namespace then name already; keep that stable for -A.
            list.sort_by(|a, b| {
                let key = |v: &serde_json::Value| {
                    (
                        v["metadata"]["namespace"]
                            .as_str()
                            .unwrap_or_default()
                            .to_owned(),
                        v["metadata"]["name"]
                            .as_str()
                            .unwrap_or_default()
                            .to_owned(),
                    )
                };
                key(a).cmp(&key(b))
            });
            list
        }
    };
    if objects.is_empty() && matches!(args.output, ObjectFormat::Table | ObjectFormat::Name) {
        eprintln!("{}", nothing_found(namespace));
        return Ok(());
    }
    let text = render(
        kind,
        args.output,
        objects,
        args.name.is_some(),
        args.all_namespaces,
        now(),
    )
    .map_err(anyhow::Error::from)?;
    std::io::stdout()
        .lock()
        .write_all(text.as_bytes())
        .map_err(anyhow::Error::from)?;
    Ok(())
}
