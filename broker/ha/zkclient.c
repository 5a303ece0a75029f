/*
 * zkclient.c - the pair's ZooKeeper (zkclient.h): a session, the lock
 * recipe, C's read and compare-and-set, on libzookeeper_mt.
 * The client's threads (zk-io, zk-completion) only fill a message and
 * queue it (mutex) with a uv_async wake-up; the loop takes messages in
 * order and acts.  Answers carry the connection generation they were sent
 * in: one sent before a connection loss is void (ha.h: the machine never
 * hears it).  Owns the handle, the queue, the async and retry handles.
 * Invariants: at most one lock step in flight (lock_busy); lock_held and
 * lock_want never both; nothing queued survives a session's close.
 */
#include "zkclient.h"

#include <assert.h>
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <zookeeper/zookeeper.h>

#include "keel/alloc.h"
#include "limits.h"
#include "log.h"

/* A restart of the session that failed (no handle) is tried again. */
#define ZK_RETRY_MS 1000

typedef enum zkind {
	K_ENSURE = 1, /* create a parent path (answer ignored) */
	K_SYNC,       /* the sync before a read (the get decides) */
	K_GET,        /* C */
	K_CREATE,     /* C's first write */
	K_SET,        /* C's compare-and-set */
	K_LOCK_LIST,  /* the lock directory's children */
	K_LOCK_CREATE,/* our ephemeral sequential znode */
	K_LOCK_WATCH, /* exists + watch on the predecessor */
	K_LOCK_OWN,   /* exists + watch on our own znode (held) */
	K_DELETE,     /* a release */
	K_SESSION,    /* the session watcher */
	K_NODE,       /* a znode watcher */
} zkind;

typedef struct zmsg {
	struct zmsg *next;
	struct zmsg *sent_prev, *sent_next; /* keel_zk.sent (msg_new's), under qlock */
	bool tracked;
	keel_zk *z;
	zkind kind;
	uint64_t gen;
	int rc;
	int type, state;   /* watchers */
	int64_t version;   /* stat */
	char *text;        /* created name, a watcher's path, or the data (NUL added) */
	char **names;      /* children */
	size_t nnames;
} zmsg;

struct keel_zk {
	uv_loop_t *loop;
	const keel_ha_zk_cfg *cfg;
	keel_zk_ops ops;
	uv_async_t async;
	uv_timer_t retry;
	bool handles_open;
	zhandle_t *zh;
	pthread_mutex_t qlock;
	zmsg *q_head, *q_tail;
	/* every request context msg_new made and nobody freed yet: after
	 * zookeeper_close, libzookeeper_mt never calls the completions still
	 * pending (they are queued for its joined completion thread), so
	 * session_end frees what is left here */
	zmsg *sent;
	atomic_bool lost;      /* a message could not be made: recycle the connection */
	uint64_t gen;          /* + 1 whenever the connection is lost */
	bool connected;
	uint64_t session_id;
	uint64_t timeout_ms;
	uint64_t sessions;
	char pair[KEEL_HA_ZK_MAX_PATH_LEN * 2 + 2];
	char lockdir[KEEL_HA_ZK_MAX_PATH_LEN * 2 + 8];
	char seqpath[KEEL_HA_ZK_MAX_PATH_LEN * 2 + 16];
	/* the lock */
	bool lock_want, lock_held, lock_busy;
	unsigned lock_errors;  /* unexpected answers in a row (paths we cannot create) */
	uint64_t lock_req;     /* requests in this session: the znode name's prefix */
	char lock_prefix[64];  /* "<session>-<request>-lock-" */
	char lock_node[KEEL_HA_ZK_MAX_NODE_LEN];
	char watched[KEEL_HA_ZK_MAX_NODE_LEN];
	char release_node[KEEL_HA_ZK_MAX_NODE_LEN];
};

/* ---- the client's threads: queue and wake ---------------------------------- */

static void push(zmsg *m)
{
	keel_zk *z = m->z;
	pthread_mutex_lock(&z->qlock);
	if (z->q_tail)
		z->q_tail->next = m;
	else
		z->q_head = m;
	z->q_tail = m;
	pthread_mutex_unlock(&z->qlock);
	uv_async_send(&z->async);
}

static void msg_free(zmsg *m)
{
	if (m == NULL)
		return;
	if (m->tracked) {
		keel_zk *z = m->z;
		pthread_mutex_lock(&z->qlock);
		if (m->sent_prev)
			m->sent_prev->sent_next = m->sent_next;
		else
			z->sent = m->sent_next;
		if (m->sent_next)
			m->sent_next->sent_prev = m->sent_prev;
		pthread_mutex_unlock(&z->qlock);
	}
	for (size_t i = 0; i < m->nnames; i++)
		keel_free(m->names[i]);
	keel_free(m->names);
	keel_free(m->text);
	keel_free(m);
}

static void set_text(zmsg *m, const char *s, size_t n)
{
	m->text = keel_strndup(s, n);
	if (m->text == NULL)
		m->rc = ZSYSTEMERROR;
}

static void on_string(int rc, const char *value, const void *data)
{
	zmsg *m = (zmsg *)data;
	m->rc = rc;
	if (rc == ZOK && value)
		set_text(m, value, strlen(value));
	push(m);
}

static void on_void(int rc, const void *data)
{
	zmsg *m = (zmsg *)data;
	m->rc = rc;
	push(m);
}

static void on_stat(int rc, const struct Stat *st, const void *data)
{
	zmsg *m = (zmsg *)data;
	m->rc = rc;
	m->version = rc == ZOK && st ? st->version : -1;
	push(m);
}

static void on_data(int rc, const char *value, int len, const struct Stat *st, const void *data)
{
	zmsg *m = (zmsg *)data;
	m->rc = rc;
	m->version = rc == ZOK && st ? st->version : -1;
	if (rc == ZOK)
		set_text(m, value ? value : "", value && len > 0 ? (size_t)len : 0);
	push(m);
}

static void on_strings(int rc, const struct String_vector *v, const void *data)
{
	zmsg *m = (zmsg *)data;
	m->rc = rc;
	if (rc == ZOK && v && v->count > 0) {
		size_t n = (size_t)v->count;
		if (n > KEEL_HA_ZK_MAX_LOCK_CHILDREN)
			n = KEEL_HA_ZK_MAX_LOCK_CHILDREN;
		m->names = keel_calloc(n, sizeof(char *));
		for (size_t i = 0; m->names && i < n; i++) {
			m->names[i] = keel_strdup(v->data[i]);
			if (m->names[i] == NULL)
				break;
			m->nnames++;
		}
		if (m->nnames < n)
			m->rc = ZSYSTEMERROR;
	}
	push(m);
}

static void watched_event(keel_zk *z, zkind kind, int type, int state, const char *path)
{
	zmsg *m = keel_calloc(1, sizeof(*m));
	if (m == NULL) {
		atomic_store(&z->lost, true);
		uv_async_send(&z->async);
		return;
	}
	m->z = z;
	m->kind = kind;
	m->type = type;
	m->state = state;
	set_text(m, path ? path : "", path ? strlen(path) : 0);
	push(m);
}

static void on_session_watch(zhandle_t *zh, int type, int state, const char *path, void *ctx)
{
	if (type == ZOO_SESSION_EVENT)
		watched_event(ctx, K_SESSION, type, state, path);
}

static void on_node_watch(zhandle_t *zh, int type, int state, const char *path, void *ctx)
{
	if (type != ZOO_SESSION_EVENT)
		watched_event(ctx, K_NODE, type, state, path);
}

/* ---- requests (loop) --------------------------------------------------------- */

static void want_recycle(keel_zk *z)
{
	atomic_store(&z->lost, true);
	uv_async_send(&z->async);
}

static zmsg *msg_new(keel_zk *z, zkind kind)
{
	zmsg *m = keel_calloc(1, sizeof(*m));
	if (m == NULL) {
		keel_log_error("zookeeper: out of memory for a request");
		want_recycle(z);
		return NULL;
	}
	m->z = z;
	m->kind = kind;
	m->gen = z->gen;
	m->tracked = true;
	pthread_mutex_lock(&z->qlock);
	m->sent_next = z->sent;
	if (z->sent)
		z->sent->sent_prev = m;
	z->sent = m;
	pthread_mutex_unlock(&z->qlock);
	return m;
}

/* A request the client refused at once: its callback never runs. */
static void sent(keel_zk *z, zmsg *m, int rc)
{
	if (rc == ZOK)
		return;
	keel_log_warn("zookeeper: request not sent: %s", zerror(rc));
	msg_free(m);
	want_recycle(z);
}

static void ensure_paths(keel_zk *z)
{
	char p[sizeof(z->lockdir)];
	snprintf(p, sizeof(p), "%s", z->lockdir);
	/* every prefix, in order: the server applies them in order */
	for (char *s = strchr(p + 1, '/');; s = strchr(s + 1, '/')) {
		if (s)
			*s = '\0';
		zmsg *m = msg_new(z, K_ENSURE);
		if (m == NULL)
			return;
		sent(z, m, zoo_acreate(z->zh, p, "", 0, &ZOO_OPEN_ACL_UNSAFE, ZOO_PERSISTENT,
				       on_string, m));
		if (s == NULL)
			break;
		*s = '/';
	}
}

static void issue_delete(keel_zk *z)
{
	zmsg *m = msg_new(z, K_DELETE);
	if (m)
		sent(z, m, zoo_adelete(z->zh, z->release_node, -1, on_void, m));
}

static void issue_exists(keel_zk *z, zkind kind, const char *path)
{
	zmsg *m = msg_new(z, kind);
	if (m)
		sent(z, m, zoo_awexists(z->zh, path, on_node_watch, z, on_stat, m));
}

/* ---- the lock ------------------------------------------------------------------ */

/* The 10-digit sequence ZooKeeper appended; -1 for a name not ours. */
static int64_t node_seq(const char *name)
{
	const char *s = strstr(name, "-lock-");
	if (s == NULL)
		return -1;
	char *end;
	long long v = strtoll(s + 6, &end, 10);
	return *end == '\0' && v >= 0 ? v : -1;
}

static const char *base(const char *path)
{
	const char *s = strrchr(path, '/');
	return s ? s + 1 : path;
}

static void lock_step(keel_zk *z)
{
	if (!z->connected || z->lock_busy || !z->lock_want)
		return;
	zmsg *m = msg_new(z, K_LOCK_LIST);
	if (m == NULL)
		return;
	z->lock_busy = true;
	int rc = zoo_aget_children(z->zh, z->lockdir, 0, on_strings, m);
	if (rc != ZOK)
		z->lock_busy = false;
	sent(z, m, rc);
}

static void lock_create(keel_zk *z)
{
	char path[KEEL_HA_ZK_MAX_NODE_LEN];
	snprintf(path, sizeof(path), "%s/%s", z->lockdir, z->lock_prefix);
	zmsg *m = msg_new(z, K_LOCK_CREATE);
	if (m == NULL)
		return;
	z->lock_busy = true;
	int rc = zoo_acreate(z->zh, path, "", 0, &ZOO_OPEN_ACL_UNSAFE, ZOO_EPHEMERAL_SEQUENTIAL,
			     on_string, m);
	if (rc != ZOK)
		z->lock_busy = false;
	sent(z, m, rc);
}

static void new_prefix(keel_zk *z)
{
	z->lock_req++;
	snprintf(z->lock_prefix, sizeof(z->lock_prefix), "%016" PRIx64 "-%" PRIu64 "-lock-",
		 z->session_id, z->lock_req);
	z->lock_node[0] = '\0';
}

/* The children of the lock directory: find ours (by name, or by the
 * request's prefix after a create whose answer was lost), then hold the
 * lock if it is the lowest, else watch the one just below it. */
static void on_lock_list(keel_zk *z, const zmsg *m)
{
	const char *mine = NULL;
	for (size_t i = 0; i < m->nnames && !mine; i++) {
		const char *n = m->names[i];
		if (z->lock_node[0] ? strcmp(n, base(z->lock_node)) == 0
				    : strncmp(n, z->lock_prefix, strlen(z->lock_prefix)) == 0)
			mine = n;
	}
	if (mine == NULL) {
		if (z->lock_node[0]) {
			keel_log_warn("zookeeper: lock znode %s is gone: asking again", z->lock_node);
			new_prefix(z);
		}
		lock_create(z);
		return;
	}
	if (z->lock_node[0] == '\0')
		snprintf(z->lock_node, sizeof(z->lock_node), "%s/%s", z->lockdir, mine);
	int64_t my = node_seq(mine), best = -1;
	const char *pred = NULL;
	for (size_t i = 0; i < m->nnames; i++) {
		int64_t s = node_seq(m->names[i]);
		if (s >= 0 && s < my && s > best) {
			best = s;
			pred = m->names[i];
		}
	}
	if (pred == NULL) {
		z->lock_want = false;
		z->lock_held = true;
		keel_log_info("zookeeper: lock %s held", z->lock_node);
		issue_exists(z, K_LOCK_OWN, z->lock_node);
		z->ops.lock_acquired(z->ops.ud);
		return;
	}
	snprintf(z->watched, sizeof(z->watched), "%s/%s", z->lockdir, pred);
	zmsg *w = msg_new(z, K_LOCK_WATCH);
	if (w == NULL)
		return;
	z->lock_busy = true;
	int rc = zoo_awexists(z->zh, z->watched, on_node_watch, z, on_stat, w);
	if (rc != ZOK)
		z->lock_busy = false;
	sent(z, w, rc);
}

/* An answer that only a lost connection or session explains: its
 * session event follows (nothing to do). */
static bool connection_error(int rc)
{
	return rc == ZCONNECTIONLOSS || rc == ZOPERATIONTIMEOUT || rc == ZCLOSING ||
	       rc == ZSESSIONEXPIRED || rc == ZSESSIONMOVED || rc == ZINVALIDSTATE;
}

static void lock_answer(keel_zk *z, const zmsg *m)
{
	z->lock_busy = false;
	if (connection_error(m->rc))
		return; /* lock_step again once connected */
	if (!z->lock_want)
		return;
	if (m->rc == ZNONODE && m->kind != K_LOCK_WATCH) {
		/* the lock directory is missing (deleted by hand?): again */
		if (++z->lock_errors > 3) {
			keel_log_error("zookeeper: cannot create %s", z->lockdir);
			return;
		}
		ensure_paths(z);
		lock_step(z);
		return;
	}
	if (m->rc != ZOK && !(m->kind == K_LOCK_WATCH && m->rc == ZNONODE)) {
		keel_log_error("zookeeper: lock %s: %s", z->lockdir, zerror(m->rc));
		want_recycle(z);
		return;
	}
	z->lock_errors = 0;
	switch (m->kind) {
	case K_LOCK_LIST: on_lock_list(z, m); break;
	case K_LOCK_CREATE:
		snprintf(z->lock_node, sizeof(z->lock_node), "%s", m->text ? m->text : "");
		lock_step(z);
		break;
	case K_LOCK_WATCH:
		if (m->rc == ZNONODE) /* gone already: look again */
			lock_step(z);
		break;
	default: break;
	}
}

static void on_node_event(keel_zk *z, const zmsg *m)
{
	if (z->lock_want && strcmp(m->text, z->watched) == 0) {
		z->watched[0] = '\0';
		lock_step(z);
	} else if (z->lock_held && strcmp(m->text, z->lock_node) == 0) {
		if (m->type != ZOO_DELETED_EVENT) {
			issue_exists(z, K_LOCK_OWN, z->lock_node); /* watch again */
			return;
		}
		keel_log_warn("zookeeper: lock znode %s deleted", z->lock_node);
		z->lock_held = false;
		z->lock_node[0] = '\0';
		z->ops.lock_lost(z->ops.ud);
	}
}

/* ---- the session ------------------------------------------------------------------ */

static void discard_queue(keel_zk *z)
{
	pthread_mutex_lock(&z->qlock);
	zmsg *m = z->q_head;
	z->q_head = z->q_tail = NULL;
	pthread_mutex_unlock(&z->qlock);
	while (m) {
		zmsg *next = m->next;
		msg_free(m);
		m = next;
	}
}

static void session_end(keel_zk *z)
{
	if (z->zh == NULL)
		return;
	/* joins zk-io and zk-completion; answers still pending are queued
	 * (ZCLOSING) from this thread and thrown away below */
	zookeeper_close(z->zh);
	z->zh = NULL;
	discard_queue(z);
	while (z->sent) /* completions that will never come */
		msg_free(z->sent);
	z->connected = false;
	z->gen++;
	z->lock_want = z->lock_held = z->lock_busy = false;
	z->lock_node[0] = z->watched[0] = z->release_node[0] = '\0';
}

static void on_retry(uv_timer_t *t);

static int session_start(keel_zk *z)
{
	assert(z->zh == NULL);
	errno = 0;
	z->zh = zookeeper_init(z->cfg->connect, on_session_watch, (int)z->cfg->session_timeout,
			       NULL, z, 0);
	if (z->zh == NULL) {
		int rc = errno ? -errno : -ENOMEM;
		keel_log_error("zookeeper: cannot start a session with %s: %s", z->cfg->connect,
			       strerror(-rc));
		uv_timer_start(&z->retry, on_retry, ZK_RETRY_MS, 0);
		return rc;
	}
	return 0;
}

static void on_retry(uv_timer_t *t)
{
	keel_zk *z = t->data;
	if (z->zh == NULL && z->handles_open)
		(void)session_start(z);
}

static void on_connected(keel_zk *z)
{
	if (z->connected)
		return;
	z->connected = true;
	const clientid_t *id = zoo_client_id(z->zh);
	uint64_t sid = id ? (uint64_t)id->client_id : 0;
	if (sid != z->session_id) {
		z->session_id = sid;
		z->sessions++;
		z->lock_req = 0;
		keel_log_info("zookeeper: session 0x%" PRIx64 " with %s", sid, z->cfg->connect);
	}
	int t = zoo_recv_timeout(z->zh);
	z->timeout_ms = t > 0 ? (uint64_t)t : z->cfg->session_timeout;
	ensure_paths(z);
	if (z->release_node[0])
		issue_delete(z);
	if (z->lock_held)
		issue_exists(z, K_LOCK_OWN, z->lock_node); /* still there? */
	lock_step(z);
	z->ops.session(z->ops.ud, KEEL_HA_ZK_CONNECTED, z->timeout_ms);
}

static void on_disconnected(keel_zk *z)
{
	if (!z->connected)
		return;
	z->connected = false;
	z->gen++;
	z->lock_busy = false;
	z->ops.session(z->ops.ud, KEEL_HA_ZK_DISCONNECTED, 0);
}

static void on_session_event(keel_zk *z, int state)
{
	if (state == ZOO_CONNECTED_STATE) {
		on_connected(z);
	} else if (state == ZOO_EXPIRED_SESSION_STATE || state == ZOO_AUTH_FAILED_STATE) {
		keel_log_warn("zookeeper: session 0x%" PRIx64 " %s: opening a new one",
			      z->session_id, state == ZOO_EXPIRED_SESSION_STATE ? "expired"
										: "refused");
		session_end(z);
		(void)session_start(z);
		z->ops.session(z->ops.ud, KEEL_HA_ZK_EXPIRED, 0);
	} else {
		on_disconnected(z);
	}
}

/* A message that could not be made or a request refused: what it would
 * have said is unknown, so the connection is treated as lost and found
 * again (outstanding answers void, the lock looked up afresh). */
static void recycle(keel_zk *z)
{
	if (!z->connected || z->zh == NULL)
		return;
	keel_log_warn("zookeeper: a message was lost: treating the connection as lost");
	on_disconnected(z);
	if (zoo_state(z->zh) == ZOO_CONNECTED_STATE)
		on_connected(z);
}

/* ---- answers, on the loop ------------------------------------------------------------ */

static void parse_coord(const char *text, int64_t version, keel_ha_coord *c)
{
	char owner[16] = "";
	unsigned long long seq = 0;
	c->version = version;
	c->seq = 0;
	c->owner = 0;
	if (sscanf(text, "%llu %15s", &seq, owner) < 1) {
		keel_log_error("zookeeper: the activation znode holds \"%.40s\", not "
			       "\"<seq> <role>\": taken as 0", text);
		return;
	}
	c->seq = seq;
	c->owner = strcmp(owner, "primary") == 0  ? KEEL_HA_ROLE_PRIMARY
		   : strcmp(owner, "backup") == 0 ? KEEL_HA_ROLE_BACKUP
						  : 0;
}

static void handle(keel_zk *z, zmsg *m)
{
	keel_ha_coord c;
	if (m->kind == K_SESSION) {
		on_session_event(z, m->state);
		return;
	}
	if (m->kind == K_NODE) {
		on_node_event(z, m);
		return;
	}
	if (m->gen != z->gen)
		return; /* sent before the connection was lost: void */
	switch (m->kind) {
	case K_ENSURE:
	case K_SYNC:
		return;
	case K_GET:
		if (m->rc == ZOK) {
			parse_coord(m->text, m->version, &c);
		} else if (m->rc == ZNONODE) {
			c = (keel_ha_coord){ .seq = 0, .owner = 0, .version = -1 };
		} else {
			if (!connection_error(m->rc)) {
				keel_log_error("zookeeper: reading %s: %s", z->seqpath, zerror(m->rc));
				want_recycle(z);
			}
			return;
		}
		z->ops.sequence(z->ops.ud, &c);
		return;
	case K_CREATE:
	case K_SET:
		if (m->rc == ZOK) {
			z->ops.written(z->ops.ud, true, m->kind == K_CREATE ? 0 : m->version);
		} else if (m->rc == ZNODEEXISTS || m->rc == ZBADVERSION || m->rc == ZNONODE) {
			if (m->rc == ZNONODE && m->kind == K_CREATE)
				ensure_paths(z);
			z->ops.written(z->ops.ud, false, -1);
		} else if (!connection_error(m->rc)) {
			keel_log_error("zookeeper: writing %s: %s", z->seqpath, zerror(m->rc));
			want_recycle(z);
		}
		return;
	case K_LOCK_LIST:
	case K_LOCK_CREATE:
	case K_LOCK_WATCH:
		lock_answer(z, m);
		return;
	case K_LOCK_OWN:
		if (m->rc == ZNONODE && z->lock_held) {
			keel_log_warn("zookeeper: lock znode %s is gone", z->lock_node);
			z->lock_held = false;
			z->lock_node[0] = '\0';
			z->ops.lock_lost(z->ops.ud);
		}
		return;
	case K_DELETE:
		if (m->rc == ZOK || m->rc == ZNONODE)
			z->release_node[0] = '\0';
		else if (!connection_error(m->rc))
			keel_log_error("zookeeper: releasing %s: %s", z->release_node, zerror(m->rc));
		return;
	default:
		return;
	}
}

static void on_async(uv_async_t *h)
{
	keel_zk *z = h->data;
	while (z->zh != NULL) {
		pthread_mutex_lock(&z->qlock);
		zmsg *m = z->q_head;
		if (m) {
			z->q_head = m->next;
			if (z->q_head == NULL)
				z->q_tail = NULL;
		}
		pthread_mutex_unlock(&z->qlock);
		if (m == NULL)
			break;
		handle(z, m);
		msg_free(m);
	}
	if (atomic_exchange(&z->lost, false))
		recycle(z);
}

/* ---- API ----------------------------------------------------------------------------------- */

int keel_zk_create(keel_zk **out, uv_loop_t *loop, const keel_ha_zk_cfg *cfg,
		   const keel_zk_ops *ops, char *err, size_t errlen)
{
	keel_zk *z = keel_calloc(1, sizeof(*z));
	if (z == NULL) {
		snprintf(err, errlen, "out of memory");
		return -ENOMEM;
	}
	z->loop = loop;
	z->cfg = cfg;
	z->ops = *ops;
	pthread_mutex_init(&z->qlock, NULL);
	atomic_init(&z->lost, false);
	snprintf(z->pair, sizeof(z->pair), "%s/%s", cfg->root, cfg->pair_id);
	snprintf(z->lockdir, sizeof(z->lockdir), "%s/lock", z->pair);
	snprintf(z->seqpath, sizeof(z->seqpath), "%s/activation", z->pair);
	int rc = uv_async_init(loop, &z->async, on_async);
	if (rc < 0) {
		snprintf(err, errlen, "zookeeper: %s", uv_strerror(rc));
		pthread_mutex_destroy(&z->qlock);
		keel_free(z);
		return rc;
	}
	z->async.data = z;
	uv_timer_init(loop, &z->retry);
	z->retry.data = z;
	z->handles_open = true;
	zoo_set_debug_level(ZOO_LOG_LEVEL_WARN);
	*out = z;
	return 0;
}

int keel_zk_open(keel_zk *z)
{
	return session_start(z);
}

void keel_zk_acquire(keel_zk *z)
{
	if (z->zh == NULL || z->lock_want || z->lock_held)
		return; /* one request at a time (ha.h) */
	z->lock_want = true;
	z->lock_errors = 0;
	new_prefix(z);
	lock_step(z);
}

void keel_zk_release(keel_zk *z)
{
	if (!z->lock_held)
		return;
	z->lock_held = false;
	if (z->release_node[0])
		keel_log_warn("zookeeper: %s not released yet (its session will)", z->release_node);
	snprintf(z->release_node, sizeof(z->release_node), "%s", z->lock_node);
	z->lock_node[0] = '\0';
	if (z->connected)
		issue_delete(z);
}

void keel_zk_read(keel_zk *z)
{
	if (z->zh == NULL)
		return; /* between sessions: the machine asks only when connected */
	zmsg *s = msg_new(z, K_SYNC);
	if (s == NULL)
		return;
	sent(z, s, zoo_async(z->zh, z->pair, on_string, s));
	zmsg *g = msg_new(z, K_GET);
	if (g)
		sent(z, g, zoo_aget(z->zh, z->seqpath, 0, on_data, g));
}

void keel_zk_write(keel_zk *z, const keel_ha_coord *c)
{
	char data[KEEL_HA_ZK_MAX_DATA];
	int n = snprintf(data, sizeof(data), "%" PRIu64 " %s", c->seq,
			 c->owner == KEEL_HA_ROLE_PRIMARY ? "primary"
			 : c->owner == KEEL_HA_ROLE_BACKUP ? "backup" : "none");
	zmsg *m = z->zh ? msg_new(z, c->version < 0 ? K_CREATE : K_SET) : NULL;
	if (m == NULL)
		return;
	if (c->version < 0)
		sent(z, m, zoo_acreate(z->zh, z->seqpath, data, n, &ZOO_OPEN_ACL_UNSAFE,
				       ZOO_PERSISTENT, on_string, m));
	else
		sent(z, m, zoo_aset(z->zh, z->seqpath, data, n, (int)c->version, on_stat, m));
}

json_t *keel_zk_status(const keel_zk *z)
{
	char sid[24];
	snprintf(sid, sizeof(sid), "0x%" PRIx64, z->session_id);
	return json_pack("{s:s, s:s, s:s, s:I, s:I, s:s, s:s}", "connect", z->cfg->connect,
			 "session", z->connected ? "connected" : z->zh ? "disconnected" : "none",
			 "session-id", sid, "timeout-ms", (json_int_t)z->timeout_ms, "sessions",
			 (json_int_t)z->sessions, "lock",
			 z->lock_held ? "held" : z->lock_want ? "waiting" : "none", "lock-node",
			 z->lock_node);
}

void keel_zk_close(keel_zk *z)
{
	if (z == NULL || !z->handles_open)
		return;
	session_end(z);
	z->handles_open = false;
	uv_close((uv_handle_t *)&z->async, NULL);
	uv_close((uv_handle_t *)&z->retry, NULL);
}

void keel_zk_free(keel_zk *z)
{
	if (z == NULL)
		return;
	assert(!z->handles_open && z->zh == NULL);
	discard_queue(z);
	pthread_mutex_destroy(&z->qlock);
	keel_free(z);
}
