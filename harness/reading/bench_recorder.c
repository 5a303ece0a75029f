/*
 * bench_recorder.c - how many events per second the recording takes
 * (target: 100,000/s, DESIGN.md "Recording").  Usage:
 *   bench_recorder DB [N] [BATCH]      (N = 1,000,000, BATCH = 1000)
 * Writes N synthetic broker events (three nodes, realistic JSON lines) into
 * a fresh WAL database with the real schema and prints events/s for:
 *   raw       prepared INSERTs, one transaction per BATCH rows;
 *   parse     the JSON parse of each line alone (CPU time);
 *   scan      the head scan of each line alone (kh_event_head_scan: seq,
 *             type, ts, mono_ns without a JSON tree; CPU time);
 *   recorder  kh_recorder_event() on a
 *             libuv loop, BATCH events per loop turn, the recorder's own
 *             commit per turn, each line's head scanned as the harness
 *             does when it reads a node's pipe (node.c; it parses a line
 *             with jansson only when an await of its type looks at it).
 * Figures depend on the machine and are printed, never asserted.
 */
#include <errno.h>
#include <inttypes.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <uv.h>

#include "checks.h"
#include "recorder.h"

static const char *const nodes[] = { "live1", "backup1", "bridge1" };
static const char *const types[] = { "producer.blocked", "producer.unblocked",
				     "replication.sync.started", "bridge.writable",
				     "address.full" };

static int64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* Event i as the broker would write it. */
static int event_line(char *buf, size_t len, long i, const char **node,
		      const char **type, int64_t *seq, int64_t *mono)
{
	*node = nodes[i % 3];
	*type = types[(i / 3) % 5];
	*seq = i / 3 + 1;
	*mono = 1000000000 + (int64_t)i * 10000;
	return snprintf(buf, len,
			"{\"ts\":\"2026-11-25T21:07:41.%06ldZ\",\"mono_ns\":%" PRId64
			",\"node\":\"%s\",\"seq\":%" PRId64 ",\"type\":\"%s\","
			"\"address\":\"/queue/orders.%ld\",\"size\":%ld}",
			i % 1000000, *mono, *node, *seq, *type, i % 64, 1000 + i % 7);
}

static int64_t cpu_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static int open_fresh(const char *path, sqlite3 **out)
{
	char p[512];
	unlink(path);
	snprintf(p, sizeof(p), "%s-wal", path);
	unlink(p);
	snprintf(p, sizeof(p), "%s-shm", path);
	unlink(p);
	if (sqlite3_open(path, out) != SQLITE_OK || kh_schema_apply(*out) != 0)
		return -EIO;
	/* The recorder's settings: WAL (schema.sql), synchronous NORMAL. */
	sqlite3_exec(*out, "PRAGMA synchronous = NORMAL", NULL, NULL, NULL);
	return 0;
}

static int bench_raw(const char *path, long n, long batch)
{
	sqlite3 *db = NULL;
	sqlite3_stmt *st = NULL;
	char line[512];
	if (open_fresh(path, &db) < 0)
		goto fail;
	sqlite3_exec(db, "INSERT INTO runs(started_at, seed) VALUES ('now', 0);"
			 "INSERT INTO scenarios(run_id, name, file, seed)"
			 " VALUES (1, 'bench', 'bench', 0)",
		     NULL, NULL, NULL);
	if (sqlite3_prepare_v2(db,
			       "INSERT INTO events(scenario_id, node, seq, type, ts,"
			       " mono_ns, recv_ns, json) VALUES (1,?,?,?,?,?,?,?)",
			       -1, &st, NULL) != SQLITE_OK)
		goto fail;
	int64_t t0 = now_ns(), c0 = cpu_ns();
	for (long i = 0; i < n; i++) {
		const char *node, *type;
		int64_t seq, mono;
		int len = event_line(line, sizeof(line), i, &node, &type, &seq, &mono);
		if (i % batch == 0 && sqlite3_exec(db, "BEGIN", NULL, NULL, NULL) != SQLITE_OK)
			goto fail;
		sqlite3_bind_text(st, 1, node, -1, SQLITE_STATIC);
		sqlite3_bind_int64(st, 2, seq);
		sqlite3_bind_text(st, 3, type, -1, SQLITE_STATIC);
		sqlite3_bind_text(st, 4, line + 7, 27, SQLITE_STATIC);
		sqlite3_bind_int64(st, 5, mono);
		sqlite3_bind_int64(st, 6, now_ns());
		sqlite3_bind_text(st, 7, line, len, SQLITE_STATIC);
		if (sqlite3_step(st) != SQLITE_DONE)
			goto fail;
		sqlite3_reset(st);
		if ((i + 1) % batch == 0 || i + 1 == n)
			if (sqlite3_exec(db, "COMMIT", NULL, NULL, NULL) != SQLITE_OK)
				goto fail;
	}
	int64_t dt = now_ns() - t0, dc = cpu_ns() - c0;
	sqlite3_finalize(st);
	sqlite3_close(db);
	printf("raw:      %ld events in %.3f s = %.0f events/s (cpu %.3f s;"
	       " 1 tx per %ld rows)\n",
	       n, (double)dt / 1e9, (double)n / ((double)dt / 1e9),
	       (double)dc / 1e9, batch);
	return 0;
fail:
	fprintf(stderr, "bench_recorder: raw: %s\n", db ? sqlite3_errmsg(db) : "open");
	sqlite3_finalize(st);
	sqlite3_close(db);
	return -EIO;
}

/* The share of the JSON parse alone (the harness parses each line it
 * reads from a node's pipe, recorder or not). */
static void bench_parse(long n)
{
	char line[512];
	int64_t c0 = cpu_ns();
	for (long i = 0; i < n; i++) {
		const char *node, *type;
		int64_t seq, mono;
		event_line(line, sizeof(line), i, &node, &type, &seq, &mono);
		json_decref(json_loads(line, 0, NULL));
	}
	int64_t dc = cpu_ns() - c0;
	printf("parse:    %ld lines formatted and parsed (jansson) in cpu %.3f s"
	       " = %.0f lines/s\n",
	       n, (double)dc / 1e9, (double)n / ((double)dc / 1e9));
}

/* The head scan alone (what node.c does to every event line). */
static void bench_scan(long n)
{
	char line[512];
	long events = 0;
	int64_t c0 = cpu_ns();
	for (long i = 0; i < n; i++) {
		const char *node, *type;
		int64_t seq, mono;
		kh_event_head h;
		int len = event_line(line, sizeof(line), i, &node, &type, &seq, &mono);
		if (kh_event_head_scan(line, (size_t)len, &h) == 0 && h.ok)
			events++;
	}
	int64_t dc = cpu_ns() - c0;
	printf("scan:     %ld lines formatted and head-scanned in cpu %.3f s = %.0f lines/s"
	       " (%ld events)\n",
	       n, (double)dc / 1e9, (double)n / ((double)dc / 1e9), events);
}

struct rb {
	kh_recorder *rec;
	uv_idle_t idle;
	int64_t sid;
	long n;
	long batch;
	long done;
	long turns;
	int err;
};

/* One loop turn: BATCH lines read, head-scanned and recorded; the recorder's
 * prepare handle commits them before the loop polls. */
static void on_idle(uv_idle_t *h)
{
	struct rb *b = h->data;
	char line[512];
	for (long k = 0; k < b->batch && b->done < b->n; k++, b->done++) {
		const char *node, *type;
		int64_t seq, mono;
		kh_event_head head;
		int len = event_line(line, sizeof(line), b->done, &node, &type, &seq, &mono);
		if (kh_event_head_scan(line, (size_t)len, &head) != 0) {
			json_t *ev = json_loadb(line, (size_t)len, 0, NULL);
			kh_event_head_from_json(ev, &head);
			json_decref(ev);
		}
		int rc = kh_recorder_event(b->rec, b->sid, node, line, &head, kh_now_ns());
		if (rc < 0) {
			b->err = rc;
			b->done = b->n;
		}
	}
	b->turns++;
	if (b->done >= b->n)
		uv_idle_stop(h);
}

static int bench_recorder(const char *path, long n, long batch)
{
	uv_loop_t loop;
	struct rb b = { .n = n, .batch = batch };
	char err[256] = "";
	sqlite3 *db = NULL;
	if (open_fresh(path, &db) < 0)
		return -EIO;
	sqlite3_close(db);
	uv_loop_init(&loop);
	if (kh_recorder_open(&b.rec, path, &loop, err, sizeof(err)) < 0) {
		fprintf(stderr, "bench_recorder: %s\n", err);
		return -EIO;
	}
	int64_t run_id;
	if (kh_recorder_run_begin(b.rec, 0, "{}", &run_id) < 0 ||
	    kh_recorder_scenario_begin(b.rec, run_id, "bench", "bench", 0, 0,
				       "127.0.0.1", kh_now_ns(), &b.sid) < 0 ||
	    kh_recorder_flush(b.rec) < 0)
		return -EIO;
	uv_idle_init(&loop, &b.idle);
	b.idle.data = &b;
	int64_t t0 = now_ns(), c0 = cpu_ns();
	uv_idle_start(&b.idle, on_idle);
	uv_run(&loop, UV_RUN_DEFAULT);
	kh_recorder_flush(b.rec);
	int64_t dt = now_ns() - t0, dc = cpu_ns() - c0;
	uv_close((uv_handle_t *)&b.idle, NULL);
	kh_recorder_close(b.rec);
	uv_run(&loop, UV_RUN_DEFAULT);
	uv_loop_close(&loop);
	if (b.err < 0)
		return b.err;
	printf("recorder: %ld events in %.3f s = %.0f events/s (cpu %.3f s; %ld per"
	       " loop turn, %ld turns, head scan included)\n",
	       n, (double)dt / 1e9, (double)n / ((double)dt / 1e9),
	       (double)dc / 1e9, batch, b.turns);
	return 0;
}

int main(int argc, char **argv)
{
	if (argc < 2) {
		fprintf(stderr, "usage: bench_recorder DB [N] [BATCH]\n");
		return 2;
	}
	long n = argc > 2 ? atol(argv[2]) : 1000000;
	long batch = argc > 3 ? atol(argv[3]) : 1000;
	if (n <= 0 || batch <= 0) {
		fprintf(stderr, "bench_recorder: N and BATCH must be > 0\n");
		return 2;
	}
	if (bench_raw(argv[1], n, batch) < 0)
		return 1;
	bench_parse(n);
	bench_scan(n);
	if (bench_recorder(argv[1], n, batch) < 0)
		return 1;
	return 0;
}
