/*
 * auth.c - password checks on libuv's threadpool, failed logins limited
 * per source address and per user (see auth.h).
 *
 * Owns the requests (a FIFO of waiting ones, the running ones, the failed
 * ones whose answer is delayed), the table of keys (a source address or a
 * user name with its consecutive failures) and one timer.  Loop thread
 * only, but for work_run, which runs on a pool thread and touches only its
 * own request and the immutable keel_security.
 * Invariants: in_flight <= max_in_flight; a request is on the waiting or
 * the delayed list, or running (on neither); each key it holds counts it
 * (waiting, or running while it runs or its answer waits); a key is freed
 * only when nothing counts it and it has no failure to remember.
 */
#include "auth.h"

#include <assert.h>
#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include "keel/alloc.h"
#include "limits.h"
#include "log.h"

#define uthash_malloc(sz) keel_malloc(sz)
#define uthash_free(ptr, sz) keel_free(ptr)
#include <uthash.h>

#define container_of(ptr, type, member) ((type *)((char *)(ptr) - offsetof(type, member)))

/* A source address ("a 10.0.0.7"), a user ("u alice") or a cluster user
 * ("c keel-cluster"). */
typedef struct akey {
	UT_hash_handle hh;
	unsigned failures;          /* consecutive; 0 after a success */
	uint64_t last_failure_ms;   /* uv_now */
	uint64_t blocked_until_ms;  /* no check of this key starts before */
	unsigned waiting;           /* requests waiting that hold it */
	unsigned running;           /* requests running or answering late that hold it */
	char name[];
} akey;

typedef enum req_state {
	R_WAITING = 1,
	R_RUNNING,
	R_DELAYED, /* failed; the answer goes at due_ms */
} req_state;

struct keel_auth_req {
	uv_work_t work;
	keel_auth *a;
	req_state state;
	bool detached;              /* the requester is gone: no answer */
	keel_auth_kind kind;
	keel_auth_cb cb;
	void *ud;
	akey *keys[2];              /* address, user; NULL: not tracked */
	keel_auth_req *prev, *next; /* the waiting or the delayed list */
	int status;                 /* the check's result (work_run) */
	const keel_principal *principal;
	uint64_t due_ms;
	const char *address, *user, *password; /* in text[]; user/password may be NULL */
	size_t password_len;
	char text[];
};

typedef struct req_list {
	keel_auth_req *head, *tail;
	unsigned count;
} req_list;

struct keel_auth {
	uv_loop_t *loop;
	const keel_security *sec;
	keel_events *events;
	unsigned max_in_flight;
	unsigned max_waiting;
	unsigned max_waiting_per_key;
	uint32_t delay_base_ms;
	uint32_t delay_max_ms;
	keel_auth_check_fn check;
	void *check_ud;
	uv_timer_t timer;
	bool closed;                /* keel_auth_close called */
	bool timer_closed;          /* its close callback ran */
	unsigned in_flight;
	req_list waiting;
	req_list delayed;
	akey *keys;
	unsigned key_count;
};

/* ---- lists and keys ----------------------------------------------------- */

static void list_push(req_list *l, keel_auth_req *r)
{
	r->prev = l->tail;
	r->next = NULL;
	if (l->tail)
		l->tail->next = r;
	else
		l->head = r;
	l->tail = r;
	l->count++;
}

static void list_remove(req_list *l, keel_auth_req *r)
{
	if (r->prev)
		r->prev->next = r->next;
	else
		l->head = r->next;
	if (r->next)
		r->next->prev = r->prev;
	else
		l->tail = r->prev;
	r->prev = r->next = NULL;
	assert(l->count > 0);
	l->count--;
}

static void key_free(keel_auth *a, akey *k)
{
	HASH_DEL(a->keys, k);
	a->key_count--;
	keel_free(k);
}

/* The key `kind` + `name`, created when missing (NULL: the table is full
 * of keys in use, or out of memory: not tracked).  Failures older than
 * KEEL_AUTH_FORGET_MS are forgotten here. */
static akey *key_get(keel_auth *a, char kind, const char *name, uint64_t now)
{
	char buf[KEEL_MAX_NAME_LEN + 3];
	int n = snprintf(buf, sizeof(buf), "%c %s", kind, name ? name : "");
	if (n < 0)
		return NULL;
	if ((size_t)n >= sizeof(buf))
		n = (int)sizeof(buf) - 1; /* a longer name shares its key: still limited */
	akey *k = NULL;
	HASH_FIND(hh, a->keys, buf, (size_t)n, k);
	if (k != NULL) {
		if (k->failures > 0 && now - k->last_failure_ms >= KEEL_AUTH_FORGET_MS) {
			k->failures = 0;
			k->blocked_until_ms = 0;
		}
		return k;
	}
	if (a->key_count >= KEEL_AUTH_MAX_TRACKED) {
		/* oldest first (a failure moves a key to the end) */
		akey *old, *tmp;
		HASH_ITER(hh, a->keys, old, tmp) {
			if (old->waiting == 0 && old->running == 0) {
				key_free(a, old);
				break;
			}
		}
		if (a->key_count >= KEEL_AUTH_MAX_TRACKED)
			return NULL;
	}
	k = keel_calloc(1, sizeof(*k) + (size_t)n + 1);
	if (k == NULL)
		return NULL;
	memcpy(k->name, buf, (size_t)n);
	HASH_ADD(hh, a->keys, name[0], (size_t)n, k);
	a->key_count++;
	return k;
}

/* Nothing counts `k` any more: free it unless it has failures to keep. */
static void key_put(keel_auth *a, akey *k)
{
	if (k != NULL && k->waiting == 0 && k->running == 0 && k->failures == 0)
		key_free(a, k);
}

/* ---- requests ------------------------------------------------------------ */

static void req_release_keys(keel_auth_req *r)
{
	for (int i = 0; i < 2; i++) {
		akey *k = r->keys[i];
		if (k == NULL)
			continue;
		if (r->state == R_WAITING) {
			assert(k->waiting > 0);
			k->waiting--;
		} else {
			assert(k->running > 0);
			k->running--;
		}
		r->keys[i] = NULL;
		key_put(r->a, k);
	}
}

static void req_free(keel_auth_req *r)
{
	explicit_bzero(r->text, r->password_len); /* the password is first in text */
	keel_free(r);
}

/* Off every list: release the keys, answer (unless detached), free. */
static void answer(keel_auth_req *r, int status)
{
	keel_auth_cb cb = r->detached ? NULL : r->cb;
	void *ud = r->ud;
	const keel_principal *p = status == 0 ? r->principal : NULL;
	req_release_keys(r);
	req_free(r);
	if (cb != NULL)
		cb(status, p, ud);
}

/* ---- the threadpool -------------------------------------------------------- */

static int security_check(void *ud, keel_auth_kind kind, const char *user, const char *password,
			  const keel_principal **out)
{
	const keel_security *sec = ud;
	if (kind == KEEL_AUTH_CLUSTER)
		return keel_security_cluster_check(sec, user, password);
	return keel_security_authenticate(sec, user, password, out);
}

/* On a pool thread: the request's strings and the immutable security. */
static void work_run(uv_work_t *w)
{
	keel_auth_req *r = container_of(w, keel_auth_req, work);
	keel_auth *a = r->a;
	r->status = a->check(a->check_ud, r->kind, r->user, r->password, &r->principal);
}

static void pump(keel_auth *a);

static uint32_t delay_for(const keel_auth *a, unsigned failures)
{
	assert(failures > 0);
	uint64_t d = a->delay_base_ms;
	for (unsigned i = 1; i < failures && d < a->delay_max_ms; i++)
		d *= 2;
	return (uint32_t)(d < a->delay_max_ms ? d : a->delay_max_ms);
}

/* A check failed: count it for both keys, delay the answer. */
static void failed(keel_auth *a, keel_auth_req *r, uint64_t now)
{
	unsigned n = 0;
	char kinds[2] = { 'a', r->kind == KEEL_AUTH_CLUSTER ? 'c' : 'u' };
	const char *names[2] = { r->address, r->user };
	for (int i = 0; i < 2; i++) {
		akey *k = r->keys[i];
		if (k == NULL) { /* not tracked when queued: room now? */
			k = key_get(a, kinds[i], names[i], now);
			if (k == NULL)
				continue;
			k->running++;
			r->keys[i] = k;
		}
		k->failures++;
		k->last_failure_ms = now;
		HASH_DEL(a->keys, k); /* to the end: the last one evicted */
		HASH_ADD(hh, a->keys, name[0], strlen(k->name), k);
		if (k->failures > n)
			n = k->failures;
	}
	if (n == 0)
		n = 1; /* neither key tracked (table full): still one failure */
	uint32_t delay = delay_for(a, n);
	for (int i = 0; i < 2; i++) {
		if (r->keys[i] != NULL && r->keys[i]->blocked_until_ms < now + delay)
			r->keys[i]->blocked_until_ms = now + delay;
	}
	const char *acceptor = r->kind == KEEL_AUTH_CLUSTER ? "replication" : "stomp";
	keel_log_info("%s: authentication failed for %suser '%s' (%u in a row; answer in %u ms)",
		      r->address, r->kind == KEEL_AUTH_CLUSTER ? "cluster " : "",
		      r->user ? r->user : "", n, (unsigned)delay);
	keel_events_emit(a->events, "auth.failed", "{s:s, s:s, s:i, s:i, s:s}", "user",
			 r->user ? r->user : "", "address", r->address, "failures", (int)n,
			 "delay-ms", (int)delay, "acceptor", acceptor);
	if (r->detached) {
		answer(r, -EACCES);
		return;
	}
	r->state = R_DELAYED;
	r->due_ms = now + delay;
	list_push(&a->delayed, r);
}

/* Back on the loop. */
static void work_done(uv_work_t *w, int status)
{
	keel_auth_req *r = container_of(w, keel_auth_req, work);
	keel_auth *a = r->a;
	assert(r->state == R_RUNNING && a->in_flight > 0);
	a->in_flight--;
	explicit_bzero(r->text, r->password_len);
	uint64_t now = uv_now(a->loop);
	if (status < 0 || a->closed) {
		answer(r, status < 0 ? status : -ECANCELED);
	} else if (r->status == 0) {
		for (int i = 0; i < 2; i++) {
			if (r->keys[i] != NULL) {
				r->keys[i]->failures = 0;
				r->keys[i]->blocked_until_ms = 0;
			}
		}
		answer(r, 0);
	} else if (r->status == -EACCES) {
		failed(a, r, now);
	} else {
		answer(r, r->status); /* could not check (-ENOMEM): not a failure */
	}
	if (!a->closed)
		pump(a);
}

/* ---- scheduling ------------------------------------------------------------- */

/* May `r` start now?  If a key's delay is what stops it, *wake_ms says
 * when to look again (a key held by a running check: its end pumps). */
static bool eligible(const keel_auth_req *r, uint64_t now, uint64_t *wake_ms)
{
	bool ok = true;
	for (int i = 0; i < 2; i++) {
		const akey *k = r->keys[i];
		if (k == NULL || k->failures == 0)
			continue;
		if (k->running > 0) {
			ok = false;
		} else if (now < k->blocked_until_ms) {
			ok = false;
			if (k->blocked_until_ms < *wake_ms)
				*wake_ms = k->blocked_until_ms;
		}
	}
	return ok;
}

static void start(keel_auth *a, keel_auth_req *r)
{
	list_remove(&a->waiting, r);
	for (int i = 0; i < 2; i++) {
		if (r->keys[i] != NULL) {
			r->keys[i]->waiting--;
			r->keys[i]->running++;
		}
	}
	r->state = R_RUNNING;
	a->in_flight++;
	int rc = uv_queue_work(a->loop, &r->work, work_run, work_done);
	assert(rc == 0); /* fails only without a work callback */
	(void)rc;
}

static void on_timer(uv_timer_t *t);

/*
 * Answer the delayed failures that are due (one at a time: an answer may
 * detach other requests), start waiting checks that may (in order, while
 * slots are free), arm the timer for the next thing due.  Called only from
 * libuv callbacks (the timer, work_done), never inside keel_auth_* calls.
 */
static void pump(keel_auth *a)
{
	assert(!a->closed);
	uint64_t now = uv_now(a->loop);
	for (;;) {
		keel_auth_req *r = a->delayed.head;
		while (r != NULL && r->due_ms > now)
			r = r->next;
		if (r == NULL)
			break;
		list_remove(&a->delayed, r);
		answer(r, -EACCES);
		if (a->closed)
			return; /* the answer closed us */
	}
	uint64_t wake = UINT64_MAX;
	keel_auth_req *next;
	for (keel_auth_req *r = a->waiting.head; r != NULL && a->in_flight < a->max_in_flight;
	     r = next) {
		next = r->next;
		if (eligible(r, now, &wake))
			start(a, r);
	}
	for (keel_auth_req *r = a->delayed.head; r != NULL; r = r->next)
		if (r->due_ms < wake)
			wake = r->due_ms;
	if (wake == UINT64_MAX)
		uv_timer_stop(&a->timer);
	else
		uv_timer_start(&a->timer, on_timer, wake > now ? wake - now : 0, 0);
}

static void on_timer(uv_timer_t *t)
{
	pump(container_of(t, keel_auth, timer));
}

/* Look again on the next loop turn (not inside the caller's call). */
static void pump_soon(keel_auth *a)
{
	if (!a->closed)
		uv_timer_start(&a->timer, on_timer, 0, 0);
}

/* ---- the interface ------------------------------------------------------------ */

int keel_auth_create(keel_auth **out, const keel_auth_options *opt)
{
	keel_auth *a = keel_calloc(1, sizeof(*a));
	if (a == NULL)
		return -ENOMEM;
	a->loop = opt->loop;
	a->sec = opt->security;
	a->events = opt->events;
	a->max_in_flight = opt->max_in_flight ? opt->max_in_flight : KEEL_AUTH_MAX_IN_FLIGHT;
	a->max_waiting = opt->max_waiting ? opt->max_waiting : KEEL_AUTH_MAX_WAITING;
	a->max_waiting_per_key = opt->max_waiting_per_key ? opt->max_waiting_per_key
							  : KEEL_AUTH_MAX_WAITING_PER_KEY;
	a->delay_base_ms = opt->delay_base_ms ? opt->delay_base_ms : KEEL_AUTH_DELAY_BASE_MS;
	a->delay_max_ms = opt->delay_max_ms ? opt->delay_max_ms : KEEL_AUTH_DELAY_MAX_MS;
	if (a->delay_max_ms < a->delay_base_ms)
		a->delay_max_ms = a->delay_base_ms;
	a->check = opt->check ? opt->check : security_check;
	a->check_ud = opt->check ? opt->check_ud : (void *)opt->security;
	int rc = uv_timer_init(a->loop, &a->timer);
	assert(rc == 0); /* cannot fail on Linux */
	(void)rc;
	*out = a;
	return 0;
}

int keel_auth_check(keel_auth *a, keel_auth_kind kind, const char *address, const char *user,
		    const char *password, keel_auth_cb cb, void *ud, keel_auth_req **out)
{
	assert(cb != NULL);
	if (a->closed)
		return -ESHUTDOWN;
	if (a->waiting.count >= a->max_waiting)
		return -EBUSY;
	if (address == NULL)
		address = "?";
	size_t lp = password ? strlen(password) + 1 : 0;
	size_t lu = user ? strlen(user) + 1 : 0;
	size_t la = strlen(address) + 1;
	keel_auth_req *r = keel_calloc(1, sizeof(*r) + lp + lu + la);
	if (r == NULL)
		return -ENOMEM;
	/* the password first: password_len bytes from text[0] are wiped */
	char *p = r->text;
	if (password) {
		memcpy(p, password, lp);
		r->password = p;
		r->password_len = lp;
		p += lp;
	}
	if (user) {
		memcpy(p, user, lu);
		r->user = p;
		p += lu;
	}
	memcpy(p, address, la);
	r->address = p;
	r->a = a;
	r->kind = kind;
	r->cb = cb;
	r->ud = ud;
	r->state = R_WAITING;
	uint64_t now = uv_now(a->loop);
	r->keys[0] = key_get(a, 'a', r->address, now);
	r->keys[1] = key_get(a, kind == KEEL_AUTH_CLUSTER ? 'c' : 'u', r->user, now);
	for (int i = 0; i < 2; i++) {
		akey *k = r->keys[i];
		if (k != NULL && k->failures > 0 && k->waiting >= a->max_waiting_per_key) {
			key_put(a, r->keys[0]);
			if (r->keys[1] != r->keys[0])
				key_put(a, r->keys[1]);
			req_free(r);
			return -EBUSY;
		}
	}
	for (int i = 0; i < 2; i++)
		if (r->keys[i] != NULL)
			r->keys[i]->waiting++;
	list_push(&a->waiting, r);
	pump_soon(a);
	*out = r;
	return 0;
}

void keel_auth_detach(keel_auth_req *r)
{
	keel_auth *a = r->a;
	switch (r->state) {
	case R_WAITING:
		list_remove(&a->waiting, r);
		req_release_keys(r);
		req_free(r);
		break;
	case R_RUNNING:
		r->detached = true; /* work_done frees it */
		break;
	case R_DELAYED:
		/* the key stays blocked until the delay is over */
		list_remove(&a->delayed, r);
		req_release_keys(r);
		req_free(r);
		break;
	}
	pump_soon(a); /* a check it held back may go */
}

/* The timer is closed: every request still waiting or delayed ends. */
static void on_timer_closed(uv_handle_t *h)
{
	keel_auth *a = container_of((uv_timer_t *)h, keel_auth, timer);
	a->timer_closed = true;
	keel_auth_req *r;
	while ((r = a->waiting.head) != NULL) {
		list_remove(&a->waiting, r);
		answer(r, -ECANCELED); /* may detach others: from the head again */
	}
	while ((r = a->delayed.head) != NULL) {
		list_remove(&a->delayed, r);
		answer(r, -ECANCELED);
	}
}

void keel_auth_close(keel_auth *a)
{
	if (a == NULL || a->closed)
		return;
	a->closed = true;
	uv_close((uv_handle_t *)&a->timer, on_timer_closed);
}

void keel_auth_free(keel_auth *a)
{
	if (a == NULL)
		return;
	/* closed, and the loop ran until every check ended */
	assert(a->timer_closed && a->in_flight == 0);
	assert(a->waiting.head == NULL && a->delayed.head == NULL);
	akey *k, *tmp;
	HASH_ITER(hh, a->keys, k, tmp)
		key_free(a, k);
	assert(a->key_count == 0);
	keel_free(a);
}

unsigned keel_auth_in_flight(const keel_auth *a)
{
	return a->in_flight;
}

unsigned keel_auth_waiting(const keel_auth *a)
{
	return a->waiting.count;
}
