//! Which Vizier version to run. A pinned `spec.version` wins; `disableAutoUpdate` keeps what runs;
//! otherwise the latest version comes from a version source: the operator's own version when no cloud
//! is configured. With a cloud, Pixie asks the cloud's artifact tracker; this repository has no
//! artifact tracker client yet, so that case is reported as unavailable instead of guessed.

use pixie_crds::{VizierSpec, VizierStatus};

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Resolution {
    /// Run this version; `source` says where it came from (for messages).
    Version { version: String, source: &'static str },
    /// No version can be chosen; the message says why and what to do.
    Unavailable(String),
}

pub fn resolve(spec: &VizierSpec, status: Option<&VizierStatus>, operator_version: &str) -> Resolution {
    if let Some(version) = spec.version.as_deref().filter(|v| !v.is_empty()) {
        return Resolution::Version { version: version.to_owned(), source: "spec.version" };
    }
    let running = status.and_then(|s| s.version.as_deref()).filter(|v| !v.is_empty());
    if let (Some(true), Some(version)) = (spec.disable_auto_update, running) {
        return Resolution::Version { version: version.to_owned(), source: "status.version (disableAutoUpdate)" };
    }
    if spec.cloud_addr.as_deref().is_some_and(|addr| !addr.is_empty()) {
        return Resolution::Unavailable(
            "spec.version is empty and spec.cloudAddr is set, so the latest version must come from the cloud's \
             artifact tracker, which this operator cannot query yet; set spec.version"
                .to_owned(),
        );
    }
    Resolution::Version { version: operator_version.to_owned(), source: "the operator's version" }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(version: &str) -> VizierStatus {
        VizierStatus { version: Some(version.to_owned()), ..Default::default() }
    }

    #[test]
    fn pinned_version_wins() {
        let spec = VizierSpec { version: Some("0.14.7".into()), cloud_addr: Some("a:1".into()), ..Default::default() };
        assert_eq!(resolve(&spec, Some(&status("0.1.0")), "9.9.9"),
            Resolution::Version { version: "0.14.7".into(), source: "spec.version" });
    }

    #[test]
    fn empty_version_follows_the_operator_unless_auto_update_is_disabled() {
        let spec = VizierSpec::default();
        assert!(matches!(resolve(&spec, Some(&status("0.1.0")), "0.2.0"),
            Resolution::Version { version, .. } if version == "0.2.0"));
        let pinned = VizierSpec { disable_auto_update: Some(true), ..Default::default() };
        assert!(matches!(resolve(&pinned, Some(&status("0.1.0")), "0.2.0"),
            Resolution::Version { version, .. } if version == "0.1.0"));
        // Nothing runs yet: even with auto-update disabled, the first version is the latest.
        assert!(matches!(resolve(&pinned, None, "0.2.0"), Resolution::Version { version, .. } if version == "0.2.0"));
    }

    #[test]
    fn a_cloud_without_an_artifact_tracker_is_reported_not_guessed() {
        let spec = VizierSpec { cloud_addr: Some("withpixie.ai:443".into()), ..Default::default() };
        assert!(matches!(resolve(&spec, None, "0.2.0"), Resolution::Unavailable(msg) if msg.contains("artifact tracker")));
    }
}
