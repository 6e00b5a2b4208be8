//! Node kernel versions, parsed the way Pixie's node watcher does: drop a `-suffix`, a leading `v`
//! and a trailing `+`, then read major.minor.patch. PEMs need 4.14 or later.

use k8s_openapi::api::core::v1::Node;

use super::Finding;

pub const MIN_KERNEL: (u32, u32, u32) = (4, 14, 0);

/// `6.1.0-kwok` → (6, 1, 0); `v5.10+` → (5, 10, 0); None when it is not a version.
pub fn parse(version: &str) -> Option<(u32, u32, u32)> {
    let version = version.trim();
    let version = version.split('-').next()?;
    let version = version.strip_prefix('v').unwrap_or(version).trim_end_matches('+');
    let mut parts = version.split('.');
    let major = parts.next()?.parse().ok()?;
    let minor = parts.next().map_or(Some(0), |p| p.parse().ok())?;
    // Distributions append text to the patch level ("4.14.123rc1"); keep its leading digits.
    let patch = match parts.next() {
        None => 0,
        Some(p) => {
            let digits: String = p.chars().take_while(char::is_ascii_digit).collect();
            if digits.is_empty() { 0 } else { digits.parse().ok()? }
        }
    };
    Some((major, minor, patch))
}

/// KernelVersionsIncompatible when more than 25% of the nodes whose kernel version is known run a
/// kernel older than [`MIN_KERNEL`].
pub fn check(nodes: &[Node]) -> Option<Finding> {
    let versions: Vec<_> = nodes
        .iter()
        .filter_map(|n| n.status.as_ref()?.node_info.as_ref().map(|i| i.kernel_version.clone()))
        .filter_map(|v| parse(&v))
        .collect();
    let old = versions.iter().filter(|v| **v < MIN_KERNEL).count();
    (old * 4 > versions.len()).then(|| {
        Finding::new(
            "KernelVersionsIncompatible",
            format!("{old} of {} nodes run a kernel older than 4.14; PEMs cannot trace on them", versions.len()),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{NodeStatus, NodeSystemInfo};

    #[test]
    fn parses_the_versions_nodes_report() {
        assert_eq!(parse("6.1.0-kwok"), Some((6, 1, 0)));
        assert_eq!(parse("4.14.123-111.109.amzn2.x86_64"), Some((4, 14, 123)));
        assert_eq!(parse("v5.10+"), Some((5, 10, 0)));
        assert_eq!(parse("5.15.0+"), Some((5, 15, 0)));
        assert_eq!(parse("4.9"), Some((4, 9, 0)));
        assert_eq!(parse("3.10.0rc1"), Some((3, 10, 0)));
        assert_eq!(parse("fake"), None);
        assert_eq!(parse(""), None);
    }

    fn node(kernel: &str) -> Node {
        Node {
            status: Some(NodeStatus {
                node_info: Some(NodeSystemInfo { kernel_version: kernel.into(), ..Default::default() }),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn more_than_a_quarter_of_old_kernels_is_incompatible() {
        let one_of_four = [node("4.9.0"), node("6.1.0"), node("6.1.0"), node("5.4.0")];
        assert!(check(&one_of_four).is_none(), "exactly 25% is still fine");
        let two_of_four = [node("4.9.0"), node("4.4.0"), node("6.1.0"), node("5.4.0")];
        let finding = check(&two_of_four).unwrap();
        assert_eq!(finding.reason, "KernelVersionsIncompatible");
        assert!(finding.message.contains("2 of 4"));
        assert!(check(&[node("4.14.0")]).is_none());
        assert!(check(&[node("unknown")]).is_none());
    }
}
