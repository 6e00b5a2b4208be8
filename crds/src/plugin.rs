//! `Plugin`: an export plugin in the manner of Pixie's plugin system (New Relic, generic
//! OpenTelemetry). When enabled, the operator materialises a DataExport for the plugin's endpoint and
//! one CronScript per preset script.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::{CustomResource, KubeSchema};
use serde::{Deserialize, Serialize};

use crate::common::{LocalObjectRef, NamedValue};
use crate::rules;

/// An export plugin: a bundle of preset PxL scripts and an OTLP endpoint with its configuration.
/// When enabled, the operator creates a DataExport for the endpoint and a CronScript per preset script.
// Each printcolumn(...) repeats the same keys, which clippy mistakes for duplicated attributes.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[kube(
    group = "px.dev",
    version = "v1alpha1",
    kind = "Plugin",
    namespaced,
    status = "PluginStatus",
    derive = "PartialEq",
    shortname = "pxplugin",
    category = "pixie",
    doc = "An export plugin: preset PxL scripts plus an OTLP endpoint, materialised as a DataExport and CronScripts when enabled.",
    printcolumn(
        name = "Plugin",
        type_ = "string",
        json_path = ".spec.displayName",
        description = "Display name of the plugin"
    ),
    printcolumn(
        name = "Version",
        type_ = "string",
        json_path = ".spec.version",
        description = "Plugin version"
    ),
    printcolumn(
        name = "Enabled",
        type_ = "boolean",
        json_path = ".spec.enabled",
        description = "Whether the plugin's scripts run"
    ),
    printcolumn(
        name = "Ready",
        type_ = "string",
        json_path = r#".status.conditions[?(@.type=="Ready")].status"#,
        description = "Whether the plugin's DataExport and CronScripts are in place"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
#[x_kube(
    validation = Rule::new("!self.enabled || has(self.vizierRef)")
        .message("an enabled plugin needs spec.vizierRef: the Vizier that runs its scripts")
        .field_path(".vizierRef")
        .reason(Reason::FieldValueRequired),
    validation = Rule::new("!self.enabled || has(self.defaultExportURL) || has(self.customExportURL)")
        .message("an enabled plugin needs spec.customExportURL or spec.defaultExportURL: where its scripts' results go")
        .field_path(".customExportURL")
        .reason(Reason::FieldValueRequired),
    validation = Rule::new("!has(self.customExportURL) || (has(self.allowCustomExportURL) && self.allowCustomExportURL)")
        .message("spec.customExportURL is only allowed when spec.allowCustomExportURL is true")
        .field_path(".customExportURL")
        .reason(Reason::FieldValueForbidden),
    validation = Rule::new("!(has(self.insecureTLS) && self.insecureTLS) || (has(self.allowInsecureTLS) && self.allowInsecureTLS)")
        .message("spec.insecureTLS is only allowed when spec.allowInsecureTLS is true")
        .field_path(".insecureTLS")
        .reason(Reason::FieldValueForbidden),
)]
pub struct PluginSpec {
    /// Human-readable plugin name, such as New Relic or OpenTelemetry. The object's name is the
    /// plugin's ID.
    #[schemars(length(min = 1, max = 128))]
    pub display_name: String,

    /// Plugin version, such as 0.0.1.
    #[schemars(length(max = 64), regex(pattern = rules::VERSION_PATTERN))]
    pub version: String,

    /// What the plugin exports and where to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 4096))]
    pub description: Option<String>,

    /// Link to the plugin's documentation.
    #[serde(
        default,
        rename = "documentationURL",
        skip_serializing_if = "Option::is_none"
    )]
    #[schemars(length(max = 2048))]
    pub documentation_url: Option<String>,

    /// Whether the plugin's scripts run. The operator removes the CronScripts and DataExport it
    /// created when this turns false. Defaults to false.
    #[serde(default)]
    pub enabled: bool,

    /// Configuration the plugin needs, such as an API key, sent as gRPC metadata with every export
    /// request. Values may come from Secrets in this namespace.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 32))]
    #[x_kube(merge_strategy = ListMerge::Map(vec!["name".into()]))]
    pub configurations: Vec<NamedValue>,

    /// OTLP gRPC endpoint the plugin exports to by default, as host:port without a scheme, such as
    /// otlp.nr-data.net:4317.
    #[serde(
        default,
        rename = "defaultExportURL",
        skip_serializing_if = "Option::is_none"
    )]
    #[schemars(length(min = 1, max = rules::ENDPOINT_MAX_LENGTH))]
    #[x_kube(validation = rules::no_url_scheme(), validation = rules::host_port())]
    pub default_export_url: Option<String>,

    /// Whether customExportURL may replace defaultExportURL.
    #[serde(
        default,
        rename = "allowCustomExportURL",
        skip_serializing_if = "Option::is_none"
    )]
    pub allow_custom_export_url: Option<bool>,

    /// OTLP gRPC endpoint to export to instead of defaultExportURL, as host:port without a scheme.
    /// Only allowed when allowCustomExportURL is true.
    #[serde(
        default,
        rename = "customExportURL",
        skip_serializing_if = "Option::is_none"
    )]
    #[schemars(length(min = 1, max = rules::ENDPOINT_MAX_LENGTH))]
    #[x_kube(validation = rules::no_url_scheme(), validation = rules::host_port())]
    pub custom_export_url: Option<String>,

    /// Whether insecureTLS may be turned on.
    #[serde(
        default,
        rename = "allowInsecureTLS",
        skip_serializing_if = "Option::is_none"
    )]
    pub allow_insecure_tls: Option<bool>,

    /// Export over plaintext gRPC. Only allowed when allowInsecureTLS is true.
    #[serde(
        default,
        rename = "insecureTLS",
        skip_serializing_if = "Option::is_none"
    )]
    pub insecure_tls: Option<bool>,

    /// The Vizier in this namespace that runs the plugin's scripts. Required when enabled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vizier_ref: Option<LocalObjectRef>,

    /// Scripts that export data while the plugin is enabled, each run at its default frequency.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64))]
    #[x_kube(merge_strategy = ListMerge::Map(vec!["name".into()]))]
    pub preset_scripts: Vec<PresetScript>,
}

/// A script that a plugin runs while enabled.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct PresetScript {
    /// Script name, unique within the plugin; the materialised CronScript is called
    /// <plugin>-<name>.
    #[schemars(length(min = 1, max = 63), regex(pattern = rules::DNS_LABEL_PATTERN))]
    pub name: String,

    /// What the script exports.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 1024))]
    pub description: Option<String>,

    /// The PxL source. It typically ends in px.export(df, px.otel.Data(...)) without an endpoint;
    /// the plugin's endpoint is injected.
    #[schemars(length(min = 1, max = rules::PXL_SOURCE_MAX_LENGTH))]
    pub script: String,

    /// Interval between runs, as a duration of at least 1s such as 10s or 1m.
    #[schemars(length(min = 1, max = rules::DURATION_MAX_LENGTH))]
    #[x_kube(validation = rules::duration_at_least("1s"))]
    pub default_frequency: String,
}

/// Observed state of a Plugin, written by the operator.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct PluginStatus {
    /// Ready: the plugin's DataExport and CronScripts exist and match the spec.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 16))]
    #[x_kube(merge_strategy = ListMerge::Map(vec!["type".into()]))]
    pub conditions: Vec<Condition>,

    /// The metadata.generation of the spec that was materialised.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,

    /// Name of the DataExport the operator created for the plugin's endpoint.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data_export: Option<String>,

    /// The CronScripts the operator created, one per preset script.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub cron_scripts: Vec<MaterializedScript>,
}

/// A preset script and the CronScript made from it.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct MaterializedScript {
    /// Name of the preset script in spec.presetScripts.
    pub preset: String,
    /// Name of the CronScript created for it.
    pub cron_script: String,
}
