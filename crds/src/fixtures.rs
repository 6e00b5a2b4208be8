//! Builder fixtures for tests across the workspace: `Vizier::test().with_version("0.14.7")` reads
//! as the object it builds. Every `test()` object is valid against the CRD schema.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::api::ObjectMeta;

use crate::common::{LocalObjectRef, NamedValue};
use crate::cron_script::{CronScript, CronScriptSpec};
use crate::data_export::{DataExport, DataExportSpec, OtlpGrpcSink, Sink};
use crate::plugin::{Plugin, PluginSpec, PresetScript};
use crate::pxl_script::{PxlScript, PxlScriptSpec};
use crate::vizier::{Vizier, VizierSpec};

/// Namespace the fixtures live in, where Pixie installs itself.
pub const TEST_NAMESPACE: &str = "pl";

/// A short PxL script that displays HTTP request counts per service.
pub const TEST_PXL: &str = "import px\n\
df = px.DataFrame(table='http_events', start_time='-5m')\n\
df.service = df.ctx['service']\n\
df = df.groupby('service').agg(requests=('latency', px.count))\n\
px.display(df, 'http_requests')\n";

fn metadata(name: &str) -> ObjectMeta {
    ObjectMeta {
        name: Some(name.to_owned()),
        namespace: Some(TEST_NAMESPACE.to_owned()),
        generation: Some(1),
        ..ObjectMeta::default()
    }
}

fn condition(type_: &str, status: bool, reason: &str, message: &str) -> Condition {
    Condition {
        type_: type_.to_owned(),
        status: if status { "True" } else { "False" }.to_owned(),
        reason: reason.to_owned(),
        message: message.to_owned(),
        last_transition_time: Time(k8s_openapi::jiff::Timestamp::UNIX_EPOCH),
        observed_generation: None,
    }
}

impl Vizier {
    /// A Vizier `pixie` in namespace `pl` linked to Pixie Cloud by a deploy key.
    pub fn test() -> Self {
        Self {
            metadata: metadata("pixie"),
            spec: VizierSpec {
                deploy_key: Some("px-dep-00000000-0000-0000-0000-000000000000".to_owned()),
                cluster_name: Some("test-cluster".to_owned()),
                ..VizierSpec::default()
            },
            status: None,
        }
    }

    /// Pins the Vizier version.
    pub fn with_version(mut self, version: &str) -> Self {
        self.spec.version = Some(version.to_owned());
        self
    }

    /// Sets the PEM memory limit and request.
    pub fn with_pem_memory(mut self, limit: &str, request: &str) -> Self {
        self.spec.pem_memory_limit = Some(limit.to_owned());
        self.spec.pem_memory_request = Some(request.to_owned());
        self
    }

    /// Sets metadata.generation, as the apiserver does on every spec change.
    pub fn with_generation(mut self, generation: i64) -> Self {
        self.metadata.generation = Some(generation);
        self
    }

    /// Adds a status condition of the given type.
    pub fn with_condition(mut self, type_: &str, status: bool, reason: &str) -> Self {
        self.status
            .get_or_insert_with(Default::default)
            .conditions
            .push(condition(type_, status, reason, ""));
        self
    }
}

impl PxlScript {
    /// A PxlScript `http-requests` holding [`TEST_PXL`].
    pub fn test() -> Self {
        Self {
            metadata: metadata("http-requests"),
            spec: PxlScriptSpec {
                description: Some(
                    "HTTP requests per service over the last five minutes".to_owned(),
                ),
                source: TEST_PXL.to_owned(),
                ..PxlScriptSpec::default()
            },
            status: None,
        }
    }
}

impl CronScript {
    /// A CronScript `http-requests-every-minute` running [`TEST_PXL`] on the Vizier `pixie` every minute.
    pub fn test() -> Self {
        Self {
            metadata: metadata("http-requests-every-minute"),
            spec: CronScriptSpec {
                source: Some(TEST_PXL.to_owned()),
                script_ref: None,
                args: Default::default(),
                schedule: None,
                frequency: Some("1m".to_owned()),
                vizier_ref: LocalObjectRef::new("pixie"),
                export_refs: Vec::new(),
                suspend: None,
                concurrency_policy: Default::default(),
                starting_deadline_seconds: None,
            },
            status: None,
        }
    }

    /// Runs the script on a cron schedule instead of a frequency.
    pub fn with_schedule(mut self, schedule: &str) -> Self {
        self.spec.schedule = Some(schedule.to_owned());
        self.spec.frequency = None;
        self
    }

    /// Runs the PxlScript `name` instead of inline source.
    pub fn with_script_ref(mut self, name: &str) -> Self {
        self.spec.script_ref = Some(LocalObjectRef::new(name));
        self.spec.source = None;
        self
    }

    /// Sends results to the DataExport `name` as well.
    pub fn exporting_to(mut self, name: &str) -> Self {
        self.spec.export_refs.push(LocalObjectRef::new(name));
        self
    }

    /// Pauses the schedule.
    pub fn suspended(mut self) -> Self {
        self.spec.suspend = Some(true);
        self
    }
}

impl DataExport {
    /// A DataExport `otel-collector` sending to an in-cluster collector over TLS.
    pub fn test() -> Self {
        Self {
            metadata: metadata("otel-collector"),
            spec: DataExportSpec {
                sink: Sink {
                    otlp_grpc: Some(OtlpGrpcSink {
                        endpoint: "otel-collector.observability.svc.cluster.local:4317".to_owned(),
                        ..OtlpGrpcSink::default()
                    }),
                },
                otel: None,
            },
            status: None,
        }
    }

    /// Adds a gRPC header taken from a Secret key.
    pub fn with_secret_header(mut self, header: &str, secret: &str, key: &str) -> Self {
        if let Some(sink) = self.spec.sink.otlp_grpc.as_mut() {
            sink.headers
                .push(NamedValue::from_secret(header, secret, key));
        }
        self
    }
}

impl Plugin {
    /// A disabled Plugin `otel-export` with one preset script.
    pub fn test() -> Self {
        Self {
            metadata: metadata("otel-export"),
            spec: PluginSpec {
                display_name: "OpenTelemetry".to_owned(),
                version: "0.0.1".to_owned(),
                default_export_url: Some(
                    "otel-collector.observability.svc.cluster.local:4317".to_owned(),
                ),
                preset_scripts: vec![PresetScript {
                    name: "http-requests".to_owned(),
                    description: None,
                    script: TEST_PXL.to_owned(),
                    default_frequency: "10s".to_owned(),
                }],
                ..PluginSpec::default()
            },
            status: None,
        }
    }

    /// Enables the plugin, running its scripts on the Vizier `vizier`.
    pub fn enabled_on(mut self, vizier: &str) -> Self {
        self.spec.enabled = true;
        self.spec.vizier_ref = Some(LocalObjectRef::new(vizier));
        self
    }
}
