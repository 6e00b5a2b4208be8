//! The `px.*` functions DataFusion does not have, as scalar UDFs embedded in the plans the compiler
//! builds: metadata look-ups from a `upid` (through the [`MetadataResolver`]), the pid inside a upid,
//! and JSON field plucking. The quantiles aggregate lives in [`crate::quantiles`].

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, Float64Builder, Int64Builder, StringBuilder};
use arrow::datatypes::DataType;
use datafusion::common::{Result, ScalarValue, exec_err};
use datafusion::logical_expr::{
    ColumnarValue, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, Volatility,
};
use pixie_store::Upid;

use crate::{MetadataField, MetadataResolver};

/// Every scalar UDF PxL plans can contain, so an engine can also register them for SQL.
pub fn udfs(metadata: Arc<dyn MetadataResolver>) -> Vec<ScalarUDF> {
    let mut all: Vec<ScalarUDF> = MetadataField::ALL
        .iter()
        .filter(|f| **f != MetadataField::Pid)
        .map(|&field| ScalarUDF::new_from_impl(UpidToMetadata::new(field, metadata.clone())))
        .collect();
    all.push(ScalarUDF::new_from_impl(UpidToPid::new()));
    for kind in [PluckKind::Text, PluckKind::Float64, PluckKind::Int64] {
        all.push(ScalarUDF::new_from_impl(Pluck::new(kind)));
    }
    all
}

/// The UDF name of a metadata look-up, e.g. `px_upid_to_service_name`.
pub fn metadata_udf_name(field: MetadataField) -> &'static str {
    match field {
        MetadataField::Pod => "px_upid_to_pod_name",
        MetadataField::Service => "px_upid_to_service_name",
        MetadataField::Namespace => "px_upid_to_namespace",
        MetadataField::Node => "px_upid_to_node_name",
        MetadataField::Container => "px_upid_to_container_name",
        MetadataField::Pid => "px_upid_to_pid",
        MetadataField::Cmdline => "px_upid_to_cmdline",
        MetadataField::Hostname => "px_upid_to_hostname",
    }
}

/// Reads each upid's metadata value through the resolver; an unknown upid gives `""`, as Pixie
/// gives for unresolved metadata, so scripts filter with `df[df.service != '']`.
#[derive(Debug)]
pub struct UpidToMetadata {
    field: MetadataField,
    resolver: Arc<dyn MetadataResolver>,
    signature: Signature,
}

impl UpidToMetadata {
    pub fn new(field: MetadataField, resolver: Arc<dyn MetadataResolver>) -> Self {
        UpidToMetadata {
            field,
            resolver,
            // Stable, not immutable: the resolver's answers may change between queries.
            signature: Signature::exact(vec![DataType::Utf8], Volatility::Stable),
        }
    }
}

// Equality is identity of the resolver: two UDFs over different resolvers are different functions.
impl PartialEq for UpidToMetadata {
    fn eq(&self, other: &Self) -> bool {
        self.field == other.field && Arc::ptr_eq(&self.resolver, &other.resolver)
    }
}
impl Eq for UpidToMetadata {}
impl Hash for UpidToMetadata {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.field.hash(state);
        (Arc::as_ptr(&self.resolver) as *const () as usize).hash(state);
    }
}

impl ScalarUDFImpl for UpidToMetadata {
    fn name(&self) -> &str {
        metadata_udf_name(self.field)
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _: &[DataType]) -> Result<DataType> {
        Ok(DataType::Utf8)
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let resolve = |upid: &str| self.resolver.resolve(upid, self.field).unwrap_or_default();
        match &args.args[0] {
            ColumnarValue::Scalar(ScalarValue::Utf8(upid)) => Ok(ColumnarValue::Scalar(
                ScalarValue::Utf8(upid.as_deref().map(resolve)),
            )),
            ColumnarValue::Array(array) => {
                let upids = array.as_string::<i32>();
                // A batch holds few distinct processes: ask the resolver once per upid.
                let mut seen: HashMap<&str, String> = HashMap::new();
                let mut out = StringBuilder::with_capacity(upids.len(), upids.len() * 16);
                for upid in upids.iter() {
                    match upid {
                        Some(upid) => {
                            let value = seen.entry(upid).or_insert_with(|| resolve(upid));
                            out.append_value(value.as_str());
                        }
                        None => out.append_null(),
                    }
                }
                Ok(ColumnarValue::Array(Arc::new(out.finish())))
            }
            other => exec_err!("{}: want a string upid, got {other:?}", self.name()),
        }
    }
}

/// `px.upid_to_pid`: the pid is part of the upid text (`asid:pid:start_ticks`), so no resolver is
/// needed; malformed upids give null.
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct UpidToPid {
    signature: Signature,
}

impl UpidToPid {
    pub fn new() -> Self {
        UpidToPid {
            signature: Signature::exact(vec![DataType::Utf8], Volatility::Immutable),
        }
    }
}

fn pid_of(upid: &str) -> Option<i64> {
    upid.parse::<Upid>().ok().map(|u| i64::from(u.pid))
}

impl ScalarUDFImpl for UpidToPid {
    fn name(&self) -> &str {
        metadata_udf_name(MetadataField::Pid)
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _: &[DataType]) -> Result<DataType> {
        Ok(DataType::Int64)
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        match &args.args[0] {
            ColumnarValue::Scalar(ScalarValue::Utf8(upid)) => Ok(ColumnarValue::Scalar(
                ScalarValue::Int64(upid.as_deref().and_then(pid_of)),
            )),
            ColumnarValue::Array(array) => {
                let upids = array.as_string::<i32>();
                let mut out = Int64Builder::with_capacity(upids.len());
                for upid in upids.iter() {
                    out.append_option(upid.and_then(pid_of));
                }
                Ok(ColumnarValue::Array(Arc::new(out.finish())))
            }
            other => exec_err!("px_upid_to_pid: want a string upid, got {other:?}"),
        }
    }
}

/// What `px.pluck*` returns for the field.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PluckKind {
    /// `px.pluck`: strings as their text, other JSON values as JSON text, missing fields as `""`.
    Text,
    /// `px.pluck_float64`: numbers (or numeric strings) as float, anything else null.
    Float64,
    /// `px.pluck_int64`: integers (or integer strings) as int, anything else null.
    Int64,
}

impl PluckKind {
    pub fn udf_name(self) -> &'static str {
        match self {
            PluckKind::Text => "px_pluck",
            PluckKind::Float64 => "px_pluck_float64",
            PluckKind::Int64 => "px_pluck_int64",
        }
    }

    fn data_type(self) -> DataType {
        match self {
            PluckKind::Text => DataType::Utf8,
            PluckKind::Float64 => DataType::Float64,
            PluckKind::Int64 => DataType::Int64,
        }
    }
}

/// Reads one top-level field of a JSON object held as text (e.g. `req_headers`).
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct Pluck {
    kind: PluckKind,
    signature: Signature,
}

impl Pluck {
    pub fn new(kind: PluckKind) -> Self {
        Pluck {
            kind,
            signature: Signature::exact(
                vec![DataType::Utf8, DataType::Utf8],
                Volatility::Immutable,
            ),
        }
    }
}

/// The field `key` of the JSON object `json`, if `json` is an object that has it.
fn json_field(json: &str, key: &str) -> Option<serde_json::Value> {
    match serde_json::from_str::<serde_json::Value>(json) {
        Ok(serde_json::Value::Object(mut fields)) => fields.remove(key),
        _ => None,
    }
}

fn pluck_text(json: &str, key: &str) -> String {
    match json_field(json, key) {
        Some(serde_json::Value::String(s)) => s,
        Some(other) => other.to_string(),
        None => String::new(),
    }
}

fn pluck_f64(json: &str, key: &str) -> Option<f64> {
    match json_field(json, key)? {
        serde_json::Value::Number(n) => n.as_f64(),
        serde_json::Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

fn pluck_i64(json: &str, key: &str) -> Option<i64> {
    match json_field(json, key)? {
        serde_json::Value::Number(n) => n.as_i64(),
        serde_json::Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

impl ScalarUDFImpl for Pluck {
    fn name(&self) -> &str {
        self.kind.udf_name()
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _: &[DataType]) -> Result<DataType> {
        Ok(self.kind.data_type())
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let all_scalar = args
            .args
            .iter()
            .all(|a| matches!(a, ColumnarValue::Scalar(_)));
        // Scalars are expanded to the batch length (or to one row when every argument is scalar).
        let arrays = ColumnarValue::values_to_arrays(&args.args)?;
        let (json, key) = (arrays[0].as_string::<i32>(), arrays[1].as_string::<i32>());
        let pairs = (0..json.len())
            .map(|i| (json.is_valid(i) && key.is_valid(i)).then(|| (json.value(i), key.value(i))));
        let out: ArrayRef = match self.kind {
            PluckKind::Text => {
                let mut b = StringBuilder::with_capacity(json.len(), json.len() * 8);
                for pair in pairs {
                    b.append_option(pair.map(|(j, k)| pluck_text(j, k)));
                }
                Arc::new(b.finish())
            }
            PluckKind::Float64 => {
                let mut b = Float64Builder::with_capacity(json.len());
                for pair in pairs {
                    b.append_option(pair.and_then(|(j, k)| pluck_f64(j, k)));
                }
                Arc::new(b.finish())
            }
            PluckKind::Int64 => {
                let mut b = Int64Builder::with_capacity(json.len());
                for pair in pairs {
                    b.append_option(pair.and_then(|(j, k)| pluck_i64(j, k)));
                }
                Arc::new(b.finish())
            }
        };
        if all_scalar {
            Ok(ColumnarValue::Scalar(ScalarValue::try_from_array(&out, 0)?))
        } else {
            Ok(ColumnarValue::Array(out))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pluck_reads_strings_numbers_and_nested_values() {
        let json = r#"{"Host":"shop","n":3,"f":"2.5","o":{"a":1}}"#;
        assert_eq!(pluck_text(json, "Host"), "shop");
        assert_eq!(pluck_text(json, "n"), "3");
        assert_eq!(pluck_text(json, "o"), r#"{"a":1}"#);
        assert_eq!(pluck_text(json, "missing"), "");
        assert_eq!(pluck_text("not json", "Host"), "");
        assert_eq!(pluck_f64(json, "f"), Some(2.5));
        assert_eq!(pluck_f64(json, "n"), Some(3.0));
        assert_eq!(pluck_f64(json, "Host"), None);
        assert_eq!(pluck_i64(json, "n"), Some(3));
        assert_eq!(pluck_i64(json, "f"), None);
    }

    #[test]
    fn pid_comes_from_the_upid_text() {
        assert_eq!(pid_of("1:4242:999"), Some(4242));
        assert_eq!(pid_of("garbage"), None);
    }
}
