/*
 * replman.c - the replication manager (see replman.h).
 *
 * Owns: the replication acceptor, the links (each: TCP handle, decoder,
 * output buffer, FIFO of queued sends, writes in flight), one uv_timer per
 * HA timer kind, the flush prepare handle, the snapshot being streamed,
 * the receipt gate, the replica's open files.  The machine (keel_ha) is
 * fed one input at a time through drive(): inputs raised while actions
 * run are queued and fed afterwards, so the machine never re-enters.
 *
 * Live side.  START_SYNC_SEND sets the journal's tap (every batch's file
 * operations become JOURNAL_OP messages, queued in order on the link) and
 * takes a snapshot; once the journal has synced the snapshot's ticket its
 * segments and the large-message files stream as FILE_CHUNKs while the
 * link is writable (ops and chunks may interleave: they write the same
 * bytes at the same offsets).  A batch that journals a large message
 * queues the body file before its ops, so the backup has the body before
 * it acknowledges.  While HOLD_JOURNAL_OPS is in force the ops are kept
 * back and sent on RELEASE.  From HOLD on, receipts wait for the backup's
 * OP_ACK as well as for the local sync (the gate), until STOP_REPLICATION
 * releases or fails them.
 *
 * Backup side.  PREPARE_REPLICA empties <data-dir>/journal and the
 * large-message directory; FILE_CHUNKs and JOURNAL_OPs from that link are
 * written at their names and offsets; after each read the touched files
 * are fdatasync'ed and OP_ACK carries the last batch applied.  The backup
 * serves no client, so this I/O is synchronous on the loop.
 */
#include "replman.h"

#include <assert.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <arpa/inet.h>

#include <fiu-local.h>
#include <jansson.h>

#include "keel/alloc.h"
#include "bytes.h"
#include "fsutil.h"
#include "buf.h"
#include "crc32c.h"
#include "hastore.h"
#include "limits.h"
#include "log.h"
#include "repl.h"

/* ---- private types ----------------------------------------------------- */

typedef struct rlink rlink;
typedef struct sitem sitem;

/* A queued send: bytes (encoded messages) or a file to stream. */
struct sitem {
	sitem *next;
	bool is_file;
	keel_buf bytes;
	int fd;
	char name[64];        /* file name on the replica */
	uint64_t off;
	uint64_t end;         /* bytes to send */
};

typedef struct wreq {
	uv_write_t req;
	rlink *l;
	keel_buf buf;
} wreq;

struct rlink {
	keel_replman *m;
	uint32_t id;
	bool outbound;
	uv_tcp_t tcp;
	uv_connect_t creq;
	bool connected;
	keel_repl_decoder *dec;
	keel_buf out;          /* encoded, not yet handed to uv_write */
	size_t inflight;       /* bytes in uv_write requests */
	sitem *q_head, *q_tail; /* FIFO: sent in order, after `out` */
	bool closing;          /* close once `out` and the FIFO are written */
	bool handle_closed;    /* uv_close called */
	bool forgotten;        /* the machine asked CLOSE_LINK: report nothing more */
	bool dirty;
	const char *die_point; /* fault point: die once the output is written */
	rlink *next;
};

typedef struct pending_in {
	keel_ha_input in;
	struct pending_in *next;
} pending_in;

/* The replica's open files (backup). */
typedef struct rfile {
	char name[64];
	int fd;
	bool dirty;
} rfile;

#define RFILES 16

struct keel_replman {
	uv_loop_t *loop;
	const keel_ha_cfg *cfg;
	char *data_dir;
	char *journal_dir;
	char *large_dir;
	keel_events *events;
	keel_replman_host host;
	keel_ha ha;
	uv_tcp_t acceptor;
	uint16_t port;
	char listen_host[256];
	uv_prepare_t prepare;
	uv_timer_t timers[KEEL_HA_TIMER_COUNT];
	uv_timer_t ack_delay;       /* fault point sync-done-ack-delay */
	uv_timer_t connect_timer;   /* an unanswered connect fails after connection-ttl */
	uint32_t ack_delay_link;
	bool handles_open;
	rlink *links;
	uint32_t next_link_id;
	uint32_t connect_link;      /* outbound link being connected */

	/* driving the machine */
	bool driving;
	bool paused;                /* RESTART_AS_BACKUP under way */
	keel_ha_actions pending_acts;
	size_t pending_next;
	pending_in *in_head, *in_tail;

	/* live: the stream to the backup */
	uint32_t repl_link;         /* START_SYNC_SEND .. STOP_REPLICATION */
	keel_journal *tapped;       /* the journal whose tap is ours */
	bool holding;
	sitem *held_head, *held_tail;
	keel_journal_snapshot snap;
	bool snap_active;
	bool snap_ready;            /* synced >= snap.ticket: files may be read */
	size_t snap_next;           /* next journal segment to stream */
	char **snap_large;          /* large-message file names */
	size_t snap_large_count, snap_large_next;
	uint64_t snap_large_bytes;
	bool files_sent_reported;
	keel_sync_waiter snap_w;
	keel_buf scratch;
	size_t queued_bytes;        /* op bytes in FIFO items and held (KEEL_REPL_MAX_BEHIND) */

	/* live: the receipt gate */
	keel_sync gate;
	bool need_acks;
	uint64_t acked;
	keel_sync_waiter *gate_waiters;
	keel_sync_waiter gate_jw;   /* on the journal, for the highest ticket */

	/* backup: the replica */
	uint32_t replica_link;
	rfile files[RFILES];
	bool dir_dirty;
	uint64_t ack_pending;
	uint64_t *deletes;
	size_t ndeletes, delcap;
	bool replica_failed;
};

static void drive(keel_replman *m);
static void feed(keel_replman *m, keel_ha_input *in);
static void link_pump(rlink *l);
static void link_broken(rlink *l, const char *why);
static void snapshot_stop(keel_replman *m);

static uint64_t now_ms(keel_replman *m)
{
	return uv_now(m->loop);
}

static void in_init(keel_replman *m, keel_ha_input *in, keel_ha_input_type t, uint32_t link)
{
	memset(in, 0, sizeof(*in));
	in->type = t;
	in->link = link;
	in->now_ms = now_ms(m);
}

static void feed_simple(keel_replman *m, keel_ha_input_type t, uint32_t link)
{
	keel_ha_input in;
	in_init(m, &in, t, link);
	feed(m, &in);
}

static rlink *link_find(keel_replman *m, uint32_t id)
{
	for (rlink *l = m->links; l; l = l->next)
		if (l->id == id && !l->handle_closed)
			return l;
	return NULL;
}

static void die_now(keel_replman *m, const char *point)
{
	keel_log_warn("fault point %s: dying now", point);
	keel_events_emit(m->events, "error", "{s:s, s:s}", "message", "fault point: dying",
			 "point", point);
	raise(SIGKILL);
}

/* ---- queued sends ------------------------------------------------------- */

static void sitem_free(sitem *it)
{
	if (it->is_file && it->fd >= 0)
		close(it->fd);
	keel_buf_free(&it->bytes);
	keel_free(it);
}

static void q_push(sitem **head, sitem **tail, sitem *it)
{
	it->next = NULL;
	if (*tail)
		(*tail)->next = it;
	else
		*head = it;
	*tail = it;
}

static void q_free(sitem **head, sitem **tail)
{
	while (*head) {
		sitem *it = *head;
		*head = it->next;
		sitem_free(it);
	}
	*tail = NULL;
}

static size_t link_pending(const rlink *l)
{
	return keel_buf_size(&l->out) + l->inflight;
}

static bool link_writable(const rlink *l)
{
	return !l->handle_closed && l->connected && link_pending(l) < KEEL_REPL_WRITE_HIGH_WATERMARK;
}

/* Encode into `b` (the link's output or a queued item). */
static int encode_to(keel_buf *b, const keel_repl_msg *msg)
{
	int rc = keel_repl_encode(b, msg);
	if (rc < 0)
		keel_log_error("replication: cannot encode %s: %s", keel_repl_type_name(msg->type),
			       strerror(-rc));
	return rc;
}

/* Send in order: straight to the output when nothing is queued before. */
static int link_send(rlink *l, const keel_repl_msg *msg)
{
	if (l->handle_closed)
		return -ENOTCONN;
	int rc;
	if (l->q_head == NULL) {
		rc = encode_to(&l->out, msg);
	} else {
		sitem *it = l->q_tail;
		if (it->is_file) {
			it = keel_calloc(1, sizeof(*it));
			if (it == NULL)
				return -ENOMEM;
			keel_buf_init(&it->bytes);
			it->fd = -1;
			q_push(&l->q_head, &l->q_tail, it);
		}
		rc = encode_to(&it->bytes, msg);
	}
	l->dirty = true;
	return rc;
}

/* Queue a file to stream (FILE_CHUNKs) after whatever is queued. */
static int link_send_file(rlink *l, const char *path, const char *name, uint64_t end)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	if (end == UINT64_MAX) {
		struct stat st;
		if (fstat(fd, &st) < 0) {
			int rc = -errno;
			close(fd);
			return rc;
		}
		end = (uint64_t)st.st_size;
	}
	sitem *it = keel_calloc(1, sizeof(*it));
	if (it == NULL) {
		close(fd);
		return -ENOMEM;
	}
	keel_buf_init(&it->bytes);
	it->is_file = true;
	it->fd = fd;
	snprintf(it->name, sizeof(it->name), "%s", name);
	it->end = end;
	q_push(&l->q_head, &l->q_tail, it);
	l->dirty = true;
	return 0;
}

static uint32_t file_id_of(const char *name)
{
	return keel_crc32c(0, name, strlen(name));
}

/* One FILE_CHUNK of `it` into the output.  1: the file is done; 0: more;
 * -errno: the link must go. */
static int file_chunk(rlink *l, sitem *it)
{
	keel_replman *m = l->m;
	uint64_t left = it->end - it->off;
	size_t n = left > KEEL_REPL_MAX_CHUNK ? KEEL_REPL_MAX_CHUNK : (size_t)left;
	int rc = keel_buf_reserve(&m->scratch, n + 8);
	if (rc)
		return rc;
	uint8_t *p = keel_buf_head(&m->scratch);
	size_t got = 0;
	while (got < n) {
		ssize_t r = pread(it->fd, p + got, n - got, (off_t)(it->off + got));
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0)
			return -errno;
		if (r == 0)
			break; /* the file shrank (a removed large body): send what there is */
		got += (size_t)r;
	}
	if (got < n)
		it->end = it->off + got;
	bool last = it->off + got == it->end;
	keel_repl_msg msg = { .type = KEEL_REPL_FILE_CHUNK, .file_id = file_id_of(it->name),
			      .last = last, .offset = it->off,
			      .name = { it->name, strlen(it->name) }, .data = p,
			      .data_len = got };
	if (fiu_fail(KEEL_FIU_REPL_CHUNK_SEND))
		return -EIO;
	rc = encode_to(&l->out, &msg);
	if (rc)
		return rc;
	it->off += got;
	return last ? 1 : 0;
}

/* ---- the snapshot (live) ------------------------------------------------ */

static bool snapshot_next_file(keel_replman *m, rlink *l)
{
	char path[4096];
	while (m->snap_next < m->snap.count) {
		keel_journal_snapfile *f = &m->snap.files[m->snap_next++];
		snprintf(path, sizeof(path), "%s/%s", m->journal_dir, f->name);
		int rc = link_send_file(l, path, f->name, f->used);
		if (rc == 0)
			return true;
		keel_log_error("replication: snapshot: %s: %s", path, strerror(-rc));
		link_broken(l, "snapshot file unreadable");
		return false;
	}
	while (m->snap_large_next < m->snap_large_count) {
		const char *name = m->snap_large[m->snap_large_next++];
		snprintf(path, sizeof(path), "%s/%s", m->large_dir, name);
		int rc = link_send_file(l, path, name, UINT64_MAX);
		if (rc == 0)
			return true;
		if (rc != -ENOENT) {
			keel_log_error("replication: snapshot: %s: %s", path, strerror(-rc));
			link_broken(l, "snapshot file unreadable");
			return false;
		}
		/* consumed and removed since the listing: nothing to send */
	}
	return false;
}

/* Stream the snapshot's files one at a time behind the FIFO; report
 * SYNC_FILES_SENT once the last one is written out. */
static void snapshot_pump(keel_replman *m, rlink *l)
{
	if (!m->snap_active || !m->snap_ready || l->id != m->repl_link)
		return;
	if (l->q_head != NULL)
		return; /* one file at a time, behind the ops */
	if (snapshot_next_file(m, l))
		return; /* queued: the pump streams it */
	if (l->handle_closed || m->repl_link != l->id)
		return;
	if (fiu_fail(KEEL_FIU_REPL_SNAPSHOT_STALL))
		return; /* the backup stays BACKUP_SYNCING (scenarios) */
	/* every file is in the output: done */
	snapshot_stop(m);
	if (!m->files_sent_reported) {
		m->files_sent_reported = true;
		feed_simple(m, KEEL_HA_IN_SYNC_FILES_SENT, l->id);
	}
}

static void snapshot_stop(keel_replman *m)
{
	keel_journal *j = m->host.journal(m->host.ud);
	if (m->snap_active && j)
		keel_journal_snapshot_end(j, &m->snap);
	memset(&m->snap, 0, sizeof(m->snap));
	m->snap_active = false;
	m->snap_ready = false;
	if (m->snap_w.linked && j) {
		const keel_sync *sy = keel_journal_sync(j);
		sy->cancel(sy->ud, &m->snap_w);
	}
	for (size_t i = 0; i < m->snap_large_count; i++)
		keel_free(m->snap_large[i]);
	keel_free(m->snap_large);
	m->snap_large = NULL;
	m->snap_large_count = m->snap_large_next = 0;
	m->snap_large_bytes = 0;
	m->snap_next = 0;
}

static void on_snap_synced(keel_sync_waiter *w, uint64_t synced, int status)
{
	keel_replman *m = (keel_replman *)((char *)w - offsetof(keel_replman, snap_w));
	(void)synced;
	rlink *l = link_find(m, m->repl_link);
	if (l == NULL || !m->snap_active)
		return;
	if (status < 0) {
		link_broken(l, "journal write failed during the snapshot");
		return;
	}
	m->snap_ready = true;
	link_pump(l);
}

static int list_large(keel_replman *m)
{
	DIR *d = opendir(m->large_dir);
	if (d == NULL)
		return errno == ENOENT ? 0 : -errno;
	struct dirent *e;
	size_t cap = 0;
	int rc = 0;
	while ((e = readdir(d)) != NULL) {
		size_t n = strlen(e->d_name);
		if (n < 5 || strcmp(e->d_name + n - 4, ".msg") != 0 || n >= 64)
			continue;
		if (m->snap_large_count == cap) {
			cap = cap ? cap * 2 : 16;
			char **nl = keel_realloc(m->snap_large, cap * sizeof(*nl));
			if (nl == NULL) {
				rc = -ENOMEM;
				break;
			}
			m->snap_large = nl;
		}
		m->snap_large[m->snap_large_count] = keel_strdup(e->d_name);
		if (m->snap_large[m->snap_large_count] == NULL) {
			rc = -ENOMEM;
			break;
		}
		m->snap_large_count++;
		struct stat st;
		if (fstatat(dirfd(d), e->d_name, &st, 0) == 0)
			m->snap_large_bytes += (uint64_t)st.st_size;
	}
	closedir(d);
	return rc;
}

/* ---- the tap (live) ------------------------------------------------------ */

/* JOURNAL_OP payload: u8 kind, u64 segment, u64 offset, u64 size, bytes. */
#define OP_HDR 25

static int encode_op(keel_replman *m, keel_buf *to, uint8_t kind, uint64_t seg, uint64_t off,
		     uint64_t size, const uint8_t *data, size_t len, uint64_t seq)
{
	keel_buf_reset(&m->scratch);
	int rc = keel_buf_reserve(&m->scratch, OP_HDR + len);
	if (rc)
		return rc;
	uint8_t *p = keel_buf_head(&m->scratch);
	p[0] = kind;
	for (int i = 0; i < 8; i++) {
		p[1 + i] = (uint8_t)(seg >> (8 * i));
		p[9 + i] = (uint8_t)(off >> (8 * i));
		p[17 + i] = (uint8_t)(size >> (8 * i));
	}
	if (len)
		memcpy(p + OP_HDR, data, len);
	keel_repl_msg msg = { .type = KEEL_REPL_JOURNAL_OP, .seq = seq, .data = p,
			      .data_len = OP_HDR + len };
	return encode_to(to, &msg);
}

static void on_tap(void *ud, const keel_journal_fileop *ops, size_t n, uint64_t last_seq,
		   const uint64_t *large, size_t nlarge)
{
	keel_replman *m = ud;
	rlink *l = link_find(m, m->repl_link);
	if (l == NULL)
		return;
	if (ops == NULL) {
		link_broken(l, "the journal could not describe a batch (out of memory)");
		return;
	}
	/* large bodies first: the backup must have them before it acks */
	for (size_t i = 0; i < nlarge; i++) {
		char name[64], path[4096];
		snprintf(name, sizeof(name), "%" PRIu64 ".msg", large[i]);
		snprintf(path, sizeof(path), "%s/%s", m->large_dir, name);
		int rc = link_send_file(l, path, name, UINT64_MAX);
		if (rc < 0 && rc != -ENOENT) {
			link_broken(l, "large-message body unreadable");
			return;
		}
	}
	/* A backup that falls this far behind costs memory without bound:
	 * drop it (it syncs again) rather than buffer on. */
	size_t behind = link_pending(l) + m->queued_bytes;
	if (behind > KEEL_REPL_MAX_BEHIND) {
		char why[128];
		snprintf(why, sizeof(why), "backup too slow: %zu bytes of operations not sent",
			 behind);
		keel_events_emit(m->events, "error", "{s:s}", "message", why);
		link_broken(l, why);
		return;
	}
	/* the ops: one item of bytes, kept back while holding */
	sitem *it = keel_calloc(1, sizeof(*it));
	if (it == NULL) {
		link_broken(l, "out of memory");
		return;
	}
	keel_buf_init(&it->bytes);
	it->fd = -1;
	int rc = 0;
	for (size_t i = 0; i < n && rc == 0; i++) {
		const keel_journal_fileop *f = &ops[i];
		size_t off = 0;
		do {
			size_t piece = f->len - off;
			if (piece > KEEL_REPL_MAX_CHUNK)
				piece = KEEL_REPL_MAX_CHUNK;
			bool last = i + 1 == n && off + piece == f->len;
			rc = encode_op(m, &it->bytes, f->kind, f->seg, f->off + off, f->size,
				       f->data ? f->data + off : NULL, piece, last ? last_seq : 0);
			off += piece;
		} while (rc == 0 && off < f->len);
	}
	if (n == 0 && rc == 0)
		rc = encode_op(m, &it->bytes, KEEL_JOURNAL_FOP_WRITE, 0, 0, 0, NULL, 0, last_seq);
	if (rc) {
		sitem_free(it);
		link_broken(l, "out of memory");
		return;
	}
	if (m->holding) {
		m->queued_bytes += keel_buf_size(&it->bytes);
		q_push(&m->held_head, &m->held_tail, it);
		return;
	}
	if (l->q_head == NULL) {
		keel_buf_append(&l->out, keel_buf_head(&it->bytes), keel_buf_size(&it->bytes));
		sitem_free(it);
	} else {
		m->queued_bytes += keel_buf_size(&it->bytes);
		q_push(&l->q_head, &l->q_tail, it);
	}
	l->dirty = true;
}

/* ---- the receipt gate (live) -------------------------------------------- */

static keel_journal *journal_of(keel_replman *m)
{
	return m->host.journal(m->host.ud);
}

static uint64_t g_ticket(void *ud)
{
	keel_journal *j = journal_of(ud);
	if (j == NULL)
		return 0;
	const keel_sync *sy = keel_journal_sync(j);
	return sy->ticket(sy->ud);
}

static uint64_t j_synced(keel_replman *m)
{
	keel_journal *j = journal_of(m);
	if (j == NULL)
		return 0;
	const keel_sync *sy = keel_journal_sync(j);
	return sy->synced(sy->ud);
}

static uint64_t g_synced(void *ud)
{
	keel_replman *m = ud;
	uint64_t s = j_synced(m);
	return m->need_acks && m->acked < s ? m->acked : s;
}

static void gate_unlink(keel_replman *m, keel_sync_waiter *w)
{
	if (w->prev)
		w->prev->next = w->next;
	else
		m->gate_waiters = w->next;
	if (w->next)
		w->next->prev = w->prev;
	w->next = w->prev = NULL;
	w->linked = false;
}

static void gate_check(keel_replman *m);

static void on_gate_jw(keel_sync_waiter *w, uint64_t synced, int status)
{
	keel_replman *m = (keel_replman *)((char *)w - offsetof(keel_replman, gate_jw));
	if (status < 0) {
		/* a write up to w->ticket failed: those receipts fail */
		keel_sync_waiter *x = m->gate_waiters;
		while (x) {
			keel_sync_waiter *next = x->next;
			if (x->ticket > synced && x->ticket <= w->ticket) {
				gate_unlink(m, x);
				x->done(x, synced, status);
			}
			x = next;
		}
	}
	gate_check(m);
}

/* Release what is both synced and acknowledged; keep a journal waiter
 * armed for the highest ticket still waiting on the local sync. */
static void gate_check(keel_replman *m)
{
	uint64_t s = j_synced(m);
	uint64_t upto = m->need_acks && m->acked < s ? m->acked : s;
	uint64_t high = 0;
	/* done may re-arm waiters: scan again from the head after each */
	for (bool again = true; again;) {
		again = false;
		for (keel_sync_waiter *x = m->gate_waiters; x; x = x->next) {
			if (x->ticket <= upto) {
				gate_unlink(m, x);
				x->done(x, upto, 0);
				again = true;
				break;
			}
		}
	}
	for (keel_sync_waiter *x = m->gate_waiters; x; x = x->next)
		if (x->ticket > s && x->ticket > high)
			high = x->ticket;
	keel_journal *j = journal_of(m);
	if (j && high && !m->gate_jw.linked) {
		const keel_sync *sy = keel_journal_sync(j);
		m->gate_jw.ticket = high;
		sy->wait(sy->ud, &m->gate_jw);
	}
}

static void g_wait(void *ud, keel_sync_waiter *w)
{
	keel_replman *m = ud;
	keel_journal *j = journal_of(m);
	assert(j != NULL && !w->linked);
	if (!m->need_acks) {
		const keel_sync *sy = keel_journal_sync(j);
		sy->wait(sy->ud, w);
		return;
	}
	w->linked = true;
	w->prev = NULL;
	w->next = m->gate_waiters;
	if (m->gate_waiters)
		m->gate_waiters->prev = w;
	m->gate_waiters = w;
	/* done never runs inside wait: a journal waiter or an ack releases it */
	if (w->ticket > j_synced(m) && !m->gate_jw.linked) {
		const keel_sync *sy = keel_journal_sync(j);
		m->gate_jw.ticket = w->ticket;
		sy->wait(sy->ud, &m->gate_jw);
	}
}

static void g_cancel(void *ud, keel_sync_waiter *w)
{
	keel_replman *m = ud;
	if (!w->linked)
		return;
	for (keel_sync_waiter *x = m->gate_waiters; x; x = x->next)
		if (x == w) {
			gate_unlink(m, w);
			return;
		}
	keel_journal *j = journal_of(m);
	if (j) {
		const keel_sync *sy = keel_journal_sync(j);
		sy->cancel(sy->ud, w);
	}
}

/* Replication ends: the gate lets go.  release: receipts follow the local
 * sync alone; else they fail (this node hands over). */
static void gate_stop(keel_replman *m, bool release)
{
	m->need_acks = false;
	keel_journal *j = journal_of(m);
	if (m->gate_jw.linked && j) {
		const keel_sync *sy = keel_journal_sync(j);
		sy->cancel(sy->ud, &m->gate_jw);
	}
	uint64_t s = j_synced(m);
	while (m->gate_waiters) {
		keel_sync_waiter *x = m->gate_waiters;
		gate_unlink(m, x);
		if (!release)
			x->done(x, s, -ECONNRESET);
		else if (x->ticket <= s)
			x->done(x, s, 0);
		else if (j) {
			const keel_sync *sy = keel_journal_sync(j);
			sy->wait(sy->ud, x);
		}
	}
}

/* ---- the replica (backup) ------------------------------------------------ */

static const char *replica_dir_for(keel_replman *m, const char *name)
{
	size_t n = strlen(name);
	if (n > 4 && strcmp(name + n - 4, ".jnl") == 0)
		return m->journal_dir;
	if (n > 4 && strcmp(name + n - 4, ".msg") == 0)
		return m->large_dir;
	return NULL;
}

static bool name_ok(const char *name, size_t len)
{
	if (len == 0 || len >= 64)
		return false;
	for (size_t i = 0; i < len; i++) {
		char c = name[i];
		if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || c == '-' || c == '.'))
			return false;
	}
	return name[0] != '.';
}

static int rfile_sync(keel_replman *m, rfile *f)
{
	(void)m;
	if (f->fd >= 0 && f->dirty) {
		if (fdatasync(f->fd) < 0)
			return -errno;
		f->dirty = false;
	}
	return 0;
}

static void rfile_close(keel_replman *m, rfile *f)
{
	(void)rfile_sync(m, f);
	if (f->fd >= 0)
		close(f->fd);
	f->fd = -1;
	f->name[0] = '\0';
}

static int rfile_get(keel_replman *m, const char *name, rfile **out)
{
	rfile *victim = NULL;
	for (int i = 0; i < RFILES; i++) {
		rfile *f = &m->files[i];
		if (f->fd >= 0 && strcmp(f->name, name) == 0) {
			*out = f;
			return 0;
		}
		if (f->fd < 0 && victim == NULL)
			victim = f;
	}
	if (victim == NULL) {
		victim = &m->files[0];
		int rc = rfile_sync(m, victim);
		if (rc)
			return rc;
		rfile_close(m, victim);
	}
	const char *dir = replica_dir_for(m, name);
	if (dir == NULL)
		return -EINVAL;
	char path[4096];
	snprintf(path, sizeof(path), "%s/%s", dir, name);
	int fd = open(path, O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
	if (fd < 0)
		return -errno;
	victim->fd = fd;
	victim->dirty = false;
	snprintf(victim->name, sizeof(victim->name), "%s", name);
	m->dir_dirty = true;
	*out = victim;
	return 0;
}


static int replica_write(keel_replman *m, const char *name, uint64_t off, const uint8_t *data,
			 size_t len, uint64_t size)
{
	if (fiu_fail(KEEL_FIU_REPL_CHUNK_WRITE))
		return -EIO;
	rfile *f;
	int rc = rfile_get(m, name, &f);
	if (rc)
		return rc;
	rc = keel_pwrite_all(f->fd, data, len, off);
	if (rc)
		return rc;
	if (size) {
		struct stat st;
		if (fstat(f->fd, &st) == 0 && (uint64_t)st.st_size < size &&
		    ftruncate(f->fd, (off_t)size) < 0)
			return -errno;
	}
	f->dirty = true;
	return 0;
}

/* Empty a flat directory (create it when missing). */
static int empty_dir(const char *dir)
{
	if (mkdir(dir, 0755) < 0 && errno != EEXIST)
		return -errno;
	DIR *d = opendir(dir);
	if (d == NULL)
		return -errno;
	struct dirent *e;
	int rc = 0;
	while ((e = readdir(d)) != NULL) {
		if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
			continue;
		if (unlinkat(dirfd(d), e->d_name, 0) < 0 && errno != ENOENT)
			rc = -errno;
	}
	closedir(d);
	return rc;
}

static void replica_close_files(keel_replman *m)
{
	for (int i = 0; i < RFILES; i++)
		if (m->files[i].fd >= 0)
			rfile_close(m, &m->files[i]);
}


/* Everything received on disk: files, deletes, directories. */
static int replica_flush(keel_replman *m)
{
	int rc = 0;
	for (int i = 0; i < RFILES && rc == 0; i++)
		rc = rfile_sync(m, &m->files[i]);
	if (rc)
		return rc;
	for (size_t i = 0; i < m->ndeletes; i++) {
		char name[64], path[4096];
		keel_journal_segment_name(m->deletes[i], name, sizeof(name));
		for (int k = 0; k < RFILES; k++)
			if (m->files[k].fd >= 0 && strcmp(m->files[k].name, name) == 0)
				rfile_close(m, &m->files[k]);
		snprintf(path, sizeof(path), "%s/%s", m->journal_dir, name);
		if (unlink(path) < 0 && errno != ENOENT)
			keel_log_warn("replica: cannot delete %s: %s", path, strerror(errno));
		m->dir_dirty = true;
	}
	m->ndeletes = 0;
	if (m->dir_dirty) {
		rc = keel_fsync_dir(m->journal_dir);
		if (rc == 0)
			rc = keel_fsync_dir(m->large_dir);
		if (rc == 0)
			m->dir_dirty = false;
	}
	return rc;
}

static int replica_apply_op(keel_replman *m, const keel_repl_msg *msg)
{
	if (msg->data_len < OP_HDR)
		return -EPROTO;
	const uint8_t *p = msg->data;
	uint8_t kind = p[0];
	uint64_t seg = keel_get_le64(p + 1), off = keel_get_le64(p + 9), size = keel_get_le64(p + 17);
	const uint8_t *data = p + OP_HDR;
	size_t len = msg->data_len - OP_HDR;
	char name[64];
	int rc = 0;
	keel_journal_segment_name(seg, name, sizeof(name));
	switch (kind) {
	case KEEL_JOURNAL_FOP_CREATE:
		rc = replica_write(m, name, 0, data, len, size);
		break;
	case KEEL_JOURNAL_FOP_WRITE:
		if (len || seg)
			rc = replica_write(m, name, off, data, len, 0);
		break;
	case KEEL_JOURNAL_FOP_DELETE:
		if (m->ndeletes == m->delcap) {
			size_t cap = m->delcap ? m->delcap * 2 : 8;
			uint64_t *nd = keel_realloc(m->deletes, cap * sizeof(*nd));
			if (nd == NULL)
				return -ENOMEM;
			m->deletes = nd;
			m->delcap = cap;
		}
		m->deletes[m->ndeletes++] = seg;
		break;
	default:
		return -EPROTO;
	}
	if (rc == 0 && msg->seq > m->ack_pending)
		m->ack_pending = msg->seq;
	return rc;
}

static int replica_apply_chunk(keel_replman *m, const keel_repl_msg *msg)
{
	char name[64];
	if (!name_ok(msg->name.p, msg->name.len))
		return -EPROTO;
	memcpy(name, msg->name.p, msg->name.len);
	name[msg->name.len] = '\0';
	if (replica_dir_for(m, name) == NULL)
		return -EPROTO;
	int rc = replica_write(m, name, msg->offset, msg->data, msg->data_len, 0);
	if (rc == 0 && msg->last) {
		rfile *f;
		rc = rfile_get(m, name, &f);
		size_t n = strlen(name);
		if (rc == 0 && strcmp(name + n - 4, ".jnl") == 0) {
			/* a segment: its capacity is in its header (u64 at 24) */
			uint8_t h[8];
			if (pread(f->fd, h, 8, 24) == 8) {
				uint64_t cap = keel_get_le64(h);
				struct stat st;
				if (fstat(f->fd, &st) == 0 && (uint64_t)st.st_size < cap &&
				    cap < (1ull << 40) && ftruncate(f->fd, (off_t)cap) < 0)
					rc = -errno;
			}
		}
		if (rc == 0)
			rc = rfile_sync(m, f);
		if (rc == 0)
			rfile_close(m, f);
	}
	return rc;
}

/* ---- links --------------------------------------------------------------- */

static void on_link_closed_handle(uv_handle_t *h)
{
	rlink *l = h->data;
	keel_replman *m = l->m;
	for (rlink **pp = &m->links; *pp; pp = &(*pp)->next)
		if (*pp == l) {
			*pp = l->next;
			break;
		}
	keel_repl_decoder_free(l->dec);
	keel_buf_free(&l->out);
	q_free(&l->q_head, &l->q_tail);
	keel_free(l);
}

/* Close the handle now (writes in flight are cancelled). */
static void link_close_now(rlink *l)
{
	if (l->handle_closed)
		return;
	l->handle_closed = true;
	keel_replman *m = l->m;
	if (m->repl_link == l->id) {
		/* the machine hears of it and asks STOP_REPLICATION; until then
		 * nothing more goes out */
		keel_journal *j = journal_of(m);
		if (j && m->tapped == j)
			keel_journal_set_tap(j, NULL, NULL);
		m->tapped = NULL;
		snapshot_stop(m);
	}
	if (m->replica_link == l->id)
		m->replica_link = 0;
	uv_close((uv_handle_t *)&l->tcp, on_link_closed_handle);
}

/* The link broke (read error, EOF, protocol error, local failure). */
static void link_broken(rlink *l, const char *why)
{
	if (l->handle_closed)
		return;
	keel_replman *m = l->m;
	keel_log_info("replication link %u: %s", l->id, why);
	bool report = !l->forgotten;
	uint32_t id = l->id;
	bool was_connecting = l->outbound && !l->connected;
	link_close_now(l);
	if (!report)
		return;
	if (was_connecting && m->connect_link == id) {
		m->connect_link = 0;
		feed_simple(m, KEEL_HA_IN_CONNECT_FAILED, 0);
	} else {
		feed_simple(m, KEEL_HA_IN_LINK_CLOSED, id);
	}
}

static void on_write(uv_write_t *req, int status)
{
	wreq *w = req->data;
	rlink *l = w->l;
	l->inflight -= keel_buf_size(&w->buf);
	keel_buf_free(&w->buf);
	keel_free(w);
	if (l->handle_closed)
		return;
	if (status < 0) {
		link_broken(l, uv_strerror(status));
		drive(l->m);
		return;
	}
	keel_replman *m = l->m;
	link_pump(l);
	drive(m);
}

/* Fill the output from the FIFO (and the snapshot) while writable, write
 * it out; close a closing link once everything is written. */
static void link_pump(rlink *l)
{
	keel_replman *m = l->m;
	if (l->handle_closed || !l->connected)
		return;
	for (;;) {
		while (l->q_head && link_writable(l)) {
			sitem *it = l->q_head;
			if (!it->is_file) {
				if (keel_buf_append(&l->out, keel_buf_head(&it->bytes),
						    keel_buf_size(&it->bytes))) {
					link_broken(l, "out of memory");
					return;
				}
				if (l->id == m->repl_link)
					m->queued_bytes -= keel_buf_size(&it->bytes);
			} else {
				int rc = file_chunk(l, it);
				if (rc < 0) {
					link_broken(l, "cannot stream a file");
					return;
				}
				if (rc == 0)
					continue;
			}
			l->q_head = it->next;
			if (l->q_head == NULL)
				l->q_tail = NULL;
			sitem_free(it);
		}
		if (l->q_head == NULL && link_writable(l) && m->snap_active && m->snap_ready &&
		    l->id == m->repl_link) {
			snapshot_pump(m, l);
			if (l->handle_closed)
				return;
			if (l->q_head)
				continue;
		}
		break;
	}
	if (keel_buf_size(&l->out)) {
		wreq *w = keel_calloc(1, sizeof(*w));
		if (w == NULL) {
			link_broken(l, "out of memory");
			return;
		}
		w->l = l;
		w->buf = l->out;
		keel_buf_init(&l->out);
		w->req.data = w;
		uv_buf_t b = uv_buf_init((char *)keel_buf_head(&w->buf),
					 (unsigned)keel_buf_size(&w->buf));
		l->inflight += keel_buf_size(&w->buf);
		int rc = uv_write(&w->req, (uv_stream_t *)&l->tcp, &b, 1, on_write);
		if (rc < 0) {
			l->inflight -= keel_buf_size(&w->buf);
			keel_buf_free(&w->buf);
			keel_free(w);
			link_broken(l, uv_strerror(rc));
			return;
		}
	}
	l->dirty = false;
	if (l->die_point && l->q_head == NULL && l->inflight == 0 && keel_buf_size(&l->out) == 0)
		die_now(m, l->die_point);
	if (l->closing && l->q_head == NULL && l->inflight == 0 && keel_buf_size(&l->out) == 0)
		link_close_now(l);
}

static void on_prepare(uv_prepare_t *h)
{
	keel_replman *m = h->data;
	rlink *next;
	for (rlink *l = m->links; l; l = next) {
		next = l->next;
		if (l->dirty)
			link_pump(l);
	}
	drive(m);
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
	(void)h;
	(void)suggested;
	size_t n = 256 * 1024;
	buf->base = keel_malloc(n);
	buf->len = buf->base ? n : 0;
}

static bool creds_ok(keel_replman *m, const keel_repl_msg *msg)
{
	if (fiu_fail(KEEL_FIU_REPL_REGISTER_REFUSE))
		return false;
	const char *u = m->cfg->cluster_user ? m->cfg->cluster_user : "";
	const char *p = m->cfg->cluster_password ? m->cfg->cluster_password : "";
	return msg->user.len == strlen(u) && memcmp(msg->user.p, u, msg->user.len) == 0 &&
	       msg->password.len == strlen(p) && memcmp(msg->password.p, p, msg->password.len) == 0;
}

/* One decoded message from link l. */
static int on_message(rlink *l, const keel_repl_msg *msg)
{
	keel_replman *m = l->m;
	keel_ha_input in;
	in_init(m, &in, 0, l->id);
	switch (msg->type) {
	case KEEL_REPL_REGISTER:
		in.type = KEEL_HA_IN_REGISTER;
		in.peer = msg->id;
		in.peer_role = msg->role;
		in.failback = msg->failback;
		in.creds_ok = creds_ok(m, msg);
		break;
	case KEEL_REPL_REGISTER_OK:
		in.type = KEEL_HA_IN_REGISTER_OK;
		in.peer = msg->id;
		break;
	case KEEL_REPL_REGISTER_REFUSED:
		in.type = KEEL_HA_IN_REGISTER_REFUSED;
		in.reason = msg->reason;
		in.peer = msg->id;
		break;
	case KEEL_REPL_SYNC_START:
		in.type = KEEL_HA_IN_SYNC_START;
		in.files = msg->files;
		in.bytes = msg->bytes;
		break;
	case KEEL_REPL_SYNC_DONE:
		in.type = KEEL_HA_IN_SYNC_DONE;
		in.peer = msg->id;
		break;
	case KEEL_REPL_SYNC_DONE_ACK:
		in.type = KEEL_HA_IN_SYNC_DONE_ACK;
		break;
	case KEEL_REPL_ANNOUNCE_BACKUP:
		in.type = KEEL_HA_IN_ANNOUNCE;
		break;
	case KEEL_REPL_HANDOVER:
		in.type = KEEL_HA_IN_HANDOVER;
		break;
	case KEEL_REPL_LIVE_STARTED:
		in.type = KEEL_HA_IN_LIVE_STARTED;
		break;
	case KEEL_REPL_GOODBYE:
		in.type = KEEL_HA_IN_GOODBYE;
		in.reason = msg->reason;
		break;
	case KEEL_REPL_PING:
		in.type = KEEL_HA_IN_PING;
		break;
	case KEEL_REPL_PONG:
		return 0; /* HEARD is enough */
	case KEEL_REPL_OP_ACK:
		if (l->id != m->repl_link)
			return 0; /* a late ack of a replication that ended */
		if (msg->seq > m->acked)
			m->acked = msg->seq;
		gate_check(m);
		return 0;
	case KEEL_REPL_FILE_CHUNK:
	case KEEL_REPL_JOURNAL_OP: {
		if (l->id != m->replica_link)
			return -EPROTO;
		if (m->replica_failed)
			return 0;
		int rc = msg->type == KEEL_REPL_FILE_CHUNK ? replica_apply_chunk(m, msg)
							   : replica_apply_op(m, msg);
		if (rc == -EPROTO)
			return rc;
		if (rc) {
			keel_log_error("replica: cannot write: %s", strerror(-rc));
			keel_events_emit(m->events, "error", "{s:s, s:s}", "message",
					 "replica: cannot write", "cause", strerror(-rc));
			m->replica_failed = true;
			feed_simple(m, KEEL_HA_IN_REPLICA_FAILED, l->id);
		}
		return 0;
	}
	default:
		return -EPROTO;
	}
	feed(m, &in);
	return 0;
}

/* After a read: the replica's files on disk, then OP_ACK. */
static void replica_ack(keel_replman *m, rlink *l)
{
	if (m->ack_pending == 0 || l->id != m->replica_link || m->replica_failed)
		return;
	int rc = replica_flush(m);
	if (rc) {
		keel_log_error("replica: cannot sync: %s", strerror(-rc));
		m->replica_failed = true;
		feed_simple(m, KEEL_HA_IN_REPLICA_FAILED, l->id);
		return;
	}
	uint64_t seq = m->ack_pending;
	m->ack_pending = 0;
	if (fiu_fail(KEEL_FIU_REPL_OP_ACK_DROP))
		return;
	keel_repl_msg ack = { .type = KEEL_REPL_OP_ACK, .seq = seq };
	link_send(l, &ack);
}

static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
	rlink *l = s->data;
	keel_replman *m = l->m;
	if (nread < 0) {
		keel_free(buf->base);
		link_broken(l, nread == UV_EOF ? "closed by the peer" : uv_strerror((int)nread));
		drive(m);
		return;
	}
	if (nread == 0) {
		keel_free(buf->base);
		return;
	}
	if (!l->forgotten)
		feed_simple(m, KEEL_HA_IN_HEARD, l->id);
	const uint8_t *p = (const uint8_t *)buf->base;
	size_t left = (size_t)nread;
	while (!l->handle_closed) {
		keel_repl_msg msg;
		ssize_t used = keel_repl_decode(l->dec, p, left, &msg);
		if (used < 0) {
			keel_log_warn("replication link %u: %s", l->id,
				      keel_repl_decoder_error(l->dec));
			link_broken(l, "protocol error");
			break;
		}
		p += used;
		left -= (size_t)used;
		if (msg.type == KEEL_REPL_NONE)
			break;
		if (l->forgotten)
			continue;
		if (on_message(l, &msg) < 0) {
			keel_log_warn("replication link %u: unexpected %s", l->id,
				      keel_repl_type_name(msg.type));
			link_broken(l, "protocol error");
			break;
		}
		/* feed as we go: SYNC_DONE must see the ops before it applied */
		drive(m);
	}
	keel_free(buf->base);
	if (!l->handle_closed)
		replica_ack(m, l);
	drive(m);
}

static rlink *link_new(keel_replman *m, bool outbound)
{
	rlink *l = keel_calloc(1, sizeof(*l));
	if (l == NULL)
		return NULL;
	if (keel_repl_decoder_create(&l->dec, 0) < 0) {
		keel_free(l);
		return NULL;
	}
	l->m = m;
	l->outbound = outbound;
	l->id = ++m->next_link_id;
	if (l->id == 0)
		l->id = ++m->next_link_id;
	keel_buf_init(&l->out);
	uv_tcp_init(m->loop, &l->tcp);
	uv_tcp_nodelay(&l->tcp, 1);
	l->tcp.data = l;
	l->next = m->links;
	m->links = l;
	return l;
}

static void on_accept(uv_stream_t *server, int status)
{
	keel_replman *m = server->data;
	if (status < 0) {
		keel_log_warn("replication acceptor: %s", uv_strerror(status));
		return;
	}
	rlink *l = link_new(m, false);
	if (l == NULL)
		return;
	if (uv_accept(server, (uv_stream_t *)&l->tcp) < 0 ||
	    uv_read_start((uv_stream_t *)&l->tcp, on_alloc, on_read) < 0) {
		l->forgotten = true;
		link_close_now(l);
		return;
	}
	l->connected = true;
	keel_log_debug("replication link %u accepted", l->id);
}

static void on_connect(uv_connect_t *req, int status)
{
	rlink *l = req->data;
	keel_replman *m = l->m;
	if (l->handle_closed)
		return;
	if (status < 0) {
		keel_log_debug("replication: connect to %s: %s", m->cfg->peer, uv_strerror(status));
		link_broken(l, uv_strerror(status));
		drive(m);
		return;
	}
	l->connected = true;
	m->connect_link = 0;
	uv_timer_stop(&m->connect_timer);
	if (uv_read_start((uv_stream_t *)&l->tcp, on_alloc, on_read) < 0) {
		link_broken(l, "cannot read");
		drive(m);
		return;
	}
	feed_simple(m, KEEL_HA_IN_CONNECTED, l->id);
	drive(m);
}

static void on_connect_timeout(uv_timer_t *t)
{
	keel_replman *m = t->data;
	rlink *l = link_find(m, m->connect_link);
	if (l == NULL || l->connected)
		return;
	keel_log_info("replication: connect to %s: no answer within connection-ttl",
		      m->cfg->peer);
	link_broken(l, "connect timed out");
	drive(m);
}

static int connect_peer(keel_replman *m)
{
	char host[256];
	uint16_t port;
	struct sockaddr_storage sa;
	if (keel_parse_hostport(m->cfg->peer, host, sizeof(host), &port) < 0)
		return -EINVAL;
	if (uv_ip4_addr(host, port, (struct sockaddr_in *)&sa) < 0 &&
	    uv_ip6_addr(host, port, (struct sockaddr_in6 *)&sa) < 0)
		return -EINVAL;
	rlink *l = link_new(m, true);
	if (l == NULL)
		return -ENOMEM;
	l->creq.data = l;
	int rc = uv_tcp_connect(&l->creq, &l->tcp, (struct sockaddr *)&sa, on_connect);
	if (rc < 0) {
		l->forgotten = true;
		link_close_now(l);
		return rc;
	}
	m->connect_link = l->id;
	/* a peer that drops SYNs (a partition) would keep us for minutes */
	uv_timer_start(&m->connect_timer, on_connect_timeout,
		       m->cfg->connection_ttl ? m->cfg->connection_ttl : 60000, 0);
	return 0;
}

/* ---- timers -------------------------------------------------------------- */

static void on_timer(uv_timer_t *t)
{
	keel_replman *m = t->data;
	keel_ha_input in;
	in_init(m, &in, KEEL_HA_IN_TIMER, 0);
	in.timer = (keel_ha_timer)(t - m->timers);
	feed(m, &in);
	drive(m);
}

static void send_sync_done_ack(keel_replman *m, uint32_t link);

static void on_ack_delay(uv_timer_t *t)
{
	keel_replman *m = t->data;
	send_sync_done_ack(m, m->ack_delay_link);
	drive(m);
}

/* ---- actions ------------------------------------------------------------- */

static void send_sync_done_ack(keel_replman *m, uint32_t link)
{
	rlink *l = link_find(m, link);
	if (l == NULL)
		return;
	keel_repl_msg msg = { .type = KEEL_REPL_SYNC_DONE_ACK, .id = m->ha.self };
	link_send(l, &msg);
}

/* A fault point: die once what the link has is written out. */
static void link_die_after_flush(rlink *l, const char *point)
{
	l->die_point = point;
	l->dirty = true;
}

static void act_send(keel_replman *m, const keel_ha_action *a)
{
	rlink *l = link_find(m, a->link);
	if (l == NULL)
		return;
	keel_repl_msg msg = { .id = a->self };
	switch (a->msg) {
	case KEEL_HA_MSG_REGISTER:
		msg.type = KEEL_REPL_REGISTER;
		msg.role = a->role;
		msg.failback = a->failback;
		if (m->cfg->cluster_user)
			msg.user = (keel_repl_str){ m->cfg->cluster_user, strlen(m->cfg->cluster_user) };
		if (m->cfg->cluster_password)
			msg.password = (keel_repl_str){ m->cfg->cluster_password,
							strlen(m->cfg->cluster_password) };
		break;
	case KEEL_HA_MSG_REGISTER_OK: msg.type = KEEL_REPL_REGISTER_OK; break;
	case KEEL_HA_MSG_REGISTER_REFUSED: {
		msg.type = KEEL_REPL_REGISTER_REFUSED;
		msg.reason = a->reason;
		const char *t = keel_ha_reason_name(a->reason);
		msg.text = (keel_repl_str){ t, strlen(t) };
		break;
	}
	case KEEL_HA_MSG_SYNC_DONE: msg.type = KEEL_REPL_SYNC_DONE; break;
	case KEEL_HA_MSG_SYNC_DONE_ACK:
		if (fiu_fail(KEEL_FIU_REPL_SYNC_DONE_ACK_DROP)) {
			keel_log_warn("fault point %s: SYNC_DONE_ACK not sent",
				      KEEL_FIU_REPL_SYNC_DONE_ACK_DROP);
			return;
		}
		if (fiu_fail(KEEL_FIU_REPL_SYNC_DONE_ACK_DELAY)) {
			uintptr_t ms = (uintptr_t)fiu_failinfo();
			keel_log_warn("fault point %s: SYNC_DONE_ACK delayed %lu ms",
				      KEEL_FIU_REPL_SYNC_DONE_ACK_DELAY, (unsigned long)ms);
			m->ack_delay_link = a->link;
			uv_timer_start(&m->ack_delay, on_ack_delay, ms ? ms : 1000, 0);
			return;
		}
		msg.type = KEEL_REPL_SYNC_DONE_ACK;
		break;
	case KEEL_HA_MSG_ANNOUNCE:
		if (fiu_fail(KEEL_FIU_REPL_ANNOUNCE_DROP)) {
			keel_log_warn("fault point %s: ANNOUNCE_BACKUP not sent",
				      KEEL_FIU_REPL_ANNOUNCE_DROP);
			return;
		}
		msg.type = KEEL_REPL_ANNOUNCE_BACKUP;
		break;
	case KEEL_HA_MSG_HANDOVER: {
		/* after every journal operation: write the open batch out now
		 * (the tap queues its ops before HANDOVER) */
		keel_journal *j = journal_of(m);
		if (j)
			(void)keel_journal_flush(j);
		msg.type = KEEL_REPL_HANDOVER;
		break;
	}
	case KEEL_HA_MSG_LIVE_STARTED: msg.type = KEEL_REPL_LIVE_STARTED; break;
	case KEEL_HA_MSG_GOODBYE: {
		msg.type = KEEL_REPL_GOODBYE;
		msg.reason = a->reason;
		const char *t = keel_ha_reason_name(a->reason);
		msg.text = (keel_repl_str){ t, strlen(t) };
		break;
	}
	case KEEL_HA_MSG_PING: msg.type = KEEL_REPL_PING; msg.seq = now_ms(m); break;
	case KEEL_HA_MSG_PONG: msg.type = KEEL_REPL_PONG; break;
	}
	if (link_send(l, &msg) < 0) {
		link_broken(l, "cannot send");
		return;
	}
	if (a->msg == KEEL_HA_MSG_ANNOUNCE && fiu_fail(KEEL_FIU_REPL_DIE_AFTER_ANNOUNCE)) {
		link_die_after_flush(l, KEEL_FIU_REPL_DIE_AFTER_ANNOUNCE);
	}
	if (a->msg == KEEL_HA_MSG_HANDOVER && fiu_fail(KEEL_FIU_REPL_DIE_IN_HANDOVER)) {
		link_die_after_flush(l, KEEL_FIU_REPL_DIE_IN_HANDOVER);
	}
}

static void act_start_sync(keel_replman *m, uint32_t link)
{
	rlink *l = link_find(m, link);
	keel_journal *j = journal_of(m);
	if (l == NULL)
		return;
	if (j == NULL) {
		link_broken(l, "no journal to replicate");
		return;
	}
	snapshot_stop(m);
	m->repl_link = link;
	m->acked = 0;
	m->queued_bytes = 0;
	m->files_sent_reported = false;
	int rc = keel_journal_snapshot_begin(j, &m->snap);
	if (rc == 0) {
		m->snap_active = true;
		rc = list_large(m);
	}
	if (rc) {
		link_broken(l, "cannot take a snapshot");
		return;
	}
	keel_journal_set_tap(j, on_tap, m);
	m->tapped = j;
	uint64_t bytes = m->snap.bytes + m->snap_large_bytes;
	keel_repl_msg start = { .type = KEEL_REPL_SYNC_START,
				.files = m->snap.count + m->snap_large_count, .bytes = bytes };
	link_send(l, &start);
	keel_log_info("replication: sync started: %zu segments (%" PRIu64
		      " bytes), %zu large-message files",
		      m->snap.count, bytes, m->snap_large_count);
	const keel_sync *sy = keel_journal_sync(j);
	if (sy->synced(sy->ud) >= m->snap.ticket) {
		m->snap_ready = true;
	} else {
		m->snap_w.ticket = m->snap.ticket;
		m->snap_w.done = on_snap_synced;
		sy->wait(sy->ud, &m->snap_w);
	}
	l->dirty = true;
}

static void act_stop_replication(keel_replman *m, const keel_ha_action *a)
{
	keel_journal *j = journal_of(m);
	if (j && m->tapped == j)
		keel_journal_set_tap(j, NULL, NULL);
	m->tapped = NULL;
	snapshot_stop(m);
	q_free(&m->held_head, &m->held_tail);
	m->holding = false;
	m->repl_link = 0;
	m->queued_bytes = 0;
	gate_stop(m, a->release);
}

static void act_prepare_replica(keel_replman *m, uint32_t link)
{
	replica_close_files(m);
	m->ndeletes = 0;
	m->ack_pending = 0;
	m->replica_failed = false;
	int rc = empty_dir(m->journal_dir);
	if (rc == 0)
		rc = empty_dir(m->large_dir);
	m->dir_dirty = true;
	m->replica_link = link;
	if (rc) {
		keel_log_error("replica: cannot prepare %s: %s", m->data_dir, strerror(-rc));
		m->replica_failed = true;
		feed_simple(m, KEEL_HA_IN_REPLICA_FAILED, link);
	}
}

static void on_deactivated(void *arg)
{
	keel_replman *m = arg;
	m->paused = false;
	drive(m);
}

static void act_emit(keel_replman *m, const keel_ha_action *a)
{
	const char *type = keel_ha_event_name(a->event);
	const char *text = a->text ? a->text : "";
	switch (a->event) {
	case KEEL_HA_EV_STATE:
		keel_log_info("ha state %s", keel_ha_state_name(a->state));
		m->host.state(m->host.ud, a->state);
		return;
	case KEEL_HA_EV_REPL_CONNECTED:
		keel_events_emit(m->events, type, "{s:s, s:I, s:s}", "role",
				 a->role == KEEL_HA_ROLE_PRIMARY ? "primary" : "backup", "activation-seq",
				 (json_int_t)a->seq, "text", text);
		break;
	case KEEL_HA_EV_SYNC_STARTED:
		keel_events_emit(m->events, type, "{s:I, s:I, s:I}", "files", (json_int_t)a->files,
				 "bytes", (json_int_t)a->bytes, "activation-seq", (json_int_t)a->seq);
		break;
	case KEEL_HA_EV_SYNC_TIMEOUT:
		keel_events_emit(m->events, type, "{s:I, s:s}", "ms", (json_int_t)a->files, "text",
				 text);
		break;
	case KEEL_HA_EV_REGISTER_REFUSED:
		keel_events_emit(m->events, type, "{s:s, s:I}", "reason",
				 keel_ha_reason_name(a->reason), "activation-seq", (json_int_t)a->seq);
		break;
	case KEEL_HA_EV_ERROR:
		keel_events_emit(m->events, "error", "{s:s}", "message", text);
		break;
	default:
		keel_events_emit(m->events, type, "{s:I, s:s}", "activation-seq", (json_int_t)a->seq,
				 "text", text);
		break;
	}
	keel_log_info("%s%s%s", type, a->text ? ": " : "", text);
}

static void act_timer(keel_replman *m, const keel_ha_action *a, bool start)
{
	uv_timer_t *t = &m->timers[a->timer];
	if (start)
		uv_timer_start(t, on_timer, a->ms, 0);
	else
		uv_timer_stop(t);
}

static void run_action(keel_replman *m, const keel_ha_action *a)
{
	char err[256] = "";
	int rc;
	keel_log_debug("ha action %s", keel_ha_action_name(a->type));
	switch (a->type) {
	case KEEL_HA_ACT_CONNECT_TO_PEER:
		rc = connect_peer(m);
		if (rc < 0) {
			keel_log_warn("replication: cannot connect to %s: %s", m->cfg->peer,
				      strerror(-rc));
			feed_simple(m, KEEL_HA_IN_CONNECT_FAILED, 0);
		}
		break;
	case KEEL_HA_ACT_CLOSE_LINK: {
		rlink *l = link_find(m, a->link);
		if (l) {
			l->forgotten = true;
			l->closing = true;
			l->dirty = true;
			if (m->connect_link == l->id)
				m->connect_link = 0;
			if (!l->connected)
				link_close_now(l);
		}
		break;
	}
	case KEEL_HA_ACT_SEND: act_send(m, a); break;
	case KEEL_HA_ACT_START_SYNC_SEND: act_start_sync(m, a->link); break;
	case KEEL_HA_ACT_HOLD_JOURNAL_OPS: {
		/* Every record appended so far goes out before SYNC_DONE: a
		 * receipt already waiting on the local sync alone may be for a
		 * record still in the journal's open batch, which would
		 * otherwise be tapped (and held) after SYNC_DONE, and a backup
		 * synced without it could fail over without a receipted
		 * message.  One blocking flush per sync. */
		keel_journal *j = journal_of(m);
		if (j)
			(void)keel_journal_flush(j);
		if (fiu_fail(KEEL_FIU_REPL_DIE_WAITING_ACK))
			die_now(m, KEEL_FIU_REPL_DIE_WAITING_ACK);
		m->holding = true;
		/* from SYNC_DONE on, receipts wait for the backup too */
		m->need_acks = true;
		break;
	}
	case KEEL_HA_ACT_RELEASE_JOURNAL_OPS: {
		m->holding = false;
		rlink *l = link_find(m, m->repl_link);
		if (l) {
			while (m->held_head) {
				sitem *it = m->held_head;
				m->held_head = it->next;
				q_push(&l->q_head, &l->q_tail, it);
			}
			m->held_tail = NULL;
			l->dirty = true;
		} else {
			q_free(&m->held_head, &m->held_tail);
		}
		break;
	}
	case KEEL_HA_ACT_STOP_REPLICATION: act_stop_replication(m, a); break;
	case KEEL_HA_ACT_PREPARE_REPLICA: act_prepare_replica(m, a->link); break;
	case KEEL_HA_ACT_FLUSH_REPLICA:
		rc = m->replica_failed ? -EIO : replica_flush(m);
		if (rc == 0) {
			replica_close_files(m);
			feed_simple(m, KEEL_HA_IN_REPLICA_FLUSHED, 0);
		} else {
			feed_simple(m, KEEL_HA_IN_REPLICA_FAILED, 0);
		}
		break;
	case KEEL_HA_ACT_LOAD_JOURNAL:
		m->replica_link = 0;
		replica_close_files(m);
		rc = m->host.load_journal(m->host.ud, err, sizeof(err));
		if (rc < 0) {
			keel_log_error("cannot activate: %s", err);
			keel_events_emit(m->events, "error", "{s:s}", "message", err);
			feed_simple(m, KEEL_HA_IN_ACTIVATION_FAILED, 0);
		} else {
			feed_simple(m, KEEL_HA_IN_JOURNAL_LOADED, 0);
		}
		break;
	case KEEL_HA_ACT_OPEN_CLIENT_ACCEPTOR:
		if (fiu_fail(KEEL_FIU_REPL_DIE_ACTIVATING))
			die_now(m, KEEL_FIU_REPL_DIE_ACTIVATING);
		rc = m->host.open_acceptor(m->host.ud, err, sizeof(err));
		if (rc < 0) {
			keel_log_error("cannot activate: %s", err);
			keel_events_emit(m->events, "error", "{s:s}", "message", err);
			feed_simple(m, KEEL_HA_IN_ACTIVATION_FAILED, 0);
		} else {
			feed_simple(m, KEEL_HA_IN_ACCEPTOR_LISTENING, 0);
		}
		break;
	case KEEL_HA_ACT_CLOSE_CLIENT_ACCEPTOR: m->host.close_acceptor(m->host.ud); break;
	case KEEL_HA_ACT_PERSIST:
		rc = keel_hastore_save(m->data_dir, &a->self);
		if (rc < 0) {
			/* the machine's rules assume the disk knows: stopping is
			 * the only safe answer */
			keel_log_error("cannot write the identity file in %s: %s; stopping",
				       m->data_dir, strerror(-rc));
			keel_events_emit(m->events, "error", "{s:s, s:s}", "message",
					 "cannot write the identity file; stopping", "cause",
					 strerror(-rc));
			feed_simple(m, KEEL_HA_IN_STOP, 0);
		}
		break;
	case KEEL_HA_ACT_START_TIMER: act_timer(m, a, true); break;
	case KEEL_HA_ACT_CANCEL_TIMER: act_timer(m, a, false); break;
	case KEEL_HA_ACT_RESTART_AS_BACKUP: {
		keel_journal *j = journal_of(m);
		if (j && m->tapped == j)
			keel_journal_set_tap(j, NULL, NULL);
		m->tapped = NULL;
		gate_stop(m, false);
		m->paused = true;
		m->host.deactivate(m->host.ud, on_deactivated, m);
		break;
	}
	case KEEL_HA_ACT_STOP_SERVER: m->host.stop(m->host.ud); break;
	case KEEL_HA_ACT_EMIT: act_emit(m, a); break;
	}
}

/* ---- driving the machine --------------------------------------------------- */

static void feed(keel_replman *m, keel_ha_input *in)
{
	pending_in *p = keel_malloc(sizeof(*p));
	if (p == NULL) {
		keel_log_error("replication: out of memory: input %s lost",
			       keel_ha_input_name(in->type));
		return;
	}
	p->in = *in;
	p->next = NULL;
	if (m->in_tail)
		m->in_tail->next = p;
	else
		m->in_head = p;
	m->in_tail = p;
}

/* Carry out pending actions, then feed queued inputs, until both are
 * empty or an action pauses the manager. */
static void drive(keel_replman *m)
{
	if (m->driving)
		return;
	m->driving = true;
	for (;;) {
		if (m->paused)
			break;
		if (m->pending_next < m->pending_acts.n) {
			keel_ha_action a = m->pending_acts.a[m->pending_next++];
			run_action(m, &a);
			continue;
		}
		if (m->in_head == NULL)
			break;
		pending_in *p = m->in_head;
		m->in_head = p->next;
		if (m->in_head == NULL)
			m->in_tail = NULL;
		keel_ha_input in = p->in;
		keel_free(p);
		in.now_ms = now_ms(m);
		keel_ha_feed(&m->ha, &in, &m->pending_acts);
		keel_ha_check(&m->ha);
		m->pending_next = 0;
	}
	m->driving = false;
}

/* ---- API ------------------------------------------------------------------- */

static char *path_join(const char *a, const char *b)
{
	size_t n = strlen(a) + strlen(b) + 2;
	char *p = keel_malloc(n);
	if (p)
		snprintf(p, n, "%s/%s", a, b);
	return p;
}

int keel_replman_create(keel_replman **out, const keel_replman_options *opt, char *err,
			size_t errlen)
{
	const keel_ha_cfg *c = opt->cfg;
	keel_ha_role role = strcmp(c->role, "primary") == 0 ? KEEL_HA_ROLE_PRIMARY
							    : KEEL_HA_ROLE_BACKUP;
	keel_ha_config hc;
	keel_ha_config_default(&hc, role);
	hc.allow_failback = c->allow_failback;
	hc.check_for_live_server = c->check_for_live_server;
	hc.restart_backup = c->restart_backup;
	hc.initial_sync_timeout_ms = c->initial_replication_sync_timeout;
	hc.failback_wait_ms = c->failback_wait;
	hc.connection_ttl_ms = c->connection_ttl;
	hc.check_period_ms = c->check_period;
	hc.retry_interval_ms = c->retry_interval;

	keel_replman *m = keel_calloc(1, sizeof(*m));
	if (m == NULL) {
		snprintf(err, errlen, "out of memory");
		return -ENOMEM;
	}
	for (int i = 0; i < RFILES; i++)
		m->files[i].fd = -1;
	m->loop = opt->loop;
	m->cfg = c;
	m->events = opt->events;
	m->host = opt->host;
	keel_buf_init(&m->scratch);
	m->data_dir = keel_strdup(opt->data_dir);
	m->journal_dir = path_join(opt->data_dir, "journal");
	m->large_dir = keel_strdup(opt->large_dir);
	int rc = -ENOMEM;
	if (!m->data_dir || !m->journal_dir || !m->large_dir) {
		snprintf(err, errlen, "out of memory");
		goto fail;
	}
	keel_ha_persist p;
	bool fresh = false;
	rc = keel_hastore_load(opt->data_dir, role, &p, &fresh, err, errlen);
	if (rc < 0)
		goto fail;
	/* START bumps the incarnation and persists it before anything else */
	rc = keel_ha_init(&m->ha, &hc, &p);
	if (rc < 0) {
		snprintf(err, errlen, "ha: invalid timing settings");
		goto fail;
	}

	char host[256];
	uint16_t port;
	struct sockaddr_storage sa;
	rc = keel_parse_hostport(c->listen, host, sizeof(host), &port);
	if (rc == 0 && uv_ip4_addr(host, port, (struct sockaddr_in *)&sa) < 0 &&
	    uv_ip6_addr(host, port, (struct sockaddr_in6 *)&sa) < 0)
		rc = -EINVAL;
	if (rc < 0) {
		snprintf(err, errlen, "ha.listen: expected a numeric HOST:PORT, got '%s'", c->listen);
		rc = -EINVAL;
		goto fail;
	}
	uv_tcp_init(m->loop, &m->acceptor);
	m->acceptor.data = m;
	uv_prepare_init(m->loop, &m->prepare);
	m->prepare.data = m;
	for (int i = 0; i < KEEL_HA_TIMER_COUNT; i++) {
		uv_timer_init(m->loop, &m->timers[i]);
		m->timers[i].data = m;
	}
	uv_timer_init(m->loop, &m->ack_delay);
	m->ack_delay.data = m;
	uv_timer_init(m->loop, &m->connect_timer);
	m->connect_timer.data = m;
	m->handles_open = true;
	rc = uv_tcp_bind(&m->acceptor, (struct sockaddr *)&sa, 0);
	if (rc == 0)
		rc = uv_listen((uv_stream_t *)&m->acceptor, 16, on_accept);
	if (rc < 0) {
		snprintf(err, errlen, "ha: cannot listen on %s: %s", c->listen, uv_strerror(rc));
		keel_replman_close(m);
		goto fail_closed;
	}
	struct sockaddr_storage bound;
	int blen = sizeof(bound);
	uv_tcp_getsockname(&m->acceptor, (struct sockaddr *)&bound, &blen);
	m->port = ntohs(bound.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&bound)->sin6_port
						     : ((struct sockaddr_in *)&bound)->sin_port);
	uv_prepare_start(&m->prepare, on_prepare);
	m->gate = (keel_sync){ .ticket = g_ticket, .synced = g_synced, .wait = g_wait,
			       .cancel = g_cancel, .ud = m };
	m->gate_jw.done = on_gate_jw;
	snprintf(m->listen_host, sizeof(m->listen_host), "%s", host);
	*out = m;
	return 0;

fail:
	keel_replman_free(m);
	return rc;
fail_closed:
	/* handles are closing: the caller's loop run frees them; m is
	 * freed by the caller through keel_replman_free after that run */
	*out = m;
	return rc;
}

void keel_replman_start(keel_replman *m)
{
	/* START bumps the incarnation (ha.h): say the one this run has */
	const keel_ha_persist *p = &m->ha.self;
	char idtext[40];
	keel_ha_node_id_format(&p->node_id, idtext);
	keel_events_emit(m->events, "replication.listening", "{s:s, s:i, s:s, s:s, s:I, s:I}",
			 "host", m->listen_host, "port", (int)m->port, "role", m->cfg->role,
			 "node-id", idtext, "activation-seq", (json_int_t)p->activation_seq,
			 "incarnation", (json_int_t)(p->incarnation + 1));
	keel_log_info("replication acceptor on %s:%u (%s, node id %s, activation %" PRIu64 ")",
		      m->listen_host, (unsigned)m->port, m->cfg->role, idtext, p->activation_seq);
	feed_simple(m, KEEL_HA_IN_START, 0);
	drive(m);
}

void keel_replman_stop(keel_replman *m)
{
	feed_simple(m, KEEL_HA_IN_STOP, 0);
	drive(m);
}

void keel_replman_close(keel_replman *m)
{
	if (m == NULL || !m->handles_open)
		return;
	m->handles_open = false;
	keel_journal *j = journal_of(m);
	if (j && m->tapped == j)
		keel_journal_set_tap(j, NULL, NULL);
	m->tapped = NULL;
	snapshot_stop(m);
	gate_stop(m, true);
	replica_close_files(m);
	uv_close((uv_handle_t *)&m->acceptor, NULL);
	uv_close((uv_handle_t *)&m->prepare, NULL);
	for (int i = 0; i < KEEL_HA_TIMER_COUNT; i++)
		uv_close((uv_handle_t *)&m->timers[i], NULL);
	uv_close((uv_handle_t *)&m->ack_delay, NULL);
	uv_close((uv_handle_t *)&m->connect_timer, NULL);
	for (rlink *l = m->links; l; l = l->next) {
		l->forgotten = true;
		link_close_now(l);
	}
}

void keel_replman_free(keel_replman *m)
{
	if (m == NULL)
		return;
	assert(!m->handles_open);
	assert(m->links == NULL);
	while (m->in_head) {
		pending_in *p = m->in_head;
		m->in_head = p->next;
		keel_free(p);
	}
	q_free(&m->held_head, &m->held_tail);
	replica_close_files(m);
	keel_free(m->deletes);
	keel_buf_free(&m->scratch);
	keel_free(m->data_dir);
	keel_free(m->journal_dir);
	keel_free(m->large_dir);
	keel_free(m);
}

const keel_sync *keel_replman_sync(keel_replman *m)
{
	return &m->gate;
}

const keel_ha *keel_replman_ha(const keel_replman *m)
{
	return &m->ha;
}

uint16_t keel_replman_port(const keel_replman *m)
{
	return m->port;
}
