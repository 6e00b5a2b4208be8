// SPDX-License-Identifier: GPL-2.0
/*
 * Socket tracer: turns TCP socket syscalls of every process into connection and data events.
 *
 * Attached to the raw syscall tracepoints (tp_btf/sys_enter, tp_btf/sys_exit) because kprobes and
 * fentry are unavailable on our kernels. sys_enter stashes the arguments per thread; sys_exit reads
 * them back with the return value and emits events into the `events` ring buffer.
 *
 * Which fds are traced: every data syscall resolves its fd to the `struct file` (CO-RE walk of
 * task->files->fdt->fd[fd]) and only IPv4/IPv6 SOCK_STREAM sockets pass. The `struct file *` is
 * remembered per (tgid, fd): a different file behind the same fd (exec, dup2, an fd closed without
 * close(2)) starts a new connection instead of mixing streams. Sockets opened before tracing started
 * are picked up on their first data (PX_SOURCE_INFERRED) with addresses read from the `struct sock`.
 * Addresses always come from the kernel socket, not the user sockaddr: accept(fd, NULL, NULL) is
 * common and the user buffer never holds the local address.
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_endian.h>

#include "socket_trace.h"

char LICENSE[] SEC("license") = "GPL";

/* x86_64 syscall numbers. */
#define NR_read 0
#define NR_write 1
#define NR_close 3
#define NR_readv 19
#define NR_writev 20
#define NR_connect 42
#define NR_accept 43
#define NR_sendto 44
#define NR_recvfrom 45
#define NR_sendmsg 46
#define NR_recvmsg 47
#define NR_accept4 288

#define AF_INET 2
#define AF_INET6 10
#define SOCK_STREAM 1
#define S_IFMT 00170000
#define S_IFSOCK 0140000
#define EINPROGRESS 115
#define MSG_PEEK 2

/* Set by user space before load: the collector's own process, whose traffic is never traced. */
const volatile __u32 self_tgid = 0;

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, PX_RINGBUF_BYTES);
} events SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, PX_STAT_COUNT);
	__type(key, __u32);
	__type(value, __u64);
} stats SEC(".maps");

/* Arguments of a syscall in flight, keyed by pid_tgid (one syscall per thread at a time). */
struct syscall_args {
	__u64 nr;
	__u64 buf; /* data pointer, or the iovec array for the vectored calls */
	__u64 len; /* buffer length, or the iovec count */
	__u64 enter_ns;
	__s32 fd;
	__u32 _pad;
};

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 65536);
	__type(key, __u64);
	__type(value, struct syscall_args);
} active_syscalls SEC(".maps");

#define CONN_TRACED 1
#define CONN_IGNORED 2 /* not an inet stream socket: skip without re-checking */

struct conn_info {
	__u64 file; /* struct file * the state belongs to */
	__u64 generation;
	__u64 wr_bytes;
	__u64 rd_bytes;
	__u32 state;
	__u32 role;
};

/* (tgid << 32 | fd) -> state. LRU so that processes that die without closing cannot fill it. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 131072);
	__type(key, __u64);
	__type(value, struct conn_info);
} conn_info_map SEC(".maps");

/* A data event is far too big for the 512-byte BPF stack. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct px_data_event);
} data_scratch SEC(".maps");

/* Wake the reader only once a batch has built up; it also polls on a short timer. Waking it per
 * event costs a context switch per syscall under load. */
static __always_inline __u64 wakeup_flags(void)
{
	return bpf_ringbuf_query(&events, BPF_RB_AVAIL_DATA) >= PX_RINGBUF_WAKEUP_BYTES ?
		       BPF_RB_FORCE_WAKEUP :
		       BPF_RB_NO_WAKEUP;
}

static __always_inline void stat_add(__u32 idx, __u64 n)
{
	__u64 *v = bpf_map_lookup_elem(&stats, &idx);
	if (v)
		*v += n; /* per-CPU slot: no atomics needed */
}

static __always_inline int is_traced_nr(long nr)
{
	switch (nr) {
	case NR_read:
	case NR_write:
	case NR_close:
	case NR_readv:
	case NR_writev:
	case NR_connect:
	case NR_accept:
	case NR_sendto:
	case NR_recvfrom:
	case NR_sendmsg:
	case NR_recvmsg:
	case NR_accept4:
		return 1;
	default:
		return 0;
	}
}

static __always_inline struct file *fd_to_file(__s32 fd)
{
	struct task_struct *task = (struct task_struct *)bpf_get_current_task();
	struct fdtable *fdt = BPF_CORE_READ(task, files, fdt);
	struct file **fds;
	struct file *file = NULL;

	if (!fdt || fd < 0 || (__u32)fd >= BPF_CORE_READ(fdt, max_fds))
		return NULL;
	fds = BPF_CORE_READ(fdt, fd);
	if (bpf_probe_read_kernel(&file, sizeof(file), &fds[fd]) != 0)
		return NULL;
	return file;
}

/* The file's struct sock if it is an IPv4/IPv6 stream socket, else NULL. */
static __always_inline struct sock *inet_stream_sock(struct file *file)
{
	struct socket *sock;
	struct sock *sk;
	__u16 family;

	if ((BPF_CORE_READ(file, f_inode, i_mode) & S_IFMT) != S_IFSOCK)
		return NULL;
	sock = BPF_CORE_READ(file, private_data);
	if (!sock || BPF_CORE_READ(sock, type) != SOCK_STREAM)
		return NULL;
	sk = BPF_CORE_READ(sock, sk);
	if (!sk)
		return NULL;
	family = BPF_CORE_READ(sk, __sk_common.skc_family);
	if (family != AF_INET && family != AF_INET6)
		return NULL;
	return sk;
}

static __always_inline void read_endpoints(struct sock *sk, struct px_endpoint *remote,
					   struct px_endpoint *local)
{
	__u16 family = BPF_CORE_READ(sk, __sk_common.skc_family);

	remote->family = family;
	local->family = family;
	remote->port = bpf_ntohs(BPF_CORE_READ(sk, __sk_common.skc_dport));
	local->port = BPF_CORE_READ(sk, __sk_common.skc_num);
	if (family == AF_INET) {
		__u32 daddr = BPF_CORE_READ(sk, __sk_common.skc_daddr);
		__u32 saddr = BPF_CORE_READ(sk, __sk_common.skc_rcv_saddr);
		__builtin_memcpy(remote->addr, &daddr, 4);
		__builtin_memcpy(local->addr, &saddr, 4);
	} else {
		BPF_CORE_READ_INTO(&remote->addr, sk, __sk_common.skc_v6_daddr);
		BPF_CORE_READ_INTO(&local->addr, sk, __sk_common.skc_v6_rcv_saddr);
	}
}

static __always_inline void emit_conn_event(__u32 kind, __u32 tgid, __s32 fd, struct conn_info *ci,
					    struct sock *sk, __u32 source)
{
	struct px_conn_event ev = {};

	ev.hdr.kind = kind;
	ev.hdr.timestamp_ns = bpf_ktime_get_ns();
	ev.hdr.conn.tgid = tgid;
	ev.hdr.conn.fd = fd;
	ev.hdr.conn.generation = ci->generation;
	ev.bytes_sent = ci->wr_bytes;
	ev.bytes_recv = ci->rd_bytes;
	ev.role = ci->role;
	ev.source = source;
	if (sk)
		read_endpoints(sk, &ev.remote, &ev.local);
	if (bpf_ringbuf_output(&events, &ev, sizeof(ev), wakeup_flags()) != 0)
		stat_add(PX_STAT_LOST_EVENTS, 1);
}

/* Starts tracing (tgid, fd) as a new connection, closing whatever was traced there before. */
static __always_inline struct conn_info *open_conn(__u32 tgid, __s32 fd, struct file *file,
						   struct sock *sk, __u32 role, __u32 source)
{
	__u64 key = ((__u64)tgid << 32) | (__u32)fd;
	struct conn_info *old = bpf_map_lookup_elem(&conn_info_map, &key);
	struct conn_info ci = {};

	if (old && old->state == CONN_TRACED)
		emit_conn_event(PX_EVENT_CONN_CLOSE, tgid, fd, old, NULL, 0);
	ci.file = (__u64)file;
	ci.generation = bpf_ktime_get_ns();
	ci.state = CONN_TRACED;
	ci.role = role;
	bpf_map_update_elem(&conn_info_map, &key, &ci, BPF_ANY);
	emit_conn_event(PX_EVENT_CONN_OPEN, tgid, fd, &ci, sk, source);
	return bpf_map_lookup_elem(&conn_info_map, &key);
}

/* The traced connection state of (tgid, fd), discovering sockets we have not seen open. */
static __always_inline struct conn_info *lookup_conn(__u32 tgid, __s32 fd)
{
	__u64 key = ((__u64)tgid << 32) | (__u32)fd;
	struct file *file = fd_to_file(fd);
	struct conn_info *ci;
	struct sock *sk;

	if (!file)
		return NULL;
	ci = bpf_map_lookup_elem(&conn_info_map, &key);
	if (ci && ci->file == (__u64)file)
		return ci->state == CONN_TRACED ? ci : NULL;

	sk = inet_stream_sock(file);
	if (!sk) {
		struct conn_info ignored = {.file = (__u64)file, .state = CONN_IGNORED};

		if (ci && ci->state == CONN_TRACED)
			emit_conn_event(PX_EVENT_CONN_CLOSE, tgid, fd, ci, NULL, 0);
		bpf_map_update_elem(&conn_info_map, &key, &ignored, BPF_ANY);
		return NULL;
	}
	return open_conn(tgid, fd, file, sk, PX_ROLE_UNKNOWN, PX_SOURCE_INFERRED);
}

struct data_args {
	__u64 ts;
	__u64 generation;
	__u64 pos;
	__u64 buf;
	__u32 tgid;
	__s32 fd;
	__u32 msg_size;
	__u32 direction;
	__u32 nr;
};

/* One data event; a static subprogram so that the iovec loop does not inline 16 copies. */
static __noinline void emit_data(struct data_args *a)
{
	__u32 zero = 0;
	struct px_data_event *ev = bpf_map_lookup_elem(&data_scratch, &zero);
	__u32 len;

	if (!ev)
		return;
	ev->hdr.kind = PX_EVENT_DATA;
	ev->hdr.timestamp_ns = a->ts;
	ev->hdr.conn.tgid = a->tgid;
	ev->hdr.conn.fd = a->fd;
	ev->hdr.conn.generation = a->generation;
	ev->pos = a->pos;
	ev->msg_size = a->msg_size;
	ev->direction = a->direction;
	ev->syscall_nr = a->nr;

	len = a->msg_size;
	if (len > PX_MAX_DATA)
		len = PX_MAX_DATA;
	if (!a->buf)
		len = 0; /* a pure gap: stream bytes we know about but did not copy */
	barrier_var(len);
	if (len > PX_MAX_DATA)
		return;
	if (len && bpf_probe_read_user(ev->data, len, (void *)a->buf) != 0) {
		stat_add(PX_STAT_USER_READ_FAILED, 1);
		len = 0;
	}
	ev->data_len = len;
	if (bpf_ringbuf_output(&events, ev, offsetof(struct px_data_event, data) + len,
			       wakeup_flags()) != 0) {
		stat_add(PX_STAT_LOST_EVENTS, 1);
		stat_add(PX_STAT_LOST_DATA_BYTES, a->msg_size);
	}
}

static __always_inline __u32 clamp_u32(__u64 v)
{
	return v > 0xffffffffULL ? 0xffffffffU : (__u32)v;
}

/* Reserves `total` bytes of the direction's stream and returns their start offset. */
static __always_inline __u64 reserve_stream(struct conn_info *ci, __u32 direction, __u64 total)
{
	if (direction == PX_DIR_SEND)
		return __sync_fetch_and_add(&ci->wr_bytes, total);
	return __sync_fetch_and_add(&ci->rd_bytes, total);
}

static __always_inline void handle_data(struct syscall_args *args, __u32 tgid, __u32 direction,
					long ret, int vectored)
{
	struct conn_info *ci = lookup_conn(tgid, args->fd);
	struct data_args a = {};
	__u64 remaining = (__u64)ret;

	if (!ci)
		return;
	/* Sends are stamped when the process started writing, receives when the data was there. */
	a.ts = direction == PX_DIR_SEND ? args->enter_ns : bpf_ktime_get_ns();
	a.generation = ci->generation;
	a.pos = reserve_stream(ci, direction, (__u64)ret);
	a.tgid = tgid;
	a.fd = args->fd;
	a.direction = direction;
	a.nr = (__u32)args->nr;

	if (!vectored) {
		a.buf = args->buf;
		a.msg_size = clamp_u32(remaining);
		emit_data(&a);
		return;
	}

	for (int i = 0; i < PX_MAX_IOV; i++) {
		struct iovec iov;
		__u64 chunk;

		if (remaining == 0 || (__u64)i >= args->len)
			break;
		if (bpf_probe_read_user(&iov, sizeof(iov), (void *)(args->buf + i * sizeof(iov))) != 0)
			break;
		chunk = iov.iov_len < remaining ? iov.iov_len : remaining;
		if (chunk == 0)
			continue;
		a.buf = (__u64)iov.iov_base;
		a.msg_size = clamp_u32(chunk);
		emit_data(&a);
		a.pos += chunk;
		remaining -= chunk;
	}
	if (remaining > 0) {
		/* More iovecs than we walk: the rest of the stream is one gap. */
		a.buf = 0;
		a.msg_size = clamp_u32(remaining);
		emit_data(&a);
	}
}

static __always_inline void handle_open(__u32 tgid, __s32 fd, __u32 role, __u32 source)
{
	struct file *file = fd_to_file(fd);
	struct sock *sk;

	if (!file)
		return;
	sk = inet_stream_sock(file);
	if (!sk)
		return;
	open_conn(tgid, fd, file, sk, role, source);
}

static __always_inline void handle_close(__u32 tgid, __s32 fd)
{
	__u64 key = ((__u64)tgid << 32) | (__u32)fd;
	struct conn_info *ci = bpf_map_lookup_elem(&conn_info_map, &key);

	if (!ci)
		return;
	if (ci->state == CONN_TRACED)
		emit_conn_event(PX_EVENT_CONN_CLOSE, tgid, fd, ci, NULL, 0);
	bpf_map_delete_elem(&conn_info_map, &key);
}

SEC("tp_btf/sys_enter")
int BPF_PROG(sys_enter, struct pt_regs *regs, long id)
{
	struct syscall_args args = {};
	__u64 pid_tgid;

	if (!is_traced_nr(id))
		return 0;
	pid_tgid = bpf_get_current_pid_tgid();
	if ((__u32)(pid_tgid >> 32) == self_tgid)
		return 0;

	args.nr = id;
	args.fd = (__s32)BPF_CORE_READ(regs, di);
	args.buf = BPF_CORE_READ(regs, si);
	args.len = BPF_CORE_READ(regs, dx);
	args.enter_ns = bpf_ktime_get_ns();
	/* A peek leaves the bytes in the socket: they are captured when really read. */
	if ((id == NR_recvfrom && (BPF_CORE_READ(regs, r10) & MSG_PEEK)) ||
	    (id == NR_recvmsg && (args.len & MSG_PEEK)))
		return 0;
	if (id == NR_sendmsg || id == NR_recvmsg) {
		/* The msghdr lives in user memory; keep only its iovec array. */
		struct user_msghdr msg;

		if (bpf_probe_read_user(&msg, sizeof(msg), (void *)args.buf) != 0)
			return 0;
		args.buf = (__u64)msg.msg_iov;
		args.len = msg.msg_iovlen;
	}
	bpf_map_update_elem(&active_syscalls, &pid_tgid, &args, BPF_ANY);
	return 0;
}

SEC("tp_btf/sys_exit")
int BPF_PROG(sys_exit, struct pt_regs *regs, long ret)
{
	long id = BPF_CORE_READ(regs, orig_ax);
	struct syscall_args *stashed;
	struct syscall_args args;
	__u64 pid_tgid;
	__u32 tgid;

	if (!is_traced_nr(id))
		return 0;
	pid_tgid = bpf_get_current_pid_tgid();
	stashed = bpf_map_lookup_elem(&active_syscalls, &pid_tgid);
	if (!stashed)
		return 0;
	args = *stashed;
	bpf_map_delete_elem(&active_syscalls, &pid_tgid);
	if ((long)args.nr != id)
		return 0;
	tgid = pid_tgid >> 32;

	switch (id) {
	case NR_connect:
		if (ret == 0 || ret == -EINPROGRESS)
			handle_open(tgid, args.fd, PX_ROLE_CLIENT, PX_SOURCE_CONNECT);
		return 0;
	case NR_accept:
	case NR_accept4:
		if (ret >= 0)
			handle_open(tgid, (__s32)ret, PX_ROLE_SERVER, PX_SOURCE_ACCEPT);
		return 0;
	case NR_close:
		if (ret == 0)
			handle_close(tgid, args.fd);
		return 0;
	}

	if (ret <= 0)
		return 0;
	switch (id) {
	case NR_write:
	case NR_sendto:
		handle_data(&args, tgid, PX_DIR_SEND, ret, 0);
		break;
	case NR_read:
	case NR_recvfrom:
		handle_data(&args, tgid, PX_DIR_RECV, ret, 0);
		break;
	case NR_writev:
	case NR_sendmsg:
		handle_data(&args, tgid, PX_DIR_SEND, ret, 1);
		break;
	case NR_readv:
	case NR_recvmsg:
		handle_data(&args, tgid, PX_DIR_RECV, ret, 1);
		break;
	}
	return 0;
}

/* A process is gone: user space closes its connections (exit closes fds without close(2)). */
SEC("tp_btf/sched_process_exit")
int BPF_PROG(sched_process_exit, struct task_struct *task, bool group_dead)
{
	struct px_proc_event ev = {};
	__u32 tgid = BPF_CORE_READ(task, tgid);

	/* Fires per thread; only the last one out means the process is gone. */
	if (!group_dead || tgid == self_tgid)
		return 0;
	ev.hdr.kind = PX_EVENT_PROC_EXIT;
	ev.hdr.timestamp_ns = bpf_ktime_get_ns();
	ev.hdr.conn.tgid = tgid;
	ev.hdr.conn.fd = -1;
	if (bpf_ringbuf_output(&events, &ev, sizeof(ev), wakeup_flags()) != 0)
		stat_add(PX_STAT_LOST_EVENTS, 1);
	return 0;
}
