/*
 * test_core.c - the core: routing, queues, consumers, credits, acks,
 * redelivery, dead letters, expiry, transactions, auto-create/delete.
 *
 * A fake clock drives expiry; consumers record what they get.  Every test
 * runs keel_core_check after each step and ends with the allocation count
 * back where it started (no leaks).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <errno.h>

#include <cmocka.h>

#include "keel/alloc.h"
#include "core.h"
#include "limits.h"

/* ---- fixture ----------------------------------------------------------- */

static int64_t fake_now_ms = 1000000;

static int64_t fake_clock(void *ud)
{
	(void)ud;
	return fake_now_ms;
}

typedef struct fx {
	int64_t live0;
	keel_core *core;
} fx;

static int setup(void **state)
{
	static fx f;
	fake_now_ms = 1000000;
	f.live0 = keel_alloc_live();
	keel_core_options o = { .now_ms = fake_clock, .node = "test" };
	if (keel_core_create(&f.core, &o) != 0)
		return -1;
	*state = &f;
	return 0;
}

static int teardown(void **state)
{
	fx *f = *state;
	keel_alloc_fail_after(0);
	if (f->core) {
		keel_core_check(f->core);
		keel_core_free(f->core);
	}
	assert_int_equal(keel_alloc_live(), f->live0);
	return 0;
}

#define CHECK(core) assert_int_equal(keel_core_check(core), 0)

/* ---- recording consumers ----------------------------------------------- */

#define REC_MAX 256

typedef struct rec {
	keel_core *core;
	keel_consumer *c;
	size_t n;                    /* deliveries */
	keel_ref *ref[REC_MAX];      /* valid until acked/nacked/closed */
	uint64_t msg_id[REC_MAX];
	uint64_t delivery_id[REC_MAX];
	uint32_t dcount[REC_MAX];
	char body[REC_MAX][16];
	int closed;
	/* behaviours inside deliver() */
	bool not_ready_after_each;
	bool close_in_deliver;
	bool ack_in_deliver;
	const char *delete_queue_in_deliver;
} rec;

static void rec_deliver(keel_consumer *c, keel_ref *ref, void *ud)
{
	rec *r = ud;
	assert_true(r->n < REC_MAX);
	assert_ptr_equal(c, r->c);
	r->ref[r->n] = ref;
	r->msg_id[r->n] = ref->msg->id;
	r->delivery_id[r->n] = ref->delivery_id;
	r->dcount[r->n] = ref->delivery_count;
	size_t l = ref->msg->body_len < 15 ? ref->msg->body_len : 15;
	memcpy(r->body[r->n], ref->msg->body, l);
	r->body[r->n][l] = '\0';
	r->n++;
	if (r->not_ready_after_each)
		keel_consumer_set_ready(c, false);
	if (r->ack_in_deliver)
		assert_int_equal(keel_consumer_ack(c, ref, false, NULL), 0);
	if (r->delete_queue_in_deliver)
		assert_int_equal(keel_queue_delete(r->core, r->delete_queue_in_deliver, true), 0);
	if (r->close_in_deliver) {
		keel_consumer_close(c);
		r->c = NULL;
	}
}

static void rec_closed(keel_consumer *c, void *ud)
{
	rec *r = ud;
	assert_true(r->c == NULL || c == r->c);
	r->closed++;
	r->c = NULL;
}

static const keel_consumer_ops rec_ops = { rec_deliver, rec_closed };

static keel_consumer *consume(keel_core *core, keel_queue *q, rec *r, keel_ack_mode mode,
			      int64_t window_msgs, int64_t window_bytes)
{
	keel_consumer_options o = {
		.ack_mode = mode, .window_msgs = window_msgs, .window_bytes = window_bytes,
	};
	r->core = core;
	r->c = NULL;
	/* *out is written before the first delivery; r->c goes back to NULL
	 * when the consumer closes inside a callback */
	assert_int_equal(keel_consumer_create(core, q, &o, &rec_ops, r, &r->c), 0);
	CHECK(core);
	return r->c;
}

/* ---- helpers ----------------------------------------------------------- */

typedef struct msg_opt {
	bool set_priority; /* else the default, 4 */
	uint8_t priority;
	int64_t expires_ms;
	size_t body_len; /* 0: strlen(body) */
} msg_opt;

static keel_msg *mk(keel_core *core, const char *addr, const char *body, const msg_opt *mo)
{
	keel_kv h[1] = { KEEL_KV("color", "blue") };
	static char big[4096];
	size_t len = mo && mo->body_len ? mo->body_len : strlen(body);
	const void *b = body;
	if (len > strlen(body)) {
		assert_true(len <= sizeof(big));
		memset(big, 'x', len);
		memcpy(big, body, strlen(body));
		b = big;
	}
	keel_msg_init init = {
		.address = addr, .headers = h, .header_count = 1, .body = b, .body_len = len,
		.expires_ms = mo ? mo->expires_ms : 0, .priority = mo && mo->set_priority ? mo->priority : 4,
	};
	keel_msg *m = keel_msg_create(core, &init);
	assert_non_null(m);
	return m;
}

static int send_opt(keel_core *core, const char *addr, const char *body, keel_routing rt,
		    const msg_opt *mo, keel_tx *tx)
{
	keel_msg *m = mk(core, addr, body, mo);
	int rc = keel_core_send(core, m, rt, tx);
	keel_msg_unref(m);
	keel_core_check(core);
	return rc;
}

static int send_any(keel_core *core, const char *addr, const char *body)
{
	return send_opt(core, addr, body, KEEL_ANYCAST, NULL, NULL);
}

static keel_queue *mkqueue(keel_core *core, const char *name, const char *addr, keel_routing rt)
{
	keel_queue_options o = {
		.name = name, .address = addr, .routing = rt, .max_consumers = -1,
	};
	keel_queue *q = NULL;
	assert_int_equal(keel_queue_create(core, &o, &q), 0);
	assert_non_null(q);
	CHECK(core);
	return q;
}

static keel_queue_stats stats(const keel_queue *q)
{
	keel_queue_stats s;
	keel_queue_get_stats(q, &s);
	return s;
}

/* ---- messages ---------------------------------------------------------- */

static void msg_create_copies(void **state)
{
	fx *f = *state;
	char body[] = "hello";
	keel_kv h[2] = { KEEL_KV("a", "1"), KEEL_KV("bb", "22") };
	keel_msg_init init = {
		.address = "x", .headers = h, .header_count = 2, .body = body, .body_len = 5,
		.priority = 42, .persistent = true, .expires_ms = 7,
	};
	fake_now_ms = 555;
	keel_msg *m = keel_msg_create(f->core, &init);
	keel_msg *m2 = keel_msg_create(f->core, &init);
	assert_non_null(m);
	assert_non_null(m2);
	body[0] = 'J';
	h[0].value = "changed";
	assert_memory_equal(m->body, "hello", 5);
	assert_string_equal(m->address, "x");
	assert_int_equal(m->header_count, 2);
	assert_string_equal(keel_kv_get(m->headers, m->header_count, "a"), "1");
	assert_string_equal(keel_kv_get(m->headers, m->header_count, "bb"), "22");
	assert_int_equal(m->priority, 9);
	assert_true(m->persistent);
	assert_int_equal(m->expires_ms, 7);
	assert_int_equal(m->timestamp_ms, 555);
	assert_true(m2->id > m->id);
	assert_true(m->mem_size >= sizeof(keel_msg) + 5 + 2 * sizeof(keel_kv));
	/* one allocation */
	int64_t live = keel_alloc_live();
	keel_msg_unref(m);
	assert_int_equal(keel_alloc_live(), live - 1);
	keel_msg_unref(m2);
	keel_msg_unref(NULL);
	assert_int_equal(keel_routing_parse("ANYCAST"), KEEL_ANYCAST);
	assert_int_equal(keel_routing_parse("MULTICAST"), KEEL_MULTICAST);
	assert_int_equal(keel_routing_parse("x"), 0);
	assert_string_equal(keel_routing_name(KEEL_MULTICAST), "MULTICAST");
	CHECK(f->core);
}

/* ---- routing ----------------------------------------------------------- */

static void anycast_round_robin(void **state)
{
	fx *f = *state;
	keel_queue *q = mkqueue(f->core, "orders", "orders", KEEL_ANYCAST);
	rec a = { 0 }, b = { 0 };
	consume(f->core, q, &a, KEEL_ACK_CLIENT_INDIVIDUAL, -1, -1);
	consume(f->core, q, &b, KEEL_ACK_CLIENT_INDIVIDUAL, -1, -1);
	const char *bodies[] = { "m0", "m1", "m2", "m3" };
	for (int i = 0; i < 4; i++)
		assert_int_equal(send_any(f->core, "orders", bodies[i]), 1);
	assert_int_equal(a.n, 2);
	assert_int_equal(b.n, 2);
	assert_string_equal(a.body[0], "m0");
	assert_string_equal(b.body[0], "m1");
	assert_string_equal(a.body[1], "m2");
	assert_string_equal(b.body[1], "m3");
	assert_int_equal(stats(q).delivering_count, 4);
	for (int i = 0; i < 2; i++) {
		assert_int_equal(keel_consumer_ack(a.c, a.ref[i], false, NULL), 0);
		CHECK(f->core);
		assert_int_equal(keel_consumer_ack(b.c, b.ref[i], false, NULL), 0);
		CHECK(f->core);
	}
	keel_queue_stats s = stats(q);
	assert_int_equal(s.messages_added, 4);
	assert_int_equal(s.messages_acked, 4);
	assert_int_equal(s.message_count, 0);
	assert_int_equal(s.consumer_count, 2);
	assert_int_equal(keel_core_memory_used(f->core), 0);
	/* two anycast queues on one address: one ref in one queue, alternating */
	keel_queue *q2 = mkqueue(f->core, "orders.2", "orders", KEEL_ANYCAST);
	keel_consumer_close(a.c);
	keel_consumer_close(b.c);
	CHECK(f->core);
	for (int i = 0; i < 4; i++)
		assert_int_equal(send_any(f->core, "orders", "x"), 1);
	assert_int_equal(stats(q).message_count, 2);
	assert_int_equal(stats(q2).message_count, 2);
}

static void multicast_copies(void **state)
{
	fx *f = *state;
	assert_int_equal(keel_address_create(f->core, "news", KEEL_MULTICAST, false, NULL), 0);
	/* a topic without subscriptions drops the message */
	assert_int_equal(send_opt(f->core, "news", "lost", KEEL_MULTICAST, NULL, NULL), 0);
	keel_queue *s1 = mkqueue(f->core, "news.sub1", "news", KEEL_MULTICAST);
	keel_queue *s2 = mkqueue(f->core, "news.sub2", "news", KEEL_MULTICAST);
	rec a = { 0 }, b = { 0 };
	consume(f->core, s1, &a, KEEL_ACK_CLIENT, -1, -1);
	consume(f->core, s2, &b, KEEL_ACK_CLIENT, -1, -1);
	assert_int_equal(send_opt(f->core, "news", "hi", KEEL_MULTICAST, NULL, NULL), 2);
	assert_int_equal(a.n, 1);
	assert_int_equal(b.n, 1);
	assert_int_equal(a.msg_id[0], b.msg_id[0]);
	assert_ptr_equal(a.ref[0]->msg, b.ref[0]->msg);
	assert_int_not_equal(a.delivery_id[0], b.delivery_id[0]);
	/* accounting counts each ref */
	assert_int_equal(keel_core_memory_used(f->core), 2 * a.ref[0]->msg->mem_size);
	assert_int_equal(stats(s1).bytes_in_memory, a.ref[0]->msg->mem_size);
	assert_int_equal(keel_consumer_ack(a.c, a.ref[0], true, NULL), 0);
	CHECK(f->core);
	assert_int_equal(keel_consumer_ack(b.c, b.ref[0], true, NULL), 0);
	CHECK(f->core);
	assert_int_equal(keel_core_memory_used(f->core), 0);
	/* auto-created topic: address only, no queues; message dropped */
	assert_int_equal(send_opt(f->core, "sports", "goal", KEEL_MULTICAST, NULL, NULL), 0);
	keel_address *sp = keel_address_find(f->core, "sports");
	assert_non_null(sp);
	assert_int_equal(keel_address_routing(sp), KEEL_MULTICAST);
	assert_int_equal(keel_address_queue_count(sp), 0);
}

static void priorities(void **state)
{
	fx *f = *state;
	keel_queue *q = mkqueue(f->core, "p", "p", KEEL_ANYCAST);
	const struct {
		uint8_t prio;
		const char *body;
	} in[] = { { 1, "low" }, { 9, "hi1" }, { 4, "mid" }, { 9, "hi2" }, { 0, "zero" } };
	for (size_t i = 0; i < 5; i++) {
		msg_opt mo = { .set_priority = true, .priority = in[i].prio };
		assert_int_equal(send_opt(f->core, "p", in[i].body, KEEL_ANYCAST, &mo, NULL), 1);
	}
	rec a = { 0 };
	consume(f->core, q, &a, KEEL_ACK_AUTO, -1, -1);
	assert_int_equal(a.n, 5);
	const char *want[] = { "hi1", "hi2", "mid", "low", "zero" };
	for (size_t i = 0; i < 5; i++)
		assert_string_equal(a.body[i], want[i]);
	assert_int_equal(stats(q).messages_acked, 5);
	assert_int_equal(stats(q).message_count, 0);
}

/* ---- credit and readiness ---------------------------------------------- */

static void credit_messages(void **state)
{
	fx *f = *state;
	keel_queue *q = mkqueue(f->core, "c", "c", KEEL_ANYCAST);
	rec a = { 0 };
	consume(f->core, q, &a, KEEL_ACK_CLIENT_INDIVIDUAL, 2, -1);
	for (int i = 0; i < 5; i++)
		send_any(f->core, "c", "m");
	assert_int_equal(a.n, 2);
	assert_int_equal(stats(q).delivering_count, 2);
	assert_int_equal(stats(q).message_count, 5);
	assert_int_equal(keel_consumer_ack(a.c, a.ref[0], false, NULL), 0);
	CHECK(f->core);
	assert_int_equal(a.n, 3);
	assert_int_equal(keel_consumer_ack(a.c, a.ref[2], true, NULL), 0);
	CHECK(f->core);
	assert_int_equal(a.n, 5);
	/* AUTO: credit comes back as soon as deliver() returns */
	rec b = { 0 };
	keel_queue *q2 = mkqueue(f->core, "c2", "c2", KEEL_ANYCAST);
	consume(f->core, q2, &b, KEEL_ACK_AUTO, 1, -1);
	for (int i = 0; i < 4; i++)
		send_any(f->core, "c2", "m");
	assert_int_equal(b.n, 4);
	assert_int_equal(stats(q2).message_count, 0);
}

static void credit_bytes(void **state)
{
	fx *f = *state;
	keel_queue *q = mkqueue(f->core, "b", "b", KEEL_ANYCAST);
	rec a = { 0 };
	consume(f->core, q, &a, KEEL_ACK_CLIENT_INDIVIDUAL, -1, 250);
	msg_opt mo = { .body_len = 100 };
	for (int i = 0; i < 4; i++)
		send_opt(f->core, "b", "m", KEEL_ANYCAST, &mo, NULL);
	assert_int_equal(a.n, 2); /* 200 of 250 bytes */
	assert_int_equal(keel_consumer_ack(a.c, a.ref[1], false, NULL), 0);
	CHECK(f->core);
	assert_int_equal(a.n, 3);
	assert_int_equal(keel_consumer_ack(a.c, a.ref[0], false, NULL), 0);
	CHECK(f->core);
	assert_int_equal(a.n, 4);
}

static void big_message_beyond_window(void **state)
{
	fx *f = *state;
	keel_queue *q = mkqueue(f->core, "big", "big", KEEL_ANYCAST);
	rec a = { 0 };
	consume(f->core, q, &a, KEEL_ACK_CLIENT_INDIVIDUAL, -1, 10);
	msg_opt mo = { .body_len = 1000 };
	send_opt(f->core, "big", "B1", KEEL_ANYCAST, &mo, NULL);
	send_opt(f->core, "big", "B2", KEEL_ANYCAST, &mo, NULL);
	assert_int_equal(a.n, 1); /* the first alone, then nothing */
	assert_int_equal(keel_consumer_ack(a.c, a.ref[0], false, NULL), 0);
	CHECK(f->core);
	assert_int_equal(a.n, 2);
	assert_memory_equal(a.body[1], "B2", 2);
	/* a small one does not join a big one outstanding */
	send_opt(f->core, "big", "s", KEEL_ANYCAST, NULL, NULL);
	assert_int_equal(a.n, 2);
	assert_int_equal(keel_consumer_ack(a.c, a.ref[1], false, NULL), 0);
	CHECK(f->core);
	assert_int_equal(a.n, 3);
}

static void ready_flag(void **state)
{
	fx *f = *state;
	keel_queue *q = mkqueue(f->core, "r", "r", KEEL_ANYCAST);
	rec a = { 0 };
	keel_consumer *c = consume(f->core, q, &a, KEEL_ACK_AUTO, -1, -1);
	keel_consumer_set_ready(c, false);
	send_any(f->core, "r", "1");
	send_any(f->core, "r", "2");
	assert_int_equal(a.n, 0);
	keel_consumer_set_ready(c, true);
	CHECK(f->core);
	assert_int_equal(a.n, 2);
	/* not ready from inside deliver(): exactly one at a time */
	a.not_ready_after_each = true;
	send_any(f->core, "r", "3");
	send_any(f->core, "r", "4");
	send_any(f->core, "r", "5");
	assert_int_equal(a.n, 3);
	keel_consumer_set_ready(c, true);
	CHECK(f->core);
	assert_int_equal(a.n, 4);
	assert_string_equal(a.body[3], "4");
	a.not_ready_after_each = false;
	keel_consumer_set_ready(c, true);
	CHECK(f->core);
	assert_int_equal(a.n, 5);
}

/* ---- acks -------------------------------------------------------------- */

static void ack_cumulative_vs_individual(void **state)
{
	fx *f = *state;
	keel_queue *q1 = mkqueue(f->core, "cum", "cum", KEEL_ANYCAST);
	keel_queue *q2 = mkqueue(f->core, "ind", "ind", KEEL_ANYCAST);
	rec a = { 0 }, b = { 0 };
	consume(f->core, q1, &a, KEEL_ACK_CLIENT, -1, -1);
	consume(f->core, q2, &b, KEEL_ACK_CLIENT_INDIVIDUAL, -1, -1);
	for (int i = 0; i < 3; i++) {
		send_any(f->core, "cum", "m");
		send_any(f->core, "ind", "m");
	}
	assert_ptr_equal(keel_consumer_find(a.c, a.delivery_id[1]), a.ref[1]);
	assert_ptr_equal(keel_consumer_find_msg(a.c, a.msg_id[2]), a.ref[2]);
	assert_null(keel_consumer_find(a.c, b.delivery_id[1]));
	assert_null(keel_consumer_find(a.c, 0));
	/* a ref of another consumer is refused */
	assert_int_equal(keel_consumer_ack(a.c, b.ref[0], false, NULL), -ENOENT);

	assert_int_equal(keel_consumer_ack(a.c, a.ref[1], true, NULL), 0);
	CHECK(f->core);
	assert_int_equal(stats(q1).messages_acked, 2);
	assert_int_equal(stats(q1).delivering_count, 1);
	assert_null(keel_consumer_find(a.c, a.delivery_id[0]));
	assert_ptr_equal(keel_consumer_find(a.c, a.delivery_id[2]), a.ref[2]);

	assert_int_equal(keel_consumer_ack(b.c, b.ref[1], false, NULL), 0);
	CHECK(f->core);
	assert_int_equal(stats(q2).messages_acked, 1);
	assert_int_equal(stats(q2).delivering_count, 2);
	assert_ptr_equal(keel_consumer_find(b.c, b.delivery_id[0]), b.ref[0]);
	assert_null(keel_consumer_find(b.c, b.delivery_id[1]));
	assert_null(keel_consumer_find_msg(b.c, b.msg_id[1]));
	assert_ptr_equal(keel_consumer_find(b.c, b.delivery_id[2]), b.ref[2]);
}

static void nack_redelivers(void **state)
{
	fx *f = *state;
	keel_queue *q = mkqueue(f->core, "n", "n", KEEL_ANYCAST);
	send_any(f->core, "n", "first");
	send_any(f->core, "n", "second");
	rec a = { 0 };
	consume(f->core, q, &a, KEEL_ACK_CLIENT_INDIVIDUAL, 1, -1);
	assert_int_equal(a.n, 1);
	assert_int_equal(a.dcount[0], 1);
	assert_int_equal(keel_consumer_nack(a.c, a.ref[0], false, NULL), 0);
	CHECK(f->core);
	/* back at the head: the same message again, count 2 */
	assert_int_equal(a.n, 2);
	assert_int_equal(a.msg_id[1], a.msg_id[0]);
	assert_int_equal(a.dcount[1], 2);
	assert_true(a.delivery_id[1] > a.delivery_id[0]);
	assert_string_equal(a.body[1], "first");
	assert_int_equal(keel_consumer_ack(a.c, a.ref[1], false, NULL), 0);
	CHECK(f->core);
	assert_string_equal(a.body[2], "second");
	assert_int_equal(a.dcount[2], 1);
}

static void dead_letter_after_max_attempts(void **state)
{
	fx *f = *state;
	keel_address_settings s = {
		.has_max_delivery_attempts = true, .max_delivery_attempts = 2,
		.dead_letter_address = "dead.orders",
	};
	assert_int_equal(keel_core_add_address_settings(f->core, "orders.#", &s), 0);
	keel_queue *q = mkqueue(f->core, "orders.eu", "orders.eu", KEEL_ANYCAST);
	send_any(f->core, "orders.eu", "poison");
	rec a = { 0 };
	consume(f->core, q, &a, KEEL_ACK_CLIENT, -1, -1);
	assert_int_equal(keel_consumer_nack(a.c, a.ref[0], false, NULL), 0);
	CHECK(f->core);
	assert_int_equal(a.n, 2);
	assert_int_equal(a.dcount[1], 2);
	assert_int_equal(keel_consumer_nack(a.c, a.ref[1], false, NULL), 0);
	CHECK(f->core);
	assert_int_equal(a.n, 2); /* not delivered a third time */
	keel_queue_stats st = stats(q);
	assert_int_equal(st.messages_killed, 1);
	assert_int_equal(st.message_count, 0);
	keel_queue *dq = keel_queue_find(f->core, "dead.orders");
	assert_non_null(dq);
	assert_int_equal(stats(dq).message_count, 1);
	rec d = { 0 };
	consume(f->core, dq, &d, KEEL_ACK_CLIENT, -1, -1);
	assert_int_equal(d.n, 1);
	const keel_msg *m = d.ref[0]->msg;
	assert_string_equal(m->address, "dead.orders");
	assert_memory_equal(m->body, "poison", 6);
	assert_string_equal(keel_kv_get(m->headers, m->header_count, "_keel_orig_address"),
			    "orders.eu");
	assert_string_equal(keel_kv_get(m->headers, m->header_count, "_keel_orig_queue"),
			    "orders.eu");
	assert_string_equal(keel_kv_get(m->headers, m->header_count, "color"), "blue");
	assert_int_equal(d.dcount[0], 1);
	assert_int_equal(keel_consumer_ack(d.c, d.ref[0], false, NULL), 0);
	CHECK(f->core);
	/* the DLA queue stays when empty */
	assert_non_null(keel_queue_find(f->core, "dead.orders"));
}

static void dead_letter_drop(void **state)
{
	fx *f = *state;
	keel_address_settings s = {
		.has_max_delivery_attempts = true, .max_delivery_attempts = 1,
		.dead_letter_address = "",
	};
	assert_int_equal(keel_core_add_address_settings(f->core, "q", &s), 0);
	keel_queue *q = mkqueue(f->core, "q", "q", KEEL_ANYCAST);
	send_any(f->core, "q", "x");
	rec a = { 0 };
	keel_consumer *c = consume(f->core, q, &a, KEEL_ACK_CLIENT, -1, -1);
	/* cancel counts as nack: delivered once, max 1 -> dropped */
	keel_consumer_close(c);
	CHECK(f->core);
	assert_int_equal(stats(q).messages_killed, 1);
	assert_int_equal(stats(q).message_count, 0);
	assert_null(keel_address_find(f->core, "DLA"));
	assert_int_equal(keel_core_memory_used(f->core), 0);
	/* default settings elsewhere: DLA auto-created on first dead letter */
	keel_address_settings s2 = {
		.has_max_delivery_attempts = true, .max_delivery_attempts = 1,
	};
	assert_int_equal(keel_core_add_address_settings(f->core, "other", &s2), 0);
	keel_queue *o = mkqueue(f->core, "other", "other", KEEL_ANYCAST);
	send_any(f->core, "other", "y");
	rec b = { 0 };
	consume(f->core, o, &b, KEEL_ACK_CLIENT_INDIVIDUAL, -1, -1);
	assert_int_equal(keel_consumer_nack(b.c, b.ref[0], false, NULL), 0);
	CHECK(f->core);
	keel_queue *dla = keel_queue_find(f->core, "DLA");
	assert_non_null(dla);
	assert_int_equal(stats(dla).message_count, 1);
	assert_int_equal(keel_address_routing(keel_address_find(f->core, "DLA")), KEEL_ANYCAST);
}

static void close_redelivers_in_order(void **state)
{
	fx *f = *state;
	keel_queue *q = mkqueue(f->core, "o", "o", KEEL_ANYCAST);
	rec a = { 0 };
	keel_consumer *c = consume(f->core, q, &a, KEEL_ACK_CLIENT, -1, -1);
	const char *bodies[] = { "1", "2", "3", "4" };
	for (int i = 0; i < 4; i++)
		send_any(f->core, "o", bodies[i]);
	assert_int_equal(keel_consumer_ack(a.c, a.ref[0], false, NULL), 0);
	CHECK(f->core);
	keel_consumer_close(c);
	CHECK(f->core);
	assert_int_equal(stats(q).message_count, 3);
	assert_int_equal(stats(q).consumer_count, 0);
	send_any(f->core, "o", "5");
	rec b = { 0 };
	consume(f->core, q, &b, KEEL_ACK_CLIENT, -1, -1);
	assert_int_equal(b.n, 4);
	const char *want[] = { "2", "3", "4", "5" };
	const uint32_t dc[] = { 2, 2, 2, 1 };
	for (int i = 0; i < 4; i++) {
		assert_string_equal(b.body[i], want[i]);
		assert_int_equal(b.dcount[i], dc[i]);
	}
	/* a cumulative nack puts them back in order too */
	assert_int_equal(keel_consumer_nack(b.c, b.ref[2], true, NULL), 0);
	CHECK(f->core);
	assert_int_equal(b.n, 7);
	assert_string_equal(b.body[4], "2");
	assert_string_equal(b.body[5], "3");
	assert_string_equal(b.body[6], "4");
	assert_int_equal(b.dcount[4], 3);
}

/* ---- expiry ------------------------------------------------------------ */

static void expiry_on_dispatch_and_scan(void **state)
{
	fx *f = *state;
	keel_queue *q = mkqueue(f->core, "e", "e", KEEL_ANYCAST);
	msg_opt soon = { .expires_ms = fake_now_ms + 100 };
	msg_opt later = { .expires_ms = fake_now_ms + 10000 };
	send_opt(f->core, "e", "old", KEEL_ANYCAST, &soon, NULL);
	send_opt(f->core, "e", "new", KEEL_ANYCAST, &later, NULL);
	send_opt(f->core, "e", "forever", KEEL_ANYCAST, NULL, NULL);
	fake_now_ms += 200;
	rec a = { 0 };
	consume(f->core, q, &a, KEEL_ACK_CLIENT, -1, -1);
	assert_int_equal(a.n, 2);
	assert_string_equal(a.body[0], "new");
	assert_string_equal(a.body[1], "forever");
	assert_int_equal(stats(q).messages_expired, 1);
	keel_queue *eq = keel_queue_find(f->core, "ExpiryQueue");
	assert_non_null(eq);
	assert_int_equal(stats(eq).message_count, 1);
	assert_int_equal(keel_consumer_ack(a.c, a.ref[1], true, NULL), 0);
	CHECK(f->core);

	/* scan: no consumer needed */
	keel_address_settings s = { .expiry_address = "exp.custom" };
	assert_int_equal(keel_core_add_address_settings(f->core, "s.*", &s), 0);
	keel_queue *q2 = mkqueue(f->core, "s.1", "s.1", KEEL_ANYCAST);
	msg_opt e1 = { .expires_ms = fake_now_ms + 50 };
	send_opt(f->core, "s.1", "gone", KEEL_ANYCAST, &e1, NULL);
	send_opt(f->core, "s.1", "stays", KEEL_ANYCAST, NULL, NULL);
	keel_core_expire_scan(f->core);
	CHECK(f->core);
	assert_int_equal(stats(q2).message_count, 2);
	fake_now_ms += 50;
	keel_core_expire_scan(f->core);
	CHECK(f->core);
	assert_int_equal(stats(q2).message_count, 1);
	assert_int_equal(stats(q2).messages_expired, 1);
	keel_queue *cq = keel_queue_find(f->core, "exp.custom");
	assert_non_null(cq);
	rec b = { 0 };
	consume(f->core, cq, &b, KEEL_ACK_AUTO, -1, -1);
	assert_int_equal(b.n, 1);
	assert_string_equal(b.body[0], "gone");
	/* "" = drop */
	keel_address_settings drop = { .expiry_address = "" };
	assert_int_equal(keel_core_add_address_settings(f->core, "d", &drop), 0);
	keel_queue *dq = mkqueue(f->core, "d", "d", KEEL_ANYCAST);
	msg_opt e2 = { .expires_ms = fake_now_ms + 1 };
	send_opt(f->core, "d", "x", KEEL_ANYCAST, &e2, NULL);
	fake_now_ms += 1;
	size_t before = keel_address_queue_count(keel_address_find(f->core, "ExpiryQueue"));
	keel_core_expire_scan(f->core);
	CHECK(f->core);
	assert_int_equal(stats(dq).messages_expired, 1);
	assert_int_equal(stats(dq).message_count, 0);
	assert_int_equal(stats(eq).message_count, 1);
	assert_int_equal(keel_address_queue_count(keel_address_find(f->core, "ExpiryQueue")),
			 before);
}

/* ---- transactions ------------------------------------------------------ */

static void tx_sends(void **state)
{
	fx *f = *state;
	keel_queue *q = mkqueue(f->core, "t", "t", KEEL_ANYCAST);
	keel_tx *tx = keel_tx_create(f->core);
	assert_non_null(tx);
	assert_int_equal(send_opt(f->core, "t", "a", KEEL_ANYCAST, NULL, tx), 0);
	assert_int_equal(send_opt(f->core, "t", "b", KEEL_ANYCAST, NULL, tx), 0);
	assert_int_equal(keel_tx_op_count(tx), 2);
	assert_int_equal(stats(q).message_count, 0);
	assert_true(keel_core_memory_used(f->core) > 0);
	assert_int_equal(keel_tx_commit(tx), 0);
	CHECK(f->core);
	assert_int_equal(stats(q).message_count, 2);

	tx = keel_tx_create(f->core);
	assert_int_equal(send_opt(f->core, "t", "c", KEEL_ANYCAST, NULL, tx), 0);
	keel_tx_abort(tx);
	CHECK(f->core);
	assert_int_equal(stats(q).message_count, 2);

	/* routing errors show at send time */
	keel_address_settings off = { .has_auto_create_addresses = true };
	assert_int_equal(keel_core_add_address_settings(f->core, "nope", &off), 0);
	tx = keel_tx_create(f->core);
	assert_int_equal(send_opt(f->core, "nope", "x", KEEL_ANYCAST, NULL, tx), -ENOENT);
	assert_int_equal(keel_tx_op_count(tx), 0);
	/* ops are bounded */
	keel_msg *m = mk(f->core, "t", "x", NULL);
	int rc = 0;
	size_t i;
	for (i = 0; i < KEEL_MAX_TX_OPS + 1 && rc == 0; i++)
		rc = keel_core_send(f->core, m, KEEL_ANYCAST, tx);
	keel_msg_unref(m);
	assert_int_equal(rc, -ENOSPC);
	assert_int_equal(i, KEEL_MAX_TX_OPS + 1);
	assert_int_equal(keel_tx_op_count(tx), KEEL_MAX_TX_OPS);
	CHECK(f->core);
	keel_tx_abort(tx);
	CHECK(f->core);
	assert_int_equal(stats(q).message_count, 2);
}

static void tx_acks(void **state)
{
	fx *f = *state;
	keel_queue *q = mkqueue(f->core, "ta", "ta", KEEL_ANYCAST);
	const char *bodies[] = { "1", "2", "3", "4" };
	for (int i = 0; i < 4; i++)
		send_any(f->core, "ta", bodies[i]);
	rec a = { 0 };
	consume(f->core, q, &a, KEEL_ACK_CLIENT, 2, -1);
	assert_int_equal(a.n, 2);
	keel_tx *tx = keel_tx_create(f->core);
	assert_int_equal(keel_consumer_ack(a.c, a.ref[1], true, tx), 0);
	CHECK(f->core);
	assert_int_equal(keel_tx_op_count(tx), 2);
	/* credit came back at ack time */
	assert_int_equal(a.n, 4);
	assert_int_equal(stats(q).messages_acked, 0);
	assert_int_equal(stats(q).delivering_count, 4);
	assert_null(keel_consumer_find(a.c, a.delivery_id[0]));
	keel_tx_abort(tx);
	CHECK(f->core);
	/* "1" and "2" pending again, at the head, in order */
	assert_int_equal(stats(q).message_count, 4);
	assert_int_equal(stats(q).delivering_count, 2);
	assert_int_equal(keel_consumer_ack(a.c, a.ref[3], true, NULL), 0);
	CHECK(f->core);
	assert_int_equal(a.n, 6);
	assert_string_equal(a.body[4], "1");
	assert_string_equal(a.body[5], "2");
	assert_int_equal(a.dcount[4], 2);

	tx = keel_tx_create(f->core);
	assert_int_equal(keel_consumer_ack(a.c, a.ref[4], false, tx), 0);
	CHECK(f->core);
	assert_int_equal(keel_consumer_ack(a.c, a.ref[5], false, tx), 0);
	CHECK(f->core);
	assert_int_equal(keel_tx_commit(tx), 0);
	CHECK(f->core);
	assert_int_equal(stats(q).messages_acked, 4);
	assert_int_equal(stats(q).message_count, 0);

	/* a consumer closing leaves its tx acks with the tx */
	send_any(f->core, "ta", "5");
	assert_int_equal(a.n, 7);
	tx = keel_tx_create(f->core);
	assert_int_equal(keel_consumer_ack(a.c, a.ref[6], false, tx), 0);
	keel_consumer_close(a.c);
	CHECK(f->core);
	assert_int_equal(stats(q).message_count, 1);
	keel_tx_abort(tx);
	CHECK(f->core);
	assert_int_equal(stats(q).delivering_count, 0);
	assert_int_equal(stats(q).message_count, 1);
	/* a queue deleted under a tx: the held ref is orphaned, then dropped */
	rec b = { 0 };
	consume(f->core, q, &b, KEEL_ACK_CLIENT, -1, -1);
	tx = keel_tx_create(f->core);
	assert_int_equal(keel_consumer_nack(b.c, b.ref[0], false, tx), 0);
	assert_int_equal(keel_queue_delete(f->core, "ta", true), 0);
	CHECK(f->core);
	assert_int_equal(b.closed, 1);
	assert_int_equal(keel_tx_commit(tx), 0);
	CHECK(f->core);
}

static void tx_left_open_is_freed(void **state)
{
	fx *f = *state;
	keel_queue *q = mkqueue(f->core, "x", "x", KEEL_ANYCAST);
	send_any(f->core, "x", "1");
	rec a = { 0 };
	consume(f->core, q, &a, KEEL_ACK_CLIENT, -1, -1);
	keel_tx *tx = keel_tx_create(f->core);
	assert_int_equal(keel_consumer_ack(a.c, a.ref[0], false, tx), 0);
	assert_int_equal(send_any(f->core, "x", "2"), 1);
	assert_int_equal(send_opt(f->core, "x", "3", KEEL_ANYCAST, NULL, tx), 0);
	CHECK(f->core);
	/* teardown frees the core with the tx and consumer still open */
}

/* ---- addresses and queues ---------------------------------------------- */

static void address_queue_rules(void **state)
{
	fx *f = *state;
	keel_address *a = NULL;
	assert_int_equal(keel_address_create(f->core, "addr", KEEL_ANYCAST, false, &a), 0);
	assert_int_equal(keel_address_create(f->core, "addr", KEEL_MULTICAST, false, NULL), -EEXIST);
	assert_int_equal(keel_address_routing(a), KEEL_ANYCAST);
	keel_address *b = NULL;
	assert_int_equal(keel_address_create(f->core, "addr", KEEL_MULTICAST, true, &b), 0);
	assert_ptr_equal(a, b);
	assert_int_equal(keel_address_routing(a), KEEL_ANYCAST | KEEL_MULTICAST);
	assert_int_equal(keel_address_create(f->core, "", KEEL_ANYCAST, false, NULL), -EINVAL);
	assert_int_equal(keel_address_create(f->core, "z", 0, false, NULL), -EINVAL);
	CHECK(f->core);

	keel_queue *q = mkqueue(f->core, "q1", "addr", KEEL_ANYCAST);
	keel_queue_options dup = { .name = "q1", .address = "addr", .routing = KEEL_ANYCAST };
	assert_int_equal(keel_queue_create(f->core, &dup, NULL), -EEXIST);
	keel_queue_options bad = { .name = "q2", .address = "addr", .routing = 0 };
	assert_int_equal(keel_queue_create(f->core, &bad, NULL), -EINVAL);
	mkqueue(f->core, "q2", "addr", KEEL_MULTICAST);
	assert_int_equal(keel_address_queue_count(a), 2);
	assert_ptr_equal(keel_address_queue_at(a, 0), q);
	assert_null(keel_address_queue_at(a, 2));
	assert_ptr_equal(keel_core_address_at(f->core, 0), a);
	assert_null(keel_core_address_at(f->core, 1));
	assert_string_equal(keel_address_name(a), "addr");
	assert_string_equal(keel_queue_name(q), "q1");

	assert_int_equal(keel_address_delete(f->core, "addr", false), -ENOTEMPTY);
	assert_int_equal(keel_address_delete(f->core, "nothere", false), -ENOENT);
	rec r1 = { 0 };
	consume(f->core, q, &r1, KEEL_ACK_CLIENT, -1, -1);
	send_any(f->core, "addr", "m");
	assert_int_equal(r1.n, 1);
	assert_int_equal(keel_queue_delete(f->core, "q1", false), -EBUSY);
	assert_int_equal(keel_queue_delete(f->core, "nothere", false), -ENOENT);
	assert_int_equal(keel_queue_delete(f->core, "q1", true), 0);
	CHECK(f->core);
	assert_int_equal(r1.closed, 1);
	assert_null(keel_queue_find(f->core, "q1"));
	assert_int_equal(keel_core_memory_used(f->core), 0);
	/* the explicitly created address stays */
	assert_non_null(keel_address_find(f->core, "addr"));

	keel_queue *q2 = keel_queue_find(f->core, "q2");
	rec r2 = { 0 }, r3 = { 0 };
	consume(f->core, q2, &r2, KEEL_ACK_CLIENT, -1, -1);
	consume(f->core, q2, &r3, KEEL_ACK_CLIENT, -1, -1);
	send_opt(f->core, "addr", "t", KEEL_MULTICAST, NULL, NULL);
	assert_int_equal(keel_address_delete(f->core, "addr", true), 0);
	CHECK(f->core);
	assert_int_equal(r2.closed, 1);
	assert_int_equal(r3.closed, 1);
	assert_null(keel_address_find(f->core, "addr"));
	assert_null(keel_queue_find(f->core, "q2"));
	assert_null(keel_core_address_at(f->core, 0));

	/* max consumers */
	keel_queue_options one = {
		.name = "solo", .routing = KEEL_ANYCAST, .max_consumers = 1,
	};
	keel_queue *solo = NULL;
	assert_int_equal(keel_queue_create(f->core, &one, &solo), 0);
	assert_non_null(keel_address_find(f->core, "solo")); /* address = name */
	rec s1 = { 0 }, s2 = { 0 };
	consume(f->core, solo, &s1, KEEL_ACK_AUTO, -1, -1);
	keel_consumer_options co = { .window_msgs = -1, .window_bytes = -1 };
	keel_consumer *c2 = NULL;
	assert_int_equal(keel_consumer_create(f->core, solo, &co, &rec_ops, &s2, &c2), -EBUSY);
	assert_null(c2);
}

static void auto_create_and_routing_types(void **state)
{
	fx *f = *state;
	/* defaults: an anycast send creates address + queue */
	assert_int_equal(send_any(f->core, "fresh", "1"), 1);
	keel_address *a = keel_address_find(f->core, "fresh");
	assert_non_null(a);
	assert_int_equal(keel_address_routing(a), KEEL_ANYCAST);
	keel_queue *q = keel_queue_find(f->core, "fresh");
	assert_non_null(q);
	assert_int_equal(stats(q).message_count, 1);

	keel_address_settings off = {
		.has_auto_create_addresses = true, .auto_create_addresses = false,
	};
	assert_int_equal(keel_core_add_address_settings(f->core, "strict.#", &off), 0);
	assert_int_equal(send_any(f->core, "strict.x", "1"), -ENOENT);
	assert_null(keel_address_find(f->core, "strict.x"));
	assert_int_equal(keel_address_create(f->core, "strict.t", KEEL_MULTICAST, false, NULL), 0);
	/* wrong routing type, auto-create off */
	assert_int_equal(send_any(f->core, "strict.t", "1"), -EINVAL);
	CHECK(f->core);
	/* with auto-create on, the address is widened */
	assert_int_equal(keel_address_create(f->core, "loose", KEEL_MULTICAST, false, NULL), 0);
	assert_int_equal(send_any(f->core, "loose", "1"), 1);
	assert_int_equal(keel_address_routing(keel_address_find(f->core, "loose")),
			 KEEL_ANYCAST | KEEL_MULTICAST);
	assert_non_null(keel_queue_find(f->core, "loose"));
	/* queues not auto-created: an anycast send reaches nothing */
	keel_address_settings noq = {
		.has_auto_create_queues = true, .auto_create_queues = false,
	};
	assert_int_equal(keel_core_add_address_settings(f->core, "noq", &noq), 0);
	assert_int_equal(send_any(f->core, "noq", "1"), 0);
	assert_non_null(keel_address_find(f->core, "noq"));
	assert_null(keel_queue_find(f->core, "noq"));
	assert_int_equal(send_any(f->core, "bad\nname", "1"), -EINVAL);
	CHECK(f->core);
}

static void temporary_queue(void **state)
{
	fx *f = *state;
	keel_queue_options o = {
		.name = "tmp.1", .address = "tmp.1", .routing = KEEL_ANYCAST,
		.temporary = true, .max_consumers = -1,
	};
	keel_queue *q = NULL;
	assert_int_equal(keel_queue_create(f->core, &o, &q), 0);
	rec a = { 0 }, b = { 0 };
	keel_consumer *c1 = consume(f->core, q, &a, KEEL_ACK_CLIENT, -1, -1);
	keel_consumer *c2 = consume(f->core, q, &b, KEEL_ACK_CLIENT, -1, -1);
	send_any(f->core, "tmp.1", "x");
	keel_consumer_close(c1);
	CHECK(f->core);
	assert_non_null(keel_queue_find(f->core, "tmp.1"));
	keel_consumer_close(c2);
	CHECK(f->core);
	assert_null(keel_queue_find(f->core, "tmp.1"));
	assert_null(keel_address_find(f->core, "tmp.1"));
	assert_int_equal(keel_core_memory_used(f->core), 0);
}

static void auto_delete_queue(void **state)
{
	fx *f = *state;
	assert_int_equal(send_any(f->core, "ad", "1"), 1);
	keel_queue *q = keel_queue_find(f->core, "ad");
	assert_non_null(q);
	rec a = { 0 };
	keel_consumer *c = consume(f->core, q, &a, KEEL_ACK_CLIENT, -1, -1);
	assert_int_equal(keel_consumer_ack(c, a.ref[0], false, NULL), 0);
	CHECK(f->core);
	/* empty but still consumed: stays */
	assert_non_null(keel_queue_find(f->core, "ad"));
	keel_consumer_close(c);
	CHECK(f->core);
	assert_null(keel_queue_find(f->core, "ad"));
	assert_null(keel_address_find(f->core, "ad"));

	/* a consumer closing with messages left: stays until they are gone */
	send_any(f->core, "ad2", "1");
	q = keel_queue_find(f->core, "ad2");
	rec b = { 0 };
	c = consume(f->core, q, &b, KEEL_ACK_CLIENT, 0, -1);
	assert_int_equal(b.n, 0);
	keel_consumer_close(c);
	CHECK(f->core);
	assert_non_null(keel_queue_find(f->core, "ad2"));
	rec b2 = { 0 };
	consume(f->core, q, &b2, KEEL_ACK_AUTO, -1, -1);
	assert_int_equal(b2.n, 1);
	keel_consumer_close(b2.c);
	CHECK(f->core);
	assert_null(keel_queue_find(f->core, "ad2"));

	/* auto-delete off */
	keel_address_settings keep = {
		.has_auto_delete_queues = true, .auto_delete_queues = false,
	};
	assert_int_equal(keel_core_add_address_settings(f->core, "keep", &keep), 0);
	send_any(f->core, "keep", "1");
	q = keel_queue_find(f->core, "keep");
	rec d = { 0 };
	consume(f->core, q, &d, KEEL_ACK_AUTO, -1, -1);
	keel_consumer_close(d.c);
	CHECK(f->core);
	assert_non_null(keel_queue_find(f->core, "keep"));
	/* an explicitly created queue never auto-deletes */
	keel_queue *ex = mkqueue(f->core, "explicit", "explicit", KEEL_ANYCAST);
	rec e = { 0 };
	consume(f->core, ex, &e, KEEL_ACK_AUTO, -1, -1);
	send_any(f->core, "explicit", "1");
	keel_consumer_close(e.c);
	CHECK(f->core);
	assert_non_null(keel_queue_find(f->core, "explicit"));
}

static void purge_and_pause(void **state)
{
	fx *f = *state;
	keel_queue *q = mkqueue(f->core, "pp", "pp", KEEL_ANYCAST);
	for (int i = 0; i < 3; i++)
		send_any(f->core, "pp", "m");
	assert_int_equal(keel_queue_purge(q), 3);
	CHECK(f->core);
	assert_int_equal(stats(q).message_count, 0);
	assert_int_equal(keel_core_memory_used(f->core), 0);

	keel_queue_pause(q, true);
	assert_true(stats(q).paused);
	rec a = { 0 };
	consume(f->core, q, &a, KEEL_ACK_AUTO, -1, -1);
	send_any(f->core, "pp", "1");
	send_any(f->core, "pp", "2");
	assert_int_equal(a.n, 0);
	keel_queue_pause(q, false);
	CHECK(f->core);
	assert_int_equal(a.n, 2);

	keel_queue_options o = {
		.name = "pnc", .routing = KEEL_ANYCAST, .max_consumers = -1,
		.purge_on_no_consumers = true,
	};
	keel_queue *p = NULL;
	assert_int_equal(keel_queue_create(f->core, &o, &p), 0);
	rec b = { 0 };
	keel_consumer *c = consume(f->core, p, &b, KEEL_ACK_CLIENT, 1, -1);
	send_any(f->core, "pnc", "1");
	send_any(f->core, "pnc", "2");
	assert_int_equal(stats(p).message_count, 2);
	keel_consumer_close(c);
	CHECK(f->core);
	assert_int_equal(stats(p).message_count, 0);
	/* without consumers it keeps what arrives */
	send_any(f->core, "pnc", "3");
	assert_int_equal(stats(p).message_count, 1);
}

static void settings_specificity(void **state)
{
	fx *f = *state;
	keel_address_settings out;
	keel_core_resolve_settings(f->core, "any", &out);
	assert_true(out.auto_create_addresses && out.auto_create_queues && out.auto_delete_queues);
	assert_int_equal(out.max_delivery_attempts, 10);
	assert_string_equal(out.dead_letter_address, "DLA");
	assert_string_equal(out.expiry_address, "ExpiryQueue");

	keel_address_settings all = {
		.has_max_delivery_attempts = true, .max_delivery_attempts = 3,
		.dead_letter_address = "dla.all",
	};
	keel_address_settings orders = {
		.has_max_delivery_attempts = true, .max_delivery_attempts = 5,
	};
	keel_address_settings star = {
		.has_max_delivery_attempts = true, .max_delivery_attempts = 7,
		.expiry_address = "exp.star",
	};
	keel_address_settings exact = {
		.has_auto_create_queues = true, .auto_create_queues = false,
	};
	/* added least specific last: order must not matter */
	assert_int_equal(keel_core_add_address_settings(f->core, "orders.eu", &exact), 0);
	assert_int_equal(keel_core_add_address_settings(f->core, "orders.*", &star), 0);
	assert_int_equal(keel_core_add_address_settings(f->core, "orders.#", &orders), 0);
	assert_int_equal(keel_core_add_address_settings(f->core, "#", &all), 0);
	assert_int_equal(keel_core_add_address_settings(f->core, "a.b#", &all), -EINVAL);

	keel_core_resolve_settings(f->core, "orders.eu", &out);
	assert_int_equal(out.max_delivery_attempts, 7); /* from orders.* */
	assert_false(out.auto_create_queues);            /* from orders.eu */
	assert_string_equal(out.dead_letter_address, "dla.all");
	assert_string_equal(out.expiry_address, "exp.star");
	keel_core_resolve_settings(f->core, "orders", &out);
	assert_int_equal(out.max_delivery_attempts, 5);
	assert_true(out.auto_create_queues);
	assert_string_equal(out.expiry_address, "ExpiryQueue");
	keel_core_resolve_settings(f->core, "orders.eu.x", &out);
	assert_int_equal(out.max_delivery_attempts, 5);
	keel_core_resolve_settings(f->core, "misc", &out);
	assert_int_equal(out.max_delivery_attempts, 3);

	/* an existing address sees settings added later */
	keel_queue *q = mkqueue(f->core, "later", "later", KEEL_ANYCAST);
	send_any(f->core, "later", "m");
	keel_address_settings one = {
		.has_max_delivery_attempts = true, .max_delivery_attempts = 1,
		.dead_letter_address = "",
	};
	assert_int_equal(keel_core_add_address_settings(f->core, "later", &one), 0);
	rec a = { 0 };
	consume(f->core, q, &a, KEEL_ACK_CLIENT, -1, -1);
	assert_int_equal(keel_consumer_nack(a.c, a.ref[0], false, NULL), 0);
	CHECK(f->core);
	assert_int_equal(stats(q).messages_killed, 1);
}

/* ---- re-entrancy ------------------------------------------------------- */

static void reentrant_callbacks(void **state)
{
	fx *f = *state;
	keel_queue *q = mkqueue(f->core, "re", "re", KEEL_ANYCAST);
	/* ack inside deliver (client mode) */
	rec a = { .ack_in_deliver = true };
	keel_consumer *c = consume(f->core, q, &a, KEEL_ACK_CLIENT_INDIVIDUAL, 1, -1);
	for (int i = 0; i < 3; i++)
		send_any(f->core, "re", "m");
	assert_int_equal(a.n, 3);
	assert_int_equal(stats(q).messages_acked, 3);
	keel_consumer_close(c);
	CHECK(f->core);

	/* close inside deliver, AUTO: that message counts as acked */
	rec b = { .close_in_deliver = true };
	send_any(f->core, "re", "x");
	send_any(f->core, "re", "y");
	consume(f->core, q, &b, KEEL_ACK_AUTO, -1, -1);
	assert_int_equal(b.n, 1);
	assert_int_equal(stats(q).consumer_count, 0);
	assert_int_equal(stats(q).message_count, 1);
	assert_int_equal(stats(q).messages_acked, 4);

	/* close inside deliver, CLIENT: that message is redelivered */
	rec d = { .close_in_deliver = true };
	consume(f->core, q, &d, KEEL_ACK_CLIENT, -1, -1);
	assert_int_equal(d.n, 1);
	assert_int_equal(stats(q).message_count, 1);
	rec e = { 0 };
	consume(f->core, q, &e, KEEL_ACK_AUTO, -1, -1);
	assert_int_equal(e.n, 1);
	assert_string_equal(e.body[0], "y");
	assert_int_equal(e.dcount[0], 2);
	keel_consumer_close(e.c);
	CHECK(f->core);

	/* delete the queue being dispatched from inside deliver */
	rec g = { .delete_queue_in_deliver = "re" };
	send_any(f->core, "re", "1");
	send_any(f->core, "re", "2");
	consume(f->core, q, &g, KEEL_ACK_CLIENT, -1, -1);
	assert_int_equal(g.n, 1);
	assert_int_equal(g.closed, 1);
	assert_null(keel_queue_find(f->core, "re"));
	assert_int_equal(keel_core_memory_used(f->core), 0);
}

/* ---- allocation failures ----------------------------------------------- */

/* One scenario touching every allocating path; tolerates failures. */
static void scenario(keel_core *core)
{
	keel_address_settings s = {
		.has_max_delivery_attempts = true, .max_delivery_attempts = 1,
		.dead_letter_address = "dl",
	};
	(void)keel_core_add_address_settings(core, "#", &s);
	CHECK(core);
	keel_queue_options o = { .name = "q", .routing = KEEL_ANYCAST, .max_consumers = -1 };
	keel_queue *q = NULL;
	(void)keel_queue_create(core, &o, &q);
	CHECK(core);
	static rec a, b;
	memset(&a, 0, sizeof(a));
	memset(&b, 0, sizeof(b));
	keel_consumer_options co = { .ack_mode = KEEL_ACK_CLIENT, .window_msgs = -1,
				     .window_bytes = -1 };
	if (q)
		(void)keel_consumer_create(core, q, &co, &rec_ops, &a, &a.c);
	keel_consumer *c = a.c;
	CHECK(core);
	keel_msg_init init = { .address = "q", .body = "abc", .body_len = 3 };
	for (int i = 0; i < 4; i++) {
		keel_msg *m = keel_msg_create(core, &init);
		if (m) {
			(void)keel_core_send(core, m, KEEL_ANYCAST, NULL);
			(void)keel_core_send(core, m, KEEL_MULTICAST, NULL);
		}
		keel_msg_unref(m);
		CHECK(core);
	}
	keel_tx *tx = keel_tx_create(core);
	if (tx) {
		keel_msg *m = keel_msg_create(core, &init);
		if (m)
			(void)keel_core_send(core, m, KEEL_ANYCAST, tx);
		keel_msg_unref(m);
		if (c && a.n > 0)
			(void)keel_consumer_ack(c, a.ref[0], false, tx);
		CHECK(core);
		(void)keel_tx_commit(tx);
		CHECK(core);
	}
	if (c) {
		keel_ref *r = a.n > 1 ? keel_consumer_find(c, a.delivery_id[1]) : NULL;
		if (r)
			(void)keel_consumer_nack(c, r, false, NULL); /* -> dl */
		CHECK(core);
		keel_consumer_close(c);
		CHECK(core);
	}
	/* multicast to two subscriptions, and an expired message */
	keel_queue_options t1 = { .name = "t1", .address = "topic", .routing = KEEL_MULTICAST };
	keel_queue_options t2 = { .name = "t2", .address = "topic", .routing = KEEL_MULTICAST };
	(void)keel_queue_create(core, &t1, NULL);
	(void)keel_queue_create(core, &t2, NULL);
	CHECK(core);
	keel_msg_init ti = { .address = "topic", .body = "t", .body_len = 1, .expires_ms = 1 };
	for (int i = 0; i < 2; i++) {
		keel_msg *m = keel_msg_create(core, &ti);
		if (m)
			(void)keel_core_send(core, m, KEEL_MULTICAST, NULL);
		keel_msg_unref(m);
		CHECK(core);
	}
	keel_core_expire_scan(core); /* -> ExpiryQueue */
	CHECK(core);
	keel_queue *dl = keel_queue_find(core, "dl");
	if (dl)
		(void)keel_consumer_create(core, dl, &co, &rec_ops, &b, &b.c);
	CHECK(core);
	keel_core_expire_scan(core);
	(void)keel_queue_delete(core, "dl", true);
	CHECK(core);
}

/* Did the armed failure fire?  If not, the countdown is still running
 * and one of the next `n` allocations fails. */
static bool failure_fired(unsigned n)
{
	for (unsigned i = 0; i < n; i++) {
		void *p = keel_malloc(1);
		if (p == NULL)
			return false;
		keel_free(p);
	}
	keel_alloc_fail_after(0);
	return true;
}

static void allocation_failures(void **state)
{
	fx *f = *state;
	keel_core_free(f->core);
	f->core = NULL;
	int64_t live0 = keel_alloc_live();
	/* fail the 1st, 2nd, ... allocation until the scenario runs through
	 * without reaching the armed one */
	unsigned n;
	for (n = 1; n < 5000; n++) {
		keel_core *core = NULL;
		keel_core_options o = { .now_ms = fake_clock };
		keel_alloc_fail_after(n);
		if (keel_core_create(&core, &o) == 0) {
			scenario(core);
			CHECK(core);
			keel_core_free(core);
		}
		bool fired = failure_fired(n);
		keel_alloc_fail_after(0);
		assert_int_equal(keel_alloc_live(), live0);
		if (!fired)
			break;
	}
	print_message("allocation failures: %u runs\n", n);
	assert_true(n > 20);   /* the scenario allocates; every one was failed */
	assert_true(n < 5000); /* and it ended */
}

/*
 * max_auto_created_addresses: addresses clients' sends and subscriptions
 * auto-create are counted while they exist; past the limit a send (now
 * or at a commit) and keel_address_auto_create get -EDQUOT; addresses made
 * otherwise (explicitly, internal sends, dead letters) do not count.
 */
static void auto_created_address_limit(void **state)
{
	fx *f = *state;
	keel_core_free(f->core);
	keel_core_options o = { .now_ms = fake_clock, .node = "test",
				.max_auto_created_addresses = 2 };
	assert_int_equal(keel_core_create(&f->core, &o), 0);
	keel_core *core = f->core;
	assert_int_equal(keel_core_max_auto_created_addresses(core), 2);
	assert_int_equal(send_opt(core, "t1", "x", KEEL_MULTICAST, NULL, NULL), 0);
	keel_tx *tx = keel_tx_create(core);
	assert_non_null(tx);
	assert_int_equal(send_opt(core, "t2", "x", KEEL_MULTICAST, NULL, tx), 0); /* checked */
	assert_int_equal(send_any(core, "q1", "x"), 1);  /* the second one */
	assert_int_equal(keel_core_auto_created_addresses(core), 2);
	assert_int_equal(keel_tx_commit(tx), -EDQUOT); /* t2 would be the third */
	assert_null(keel_address_find(core, "t2"));
	assert_int_equal(send_opt(core, "t3", "x", KEEL_MULTICAST, NULL, NULL), -EDQUOT);
	assert_int_equal(send_any(core, "q3", "x"), -EDQUOT);
	tx = keel_tx_create(core);
	assert_int_equal(send_opt(core, "t3", "x", KEEL_MULTICAST, NULL, tx), -EDQUOT);
	keel_tx_abort(tx);
	assert_int_equal(keel_address_auto_create(core, "t3", KEEL_MULTICAST, NULL), -EDQUOT);
	assert_null(keel_address_find(core, "t3"));
	/* existing ones still work, and widen */
	assert_int_equal(keel_address_auto_create(core, "t1", KEEL_ANYCAST, NULL), 0);
	assert_int_equal(send_any(core, "t1", "x"), 1);
	/* not counted: explicit, internal, dead letters */
	assert_int_equal(keel_address_create(core, "made", KEEL_MULTICAST, false, NULL), 0);
	keel_msg *m = mk(core, "reply.1", "r", NULL);
	assert_int_equal(keel_core_send_internal(core, m, KEEL_ANYCAST), 1);
	keel_msg_unref(m);
	assert_int_equal(keel_core_auto_created_addresses(core), 2);
	CHECK(core);
	/* an auto-created queue's address goes with it, and makes room */
	assert_int_equal(keel_queue_delete(core, "q1", false), 0);
	assert_null(keel_address_find(core, "q1"));
	assert_int_equal(keel_core_auto_created_addresses(core), 1);
	assert_int_equal(keel_address_auto_create(core, "t3", KEEL_MULTICAST, NULL), 0);
	assert_int_equal(keel_address_delete(core, "t3", false), 0);
	assert_int_equal(keel_core_auto_created_addresses(core), 1);
	CHECK(core);

	/* < 0: unlimited */
	keel_core_free(f->core);
	o.max_auto_created_addresses = -1;
	assert_int_equal(keel_core_create(&f->core, &o), 0);
	assert_int_equal(keel_core_max_auto_created_addresses(f->core), -1);
	char name[32];
	for (int i = 0; i < 50; i++) {
		snprintf(name, sizeof(name), "u%d", i);
		assert_int_equal(send_opt(f->core, name, "x", KEEL_MULTICAST, NULL, NULL), 0);
	}
	assert_int_equal(keel_core_auto_created_addresses(f->core), 50);
	/* 0: the default */
	keel_core_free(f->core);
	o.max_auto_created_addresses = 0;
	assert_int_equal(keel_core_create(&f->core, &o), 0);
	assert_int_equal(keel_core_max_auto_created_addresses(f->core),
			 KEEL_DEFAULT_MAX_AUTO_CREATED_ADDRESSES);
}

/* ---- main -------------------------------------------------------------- */

#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)

int main(void)
{
	const struct CMUnitTest tests[] = {
		T(msg_create_copies),
		T(anycast_round_robin),
		T(multicast_copies),
		T(priorities),
		T(credit_messages),
		T(credit_bytes),
		T(big_message_beyond_window),
		T(ready_flag),
		T(ack_cumulative_vs_individual),
		T(nack_redelivers),
		T(dead_letter_after_max_attempts),
		T(dead_letter_drop),
		T(close_redelivers_in_order),
		T(expiry_on_dispatch_and_scan),
		T(tx_sends),
		T(tx_acks),
		T(tx_left_open_is_freed),
		T(address_queue_rules),
		T(auto_create_and_routing_types),
		T(temporary_queue),
		T(auto_delete_queue),
		T(auto_created_address_limit),
		T(purge_and_pause),
		T(settings_specificity),
		T(reentrant_callbacks),
		T(allocation_failures),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
