//! `kubectl pixie run pxl/NAME`: the source and arguments of a PxlScript object.

use std::collections::BTreeMap;

use pixie_cli::cluster::ClusterOptions;
use pixie_cli::script::resolve_declared_args;
use pixie_crds::PxlScript;

use super::{connect, explain};
use crate::RunError;

/// How `run` tells a PxlScript object from a bundled script.
pub const PXL_PREFIX: &str = "pxl/";

/// The source of PxlScript `pxl/NAME` in the namespace, and its declared arguments' defaults
/// overridden by `given`.
pub async fn pxl_script(
    reference: &str,
    given: BTreeMap<String, String>,
    cluster: &ClusterOptions,
) -> Result<(String, BTreeMap<String, String>), RunError> {
    let name = reference.strip_prefix(PXL_PREFIX).unwrap_or(reference);
    if name.is_empty() {
        return Err(anyhow::anyhow!("`run pxl/NAME` needs the name of a PxlScript").into());
    }
    let conn = connect(cluster).await?;
    let api = kube::Api::<PxlScript>::namespaced(conn.client.clone(), &conn.namespace);
    let script = api.get(name).await.map_err(|e| explain(&conn, e, true))?;
    let args =
        resolve_declared_args(reference, &script.spec.args, given).map_err(anyhow::Error::from)?;
    Ok((script.spec.source, args))
}
