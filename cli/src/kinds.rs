//! The px.dev kinds that `get` and `delete` accept, under the names a user types (kubectl's plural,
//! singular and short names, plus Pixie's words: `scripts`, `exports`), and how kubectl names their
//! objects in messages (`vizier.px.dev/pixie`, `vizier.px.dev "pixie" deleted`).

use kube::core::ApiResource;
use pixie_crds::{CronScript, DataExport, Plugin, PxlScript, Vizier};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PxKind {
    Vizier,
    PxlScript,
    CronScript,
    DataExport,
    Plugin,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error(
    "unknown kind {0:?}; use one of viziers (vz), scripts (pxlscripts), cronscripts, exports (dataexports), plugins"
)]
pub struct UnknownKind(pub String);

impl PxKind {
    pub const ALL: [PxKind; 5] = [
        PxKind::Vizier,
        PxKind::PxlScript,
        PxKind::CronScript,
        PxKind::DataExport,
        PxKind::Plugin,
    ];

    /// The kind a user means by `word`: any of its names, singular or plural, any case, with or
    /// without `.px.dev`.
    pub fn parse(word: &str) -> Result<PxKind, UnknownKind> {
        let lower = word.to_ascii_lowercase();
        let bare = lower.strip_suffix(".px.dev").unwrap_or(&lower);
        PxKind::ALL
            .into_iter()
            .find(|kind| kind.names().contains(&bare))
            .ok_or_else(|| UnknownKind(word.to_owned()))
    }

    /// Every name `parse` accepts for this kind.
    pub fn names(self) -> &'static [&'static str] {
        match self {
            PxKind::Vizier => &["vizier", "viziers", "vz"],
            PxKind::PxlScript => &["pxlscript", "pxlscripts", "script", "scripts", "pxs"],
            PxKind::CronScript => &["cronscript", "cronscripts", "pxcron"],
            PxKind::DataExport => &["dataexport", "dataexports", "export", "exports", "pxexport"],
            PxKind::Plugin => &["plugin", "plugins", "pxplugin"],
        }
    }

    pub fn api_resource(self) -> ApiResource {
        match self {
            PxKind::Vizier => ApiResource::erase::<Vizier>(&()),
            PxKind::PxlScript => ApiResource::erase::<PxlScript>(&()),
            PxKind::CronScript => ApiResource::erase::<CronScript>(&()),
            PxKind::DataExport => ApiResource::erase::<DataExport>(&()),
            PxKind::Plugin => ApiResource::erase::<Plugin>(&()),
        }
    }

    pub fn kind(self) -> &'static str {
        match self {
            PxKind::Vizier => "Vizier",
            PxKind::PxlScript => "PxlScript",
            PxKind::CronScript => "CronScript",
            PxKind::DataExport => "DataExport",
            PxKind::Plugin => "Plugin",
        }
    }

    /// `vizier.px.dev`: how kubectl names the kind in `-o name` and in messages.
    pub fn qualified(self) -> String {
        format!("{}.{}", self.kind().to_ascii_lowercase(), pixie_crds::GROUP)
    }

    /// `vizier.px.dev/pixie`, as `kubectl get -o name` prints it.
    pub fn object_name(self, name: &str) -> String {
        format!("{}/{name}", self.qualified())
    }

    /// `vizier.px.dev "pixie"`, as kubectl's messages name one object.
    pub fn quoted(self, name: &str) -> String {
        format!("{} \"{name}\"", self.qualified())
    }
}

/// How kubectl names any object: `deployment.apps/x`, or `namespace/x` for the core group.
pub fn object_name(api_version: &str, kind: &str, name: &str) -> String {
    format!("{}/{name}", qualified_kind(api_version, kind))
}

/// `deployment.apps`, `clusterrole.rbac.authorization.k8s.io`, `namespace` (core group).
pub fn qualified_kind(api_version: &str, kind: &str) -> String {
    let kind = kind.to_ascii_lowercase();
    match api_version.split_once('/') {
        Some((group, _)) => format!("{kind}.{group}"),
        None => kind,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_name_a_user_types_finds_its_kind() {
        for (word, kind) in [
            ("vz", PxKind::Vizier),
            ("Viziers", PxKind::Vizier),
            ("viziers.px.dev", PxKind::Vizier),
            ("scripts", PxKind::PxlScript),
            ("pxlscript", PxKind::PxlScript),
            ("cronscripts", PxKind::CronScript),
            ("exports", PxKind::DataExport),
            ("dataexport", PxKind::DataExport),
            ("plugins", PxKind::Plugin),
        ] {
            assert_eq!(PxKind::parse(word), Ok(kind), "{word}");
        }
        let err = PxKind::parse("pods").unwrap_err();
        assert!(err.to_string().contains("\"pods\""), "{err}");
    }

    #[test]
    fn the_api_resource_is_the_crd_plural() {
        let plurals: Vec<String> = PxKind::ALL
            .iter()
            .map(|k| k.api_resource().plural)
            .collect();
        assert_eq!(
            plurals,
            [
                "viziers",
                "pxlscripts",
                "cronscripts",
                "dataexports",
                "plugins"
            ]
        );
        assert!(
            PxKind::ALL
                .iter()
                .all(|k| k.api_resource().group == "px.dev")
        );
    }

    #[test]
    fn objects_are_named_like_kubectl_names_them() {
        assert_eq!(PxKind::Vizier.object_name("pixie"), "vizier.px.dev/pixie");
        assert_eq!(
            PxKind::DataExport.quoted("otel"),
            "dataexport.px.dev \"otel\""
        );
        assert_eq!(
            object_name("apps/v1", "Deployment", "op"),
            "deployment.apps/op"
        );
        assert_eq!(object_name("v1", "Namespace", "pl"), "namespace/pl");
        assert_eq!(
            qualified_kind("rbac.authorization.k8s.io/v1", "ClusterRole"),
            "clusterrole.rbac.authorization.k8s.io"
        );
    }
}
