/*
 * session_large.c - large messages of a session (see session_int.h): SEND
 * bodies streamed to files (`lin`) and the pipeline of their commits
 * (`lp_head`), MESSAGE bodies streamed from files (`lout`).
 *
 * Owns the large_pending entries, the message being received and the one
 * being sent.  Invariants: one body streams in and one out at a time; the
 * pipeline is routed in order, never more than
 * KEEL_SESSION_MAX_LARGE_COMMITS long.  Loop thread only (the file writes
 * and commits run on the loop's threadpool and report back to it); a
 * commit that ended tells session.c through keel_session.pipeline_moved.
 */
#include <assert.h>
#include <errno.h>
#include <string.h>
#include <unistd.h>

#include "dupcache.h"
#include "largemsg.h"
#include "limits.h"
#include "log.h"
#include "session_int.h"

/* ---- large messages in: SEND bodies streamed to a file --------------------
 *
 * EV_HEAD checks the SEND as session__on_send does and creates the
 * message with a file body; EV_BODY chunks go to the file as they
 * arrive; EV_END commits the file and routes the message.  A refused
 * (FAIL) or dropped (DROP) SEND reads its body and throws it away.  With
 * the edge's loop, the file is written and committed on its threadpool
 * (largemsg.h) and finished SENDs wait in a pipeline (lp_head) for their
 * commits, routed in order; frames behind them wait too (see struct
 * keel_session).
 */

static void lin_reset(keel_session *s)
{
	keel_msg_unref(s->lin.msg); /* the last reference removes the file */
	keel_free(s->lin.receipt);
	keel_free(s->lin.tx);
	keel_free(s->lin.address);
	memset(&s->lin, 0, sizeof(s->lin));
}

static char *dup_or_null(const char *v, bool *fail)
{
	if (v == NULL)
		return NULL;
	char *d = keel_strdup(v);
	if (d == NULL)
		*fail = true;
	return d;
}

int session__large_head(keel_session *s, const keel_stomp_frame *f)
{
	/* input is handled only while open, and in order (after the last
	 * head's EV_END) */
	assert(s->state != S_CLOSING && !s->disconnect_held);
	assert(!s->lin.active);
	if (s->env.large_message_dir == NULL || f->cmd != KEEL_STOMP_SEND ||
	    s->state != S_CONNECTED)
		return session__send_error(s, f, "Frame body too large");
	if (f->has_content_length && f->content_length > KEEL_MAX_LARGE_MESSAGE_SIZE)
		return session__send_error(s, f,
					   "Message body of %llu bytes exceeds the limit of %llu",
					   (unsigned long long)f->content_length,
					   (unsigned long long)KEEL_MAX_LARGE_MESSAGE_SIZE);
	const char *address;
	keel_routing rt;
	transaction *t;
	int rc = session__send_check(s, f, &address, &rt, &t);
	if (rc == SEND_CHECK_MANAGEMENT)
		return session__send_error(s, f, "Management request body too large");
	if (rc)
		return rc;

	bool fail = false;
	s->lin.active = true;
	s->lin.rt = rt;
	s->lin.receipt = dup_or_null(hdr(f, "receipt"), &fail);
	s->lin.tx = dup_or_null(hdr(f, "transaction"), &fail);
	s->lin.address = dup_or_null(address, &fail);
	if (fail)
		return session__send_error(s, f, "Out of memory");
	if (session__is_duplicate(s, address, hdr(f, KEEL_DUP_HEADER))) {
		s->lin.discard = true; /* read and thrown away; receipt at the end */
		s->lin.dropped = true;
		return 0;
	}
	rc = session__flow_before_send(s, address, s->lin.receipt);
	if (rc == FLOW_GO)
		rc = session__storage_before_send(s, f, s->lin.receipt);
	if (rc != FLOW_GO) {
		s->lin.discard = true;
		s->lin.dropped = rc == FLOW_DROPPED;
		return 0;
	}

	keel_msg_init init;
	keel_kv user[KEEL_MAX_HEADERS];
	if ((rc = session__send_init(s, f, address, &init, user)))
		return rc;
	keel_large_body *lb;
	rc = keel_large_create(&lb, s->env.large_message_dir);
	if (rc)
		return session__send_error(s, f, "Out of memory");
	init.large = lb;
	keel_large_set_persistent(lb, init.persistent);
	if (s->ops->loop != NULL)
		keel_large_use_loop(lb, s->ops->loop(s->conn));
	s->lin.msg = keel_msg_create(s->env.core, &init);
	keel_large_body_unref(lb); /* the message holds it now */
	if (s->lin.msg == NULL)
		return session__send_error(s, f, "Out of memory");
	rc = keel_large_begin(lb, s->lin.msg->id);
	if (rc) {
		keel_log_error("large message %llu: cannot create its file: %s",
			       (unsigned long long)s->lin.msg->id, strerror(-rc));
		return session__send_error(s, f, "Cannot store the large message: %s",
					   strerror(-rc));
	}
	return 0;
}

int session__large_body(keel_session *s, const keel_stomp_frame *f)
{
	assert(s->state != S_CLOSING);
	if (!s->lin.active || s->lin.discard)
		return 0;
	keel_large_body *lb = s->lin.msg->large;
	if (lb->size + f->body_len > KEEL_MAX_LARGE_MESSAGE_SIZE)
		return session__send_error(s, NULL, "Message body exceeds the limit of %llu bytes",
					   (unsigned long long)KEEL_MAX_LARGE_MESSAGE_SIZE);
	int rc = keel_large_append(lb, f->body, f->body_len);
	if (rc) {
		keel_log_error("large message %llu: write: %s", (unsigned long long)s->lin.msg->id,
			       strerror(-rc));
		return session__send_error(s, NULL, "Cannot store the large message: %s",
					   strerror(-rc));
	}
	return 0;
}

/* A large SEND's receipt: like session__send_receipt, it waits for the
 * journal when the SEND appended records (or an earlier receipt waits). */
static int large_receipt(keel_session *s, const char *receipt)
{
	if (receipt == NULL)
		return 0;
	int now = session__hold_receipt(s, receipt);
	return now <= 0 ? now : session__send_receipt_id(s, receipt);
}

/* The body of `m` is on disk (`rc`: how its commit went): route it,
 * answer its receipt.  Takes nothing. */
static int large_route(keel_session *s, keel_msg *m, keel_routing rt, const char *address,
		       const char *receipt, const char *tx, int rc)
{
	assert(s->state == S_CONNECTED); /* lp_route_ready checks */
	if (rc) {
		keel_log_error("large message %llu: commit: %s", (unsigned long long)m->id,
			       strerror(-rc));
		return session__send_error(s, NULL, "Cannot store the large message: %s",
					   strerror(-rc));
	}
	if (s->env.sync) /* did routing it append journal records? */
		s->frame_ticket = s->env.sync->ticket(s->env.sync->ud);
	/* Not yet shared with anyone: its size is known only now. */
	m->body_len = (size_t)m->large->size;
	transaction *t = NULL;
	if (tx) {
		HASH_FIND_STR(s->txs, tx, t);
		if (t == NULL)
			return session__send_error(s, NULL, "Unknown transaction '%s'", tx);
	}
	rc = keel_core_send(s->env.core, m, rt, t ? t->tx : NULL);
	if (rc < 0)
		return session__send_refused(s, NULL, rc, address, rt, tx);
	keel_log_debug("large message %llu: %llu bytes to '%s'", (unsigned long long)m->id,
		       (unsigned long long)m->body_len, address);
	session__remember_id(s, address, keel_kv_get(m->headers, m->header_count, KEEL_DUP_HEADER));
	session__flow_after_send(s, address);
	return large_receipt(s, receipt);
}

/* One large SEND of the pipeline (see keel_session.lp_head). */
typedef struct large_pending {
	struct large_pending *next;
	keel_session *s;
	keel_msg *msg;                 /* NULL: a dropped SEND (receipt only) */
	keel_routing rt;
	char *address, *receipt, *tx;
	keel_large_commit_req *commit; /* in flight; NULL once done */
	bool done;
	int status;
} large_pending;

static void lp_free(large_pending *p)
{
	if (p->commit != NULL)
		keel_large_commit_detach(p->commit); /* it finishes alone */
	keel_msg_unref(p->msg); /* the last reference removes the file */
	keel_free(p->address);
	keel_free(p->receipt);
	keel_free(p->tx);
	keel_free(p);
}

/* Route the committed SENDs at the head, in order (dropped once the
 * session is closing: no receipt can go out). */
static void lp_route_ready(keel_session *s)
{
	large_pending *p;
	while ((p = s->lp_head) != NULL && p->done) {
		s->lp_head = p->next;
		if (s->lp_head == NULL)
			s->lp_tail = NULL;
		s->lp_count--;
		if (s->state != S_CLOSING) {
			if (p->msg != NULL) {
				(void)large_route(s, p->msg, p->rt, p->address, p->receipt, p->tx,
						  p->status); /* a failure is an ERROR: closing */
			} else {
				if (s->env.sync)
					s->frame_ticket = s->env.sync->ticket(s->env.sync->ud);
				(void)large_receipt(s, p->receipt);
			}
		}
		lp_free(p);
	}
}

static void large_committed(keel_large_body *lb, int status, void *ud);

/* Move the finished SEND in `lin` to the pipeline; its commit starts. */
static void lp_push(keel_session *s, large_pending *p)
{
	/* input stalls once the pipeline is full: an EV_END never finds it so */
	assert(s->lin.active && s->lp_count < KEEL_SESSION_MAX_LARGE_COMMITS);
	p->s = s;
	p->msg = s->lin.msg;
	p->rt = s->lin.rt;
	p->address = s->lin.address;
	p->receipt = s->lin.receipt;
	p->tx = s->lin.tx;
	memset(&s->lin, 0, sizeof(s->lin));
	if (p->msg != NULL) {
		int rc = keel_large_commit_async(p->msg->large, p->msg->persistent, large_committed,
						 p, &p->commit);
		if (rc) {
			p->commit = NULL;
			p->done = true;
			p->status = rc;
		}
	} else {
		p->done = true;
	}
	if (s->lp_tail)
		s->lp_tail->next = p;
	else
		s->lp_head = p;
	s->lp_tail = p;
	s->lp_count++;
	lp_route_ready(s);
}

/* Must this large SEND's head wait until the pipeline is empty?  When its
 * address is full: FAIL, DROP and BLOCK must see the earlier SENDs routed,
 * and a refusal must not overtake their receipts. */
bool session__large_head_must_wait(keel_session *s, const keel_stomp_frame *f)
{
	const char *dest = hdr(f, "destination");
	if (s->lp_head == NULL || dest == NULL)
		return false;
	if (strncmp(dest, "/queue/", 7) == 0 || strncmp(dest, "/topic/", 7) == 0)
		dest += 7;
	return keel_core_address_full(s->env.core, dest);
}

/* A body's commit ended (threadpool; loop thread now). */
static void large_committed(keel_large_body *lb, int status, void *ud)
{
	large_pending *p = ud;
	keel_session *s = p->s;
	(void)lb;
	assert(!p->done); /* a commit ends once */
	p->commit = NULL;
	p->done = true;
	p->status = status;
	lp_route_ready(s);
	s->pipeline_moved(s); /* session.c: the deferred frame, input, reading */
	/* the edge re-checks a close waiting for us (keel_session_busy) */
	(void)s->ops->outbuf(s->conn);
}

/*
 * The body is complete.  A persistent one is fsynced (file, then its
 * directory after the rename) before it is routed.  With a loop the
 * commit runs on its threadpool (keel_large_commit_async) while the loop
 * goes on: the SEND joins the pipeline (lp_head) and is routed in order.
 */
int session__large_end(keel_session *s)
{
	assert(s->state != S_CLOSING);
	int rc = 0;
	if (!s->lin.active)
		return 0;
	if (s->ops->loop != NULL && (!s->lin.discard || s->lp_head != NULL)) {
		/* (a dropped SEND's receipt keeps its place behind the others) */
		large_pending *p = keel_calloc(1, sizeof(*p));
		if (p == NULL)
			return session__send_error(s, NULL, "Out of memory");
		if (s->lin.discard) {
			keel_msg_unref(s->lin.msg);
			s->lin.msg = NULL;
			if (!s->lin.dropped) {
				keel_free(s->lin.receipt);
				s->lin.receipt = NULL;
			}
		}
		lp_push(s, p);
		return s->state == S_CLOSING ? -ECONNRESET : 0;
	}
	if (s->env.sync)
		s->frame_ticket = s->env.sync->ticket(s->env.sync->ud);
	if (s->lin.discard) {
		if (s->lin.dropped)
			rc = large_receipt(s, s->lin.receipt);
		lin_reset(s);
		return rc;
	}
	keel_msg *m = s->lin.msg;
	rc = large_route(s, m, s->lin.rt, s->lin.address, s->lin.receipt, s->lin.tx,
			 keel_large_commit(m->large, m->persistent));
	lin_reset(s);
	return rc;
}

/* The session is being freed: the pipeline, the SEND streaming in. */
static void large_in_free(keel_session *s)
{
	while (s->lp_head != NULL) {
		large_pending *p = s->lp_head;
		s->lp_head = p->next;
		lp_free(p); /* not routed: no receipt said it was taken */
	}
	s->lp_tail = NULL;
	s->lp_count = 0;
	lin_reset(s);
}

/* ---- large messages out: a MESSAGE body streamed from its file ------------
 *
 * One at a time per connection: while a body streams, every consumer of
 * the session is held (so nothing interleaves with the frame), and a chunk
 * (KEEL_STOMP_MAX_CHUNK) is read and appended only while the connection
 * is writable; the edge's drain notice (keel_session_on_writable) resumes
 * it.  Output per connection stays under the high watermark + one chunk.
 * (sendfile(2) straight into the socket was measured slower on loopback:
 * the consumer's copy out of 4 KiB page-cache fragments costs more than
 * the broker's two copies save, and it couples producer and consumer.)
 */

static void lout_reset(keel_session *s)
{
	if (s->lout.fd >= 0)
		close(s->lout.fd);
	s->lout.fd = -1;
	keel_msg_unref(s->lout.msg);
	s->lout.msg = NULL;
	s->lout.off = 0;
}

/* The body cannot be finished: the connection must go. */
static bool lout_fail(keel_session *s, const char *why)
{
	keel_log_error("large message %llu: read: %s", (unsigned long long)s->lout.msg->id, why);
	lout_reset(s);
	session__enter_closing(s);
	return false;
}

/* Append chunks while writable.  true when the body is complete. */
bool session__lout_pump(keel_session *s)
{
	keel_msg *m = s->lout.msg;
	/* a closing session streams nothing more (keel_session_on_writable
	 * and deliver check) */
	assert(s->state != S_CLOSING);
	assert(m != NULL && s->lout.fd >= 0);
	while (s->lout.off < m->body_len) {
		if (!s->ops->writable(s->conn))
			return false;
		uint64_t left = m->body_len - s->lout.off;
		keel_buf *b = s->ops->outbuf(s->conn);
		size_t want = (size_t)(left < KEEL_STOMP_MAX_CHUNK ? left : KEEL_STOMP_MAX_CHUNK);
		if (keel_buf_reserve(b, want)) {
			session__send_error(s, NULL, "Out of memory delivering a large message");
			return false;
		}
		ssize_t n = pread(s->lout.fd, b->data + b->len, want, (off_t)s->lout.off);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return lout_fail(s, n < 0 ? strerror(errno) : "file shorter than the message");
		b->len += (size_t)n;
		s->lout.off += (uint64_t)n;
	}
	keel_buf *b = s->ops->outbuf(s->conn);
	int rc = keel_stomp_encode_body_end(b);
	lout_reset(s);
	/* what waited behind the body follows it */
	if (rc == 0 && keel_buf_size(&s->held) > 0)
		rc = keel_buf_append(b, keel_buf_head(&s->held), keel_buf_size(&s->held));
	keel_buf_free(&s->held);
	if (rc)
		session__send_error(s, NULL, "Out of memory delivering a large message");
	if (s->held_paused) {
		s->held_paused = false;
		session__update_reading(s);
	}
	return true;
}

void session__large_free(keel_session *s)
{
	large_in_free(s);
	lout_reset(s);
}
