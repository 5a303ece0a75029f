/*
 * replman_peer.c - what comes from the peer: accept and connect the
 * replication links, read and decode the peer's messages into HA inputs
 * (fed and driven as they arrive), OP_ACKs into the receipt gate,
 * FILE_CHUNKs and JOURNAL_OPs into the replica.  A REGISTER, when
 * cluster credentials are configured, is checked off the loop (auth.h:
 * hash on the threadpool, failures limited per address and cluster user);
 * the link reads nothing more until the answer.  Owns nothing of its own:
 * the links are replman_link.c's.  Loop thread only.
 */
#include "replman_int.h"

#include <assert.h>
#include <errno.h>
#include <string.h>

#include <fiu-local.h>

#include "keel/alloc.h"
#include "auth.h"
#include "log.h"

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
	(void)h;
	(void)suggested;
	size_t n = 256 * 1024;
	buf->base = keel_malloc(n);
	buf->len = buf->base ? n : 0;
}

static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf);
static void consume(rlink *l, const uint8_t *p, size_t left);

/* The cluster credentials of l's REGISTER were checked (auth.h): the
 * machine hears the REGISTER now, then what was read behind it. */
static void on_register_checked(int status, const keel_principal *p, void *ud)
{
	rlink *l = ud;
	keel_replman *m = l->m;
	(void)p;
	assert(l->auth != NULL && !l->handle_closed); /* closing detaches */
	l->auth = NULL;
	keel_ha_input in = l->auth_in;
	in.now_ms = replman__now_ms(m);
	in.creds_ok = status == 0;
	if (status != 0 && status != -EACCES)
		keel_log_warn("replication link %u: credentials not checked: %s", l->id,
			      strerror(-status));
	if (!l->forgotten)
		replman__feed(m, &in);
	replman__drive(m);
	keel_buf rest = l->stash;
	keel_buf_init(&l->stash);
	if (!l->handle_closed && keel_buf_size(&rest) > 0)
		consume(l, keel_buf_head(&rest), keel_buf_size(&rest));
	keel_buf_free(&rest);
	if (!l->handle_closed && l->auth == NULL) {
		replman__replica_ack(m, l);
		if (!l->handle_closed &&
		    uv_read_start((uv_stream_t *)&l->tcp, on_alloc, on_read) < 0)
			replman__link_broken(l, "cannot read");
	}
	replman__drive(m);
}

/*
 * A REGISTER's credentials.  Without a cluster user configured, a
 * REGISTER must carry none (checked here).  With one, the check goes to
 * the threadpool (keel_security_cluster_check: the password against its
 * hash, in constant time) and `in` waits in l->auth_in: returns with
 * l->auth set.  Otherwise sets in->creds_ok.
 */
static void register_creds(rlink *l, const keel_repl_msg *msg, keel_ha_input *in)
{
	keel_replman *m = l->m;
	char user[KEEL_REPL_MAX_STR + 1], pass[KEEL_REPL_MAX_STR + 1];
	in->creds_ok = false;
	if (fiu_fail(KEEL_FIU_REPL_REGISTER_REFUSE))
		return;
	if (m->cfg->cluster_user == NULL) {
		in->creds_ok = msg->user.len == 0 && msg->password.len == 0;
		return;
	}
	/* (the codec bounds both by KEEL_REPL_MAX_STR; a NUL inside cannot
	 * be a configured password) */
	if (msg->user.len > KEEL_REPL_MAX_STR || msg->password.len > KEEL_REPL_MAX_STR ||
	    memchr(msg->user.p, '\0', msg->user.len) != NULL ||
	    memchr(msg->password.p, '\0', msg->password.len) != NULL)
		return;
	memcpy(user, msg->user.p, msg->user.len);
	user[msg->user.len] = '\0';
	memcpy(pass, msg->password.p, msg->password.len);
	pass[msg->password.len] = '\0';
	int rc = keel_auth_check(m->auth, KEEL_AUTH_CLUSTER, l->peer, user, pass,
				 on_register_checked, l, &l->auth);
	explicit_bzero(pass, sizeof(pass));
	if (rc < 0) {
		keel_log_warn("replication link %u: credentials not checked: %s%s", l->id,
			      strerror(-rc), rc == -EBUSY ? " (too many checks waiting)" : "");
		return; /* refused: the peer tries again */
	}
	l->auth_in = *in;
}

/* One decoded message from link l. */
static int on_message(rlink *l, const keel_repl_msg *msg)
{
	keel_replman *m = l->m;
	/* after CLOSE_LINK(x) nothing more about x reaches the machine */
	assert(!l->forgotten);
	keel_ha_input in;
	replman__in_init(m, &in, 0, l->id);
	switch (msg->type) {
	case KEEL_REPL_REGISTER:
		in.type = KEEL_HA_IN_REGISTER;
		in.peer = msg->id;
		in.peer_role = msg->role;
		in.failback = msg->failback;
		in.probe = msg->probe;
		if (msg->probe)
			m->peer_alone_msgs = msg->alone_msgs;
		register_creds(l, msg, &in);
		if (l->auth != NULL)
			return 0; /* fed when checked (on_register_checked) */
		break;
	case KEEL_REPL_REGISTER_OK:
		in.type = KEEL_HA_IN_REGISTER_OK;
		in.peer = msg->id;
		break;
	case KEEL_REPL_REGISTER_REFUSED:
		in.type = KEEL_HA_IN_REGISTER_REFUSED;
		in.reason = msg->reason;
		if (msg->reason == KEEL_HA_REASON_LIVE_TOO)
			m->peer_alone_msgs = msg->alone_msgs;
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
		in.type = KEEL_HA_IN_PONG; /* renews a backup's lease */
		break;
	case KEEL_REPL_OP_ACK:
		if (l->id != m->repl_link)
			return 0; /* a late ack of a replication that ended */
		if (msg->seq > m->acked)
			m->acked = msg->seq;
		replman__gate_check(m);
		return 0;
	case KEEL_REPL_FILE_CHUNK:
	case KEEL_REPL_JOURNAL_OP: {
		if (l->id != m->replica_link)
			return -EPROTO;
		if (m->replica_failed)
			return 0;
		int rc = msg->type == KEEL_REPL_FILE_CHUNK ? replman__replica_apply_chunk(m, msg)
							   : replman__replica_apply_op(m, msg);
		if (rc == -EPROTO)
			return rc;
		if (rc) {
			keel_log_error("replica: cannot write: %s", strerror(-rc));
			keel_events_emit(m->events, "error", "{s:s, s:s}", "message",
					 "replica: cannot write", "cause", strerror(-rc));
			m->replica_failed = true;
			replman__feed_simple(m, KEEL_HA_IN_REPLICA_FAILED, l->id);
		}
		return 0;
	}
	default:
		return -EPROTO;
	}
	replman__feed(m, &in);
	return 0;
}

/* Decode and handle what link l read.  A REGISTER whose check is under
 * way stops it: the rest waits in l->stash, reading stops. */
static void consume(rlink *l, const uint8_t *p, size_t left)
{
	keel_replman *m = l->m;
	while (!l->handle_closed) {
		keel_repl_msg msg;
		ssize_t used = keel_repl_decode(l->dec, p, left, &msg);
		if (used < 0) {
			keel_log_warn("replication link %u: %s", l->id,
				      keel_repl_decoder_error(l->dec));
			replman__link_broken(l, "protocol error");
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
			replman__link_broken(l, "protocol error");
			break;
		}
		/* feed as we go: SYNC_DONE must see the ops before it applied */
		replman__drive(m);
		if (l->auth != NULL && !l->handle_closed) {
			uv_read_stop((uv_stream_t *)&l->tcp);
			if (left > 0 && keel_buf_append(&l->stash, p, left))
				replman__link_broken(l, "out of memory");
			return;
		}
	}
}

static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
	rlink *l = s->data;
	keel_replman *m = l->m;
	if (nread < 0) {
		keel_free(buf->base);
		replman__link_broken(l, nread == UV_EOF ? "closed by the peer" : uv_strerror((int)nread));
		replman__drive(m);
		return;
	}
	if (nread == 0) {
		keel_free(buf->base);
		return;
	}
	if (fiu_fail(KEEL_FIU_REPL_CUT)) {
		keel_free(buf->base); /* a partition: nothing arrives */
		return;
	}
	if (!l->forgotten)
		replman__feed_simple(m, KEEL_HA_IN_HEARD, l->id);
	consume(l, (const uint8_t *)buf->base, (size_t)nread);
	keel_free(buf->base);
	if (!l->handle_closed && l->auth == NULL)
		replman__replica_ack(m, l);
	replman__drive(m);
}

void replman__on_accept(uv_stream_t *server, int status)
{
	keel_replman *m = server->data;
	if (status < 0) {
		keel_log_warn("replication acceptor: %s", uv_strerror(status));
		return;
	}
	rlink *l = replman__link_new(m, false);
	if (l == NULL)
		return;
	if (uv_accept(server, (uv_stream_t *)&l->tcp) < 0 ||
	    uv_read_start((uv_stream_t *)&l->tcp, on_alloc, on_read) < 0) {
		l->forgotten = true;
		replman__link_close_now(l);
		return;
	}
	l->connected = true;
	struct sockaddr_storage ss;
	int len = sizeof(ss);
	if (uv_tcp_getpeername(&l->tcp, (struct sockaddr *)&ss, &len) == 0) {
		if (ss.ss_family == AF_INET6)
			uv_ip6_name((struct sockaddr_in6 *)&ss, l->peer, sizeof(l->peer));
		else
			uv_ip4_name((struct sockaddr_in *)&ss, l->peer, sizeof(l->peer));
	}
	keel_log_debug("replication link %u accepted from %s", l->id, l->peer);
}

static void on_connect(uv_connect_t *req, int status)
{
	rlink *l = req->data;
	keel_replman *m = l->m;
	if (l->handle_closed)
		return;
	/* a forgotten link that never connected is closed at once */
	assert(!l->forgotten);
	if (status < 0) {
		keel_log_debug("replication: connect to %s: %s", m->cfg->peer, uv_strerror(status));
		/* refused: nothing listens there, the peer's process is gone;
		 * a timeout or an unreachable network proves nothing */
		l->refused = status == UV_ECONNREFUSED;
		replman__link_broken(l, uv_strerror(status));
		replman__drive(m);
		return;
	}
	if (fiu_fail(KEEL_FIU_REPL_CUT)) {
		/* a partition: as if the handshake never completed (not refused) */
		replman__link_broken(l, "connect failed (fault point repl/cut)");
		replman__drive(m);
		return;
	}
	l->connected = true;
	m->connect_link = 0;
	uv_timer_stop(&m->connect_timer);
	if (uv_read_start((uv_stream_t *)&l->tcp, on_alloc, on_read) < 0) {
		replman__link_broken(l, "cannot read");
		replman__drive(m);
		return;
	}
	replman__feed_simple(m, KEEL_HA_IN_CONNECTED, l->id);
	replman__drive(m);
}

static void on_connect_timeout(uv_timer_t *t)
{
	keel_replman *m = t->data;
	rlink *l = replman__link_find(m, m->connect_link);
	if (l == NULL || l->connected)
		return;
	keel_log_info("replication: connect to %s: no answer within connection-ttl",
		      m->cfg->peer);
	replman__link_broken(l, "connect timed out");
	replman__drive(m);
}

int replman__connect_peer(keel_replman *m)
{
	/* at most one CONNECT_TO_PEER outstanding (ha.h: one OUT link) */
	assert(m->connect_link == 0);
	char host[256];
	uint16_t port;
	struct sockaddr_storage sa;
	if (keel_parse_hostport(m->cfg->peer, host, sizeof(host), &port) < 0)
		return -EINVAL;
	if (uv_ip4_addr(host, port, (struct sockaddr_in *)&sa) < 0 &&
	    uv_ip6_addr(host, port, (struct sockaddr_in6 *)&sa) < 0)
		return -EINVAL;
	rlink *l = replman__link_new(m, true);
	if (l == NULL)
		return -ENOMEM;
	snprintf(l->peer, sizeof(l->peer), "%.63s", host); /* numeric */
	l->creq.data = l;
	int rc = uv_tcp_connect(&l->creq, &l->tcp, (struct sockaddr *)&sa, on_connect);
	if (rc < 0) {
		l->forgotten = true;
		replman__link_close_now(l);
		return rc;
	}
	m->connect_link = l->id;
	/* a peer that drops SYNs (a partition) would keep us for minutes */
	uv_timer_start(&m->connect_timer, on_connect_timeout,
		       m->cfg->connection_ttl ? m->cfg->connection_ttl : 60000, 0);
	return 0;
}
