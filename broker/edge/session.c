/*
 * session.c - the top of a session (see session.h): the session object,
 * CONNECT/DISCONNECT, frame dispatch (frame -> handler in the files
 * below) and input (parsing, the deferred frame, stashed input),
 * lifecycle.
 *
 * Owns: the parser, the session struct (session_int.h), the deferred frame
 * and stashed input.  Borrows the env (core, security, events) and the
 * edge's connection through keel_conn_ops.  Loop thread only.
 * Invariant: a frame is handled in the order it arrived; none overtakes a
 * large SEND still in the pipeline (it waits in `deferred`).
 */
#include <assert.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "auth.h"
#include "limits.h"
#include "log.h"
#include "session_int.h"

static uint64_t session_serial;

/* ---- CONNECT ------------------------------------------------------------ */

/* The login is good: heart-beats, client-id, CONNECTED (and its receipt). */
static int connect_finish(keel_session *s, const keel_stomp_frame *f, keel_stomp_version v,
			  const keel_principal *p)
{
	/* Heart-beats: we send every max(our cx, their cy); we expect every
	 * max(their cx, our cy); 0 on either side = off. */
	uint32_t send_ms = 0, recv_ms = 0;
	uint32_t srv_cx = s->env.heartbeat_send_ms, srv_cy = s->env.heartbeat_recv_ms;
	const char *hb = hdr(f, "heart-beat");
	if (hb && v >= KEEL_STOMP_V11) {
		uint32_t cx, cy;
		if (keel_stomp_parse_heartbeat(hb, &cx, &cy) != 0)
			return session__send_error(s, f, "Invalid heart-beat header '%s'", hb);
		if (cy && srv_cx)
			send_ms = cy > srv_cx ? cy : srv_cx;
		if (cx && srv_cy)
			recv_ms = cx > srv_cy ? cx : srv_cy;
	}

	const char *cid = hdr(f, "client-id");
	if (cid) {
		s->client_id = keel_strdup(cid);
		if (s->client_id == NULL)
			return session__send_error(s, f, "Out of memory");
	}
	s->principal = p;
	s->version = v;
	s->state = S_CONNECTED;
	keel_stomp_parser_set_version(s->parser, v);

	char hbv[32], sess[64];
	snprintf(hbv, sizeof(hbv), "%u,%u", send_ms, recv_ms);
	snprintf(sess, sizeof(sess), "%s-%" PRIu64, s->env.node, s->serial);
	keel_buf *b = session__out(s);
	int rc = keel_stomp_encode_start(b, "CONNECTED");
	if (v >= KEEL_STOMP_V11) {
		rc = rc ? rc : keel_stomp_encode_header_str(b, KEEL_STOMP_V10, "version",
							    v == KEEL_STOMP_V12 ? "1.2" : "1.1");
		rc = rc ? rc : keel_stomp_encode_header_str(b, KEEL_STOMP_V10, "heart-beat", hbv);
	}
	rc = rc ? rc : keel_stomp_encode_header_str(b, KEEL_STOMP_V10, "session", sess);
	rc = rc ? rc : keel_stomp_encode_header_str(b, KEEL_STOMP_V10, "server",
						    s->env.server_header);
	rc = rc ? rc : keel_stomp_encode_body(b, NULL, 0, false);
	if (rc)
		return session__send_error(s, f, "Out of memory");
	s->ops->set_heartbeat(s->conn, send_ms, recv_ms);
	return session__send_receipt(s, f);
}

/* "1.2.3.4" of "1.2.3.4:5678", "::1" of "[::1]:5678": the source address
 * failed logins are counted by. */
static void peer_host(const char *peer, char *out, size_t outlen)
{
	const char *end = strrchr(peer, ':');
	size_t n = end ? (size_t)(end - peer) : strlen(peer);
	if (n >= 2 && peer[0] == '[' && peer[n - 1] == ']') {
		peer++;
		n -= 2;
	}
	if (n >= outlen)
		n = outlen - 1;
	memcpy(out, peer, n);
	out[n] = '\0';
}

static keel_stomp_frame *frame_copy(const keel_stomp_frame *f);
static void resume_input(keel_session *s);

/* The password check of the CONNECT in auth_frame ended (loop thread). */
static void on_auth_answer(int status, const keel_principal *p, void *ud)
{
	keel_session *s = ud;
	keel_stomp_frame *f = s->auth_frame;
	session__check(s);
	assert(s->auth_req != NULL && f != NULL);
	s->auth_req = NULL;
	s->auth_frame = NULL;
	if (s->state == S_CLOSING) { /* shut down meanwhile: nothing more to say */
		keel_free(f);
		return;
	}
	if (s->env.sync)
		s->frame_ticket = s->env.sync->ticket(s->env.sync->ud);
	const char *login = hdr(f, "login");
	if (status == 0)
		(void)connect_finish(s, f, s->auth_version, p);
	else if (status == -EACCES)
		(void)session__send_error(s, f, "Authentication failed for user '%s'",
					  login ? login : "");
	else if (status == -ECANCELED)
		(void)session__send_error(s, f, "Server shutting down");
	else
		(void)session__send_error(s, f, "Authentication could not be checked: %s",
					  strerror(-status));
	keel_free(f);
	resume_input(s); /* what came behind the CONNECT, then reading */
	(void)s->ops->outbuf(s->conn); /* the edge flushes the answer */
}

/* With users and a keel_auth: the password is checked on the threadpool;
 * the CONNECT waits in auth_frame, the input behind it in `stash`. */
static int connect_check_async(keel_session *s, const keel_stomp_frame *f, keel_stomp_version v,
			       const char *login, const char *passcode)
{
	char addr[64];
	peer_host(s->ops->peer(s->conn), addr, sizeof(addr));
	s->auth_frame = frame_copy(f);
	if (s->auth_frame == NULL)
		return session__send_error(s, f, "Out of memory");
	s->auth_version = v;
	int rc = keel_auth_check(s->env.auth, KEEL_AUTH_CLIENT, addr, login, passcode,
				 on_auth_answer, s, &s->auth_req);
	if (rc == 0)
		return 0;
	keel_free(s->auth_frame);
	s->auth_frame = NULL;
	if (rc == -EBUSY) {
		keel_log_warn("%s: too many logins waiting for their password check; refused",
			      s->ops->peer(s->conn));
		return session__send_error(s, f, "Server busy: too many logins waiting for "
					   "their password check; try again later");
	}
	return session__send_error(s, f, "Authentication could not be checked: %s",
				   strerror(-rc));
}

static int on_connect(keel_session *s, const keel_stomp_frame *f)
{
	if (s->state == S_CONNECTED)
		return session__send_error(s, f, "Already connected");
	assert(s->state == S_AWAIT_CONNECT);

	/* Version: the highest one both sides speak; none offered = 1.0. */
	const char *accept = hdr(f, "accept-version");
	keel_stomp_version v = KEEL_STOMP_V10;
	if (accept) {
		bool ok = false;
		char tmp[128];
		snprintf(tmp, sizeof(tmp), "%s", accept);
		char *save = NULL;
		for (char *tok = strtok_r(tmp, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
			while (*tok == ' ')
				tok++;
			keel_stomp_version cand = 0;
			if (strcmp(tok, "1.0") == 0)
				cand = KEEL_STOMP_V10;
			else if (strcmp(tok, "1.1") == 0)
				cand = KEEL_STOMP_V11;
			else if (strcmp(tok, "1.2") == 0)
				cand = KEEL_STOMP_V12;
			if (cand && (!ok || cand > v)) {
				v = cand;
				ok = true;
			}
		}
		if (!ok) {
			keel_buf *b = session__out(s);
			int rc = keel_stomp_encode_start(b, "ERROR");
			rc = rc ? rc : keel_stomp_encode_header_str(b, KEEL_STOMP_V10, "version",
								    "1.0,1.1,1.2");
			(void)rc;
			/* finish through session__send_error for message + close */
			const char *m = "Supported protocol versions are 1.0,1.1,1.2";
			rc = keel_stomp_encode_header_str(b, KEEL_STOMP_V10, "message", m);
			rc = rc ? rc : keel_stomp_encode_body(b, m, strlen(m), true);
			session__enter_closing(s);
			return -EPROTO;
		}
	}

	const char *login = hdr(f, "login");
	const char *passcode = hdr(f, "passcode");
	if (s->env.auth != NULL && keel_security_enabled(s->env.security))
		return connect_check_async(s, f, v, login, passcode);
	const keel_principal *p = NULL;
	if (keel_security_authenticate(s->env.security, login, passcode, &p) != 0) {
		keel_log_info("%s: authentication failed for user '%s'", s->ops->peer(s->conn),
			      login ? login : "");
		return session__send_error(s, f, "Authentication failed for user '%s'",
					   login ? login : "");
	}
	return connect_finish(s, f, v, p);
}

/* ---- dispatch ----------------------------------------------------------- */

static int on_frame(keel_session *s, const keel_stomp_frame *f)
{
	/* Nothing is handled once closing or after DISCONNECT, and a frame
	 * never overtakes a large SEND before it (those wait in `deferred`). */
	assert(s->state != S_CLOSING && !s->disconnect_held);
	assert(s->lp_head == NULL && s->deferred == NULL);
	if (s->env.sync) /* did this frame append journal records? */
		s->frame_ticket = s->env.sync->ticket(s->env.sync->ud);
	if (s->state == S_AWAIT_CONNECT && f->cmd != KEEL_STOMP_CONNECT &&
	    f->cmd != KEEL_STOMP_STOMP)
		return session__send_error(s, f, "Frame %s received before CONNECT", f->command);
	switch (f->cmd) {
	case KEEL_STOMP_CONNECT:
	case KEEL_STOMP_STOMP:
		return on_connect(s, f);
	case KEEL_STOMP_SEND:
		return session__on_send(s, f);
	case KEEL_STOMP_SUBSCRIBE:
		return session__on_subscribe(s, f);
	case KEEL_STOMP_UNSUBSCRIBE:
		return session__on_unsubscribe(s, f);
	case KEEL_STOMP_ACK:
		return session__on_ack(s, f, true);
	case KEEL_STOMP_NACK:
		if (s->version == KEEL_STOMP_V10)
			return session__send_error(s, f, "NACK is not part of STOMP 1.0");
		return session__on_ack(s, f, false);
	case KEEL_STOMP_BEGIN:
		return session__on_begin(s, f);
	case KEEL_STOMP_COMMIT:
		return session__on_commit_abort(s, f, true);
	case KEEL_STOMP_ABORT:
		return session__on_commit_abort(s, f, false);
	case KEEL_STOMP_DISCONNECT: {
		int rc = session__send_receipt(s, f);
		if (s->held_head) {
			/* receipts wait for the journal: close after them */
			s->disconnect_held = true;
			session__pause_consumers(s, true);
			return rc;
		}
		session__enter_closing(s);
		return rc ? rc : -ECONNRESET;
	}
	case KEEL_STOMP_CONNECTED:
	case KEEL_STOMP_MESSAGE:
	case KEEL_STOMP_RECEIPT:
	case KEEL_STOMP_ERROR:
		return session__send_error(s, f, "Frame %s is sent by servers, not clients",
					   f->command);
	case KEEL_STOMP_UNKNOWN:
	default:
		return session__send_error(s, f, "Unknown command '%s'", f->command);
	}
}

/* A copy of `f` in one allocation (keel_free), or NULL. */
static keel_stomp_frame *frame_copy(const keel_stomp_frame *f)
{
	size_t n = sizeof(*f) + f->header_count * sizeof(keel_kv) + strlen(f->command) + 1 +
		   f->body_len + 1;
	for (size_t i = 0; i < f->header_count; i++)
		n += f->headers[i].name_len + 1 + f->headers[i].value_len + 1;
	keel_stomp_frame *c = keel_malloc(n);
	if (c == NULL)
		return NULL;
	*c = *f;
	c->headers = (keel_kv *)(c + 1);
	char *p = (char *)(c->headers + f->header_count);
	size_t k = strlen(f->command) + 1;
	memcpy(p, f->command, k);
	c->command = p;
	p += k;
	for (size_t i = 0; i < f->header_count; i++) {
		keel_kv *h = &c->headers[i];
		*h = f->headers[i];
		memcpy(p, f->headers[i].name, h->name_len);
		p[h->name_len] = '\0';
		h->name = p;
		p += h->name_len + 1;
		memcpy(p, f->headers[i].value, h->value_len);
		p[h->value_len] = '\0';
		h->value = p;
		p += h->value_len + 1;
	}
	if (f->body_len > 0)
		memcpy(p, f->body, f->body_len);
	p[f->body_len] = '\0';
	c->body = (const uint8_t *)p;
	return c;
}

static int parse_input(keel_session *s, const uint8_t *data, size_t len)
{
	assert(!session__input_stalled(s)); /* stalled input goes to `stash` */
	size_t off = 0;
	while (s->state != S_CLOSING && !s->disconnect_held && !session__input_stalled(s) &&
	       off < len) {
		keel_stomp_event_type ev = KEEL_STOMP_EV_NONE;
		keel_stomp_frame f;
		ssize_t n = keel_stomp_parse(s->parser, data + off, len - off, &ev, &f);
		if (n < 0)
			return session__send_error(s, NULL, "Malformed frame: %s",
						   keel_stomp_parser_error(s->parser));
		off += (size_t)n;
		if (ev == KEEL_STOMP_EV_FRAME || ev == KEEL_STOMP_EV_END ||
		    ev == KEEL_STOMP_EV_HEARTBEAT)
			s->frames_in++;
		if (ev == KEEL_STOMP_EV_FRAME && s->lp_head != NULL) {
			/* behind large SENDs not yet routed: it waits for them */
			s->deferred = frame_copy(&f);
			s->deferred_head = false;
			if (s->deferred == NULL)
				return session__send_error(s, NULL, "Out of memory");
		} else if (ev == KEEL_STOMP_EV_FRAME) {
			int rc = on_frame(s, &f);
			if (rc < 0 && s->state == S_CLOSING)
				return rc;
			if (s->lout.msg && !s->held_paused &&
			    keel_buf_size(&s->held) >= KEEL_SESSION_HELD_OUTPUT_MAX) {
				s->held_paused = true;
				session__update_reading(s);
			}
		} else if (ev == KEEL_STOMP_EV_HEAD && session__large_head_must_wait(s, &f)) {
			s->deferred = frame_copy(&f);
			s->deferred_head = true;
			if (s->deferred == NULL)
				return session__send_error(s, NULL, "Out of memory");
		} else if (ev == KEEL_STOMP_EV_HEAD) {
			/* Streaming is only enabled with large messages. */
			int rc = session__large_head(s, &f);
			if (rc < 0 && s->state == S_CLOSING)
				return rc;
		} else if (ev == KEEL_STOMP_EV_BODY) {
			int rc = session__large_body(s, &f);
			if (rc < 0 && s->state == S_CLOSING)
				return rc;
		} else if (ev == KEEL_STOMP_EV_END) {
			int rc = session__large_end(s);
			if (rc < 0 && s->state == S_CLOSING)
				return rc;
		} else if (ev == KEEL_STOMP_EV_NONE && n == 0) {
			break;
		}
	}
	if (session__input_stalled(s) && s->state != S_CLOSING) {
		if (off < len && keel_buf_append(&s->stash, data + off, len - off))
			return session__send_error(s, NULL, "Out of memory");
		session__update_reading(s);
	}
	return s->state == S_CLOSING ? -ECONNRESET : 0;
}

int keel_session_on_data(keel_session *s, const uint8_t *data, size_t len)
{
	session__check(s);
	if (session__input_stalled(s)) {
		/* read before the pause took effect: after what waits already */
		if (s->state != S_CLOSING && keel_buf_append(&s->stash, data, len))
			return session__send_error(s, NULL, "Out of memory");
		return s->state == S_CLOSING ? -ECONNRESET : 0;
	}
	return parse_input(s, data, len);
}

/* The pipeline moved (keel_session.pipeline_moved, called by
 * session_large.c when a commit ends): a deferred frame goes once it is
 * empty, then the stashed input, then reading resumes. */
static void resume_input(keel_session *s)
{
	if (s->state == S_CLOSING)
		return;
	if (s->lp_head == NULL && s->deferred != NULL) {
		keel_stomp_frame *f = s->deferred;
		s->deferred = NULL;
		if (s->deferred_head)
			(void)session__large_head(s, f);
		else
			(void)on_frame(s, f);
		keel_free(f);
	}
	if (!session__input_stalled(s) && keel_buf_size(&s->stash) > 0 && s->state != S_CLOSING) {
		keel_buf in = s->stash;
		keel_buf_init(&s->stash);
		(void)parse_input(s, keel_buf_head(&in), keel_buf_size(&in));
		keel_buf_free(&in);
	}
	session__update_reading(s);
}

/* ---- lifecycle ---------------------------------------------------------- */

/* The invariants of session_int.h that cost O(1), asserted at each entry
 * from the edge (between two of them the session is at rest: no frame
 * half handled, no callback running). */
void session__check(const keel_session *s)
{
	assert(s->state == S_AWAIT_CONNECT || s->state == S_CONNECTED ||
	       s->state == S_CLOSING);
	/* subscriptions and transactions only once connected, counted */
	assert(s->state != S_AWAIT_CONNECT || (s->subs == NULL && s->txs == NULL));
	assert(s->sub_count == HASH_COUNT(s->subs) && s->sub_count <= KEEL_MAX_SUBSCRIPTIONS);
	assert(s->tx_count == HASH_COUNT(s->txs) && s->tx_count <= KEEL_MAX_TRANSACTIONS);
	/* receipts held for the journal: a list; the waiter is linked only
	 * while it holds some; DISCONNECT waits only for them */
	assert((s->held_head == NULL) == (s->held_tail == NULL));
	assert(s->held_head == NULL || s->env.sync != NULL);
	assert(!s->sync_w.linked || s->held_head != NULL);
	assert(!s->disconnect_held || s->held_head != NULL || s->state == S_CLOSING);
	/* BLOCK pauses reading only through an edge that can */
	assert(!s->blocked.linked || s->ops->set_reading != NULL);
	/* the pipeline of large SENDs, never longer than its limit; input
	 * waits in `stash` only while stalled */
	assert((s->lp_head == NULL) == (s->lp_tail == NULL));
	assert((s->lp_head == NULL) == (s->lp_count == 0));
	assert(s->lp_count <= KEEL_SESSION_MAX_LARGE_COMMITS);
	assert(keel_buf_size(&s->stash) == 0 || session__input_stalled(s) ||
	       s->state == S_CLOSING);
	/* a CONNECT waiting for its password check, before CONNECTED */
	assert((s->auth_req == NULL) == (s->auth_frame == NULL));
	assert(s->auth_req == NULL || s->state != S_CONNECTED);
	/* a large MESSAGE streaming out: its file is open, the consumers are
	 * held, and output waits in `held` only meanwhile */
	assert((s->lout.msg == NULL) == (s->lout.fd < 0));
	assert(s->lout.msg == NULL || s->lout.off <= s->lout.msg->body_len);
	assert(s->lout.msg == NULL || s->paused || s->state == S_CLOSING);
	assert(s->lout.msg != NULL || s->state == S_CLOSING ||
	       (keel_buf_size(&s->held) == 0 && !s->held_paused));
}

int keel_session_create(keel_session **out_s, const keel_session_env *env,
			const keel_conn_ops *ops, void *conn)
{
	keel_session *s = keel_calloc(1, sizeof(*s));
	if (s == NULL)
		return -ENOMEM;
	keel_stomp_limits lim;
	keel_stomp_limits_default(&lim);
	if (env->large_message_dir)
		lim.stream_threshold = env->min_large_message_size
					       ? (size_t)env->min_large_message_size
					       : KEEL_DEFAULT_MIN_LARGE_MESSAGE_SIZE;
	int rc = keel_stomp_parser_create(&s->parser, &lim);
	if (rc) {
		keel_free(s);
		return rc;
	}
	s->env = *env;
	if (s->env.server_header == NULL)
		s->env.server_header = "keel/" KEEL_VERSION;
	if (s->env.node == NULL)
		s->env.node = "keel";
	s->ops = ops;
	s->conn = conn;
	s->state = S_AWAIT_CONNECT;
	s->version = KEEL_STOMP_V10;
	s->serial = ++session_serial;
	s->lout.fd = -1;
	s->pipeline_moved = resume_input;
	*out_s = s;
	return 0;
}

void keel_session_free(keel_session *s)
{
	if (s == NULL)
		return;
	session__check(s);
	s->state = S_CLOSING;
	session__held_drop_all(s);
	/* Hold every consumer first, so closing one does not redeliver to a
	 * sibling subscription of this same dying session. */
	subscription *sub, *tmp;
	HASH_ITER(hh, s->subs, sub, tmp)
		keel_consumer_set_ready(sub->consumer, false);
	/* Abort transactions before closing consumers: acked refs come back
	 * to the consumers' queues with their delivery counts. */
	transaction *t, *ttmp;
	HASH_ITER(hh, s->txs, t, ttmp) {
		keel_tx *tx = t->tx;
		session__tx_remove(s, t);
		keel_tx_abort(tx);
	}
	HASH_ITER(hh, s->subs, sub, tmp)
		session__sub_close(s, sub, false);
	keel_core_address_unwait(s->env.core, &s->blocked);
	session__large_free(s);
	keel_free(s->deferred);
	s->deferred = NULL;
	if (s->auth_req != NULL)
		keel_auth_detach(s->auth_req); /* its answer will not come */
	s->auth_req = NULL;
	keel_free(s->auth_frame);
	s->auth_frame = NULL;
	keel_buf_free(&s->held);
	keel_buf_free(&s->stash);
	keel_stomp_parser_free(s->parser);
	keel_free(s->client_id);
	keel_free(s);
}

void keel_session_on_writable(keel_session *s)
{
	session__check(s);
	if (s->state == S_CLOSING)
		return;
	if (s->lout.msg != NULL && !session__lout_pump(s))
		return; /* still streaming a large body */
	if (s->paused && s->state != S_CLOSING)
		session__pause_consumers(s, false);
}

void keel_session_on_timeout(keel_session *s, const char *reason)
{
	session__check(s);
	session__send_error(s, NULL, "%s", reason);
}

void keel_session_shutdown(keel_session *s)
{
	session__check(s);
	session__send_error(s, NULL, "Server shutting down");
}

bool keel_session_busy(const keel_session *s)
{
	session__check(s);
	return s->lp_head != NULL ||
	       (s->state != S_CLOSING && (s->deferred != NULL || keel_buf_size(&s->stash) > 0));
}

bool keel_session_connected(const keel_session *s)
{
	return s->state == S_CONNECTED;
}

bool keel_session_frame_in_progress(const keel_session *s)
{
	return keel_stomp_parser_busy(s->parser);
}

uint64_t keel_session_frames_in(const keel_session *s)
{
	return s->frames_in;
}
