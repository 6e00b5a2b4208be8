//! The validation vocabulary shared by the five kinds: regular expressions for OpenAPI `pattern`s and
//! CEL rules (`x-kubernetes-validations`) with messages written for the person who typed the value.
//!
//! CEL regexes avoid backslashes (`[.]` rather than `\.`) so that the same text reads the same in
//! Rust, in the CEL string literal and in RE2.

use kube::core::{Message, Reason, Rule};

/// A Kubernetes object name (RFC 1123 subdomain), as accepted for Secrets, ConfigMaps and custom
/// resources.
pub const DNS_SUBDOMAIN_PATTERN: &str =
    r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?([.][a-z0-9]([-a-z0-9]*[a-z0-9])?)*$";

/// A Kubernetes namespace name (RFC 1123 label).
pub const DNS_LABEL_PATTERN: &str = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$";

/// A key inside a Secret's `data`.
pub const SECRET_KEY_PATTERN: &str = r"^[-._a-zA-Z0-9]+$";

/// A column of a PxL result table, or a PxL argument name: a Python identifier.
pub const IDENTIFIER_PATTERN: &str = r"^[A-Za-z_][A-Za-z0-9_]*$";

/// A gRPC metadata key: lower-case ASCII (gRPC lower-cases keys on the wire anyway, so an
/// upper-case key here would be a surprise later).
pub const GRPC_METADATA_KEY_PATTERN: &str = r"^[a-z0-9][-a-z0-9_.]*$";

/// A release version such as `0.14.7` or `0.14.8-pre-main.0`, with an optional leading `v`.
pub const VERSION_PATTERN: &str =
    r"^v?[0-9]+[.][0-9]+[.][0-9]+(-[0-9A-Za-z.-]+)?([+][0-9A-Za-z.-]+)?$";

/// Longest accepted value of a duration field: plenty for `1h30m15s500ms`.
pub const DURATION_MAX_LENGTH: u32 = 32;

/// Longest accepted cron schedule.
pub const SCHEDULE_MAX_LENGTH: u32 = 128;

/// Longest accepted `host:port`: a full DNS name plus `:65535`.
pub const ENDPOINT_MAX_LENGTH: u32 = 260;

/// Longest accepted quantity string such as `2Gi`.
pub const QUANTITY_MAX_LENGTH: u32 = 32;

/// Longest accepted PxL source, inline in a PxlScript, CronScript or Plugin preset: 256 KiB keeps a
/// handful of scripts well inside etcd's 1.5 MiB object limit.
pub const PXL_SOURCE_MAX_LENGTH: u32 = 262_144;

/// The Go-style durations we accept: whole numbers of `ms`, `s`, `m` or `h`, concatenated.
pub const DURATION_REGEX: &str = "^([0-9]+(ms|s|m|h))+$";

/// A host (DNS name, IPv4 address or bracketed IPv6 address) followed by `:port`.
pub const HOST_PORT_REGEX: &str = "^([[][0-9A-Fa-f:.]+[]]|[A-Za-z0-9]([-A-Za-z0-9]*[A-Za-z0-9])?([.][A-Za-z0-9]([-A-Za-z0-9]*[A-Za-z0-9])?)*):[0-9]{1,5}$";

/// Like [`HOST_PORT_REGEX`], but the port may be left out (gRPC then dials 443).
pub const HOST_OPTIONAL_PORT_REGEX: &str = "^([[][0-9A-Fa-f:.]+[]]|[A-Za-z0-9]([-A-Za-z0-9]*[A-Za-z0-9])?([.][A-Za-z0-9]([-A-Za-z0-9]*[A-Za-z0-9])?)*)(:[0-9]{1,5})?$";

/// An image registry such as `registry.example.com:5000/mirror/pixie`: a host, an optional port
/// and an optional path, without a scheme.
pub const REGISTRY_REGEX: &str = "^[A-Za-z0-9]([-A-Za-z0-9]*[A-Za-z0-9])?([.][A-Za-z0-9]([-A-Za-z0-9]*[A-Za-z0-9])?)*(:[0-9]{1,5})?(/[a-z0-9]([-a-z0-9._]*[a-z0-9])?)*$";

/// A standard five-field cron expression (minute, hour, day of month, month, day of week) with
/// lists, ranges and steps, or one of the `@hourly`-style macros.
pub fn cron_schedule_regex() -> String {
    fn field(values: &str, wildcards: &str) -> String {
        let item = format!("([{wildcards}]|({values})(-({values}))?)(/[0-9]{{1,2}})?");
        format!("{item}(,{item})*")
    }
    let minute = field("[0-5]?[0-9]", "*");
    let hour = field("[01]?[0-9]|2[0-3]", "*");
    let day_of_month = field("0?[1-9]|[12][0-9]|3[01]", "*?");
    let month = field(
        "0?[1-9]|1[0-2]|(?i:jan|feb|mar|apr|may|jun|jul|aug|sep|oct|nov|dec)",
        "*",
    );
    let day_of_week = field("[0-7]|(?i:sun|mon|tue|wed|thu|fri|sat)", "*?");
    format!(
        "^(@(yearly|annually|monthly|weekly|daily|midnight|hourly)|{minute} +{hour} +{day_of_month} +{month} +{day_of_week})$"
    )
}

/// A Go-style duration of at least `minimum` (itself a duration literal such as `1s`).
pub fn duration_at_least(minimum: &str) -> Rule {
    Rule::new(format!(
        "self.matches('{DURATION_REGEX}') && duration(self) >= duration('{minimum}')"
    ))
    .message(Message::Message(format!(
        "must be a duration of at least {minimum} written as whole numbers of ms, s, m or h, such as 30s, 5m or 1h30m"
    )))
}

/// A cron schedule in the five-field form or a macro.
pub fn cron_schedule() -> Rule {
    Rule::new(format!("self.matches('{}')", cron_schedule_regex())).message(
        "must be a cron expression with five space-separated fields (minute hour day-of-month month day-of-week), \
         such as '*/5 * * * *', or one of @hourly, @daily, @weekly, @monthly, @yearly",
    )
}

/// A positive Kubernetes quantity such as `2Gi`.
pub fn positive_quantity() -> Rule {
    Rule::new("isQuantity(self) && quantity(self).isGreaterThan(quantity('0'))")
        .message("must be a positive Kubernetes quantity such as 512Mi or 2Gi")
}

/// The first of the two rules for an endpoint: no `http://` and friends.
pub fn no_url_scheme() -> Rule {
    Rule::new("!self.contains('://')")
        .message("must not include a scheme such as http:// or https://; write host:port")
}

/// The second rule for an endpoint: `host:port` (only checked once there is no scheme, so that one
/// mistake yields one message).
pub fn host_port() -> Rule {
    Rule::new(format!(
        "self.contains('://') || self.matches('{HOST_PORT_REGEX}')"
    ))
    .message("must be host:port, such as otel-collector.observability.svc.cluster.local:4317")
}

/// Like [`host_port`], with the port optional.
pub fn host_optional_port() -> Rule {
    Rule::new(format!(
        "self.contains('://') || self.matches('{HOST_OPTIONAL_PORT_REGEX}')"
    ))
    .message("must be a host with an optional port, such as withpixie.ai:443")
}

/// An image registry without a scheme.
pub fn registry() -> Rule {
    Rule::new(format!("self.matches('{REGISTRY_REGEX}')"))
        .message("must be a registry host with an optional port and path and no scheme, such as registry.example.com/pixie")
}

fn qualified(parent_path: &str, field: &str) -> String {
    if parent_path.is_empty() {
        field.to_owned()
    } else {
        format!("{parent_path}.{field}")
    }
}

/// The first half of "exactly one of two optional fields": at least one is set. Reported at the
/// first field as missing; `parent_path` (such as `spec`, or empty inside lists) qualifies the
/// names in the message.
pub fn one_of_required(first: &str, second: &str, parent_path: &str) -> Rule {
    let (a, b) = (
        qualified(parent_path, first),
        qualified(parent_path, second),
    );
    Rule::new(format!("has(self.{first}) || has(self.{second})"))
        .message(Message::Message(format!("one of {a} or {b} must be set")))
        .field_path(format!(".{first}"))
        .reason(Reason::FieldValueRequired)
}

/// The second half of "exactly one of two optional fields": not both. Reported at the second
/// field as forbidden.
pub fn mutually_exclusive(first: &str, second: &str, parent_path: &str) -> Rule {
    let (a, b) = (
        qualified(parent_path, first),
        qualified(parent_path, second),
    );
    Rule::new(format!("!(has(self.{first}) && has(self.{second}))"))
        .message(Message::Message(format!(
            "{a} and {b} are mutually exclusive: set only one"
        )))
        .field_path(format!(".{second}"))
        .reason(Reason::FieldValueForbidden)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cron_regex_uses_no_backslashes_so_cel_and_rust_read_it_alike() {
        assert!(!cron_schedule_regex().contains('\\'));
        for regex in [
            DURATION_REGEX,
            HOST_PORT_REGEX,
            HOST_OPTIONAL_PORT_REGEX,
            REGISTRY_REGEX,
        ] {
            assert!(!regex.contains('\\'), "{regex}");
            assert!(
                !regex.contains('\''),
                "{regex} would end the CEL string literal"
            );
        }
    }
}
