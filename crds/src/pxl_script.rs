//! `PxlScript`: a named PxL script with typed arguments, which CronScripts, the CLI and the UI refer
//! to by name. The operator compiles it and reports the result in status.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::{CustomResource, KubeSchema};
use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::{Deserialize, Serialize};

use crate::rules;

/// A named PxL script with typed arguments. CronScripts, `kubectl pixie run` and the UI refer to it by
/// name; the operator compiles it and reports errors and output tables in status.
// Each printcolumn(...) repeats the same keys, which clippy mistakes for duplicated attributes.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[kube(
    group = "px.dev",
    version = "v1alpha1",
    kind = "PxlScript",
    namespaced,
    status = "PxlScriptStatus",
    derive = "PartialEq",
    shortname = "pxs",
    category = "pixie",
    doc = "A named PxL script with typed arguments, referred to by CronScripts, the CLI and the UI.",
    printcolumn(
        name = "Compiled",
        type_ = "string",
        json_path = r#".status.conditions[?(@.type=="Compiled")].status"#,
        description = "Whether the script compiles"
    ),
    printcolumn(
        name = "Description",
        type_ = "string",
        json_path = ".spec.description",
        priority = 1,
        description = "What the script shows"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
pub struct PxlScriptSpec {
    /// One or two sentences on what the script shows, displayed by `kubectl pixie run -l` and the UI.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 1024))]
    pub description: Option<String>,

    /// The PxL source, starting with `import px`. Results are the tables it passes to px.display.
    #[schemars(length(min = 1, max = rules::PXL_SOURCE_MAX_LENGTH))]
    pub source: String,

    /// Arguments the script takes, with their types and defaults.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 32))]
    #[x_kube(merge_strategy = ListMerge::Map(vec!["name".into()]))]
    pub args: Vec<ScriptArg>,

    /// Optional visualisation spec in Pixie's vis.json shape (variables, globalFuncs, widgets),
    /// used by the UI to lay out the script's tables. Stored as written.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vis: Option<VisSpec>,
}

/// One argument of a PxL script.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
#[x_kube(
    validation = Rule::new(
        "!has(self.default) || (self.type == 'Int64' ? self.default.matches('^-?[0-9]+$') \
         : self.type == 'Float64' ? self.default.matches('^-?[0-9]+([.][0-9]+)?([eE][-+]?[0-9]+)?$') \
         : self.type == 'Boolean' ? self.default in ['true', 'false'] : true)")
        .message("default must be a value of the argument's type: an integer for Int64, a number for Float64, true or false for Boolean")
        .field_path(".default"),
    validation = Rule::new("!has(self.default) || !has(self.validValues) || self.default in self.validValues")
        .message("default must be one of validValues")
        .field_path(".default"),
)]
pub struct ScriptArg {
    /// Argument name as the script reads it (a Python identifier), such as start_time.
    #[schemars(length(min = 1, max = 63), regex(pattern = rules::IDENTIFIER_PATTERN))]
    pub name: String,

    /// Type of the argument's value. Pod, Service, Namespace, Node and Container are strings that
    /// name a Kubernetes entity (namespace/name), which the UI offers completions for.
    #[serde(rename = "type")]
    pub type_: ScriptArgType,

    /// Value used when the caller gives none, written as text (for example -5m, 100 or true). An
    /// argument without a default is required.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 1024))]
    pub default: Option<String>,

    /// What the argument means, shown in help output.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 1024))]
    pub description: Option<String>,

    /// When set, the only values the argument accepts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 64), inner(length(max = 256)))]
    pub valid_values: Option<Vec<String>>,
}

/// Type of a PxL script argument.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum ScriptArgType {
    /// Any text.
    String,
    /// A 64-bit signed integer.
    Int64,
    /// A 64-bit floating-point number.
    Float64,
    /// true or false.
    Boolean,
    /// A pod, as namespace/name.
    Pod,
    /// A service, as namespace/name.
    Service,
    /// A namespace name.
    Namespace,
    /// A node name.
    Node,
    /// A container name.
    Container,
}

/// A visualisation spec in Pixie's vis.json shape, kept as written.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(transparent)]
pub struct VisSpec(pub serde_json::Map<String, serde_json::Value>);

impl JsonSchema for VisSpec {
    fn inline_schema() -> bool {
        true
    }

    fn schema_name() -> std::borrow::Cow<'static, str> {
        "VisSpec".into()
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "type": "object",
            "x-kubernetes-preserve-unknown-fields": true,
        })
    }
}

/// Observed state of a PxlScript, written by the operator after compiling it.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct PxlScriptStatus {
    /// Compiled: True when the script compiles; when False its message is the compiler's
    /// line:col: message.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 16))]
    #[x_kube(merge_strategy = ListMerge::Map(vec!["type".into()]))]
    pub conditions: Vec<Condition>,

    /// The metadata.generation of the spec that was compiled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,

    /// Tables the script outputs (one per px.display call), with their columns.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub outputs: Vec<OutputTable>,
}

/// A table a script outputs.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct OutputTable {
    /// Table name, as given to px.display.
    pub name: String,
    /// Columns in output order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub columns: Vec<OutputColumn>,
}

/// A column of an output table.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct OutputColumn {
    /// Column name.
    pub name: String,
    /// PxL data type of the column.
    #[serde(rename = "type")]
    pub type_: DataType,
}

/// PxL's column data types.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum DataType {
    /// true or false.
    Boolean,
    /// 64-bit signed integer.
    Int64,
    /// 128-bit unsigned integer (UPIDs).
    Uint128,
    /// 64-bit floating-point number.
    Float64,
    /// UTF-8 text.
    String,
    /// Nanoseconds since the Unix epoch.
    #[serde(rename = "Time64NS")]
    Time64Ns,
}
