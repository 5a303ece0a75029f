/*
 * test_auth.c - keel_auth (config/auth.h): password checks on a real
 * libuv loop and its threadpool, with a check function the test holds
 * (a gate: each check waits on a pool thread until the test releases
 * it).  The bound on checks in flight, the waiting queue's bounds, the
 * growing delays per address and per user (and auth.failed), a success
 * resetting them, detaching in every state and closing with checks under
 * way.  Every test leaves no allocation behind (keel_alloc_live).  Waits
 * are loop turns with a deadline; nothing sleeps.
 */
#include <errno.h>
#include <jansson.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>
#include <uv.h>

#include "keel/alloc.h"
#include "auth.h"
#include "events.h"

#define DEADLINE_MS 10000

/* ---- the gate: the check the test holds ------------------------------------ */

typedef struct gate {
	pthread_mutex_t mu;
	pthread_cond_t cv;
	bool open;           /* checks pass through at once */
	int tokens;          /* checks allowed to finish */
	int running;         /* inside the check now */
	int max_running;
	int entered;
} gate;

static gate g = { .mu = PTHREAD_MUTEX_INITIALIZER, .cv = PTHREAD_COND_INITIALIZER };

/* The password "good" passes, any other fails. */
static int gate_check(void *ud, keel_auth_kind kind, const char *user, const char *password,
		      const keel_principal **out)
{
	(void)ud;
	(void)kind;
	(void)user;
	pthread_mutex_lock(&g.mu);
	g.entered++;
	g.running++;
	if (g.running > g.max_running)
		g.max_running = g.running;
	while (!g.open && g.tokens == 0)
		pthread_cond_wait(&g.cv, &g.mu);
	if (!g.open)
		g.tokens--;
	g.running--;
	pthread_mutex_unlock(&g.mu);
	*out = NULL;
	return password != NULL && strcmp(password, "good") == 0 ? 0 : -EACCES;
}

static int gate_get(int *field)
{
	pthread_mutex_lock(&g.mu);
	int v = *field;
	pthread_mutex_unlock(&g.mu);
	return v;
}

static void gate_release(int n, bool open)
{
	pthread_mutex_lock(&g.mu);
	g.tokens += n;
	g.open = open;
	pthread_cond_broadcast(&g.cv);
	pthread_mutex_unlock(&g.mu);
}

static void gate_reset(void)
{
	pthread_mutex_lock(&g.mu);
	g.open = false;
	g.tokens = g.running = g.max_running = g.entered = 0;
	pthread_mutex_unlock(&g.mu);
}

/* ---- answers ----------------------------------------------------------------- */

typedef struct answer {
	bool done;
	int status;
	uint64_t at_ms;      /* uv_now when it came */
	uv_loop_t *loop;
} answer;

static void on_answer(int status, const keel_principal *p, void *ud)
{
	answer *a = ud;
	(void)p;
	assert_false(a->done); /* once */
	a->done = true;
	a->status = status;
	a->at_ms = uv_now(a->loop);
}

/* ---- the fixture: a loop, a ticking timer (so a turn never blocks long),
 * an events file, the keel_auth under test -------------------------------------- */

typedef struct fx {
	uv_loop_t loop;
	uv_timer_t tick;
	keel_events *ev;
	char events_path[64];
	keel_auth *a;
	int64_t live;
} fx;

static void on_tick(uv_timer_t *t)
{
	(void)t;
}

static void fx_open(fx *f, const keel_auth_options *o)
{
	memset(f, 0, sizeof(*f));
	f->live = keel_alloc_live();
	gate_reset();
	assert_int_equal(uv_loop_init(&f->loop), 0);
	uv_timer_init(&f->loop, &f->tick);
	uv_timer_start(&f->tick, on_tick, 1, 1);
	snprintf(f->events_path, sizeof(f->events_path), "/tmp/test_auth.%d.events", (int)getpid());
	unlink(f->events_path);
	assert_int_equal(keel_events_open(&f->ev, f->events_path, "t"), 0);
	keel_auth_options ao = *o;
	ao.loop = &f->loop;
	ao.events = f->ev;
	ao.check = gate_check;
	assert_int_equal(keel_auth_create(&f->a, &ao), 0);
}

/* Turn the loop until pred(ud) holds; fails the test after DEADLINE_MS. */
static void run_until(fx *f, bool (*pred)(fx *f, void *ud), void *ud)
{
	uint64_t end = uv_now(&f->loop) + DEADLINE_MS;
	while (!pred(f, ud)) {
		if (uv_now(&f->loop) > end)
			fail_msg("condition not reached in %d ms", DEADLINE_MS);
		uv_run(&f->loop, UV_RUN_ONCE);
	}
}

static bool running_is(fx *f, void *ud)
{
	(void)f;
	return gate_get(&g.running) == *(int *)ud;
}

static bool answered(fx *f, void *ud)
{
	(void)f;
	return ((answer *)ud)->done;
}

typedef struct answers {
	answer *v;
	int n;
	int want;
} answers;

static bool n_answered(fx *f, void *ud)
{
	(void)f;
	answers *as = ud;
	int n = 0;
	for (int i = 0; i < as->n; i++)
		n += as->v[i].done;
	return n >= as->want;
}

static bool idle(fx *f, void *ud)
{
	(void)ud;
	return keel_auth_in_flight(f->a) == 0 && keel_auth_waiting(f->a) == 0;
}

static void fx_close(fx *f)
{
	gate_release(0, true); /* nothing stays held */
	keel_auth_close(f->a);
	uv_close((uv_handle_t *)&f->tick, NULL);
	uv_run(&f->loop, UV_RUN_DEFAULT);
	keel_auth_free(f->a);
	assert_int_equal(uv_loop_close(&f->loop), 0);
	keel_events_close(f->ev);
	unlink(f->events_path);
	assert_int_equal(keel_alloc_live(), f->live);
}

static void check(fx *f, const char *addr, const char *user, const char *pass, answer *ans)
{
	keel_auth_req *r = NULL;
	ans->loop = &f->loop;
	assert_int_equal(keel_auth_check(f->a, KEEL_AUTH_CLIENT, addr, user, pass, on_answer, ans,
					 &r),
			 0);
	assert_non_null(r);
}

/* The auth.failed events written so far (a new array). */
static json_t *failed_events(fx *f)
{
	json_t *all = json_array();
	FILE *fp = fopen(f->events_path, "r");
	assert_non_null(fp);
	char line[1024];
	while (fgets(line, sizeof(line), fp)) {
		json_t *e = json_loads(line, 0, NULL);
		assert_non_null(e);
		if (strcmp(json_string_value(json_object_get(e, "type")), "auth.failed") == 0)
			json_array_append(all, e);
		json_decref(e);
	}
	fclose(fp);
	return all;
}

static long ev_int(json_t *e, const char *k)
{
	json_t *v = json_object_get(e, k);
	assert_true(json_is_integer(v));
	return (long)json_integer_value(v);
}

/* ---- tests ------------------------------------------------------------------------ */

/* Never more than max_in_flight checks on the pool; the rest wait, in order,
 * and all are answered. */
static void test_in_flight_bound(void **state)
{
	(void)state;
	fx f;
	keel_auth_options o = { .max_in_flight = 2, .delay_base_ms = 1, .delay_max_ms = 1 };
	fx_open(&f, &o);
	answer ans[6] = { 0 };
	char addr[32], user[32];
	for (int i = 0; i < 6; i++) {
		snprintf(addr, sizeof(addr), "10.0.0.%d", i + 1);
		snprintf(user, sizeof(user), "u%d", i);
		check(&f, addr, user, i % 2 ? "good" : "bad", &ans[i]);
	}
	/* nothing is checked inside keel_auth_check */
	assert_int_equal(gate_get(&g.entered), 0);
	assert_int_equal(keel_auth_waiting(f.a), 6);
	int two = 2;
	run_until(&f, running_is, &two);
	/* a few more turns: still two */
	for (int i = 0; i < 20; i++)
		uv_run(&f.loop, UV_RUN_NOWAIT);
	assert_int_equal(gate_get(&g.running), 2);
	assert_int_equal(keel_auth_in_flight(f.a), 2);
	assert_int_equal(keel_auth_waiting(f.a), 4);
	/* one at a time: each release lets exactly one more in */
	answers as = { ans, 6, 0 };
	for (int k = 1; k <= 6; k++) {
		gate_release(1, false);
		as.want = k;
		run_until(&f, n_answered, &as);
	}
	run_until(&f, idle, NULL);
	assert_int_equal(gate_get(&g.max_running), 2);
	assert_int_equal(gate_get(&g.entered), 6);
	for (int i = 0; i < 6; i++)
		assert_int_equal(ans[i].status, i % 2 ? 0 : -EACCES);
	fx_close(&f);
}

/* The waiting queue is bounded: past max_waiting, -EBUSY at once (the
 * callback never runs). */
static void test_waiting_bound(void **state)
{
	(void)state;
	fx f;
	keel_auth_options o = { .max_in_flight = 1, .max_waiting = 3 };
	fx_open(&f, &o);
	answer ans[5] = { 0 };
	check(&f, "10.0.1.1", "a", "good", &ans[0]);
	check(&f, "10.0.1.2", "b", "good", &ans[1]);
	check(&f, "10.0.1.3", "c", "good", &ans[2]);
	keel_auth_req *r = NULL;
	answer busy = { 0 };
	assert_int_equal(keel_auth_check(f.a, KEEL_AUTH_CLIENT, "10.0.1.4", "d", "good",
					 on_answer, &busy, &r),
			 -EBUSY);
	int one = 1;
	run_until(&f, running_is, &one); /* one left the queue for the pool */
	check(&f, "10.0.1.5", "e", "good", &ans[3]);
	assert_int_equal(keel_auth_check(f.a, KEEL_AUTH_CLIENT, "10.0.1.6", "f", "good",
					 on_answer, &busy, &r),
			 -EBUSY);
	gate_release(0, true);
	answers as = { ans, 4, 4 };
	run_until(&f, n_answered, &as);
	for (int i = 0; i < 4; i++)
		assert_int_equal(ans[i].status, 0);
	assert_false(busy.done);
	fx_close(&f);
}

/* Consecutive failures of one address and user: doubling delays (capped)
 * on the answer, an auth.failed each; the user's count follows it to
 * another address; a success resets both; an address with failures gets
 * its checks one at a time and at most max_waiting_per_key waiting. */
static void test_delays_grow_and_reset(void **state)
{
	(void)state;
	fx f;
	keel_auth_options o = { .delay_base_ms = 20, .delay_max_ms = 80,
				.max_waiting_per_key = 2 };
	fx_open(&f, &o);
	gate_release(0, true);
	const uint32_t want[] = { 20, 40, 80, 80 };
	for (int i = 0; i < 4; i++) {
		answer a = { 0 };
		uint64_t t0 = uv_now(&f.loop);
		check(&f, "10.0.2.1", "alice", "bad", &a);
		run_until(&f, answered, &a);
		assert_int_equal(a.status, -EACCES);
		/* the answer waited at least the delay (a lower bound only) */
		assert_true(a.at_ms - t0 >= want[i]);
	}
	/* alice from elsewhere: her count goes on */
	answer a = { 0 };
	check(&f, "10.0.2.2", "alice", "bad", &a);
	run_until(&f, answered, &a);
	json_t *ev = failed_events(&f);
	assert_int_equal(json_array_size(ev), 5);
	for (size_t i = 0; i < 5; i++) {
		json_t *e = json_array_get(ev, i);
		assert_string_equal(json_string_value(json_object_get(e, "user")), "alice");
		assert_string_equal(json_string_value(json_object_get(e, "address")),
				    i < 4 ? "10.0.2.1" : "10.0.2.2");
		assert_string_equal(json_string_value(json_object_get(e, "acceptor")), "stomp");
		assert_int_equal(ev_int(e, "failures"), (long)i + 1);
		assert_int_equal(ev_int(e, "delay-ms"), i < 4 ? (long)want[i] : 80);
	}
	json_decref(ev);

	/* a success resets alice and the address */
	a = (answer){ 0 };
	check(&f, "10.0.2.1", "alice", "good", &a);
	run_until(&f, answered, &a);
	assert_int_equal(a.status, 0);
	a = (answer){ 0 };
	check(&f, "10.0.2.1", "alice", "bad", &a);
	run_until(&f, answered, &a);
	ev = failed_events(&f);
	assert_int_equal(json_array_size(ev), 6);
	assert_int_equal(ev_int(json_array_get(ev, 5), "failures"), 1);
	assert_int_equal(ev_int(json_array_get(ev, 5), "delay-ms"), 20);
	json_decref(ev);

	/* 10.0.2.1 has failed: its checks run one at a time, and only two
	 * may wait */
	gate_reset();
	answer w[2] = { 0 };
	check(&f, "10.0.2.1", "u1", "bad", &w[0]);
	check(&f, "10.0.2.1", "u2", "bad", &w[1]);
	keel_auth_req *r = NULL;
	answer busy = { 0 };
	assert_int_equal(keel_auth_check(f.a, KEEL_AUTH_CLIENT, "10.0.2.1", "u3", "bad",
					 on_answer, &busy, &r),
			 -EBUSY);
	int one = 1;
	run_until(&f, running_is, &one);
	for (int i = 0; i < 20; i++)
		uv_run(&f.loop, UV_RUN_NOWAIT);
	assert_int_equal(gate_get(&g.running), 1); /* the other waits its turn */
	gate_release(0, true);
	answers as = { w, 2, 2 };
	run_until(&f, n_answered, &as);
	assert_int_equal(gate_get(&g.max_running), 1);
	assert_false(busy.done);
	fx_close(&f);
}

/* The requester goes away while its check waits, runs or is delayed: no
 * answer, nothing leaked; closing answers the rest -ECANCELED. */
static void test_detach_and_close(void **state)
{
	(void)state;
	fx f;
	keel_auth_options o = { .max_in_flight = 1, .delay_base_ms = 50, .delay_max_ms = 50 };
	fx_open(&f, &o);
	answer running = { 0 }, waiting = { 0 };
	keel_auth_req *rr = NULL, *rw = NULL;
	running.loop = waiting.loop = &f.loop;
	assert_int_equal(keel_auth_check(f.a, KEEL_AUTH_CLIENT, "10.0.3.1", "a", "bad", on_answer,
					 &running, &rr),
			 0);
	assert_int_equal(keel_auth_check(f.a, KEEL_AUTH_CLIENT, "10.0.3.2", "b", "bad", on_answer,
					 &waiting, &rw),
			 0);
	int one = 1;
	run_until(&f, running_is, &one);
	keel_auth_detach(rw); /* waiting */
	keel_auth_detach(rr); /* running */
	gate_release(1, false);
	run_until(&f, idle, NULL);
	assert_false(running.done);
	assert_false(waiting.done);
	/* the detached failure still counted */
	json_t *ev = failed_events(&f);
	assert_int_equal(json_array_size(ev), 1);
	json_decref(ev);

	/* delayed: detached before its answer is due */
	answer delayed = { .loop = &f.loop };
	keel_auth_req *rd = NULL;
	assert_int_equal(keel_auth_check(f.a, KEEL_AUTH_CLIENT, "10.0.3.3", "c", "bad", on_answer,
					 &delayed, &rd),
			 0);
	gate_release(1, false);
	run_until(&f, idle, NULL); /* ran; its answer is delayed 50 ms */
	ev = failed_events(&f);
	assert_int_equal(json_array_size(ev), 2);
	json_decref(ev);
	keel_auth_detach(rd);

	/* close: one running, one waiting; both answered -ECANCELED */
	answer c1 = { 0 }, c2 = { 0 };
	check(&f, "10.0.3.4", "d", "good", &c1);
	check(&f, "10.0.3.5", "e", "good", &c2);
	run_until(&f, running_is, &one);
	keel_auth_close(f.a);
	keel_auth_req *r = NULL;
	assert_int_equal(keel_auth_check(f.a, KEEL_AUTH_CLIENT, "10.0.3.6", "f", "good", on_answer,
					 &c1, &r),
			 -ESHUTDOWN);
	gate_release(0, true);
	uv_close((uv_handle_t *)&f.tick, NULL);
	uv_run(&f.loop, UV_RUN_DEFAULT);
	assert_true(c1.done && c2.done);
	assert_int_equal(c1.status, -ECANCELED);
	assert_int_equal(c2.status, -ECANCELED);
	assert_false(delayed.done);
	keel_auth_free(f.a);
	assert_int_equal(uv_loop_close(&f.loop), 0);
	keel_events_close(f.ev);
	unlink(f.events_path);
	assert_int_equal(keel_alloc_live(), f.live);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_in_flight_bound),
		cmocka_unit_test(test_waiting_bound),
		cmocka_unit_test(test_delays_grow_and_reset),
		cmocka_unit_test(test_detach_and_close),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
