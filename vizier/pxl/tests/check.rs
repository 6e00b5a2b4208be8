//! `check`, the operator's way to validate scripts without a Vizier: every bundled script and every
//! script in the sample objects checks, and the catalog it uses lists exactly the store's tables.

use std::path::Path;

use arrow::datatypes::DataType;
use pixie_pxl::{CompileOptions, SchemaCatalog, TableCatalog, bundled_scripts, check};
use pixie_store::{StoreBudget, TableStore};
use serde_json::Value;

const NOW_NS: i64 = 1_700_000_060_000_000_000;

fn options() -> CompileOptions {
    CompileOptions {
        now_ns: NOW_NS,
        ..CompileOptions::default()
    }
}

/// A sample object from config/samples, as JSON.
fn sample(name: &str) -> Value {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../config/samples")
        .join(name);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_saphyr::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

#[test]
fn the_schema_catalog_lists_the_same_tables_as_the_store() {
    let mut catalog = SchemaCatalog::standard().table_names();
    let mut store = TableStore::new(StoreBudget::default()).table_names();
    catalog.sort();
    store.sort();
    assert_eq!(catalog, store);
    let store = TableStore::new(StoreBudget::default());
    for name in &catalog {
        let source = SchemaCatalog::standard().table_source(name).unwrap();
        assert_eq!(source.schema(), store.schema(name).unwrap(), "{name}");
    }
}

#[test]
fn every_bundled_script_checks_and_names_its_outputs() {
    for (name, source) in bundled_scripts() {
        let summary = check(source, &options()).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert!(!summary.outputs.is_empty(), "{name}");
        for output in &summary.outputs {
            assert!(!output.columns.is_empty(), "{name}: {}", output.name);
        }
        assert!(summary.exports.is_empty(), "{name}");
    }
}

#[test]
fn the_plugin_sample_script_checks_without_a_window_and_exports_a_gauge() {
    let plugin = sample("px_v1alpha1_plugin.yaml");
    let scripts = plugin["spec"]["presetScripts"].as_array().unwrap();
    assert!(!scripts.is_empty());
    for preset in scripts {
        let source = preset["script"].as_str().unwrap();
        let summary =
            check(source, &options()).unwrap_or_else(|e| panic!("preset {}: {e}", preset["name"]));
        assert_eq!(summary.exports.len(), 1);
        let export = &summary.exports[0];
        assert_eq!(export.output, "export");
        assert_eq!(export.resource["service.name"], "service");
        assert_eq!(export.gauges[0].name, "http.server.request_count");
        assert_eq!(export.gauges[0].value_column, "requests");
        let output = summary
            .outputs
            .iter()
            .find(|o| o.name == export.output)
            .unwrap();
        let columns: Vec<&str> = output.columns.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(columns, ["service", "requests", "time_"]);
    }
}

/// The PxlScript sample checks with its declared argument defaults (as the operator passes them),
/// and its output has every column the DataExport sample maps from it, with the types OTLP needs.
#[test]
fn the_pxlscript_sample_has_the_columns_the_dataexport_sample_maps() {
    let script = sample("px_v1alpha1_pxlscript.yaml");
    let mut options = options();
    for arg in script["spec"]["args"].as_array().into_iter().flatten() {
        if let Some(default) = arg["default"].as_str() {
            let name = arg["name"].as_str().unwrap();
            options.args.insert(name.to_string(), default.to_string());
        }
    }
    let source = script["spec"]["source"].as_str().unwrap();
    let summary = check(source, &options).unwrap();

    let export = sample("px_v1alpha1_dataexport.yaml");
    let tables = export["spec"]["otel"]["tables"].as_array().unwrap();
    for table in tables {
        let name = table["table"].as_str().unwrap();
        let output = summary
            .outputs
            .iter()
            .find(|o| o.name == name)
            .unwrap_or_else(|| panic!("the PxlScript sample has no output {name}"));
        let type_of = |column: &Value| {
            let column = column.as_str().unwrap();
            output
                .columns
                .iter()
                .find(|(n, _)| n == column)
                .map(|(_, t)| t.clone())
                .unwrap_or_else(|| panic!("{name} has no column {column}: {:?}", output.columns))
        };
        let numeric = |t: DataType| matches!(t, DataType::Int64 | DataType::Float64);
        for (_, column) in table["resource"].as_object().unwrap() {
            assert_eq!(type_of(column), DataType::Utf8);
        }
        for gauge in table["gauges"].as_array().into_iter().flatten() {
            assert!(numeric(type_of(&gauge["valueColumn"])), "{gauge}");
        }
        for summary in table["summaries"].as_array().into_iter().flatten() {
            assert_eq!(type_of(&summary["countColumn"]), DataType::Int64);
            assert!(numeric(type_of(&summary["sumColumn"])), "{summary}");
            for q in summary["quantiles"].as_array().into_iter().flatten() {
                assert!(numeric(type_of(&q["valueColumn"])), "{q}");
            }
        }
    }
}

#[test]
fn a_broken_script_fails_the_check_at_its_line_and_column() {
    let err = check(
        "import px\ndf = px.DataFrame(table='http_event')\npx.display(df)\n",
        &options(),
    )
    .unwrap_err();
    assert_eq!((err.line, err.col), (2, 25));
    assert!(err.message.contains("did you mean 'http_events'?"), "{err}");
}
