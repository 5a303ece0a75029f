/*
 * jtest.h - the journal tests' kit (test_journal.c, test_journal_damage.c,
 * test_saved.c): a real core with a real journal on a real libuv loop
 * ("restart" is env_close + env_open into a fresh core), messages in and
 * out, whole files read and written, a tree removed.  cmocka asserts
 * inside.  Test threads only.
 */
#ifndef KEEL_JTEST_H
#define KEEL_JTEST_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <uv.h>

#include "core.h"
#include "journal.h"

typedef struct env {
	char dir[256];
	uv_loop_t loop;
	keel_core *core;
	keel_journal *j;
	keel_journal_options opt;
	bool started;
} env;

/* The core's global-max-size for the next env_open (0: unlimited, the
 * default; a test sets it and puts it back). */
extern int64_t jtest_global_max_size;

/* The bodies of a queue's pending messages, joined with ',' (drains the
 * queue through an auto-ack consumer). */
typedef struct collect {
	char out[8192];
	uint64_t last_id;
	bool ids_increasing;
} collect;

/* The core's clock in tests: jtest_now_ms, a fixed instant unless a test
 * moves it (and puts it back). */
extern int64_t jtest_now_ms;
int64_t fake_clock(void *ud);
/* rm -rf, quietly. */
void rm_rf(const char *path);
/* 64 KiB segments, synced. */
keel_journal_options default_opts(const char *dir);
/* Open (recover) and start; rc of the open (err may be NULL). */
int env_open(env *e, const char *dir, const keel_journal_options *o, char *err, size_t errlen);
/* Stop, run the loop out, free; checks the core. */
void env_close(env *e);
keel_queue *mkqueue(env *e, const char *name, keel_routing rt, bool durable);
/* A message with headers color: blue and n: <body>. */
void send_to(env *e, const char *addr, const char *body, bool persistent, keel_tx *tx);
/* The consumer's deliver hook that collects into a collect (ud). */
void collect_deliver(keel_consumer *c, keel_ref *ref, void *ud);
void drain(env *e, const char *qname, collect *k);
/* Messages in the queue; UINT64_MAX when there is no such queue. */
uint64_t pending(env *e, const char *qname);
/* A whole file into malloc'd memory (0 or -errno); written back. */
int read_whole(const char *path, uint8_t **out, size_t *len);
void write_whole(const char *path, const uint8_t *b, size_t len);

#endif
