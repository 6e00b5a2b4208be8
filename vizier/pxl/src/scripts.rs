//! The bundled script library (`px/NAME`), compiled into the binary so the CLI and the service can
//! list and run the scripts without files on disk.

/// Each bundled script as `("px/NAME", source)`; the first line of every source is
/// `# description`.
pub fn bundled_scripts() -> Vec<(&'static str, &'static str)> {
    vec![
        (
            "px/conn_stats",
            include_str!("../scripts/px/conn_stats.pxl"),
        ),
        ("px/http_data", include_str!("../scripts/px/http_data.pxl")),
        (
            "px/http_data_filtered",
            include_str!("../scripts/px/http_data_filtered.pxl"),
        ),
        (
            "px/net_flow_graph",
            include_str!("../scripts/px/net_flow_graph.pxl"),
        ),
        (
            "px/process_stats",
            include_str!("../scripts/px/process_stats.pxl"),
        ),
        (
            "px/service_stats",
            include_str!("../scripts/px/service_stats.pxl"),
        ),
        (
            "px/slow_http_requests",
            include_str!("../scripts/px/slow_http_requests.pxl"),
        ),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_script_starts_with_a_description_comment() {
        for (name, source) in bundled_scripts() {
            let first = source.lines().next().unwrap_or_default();
            assert!(
                first.starts_with("# ") && first.len() > 10,
                "{name}: first line {first:?}"
            );
        }
    }

    #[test]
    fn names_are_sorted_and_unique() {
        let names: Vec<&str> = bundled_scripts().iter().map(|(n, _)| *n).collect();
        let mut sorted = names.clone();
        sorted.sort_unstable();
        sorted.dedup();
        assert_eq!(names, sorted);
    }
}
