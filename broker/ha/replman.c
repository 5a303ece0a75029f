/*
 * replman.c - the replication manager (see replman.h; its insides and
 * design in replman_int.h), the top of its files: create/start/stop/
 * close/free, the actions the machine asks for (run_action, which the
 * driving loop in replman_drive.c calls through m->run_action), the HA
 * timers, the identity file (PERSIST).
 * Owns the manager object and every handle it closes in keel_replman_close.
 * Loop thread only.
 */
#include "replman_int.h"

#include <assert.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <arpa/inet.h>

#include <fiu-local.h>
#include <jansson.h>

#include "keel/alloc.h"
#include "hastore.h"
#include "log.h"

/* ---- timers -------------------------------------------------------------- */

static void on_timer(uv_timer_t *t)
{
	keel_replman *m = t->data;
	keel_ha_input in;
	replman__in_init(m, &in, KEEL_HA_IN_TIMER, 0);
	in.timer = (keel_ha_timer)(t - m->timers);
	replman__feed(m, &in);
	replman__drive(m);
}

static void send_sync_done_ack(keel_replman *m, uint32_t link);

static void on_ack_delay(uv_timer_t *t)
{
	keel_replman *m = t->data;
	send_sync_done_ack(m, m->ack_delay_link);
	replman__drive(m);
}

/* ---- actions ------------------------------------------------------------- */

static void send_sync_done_ack(keel_replman *m, uint32_t link)
{
	rlink *l = replman__link_find(m, link);
	if (l == NULL)
		return;
	keel_repl_msg msg = { .type = KEEL_REPL_SYNC_DONE_ACK, .id = m->ha.self };
	replman__link_send(l, &msg);
}

static void act_send(keel_replman *m, const keel_ha_action *a)
{
	rlink *l = replman__link_find(m, a->link);
	if (l == NULL)
		return;
	keel_repl_msg msg = { .id = a->self };
	switch (a->msg) {
	case KEEL_HA_MSG_REGISTER:
		msg.type = KEEL_REPL_REGISTER;
		msg.role = a->role;
		msg.failback = a->failback;
		msg.probe = a->probe;
		if (a->probe)
			msg.alone_msgs = replman__alone_msgs(m);
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
		if (a->reason == KEEL_HA_REASON_LIVE_TOO)
			msg.alone_msgs = replman__alone_msgs(m);
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
		keel_journal *j = replman__journal(m);
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
	case KEEL_HA_MSG_PING: msg.type = KEEL_REPL_PING; msg.seq = replman__now_ms(m); break;
	case KEEL_HA_MSG_PONG: msg.type = KEEL_REPL_PONG; break;
	}
	if (replman__link_send(l, &msg) < 0) {
		replman__link_broken(l, "cannot send");
		return;
	}
	if (a->msg == KEEL_HA_MSG_ANNOUNCE && fiu_fail(KEEL_FIU_REPL_DIE_AFTER_ANNOUNCE)) {
		replman__link_die_after_flush(l, KEEL_FIU_REPL_DIE_AFTER_ANNOUNCE);
	}
	if (a->msg == KEEL_HA_MSG_HANDOVER && fiu_fail(KEEL_FIU_REPL_DIE_IN_HANDOVER)) {
		replman__link_die_after_flush(l, KEEL_FIU_REPL_DIE_IN_HANDOVER);
	}
}

static void on_deactivated(void *arg)
{
	keel_replman *m = arg;
	assert(m->paused); /* done runs once, after RESTART_AS_BACKUP paused us */
	m->paused = false;
	replman__drive(m);
}

/* Persistent messages journaled since this node serves alone (no synced
 * backup): its side of a split brain's count. */
static uint64_t journaled(keel_replman *m)
{
	keel_journal *j = replman__journal(m);
	keel_journal_stats st = { 0 };
	if (j)
		keel_journal_get_stats(j, &st);
	return st.messages_journaled;
}

uint64_t replman__alone_msgs(keel_replman *m)
{
	uint64_t n = journaled(m);
	return m->alone && n >= m->alone_base ? n - m->alone_base : 0;
}

/* Serving alone from now (a live lost its backup, a backup failed over),
 * or not (a backup synced). */
static void track_alone(keel_replman *m, keel_ha_event e)
{
	switch (e) {
	case KEEL_HA_EV_REPL_LOST:
		if (!keel_ha_is_active(&m->ha) || m->alone)
			return;
		/* fall through */
	case KEEL_HA_EV_FAILOVER:
		m->alone = true;
		m->alone_base = journaled(m);
		return;
	case KEEL_HA_EV_SYNC_DONE:
		m->alone = false;
		return;
	default:
		return;
	}
}

static void act_emit(keel_replman *m, const keel_ha_action *a)
{
	track_alone(m, a->event);
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
	case KEEL_HA_EV_SPLIT_BRAIN: {
		/* both counts: ours, and the peer's from its probe or refusal */
		keel_journal *j = replman__journal(m);
		keel_journal_stats st = { 0 };
		if (j)
			keel_journal_get_stats(j, &st);
		keel_events_emit(m->events, type, "{s:I, s:I, s:b, s:I, s:I, s:I, s:s}",
				 "activation-seq", (json_int_t)a->seq, "peer-activation-seq",
				 (json_int_t)a->files, "serving", a->release, "messages",
				 (json_int_t)st.messages, "receipted-since-split",
				 (json_int_t)replman__alone_msgs(m), "peer-receipted-since-split",
				 (json_int_t)m->peer_alone_msgs, "text", text);
		m->split_brains++;
		m->split_peer_seq = a->files;
		break;
	}
	case KEEL_HA_EV_ACTIVATION_COORDINATED:
		keel_events_emit(m->events, type, "{s:I, s:I, s:s}", "activation-seq",
				 (json_int_t)a->seq, "old-activation-seq", (json_int_t)a->old_seq,
				 "text", text);
		break;
	case KEEL_HA_EV_ZK_CONNECTED:
		keel_events_emit(m->events, type, "{s:I, s:I, s:s}", "ms", (json_int_t)a->ms,
				 "activation-seq", (json_int_t)a->seq, "text", text);
		break;
	case KEEL_HA_EV_LOCK_LOST:
		keel_events_emit(m->events, type, "{s:I, s:I, s:s}", "lease-over-ms",
				 (json_int_t)a->ms, "activation-seq", (json_int_t)a->seq, "text", text);
		break;
	case KEEL_HA_EV_FENCE:
		keel_events_emit(m->events, type, "{s:I, s:I, s:s}", "ms", (json_int_t)a->ms,
				 "activation-seq", (json_int_t)a->seq, "text", text);
		break;
	default:
		keel_events_emit(m->events, type, "{s:I, s:s}", "activation-seq", (json_int_t)a->seq,
				 "text", text);
		break;
	}
	keel_log_info("%s%s%s", type, a->text ? ": " : "", text);
	if (a->event == KEEL_HA_EV_BACKUP_ANNOUNCED)
		replman__saved_compare(m); /* the sync completed: what did we save? */
}

static void act_timer(keel_replman *m, const keel_ha_action *a, bool start)
{
	assert((unsigned)a->timer < KEEL_HA_TIMER_COUNT);
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
	/* RESTART_AS_BACKUP: no further action until the host's done */
	assert(!m->paused);
	keel_log_debug("ha action %s", keel_ha_action_name(a->type));
	switch (a->type) {
	case KEEL_HA_ACT_HOLD_RECEIPTS:
		replman__gate_fence(m);
		break;
	case KEEL_HA_ACT_RELEASE_RECEIPTS:
		replman__gate_unfence(m, a->release);
		break;
	case KEEL_HA_ACT_CONNECT_TO_PEER:
		rc = replman__connect_peer(m);
		if (rc < 0) {
			keel_log_warn("replication: cannot connect to %s: %s", m->cfg->peer,
				      strerror(-rc));
			replman__feed_simple(m, KEEL_HA_IN_CONNECT_FAILED, 0);
		}
		break;
	case KEEL_HA_ACT_CLOSE_LINK: {
		rlink *l = replman__link_find(m, a->link);
		if (l) {
			l->forgotten = true;
			l->closing = true;
			l->dirty = true;
			if (m->connect_link == l->id)
				m->connect_link = 0;
			if (!l->connected)
				replman__link_close_now(l);
		}
		break;
	}
	case KEEL_HA_ACT_SEND: act_send(m, a); break;
	case KEEL_HA_ACT_START_SYNC_SEND: replman__start_sync(m, a->link); break;
	case KEEL_HA_ACT_HOLD_JOURNAL_OPS: replman__hold_ops(m); break;
	case KEEL_HA_ACT_RELEASE_JOURNAL_OPS: replman__release_ops(m); break;
	case KEEL_HA_ACT_STOP_REPLICATION: replman__stop_replication(m, a); break;
	case KEEL_HA_ACT_PREPARE_REPLICA: replman__prepare_replica(m, a->link); break;
	case KEEL_HA_ACT_FLUSH_REPLICA:
		rc = m->replica_failed ? -EIO : replman__replica_flush(m);
		if (rc == 0)
			rc = replman__saved_replica_complete(m);
		if (rc == 0) {
			replman__replica_close_files(m);
			replman__feed_simple(m, KEEL_HA_IN_REPLICA_FLUSHED, 0);
		} else {
			replman__feed_simple(m, KEEL_HA_IN_REPLICA_FAILED, 0);
		}
		break;
	case KEEL_HA_ACT_LOAD_JOURNAL:
		m->replica_link = 0;
		replman__replica_close_files(m);
		rc = m->host.load_journal(m->host.ud, err, sizeof(err));
		if (rc < 0) {
			keel_log_error("cannot activate: %s", err);
			keel_events_emit(m->events, "error", "{s:s}", "message", err);
			replman__feed_simple(m, KEEL_HA_IN_ACTIVATION_FAILED, 0);
		} else {
			replman__feed_simple(m, KEEL_HA_IN_JOURNAL_LOADED, 0);
		}
		break;
	case KEEL_HA_ACT_OPEN_CLIENT_ACCEPTOR:
		if (fiu_fail(KEEL_FIU_REPL_DIE_ACTIVATING))
			replman__die_now(m, KEEL_FIU_REPL_DIE_ACTIVATING);
		rc = m->host.open_acceptor(m->host.ud, err, sizeof(err));
		if (rc < 0) {
			keel_log_error("cannot activate: %s", err);
			keel_events_emit(m->events, "error", "{s:s}", "message", err);
			replman__feed_simple(m, KEEL_HA_IN_ACTIVATION_FAILED, 0);
		} else {
			replman__feed_simple(m, KEEL_HA_IN_ACCEPTOR_LISTENING, 0);
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
			replman__feed_simple(m, KEEL_HA_IN_STOP, 0);
		}
		break;
	case KEEL_HA_ACT_START_TIMER: act_timer(m, a, true); break;
	case KEEL_HA_ACT_CANCEL_TIMER: act_timer(m, a, false); break;
	case KEEL_HA_ACT_RESTART_AS_BACKUP: {
		keel_journal *j = replman__journal(m);
		if (j && m->tapped == j)
			keel_journal_set_tap(j, NULL, NULL);
		m->tapped = NULL;
		replman__gate_stop(m, false);
		m->paused = true;
		m->host.deactivate(m->host.ud, on_deactivated, m);
		break;
	}
	case KEEL_HA_ACT_STOP_SERVER: m->host.stop(m->host.ud); break;
	case KEEL_HA_ACT_EMIT: act_emit(m, a); break;
	case KEEL_HA_ACT_ZK_ACQUIRE_LOCK:
	case KEEL_HA_ACT_ZK_RELEASE_LOCK:
	case KEEL_HA_ACT_ZK_READ_SEQUENCE:
	case KEEL_HA_ACT_ZK_WRITE_SEQUENCE:
		replman__zk_action(m, a);
		break;
	}
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
	hc.may_lose_data = c->failover_may_lose_data;
	if (c->manager != NULL && c->manager->zookeeper != NULL) {
		hc.manager = true;
		hc.zk_session_timeout_ms = c->manager->zookeeper->session_timeout;
	}

	keel_replman *m = keel_calloc(1, sizeof(*m));
	if (m == NULL) {
		snprintf(err, errlen, "out of memory");
		return -ENOMEM;
	}
	for (int i = 0; i < KEEL_REPL_REPLICA_FILES; i++)
		m->files[i].fd = -1;
	m->loop = opt->loop;
	m->cfg = c;
	m->events = opt->events;
	m->auth = opt->auth;
	assert(m->auth != NULL);
	m->host = opt->host;
	m->run_action = run_action;
	keel_buf_init(&m->scratch);
	m->data_dir = keel_strdup(opt->data_dir);
	m->journal_dir = path_join(opt->data_dir, "journal");
	m->large_dir = keel_strdup(opt->large_dir);
	m->paging_dir = path_join(opt->data_dir, "paging");
	int rc = -ENOMEM;
	if (!m->data_dir || !m->journal_dir || !m->large_dir || !m->paging_dir) {
		snprintf(err, errlen, "out of memory");
		goto fail;
	}
	keel_ha_persist p;
	bool fresh = false;
	rc = keel_hastore_load(opt->data_dir, role, &p, &fresh, err, errlen);
	if (rc < 0)
		goto fail;
	/* START bumps the incarnation and persists it before anything else */
	m->alone = true; /* a live without a synced backup, from its start */
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
		rc = uv_listen((uv_stream_t *)&m->acceptor, 16, replman__on_accept);
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
	uv_prepare_start(&m->prepare, replman__on_prepare);
	replman__gate_init(m);
	rc = replman__zk_create(m, err, errlen);
	if (rc < 0) {
		keel_replman_close(m);
		goto fail_closed;
	}
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
	replman__feed_simple(m, KEEL_HA_IN_START, 0);
	replman__drive(m);
	/* the session after START: CONNECTED comes on a later loop turn */
	if (replman__zk_open(m) < 0)
		keel_events_emit(m->events, "error", "{s:s}", "message",
				 "cannot start a ZooKeeper session (retrying)");
}


json_t *keel_replman_status(keel_replman *m)
{
	static const char *const repl_names[] = {
		[KEEL_HA_REPL_NONE] = "none",
		[KEEL_HA_REPL_SYNCING] = "syncing",
		[KEEL_HA_REPL_DONE_SENT] = "sync-done-sent",
		[KEEL_HA_REPL_STEADY] = "steady",
	};
	const keel_ha *ha = &m->ha;
	uint64_t now = replman__now_ms(m);
	char idtext[40];
	keel_ha_node_id_format(&ha->self.node_id, idtext);
	json_t *o = json_pack("{s:s, s:s, s:s, s:I, s:I, s:s, s:s, s:b, s:I, s:I, s:b, s:I, s:I}",
			 "role",
			 m->cfg->role, "runtime-role",
			 ha->role == KEEL_HA_ROLE_PRIMARY ? "primary" : "backup", "state",
			 keel_ha_state_name(ha->state), "activation-seq",
			 (json_int_t)ha->self.activation_seq, "incarnation",
			 (json_int_t)ha->self.incarnation, "node-id", idtext, "replication",
			 repl_names[ha->repl], "fenced", ha->fenced, "fence-ms-left",
			 (json_int_t)(ha->fenced && ha->fence_until_ms > now
					      ? ha->fence_until_ms - now : 0),
			 "lease-ms-left",
			 (json_int_t)(ha->lease_until_ms > now ? ha->lease_until_ms - now : 0),
			 "peer-may-be-live", ha->self.peer_may_be_live, "split-brains",
			 (json_int_t)m->split_brains, "split-brain-peer-activation-seq",
			 (json_int_t)m->split_peer_seq);
	if (o != NULL && m->zk != NULL) {
		json_t *z = replman__zk_status(m);
		if (z == NULL || json_object_set_new(o, "manager", z) < 0) {
			json_decref(o);
			return NULL;
		}
	}
	return o;
}

void keel_replman_stop(keel_replman *m)
{
	replman__feed_simple(m, KEEL_HA_IN_STOP, 0);
	replman__drive(m);
}

void keel_replman_close(keel_replman *m)
{
	if (m == NULL || !m->handles_open)
		return;
	m->handles_open = false;
	keel_journal *j = replman__journal(m);
	if (j && m->tapped == j)
		keel_journal_set_tap(j, NULL, NULL);
	m->tapped = NULL;
	replman__snapshot_stop(m);
	replman__gate_stop(m, true);
	replman__replica_close_files(m);
	replman__saved_cancel(m);
	replman__zk_close(m); /* the session ends: a held lock goes at once */
	uv_close((uv_handle_t *)&m->acceptor, NULL);
	uv_close((uv_handle_t *)&m->prepare, NULL);
	for (int i = 0; i < KEEL_HA_TIMER_COUNT; i++)
		uv_close((uv_handle_t *)&m->timers[i], NULL);
	uv_close((uv_handle_t *)&m->ack_delay, NULL);
	uv_close((uv_handle_t *)&m->connect_timer, NULL);
	for (rlink *l = m->links; l; l = l->next) {
		l->forgotten = true;
		replman__link_close_now(l);
	}
}

void keel_replman_free(keel_replman *m)
{
	if (m == NULL)
		return;
	assert(!m->handles_open);
	assert(m->links == NULL);
	assert(m->cmp == NULL); /* the loop ran the comparison's callback */
	replman__in_clear(m);
	replman__zk_free(m);
	replman__q_free(&m->held_head, &m->held_tail);
	replman__replica_close_files(m);
	keel_free(m->deletes);
	for (size_t i = 0; i < m->n_ext_deletes; i++)
		keel_free(m->ext_deletes[i]);
	keel_free(m->ext_deletes);
	keel_buf_free(&m->scratch);
	keel_free(m->data_dir);
	keel_free(m->journal_dir);
	keel_free(m->large_dir);
	keel_free(m->paging_dir);
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
