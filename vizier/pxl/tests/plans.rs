//! The contract with the engine, checked on the plans themselves: time bounds are plain
//! `time_ >= literal` / `time_ < literal` filters that reach a pushdown-capable scan, every UDF a
//! plan calls is in `udfs()`/`udafs()`, and entry parameters are reported.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use arrow::datatypes::SchemaRef;
use datafusion::common::tree_node::{TreeNode, TreeNodeRecursion};
use datafusion::common::{Result as DfResult, ScalarValue};
use datafusion::logical_expr::utils::split_conjunction_owned;
use datafusion::logical_expr::{
    BinaryExpr, Expr, LogicalPlan, Operator, TableProviderFilterPushDown, TableSource,
};
use datafusion::prelude::SessionContext;
use pixie_pxl::{CompileOptions, ScriptParam, TableCatalog, bundled_scripts, compile, udafs, udfs};
use pixie_store::tables;

use common::{Metadata, NOW_NS};

const S: i64 = 1_000_000_000;

/// Schemas only, and a scan that accepts filters, as the engine's table provider will.
struct PushdownCatalog;

#[derive(Debug)]
struct PushdownSource(SchemaRef);

impl TableSource for PushdownSource {
    fn schema(&self) -> SchemaRef {
        self.0.clone()
    }

    fn supports_filters_pushdown(
        &self,
        filters: &[&Expr],
    ) -> DfResult<Vec<TableProviderFilterPushDown>> {
        Ok(vec![TableProviderFilterPushDown::Inexact; filters.len()])
    }
}

impl TableCatalog for PushdownCatalog {
    fn table_names(&self) -> Vec<String> {
        tables::all().iter().map(|(n, _)| n.to_string()).collect()
    }

    fn table_source(&self, name: &str) -> Option<Arc<dyn TableSource>> {
        tables::all()
            .into_iter()
            .find(|(n, _)| *n == name)
            .map(|(_, schema)| Arc::new(PushdownSource(schema)) as Arc<dyn TableSource>)
    }
}

fn options() -> CompileOptions {
    CompileOptions {
        now_ns: NOW_NS,
        args: BTreeMap::new(),
        max_output_rows: None,
        window: None,
    }
}

fn plan_of(source: &str) -> LogicalPlan {
    let script = compile(source, &PushdownCatalog, Metadata::fixture(), &options()).unwrap();
    assert_eq!(script.outputs.len(), 1);
    script.outputs.into_iter().next().unwrap().plan
}

/// `time_ <op> TimestampNanosecond(ns)`, if the expression is exactly that.
fn time_bound(expr: &Expr) -> Option<(Operator, i64)> {
    let Expr::BinaryExpr(BinaryExpr { left, op, right }) = expr else {
        return None;
    };
    match (left.as_ref(), right.as_ref()) {
        (Expr::Column(c), Expr::Literal(ScalarValue::TimestampNanosecond(Some(ns), None), _))
            if c.name == "time_" =>
        {
            Some((*op, *ns))
        }
        _ => None,
    }
}

fn filters(plan: &LogicalPlan) -> Vec<Expr> {
    let mut found = Vec::new();
    plan.apply(|node| {
        if let LogicalPlan::Filter(f) = node {
            found.extend(split_conjunction_owned(f.predicate.clone()));
        }
        Ok(TreeNodeRecursion::Continue)
    })
    .unwrap();
    found
}

#[test]
fn start_and_end_times_are_plain_literal_filters_on_time() {
    let plan = plan_of(
        "import px\npx.display(px.DataFrame(table='http_events', start_time='-5m', end_time='-1m'))",
    );
    let bounds: BTreeSet<(String, i64)> = filters(&plan)
        .iter()
        .filter_map(time_bound)
        .map(|(op, ns)| (op.to_string(), ns))
        .collect();
    assert_eq!(
        bounds,
        BTreeSet::from([
            (">=".to_string(), NOW_NS - 300 * S),
            ("<".to_string(), NOW_NS - 60 * S),
        ])
    );
}

#[test]
fn script_time_comparisons_use_timestamp_literals_too() {
    let plan = plan_of(
        "import px\ndf = px.DataFrame(table='http_events')\npx.display(df[df.time_ >= px.now() - 10 * 1e9])",
    );
    let bounds: Vec<_> = filters(&plan).iter().filter_map(time_bound).collect();
    assert_eq!(bounds, vec![(Operator::GtEq, NOW_NS - 10 * S)]);
}

#[tokio::test]
async fn time_filters_reach_a_scan_that_accepts_them() {
    let plan = plan_of(
        "import px\ndf = px.DataFrame(table='http_events', start_time='-30s')\n\
         df.service = df.ctx['service']\npx.display(df.groupby('service').agg(n=('latency', px.count)))",
    );
    let optimized = SessionContext::new().state().optimize(&plan).unwrap();
    let mut scan_filters = Vec::new();
    optimized
        .apply(|node| {
            if let LogicalPlan::TableScan(scan) = node {
                scan_filters.extend(scan.filters.clone());
            }
            Ok(TreeNodeRecursion::Continue)
        })
        .unwrap();
    let bounds: Vec<_> = scan_filters.iter().filter_map(time_bound).collect();
    assert_eq!(
        bounds,
        vec![(Operator::GtEq, NOW_NS - 30 * S)],
        "{optimized}"
    );
}

#[test]
fn every_function_a_bundled_script_calls_is_registrable() {
    let registered: BTreeSet<String> = udfs(Metadata::fixture())
        .iter()
        .map(|f| f.name().to_string())
        .chain(udafs().iter().map(|f| f.name().to_string()))
        .collect();
    let mut used = BTreeSet::new();
    for (_, source) in bundled_scripts() {
        let script = compile(source, &PushdownCatalog, Metadata::fixture(), &options()).unwrap();
        for output in &script.outputs {
            output
                .plan
                .apply(|node| {
                    for e in node.expressions() {
                        e.apply(|e| {
                            match e {
                                Expr::ScalarFunction(f) if f.name().starts_with("px_") => {
                                    used.insert(f.name().to_string());
                                }
                                Expr::AggregateFunction(f) if f.func.name().starts_with("px_") => {
                                    used.insert(f.func.name().to_string());
                                }
                                _ => {}
                            }
                            Ok(TreeNodeRecursion::Continue)
                        })?;
                    }
                    Ok(TreeNodeRecursion::Continue)
                })
                .unwrap();
        }
    }
    assert!(used.contains("px_upid_to_service_name"), "{used:?}");
    assert!(used.contains("px_quantiles"), "{used:?}");
    let missing: Vec<_> = used.difference(&registered).collect();
    assert!(missing.is_empty(), "not in udfs()/udafs(): {missing:?}");
}

#[test]
fn entry_function_parameters_are_reported_with_types_and_defaults() {
    let source = bundled_scripts()
        .into_iter()
        .find(|(n, _)| *n == "px/http_data_filtered")
        .unwrap()
        .1;
    let script = compile(source, &PushdownCatalog, Metadata::fixture(), &options()).unwrap();
    let param = |name: &str, ty: &str, default: &str| ScriptParam {
        name: name.into(),
        type_name: ty.into(),
        default: Some(default.into()),
    };
    assert_eq!(
        script.params,
        vec![
            param("start_time", "str", "-5m"),
            param("svc", "px.Service", ""),
            param("path", "str", ""),
            param("min_status", "int", "0"),
            param("max_rows", "int", "100"),
        ]
    );
}

#[test]
fn top_level_scripts_have_no_parameters() {
    let source = "import px\npx.display(px.DataFrame(table='conn_stats'))";
    let script = compile(source, &PushdownCatalog, Metadata::fixture(), &options()).unwrap();
    assert!(script.params.is_empty());
    assert_eq!(script.outputs[0].name, "output");
}

#[test]
fn errors_display_as_line_colon_col_message() {
    let err = compile(
        "import px\n\ndf = px.DataFrame(table='http_event')\n",
        &PushdownCatalog,
        Metadata::fixture(),
        &options(),
    )
    .unwrap_err();
    assert_eq!((err.line, err.col), (3, 25));
    assert!(
        err.to_string()
            .starts_with("3:25: unknown table 'http_event'; did you mean 'http_events'?"),
        "{err}"
    );
}
