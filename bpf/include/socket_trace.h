/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Events the socket tracer sends from the kernel to user space through the `events` ring buffer.
 *
 * This header is the single source of truth for the layout. The BPF program includes it, and
 * bpf/build.rs turns every `#define PX_*` number and every `PX_LAYOUT(...)` line into Rust
 * constants; the `#[repr(C)]` mirrors in bpf/src/lib.rs assert their size and field offsets against
 * those constants at compile time, and the C compiler checks the same numbers here. Change a struct
 * and one of the two builds fails until both sides agree.
 *
 * Only fixed-width types: the same bytes are read by a 64-bit little-endian user space.
 */
#ifndef PIXIE_SOCKET_TRACE_H
#define PIXIE_SOCKET_TRACE_H

/* Bytes of payload copied per data event; the rest of a larger syscall is reported as a gap. */
#define PX_MAX_DATA 16384
/* iovecs walked per readv/writev/sendmsg/recvmsg; bytes in later iovecs become one gap event. */
#define PX_MAX_IOV 16

/* px_event_header.kind */
#define PX_EVENT_CONN_OPEN 1
#define PX_EVENT_CONN_CLOSE 2
#define PX_EVENT_DATA 3
#define PX_EVENT_PROC_EXIT 4

/* px_conn_event.role */
#define PX_ROLE_UNKNOWN 0
#define PX_ROLE_CLIENT 1
#define PX_ROLE_SERVER 2

/* px_conn_event.source: how the tracer learned about the connection. */
#define PX_SOURCE_CONNECT 1
#define PX_SOURCE_ACCEPT 2
/* First data on a TCP socket that was opened before tracing started (or whose entry was evicted). */
#define PX_SOURCE_INFERRED 3

/* px_data_event.direction */
#define PX_DIR_SEND 1
#define PX_DIR_RECV 2

/* Indexes into the per-CPU `stats` array. */
#define PX_STAT_LOST_EVENTS 0 /* ring buffer full: event dropped */
#define PX_STAT_LOST_DATA_BYTES 1 /* msg_size of dropped data events */
#define PX_STAT_USER_READ_FAILED 2 /* bpf_probe_read_user failed; payload sent as a gap */
#define PX_STAT_COUNT 3

/* Ring buffer size in bytes (a power of two multiple of the page size). */
#define PX_RINGBUF_BYTES 16777216
/* Unread bytes at which the kernel side wakes the reader; below it the reader polls on a timer. */
#define PX_RINGBUF_WAKEUP_BYTES 262144

/* A connection is (tgid, fd, generation); generation is the monotonic time of the open, so it grows
 * with every connect/accept on the same fd and stays unique after map entries are evicted. */
struct px_conn_id {
	__u32 tgid;
	__s32 fd;
	__u64 generation;
};

/* An IPv4 or IPv6 endpoint. family is AF_INET (2) or AF_INET6 (10); port is in host byte order;
 * IPv4 addresses fill addr[0..4] in network byte order. */
struct px_endpoint {
	__u16 family;
	__u16 port;
	__u32 _pad;
	__u8 addr[16];
};

struct px_event_header {
	__u32 kind;
	__u32 _pad;
	/* CLOCK_MONOTONIC (bpf_ktime_get_ns). */
	__u64 timestamp_ns;
	struct px_conn_id conn;
};

/* PX_EVENT_CONN_OPEN and PX_EVENT_CONN_CLOSE. On close, bytes_* are the totals the kernel side saw
 * since the open, so user space can account for lost data events. */
struct px_conn_event {
	struct px_event_header hdr;
	struct px_endpoint remote;
	struct px_endpoint local;
	__u64 bytes_sent;
	__u64 bytes_recv;
	__u32 role;
	__u32 source;
};

/* PX_EVENT_DATA: the ring buffer record is the fixed part plus data_len bytes of `data`. pos is the
 * offset of this chunk in its direction's byte stream, msg_size how many stream bytes it covers;
 * [pos + data_len, pos + msg_size) were not captured and are a gap for user space. */
struct px_data_event {
	struct px_event_header hdr;
	__u64 pos;
	__u32 msg_size;
	__u32 data_len;
	__u32 direction;
	__u32 syscall_nr;
	__u8 data[PX_MAX_DATA];
};

/* PX_EVENT_PROC_EXIT: conn.tgid exited; its connections closed without close(2). */
struct px_proc_event {
	struct px_event_header hdr;
};

#ifndef offsetof
#define offsetof(type, member) __builtin_offsetof(type, member)
#endif

/* PX_LAYOUT(struct, member-or-SIZE, bytes): checked here by the C compiler and exported to Rust by
 * build.rs as `PX_LAYOUT_<STRUCT>_<MEMBER>`. Keep each on one line. */
#define PX_LAYOUT_SIZE(s, n) _Static_assert(sizeof(struct s) == (n), #s " size")
#define PX_LAYOUT(s, m, n) _Static_assert(offsetof(struct s, m) == (n), #s "." #m " offset")

PX_LAYOUT_SIZE(px_conn_id, 16);
PX_LAYOUT(px_conn_id, tgid, 0);
PX_LAYOUT(px_conn_id, fd, 4);
PX_LAYOUT(px_conn_id, generation, 8);
PX_LAYOUT_SIZE(px_endpoint, 24);
PX_LAYOUT(px_endpoint, family, 0);
PX_LAYOUT(px_endpoint, port, 2);
PX_LAYOUT(px_endpoint, addr, 8);
PX_LAYOUT_SIZE(px_event_header, 32);
PX_LAYOUT(px_event_header, kind, 0);
PX_LAYOUT(px_event_header, timestamp_ns, 8);
PX_LAYOUT(px_event_header, conn, 16);
PX_LAYOUT_SIZE(px_conn_event, 104);
PX_LAYOUT(px_conn_event, remote, 32);
PX_LAYOUT(px_conn_event, local, 56);
PX_LAYOUT(px_conn_event, bytes_sent, 80);
PX_LAYOUT(px_conn_event, bytes_recv, 88);
PX_LAYOUT(px_conn_event, role, 96);
PX_LAYOUT(px_conn_event, source, 100);
PX_LAYOUT_SIZE(px_data_event, 16440);
PX_LAYOUT(px_data_event, pos, 32);
PX_LAYOUT(px_data_event, msg_size, 40);
PX_LAYOUT(px_data_event, data_len, 44);
PX_LAYOUT(px_data_event, direction, 48);
PX_LAYOUT(px_data_event, syscall_nr, 52);
PX_LAYOUT(px_data_event, data, 56);
PX_LAYOUT_SIZE(px_proc_event, 32);

#endif /* PIXIE_SOCKET_TRACE_H */
