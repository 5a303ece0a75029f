/*
 * broker.c - the broker object (see broker.h).
 *
 * Owns the libuv loop and, in this order of creation, the events sink,
 * security, the core, the password checks (auth), the STOMP server, the
 * signal handles and the expiry timer; frees them in reverse (the
 * server's sessions use the core and the checks).
 * Borrows the config.  State only moves forward: STARTING -> LIVE ->
 * STOPPING -> STOPPED.  Loop thread only.
 */
#include "broker.h"

#include <arpa/inet.h>
#include <assert.h>
#include <errno.h>
#include <inttypes.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "keel/alloc.h"
#include "auth.h"
#include "core.h"
#include "events.h"
#include "limits.h"
#include "log.h"
#include "security.h"
#include "server.h"
#include "session.h"
#include "mgmt.h"
#include "largemsg.h"
#include "journal.h"
#include "paging.h"
#include "bridge.h"
#include "dupcache.h"
#include "lc_check.h"
#include "replman.h"

struct keel_broker {
	uv_loop_t loop;
	bool loop_open;
	const keel_config *cfg;        /* borrowed */
	keel_broker_state state;
	keel_events *events;
	keel_security *security;
	keel_auth *auth;               /* password checks (sessions, replication) */
	keel_core *core;
	keel_server *server;           /* NULL once handed to keel_server_stop */
	keel_session_env env;
	keel_journal *journal;         /* <data-dir>/journal; stopped before the core goes */
	keel_paging *paging;           /* <data-dir>/paging; stopped before the journal */
	char *large_dir;               /* <data-dir>/large-messages */
	keel_mgmt_env mgmt;             /* management's view of the broker */
	keel_bridge **bridges;         /* cfg->bridges, started once LIVE */
	unsigned bridge_count;
	keel_dupcache *dups;           /* duplicate-detection ids (sessions) */
	uv_signal_t sig_term;
	uv_signal_t sig_int;
	uv_timer_t expire_timer;
	bool handles_started;          /* the three above are initialised */
	uint16_t port;
	char host[256];                /* cfg->listen, parsed */
	uint16_t listen_port;
	/* replication (cfg->ha): the HA machine drives activation */
	keel_replman *repl;
	keel_ha_state ha_state;        /* last HA state emitted */
	bool server_closing;           /* keel_server_stop under way */
	void (*deact_done)(void *arg); /* RESTART_AS_BACKUP waiting for it */
	void *deact_arg;
	bool shutting_down;
	keel_journal *dead_journal;    /* stopped; freed once its handles closed */
	uint64_t *large_ids;           /* bodies the journal reopened (load_journal) */
	size_t large_n, large_cap;
	bool large_sweep_off;
	uv_timer_t reap_timer;
};

static const char *const state_names[] = { "STARTING", "LIVE", "STOPPING", "STOPPED" };

const char *keel_broker_state_name(keel_broker_state st)
{
	assert((size_t)st < sizeof(state_names) / sizeof(state_names[0]));
	return state_names[st];
}

static void set_state(keel_broker *b, keel_broker_state st)
{
	assert(st >= b->state);
	b->state = st;
	keel_log_info("state %s", keel_broker_state_name(st));
	keel_events_emit(b->events, "state", "{s:s}", "state", keel_broker_state_name(st));
}

/* ---- management's view (mgmt.h) ----------------------------------------- */

static const char *mgmt_state(void *ud)
{
	keel_broker *b = ud;
	if (b->repl && b->state == KEEL_BROKER_STARTING)
		return keel_ha_state_name(b->ha_state);
	return keel_broker_state_name(b->state);
}

static size_t mgmt_connection_count(void *ud)
{
	keel_broker *b = ud;
	return b->server ? keel_server_connection_count(b->server) : 0;
}

static json_t *mgmt_bridge_status(void *ud)
{
	keel_broker *b = ud;
	json_t *list = json_array();
	for (unsigned i = 0; list && i < b->bridge_count; i++)
		if (b->bridges[i])
			json_array_append_new(list, keel_bridge_status(b->bridges[i]));
	return list;
}

static json_t *mgmt_ha_status(void *ud)
{
	keel_broker *b = ud;
	return b->repl ? keel_replman_status(b->repl) : NULL;
}

static int mgmt_bridge_control(void *ud, const char *name, bool start)
{
	keel_broker *b = ud;
	for (unsigned i = 0; i < b->bridge_count; i++) {
		keel_bridge *br = b->bridges[i];
		if (br == NULL || strcmp(keel_bridge_name(br), name) != 0)
			continue;
		if (b->state != KEEL_BROKER_LIVE)
			return -ESHUTDOWN;
		if (!start) {
			if (!keel_bridge_running(br))
				return -EALREADY;
			keel_bridge_stop(br);
			return 0;
		}
		return keel_bridge_start(br);
	}
	return -ENOENT;
}

/* Stop and free every bridge (their locators close their connections). */
static void bridges_destroy(keel_broker *b)
{
	for (unsigned i = 0; i < b->bridge_count; i++) {
		keel_bridge_destroy(b->bridges[i]);
		b->bridges[i] = NULL;
	}
}

static int64_t wall_now_ms(void *ud)
{
	(void)ud;
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* ---- configuration checks ---------------------------------------------- */

/* 127.0.0.0/8, ::1 (bare or bracketed), ::ffff:127.x, "localhost". */
static bool host_is_loopback(const char *host)
{
	char h[256];
	size_t n = strlen(host);
	if (n >= 2 && host[0] == '[' && host[n - 1] == ']') {
		host++;
		n -= 2;
	}
	if (n == 0 || n >= sizeof(h))
		return false;
	memcpy(h, host, n);
	h[n] = '\0';
	if (strcasecmp(h, "localhost") == 0)
		return true;
	struct in_addr a4;
	if (inet_pton(AF_INET, h, &a4) == 1)
		return (ntohl(a4.s_addr) >> 24) == 127;
	struct in6_addr a6;
	if (inet_pton(AF_INET6, h, &a6) == 1) {
		if (IN6_IS_ADDR_LOOPBACK(&a6))
			return true;
		return IN6_IS_ADDR_V4MAPPED(&a6) && a6.s6_addr[12] == 127;
	}
	return false;
}

/*
 * The security posture: no users -> the STOMP acceptor only on loopback;
 * no cluster credentials (ha.cluster-user and a non-empty
 * ha.cluster-password) -> the
 * replication acceptor only on loopback (any node that reaches it could
 * register as a backup and be sent every message).  -EPERM with the
 * reason.
 */
static int check_posture(const keel_config *cfg, const char *host, char *err, size_t errlen)
{
	if (cfg->users_count == 0 && !host_is_loopback(host)) {
		snprintf(err, errlen,
			 "refusing to listen on %s without users: with no users configured "
			 "every login is accepted, which is only safe on a loopback address "
			 "(127.0.0.1, ::1, localhost); add users to the config or listen on "
			 "loopback",
			 cfg->listen);
		return -EPERM;
	}
	const keel_ha_cfg *h = cfg->ha;
	char rhost[256];
	uint16_t rport;
	if (h == NULL || (h->cluster_user != NULL && h->cluster_password != NULL &&
			  h->cluster_password[0] != '\0'))
		return 0;
	if (keel_parse_hostport(h->listen, rhost, sizeof(rhost), &rport) == 0 &&
	    host_is_loopback(rhost))
		return 0;
	snprintf(err, errlen,
		 "refusing to listen for replication on %s (ha.listen) without cluster "
		 "credentials: any node that can reach it could register as a backup and be "
		 "sent every message; set ha.cluster-user and ha.cluster-password (the same "
		 "on both nodes) or listen on loopback (127.0.0.1, ::1)",
		 h->listen);
	return -EPERM;
}

static void settings_from_cfg(const keel_address_setting_cfg *a, keel_address_settings *s)
{
	memset(s, 0, sizeof(*s));
	if (a->auto_create_addresses) {
		s->has_auto_create_addresses = true;
		s->auto_create_addresses = *a->auto_create_addresses;
	}
	if (a->auto_create_queues) {
		s->has_auto_create_queues = true;
		s->auto_create_queues = *a->auto_create_queues;
	}
	if (a->auto_delete_queues) {
		s->has_auto_delete_queues = true;
		s->auto_delete_queues = *a->auto_delete_queues;
	}
	if (a->max_delivery_attempts) {
		s->has_max_delivery_attempts = true;
		s->max_delivery_attempts = *a->max_delivery_attempts;
	}
	s->dead_letter_address = a->dead_letter_address;
	s->expiry_address = a->expiry_address;
	if (a->max_size_bytes) {
		s->has_max_size_bytes = true;
		s->max_size_bytes = a->max_size_bytes_value;
	}
	int policy = keel_full_policy_parse(a->address_full_policy);
	if (policy >= 0) {
		s->has_address_full_policy = true;
		s->address_full_policy = (keel_full_policy)policy;
	}
}

static keel_routing parse_routing(const char *name, keel_routing dflt)
{
	return name ? keel_routing_parse(name) : dflt;
}

/* address-settings, then addresses and their queues. */
static int apply_config(keel_core *core, const keel_config *cfg, char *err, size_t errlen)
{
	int rc;
	for (unsigned i = 0; i < cfg->address_settings_count; i++) {
		const keel_address_setting_cfg *a = &cfg->address_settings[i];
		keel_address_settings s;
		settings_from_cfg(a, &s);
		rc = keel_core_add_address_settings(core, a->match, &s);
		if (rc < 0) {
			snprintf(err, errlen, "address-settings[%u] (%s): %s", i, a->match,
				 strerror(-rc));
			return rc;
		}
	}
	for (unsigned i = 0; i < cfg->addresses_count; i++) {
		const keel_address_cfg *a = &cfg->addresses[i];
		keel_routing art = parse_routing(a->routing_type, KEEL_ANYCAST);
		unsigned mask = art;
		for (unsigned j = 0; j < a->queues_count; j++)
			mask |= parse_routing(a->queues[j].routing_type, art);
		keel_address *addr = NULL;
		rc = art ? keel_address_create(core, a->name, mask, true, &addr) : -EINVAL;
		if (rc < 0) {
			snprintf(err, errlen, "addresses[%u] (%s): %s", i, a->name, strerror(-rc));
			return rc;
		}
		for (unsigned j = 0; j < a->queues_count; j++) {
			const keel_queue_cfg *q = &a->queues[j];
			keel_queue_options qo = {
				.name = q->name ? q->name : a->name,
				.address = a->name,
				.routing = parse_routing(q->routing_type, art),
				.durable = q->durable,
				.max_consumers = q->max_consumers,
				.purge_on_no_consumers = q->purge_on_no_consumers,
			};
			keel_queue *queue = NULL;
			rc = qo.routing ? keel_queue_create(core, &qo, &queue) : -EINVAL;
			if (rc < 0) {
				snprintf(err, errlen, "addresses[%u].queues[%u] (%s): %s", i, j,
					 qo.name, strerror(-rc));
				return rc;
			}
		}
	}
	return 0;
}

int keel_broker_check_config(const keel_config *cfg, char *err, size_t errlen)
{
	char host[256];
	uint16_t port;
	keel_security *sec = NULL;
	keel_core *core = NULL;
	int rc = keel_parse_hostport(cfg->listen, host, sizeof(host), &port);
	if (rc < 0) {
		snprintf(err, errlen, "listen: expected HOST:PORT, got '%s'", cfg->listen);
		goto out;
	}
	rc = keel_security_create(&sec, cfg, err, errlen);
	if (rc < 0)
		goto out;
	rc = check_posture(cfg, host, err, errlen);
	if (rc < 0)
		goto out;
	keel_core_options co = { .now_ms = wall_now_ms, .node = cfg->name,
				 .global_max_size_bytes = cfg->global_max_size_bytes,
				 .max_auto_created_addresses = cfg->max_auto_created_addresses };
	rc = keel_core_create(&core, &co);
	if (rc < 0) {
		snprintf(err, errlen, "core: %s", strerror(-rc));
		goto out;
	}
	rc = apply_config(core, cfg, err, errlen);
out:
	keel_core_free(core);
	keel_security_free(sec);
	return rc;
}

/* ---- running ----------------------------------------------------------- */

static void on_expire_timer(uv_timer_t *t)
{
	keel_broker *b = t->data;
	keel_core_expire_scan(b->core);
}

static void on_server_stopped(void *ud)
{
	keel_broker *b = ud;
	assert(b->state == KEEL_BROKER_STOPPING);
	b->server_closing = false;
	/* Every session is gone: write what is left, join the writer. */
	keel_paging_stop(b->paging);
	keel_journal_stop(b->journal);
	keel_replman_close(b->repl);
	keel_auth_close(b->auth); /* every requester is gone: checks in flight end alone */
	/* Last handles: the loop ends after their close callbacks. */
	uv_close((uv_handle_t *)&b->sig_term, NULL);
	uv_close((uv_handle_t *)&b->sig_int, NULL);
	uv_close((uv_handle_t *)&b->expire_timer, NULL);
	uv_close((uv_handle_t *)&b->reap_timer, NULL);
	b->handles_started = false;
	set_state(b, KEEL_BROKER_STOPPED);
}

/* The final stop (without replication, or on the machine's STOP_SERVER). */
static void broker_shutdown(keel_broker *b)
{
	if (b->shutting_down)
		return;
	b->shutting_down = true;
	if (b->repl) {
		/* the machine said STOPPING already */
		b->state = KEEL_BROKER_STOPPING;
	} else {
		set_state(b, KEEL_BROKER_STOPPING);
	}
	uv_timer_stop(&b->expire_timer);
	bridges_destroy(b); /* held messages go back to their queues */
	keel_server *s = b->server;
	b->server = NULL;
	if (s != NULL) {
		b->server_closing = true;
		keel_server_stop(s, on_server_stopped, b);
	} else if (!b->server_closing) {
		on_server_stopped(b);
	}
	/* else: the acceptor's own stop finishes it (on_acceptor_closed) */
}

void keel_broker_stop(keel_broker *b)
{
	if (b->shutting_down ||
	    (b->state != KEEL_BROKER_LIVE && b->state != KEEL_BROKER_STARTING)) {
		keel_log_info("already stopping");
		return;
	}
	if (b->repl) {
		keel_replman_stop(b->repl); /* the machine says STOP_SERVER */
		return;
	}
	broker_shutdown(b);
}

static void on_signal(uv_signal_t *h, int signum)
{
	keel_broker *b = h->data;
	keel_log_info("%s received", signum == SIGTERM ? "SIGTERM" : "SIGINT");
	keel_broker_stop(b);
}

static void close_leftover(uv_handle_t *h, void *arg)
{
	(void)arg;
	if (!uv_is_closing(h)) {
		keel_log_warn("closing leftover handle (%s)", uv_handle_type_name(h->type));
		uv_close(h, NULL);
	}
}

/* Stop the server if it is still ours, close whatever is left, close the
 * loop, free in reverse order of creation. */
static void broker_destroy(keel_broker *b)
{
	if (b->server != NULL) {
		keel_server_stop(b->server, NULL, NULL);
		b->server = NULL;
	}
	if (b->handles_started) {
		uv_close((uv_handle_t *)&b->sig_term, NULL);
		uv_close((uv_handle_t *)&b->sig_int, NULL);
		uv_close((uv_handle_t *)&b->expire_timer, NULL);
		uv_close((uv_handle_t *)&b->reap_timer, NULL);
		b->handles_started = false;
	}
	bridges_destroy(b);
	keel_paging_stop(b->paging);   /* NULL, or stopped already: nothing */
	keel_journal_stop(b->journal); /* NULL, or stopped already: nothing */
	keel_replman_close(b->repl);   /* NULL, or closed already: nothing */
	keel_auth_close(b->auth);      /* NULL, or closed already: nothing */
	if (b->loop_open) {
		uv_run(&b->loop, UV_RUN_DEFAULT);
		if (uv_loop_close(&b->loop) == UV_EBUSY) {
			uv_walk(&b->loop, close_leftover, NULL);
			uv_run(&b->loop, UV_RUN_DEFAULT);
			int rc = uv_loop_close(&b->loop);
			assert(rc == 0);
			(void)rc;
		}
		b->loop_open = false;
	}
	keel_paging_free(b->paging);
	keel_journal_free(b->journal);
	keel_journal_free(b->dead_journal);
	keel_replman_free(b->repl);
	keel_auth_free(b->auth); /* the loop ran every check's end */
	keel_large_stopping(true); /* persistent large bodies stay for the journal */
	keel_core_free(b->core);
	keel_dupcache_free(b->dups);
	keel_free(b->bridges);
	keel_large_stopping(false);
	keel_free(b->large_dir);
	keel_security_free(b->security);
	keel_events_close(b->events);
	keel_log_set_name("keel");
	keel_free(b);
}

/* Journal recovery of a persistent large message: its body is the file
 * <data-dir>/large-messages/<msg-id>.msg, named by the message id alone.
 * A missing or short file means the message is not restored (the journal
 * counts it as large_skipped and logs it). */
static keel_large_body *reopen_large_body(void *ud, uint64_t msg_id, uint64_t size)
{
	keel_broker *b = ud;
	keel_large_body *lb = NULL;
	if (b->large_n == b->large_cap) {
		size_t cap = b->large_cap ? b->large_cap * 2 : 64;
		uint64_t *n = keel_realloc(b->large_ids, cap * sizeof(*n));
		if (n != NULL) {
			b->large_ids = n;
			b->large_cap = cap;
		}
	}
	if (b->large_n < b->large_cap)
		b->large_ids[b->large_n++] = msg_id;
	else
		b->large_sweep_off = true; /* cannot tell what is referenced */
	int rc = keel_large_reopen(&lb, b->large_dir, msg_id, size);
	if (rc < 0) {
		keel_log_warn("large message %" PRIu64 ": body file not restored: %s", msg_id,
			      strerror(-rc));
		return NULL;
	}
	return lb;
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
	return x < y ? -1 : x > y;
}

static bool large_referenced(void *ud, uint64_t id)
{
	keel_broker *b = ud;
	return b->large_n > 0 &&
	       bsearch(&id, b->large_ids, b->large_n, sizeof(id), cmp_u64) != NULL;
}

/* ---- activation: journal, bridges, client acceptor ---------------------- */

/* The journal: replay it into the core (journal.loaded), then journal
 * every change; the session and management environments.  A corrupt
 * journal stops the start (-EINVAL: exit 2). */
static int load_journal(keel_broker *b, char *err, size_t errlen)
{
	const keel_config *cfg = b->cfg;
	int rc;
	char jdir[KEEL_MAX_PATH_BYTES];
	snprintf(jdir, sizeof(jdir), "%s/journal", cfg->data_dir);
	keel_journal_options jo = {
		.dir = jdir,
		.file_size = cfg->journal_file_size_bytes,
		.sync = cfg->journal_sync,
		.compact_min_files = cfg->journal_compact_min_files,
		.events = b->events,
		.large_open = reopen_large_body,
		.large_ud = b,
	};
	b->large_n = 0;
	b->large_sweep_off = false;
	rc = keel_journal_open(&b->journal, &jo, b->core, err, errlen);
	if (rc == -EBADMSG || rc == -EPROTONOSUPPORT)
		rc = -EINVAL; /* input error: exit 2 */
	if (rc < 0)
		return rc;
	/* body files no journaled message refers to are garbage (a backup's
	 * copies of bodies consumed on its live, a crash before an unlink) */
	if (!b->large_sweep_off) {
		if (b->large_n > 0) /* qsort's base must not be NULL, even for 0 */
			qsort(b->large_ids, b->large_n, sizeof(*b->large_ids), cmp_u64);
		int swept = keel_large_dir_sweep(b->large_dir, large_referenced, b);
		if (swept > 0)
			keel_log_info("large-messages: %d unreferenced body file(s) removed", swept);
	}
	keel_free(b->large_ids);
	b->large_ids = NULL;
	b->large_n = b->large_cap = 0;
	/* paging (with ha: too: the journal's tap carries the page files'
	 * writes to the backup, replman_live.c) */
	{
		char pdir[KEEL_MAX_PATH_BYTES];
		snprintf(pdir, sizeof(pdir), "%s/paging", cfg->data_dir);
		keel_paging_options po = { .dir = pdir, .file_size = cfg->page_file_size_bytes,
					   .events = b->events };
		assert(b->paging == NULL);
		rc = keel_paging_open(&b->paging, &po, b->core, b->journal, err, errlen);
		if (rc == -EBADMSG || rc == -EPROTONOSUPPORT)
			rc = -EINVAL; /* input error: exit 2 */
		if (rc < 0)
			return rc;
	}
	rc = keel_journal_start(b->journal, &b->loop);
	if (rc < 0) {
		snprintf(err, errlen, "journal: cannot start: %s", strerror(-rc));
		return rc;
	}
	if (b->paging)
		keel_paging_start(b->paging);

	b->mgmt = (keel_mgmt_env){
		.core = b->core,
		.node = cfg->name,
		.start_mono_ms = uv_hrtime() / 1000000,
		.state = mgmt_state,
		.connection_count = mgmt_connection_count,
		.bridge_status = mgmt_bridge_status,
		.bridge_control = mgmt_bridge_control,
		.ha_status = mgmt_ha_status,
		.ud = b,
	};
	b->env = (keel_session_env){
		.core = b->core,
		.security = b->security,
		.events = b->events,
		.node = cfg->name,
		.server_header = "keel-broker/" KEEL_VERSION,
		.heartbeat_send_ms = cfg->check_period,
		.heartbeat_recv_ms = cfg->connection_ttl / KEEL_HEARTBEAT_GRACE_FACTOR,
		.mgmt = &b->mgmt,
		.large_message_dir = b->large_dir,
		.min_large_message_size = cfg->min_large_message_size_bytes,
		.auth = b->auth,
	};
	/* receipts of persistent messages wait for the journal (and, with a
	 * synced backup, for its acknowledgement) */
	b->env.sync = b->repl ? keel_replman_sync(b->repl) : keel_journal_sync(b->journal);
	keel_dupcache_free(b->dups);
	b->dups = NULL;
	rc = keel_dupcache_create(&b->dups, 0);
	if (rc < 0) {
		snprintf(err, errlen, "out of memory");
		return rc;
	}
	b->env.dups = b->dups;
	return 0;
}

static int create_bridges(keel_broker *b, char *err, size_t errlen)
{
	const keel_config *cfg = b->cfg;
	int rc;
	if (cfg->bridges_count == 0)
		return 0;
	if (b->bridges == NULL) {
		b->bridges = keel_calloc(cfg->bridges_count, sizeof(*b->bridges));
		if (b->bridges == NULL) {
			snprintf(err, errlen, "out of memory");
			return -ENOMEM;
		}
	}
	b->bridge_count = cfg->bridges_count;
	keel_bridge_env be = { .loop = &b->loop, .core = b->core, .events = b->events,
			       .node = cfg->name };
	for (unsigned i = 0; i < cfg->bridges_count; i++) {
		rc = keel_bridge_create(&b->bridges[i], &be, &cfg->bridges[i]);
		if (rc < 0) {
			snprintf(err, errlen, "bridges[%u]: %s", i, strerror(-rc));
			return rc;
		}
	}
	return 0;
}

/* Bridges start once the broker is fully started. */
static void start_bridges(keel_broker *b)
{
	for (unsigned i = 0; i < b->bridge_count; i++) {
		if (b->bridges[i] == NULL)
			continue;
		int rc = keel_bridge_start(b->bridges[i]);
		if (rc < 0) {
			keel_log_error("bridge %s: cannot start: %s",
				       keel_bridge_name(b->bridges[i]), strerror(-rc));
			keel_events_emit(b->events, "error", "{s:s, s:s}", "message",
					 "bridge cannot start", "bridge",
					 keel_bridge_name(b->bridges[i]));
		}
	}
}

/* With a manager a live past its session's lease takes no client. */
static bool may_accept(void *ud)
{
	keel_broker *b = ud;
	return b->repl == NULL || keel_replman_may_serve(b->repl);
}

/* The STOMP acceptor (acceptor.listening). */
static int listen_clients(keel_broker *b, char *err, size_t errlen)
{
	const keel_config *cfg = b->cfg;
	keel_server_options so = {
		.loop = &b->loop,
		.name = "stomp",
		.host = b->host,
		.port = b->listen_port,
		.env = &b->env,
		.write_high_watermark = (size_t)cfg->write_high_watermark_bytes,
		.write_low_watermark = (size_t)cfg->write_low_watermark_bytes,
		.connection_ttl_ms = cfg->connection_ttl,
		.handshake_timeout_ms = cfg->handshake_timeout,
		.may_accept = may_accept,
		.may_accept_ud = b,
	};
	int rc = keel_server_create(&b->server, &so);
	if (rc < 0) {
		b->server = NULL;
		snprintf(err, errlen, "cannot listen on %s: %s", cfg->listen, uv_strerror(rc));
		return rc;
	}
	b->port = keel_server_port(b->server);
	const char *bound = keel_server_host(b->server);
	keel_events_emit(b->events, "acceptor.listening", "{s:s, s:s, s:i}", "name", "stomp",
			 "host", bound, "port", (int)b->port);
	keel_log_info(strchr(bound, ':') ? "listening on [%s]:%u" : "listening on %s:%u", bound,
		      (unsigned)b->port);
	return 0;
}

/* ---- the HA machine's requests (replman.h) ------------------------------ */

static int h_load_journal(void *ud, char *err, size_t errlen)
{
	keel_broker *b = ud;
	if (b->journal != NULL) {
		snprintf(err, errlen, "journal already loaded");
		return -EALREADY;
	}
	return load_journal(b, err, errlen);
}

static keel_journal *h_journal(void *ud)
{
	return ((keel_broker *)ud)->journal;
}

static int h_open_acceptor(void *ud, char *err, size_t errlen)
{
	keel_broker *b = ud;
	if (b->server_closing) {
		snprintf(err, errlen, "the client acceptor is still closing");
		return -EBUSY;
	}
	int rc = create_bridges(b, err, errlen);
	if (rc == 0)
		rc = listen_clients(b, err, errlen);
	if (rc == 0)
		start_bridges(b);
	return rc;
}

static void finish_deactivate(keel_broker *b);

static void on_acceptor_closed(void *ud)
{
	keel_broker *b = ud;
	b->server_closing = false;
	if (b->shutting_down)
		on_server_stopped(b);
	else if (b->deact_done)
		finish_deactivate(b);
}

static void h_close_acceptor(void *ud)
{
	keel_broker *b = ud;
	bridges_destroy(b);
	keel_server *s = b->server;
	b->server = NULL;
	b->port = 0;
	if (s != NULL) {
		b->server_closing = true;
		keel_server_stop(s, on_acceptor_closed, b);
	}
}

/* Restart as backup, second half: the old journal's handles are closed
 * (it is freed before the core whose objects it indexes), then a core
 * built from the config; the manager goes on. */
static void on_reap_timer(uv_timer_t *t)
{
	keel_broker *b = t->data;
	void (*done)(void *) = b->deact_done;
	void *arg = b->deact_arg;
	b->deact_done = NULL;
	keel_journal_free(b->dead_journal);
	b->dead_journal = NULL;
	keel_large_stopping(true); /* persistent bodies stay (a replica replaces them) */
	keel_core_free(b->core);
	keel_large_stopping(false);
	b->core = NULL;
	keel_core_options co = { .now_ms = wall_now_ms, .node = b->cfg->name,
				 .global_max_size_bytes = b->cfg->global_max_size_bytes,
				 .max_auto_created_addresses = b->cfg->max_auto_created_addresses };
	char err[256];
	int rc = keel_core_create(&b->core, &co);
	if (rc == 0)
		rc = apply_config(b->core, b->cfg, err, sizeof(err));
	if (rc < 0) {
		/* the config applied at start: only memory can fail here */
		keel_log_error("cannot restart as backup: %s", strerror(-rc));
		abort();
	}
	b->env.core = b->core;
	b->mgmt.core = b->core;
	if (done)
		done(arg);
}

/* The stopped journal's handles are closed (their close callbacks ran):
 * it may be freed, on the next loop turn. */
static void on_dead_journal_closed(void *arg)
{
	keel_broker *b = arg;
	uv_timer_start(&b->reap_timer, on_reap_timer, 0, 0);
}

/* Restart as backup, first half (the acceptor is gone): stop the journal;
 * the rest follows once its handles are closed.  (This may run inside a
 * close callback, whose own uv_close calls complete only at the end of
 * the next loop turn: a timer started now would fire first.) */
static void finish_deactivate(keel_broker *b)
{
	/* the pager goes first: it writes through the journal and points
	 * into the core that is rebuilt */
	keel_paging_stop(b->paging);
	keel_paging_free(b->paging);
	b->paging = NULL;
	keel_journal_stop(b->journal);
	assert(b->dead_journal == NULL);
	b->dead_journal = b->journal;
	b->journal = NULL;
	b->env.sync = NULL;
	if (b->dead_journal)
		keel_journal_when_closed(b->dead_journal, on_dead_journal_closed, b);
	else
		on_dead_journal_closed(b);
}

static void h_deactivate(void *ud, void (*done)(void *arg), void *arg)
{
	keel_broker *b = ud;
	h_close_acceptor(b); /* already closed: nothing */
	b->deact_done = done;
	b->deact_arg = arg;
	if (!b->server_closing)
		finish_deactivate(b);
}

static void h_stop(void *ud)
{
	broker_shutdown(ud);
}

static void h_state(void *ud, keel_ha_state st)
{
	keel_broker *b = ud;
	if (st == b->ha_state)
		return;
	b->ha_state = st;
	if (st == KEEL_HA_STOPPED)
		return; /* said once everything is stopped (on_server_stopped) */
	keel_log_info("state %s", keel_ha_state_name(st));
	keel_events_emit(b->events, "state", "{s:s}", "state", keel_ha_state_name(st));
}

static int create_replman(keel_broker *b, char *err, size_t errlen)
{
	keel_replman_options o = {
		.loop = &b->loop,
		.cfg = b->cfg->ha,
		.data_dir = b->cfg->data_dir,
		.large_dir = b->large_dir,
		.events = b->events,
		.auth = b->auth,
		.host = {
			.load_journal = h_load_journal,
			.journal = h_journal,
			.open_acceptor = h_open_acceptor,
			.close_acceptor = h_close_acceptor,
			.deactivate = h_deactivate,
			.stop = h_stop,
			.state = h_state,
			.ud = b,
		},
	};
	b->ha_state = KEEL_HA_STARTING; /* said by keel_broker_create */
	b->mgmt = (keel_mgmt_env){ .core = b->core, .node = b->cfg->name,
				   .start_mono_ms = uv_hrtime() / 1000000, .state = mgmt_state,
				   .connection_count = mgmt_connection_count,
				   .bridge_status = mgmt_bridge_status,
				   .bridge_control = mgmt_bridge_control,
				   .ha_status = mgmt_ha_status, .ud = b };
	int rc = keel_replman_create(&b->repl, &o, err, errlen);
	/* a corrupt identity file is bad input, like a corrupt journal: exit 2 */
	return rc == -EBADMSG ? -EINVAL : rc;
}

int keel_broker_create(keel_broker **out, const keel_config *cfg, char *err, size_t errlen)
{
	char host[256];
	uint16_t port = 0;
	int rc;
	err[0] = '\0';
	keel_broker *b = keel_calloc(1, sizeof(*b));
	if (b == NULL) {
		snprintf(err, errlen, "out of memory");
		return -ENOMEM;
	}
	b->cfg = cfg;
	b->state = KEEL_BROKER_STARTING;
	keel_log_set_name(cfg->name);
	keel_log_level level;
	if (keel_log_parse_level(cfg->log_level, &level) == 0)
		keel_log_set_level(level);

	rc = keel_events_open(&b->events, cfg->events, cfg->name);
	if (rc < 0) {
		snprintf(err, errlen, "events: %s: %s", cfg->events, strerror(-rc));
		rc = -EINVAL;
		goto fail;
	}
	set_state(b, KEEL_BROKER_STARTING);

	rc = keel_parse_hostport(cfg->listen, host, sizeof(host), &port);
	if (rc < 0) {
		snprintf(err, errlen, "listen: expected HOST:PORT, got '%s'", cfg->listen);
		goto fail;
	}
	rc = keel_security_create(&b->security, cfg, err, errlen);
	if (rc < 0)
		goto fail;
	rc = check_posture(cfg, host, err, errlen);
	if (rc < 0)
		goto fail;
	snprintf(b->host, sizeof(b->host), "%s", host);
	b->listen_port = port;
	keel_core_options co = { .now_ms = wall_now_ms, .node = cfg->name,
				 .global_max_size_bytes = cfg->global_max_size_bytes,
				 .max_auto_created_addresses = cfg->max_auto_created_addresses };
	rc = keel_core_create(&b->core, &co);
	if (rc < 0) {
		snprintf(err, errlen, "core: %s", strerror(-rc));
		goto fail;
	}
	rc = apply_config(b->core, cfg, err, errlen);
	if (rc < 0)
		goto fail;

	rc = uv_loop_init(&b->loop);
	if (rc < 0) {
		snprintf(err, errlen, "event loop: %s", uv_strerror(rc));
		goto fail;
	}
	b->loop_open = true;
	uv_signal_init(&b->loop, &b->sig_term);
	uv_signal_init(&b->loop, &b->sig_int);
	uv_timer_init(&b->loop, &b->expire_timer);
	uv_timer_init(&b->loop, &b->reap_timer);
	b->sig_term.data = b->sig_int.data = b->expire_timer.data = b->reap_timer.data = b;
	b->handles_started = true;
	keel_auth_options ao = { .loop = &b->loop, .security = b->security,
				 .events = b->events };
	rc = keel_auth_create(&b->auth, &ao);
	if (rc < 0) {
		snprintf(err, errlen, "out of memory");
		goto fail;
	}

	/* Large messages: their files, unfinished ones from a crash removed. */
	size_t dlen = strlen(cfg->data_dir) + sizeof("/large-messages");
	b->large_dir = keel_malloc(dlen);
	if (b->large_dir == NULL) {
		snprintf(err, errlen, "out of memory");
		rc = -ENOMEM;
		goto fail;
	}
	snprintf(b->large_dir, dlen, "%s/large-messages", cfg->data_dir);
	rc = keel_large_dir_prepare(b->large_dir);
	if (rc < 0) {
		snprintf(err, errlen, "large messages: %s: %s", b->large_dir, strerror(-rc));
		goto fail;
	}

	if (cfg->ha == NULL) {
		rc = load_journal(b, err, errlen);
		if (rc == 0)
			rc = create_bridges(b, err, errlen);
		if (rc == 0)
			rc = listen_clients(b, err, errlen);
	} else {
		rc = create_replman(b, err, errlen);
	}
	if (rc < 0)
		goto fail;

	uv_signal_start(&b->sig_term, on_signal, SIGTERM);
	uv_signal_start(&b->sig_int, on_signal, SIGINT);
	uv_timer_start(&b->expire_timer, on_expire_timer, KEEL_EXPIRY_SCAN_MS,
		       KEEL_EXPIRY_SCAN_MS);
	*out = b;
	return 0;

fail:
	if (b->events) {
		keel_events_emit(b->events, "error", "{s:s}", "message", err);
		set_state(b, KEEL_BROKER_STOPPED);
	}
	broker_destroy(b);
	return rc;
}

int keel_broker_run(keel_broker *b)
{
	assert(b->state == KEEL_BROKER_STARTING);
	if (b->repl) {
		/* the HA machine says when the node is LIVE (or a backup) */
		keel_replman_start(b->repl);
	} else {
		/* Every acceptor listens and the journal is loaded: fully started. */
		set_state(b, KEEL_BROKER_LIVE);
		start_bridges(b);
	}
	uv_run(&b->loop, UV_RUN_DEFAULT);
	if (b->state != KEEL_BROKER_STOPPED) {
		keel_log_error("event loop ended in state %s", keel_broker_state_name(b->state));
		return -EIO;
	}
	return 0;
}

keel_broker_state keel_broker_get_state(const keel_broker *b)
{
	return b->state;
}

uint16_t keel_broker_port(const keel_broker *b)
{
	return b->port;
}

uv_loop_t *keel_broker_loop(keel_broker *b)
{
	return &b->loop;
}

/* A stack as a JSON array of frames in tool form (lc_sym.h). */
static json_t *stack_json(const lc_frame *frames, int n)
{
	json_t *a = json_array();
	char buf[400];
	for (int i = 0; i < n && a != NULL; i++) {
		lc_frame_tool(&frames[i], buf, sizeof(buf));
		json_array_append_new(a, json_string(buf));
	}
	return a;
}

int keel_broker_check_leaks(keel_broker *b, const struct lc_snapshot *before, bool passed)
{
	lc_report *r = NULL;
	lc_check_opts o = { .kinds = LC_THREAD, .passed = passed, .grace_ms = -1 };
	int rc = lc_check(before, &o, &r);
	if (rc < 0) {
		keel_log_error("leak check: %s", strerror(-rc));
		return rc;
	}
	lc_report_print(r, stdout);
	for (size_t i = 0; i < r->count; i++) {
		const lc_leak *l = &r->leaks[i];
		char state[2] = { l->state, '\0' };
		char line[LC_LINE_MAX];
		/* the contract line on stderr too: keel-leaks scan reads logs */
		lc_leak_format(l, line, sizeof(line));
		keel_log_error("%s", line);
		keel_events_emit(b->events, "thread.leak",
				 "{s:s, s:i, s:s, s:s, s:s, s:s, s:o, s:s, s:o}", "name", l->name,
				 "tid", l->id, "state", state, "created-at", l->created_at, "owner",
				 l->owner, "test", l->test, "stack", stack_json(l->stack, l->nstack),
				 "stack-note", l->stack_note, "created-stack",
				 stack_json(l->frames, l->nframes));
	}
	rc = (int)r->count;
	lc_report_free(r);
	return rc;
}

void keel_broker_free(keel_broker *b)
{
	if (b == NULL)
		return;
	broker_destroy(b);
}
