//! One [`OtlpSink`] per DataExport, built from its spec with header values and the CA certificate
//! read from Secrets, and rebuilt whenever what it was built from changes (the spec, or a Secret's
//! value). Sinks outlive runs: their queues keep retrying between runs.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use k8s_openapi::api::core::v1::Secret;
use kube::Api;
use pixie_crds::{DataExportSpec, SecretKeyRef};
use pixie_export::{OtlpSink, SinkConfig, SinkConfigError, TlsMode};

use crate::status::QueueCounts;

/// Secret values by (Secret name, key), as text.
pub type SecretValues = BTreeMap<(String, String), String>;

/// Every Secret key a DataExport reads: header values and the CA certificate.
pub fn secret_refs(spec: &DataExportSpec) -> Vec<SecretKeyRef> {
    let Some(otlp) = &spec.sink.otlp_grpc else {
        return vec![];
    };
    let headers = otlp
        .headers
        .iter()
        .filter_map(|h| h.value_from.as_ref().map(|v| v.secret_key_ref.clone()));
    let ca = otlp.tls.as_ref().and_then(|t| t.ca_secret_ref.clone());
    headers.chain(ca).collect()
}

/// Reads the Secret keys `refs` names from `namespace`; a missing Secret or key is left out, and
/// [`sink_config`] names the field that needed it.
pub async fn read_secrets(
    client: &kube::Client,
    namespace: &str,
    refs: &[SecretKeyRef],
) -> Result<SecretValues, kube::Error> {
    let api: Api<Secret> = Api::namespaced(client.clone(), namespace);
    let mut secrets: BTreeMap<String, Option<Secret>> = BTreeMap::new();
    let mut values = SecretValues::new();
    for reference in refs {
        if !secrets.contains_key(&reference.name) {
            secrets.insert(reference.name.clone(), api.get_opt(&reference.name).await?);
        }
        let Some(Some(secret)) = secrets.get(&reference.name) else {
            continue;
        };
        let value = secret
            .data
            .as_ref()
            .and_then(|d| d.get(&reference.key))
            .map(|bytes| String::from_utf8_lossy(&bytes.0).into_owned())
            .or_else(|| {
                secret
                    .string_data
                    .as_ref()
                    .and_then(|d| d.get(&reference.key))
                    .cloned()
            });
        if let Some(value) = value {
            values.insert((reference.name.clone(), reference.key.clone()), value);
        }
    }
    Ok(values)
}

/// The sink a DataExport asks for, with Secret values filled in; errors name the field.
pub fn sink_config(
    spec: &DataExportSpec,
    secrets: &SecretValues,
    max_queued_records: u64,
) -> Result<SinkConfig, String> {
    let otlp = spec
        .sink
        .otlp_grpc
        .as_ref()
        .ok_or("spec.sink: no sink type is set; supported: otlpGrpc")?;
    let lookup = |field: String, reference: &SecretKeyRef| {
        secrets
            .get(&(reference.name.clone(), reference.key.clone()))
            .cloned()
            .ok_or_else(|| {
                format!(
                    "{field}: key {:?} of Secret {:?} does not exist (or the Secret does not)",
                    reference.key, reference.name
                )
            })
    };
    let mut headers = Vec::with_capacity(otlp.headers.len());
    for (i, header) in otlp.headers.iter().enumerate() {
        let value = match (&header.value, &header.value_from) {
            (Some(value), _) => value.clone(),
            (None, Some(from)) => lookup(
                format!("spec.sink.otlpGrpc.headers[{i}].valueFrom.secretKeyRef"),
                &from.secret_key_ref,
            )?,
            (None, None) => {
                return Err(format!(
                    "spec.sink.otlpGrpc.headers[{i}]: one of value and valueFrom must be set"
                ));
            }
        };
        headers.push((header.name.clone(), value));
    }
    let ca_pem = match otlp.tls.as_ref().and_then(|t| t.ca_secret_ref.as_ref()) {
        Some(reference) => Some(lookup(
            "spec.sink.otlpGrpc.tls.caSecretRef".into(),
            reference,
        )?),
        None => None,
    };
    let timeout = match &otlp.timeout {
        Some(text) => {
            let parsed: kube::core::Duration = text.parse().map_err(|e| {
                format!("spec.sink.otlpGrpc.timeout: {text:?} is not a duration such as 10s: {e}")
            })?;
            if parsed.is_negative() {
                return Err(format!("spec.sink.otlpGrpc.timeout: {text:?} is negative"));
            }
            Duration::from(parsed)
        }
        None => SinkConfig::DEFAULT_TIMEOUT,
    };
    let mut config = SinkConfig::new(
        otlp.endpoint.clone(),
        TlsMode::from_spec(otlp.tls.as_ref(), ca_pem),
    );
    config.headers = headers;
    config.timeout = timeout;
    config.max_queued_records = max_queued_records;
    Ok(config)
}

struct Entry {
    config: SinkConfig,
    sink: Arc<OtlpSink>,
    /// Records dropped by sinks this one replaced, so that a rebuild does not hide drops.
    dropped_before: u64,
}

/// The sinks of the DataExports in use, by DataExport name.
#[derive(Default)]
pub struct Sinks {
    entries: Mutex<HashMap<String, Entry>>,
}

impl Sinks {
    /// The sink for `export`, built (or rebuilt, when `config` differs from the one in use).
    pub fn sink(&self, export: &str, config: SinkConfig) -> Result<Arc<OtlpSink>, SinkConfigError> {
        let mut entries = self.entries.lock().expect("not poisoned");
        if let Some(entry) = entries.get(export)
            && entry.config == config
        {
            return Ok(entry.sink.clone());
        }
        let sink = Arc::new(OtlpSink::new(config.clone())?);
        let dropped_before = match entries.remove(export) {
            // The old sink drops what it still holds once its last user lets go of it.
            Some(old) => {
                let stats = old.sink.stats();
                old.dropped_before + stats.dropped_records + stats.queued_records
            }
            None => 0,
        };
        tracing::info!(dataexport = export, endpoint = %config.endpoint, "built the OTLP sink");
        entries.insert(
            export.to_owned(),
            Entry {
                config,
                sink: sink.clone(),
                dropped_before,
            },
        );
        Ok(sink)
    }

    /// Queue counts of every sink, for status.
    pub fn counts(&self) -> Vec<(String, QueueCounts)> {
        let entries = self.entries.lock().expect("not poisoned");
        entries
            .iter()
            .map(|(name, entry)| {
                let stats = entry.sink.stats();
                let counts = QueueCounts {
                    dropped: entry.dropped_before + stats.dropped_records,
                    queued: stats.queued_records,
                };
                (name.clone(), counts)
            })
            .collect()
    }

    pub fn counts_of(&self, export: &str) -> QueueCounts {
        self.counts()
            .into_iter()
            .find(|(name, _)| name == export)
            .map(|(_, c)| c)
            .unwrap_or_default()
    }

    /// Drops the sinks of DataExports that no longer exist.
    pub fn retain(&self, keep: impl Fn(&str) -> bool) {
        self.entries
            .lock()
            .expect("not poisoned")
            .retain(|name, _| keep(name));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pixie_crds::{NamedValue, OtlpGrpcSink, Sink, TlsConfig};

    fn spec(otlp: OtlpGrpcSink) -> DataExportSpec {
        DataExportSpec {
            sink: Sink {
                otlp_grpc: Some(otlp),
            },
            otel: None,
        }
    }

    fn otlp() -> OtlpGrpcSink {
        OtlpGrpcSink {
            endpoint: "collector:4317".into(),
            ..Default::default()
        }
    }

    #[test]
    fn headers_and_the_ca_come_from_secrets() {
        let export = spec(OtlpGrpcSink {
            headers: vec![
                NamedValue::plain("x-tenant", "a"),
                NamedValue::from_secret("x-api-key", "otel-auth", "key"),
            ],
            tls: Some(TlsConfig {
                ca_secret_ref: Some(SecretKeyRef::new("otel-ca", "ca.crt")),
                ..Default::default()
            }),
            timeout: Some("3s".into()),
            ..otlp()
        });
        assert_eq!(
            secret_refs(&export),
            [
                SecretKeyRef::new("otel-auth", "key"),
                SecretKeyRef::new("otel-ca", "ca.crt")
            ]
        );
        let secrets = SecretValues::from([
            (("otel-auth".into(), "key".into()), "s3cret".into()),
            (
                ("otel-ca".into(), "ca.crt".into()),
                "-----BEGIN CERTIFICATE-----".into(),
            ),
        ]);
        let config = sink_config(&export, &secrets, 50).unwrap();
        assert_eq!(
            config.headers,
            [
                ("x-tenant".to_owned(), "a".to_owned()),
                ("x-api-key".to_owned(), "s3cret".to_owned())
            ]
        );
        assert_eq!(
            config.tls,
            TlsMode::Tls {
                ca_pem: Some("-----BEGIN CERTIFICATE-----".into()),
                server_name: None,
                insecure_skip_verify: false
            }
        );
        assert_eq!(
            (config.timeout, config.max_queued_records),
            (Duration::from_secs(3), 50)
        );
    }

    #[test]
    fn a_missing_secret_key_names_the_field() {
        let export = spec(OtlpGrpcSink {
            headers: vec![NamedValue::from_secret("x-api-key", "otel-auth", "key")],
            ..otlp()
        });
        let error = sink_config(&export, &SecretValues::new(), 10).unwrap_err();
        assert_eq!(
            error,
            r#"spec.sink.otlpGrpc.headers[0].valueFrom.secretKeyRef: key "key" of Secret "otel-auth" does not exist (or the Secret does not)"#
        );
    }

    #[test]
    fn insecure_is_plaintext_and_the_default_is_tls() {
        let insecure = spec(OtlpGrpcSink {
            tls: Some(TlsConfig {
                insecure: Some(true),
                ..Default::default()
            }),
            ..otlp()
        });
        assert_eq!(
            sink_config(&insecure, &SecretValues::new(), 10)
                .unwrap()
                .tls,
            TlsMode::Insecure
        );
        assert!(
            !sink_config(&spec(otlp()), &SecretValues::new(), 10)
                .unwrap()
                .tls
                .is_plaintext()
        );
    }

    #[tokio::test]
    async fn a_changed_config_rebuilds_the_sink_and_keeps_its_drops() {
        let sinks = Sinks::default();
        let insecure = spec(OtlpGrpcSink {
            tls: Some(TlsConfig {
                insecure: Some(true),
                ..Default::default()
            }),
            ..otlp()
        });
        let config = sink_config(&insecure, &SecretValues::new(), 10).unwrap();
        let first = sinks.sink("otel", config.clone()).unwrap();
        assert!(
            Arc::ptr_eq(&first, &sinks.sink("otel", config.clone()).unwrap()),
            "same config, same sink"
        );
        let mut changed = config;
        changed.headers.push(("x-api-key".into(), "rotated".into()));
        assert!(!Arc::ptr_eq(&first, &sinks.sink("otel", changed).unwrap()));
        assert_eq!(sinks.counts_of("otel"), QueueCounts::default());
        sinks.retain(|_| false);
        assert!(sinks.counts().is_empty());
    }
}
