//! Secrets the operator generates: the JWT signing key (`pl-cluster-secrets`), the TLS
//! certificates between Vizier components (`service-tls-certs`: a CA, a server and a client
//! certificate) and the CA that issued them (`service-tls-ca`, mounted by no pod). They are made
//! once, when missing, and kept across reconciles, operator restarts and upgrades; the only rewrite
//! is the renewal of the certificates in their last 30 days, by the same CA, so running pods keep
//! trusting the pods that already rolled onto the new ones. The cloud connector later adds the
//! cluster id to `pl-cluster-secrets`, which is why it is created, not applied.

use std::collections::BTreeMap;

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::jiff::{SignedDuration, Timestamp, ToSpan, tz::TimeZone};
use kube::Api;
use kube::api::PostParams;
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose,
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
/// Lifetime of the CA that issues them.
pub const CA_VALIDITY_DAYS: i64 = 10 * 365;
/// Certificates this close to their expiry are replaced.
pub const RENEW_BEFORE: SignedDuration = SignedDuration::from_hours(30 * 24);
/// The CA's certificate and key; read by the operator only.
pub const CA_SECRET: &str = "service-tls-ca";
/// Every Secret made here: kept as they are by reconciles, gone with the Vizier.
pub const GENERATED: [&str; 3] = [CLUSTER_SECRETS, TLS_SECRET, CA_SECRET];

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

/// The Vizier's certificate authority, kept in `service-tls-ca`, which no pod mounts: new leaf
/// certificates it issues are trusted by the pods still running on the old ones, so a renewal
/// rolls the pods without a moment in which they refuse each other.
pub struct Authority {
    cert_pem: String,
    key: KeyPair,
    params: CertificateParams,
    not_after: Timestamp,
}

impl Authority {
    fn params(inputs: &Inputs) -> Result<CertificateParams, Error> {
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        params.distinguished_name.push(DnType::CommonName, format!("pixie-{}-ca", inputs.namespace));
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
        Ok(params)
    }

    /// A new self-signed CA valid for [`CA_VALIDITY_DAYS`].
    pub fn generate(inputs: &Inputs, now: Timestamp) -> Result<Self, Error> {
        let mut params = Self::params(inputs)?;
        let not_after = validity_window(&mut params, now, CA_VALIDITY_DAYS);
        let key = KeyPair::generate()?;
        let cert_pem = params.self_signed(&key)?.pem();
        Ok(Authority { cert_pem, key, params, not_after })
    }

    /// The CA stored in `secret`, or None when it is incomplete or unreadable.
    pub fn from_secret(inputs: &Inputs, secret: &Secret) -> Option<Self> {
        let data = secret.data.as_ref()?;
        let text = |key: &str| String::from_utf8(data.get(key)?.0.clone()).ok();
        Some(Authority {
            cert_pem: text("ca.crt")?,
            key: KeyPair::from_pem(&text("ca.key")?).ok()?,
            params: Self::params(inputs).ok()?,
            not_after: not_after(secret)?,
        })
    }

    pub fn to_secret(&self, inputs: &Inputs) -> Secret {
        let data = BTreeMap::from([("ca.crt", self.cert_pem.clone()), ("ca.key", self.key.serialize_pem())]);
        secret_with_expiry(inputs, CA_SECRET, data, self.not_after)
    }

    /// `service-tls-certs`: this CA's `ca.crt`, and newly issued `server.crt`/`server.key` and
    /// `client.crt`/`client.key` valid for [`CERT_VALIDITY_DAYS`].
    pub fn issue(&self, inputs: &Inputs, now: Timestamp) -> Result<Secret, Error> {
        let issuer = Issuer::from_params(&self.params, &self.key);
        let mut not_after = now;
        let mut leaf = |names: Vec<String>, common_name: &str, usages: Vec<ExtendedKeyUsagePurpose>| {
            let mut params = CertificateParams::new(names)?;
            params.distinguished_name.push(DnType::CommonName, common_name);
            params.extended_key_usages = usages;
            not_after = validity_window(&mut params, now, CERT_VALIDITY_DAYS);
            let key = KeyPair::generate()?;
            let cert = params.signed_by(&key, &issuer)?;
            Ok::<_, Error>((cert.pem(), key.serialize_pem()))
        };
        let (server, server_key) = leaf(
            server_names(&inputs.namespace),
            "pixie-server",
            vec![ExtendedKeyUsagePurpose::ServerAuth, ExtendedKeyUsagePurpose::ClientAuth],
        )?;
        let (client, client_key) = leaf(vec![], "pixie-client", vec![ExtendedKeyUsagePurpose::ClientAuth])?;
        let data = BTreeMap::from([
            ("ca.crt", self.cert_pem.clone()),
            ("server.crt", server),
            ("server.key", server_key),
            ("client.crt", client),
            ("client.key", client_key),
        ]);
        Ok(secret_with_expiry(inputs, TLS_SECRET, data, not_after))
    }

    /// Whether leaves issued at `now` would outlive this CA (or nearly), so a new CA is due.
    fn expires_before_its_leaves(&self, now: Timestamp) -> bool {
        self.not_after.duration_since(now) < SignedDuration::from_hours(CERT_VALIDITY_DAYS * 24) + RENEW_BEFORE
    }
}

/// Sets `params` valid from a day before `now` (clock skew between nodes) for `days`; returns the end.
fn validity_window(params: &mut CertificateParams, now: Timestamp, days: i64) -> Timestamp {
    let date = |t: Timestamp| {
        let d = t.to_zoned(TimeZone::UTC).date();
        rcgen::date_time_ymd(d.year().into(), d.month() as u8, d.day() as u8)
    };
    let not_after = now.checked_add((days * 24).hours()).expect("the validity ends at a valid time");
    params.not_before = date(now.checked_sub(24.hours()).expect("valid time"));
    params.not_after = date(not_after);
    not_after
}

fn secret_with_expiry(inputs: &Inputs, name: &str, data: BTreeMap<&str, String>, not_after: Timestamp) -> Secret {
    let mut metadata = meta(inputs, name, None);
    metadata.annotations = Some(BTreeMap::from([(ANNOTATION_NOT_AFTER.to_owned(), not_after.to_string())]));
    Secret {
        metadata,
        data: Some(data.into_iter().map(|(k, v)| (k.to_owned(), ByteString(v.into_bytes()))).collect()),
        type_: Some("Opaque".into()),
        ..Default::default()
    }
}

fn not_after(secret: &Secret) -> Option<Timestamp> {
    secret.metadata.annotations.as_ref()?.get(ANNOTATION_NOT_AFTER)?.parse().ok()
}

/// `service-tls-certs` from a new CA: what a Vizier starts with.
pub fn tls_secret(inputs: &Inputs, now: Timestamp) -> Result<Secret, Error> {
    Authority::generate(inputs, now)?.issue(inputs, now)
}

/// What [`ensure`] found or made.
#[derive(Debug, Default)]
pub struct SecretsState {
    pub created: Vec<String>,
    /// The service certificates were replaced because they neared their expiry.
    pub renewed: bool,
    /// Expiry of the service certificates, from the annotation of `service-tls-certs`.
    pub tls_not_after: Option<Timestamp>,
    /// The cloud connector has registered the cluster: `pl-cluster-secrets` holds its `cluster-id`.
    pub cluster_registered: bool,
}

/// Creates the generated Secrets that are missing and renews the service certificates within
/// [`RENEW_BEFORE`] of their expiry; otherwise leaves them exactly as they are.
pub async fn ensure(api: &Api<Secret>, inputs: &Inputs, now: Timestamp) -> Result<SecretsState, Error> {
    let mut state = SecretsState::default();
    let cluster = match get(api, CLUSTER_SECRETS).await? {
        Some(secret) => secret,
        None => create(api, cluster_secrets(inputs), &mut state).await?,
    };
    state.cluster_registered =
        cluster.data.as_ref().and_then(|d| d.get(CLUSTER_ID_KEY)).is_some_and(|id| !id.0.is_empty());

    let certs = match get(api, TLS_SECRET).await? {
        Some(certs) if !renewal_due(&certs, now) => certs,
        Some(old) => {
            let issued = authority(api, inputs, now, &mut state).await?.issue(inputs, now)?;
            let certs = replace(api, &old, issued).await?;
            state.renewed = true;
            tracing::info!(old_not_after = ?not_after(&old), new_not_after = ?not_after(&certs), "renewed the service certificates");
            certs
        }
        None => {
            let issued = authority(api, inputs, now, &mut state).await?.issue(inputs, now)?;
            create(api, issued, &mut state).await?
        }
    };
    state.tls_not_after = not_after(&certs);
    Ok(state)
}

/// Certificates without a recorded expiry (made by hand) are left alone.
fn renewal_due(certs: &Secret, now: Timestamp) -> bool {
    not_after(certs).is_some_and(|t| t.duration_since(now) < RENEW_BEFORE)
}

/// The stored CA, or a new one when there is none, it cannot be read, or it would expire before
/// the leaves it is about to issue.
async fn authority(api: &Api<Secret>, inputs: &Inputs, now: Timestamp, state: &mut SecretsState) -> Result<Authority, Error> {
    let stored = get(api, CA_SECRET).await?;
    if let Some(ca) = stored.as_ref().and_then(|s| Authority::from_secret(inputs, s))
        && !ca.expires_before_its_leaves(now)
    {
        return Ok(ca);
    }
    let ca = Authority::generate(inputs, now)?;
    let written = match stored {
        Some(old) => replace(api, &old, ca.to_secret(inputs)).await?,
        None => create(api, ca.to_secret(inputs), state).await?,
    };
    // Another reconcile may have won the race: use what was stored.
    Authority::from_secret(inputs, &written).ok_or_else(|| Error::SecretWrite {
        name: CA_SECRET.to_owned(),
        source: kube::Error::Service("the stored CA cannot be read".into()),
    })
}

async fn get(api: &Api<Secret>, name: &str) -> Result<Option<Secret>, Error> {
    api.get_opt(name).await.map_err(|source| Error::Fetch { what: format!("secret {name}"), source })
}

fn write_params() -> PostParams {
    PostParams { field_manager: Some(crate::FIELD_MANAGER.to_owned()), ..Default::default() }
}

/// Creates `secret`; when it exists already (an interrupted earlier reconcile made it), returns the
/// stored one.
async fn create(api: &Api<Secret>, secret: Secret, state: &mut SecretsState) -> Result<Secret, Error> {
    let name = secret.metadata.name.clone().expect("rendered secrets are named");
    match api.create(&write_params(), &secret).await {
        Ok(created) => {
            state.created.push(name);
            Ok(created)
        }
        Err(kube::Error::Api(status)) if status.code == 409 => {
            get(api, &name).await?.ok_or_else(|| Error::SecretWrite { name, source: kube::Error::Api(status) })
        }
        Err(source) => Err(Error::SecretWrite { name, source }),
    }
}

/// Replaces `old` with `new` only if nobody changed it since it was read (a conflict is retried).
async fn replace(api: &Api<Secret>, old: &Secret, mut new: Secret) -> Result<Secret, Error> {
    let name = new.metadata.name.clone().expect("rendered secrets are named");
    new.metadata.resource_version = old.metadata.resource_version.clone();
    api.replace(&name, &write_params(), &new).await.map_err(|source| Error::SecretWrite { name, source })
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
            tls_not_after: None,
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

    /// Whether the `server.crt` of `certs` is a valid server certificate for `name` under `ca_pem`.
    fn server_cert_verifies(ca_pem: &[u8], certs: &Secret, name: &str, at: Timestamp) -> Result<(), String> {
        use rustls::client::danger::ServerCertVerifier;
        use rustls::pki_types::pem::PemObject;
        use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
        let mut roots = rustls::RootCertStore::empty();
        roots.add(CertificateDer::from_pem_slice(ca_pem).unwrap()).unwrap();
        let provider = std::sync::Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let verifier = rustls::client::WebPkiServerVerifier::builder_with_provider(roots.into(), provider)
            .build()
            .unwrap();
        let server = CertificateDer::from_pem_slice(&certs.data.as_ref().unwrap()["server.crt"].0).unwrap();
        let at = UnixTime::since_unix_epoch(std::time::Duration::from_secs(at.as_second() as u64));
        verifier
            .verify_server_cert(&server, &[], &ServerName::try_from(name.to_owned()).unwrap(), &[], at)
            .map(|_| ())
            .map_err(|e| e.to_string())
    }

    #[test]
    fn renewed_certificates_come_from_the_stored_ca_so_running_pods_still_trust_them() {
        let inputs = inputs();
        let start: Timestamp = "2026-01-01T00:00:00Z".parse().unwrap();
        let ca = Authority::generate(&inputs, start).unwrap();
        let first = ca.issue(&inputs, start).unwrap();
        let ca_pem = first.data.as_ref().unwrap()["ca.crt"].0.clone();

        // Two weeks before the expiry, from the CA as the Secret keeps it.
        let later: Timestamp = "2026-12-15T00:00:00Z".parse().unwrap();
        assert!(renewal_due(&first, later) && !renewal_due(&first, "2026-11-01T00:00:00Z".parse().unwrap()));
        let stored = Authority::from_secret(&inputs, &ca.to_secret(&inputs)).expect("the CA reads back");
        assert!(!stored.expires_before_its_leaves(later));
        let renewed = stored.issue(&inputs, later).unwrap();
        assert_eq!(renewed.data.as_ref().unwrap()["ca.crt"].0, ca_pem, "same CA");
        assert_ne!(renewed.data.as_ref().unwrap()["server.key"], first.data.as_ref().unwrap()["server.key"]);
        assert_eq!(not_after(&renewed), Some("2027-12-15T00:00:00Z".parse().unwrap()));

        // What a pod started before the renewal trusts accepts the new server certificate, past
        // the old one's expiry; a certificate from another CA is refused.
        let after_old_expiry: Timestamp = "2027-02-01T00:00:00Z".parse().unwrap();
        server_cert_verifies(&ca_pem, &renewed, "vizier-pem-svc.pl.svc", after_old_expiry).unwrap();
        let err = server_cert_verifies(&ca_pem, &first, "vizier-pem-svc.pl.svc", after_old_expiry).unwrap_err();
        assert!(err.contains("expired"), "{err}");
        let stranger = tls_secret(&inputs, later).unwrap();
        assert!(server_cert_verifies(&ca_pem, &stranger, "vizier-pem-svc.pl.svc", later).is_err());
    }

    #[test]
    fn a_ca_near_its_own_end_is_replaced_before_it_issues() {
        let inputs = inputs();
        let ca = Authority::generate(&inputs, "2026-01-01T00:00:00Z".parse().unwrap()).unwrap();
        // Leaves issued in 2035 would outlive the CA (valid until the end of 2035).
        assert!(!ca.expires_before_its_leaves("2034-01-01T00:00:00Z".parse().unwrap()));
        assert!(ca.expires_before_its_leaves("2035-01-01T00:00:00Z".parse().unwrap()));
        let mut broken = ca.to_secret(&inputs);
        broken.data.as_mut().unwrap().insert("ca.key".into(), ByteString(b"not a key".to_vec()));
        assert!(Authority::from_secret(&inputs, &broken).is_none());
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
