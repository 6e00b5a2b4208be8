//! Which table mappings a DataExport applies to one run's outputs: the DataExport's own
//! `spec.otel.tables`, and the script's `px.export(...)` calls (compiled to [`ExportPlan`]s), which
//! go to every DataExport the CronScript references. Both become the CRD's [`OtelTableMapping`], so
//! one mapping type reaches the exporter.

use pixie_crds::{
    DataExportSpec, GaugeMapping, OtelTableMapping, QuantileColumn, SpanKind, SpanMapping,
    SummaryMapping,
};
use pixie_pxl::ExportPlan;

/// A `px.export` plan in the DataExport's terms; its table is the export's output.
pub fn from_plan(plan: &ExportPlan) -> OtelTableMapping {
    OtelTableMapping {
        table: plan.output.clone(),
        resource: plan.resource.clone(),
        gauges: plan
            .gauges
            .iter()
            .map(|g| GaugeMapping {
                name: g.name.clone(),
                description: g.description.clone(),
                unit: g.unit.clone(),
                value_column: g.value_column.clone(),
                attributes: g.attributes.clone(),
            })
            .collect(),
        summaries: plan
            .summaries
            .iter()
            .map(|s| SummaryMapping {
                name: s.name.clone(),
                description: s.description.clone(),
                unit: s.unit.clone(),
                count_column: s.count_column.clone(),
                sum_column: s.sum_column.clone(),
                quantiles: s
                    .quantiles
                    .iter()
                    .map(|(quantile, column)| QuantileColumn {
                        quantile: *quantile,
                        value_column: column.clone(),
                    })
                    .collect(),
                attributes: s.attributes.clone(),
            })
            .collect(),
        spans: plan
            .spans
            .iter()
            .map(|s| SpanMapping {
                name: s.name.clone(),
                name_column: s.name_column.clone(),
                start_time_column: s.start_time_column.clone(),
                end_time_column: s.end_time_column.clone(),
                trace_id_column: s.trace_id_column.clone(),
                span_id_column: s.span_id_column.clone(),
                parent_span_id_column: s.parent_span_id_column.clone(),
                kind: s.kind.as_deref().and_then(span_kind),
                attributes: s.attributes.clone(),
            })
            .collect(),
    }
}

/// PxL's lower-case span kinds; anything else (SPAN_KIND_UNSPECIFIED) is left to the exporter.
fn span_kind(kind: &str) -> Option<SpanKind> {
    match kind.to_ascii_lowercase().as_str() {
        "internal" => Some(SpanKind::Internal),
        "server" => Some(SpanKind::Server),
        "client" => Some(SpanKind::Client),
        "producer" => Some(SpanKind::Producer),
        "consumer" => Some(SpanKind::Consumer),
        _ => None,
    }
}

/// The mappings of `export` that apply to a run whose outputs are `outputs`, or why none does.
///
/// A DataExport shared by several scripts may map tables that this script does not produce; those
/// entries are passed over. But when not one mapping applies, the results would silently go
/// nowhere, so that is an error naming what was expected and what there was.
pub fn mappings_for(
    export_name: &str,
    export: &DataExportSpec,
    plans: &[ExportPlan],
    outputs: &[String],
) -> Result<Vec<OtelTableMapping>, String> {
    let own = export
        .otel
        .iter()
        .flat_map(|otel| otel.tables.iter().cloned());
    let all: Vec<OtelTableMapping> = own.chain(plans.iter().map(from_plan)).collect();
    let applicable: Vec<OtelTableMapping> = all
        .iter()
        .filter(|m| outputs.contains(&m.table))
        .cloned()
        .collect();
    if applicable.is_empty() {
        let mapped: Vec<&str> = all.iter().map(|m| m.table.as_str()).collect();
        return Err(if mapped.is_empty() {
            format!(
                "DataExport {export_name:?} has no spec.otel table mappings and the script calls no px.export, so nothing says how its outputs ({}) become OpenTelemetry data",
                outputs.join(", ")
            )
        } else {
            format!(
                "DataExport {export_name:?} maps tables {} but the script's outputs are {}",
                quoted(&mapped),
                quoted(&outputs.iter().map(String::as_str).collect::<Vec<_>>())
            )
        });
    }
    Ok(applicable)
}

fn quoted(names: &[&str]) -> String {
    if names.is_empty() {
        return "(none)".into();
    }
    names
        .iter()
        .map(|n| format!("{n:?}"))
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use pixie_crds::OtelMapping;
    use pixie_pxl::{GaugeExport, SpanExport, SummaryExport};

    fn plan() -> ExportPlan {
        ExportPlan {
            output: "export".into(),
            resource: BTreeMap::from([("service.name".into(), "service".into())]),
            gauges: vec![GaugeExport {
                name: "http.requests".into(),
                description: Some("requests".into()),
                unit: Some("1".into()),
                value_column: "requests".into(),
                attributes: BTreeMap::from([("port".into(), "port".into())]),
            }],
            summaries: vec![SummaryExport {
                name: "http.latency".into(),
                description: None,
                unit: Some("ns".into()),
                count_column: "n".into(),
                sum_column: "total".into(),
                quantiles: vec![(0.5, "p50".into()), (0.99, "p99".into())],
                attributes: BTreeMap::new(),
            }],
            spans: vec![SpanExport {
                name: Some("request".into()),
                start_time_column: "start".into(),
                end_time_column: "end".into(),
                kind: Some("server".into()),
                ..Default::default()
            }],
        }
    }

    fn export_with(tables: &[&str]) -> DataExportSpec {
        DataExportSpec {
            otel: (!tables.is_empty()).then(|| OtelMapping {
                tables: tables
                    .iter()
                    .map(|t| OtelTableMapping {
                        table: (*t).into(),
                        resource: BTreeMap::from([("service.name".into(), "service".into())]),
                        gauges: vec![GaugeMapping {
                            name: "g".into(),
                            value_column: "v".into(),
                            ..Default::default()
                        }],
                        ..Default::default()
                    })
                    .collect(),
            }),
            ..Default::default()
        }
    }

    #[test]
    fn a_px_export_plan_becomes_the_crd_mapping_field_for_field() {
        let mapping = from_plan(&plan());
        assert_eq!(mapping.table, "export");
        assert_eq!(mapping.resource["service.name"], "service");
        assert_eq!(mapping.gauges[0].value_column, "requests");
        assert_eq!(mapping.gauges[0].attributes["port"], "port");
        assert_eq!(
            mapping.summaries[0].quantiles[1],
            QuantileColumn {
                quantile: 0.99,
                value_column: "p99".into()
            }
        );
        assert_eq!(mapping.spans[0].kind, Some(SpanKind::Server));
        assert_eq!(mapping.spans[0].name.as_deref(), Some("request"));
    }

    #[test]
    fn an_export_gets_its_own_tables_and_the_scripts_exports_that_exist() {
        let outputs = vec!["counts".to_owned(), "export".to_owned()];
        let mappings = mappings_for(
            "otel",
            &export_with(&["counts", "other"]),
            &[plan()],
            &outputs,
        )
        .unwrap();
        let tables: Vec<&str> = mappings.iter().map(|m| m.table.as_str()).collect();
        assert_eq!(tables, ["counts", "export"]);
    }

    #[test]
    fn an_export_that_maps_nothing_of_the_run_is_an_error_not_a_silent_no_op() {
        let outputs = vec!["counts".to_owned()];
        let error = mappings_for("otel", &export_with(&["latency"]), &[], &outputs).unwrap_err();
        assert_eq!(
            error,
            r#"DataExport "otel" maps tables "latency" but the script's outputs are "counts""#
        );
        let error = mappings_for("otel", &export_with(&[]), &[], &outputs).unwrap_err();
        assert!(error.contains("no spec.otel table mappings"), "{error}");
    }
}
