/*
 * jtest.c - the journal tests' kit (jtest.h).  Test threads only.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "jtest.h"

int64_t jtest_now_ms = 1700000000000;

int64_t fake_clock(void *ud)
{
	(void)ud;
	return jtest_now_ms;
}

void rm_rf(const char *path)
{
	DIR *d = opendir(path);
	if (d) {
		struct dirent *de;
		while ((de = readdir(d)) != NULL) {
			if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
				continue;
			char p[4096];
			snprintf(p, sizeof(p), "%s/%s", path, de->d_name);
			rm_rf(p);
		}
		closedir(d);
		rmdir(path);
	} else {
		unlink(path);
	}
}

keel_journal_options default_opts(const char *dir)
{
	return (keel_journal_options){ .dir = dir, .file_size = 64 * 1024, .sync = true };
}

int64_t jtest_global_max_size;

/* Open (recover) and start; rc of the open. */
int env_open(env *e, const char *dir, const keel_journal_options *o, char *err,
		    size_t errlen)
{
	char ebuf[512];
	if (err == NULL) {
		err = ebuf;
		errlen = sizeof(ebuf);
	}
	snprintf(e->dir, sizeof(e->dir), "%s", dir);
	e->opt = *o;
	e->opt.dir = e->dir;
	keel_core_options co = { .now_ms = fake_clock, .node = "t",
				 .global_max_size_bytes = jtest_global_max_size };
	assert_int_equal(keel_core_create(&e->core, &co), 0);
	int rc = keel_journal_open(&e->j, &e->opt, e->core, err, errlen);
	if (rc) {
		keel_core_free(e->core);
		e->core = NULL;
		return rc;
	}
	assert_int_equal(uv_loop_init(&e->loop), 0);
	assert_int_equal(keel_journal_start(e->j, &e->loop), 0);
	e->started = true;
	return 0;
}

void env_close(env *e)
{
	if (e->core == NULL)
		return;
	keel_journal_stop(e->j);
	uv_run(&e->loop, UV_RUN_DEFAULT);
	assert_int_equal(uv_loop_close(&e->loop), 0);
	keel_journal_free(e->j);
	keel_core_check(e->core);
	keel_core_free(e->core);
	e->core = NULL;
	e->j = NULL;
}

keel_queue *mkqueue(env *e, const char *name, keel_routing rt, bool durable)
{
	keel_queue_options qo = { .name = name, .address = name, .routing = rt,
				  .durable = durable, .max_consumers = -1 };
	keel_queue *q = NULL;
	assert_int_equal(keel_queue_create(e->core, &qo, &q), 0);
	return q;
}

void send_to(env *e, const char *addr, const char *body, bool persistent, keel_tx *tx)
{
	keel_kv h[2] = { KEEL_KV("color", "blue"), KEEL_KV("n", body) };
	keel_msg_init init = { .address = addr, .headers = h, .header_count = 2, .body = body,
			       .body_len = strlen(body), .priority = 4,
			       .persistent = persistent, .expires_ms = 0 };
	keel_msg *m = keel_msg_create(e->core, &init);
	assert_non_null(m);
	assert_true(keel_core_send(e->core, m, KEEL_ANYCAST, tx) >= 0);
	keel_msg_unref(m);
}

void collect_deliver(keel_consumer *c, keel_ref *ref, void *ud)
{
	(void)c;
	collect *k = ud;
	const keel_msg *m = ref->msg;
	size_t n = strlen(k->out);
	snprintf(k->out + n, sizeof(k->out) - n, "%s%.*s", n ? "," : "", (int)m->body_len,
		 (const char *)m->body);
	/* the headers came back too */
	const char *color = keel_kv_get(m->headers, m->header_count, "color");
	assert_non_null(color);
	assert_string_equal(color, "blue");
	assert_true(m->persistent);
	if (m->id <= k->last_id)
		k->ids_increasing = false;
	k->last_id = m->id;
}

void drain(env *e, const char *qname, collect *k)
{
	const keel_consumer_ops ops = { .deliver = collect_deliver };
	keel_consumer_options co = { .ack_mode = KEEL_ACK_AUTO, .window_bytes = -1,
				     .window_msgs = -1 };
	memset(k, 0, sizeof(*k));
	k->ids_increasing = true;
	keel_queue *q = keel_queue_find(e->core, qname);
	assert_non_null(q);
	keel_consumer *c = NULL;
	assert_int_equal(keel_consumer_create(e->core, q, &co, &ops, k, &c), 0);
	keel_consumer_close(c);
}

uint64_t pending(env *e, const char *qname)
{
	keel_queue *q = keel_queue_find(e->core, qname);
	if (q == NULL)
		return UINT64_MAX;
	keel_queue_stats st;
	keel_queue_get_stats(q, &st);
	return st.message_count;
}

int read_whole(const char *path, uint8_t **out, size_t *len)
{
	FILE *fp = fopen(path, "rb");
	if (fp == NULL)
		return -errno;
	fseek(fp, 0, SEEK_END);
	long n = ftell(fp);
	fseek(fp, 0, SEEK_SET);
	uint8_t *b = malloc((size_t)n);
	assert_non_null(b);
	assert_int_equal(fread(b, 1, (size_t)n, fp), (size_t)n);
	fclose(fp);
	*out = b;
	*len = (size_t)n;
	return 0;
}

void write_whole(const char *path, const uint8_t *b, size_t len)
{
	FILE *fp = fopen(path, "wb");
	assert_non_null(fp);
	assert_int_equal(fwrite(b, 1, len, fp), len);
	fclose(fp);
}
