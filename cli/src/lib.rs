//! `kubectl pixie`: the kubectl plugin that runs PxL scripts and drives Vizier objects.
//!
//! `kubectl pixie run` sends a script (bundled `px/...`, a file, or SQL) to a Vizier's broker API and
//! prints each output table as it streams back ([`output`]); [`script`] finds sources, reads
//! `-- --arg value` arguments and renders compile errors against the source.

pub mod output;
pub mod script;
