//! The settings ConfigMap every Vizier service reads (through `envFrom`), the deploy-key Secret
//! written from `spec.deployKey`, and the cloud's CA for the connector.

use std::collections::BTreeMap;

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::{ConfigMap, Secret};

use super::common::meta;
use pixie_cloud::Trust;

use super::{
    CLOUD_CA, CLOUD_CA_KEY, DEPLOY_SECRET, KELVIN_SERVICE, METADATA_SERVICE, NATS, QUERY_BROKER_SERVICE, SETTINGS,
};
use crate::validate::Inputs;

/// Where each service finds the others, and the Vizier-wide settings.
pub fn settings(inputs: &Inputs) -> ConfigMap {
    let ns = &inputs.namespace;
    let mut data = BTreeMap::from([
        ("PL_VIZIER_NAME".to_owned(), inputs.name.clone()),
        ("PL_CLUSTER_NAME".to_owned(), inputs.cluster_name.clone()),
        ("PL_NATS_URL".to_owned(), format!("tls://{NATS}.{ns}.svc:4222")),
        ("PL_METADATA_ADDR".to_owned(), format!("{METADATA_SERVICE}.{ns}.svc:50400")),
        ("PL_QUERY_BROKER_ADDR".to_owned(), format!("{QUERY_BROKER_SERVICE}.{ns}.svc:50300")),
        ("PL_KELVIN_ADDR".to_owned(), format!("{KELVIN_SERVICE}.{ns}.svc:59300")),
        ("PL_TLS_DIR".to_owned(), super::common::CERTS_DIR.to_owned()),
        ("PL_HEALTH_LISTEN".to_owned(), format!("0.0.0.0:{}", super::common::HEALTH_PORT)),
    ]);
    // Where the operator asks for versions: spec.cloudAddr, or a dev cloud's in-cluster service.
    if let Some(addr) = crate::version::tracker_address(&inputs.spec) {
        data.insert("PL_CLOUD_ADDR".to_owned(), addr);
    }
    if let Some(dev_ns) = inputs.spec.dev_cloud_namespace.as_deref() {
        data.insert("PL_DEV_CLOUD_NAMESPACE".to_owned(), dev_ns.to_owned());
    }
    if let Some(period) = inputs.spec.leadership_election_params.as_ref().and_then(|p| p.election_period_ms) {
        data.insert("PL_RENEW_PERIOD".to_owned(), period.to_string());
    }
    ConfigMap { metadata: meta(inputs, SETTINGS, None), data: Some(data), ..Default::default() }
}

/// `pl-cloud-ca`: the CA the operator trusts the cloud with (`--cloud-ca-file`), for the cloud
/// connector. Only when a cloud is configured and the operator has such a CA.
pub fn cloud_ca(inputs: &Inputs) -> Option<ConfigMap> {
    let Trust::Ca(pem) = &inputs.cloud_trust else {
        return None;
    };
    if !inputs.cloud_enabled() {
        return None;
    }
    Some(ConfigMap {
        metadata: meta(inputs, CLOUD_CA, None),
        data: Some(BTreeMap::from([(CLOUD_CA_KEY.to_owned(), String::from_utf8_lossy(pem).into_owned())])),
        ..Default::default()
    })
}

/// `pl-deploy-secrets`, holding `spec.deployKey` for the cloud connector. Only when a cloud is
/// configured and the key is inline (a `customDeployKeySecret` is the user's own Secret).
pub fn deploy_secret(inputs: &Inputs) -> Option<Secret> {
    if !inputs.cloud_enabled() || inputs.spec.custom_deploy_key_secret.as_deref().is_some_and(|s| !s.is_empty()) {
        return None;
    }
    let key = inputs.spec.deploy_key.as_deref()?;
    Some(Secret {
        metadata: meta(inputs, DEPLOY_SECRET, None),
        // `data`, not `stringData`: the apiserver stores stringData as data, so comparing what we
        // apply with what is stored would never match.
        data: Some(BTreeMap::from([("deploy-key".to_owned(), ByteString(key.as_bytes().to_vec()))])),
        type_: Some("Opaque".to_owned()),
        ..Default::default()
    })
}
