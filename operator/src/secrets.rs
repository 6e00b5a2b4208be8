//! Secrets the operator generates: the JWT signing key (`pl-cluster-secrets`) and the TLS
//! certificates between Vizier components (`service-tls-certs`: a CA, a server and a client
//! certificate). They are made once, when missing, and never rewritten: services keep trusting one
//! another across reconciles, operator restarts and upgrades. The cloud connector later adds the
//! cluster id to `pl-cluster-secrets`, which is why it is created, not applied.

use std::collections::BTreeMap;

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::jiff::{Timestamp, ToSpan, tz::TimeZone};
use kube::Api;
use kube::api::PostParams;
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
    KeyUsagePurpose,
};

use crate::error::Error;
use crate::render::common::meta;
use crate::render::{
    CLUSTER_SECRETS, KELVIN_SERVICE, METADATA_SERVICE, NATS, PEM_SERVICE, QUERY_BROKER_SERVICE, TLS_SECRET,
};
use crate::validate::Inputs;

/// On `service-tls-certs`: when its certificates expire (RFC 3339), so health checks need not parse X.509.
pub const ANNOTATION_NOT_AFTER: &str = "px.dev/not-after";
/// The key the cloud connector adds to `pl-cluster-secrets` once the cloud accepted the cluster.
pub const CLUSTER_ID_KEY: &str = "cluster-id";
/// Lifetime of the generated certificates (Pixie's: one year).
pub const CERT_VALIDITY_DAYS: i64 = 365;

/// `pl-cluster-secrets` with a fresh 256-bit JWT signing key.
pub fn cluster_secrets(inputs: &Inputs) -> Secret {
    let key: [u8; 32] = rand::random();
    Secret {
        metadata: meta(inputs, CLUSTER_SECRETS, None),
        data: Some(BTreeMap::from([("jwt-signing-key".to_owned(), ByteString(hex::encode(key).into_bytes()))])),
        type_: Some("Opaque".into()),
        ..Default::default()
    }
}

/// The DNS names the server certificate covers: every Vizier Service, short and qualified.
pub fn server_names(namespace: &str) -> Vec<String> {
    let mut names = vec!["localhost".to_owned()];
    for service in [NATS, METADATA_SERVICE, QUERY_BROKER_SERVICE, KELVIN_SERVICE, PEM_SERVICE] {
        names.push(service.to_owned());
        names.push(format!("{service}.{namespace}"));
        names.push(format!("{service}.{namespace}.svc"));
        names.push(format!("{service}.{namespace}.svc.cluster.local"));
    }
    names
}

/// `service-tls-certs`: `ca.crt`, `server.crt`/`server.key`, `client.crt`/`client.key`.
pub fn tls_secret(inputs: &Inputs, now: Timestamp) -> Result<Secret, Error> {
    let date = |t: Timestamp| {
        let d = t.to_zoned(TimeZone::UTC).date();
        rcgen::date_time_ymd(d.year().into(), d.month() as u8, d.day() as u8)
    };
    let not_after = now.checked_add((CERT_VALIDITY_DAYS * 24).hours()).expect("a year from now is a valid time");
    let window = |params: &mut CertificateParams| {
        params.not_before = date(now.checked_sub(24.hours()).expect("valid time"));
        params.not_after = date(not_after);
    };

    let mut ca_params = CertificateParams::new(Vec::<String>::new())?;
    ca_params.distinguished_name.push(DnType::CommonName, format!("pixie-{}-ca", inputs.namespace));
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
    window(&mut ca_params);
    let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate()?)?;

    let mut server_params = CertificateParams::new(server_names(&inputs.namespace))?;
    server_params.distinguished_name.push(DnType::CommonName, "pixie-server");
    server_params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth, ExtendedKeyUsagePurpose::ClientAuth];
    window(&mut server_params);
    let server_key = KeyPair::generate()?;
    let server = server_params.signed_by(&server_key, &ca)?;

    let mut client_params = CertificateParams::new(Vec::<String>::new())?;
    client_params.distinguished_name.push(DnType::CommonName, "pixie-client");
    client_params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    window(&mut client_params);
    let client_key = KeyPair::generate()?;
    let client = client_params.signed_by(&client_key, &ca)?;

    let data = BTreeMap::from([
        ("ca.crt".to_owned(), ca.pem()),
        ("server.crt".to_owned(), server.pem()),
        ("server.key".to_owned(), server_key.serialize_pem()),
        ("client.crt".to_owned(), client.pem()),
        ("client.key".to_owned(), client_key.serialize_pem()),
    ]);
    let mut metadata = meta(inputs, TLS_SECRET, None);
    metadata.annotations = Some(BTreeMap::from([(ANNOTATION_NOT_AFTER.to_owned(), not_after.to_string())]));
    Ok(Secret {
        metadata,
        data: Some(data.into_iter().map(|(k, v)| (k, ByteString(v.into_bytes()))).collect()),
        type_: Some("Opaque".into()),
        ..Default::default()
    })
}

/// What [`ensure`] found or made.
#[derive(Debug, Default)]
pub struct SecretsState {
    pub created: Vec<String>,
    /// Expiry of the service certificates, from the annotation of `service-tls-certs`.
    pub tls_not_after: Option<Timestamp>,
    /// The cloud connector has registered the cluster: `pl-cluster-secrets` holds its `cluster-id`.
    pub cluster_registered: bool,
}

/// Creates the generated Secrets that are missing; leaves existing ones exactly as they are.
pub async fn ensure(api: &Api<Secret>, inputs: &Inputs) -> Result<SecretsState, Error> {
    let mut state = SecretsState::default();
    for name in [CLUSTER_SECRETS, TLS_SECRET] {
        let existing = api.get_opt(name).await.map_err(|source| Error::Fetch { what: format!("secret {name}"), source })?;
        let secret = match existing {
            Some(secret) => secret,
            None => {
                let secret = if name == TLS_SECRET { tls_secret(inputs, Timestamp::now())? } else { cluster_secrets(inputs) };
                let params = PostParams { field_manager: Some(crate::FIELD_MANAGER.to_owned()), ..Default::default() };
                match api.create(&params, &secret).await {
                    Ok(created) => {
                        state.created.push(name.to_owned());
                        created
                    }
                    // Made by an earlier reconcile that was interrupted before it could see it.
                    Err(kube::Error::Api(status)) if status.code == 409 => secret,
                    Err(source) => return Err(Error::SecretCreate { name: name.to_owned(), source }),
                }
            }
        };
        if name == CLUSTER_SECRETS {
            state.cluster_registered =
                secret.data.as_ref().and_then(|d| d.get(CLUSTER_ID_KEY)).is_some_and(|id| !id.0.is_empty());
        }
        if name == TLS_SECRET {
            state.tls_not_after = secret
                .metadata
                .annotations
                .as_ref()
                .and_then(|a| a.get(ANNOTATION_NOT_AFTER))
                .and_then(|t| t.parse().ok());
        }
    }
    Ok(state)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::validate::MetadataBackend;

    pub(crate) fn inputs() -> Inputs {
        Inputs {
            name: "pixie".into(),
            namespace: "pl".into(),
            uid: "uid-1".into(),
            version: "0.14.7".into(),
            cluster_name: "c".into(),
            backend: MetadataBackend::Memory,
            default_registry: "reg".into(),
            spec: Default::default(),
            patches: Default::default(),
            cloud_trust: pixie_cloud::Trust::SystemRoots,
        }
    }

    #[test]
    fn tls_secret_holds_a_ca_and_two_leaf_certificates_with_an_expiry() {
        let now: Timestamp = "2026-01-01T00:00:00Z".parse().unwrap();
        let secret = tls_secret(&inputs(), now).unwrap();
        let data = secret.data.unwrap();
        for key in ["ca.crt", "server.crt", "server.key", "client.crt", "client.key"] {
            let pem = String::from_utf8(data[key].0.clone()).unwrap();
            assert!(pem.starts_with("-----BEGIN"), "{key}: {pem}");
        }
        let not_after = &secret.metadata.annotations.unwrap()[ANNOTATION_NOT_AFTER];
        assert_eq!(not_after, "2027-01-01T00:00:00Z");
        assert_eq!(secret.metadata.owner_references.unwrap()[0].uid, "uid-1");
    }

    #[test]
    fn jwt_keys_are_random() {
        let a = cluster_secrets(&inputs()).data.unwrap()["jwt-signing-key"].0.clone();
        let b = cluster_secrets(&inputs()).data.unwrap()["jwt-signing-key"].0.clone();
        assert_eq!(a.len(), 64);
        assert_ne!(a, b);
    }

    #[test]
    fn server_certificate_names_cover_every_service_and_nothing_else() {
        let names = server_names("pl");
        assert!(names.contains(&"pl-nats.pl.svc".to_owned()));
        assert!(names.contains(&"vizier-metadata-svc.pl.svc.cluster.local".to_owned()));
        assert!(names.contains(&"vizier-pem-svc.pl".to_owned()));
        // localhost and four names for each of the five Services; no wildcards.
        assert_eq!(names.len(), 1 + 4 * 5);
        assert!(!names.iter().any(|n| n.contains('*')), "{names:?}");
    }
}
