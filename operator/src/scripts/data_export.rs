//! DataExport: the operator checks what the query broker needs to deliver to it and reports
//! `Ready`; the broker owns the delivery fields and `Degraded`.
//!
//! Ready=False reasons, in the order they are checked (the message lists every problem, each with
//! its field path): `InvalidEndpoint`, `SecretNotFound`, `SecretKeyNotFound`, `MappingError` (a
//! spec.otel mapping that no result table could satisfy). Otherwise Ready=True, reason `Valid`.
//! Whether the mapping fits a script's outputs is checked on each CronScript that uses the export.

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv6Addr;

use k8s_openapi::api::core::v1::Secret;
use kube::ResourceExt;
use kube::api::Api;
use kube::runtime::controller::Action;
use pixie_crds::common::CONDITION_READY;
use pixie_crds::data_export::OtelMapping;
use pixie_crds::{DataExport, DataExportSpec, SecretKeyRef};
use serde_json::Map;

use super::cron_script::Problem;
use super::status::{self, want};
use super::{Context, Error, RESYNC};
use crate::status::Want;

/// The keys of each referenced Secret, or None when the Secret does not exist.
pub type SecretKeys = BTreeMap<String, Option<BTreeSet<String>>>;

/// Every Secret reference of the spec, with its field path.
pub fn secret_refs(spec: &DataExportSpec) -> Vec<(String, &SecretKeyRef)> {
    let Some(sink) = &spec.sink.otlp_grpc else {
        return Vec::new();
    };
    let headers = sink
        .headers
        .iter()
        .enumerate()
        .filter_map(|(index, header)| {
            let from = header.value_from.as_ref()?;
            Some((
                format!("spec.sink.otlpGrpc.headers[{index}].valueFrom.secretKeyRef"),
                &from.secret_key_ref,
            ))
        });
    let ca = sink.tls.as_ref().and_then(|tls| tls.ca_secret_ref.as_ref());
    headers
        .chain(ca.map(|r| ("spec.sink.otlpGrpc.tls.caSecretRef".to_owned(), r)))
        .collect()
}

/// The names of the Secrets the spec reads.
pub fn referenced_secrets(spec: &DataExportSpec) -> BTreeSet<String> {
    secret_refs(spec)
        .into_iter()
        .map(|(_, r)| r.name.clone())
        .collect()
}

/// What is wrong with a `host:port` endpoint beyond what the schema checks, if anything.
pub fn endpoint_problem(endpoint: &str) -> Option<String> {
    let Some((host, port)) = endpoint.rsplit_once(':') else {
        return Some("must be host:port".into());
    };
    match port.parse::<u32>() {
        Ok(1..=65535) => {}
        _ => return Some(format!("port {port:?} is not a number from 1 to 65535")),
    }
    if let Some(inner) = host.strip_prefix('[') {
        let address = inner.strip_suffix(']').unwrap_or(inner);
        return address
            .parse::<Ipv6Addr>()
            .is_err()
            .then(|| format!("{host} is not an IPv6 address"));
    }
    if host.len() > 253 {
        return Some(format!(
            "host name is {} characters long; at most 253 are allowed",
            host.len()
        ));
    }
    host.split('.')
        .find(|label| label.is_empty() || label.len() > 63)
        .map(|label| format!("host name label {label:?} must be 1 to 63 characters long"))
}

fn is_column_name(text: &str) -> bool {
    let mut chars = text.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// Mistakes in spec.otel that no result table could make right.
pub fn mapping_problems(otel: &OtelMapping) -> Vec<String> {
    let mut problems = Vec::new();
    for (index, table) in otel.tables.iter().enumerate() {
        let at = format!("spec.otel.tables[{index}]");
        let mut maps: Vec<(String, &BTreeMap<String, String>)> =
            vec![(format!("{at}.resource"), &table.resource)];
        maps.extend(
            table
                .gauges
                .iter()
                .enumerate()
                .map(|(i, g)| (format!("{at}.gauges[{i}].attributes"), &g.attributes)),
        );
        maps.extend(
            table
                .summaries
                .iter()
                .enumerate()
                .map(|(i, s)| (format!("{at}.summaries[{i}].attributes"), &s.attributes)),
        );
        maps.extend(
            table
                .spans
                .iter()
                .enumerate()
                .map(|(i, s)| (format!("{at}.spans[{i}].attributes"), &s.attributes)),
        );
        for (field, map) in maps {
            for (attribute, column) in map {
                if attribute.trim().is_empty() {
                    problems.push(format!("{field}: attribute names must not be empty"));
                }
                if !is_column_name(column) {
                    problems.push(format!(
                        "{field}[{attribute:?}]: {column:?} is not a column name"
                    ));
                }
            }
        }
        let mut metrics: BTreeMap<&str, Vec<String>> = BTreeMap::new();
        for (i, gauge) in table.gauges.iter().enumerate() {
            metrics
                .entry(&gauge.name)
                .or_default()
                .push(format!("gauges[{i}]"));
        }
        for (i, summary) in table.summaries.iter().enumerate() {
            metrics
                .entry(&summary.name)
                .or_default()
                .push(format!("summaries[{i}]"));
            let mut seen = Vec::new();
            for (q, quantile) in summary.quantiles.iter().enumerate() {
                if seen.contains(&quantile.quantile) {
                    problems.push(format!(
                        "{at}.summaries[{i}].quantiles[{q}]: quantile {} is listed twice",
                        quantile.quantile
                    ));
                }
                seen.push(quantile.quantile);
            }
        }
        for (metric, entries) in metrics.into_iter().filter(|(_, entries)| entries.len() > 1) {
            problems.push(format!(
                "{at}: metric {metric:?} is defined more than once ({})",
                entries.join(", ")
            ));
        }
    }
    problems
}

/// Every problem of the spec, given the keys of the Secrets it references.
pub fn problems(spec: &DataExportSpec, secrets: &SecretKeys) -> Vec<Problem> {
    let mut problems = Vec::new();
    match &spec.sink.otlp_grpc {
        Some(sink) => {
            if let Some(problem) = endpoint_problem(&sink.endpoint) {
                problems.push(Problem {
                    reason: "InvalidEndpoint",
                    message: format!(
                        "spec.sink.otlpGrpc.endpoint: {:?}: {problem}",
                        sink.endpoint
                    ),
                });
            }
        }
        None => problems.push(Problem {
            reason: "InvalidEndpoint",
            message: "spec.sink: no sink type is set".into(),
        }),
    }
    let mut missing_keys = Vec::new();
    for (field, reference) in secret_refs(spec) {
        match secrets.get(&reference.name) {
            Some(Some(keys)) if keys.contains(&reference.key) => {}
            Some(Some(keys)) => {
                let keys: Vec<&str> = keys.iter().map(String::as_str).collect();
                missing_keys.push(Problem {
                    reason: "SecretKeyNotFound",
                    message: format!(
                        "{field}: secret {:?} has no key {:?} (keys: {})",
                        reference.name,
                        reference.key,
                        if keys.is_empty() {
                            "none".to_owned()
                        } else {
                            keys.join(", ")
                        }
                    ),
                });
            }
            _ => problems.push(Problem {
                reason: "SecretNotFound",
                message: format!(
                    "{field}: secret {:?} does not exist in this namespace",
                    reference.name
                ),
            }),
        }
    }
    problems.extend(missing_keys);
    if let Some(otel) = &spec.otel {
        problems.extend(mapping_problems(otel).into_iter().map(|message| Problem {
            reason: "MappingError",
            message,
        }));
    }
    problems
}

/// The Ready condition for the spec and the Secrets it references.
pub fn assess(spec: &DataExportSpec, secrets: &SecretKeys) -> Want {
    let problems = problems(spec, secrets);
    if let Some(first) = problems.first() {
        let messages: Vec<&str> = problems.iter().map(|p| p.message.as_str()).collect();
        return want(CONDITION_READY, false, first.reason, messages.join("; "));
    }
    let Some(sink) = &spec.sink.otlp_grpc else {
        unreachable!("a spec without a sink has a problem")
    };
    let transport = match &sink.tls {
        Some(tls) if tls.insecure == Some(true) => "plaintext",
        _ => "TLS",
    };
    let mut message = format!("sends to {} over OTLP/gRPC with {transport}", sink.endpoint);
    if !sink.headers.is_empty() {
        message.push_str(&format!(" and {} header(s)", sink.headers.len()));
    }
    want(CONDITION_READY, true, "Valid", message)
}

/// Reads the keys (never the values) of the Secrets the spec references.
async fn secret_keys(api: &Api<Secret>, spec: &DataExportSpec) -> Result<SecretKeys, Error> {
    let mut found = SecretKeys::new();
    for name in referenced_secrets(spec) {
        let secret = api.get_opt(&name).await.map_err(|source| Error::Read {
            what: format!("Secret {name}"),
            source,
        })?;
        let keys = secret.map(|s| {
            let data = s.data.unwrap_or_default().into_keys();
            data.chain(s.string_data.unwrap_or_default().into_keys())
                .collect()
        });
        found.insert(name, keys);
    }
    Ok(found)
}

pub async fn reconcile(export: &DataExport, ctx: &Context) -> Result<Action, Error> {
    let namespace = export.namespace().unwrap_or_default();
    let secrets = secret_keys(
        &Api::namespaced(ctx.client.clone(), &namespace),
        &export.spec,
    )
    .await?;
    let ready = assess(&export.spec, &secrets);
    let api: Api<DataExport> = Api::namespaced(ctx.client.clone(), &namespace);
    status::write(&api, &ctx.recorder, export, &[ready], &[], Map::new())
        .await
        .map_err(Error::Status)?;
    Ok(Action::requeue(RESYNC))
}

#[cfg(test)]
mod tests {
    use pixie_crds::data_export::{
        GaugeMapping, OtelTableMapping, OtlpGrpcSink, QuantileColumn, Sink, SummaryMapping,
        TlsConfig,
    };
    use pixie_crds::{NamedValue, SecretKeyRef};

    use super::*;

    fn spec() -> DataExportSpec {
        DataExportSpec {
            sink: Sink {
                otlp_grpc: Some(OtlpGrpcSink {
                    endpoint: "otel-collector.observability.svc:4317".into(),
                    headers: vec![
                        NamedValue::plain("x-scope", "a"),
                        NamedValue::from_secret("x-api-key", "creds", "api-key"),
                    ],
                    tls: Some(TlsConfig {
                        ca_secret_ref: Some(SecretKeyRef::new("ca", "ca.crt")),
                        ..Default::default()
                    }),
                    timeout: None,
                }),
            },
            otel: None,
        }
    }

    fn keys(entries: &[(&str, &[&str])]) -> SecretKeys {
        entries
            .iter()
            .map(|(name, keys)| {
                (
                    name.to_string(),
                    Some(keys.iter().map(|k| k.to_string()).collect()),
                )
            })
            .collect()
    }

    #[test]
    fn references_name_their_field_paths() {
        assert_eq!(
            referenced_secrets(&spec()),
            ["ca".to_owned(), "creds".to_owned()].into()
        );
        let found = problems(&spec(), &keys(&[("creds", &["token"])]));
        let messages: Vec<&str> = found.iter().map(|p| p.message.as_str()).collect();
        assert_eq!(
            messages,
            [
                r#"spec.sink.otlpGrpc.tls.caSecretRef: secret "ca" does not exist in this namespace"#,
                r#"spec.sink.otlpGrpc.headers[1].valueFrom.secretKeyRef: secret "creds" has no key "api-key" (keys: token)"#,
            ]
        );
        let ready = assess(&spec(), &keys(&[("creds", &["token"])]));
        assert_eq!(
            (ready.status, ready.reason.as_str()),
            (false, "SecretNotFound")
        );
    }

    #[test]
    fn resolvable_secrets_make_it_valid() {
        let ready = assess(
            &spec(),
            &keys(&[("creds", &["api-key"]), ("ca", &["ca.crt"])]),
        );
        assert!(ready.status, "{ready:?}");
        assert_eq!(ready.reason, "Valid");
        assert_eq!(
            ready.message,
            "sends to otel-collector.observability.svc:4317 over OTLP/gRPC with TLS and 2 header(s)"
        );
    }

    #[test]
    fn endpoints_are_checked_beyond_the_schema() {
        assert_eq!(endpoint_problem("otel:4317"), None);
        assert_eq!(endpoint_problem("[::1]:4317"), None);
        assert!(
            endpoint_problem("otel:99999")
                .unwrap()
                .contains("1 to 65535")
        );
        assert!(endpoint_problem("otel:0").is_some());
        assert!(endpoint_problem("[zz::1]:4317").unwrap().contains("IPv6"));
        assert!(
            endpoint_problem(&format!("{}.svc:4317", "a".repeat(64)))
                .unwrap()
                .contains("63")
        );
        let mut bad = spec();
        bad.sink.otlp_grpc.as_mut().unwrap().endpoint = "otel:70000".into();
        let ready = assess(&bad, &keys(&[("creds", &["api-key"]), ("ca", &["ca.crt"])]));
        assert_eq!(ready.reason, "InvalidEndpoint");
        assert!(
            ready
                .message
                .starts_with("spec.sink.otlpGrpc.endpoint: \"otel:70000\""),
            "{}",
            ready.message
        );
    }

    #[test]
    fn impossible_mappings_are_mapping_errors() {
        let gauge = |name: &str| GaugeMapping {
            name: name.into(),
            value_column: "v".into(),
            ..Default::default()
        };
        let table = OtelTableMapping {
            table: "t".into(),
            resource: [("service.name".to_owned(), "not a column".to_owned())].into(),
            gauges: vec![gauge("m"), gauge("m")],
            summaries: vec![SummaryMapping {
                name: "s".into(),
                count_column: "n".into(),
                sum_column: "sum".into(),
                quantiles: vec![
                    QuantileColumn {
                        quantile: 0.5,
                        value_column: "p50".into(),
                    },
                    QuantileColumn {
                        quantile: 0.5,
                        value_column: "p50b".into(),
                    },
                ],
                ..Default::default()
            }],
            ..Default::default()
        };
        let found = mapping_problems(&OtelMapping {
            tables: vec![table],
        });
        assert_eq!(
            found,
            [
                r#"spec.otel.tables[0].resource["service.name"]: "not a column" is not a column name"#,
                "spec.otel.tables[0].summaries[0].quantiles[1]: quantile 0.5 is listed twice",
                r#"spec.otel.tables[0]: metric "m" is defined more than once (gauges[0], gauges[1])"#,
            ]
        );
    }
}
