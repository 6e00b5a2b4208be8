//! The releases the tracker knows, read from a YAML versions file, and the query over them. Pure:
//! text in, catalog out; catalog and query in, releases out.
//!
//! The versions file is a list of releases:
//!
//! ```yaml
//! - version: 0.14.15                 # a semantic version, without a leading v
//!   timestamp: 2025-01-10T12:00:00Z  # RFC 3339
//!   changelog: |                     # optional, Markdown
//!     Faster PEM start-up.
//!   name: vizier                     # optional: the artifact (vizier, operator, cli); vizier by default
//!   commitHash: 3f2a…                # optional
//!   artifactTypes: [AT_CONTAINER_SET_YAMLS]  # optional; the container-set types by default
//! ```

use std::collections::BTreeMap;
use std::fmt;

use semver::Version;
use serde::Deserialize;

use crate::proto::{self, ArtifactType};

/// The artifact a release belongs to when the file does not say.
pub const DEFAULT_ARTIFACT: &str = "vizier";

/// What a Vizier or operator release ships when the file does not list it: its container set.
pub const CONTAINER_SET_TYPES: [ArtifactType; 3] = [
    ArtifactType::AtContainerSetYamls,
    ArtifactType::AtContainerSetTemplateYamls,
    ArtifactType::AtContainerSetLinuxAmd64,
];

/// One entry of the versions file, as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct Entry {
    #[serde(default)]
    name: Option<String>,
    version: String,
    timestamp: String,
    #[serde(default)]
    changelog: String,
    #[serde(default)]
    commit_hash: String,
    #[serde(default)]
    artifact_types: Option<Vec<String>>,
}

/// One release, checked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Release {
    pub name: String,
    pub version: Version,
    pub timestamp: jiff::Timestamp,
    pub changelog: String,
    pub commit_hash: String,
    pub artifact_types: Vec<ArtifactType>,
}

impl Release {
    pub fn is_prerelease(&self) -> bool {
        !self.version.pre.is_empty()
    }

    pub fn to_proto(&self) -> proto::Artifact {
        proto::Artifact {
            timestamp: Some(prost_types::Timestamp {
                seconds: self.timestamp.as_second(),
                nanos: self.timestamp.subsec_nanosecond(),
            }),
            commit_hash: self.commit_hash.clone(),
            version_str: self.version.to_string(),
            available_artifacts: self.artifact_types.iter().map(|t| *t as i32).collect(),
            changelog: self.changelog.clone(),
        }
    }
}

/// Every release, per artifact, newest version first.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Catalog {
    by_name: BTreeMap<String, Vec<Release>>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CatalogError {
    #[error("{0}")]
    Yaml(String),
    /// `index` counts from 0, as the entries appear in the file.
    #[error("release {index}: {field}: {message}")]
    Field {
        index: usize,
        field: &'static str,
        message: String,
    },
    #[error("releases {first} and {second} are both {name} {version}")]
    Duplicate {
        first: usize,
        second: usize,
        name: String,
        version: String,
    },
}

/// Reads a versions file's text. An empty file is an empty catalog.
pub fn parse(text: &str) -> Result<Catalog, CatalogError> {
    if text.trim().is_empty() {
        return Ok(Catalog::default());
    }
    let entries: Vec<Entry> =
        serde_saphyr::from_str(text).map_err(|e| CatalogError::Yaml(e.to_string()))?;
    let mut by_name: BTreeMap<String, Vec<(usize, Release)>> = BTreeMap::new();
    for (index, entry) in entries.into_iter().enumerate() {
        let release = check(index, entry)?;
        let same_name = by_name.entry(release.name.clone()).or_default();
        if let Some((first, _)) = same_name.iter().find(|(_, r)| r.version == release.version) {
            return Err(CatalogError::Duplicate {
                first: *first,
                second: index,
                name: release.name,
                version: release.version.to_string(),
            });
        }
        same_name.push((index, release));
    }
    let by_name = by_name
        .into_iter()
        .map(|(name, releases)| {
            let mut releases: Vec<Release> = releases.into_iter().map(|(_, r)| r).collect();
            releases.sort_by(|a, b| b.version.cmp(&a.version));
            (name, releases)
        })
        .collect();
    Ok(Catalog { by_name })
}

fn check(index: usize, entry: Entry) -> Result<Release, CatalogError> {
    let field = |field: &'static str, message: String| CatalogError::Field {
        index,
        field,
        message,
    };
    let name = entry.name.unwrap_or_else(|| DEFAULT_ARTIFACT.to_owned());
    if name.is_empty() {
        return Err(field("name", "must not be empty".into()));
    }
    let version = Version::parse(entry.version.trim()).map_err(|e| {
        field(
            "version",
            format!(
                "{:?} is not a semantic version like 0.14.15: {e}",
                entry.version
            ),
        )
    })?;
    let timestamp: jiff::Timestamp = entry.timestamp.trim().parse().map_err(|e| {
        field(
            "timestamp",
            format!(
                "{:?} is not an RFC 3339 time like 2025-01-10T12:00:00Z: {e}",
                entry.timestamp
            ),
        )
    })?;
    let artifact_types = match entry.artifact_types {
        None => CONTAINER_SET_TYPES.to_vec(),
        Some(names) => names
            .iter()
            .map(|n| {
                ArtifactType::from_str_name(n)
                    .filter(|t| *t != ArtifactType::AtUnknown)
                    .ok_or_else(|| {
                        field(
                            "artifactTypes",
                            format!("unknown artifact type {n:?}; known: {}", known_types()),
                        )
                    })
            })
            .collect::<Result<_, _>>()?,
    };
    Ok(Release {
        name,
        version,
        timestamp,
        changelog: entry.changelog,
        commit_hash: entry.commit_hash,
        artifact_types,
    })
}

fn known_types() -> String {
    [
        ArtifactType::AtLinuxAmd64,
        ArtifactType::AtDarwinAmd64,
        ArtifactType::AtContainerSetYamls,
        ArtifactType::AtContainerSetTemplateYamls,
        ArtifactType::AtContainerSetLinuxAmd64,
    ]
    .map(|t| t.as_str_name())
    .join(", ")
}

/// A `GetArtifactList` request, checked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Query {
    pub name: String,
    /// `None`: every type.
    pub artifact_type: Option<ArtifactType>,
    /// `None`: every release.
    pub limit: Option<usize>,
    pub include_prereleases: bool,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum QueryError {
    #[error("artifact_name must not be empty")]
    NoName,
    #[error("limit must not be negative (it is {0}); 0 means every release")]
    NegativeLimit(i64),
    #[error("artifact_type {0} is not a known artifact type")]
    UnknownType(i32),
    #[error("no artifact named {name:?}; known: {known}")]
    UnknownArtifact { name: String, known: String },
}

impl Query {
    pub fn from_request(request: &proto::GetArtifactListRequest) -> Result<Query, QueryError> {
        if request.artifact_name.is_empty() {
            return Err(QueryError::NoName);
        }
        let limit = match request.limit {
            0 => None,
            n if n < 0 => return Err(QueryError::NegativeLimit(n)),
            n => Some(usize::try_from(n).unwrap_or(usize::MAX)),
        };
        let artifact_type = match ArtifactType::try_from(request.artifact_type) {
            Ok(ArtifactType::AtUnknown) => None,
            Ok(t) => Some(t),
            Err(_) => return Err(QueryError::UnknownType(request.artifact_type)),
        };
        Ok(Query {
            name: request.artifact_name.clone(),
            artifact_type,
            limit,
            include_prereleases: request.include_prereleases,
        })
    }
}

impl Catalog {
    /// The artifact's releases matching the query, newest version first.
    pub fn list(&self, query: &Query) -> Result<Vec<&Release>, QueryError> {
        let releases =
            self.by_name
                .get(&query.name)
                .ok_or_else(|| QueryError::UnknownArtifact {
                    name: query.name.clone(),
                    known: self.by_name.keys().cloned().collect::<Vec<_>>().join(", "),
                })?;
        let matching = releases
            .iter()
            .filter(|r| query.include_prereleases || !r.is_prerelease())
            .filter(|r| {
                query
                    .artifact_type
                    .is_none_or(|t| r.artifact_types.contains(&t))
            });
        Ok(matching.take(query.limit.unwrap_or(usize::MAX)).collect())
    }

    /// How many releases there are, over every artifact.
    pub fn len(&self) -> usize {
        self.by_name.values().map(Vec::len).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl fmt::Display for Catalog {
    /// "vizier 0.14.15 (3 releases), operator 0.1.2 (1 release)": for logs.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.by_name.is_empty() {
            return write!(f, "no releases");
        }
        let parts: Vec<String> = self
            .by_name
            .iter()
            .map(|(name, releases)| {
                let newest = releases
                    .first()
                    .map(|r| r.version.to_string())
                    .unwrap_or_default();
                let plural = if releases.len() == 1 { "" } else { "s" };
                format!("{name} {newest} ({} release{plural})", releases.len())
            })
            .collect();
        write!(f, "{}", parts.join(", "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FILE: &str = "
- version: 0.9.0
  timestamp: 2024-01-01T00:00:00Z
- version: 0.14.15
  timestamp: 2025-01-10T12:00:00Z
  changelog: Faster start-up.
  commitHash: abc123
- version: 0.15.0-rc1
  timestamp: 2025-02-01T00:00:00Z
- version: 0.10.2
  timestamp: 2025-03-01T00:00:00Z
- name: operator
  version: 0.1.0
  timestamp: 2025-01-01T00:00:00Z
- name: cli
  version: 0.8.0
  timestamp: 2025-01-01T00:00:00Z
  artifactTypes: [AT_LINUX_AMD64, AT_DARWIN_AMD64]
";

    fn query(name: &str) -> Query {
        Query {
            name: name.into(),
            artifact_type: None,
            limit: None,
            include_prereleases: false,
        }
    }

    fn versions(releases: Vec<&Release>) -> Vec<String> {
        releases.iter().map(|r| r.version.to_string()).collect()
    }

    #[test]
    fn releases_are_ordered_by_semantic_version_not_by_time_or_text() {
        let catalog = parse(FILE).unwrap();
        // 0.14.15 > 0.10.2 > 0.9.0 although 0.10.2 was released last and "0.9" > "0.14" as text.
        assert_eq!(
            versions(catalog.list(&query("vizier")).unwrap()),
            ["0.14.15", "0.10.2", "0.9.0"]
        );
        assert_eq!(catalog.len(), 6);
        assert_eq!(
            catalog.to_string(),
            "cli 0.8.0 (1 release), operator 0.1.0 (1 release), vizier 0.15.0-rc1 (4 releases)"
        );
    }

    #[test]
    fn pre_releases_only_when_asked() {
        let catalog = parse(FILE).unwrap();
        let with = Query {
            include_prereleases: true,
            limit: Some(2),
            ..query("vizier")
        };
        assert_eq!(
            versions(catalog.list(&with).unwrap()),
            ["0.15.0-rc1", "0.14.15"]
        );
        let latest = Query {
            limit: Some(1),
            ..query("vizier")
        };
        assert_eq!(versions(catalog.list(&latest).unwrap()), ["0.14.15"]);
    }

    #[test]
    fn artifact_types_filter_and_default_to_the_container_set() {
        let catalog = parse(FILE).unwrap();
        let yamls = Query {
            artifact_type: Some(ArtifactType::AtContainerSetYamls),
            ..query("vizier")
        };
        assert_eq!(catalog.list(&yamls).unwrap().len(), 3);
        let cli_yamls = Query {
            artifact_type: Some(ArtifactType::AtContainerSetYamls),
            ..query("cli")
        };
        assert!(catalog.list(&cli_yamls).unwrap().is_empty());
        let cli_linux = Query {
            artifact_type: Some(ArtifactType::AtLinuxAmd64),
            ..query("cli")
        };
        assert_eq!(versions(catalog.list(&cli_linux).unwrap()), ["0.8.0"]);
    }

    #[test]
    fn the_proto_form_keeps_every_field() {
        let catalog = parse(FILE).unwrap();
        let latest = catalog
            .list(&Query {
                limit: Some(1),
                ..query("vizier")
            })
            .unwrap()[0]
            .to_proto();
        assert_eq!(latest.version_str, "0.14.15");
        assert_eq!(latest.commit_hash, "abc123");
        assert_eq!(latest.changelog, "Faster start-up.");
        assert_eq!(latest.timestamp.unwrap().seconds, 1_736_510_400);
        assert_eq!(latest.available_artifacts, [50, 60, 100]);
    }

    #[test]
    fn bad_entries_are_refused_with_their_index_and_field() {
        let err = parse("- version: 1.2\n  timestamp: 2025-01-01T00:00:00Z\n").unwrap_err();
        assert!(
            matches!(
                &err,
                CatalogError::Field {
                    index: 0,
                    field: "version",
                    ..
                }
            ),
            "{err}"
        );
        let err = parse("- version: 1.2.0\n  timestamp: 2025-01-01T00:00:00Z\n- version: 1.3.0\n  timestamp: yesterday\n")
            .unwrap_err();
        assert!(
            matches!(
                &err,
                CatalogError::Field {
                    index: 1,
                    field: "timestamp",
                    ..
                }
            ),
            "{err}"
        );
        let err = parse(
            "- version: 1.2.0\n  timestamp: 2025-01-01T00:00:00Z\n  artifactTypes: [AT_ZIP]\n",
        )
        .unwrap_err();
        assert!(
            err.to_string().contains("AT_ZIP")
                && err.to_string().contains("AT_CONTAINER_SET_YAMLS"),
            "{err}"
        );
        let err = parse("- version: 1.2.0\n  timestamp: 2025-01-01T00:00:00Z\n  colour: red\n")
            .unwrap_err();
        assert!(err.to_string().contains("colour"), "{err}");
        let err = parse("version: 1.2.0\n").unwrap_err();
        assert!(matches!(err, CatalogError::Yaml(_)));
        let twice = "- version: 1.2.0\n  timestamp: 2025-01-01T00:00:00Z\n- version: 1.2.0\n  timestamp: 2025-01-02T00:00:00Z\n";
        assert_eq!(
            parse(twice).unwrap_err(),
            CatalogError::Duplicate {
                first: 0,
                second: 1,
                name: "vizier".into(),
                version: "1.2.0".into()
            }
        );
    }

    #[test]
    fn an_empty_file_is_an_empty_catalog() {
        assert!(parse("").unwrap().is_empty());
        assert!(parse("[]").unwrap().is_empty());
        let err = parse("").unwrap().list(&query("vizier")).unwrap_err();
        assert!(matches!(err, QueryError::UnknownArtifact { .. }));
    }

    #[test]
    fn requests_are_checked() {
        let request = |name: &str, artifact_type: i32, limit: i64| proto::GetArtifactListRequest {
            artifact_name: name.into(),
            artifact_type,
            limit,
            include_prereleases: false,
        };
        assert_eq!(
            Query::from_request(&request("", 0, 1)),
            Err(QueryError::NoName)
        );
        assert_eq!(
            Query::from_request(&request("vizier", 0, -1)),
            Err(QueryError::NegativeLimit(-1))
        );
        assert_eq!(
            Query::from_request(&request("vizier", 7, 1)),
            Err(QueryError::UnknownType(7))
        );
        let ok = Query::from_request(&request("vizier", 50, 0)).unwrap();
        assert_eq!(
            ok,
            Query {
                artifact_type: Some(ArtifactType::AtContainerSetYamls),
                ..query("vizier")
            }
        );
    }
}
