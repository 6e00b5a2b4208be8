//! The PEM's data collection (Pixie's Stirling role): the eBPF socket tracer that turns syscalls into
//! per-connection byte streams and protocol records, process stats from /proc, and the loop that
//! pushes rows into the table store.
//!
//! Pure parts (reassembly, protocol inference, row building, conn_stats accounting) live in
//! [`socket_trace`] and [`conn_stats`] and are tested with made-up kernel events; [`collector`] is
//! the I/O edge that wires the BPF ring buffer, /proc and the store together.

pub mod clock;
pub mod collector;
pub mod conn_stats;
pub mod process_stats;
pub mod socket_trace;

pub use collector::{BatchSink, Collector, CollectorConfig, CollectorError, CollectorSummary};
pub use socket_trace::{SocketTraceConfig, SocketTraceConnector};
