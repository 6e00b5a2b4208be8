//! Loading, attaching and reading the socket tracer, one named step each:
//! [`SocketTracer::load`] (object + verifier), [`SocketTracer::attach`] (tracepoints) and
//! [`SocketTracer::events`] (the ring buffer, read asynchronously through tokio's `AsyncFd`).

use std::error::Error as StdError;
use std::io;
use std::time::Duration;

use aya::maps::{MapData, PerCpuArray, RingBuf};
use aya::programs::BtfTracePoint;
use aya::{Btf, Ebpf, EbpfLoader};
use tokio::io::Interest;
use tokio::io::unix::AsyncFd;

use crate::events::{Event, decode};
use crate::header::*;

const OBJECT: &str = "socket_trace.bpf.o";
const EVENTS_MAP: &str = "events";
const STATS_MAP: &str = "stats";

/// (program name in the object, tp_btf tracepoint it attaches to)
const PROGRAMS: &[(&str, &str)] = &[
    ("sys_enter", "sys_enter"),
    ("sys_exit", "sys_exit"),
    ("sched_process_exit", "sched_process_exit"),
];

#[derive(Debug, thiserror::Error)]
pub enum BpfError {
    #[error("reading kernel BTF (/sys/kernel/btf/vmlinux): {0}")]
    KernelBtf(String),
    #[error("loading BPF object {object}: {detail}")]
    LoadObject {
        object: &'static str,
        detail: String,
    },
    #[error("program {program} is missing from {object}")]
    MissingProgram {
        object: &'static str,
        program: &'static str,
    },
    #[error("loading program {program} (tp_btf/{tracepoint}): {detail}")]
    LoadProgram {
        program: &'static str,
        tracepoint: &'static str,
        detail: String,
    },
    #[error("attaching program {program} to tp_btf/{tracepoint}: {detail}")]
    AttachProgram {
        program: &'static str,
        tracepoint: &'static str,
        detail: String,
    },
    #[error("map {map} is missing from {object} (or was already taken)")]
    MissingMap {
        object: &'static str,
        map: &'static str,
    },
    #[error("map {map}: {detail}")]
    Map { map: &'static str, detail: String },
}

impl BpfError {
    /// A short, stable label per failure cause, for metrics.
    pub fn metric_label(&self) -> &'static str {
        match self {
            BpfError::KernelBtf(_) => "kernel_btf",
            BpfError::LoadObject { .. } => "load_object",
            BpfError::MissingProgram { .. } => "missing_program",
            BpfError::LoadProgram { .. } => "load_program",
            BpfError::AttachProgram { .. } => "attach_program",
            BpfError::MissingMap { .. } => "missing_map",
            BpfError::Map { .. } => "map",
        }
    }
}

/// The error and its sources on one line: aya's top-level messages ("error relocating function")
/// hide the useful part in the source chain.
fn chain(e: &dyn StdError) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}

#[derive(Clone, Debug)]
pub struct LoadOptions {
    /// Process whose syscalls are never traced; normally the collector itself.
    pub skip_tgid: Option<u32>,
    /// Ring buffer size in bytes (power of two, multiple of the page size).
    pub ring_buffer_bytes: u32,
    /// How often the reader looks at the ring buffer when the kernel has not woken it: the kernel
    /// side only wakes it once `PX_RINGBUF_WAKEUP_BYTES` are waiting, so this bounds the delay of
    /// events under light load.
    pub poll_interval: Duration,
}

impl Default for LoadOptions {
    fn default() -> Self {
        LoadOptions {
            skip_tgid: Some(std::process::id()),
            ring_buffer_bytes: PX_RINGBUF_BYTES,
            poll_interval: Duration::from_millis(10),
        }
    }
}

/// Kernel-side counters, summed over CPUs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct KernelStats {
    /// Events dropped because the ring buffer was full.
    pub lost_events: u64,
    /// Stream bytes covered by dropped data events.
    pub lost_data_bytes: u64,
    /// Payload copies from user memory that failed (sent as gaps).
    pub user_read_failures: u64,
}

/// The socket tracer's BPF object in the kernel. Dropping it detaches and unloads everything.
pub struct SocketTracer {
    ebpf: Ebpf,
    stats: PerCpuArray<MapData, u64>,
    poll_interval: Duration,
}

impl SocketTracer {
    /// Loads the object and its programs into the kernel (maps created, programs verified), without
    /// attaching anything yet.
    pub fn load(opts: &LoadOptions) -> Result<Self, BpfError> {
        let btf = Btf::from_sys_fs().map_err(|e| BpfError::KernelBtf(chain(&e)))?;
        let skip_tgid = opts.skip_tgid.unwrap_or(0);
        let mut ebpf = EbpfLoader::new()
            .btf(Some(&btf))
            .override_global("self_tgid", &skip_tgid, true)
            .map_max_entries(EVENTS_MAP, opts.ring_buffer_bytes)
            .load(crate::SOCKET_TRACE_OBJ)
            .map_err(|e| BpfError::LoadObject {
                object: OBJECT,
                detail: chain(&e),
            })?;

        for &(program, tracepoint) in PROGRAMS {
            let prog: &mut BtfTracePoint = ebpf
                .program_mut(program)
                .ok_or(BpfError::MissingProgram {
                    object: OBJECT,
                    program,
                })?
                .try_into()
                .map_err(|e| BpfError::LoadProgram {
                    program,
                    tracepoint,
                    detail: chain(&e),
                })?;
            prog.load(tracepoint, &btf)
                .map_err(|e| BpfError::LoadProgram {
                    program,
                    tracepoint,
                    detail: chain(&e),
                })?;
        }

        let stats_map = ebpf.take_map(STATS_MAP).ok_or(BpfError::MissingMap {
            object: OBJECT,
            map: STATS_MAP,
        })?;
        let stats = PerCpuArray::try_from(stats_map).map_err(|e| BpfError::Map {
            map: STATS_MAP,
            detail: chain(&e),
        })?;
        Ok(SocketTracer {
            ebpf,
            stats,
            poll_interval: opts.poll_interval,
        })
    }

    /// Attaches every program to its tracepoint; from here on the kernel emits events.
    pub fn attach(&mut self) -> Result<(), BpfError> {
        for &(program, tracepoint) in PROGRAMS {
            let prog: &mut BtfTracePoint = self
                .ebpf
                .program_mut(program)
                .ok_or(BpfError::MissingProgram {
                    object: OBJECT,
                    program,
                })?
                .try_into()
                .map_err(|e| BpfError::AttachProgram {
                    program,
                    tracepoint,
                    detail: chain(&e),
                })?;
            prog.attach().map_err(|e| BpfError::AttachProgram {
                program,
                tracepoint,
                detail: chain(&e),
            })?;
        }
        Ok(())
    }

    /// Takes the ring buffer for asynchronous reading. Needs a tokio runtime with IO enabled.
    pub fn events(&mut self) -> Result<EventReader, BpfError> {
        let map = self.ebpf.take_map(EVENTS_MAP).ok_or(BpfError::MissingMap {
            object: OBJECT,
            map: EVENTS_MAP,
        })?;
        let ring = RingBuf::try_from(map).map_err(|e| BpfError::Map {
            map: EVENTS_MAP,
            detail: chain(&e),
        })?;
        // SAFETY: RingBuf owns its map fd and mmaps; the fd stays open and unchanged for as long
        // as the RingBuf lives, and the AsyncFd owns the RingBuf.
        let fd =
            unsafe { AsyncFd::register_with_interest(ring, Interest::READABLE) }.map_err(|e| {
                BpfError::Map {
                    map: EVENTS_MAP,
                    detail: format!("registering with tokio: {e}"),
                }
            })?;
        Ok(EventReader {
            fd,
            poll_interval: self.poll_interval,
            decode_errors: 0,
        })
    }

    pub fn stats(&self) -> Result<KernelStats, BpfError> {
        let sum = |idx: u32| -> Result<u64, BpfError> {
            let values = self.stats.get(&idx, 0).map_err(|e| BpfError::Map {
                map: STATS_MAP,
                detail: chain(&e),
            })?;
            Ok(values.iter().sum())
        };
        Ok(KernelStats {
            lost_events: sum(PX_STAT_LOST_EVENTS)?,
            lost_data_bytes: sum(PX_STAT_LOST_DATA_BYTES)?,
            user_read_failures: sum(PX_STAT_USER_READ_FAILED)?,
        })
    }
}

/// The ring buffer, readable from async code.
pub struct EventReader {
    fd: AsyncFd<RingBuf<MapData>>,
    poll_interval: Duration,
    decode_errors: u64,
}

impl EventReader {
    /// Waits until the ring buffer has records, then passes each one to `f`, in ring order.
    /// Returns how many records were consumed (at least one). Cancel-safe: records are only
    /// consumed synchronously, after the last await.
    pub async fn read(&mut self, mut f: impl FnMut(Event<'_>)) -> io::Result<usize> {
        loop {
            // Woken by the kernel once a batch is waiting, or by the poll timer.
            let n = match tokio::time::timeout(self.poll_interval, self.fd.readable_mut()).await {
                Ok(guard) => {
                    let mut guard = guard?;
                    let (n, errors) = drain_ring(guard.get_inner_mut(), &mut f);
                    self.decode_errors += errors;
                    // Drained to empty, so the next wakeup is for new records.
                    guard.clear_ready();
                    n
                }
                Err(_elapsed) => self.read_available(&mut f),
            };
            if n > 0 {
                return Ok(n);
            }
        }
    }

    /// Consumes whatever is in the ring buffer now, without waiting.
    pub fn read_available(&mut self, mut f: impl FnMut(Event<'_>)) -> usize {
        let (n, errors) = drain_ring(self.fd.get_mut(), &mut f);
        self.decode_errors += errors;
        n
    }

    /// Records that did not decode (a layout mismatch between kernel and user space).
    pub fn decode_errors(&self) -> u64 {
        self.decode_errors
    }
}

fn drain_ring(ring: &mut RingBuf<MapData>, f: &mut impl FnMut(Event<'_>)) -> (usize, u64) {
    let mut n = 0;
    let mut errors = 0;
    while let Some(item) = ring.next() {
        n += 1;
        match decode(&item) {
            Ok(event) => f(event),
            // A layout mismatch between kernel and user space; counted, never fatal.
            Err(_) => errors += 1,
        }
    }
    (n, errors)
}
