//! `kubectl pixie`: the kubectl plugin that runs PxL scripts and drives Vizier objects.
//!
//! `kubectl pixie run` sends a script (bundled `px/...`, a PxlScript `pxl/...`, a file, or SQL) to
//! a Vizier's broker API and prints each output table as it streams back ([`output`]); [`script`]
//! finds sources, reads `-- --arg value` arguments and renders compile errors against the source.
//!
//! The cluster verbs (`deploy`, `get`, `delete`, `status`) keep their decisions and wording here,
//! free of I/O: [`cluster`] (kubeconfig, namespace, error wording), [`kinds`], [`get`] and
//! [`table`] (what `get` prints), [`deploy`] (the Vizier built from flags, apply outcomes),
//! [`progress`] (rollout lines and verdict) and [`status`]. The binary does the talking.

pub mod cluster;
pub mod deploy;
pub mod get;
pub mod kinds;
pub mod output;
pub mod progress;
pub mod script;
pub mod status;
pub mod table;
