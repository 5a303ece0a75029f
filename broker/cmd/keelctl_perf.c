/*
 * keelctl_perf.c - `keelctl perf`: throughput and latency through a broker.
 *
 * One process, one uv loop, P producer and C consumer keel_clients.
 * Producers send while writable and resume on on_writable; each message
 * carries `keel-ts` (uv_hrtime ns at send) and `keel-seq` (producer:index).
 * Consumers record latency samples and a seen-bitmap per (copy, message)
 * to count lost and duplicated messages (a /topic/ gives every consumer a
 * copy).  The run is bounded by --timeout-s.  Single-threaded.
 */
#include "keelctl.h"

#include <errno.h>
#include <inttypes.h>
#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "keel/alloc.h"

struct perf;

struct perf_peer {
	struct perf *p;
	keel_client *c;
	int index;
	bool producer;
	bool connected;
	bool closed;
	/* producer */
	uint64_t to_send;
	uint64_t sent;
	uint64_t receipts_wanted;
	uint64_t receipts_got;
	bool disconnecting;
	/* consumer */
	bool subscribed;
	uint64_t received;
};

struct perf {
	uv_loop_t loop;
	uv_timer_t timeout_timer;
	uv_timer_t drain_timer;
	keelctl_global *g;
	/* options */
	unsigned producers;
	unsigned consumers;
	uint64_t size;
	uint64_t count;
	bool persistent;
	uint64_t receipt_every;
	const char *dest;
	const char *prefetch;
	const char *ack;
	uint64_t timeout_s;
	bool json;
	/* state */
	struct perf_peer *peers; /* producers first, then consumers */
	unsigned peers_open;
	unsigned connected;
	unsigned subscribed;
	unsigned producers_done;
	bool started;
	bool finishing;
	int failed;         /* 0 or the exit code */
	char error[256];
	uint8_t *body;
	uint64_t t_start_ns;
	uint64_t t_last_ns;
	uint64_t copies;    /* 1 for a queue, consumers for a topic */
	uint64_t expected;  /* count * copies */
	uint64_t unique;
	uint64_t dup;
	uint64_t bad;       /* messages without valid keel-seq / keel-ts */
	uint64_t stale;     /* messages of an earlier run (other keel-run) */
	char run_id[48];    /* keel-run header of this run */
	size_t run_id_len;
	uint64_t received;
	uint64_t drain_mark;
	uint8_t *seen;      /* bitmap: copy * count + producer base + index */
	uint64_t *base;     /* first global index of each producer */
	uint32_t *lat_us;
	size_t lat_n;
	uint64_t lat_stride;
};

static void perf_finish(struct perf *p, int failed, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static void perf_force_close(uv_timer_t *t)
{
	struct perf *p = t->data;
	for (unsigned i = 0; i < p->producers + p->consumers; i++)
		if (p->peers[i].c)
			keel_client_close(p->peers[i].c);
}

static void perf_finish(struct perf *p, int failed, const char *fmt, ...)
{
	if (p->finishing)
		return;
	p->finishing = true;
	p->failed = failed;
	if (fmt) {
		va_list ap;
		va_start(ap, fmt);
		vsnprintf(p->error, sizeof(p->error), fmt, ap);
		va_end(ap);
	}
	uv_timer_stop(&p->drain_timer);
	/* Clean end: DISCONNECT so that acks still buffered reach the broker;
	 * closed at once after a failure, or if that takes too long. */
	for (unsigned i = 0; i < p->producers + p->consumers; i++) {
		struct perf_peer *pp = &p->peers[i];
		if (pp->c == NULL)
			continue;
		if (failed || pp->disconnecting || keel_client_disconnect(pp->c, "bye"))
			keel_client_close(pp->c);
		pp->disconnecting = true;
	}
	uv_timer_start(&p->timeout_timer, perf_force_close, KEELCTL_PERF_CLOSE_GRACE_MS, 0);
}

/* Writes v's digits just before `end`; returns the first digit. */
static char *u64_prepend(char *end, uint64_t v)
{
	do {
		*--end = (char)('0' + v % 10);
		v /= 10;
	} while (v);
	return end;
}

static void produce(struct perf_peer *pp)
{
	struct perf *p = pp->p;
	char tsbuf[24], seqbuf[48], ridbuf[48];
	keel_kv h[4];

	while (!p->finishing && pp->sent < pp->to_send && keel_client_writable(pp->c)) {
		char *ts_end = tsbuf + sizeof(tsbuf) - 1, *seq_end = seqbuf + sizeof(seqbuf) - 1;
		*ts_end = '\0';
		*seq_end = '\0';
		char *ts = u64_prepend(ts_end, uv_hrtime());
		char *seq = u64_prepend(seq_end, pp->sent);
		*--seq = ':';
		seq = u64_prepend(seq, (uint64_t)pp->index);
		size_t n = 0;
		h[n++] = (keel_kv){ "keel-ts", 7, ts, (size_t)(ts_end - ts) };
		h[n++] = (keel_kv){ "keel-seq", 8, seq, (size_t)(seq_end - seq) };
		h[n++] = (keel_kv){ "keel-run", 8, p->run_id, p->run_id_len };
		if (p->persistent)
			h[n++] = KEEL_KV("persistent", "true");
		const char *rid = NULL;
		if (p->receipt_every && ((pp->sent + 1) % p->receipt_every == 0 ||
					 pp->sent + 1 == pp->to_send)) {
			snprintf(ridbuf, sizeof(ridbuf), "p%d-%" PRIu64, pp->index, pp->sent);
			rid = ridbuf;
			pp->receipts_wanted++;
		}
		int rc = keel_client_send(pp->c, p->dest, h, n, p->body, (size_t)p->size, rid);
		if (rc) {
			perf_finish(p, 1, "producer %d: send failed: %s", pp->index, strerror(-rc));
			return;
		}
		pp->sent++;
	}
	if (pp->sent == pp->to_send && pp->receipts_got == pp->receipts_wanted &&
	    !pp->disconnecting && !p->finishing) {
		/* All sent (and receipted): DISCONNECT flushes and confirms. */
		pp->disconnecting = true;
		int rc = keel_client_disconnect(pp->c, "bye");
		if (rc)
			perf_finish(p, 1, "producer %d: disconnect failed: %s", pp->index,
				    strerror(-rc));
	}
}

static void maybe_start(struct perf *p)
{
	if (p->started || p->connected < p->producers + p->consumers ||
	    p->subscribed < p->consumers)
		return;
	p->started = true;
	p->t_start_ns = uv_hrtime();
	for (unsigned i = 0; i < p->producers; i++)
		produce(&p->peers[i]);
}

static void on_connected(keel_client *c, int status, const keel_client_frame *f, void *ud)
{
	struct perf_peer *pp = ud;
	struct perf *p = pp->p;
	if (status) {
		const char *m = f ? keel_client_frame_header(f, "message") : NULL;
		perf_finish(p, 1, "%s %d: cannot connect to %s:%u: %s",
			    pp->producer ? "producer" : "consumer", pp->index, p->g->host,
			    (unsigned)p->g->port, m ? m : strerror(-status));
		return;
	}
	pp->connected = true;
	p->connected++;
	if (!pp->producer) {
		keel_kv h[1];
		size_t n = 0;
		if (p->prefetch)
			h[n++] = KEEL_KV("prefetch-count", p->prefetch);
		char id[16];
		snprintf(id, sizeof(id), "perf-%d", pp->index);
		int rc = keel_client_subscribe(c, id, p->dest, p->ack, h, n, "sub");
		if (rc)
			perf_finish(p, 1, "consumer %d: subscribe failed: %s", pp->index,
				    strerror(-rc));
	}
	maybe_start(p);
}

static void on_receipt(keel_client *c, const char *id, void *ud)
{
	struct perf_peer *pp = ud;
	struct perf *p = pp->p;
	if (!pp->producer) {
		if (strcmp(id, "sub") == 0 && !pp->subscribed) {
			pp->subscribed = true;
			p->subscribed++;
			maybe_start(p);
		}
		return;
	}
	if (strcmp(id, "bye") == 0)
		return;
	pp->receipts_got++;
	produce(pp);
}

static bool parse_seq(const char *s, uint64_t *prod, uint64_t *idx)
{
	char *end;
	if (s == NULL)
		return false;
	*prod = strtoull(s, &end, 10);
	if (*end != ':')
		return false;
	*idx = strtoull(end + 1, &end, 10);
	return *end == '\0';
}

/* A message of this run: dedup bit and latency sample. */
static void record(struct perf *p, const struct perf_peer *pp, uint64_t prod, uint64_t idx,
		   uint64_t sent_ns, uint64_t now)
{
	uint64_t copy = p->copies > 1 ? (uint64_t)pp->index : 0;
	uint64_t bit = copy * p->count + p->base[prod] + idx;
	p->t_last_ns = now;
	if (p->seen[bit / 8] & (1u << (bit % 8))) {
		p->dup++;
		return;
	}
	p->seen[bit / 8] |= (uint8_t)(1u << (bit % 8));
	p->unique++;
	if (p->unique % p->lat_stride == 0 && p->lat_n < KEELCTL_PERF_MAX_SAMPLES &&
	    now >= sent_ns) {
		uint64_t us = (now - sent_ns) / 1000;
		p->lat_us[p->lat_n++] = us > UINT32_MAX ? UINT32_MAX : (uint32_t)us;
	}
}

static void on_message(keel_client *c, const keel_client_frame *f, void *ud)
{
	struct perf_peer *pp = ud;
	struct perf *p = pp->p;
	uint64_t now = uv_hrtime(), prod, idx;
	const char *ts = keel_client_frame_header(f, "keel-ts");
	const char *run = keel_client_frame_header(f, "keel-run");

	pp->received++;
	p->received++;
	if (run && strcmp(run, p->run_id) != 0)
		p->stale++;
	else if (ts == NULL || !parse_seq(keel_client_frame_header(f, "keel-seq"), &prod, &idx) ||
		 prod >= p->producers || idx >= p->peers[prod].to_send)
		p->bad++;
	else
		record(p, pp, prod, idx, strtoull(ts, NULL, 10), now);
	if (strcmp(p->ack, "auto") != 0) {
		const char *id = keel_client_frame_header(f, "ack");
		if (id == NULL)
			id = keel_client_frame_header(f, "message-id");
		int rc = keel_client_ack(c, id, keel_client_frame_header(f, "subscription"), NULL,
					 NULL);
		if (rc)
			perf_finish(p, 1, "consumer %d: ack failed: %s", pp->index, strerror(-rc));
	}
	if (p->unique == p->expected && p->consumers > 0)
		perf_finish(p, 0, NULL);
}

static void on_error(keel_client *c, const keel_client_frame *f, void *ud)
{
	struct perf_peer *pp = ud;
	const char *m = keel_client_frame_header(f, "message");
	perf_finish(pp->p, 1, "%s %d: ERROR from broker: %s", pp->producer ? "producer" : "consumer",
		    pp->index, m ? m : "(no message)");
}

static void on_writable(keel_client *c, void *ud)
{
	produce(ud);
}

static void on_drain_tick(uv_timer_t *t)
{
	struct perf *p = t->data;
	if (p->received == p->drain_mark)
		perf_finish(p, 1, NULL); /* lost messages: reported with the results */
	p->drain_mark = p->received;
}

static void on_closed(keel_client *c, int status, void *ud)
{
	struct perf_peer *pp = ud;
	struct perf *p = pp->p;
	pp->c = NULL;
	pp->closed = true;
	p->peers_open--;
	if (p->finishing)
		return;
	if (pp->producer && pp->disconnecting && status == 0) {
		if (++p->producers_done < p->producers)
			return;
		if (p->consumers == 0) {
			p->t_last_ns = uv_hrtime();
			perf_finish(p, 0, NULL);
		} else {
			p->drain_mark = p->received;
			uv_timer_start(&p->drain_timer, on_drain_tick, KEELCTL_PERF_DRAIN_IDLE_MS,
				       KEELCTL_PERF_DRAIN_IDLE_MS);
		}
		return;
	}
	perf_finish(p, 1, "%s %d: connection closed: %s", pp->producer ? "producer" : "consumer",
		    pp->index, status ? strerror(-status) : "by the broker");
}

static void on_timeout(uv_timer_t *t)
{
	struct perf *p = t->data;
	perf_finish(p, 1, "timed out after %" PRIu64 " s: received %" PRIu64 " of %" PRIu64
			  " messages", p->timeout_s, p->unique, p->expected);
}

static const keel_client_callbacks perf_callbacks = {
	.on_connected = on_connected,
	.on_message = on_message,
	.on_receipt = on_receipt,
	.on_error = on_error,
	.on_closed = on_closed,
	.on_writable = on_writable,
};

static int cmp_u32(const void *a, const void *b)
{
	uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
	return x < y ? -1 : x > y;
}

static double percentile_ms(const struct perf *p, double q)
{
	if (p->lat_n == 0)
		return 0.0;
	size_t i = (size_t)(q * (double)(p->lat_n - 1) + 0.5);
	return p->lat_us[i] / 1000.0;
}

static void report(struct perf *p)
{
	double secs = p->t_last_ns > p->t_start_ns ? (double)(p->t_last_ns - p->t_start_ns) / 1e9 : 0;
	uint64_t msgs = p->consumers ? p->unique : p->count;
	double rate = secs > 0 ? (double)msgs / secs : 0;
	double mbs = secs > 0 ? (double)msgs * (double)p->size / secs / 1e6 : 0;
	uint64_t lost = p->consumers ? p->expected - p->unique : 0;
	if (p->lat_n > 1)
		qsort(p->lat_us, p->lat_n, sizeof(p->lat_us[0]), cmp_u32);
	double p50 = percentile_ms(p, 0.50), p99 = percentile_ms(p, 0.99);

	if (p->json) {
		json_t *o = json_pack("{s:I, s:f, s:f, s:f, s:f, s:f, s:I, s:I, s:I, s:i, s:i, s:I, "
				      "s:b, s:s, s:b}",
				      "messages", (json_int_t)msgs, "seconds", secs, "msgs_per_s", rate,
				      "mb_per_s", mbs, "p50_ms", p50, "p99_ms", p99, "lost",
				      (json_int_t)lost, "duplicated", (json_int_t)p->dup, "malformed",
				      (json_int_t)p->bad, "producers", (int)p->producers,
				      "consumers", (int)p->consumers, "size", (json_int_t)p->size,
				      "persistent", p->persistent, "destination", p->dest, "ok",
				      p->failed == 0 && lost == 0 && p->dup == 0 && p->bad == 0);
		if (o)
			json_object_set_new(o, "stale", json_integer((json_int_t)p->stale));
		if (o && p->error[0])
			json_object_set_new(o, "error", json_string(p->error));
		if (o) {
			json_dumpf(o, stdout, JSON_COMPACT);
			printf("\n");
			json_decref(o);
		}
		return;
	}
	printf("messages:    %" PRIu64 " (%u producers, %u consumers, %" PRIu64
	       " bytes, %s, %s)\n",
	       msgs, p->producers, p->consumers, p->size, p->persistent ? "persistent" : "non-persistent",
	       p->dest);
	printf("seconds:     %.3f\n", secs);
	printf("msgs/s:      %.0f\n", rate);
	printf("MB/s:        %.2f\n", mbs);
	if (p->consumers)
		printf("latency:     p50 %.3f ms, p99 %.3f ms (%zu samples)\n", p50, p99, p->lat_n);
	printf("lost:        %" PRIu64 "\n", lost);
	printf("duplicated:  %" PRIu64 "\n", p->dup);
	if (p->bad)
		printf("malformed:   %" PRIu64 "\n", p->bad);
	if (p->stale)
		printf("stale:       %" PRIu64 " (left over from earlier runs, ignored)\n", p->stale);
}

static void perf_usage(FILE *f)
{
	fprintf(f, "usage: keelctl perf [--producers P (1)] [--consumers C (1)] [--size BYTES (1024)]\n"
		   "                    [--count N (100000, total)] [--persistent] "
		   "[--receipt-every K (0)]\n"
		   "                    [--destination D (/queue/keel.perf)] [--prefetch N (1000)]\n"
		   "                    [--ack auto|client|client-individual] [--timeout-s S (120)] "
		   "[--json]\n"
		   "Sends N messages as fast as the connections stay writable and reports\n"
		   "msgs/s, MB/s, p50/p99 latency, lost and duplicated messages.\n"
		   KEELCTL_GLOBAL_USAGE);
}

static int perf_parse(struct perf *p, int argc, char **argv)
{
	enum { O_PROD = 2000, O_CONS, O_SIZE, O_COUNT, O_PERSISTENT, O_RECEIPT_EVERY, O_DEST,
	       O_PREFETCH, O_ACK, O_TIMEOUT_S, O_JSON };
	static const struct option opts[] = {
		KEELCTL_GLOBAL_OPTIONS,
		{ "producers", required_argument, NULL, O_PROD },
		{ "consumers", required_argument, NULL, O_CONS },
		{ "size", required_argument, NULL, O_SIZE },
		{ "count", required_argument, NULL, O_COUNT },
		{ "persistent", no_argument, NULL, O_PERSISTENT },
		{ "receipt-every", required_argument, NULL, O_RECEIPT_EVERY },
		{ "destination", required_argument, NULL, O_DEST },
		{ "prefetch", required_argument, NULL, O_PREFETCH },
		{ "ack", required_argument, NULL, O_ACK },
		{ "timeout-s", required_argument, NULL, O_TIMEOUT_S },
		{ "json", no_argument, NULL, O_JSON },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	uint64_t v;
	int ch;

	optind = 0;
	while ((ch = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		switch (ch) {
		case 'h':
			perf_usage(stdout);
			return 0;
		case O_PROD:
		case O_CONS:
			if (!keelctl_parse_u64(optarg, &v) || v > KEELCTL_PERF_MAX_CLIENTS / 2)
				return 2;
			*(ch == O_PROD ? &p->producers : &p->consumers) = (unsigned)v;
			break;
		case O_SIZE:
			if (!keelctl_parse_u64(optarg, &p->size) || p->size > KEEL_MAX_FRAME_BODY)
				return 2;
			break;
		case O_COUNT:
			if (!keelctl_parse_u64(optarg, &p->count) || p->count == 0 ||
			    p->count > KEELCTL_PERF_MAX_COUNT)
				return 2;
			break;
		case O_PERSISTENT:
			p->persistent = true;
			break;
		case O_RECEIPT_EVERY:
			if (!keelctl_parse_u64(optarg, &p->receipt_every))
				return 2;
			break;
		case O_DEST:
			p->dest = optarg;
			break;
		case O_PREFETCH:
			if (!keelctl_parse_u64(optarg, &v) || v == 0)
				return 2;
			p->prefetch = optarg;
			break;
		case O_ACK:
			if (!keelctl_ack_valid(optarg))
				return 2;
			p->ack = optarg;
			break;
		case O_TIMEOUT_S:
			if (!keelctl_parse_u64(optarg, &p->timeout_s) || p->timeout_s == 0 ||
			    p->timeout_s > KEELCTL_PERF_MAX_TIMEOUT_S)
				return 2;
			break;
		case O_JSON:
			p->json = true;
			break;
		default:
			if (keelctl_global_opt(p->g, ch, optarg))
				return 2;
		}
	}
	if (optind != argc || p->producers == 0)
		return 2;
	return -1; /* parsed; go on */
}

static int perf_setup(struct perf *p)
{
	unsigned n = p->producers + p->consumers;
	p->copies = strncmp(p->dest, "/topic/", 7) == 0 && p->consumers > 1 ? p->consumers : 1;
	p->expected = p->count * p->copies;
	p->peers = keel_calloc(n, sizeof(*p->peers));
	p->base = keel_calloc(p->producers, sizeof(*p->base));
	p->seen = keel_calloc((size_t)((p->expected + 7) / 8), 1);
	p->lat_us = keel_malloc(KEELCTL_PERF_MAX_SAMPLES * sizeof(*p->lat_us));
	p->body = keel_malloc(p->size ? (size_t)p->size : 1);
	if (!p->peers || !p->base || !p->seen || !p->lat_us || !p->body)
		return -ENOMEM;
	p->lat_stride = p->expected / KEELCTL_PERF_MAX_SAMPLES + 1;
	snprintf(p->run_id, sizeof(p->run_id), "%ld-%" PRIu64, (long)getpid(), uv_hrtime());
	p->run_id_len = strlen(p->run_id);
	for (uint64_t i = 0; i < p->size; i++)
		p->body[i] = (uint8_t)('a' + i % 26);
	uint64_t base = 0;
	for (unsigned i = 0; i < n; i++) {
		struct perf_peer *pp = &p->peers[i];
		pp->p = p;
		pp->producer = i < p->producers;
		pp->index = (int)(pp->producer ? i : i - p->producers);
		if (pp->producer) {
			pp->to_send = p->count / p->producers + (i < p->count % p->producers);
			p->base[i] = base;
			base += pp->to_send;
		}
	}
	return 0;
}

static int perf_connect_all(struct perf *p)
{
	keel_client_options o;
	keelctl_client_options(p->g, &o);
	/* Bigger batches per write than the default watermarks. */
	o.write_high_watermark = KEELCTL_PERF_WRITE_HIGH_WATERMARK;
	o.write_low_watermark = KEELCTL_PERF_WRITE_LOW_WATERMARK;
	for (unsigned i = 0; i < p->producers + p->consumers; i++) {
		struct perf_peer *pp = &p->peers[i];
		int rc = keel_client_create(&pp->c, &p->loop, &o, &perf_callbacks, pp);
		if (rc)
			return rc;
		p->peers_open++;
		rc = keel_client_connect(pp->c);
		if (rc)
			return rc;
	}
	return 0;
}

int keelctl_perf(keelctl_global *g, int argc, char **argv)
{
	struct perf *p = keel_calloc(1, sizeof(*p));
	int ret;
	if (p == NULL) {
		fprintf(stderr, "keelctl perf: out of memory\n");
		return 1;
	}
	p->g = g;
	p->producers = 1;
	p->consumers = 1;
	p->size = 1024;
	p->count = 100000;
	p->dest = "/queue/keel.perf";
	p->prefetch = "1000";
	p->ack = "auto";
	p->timeout_s = 120;
	ret = perf_parse(p, argc, argv);
	if (ret >= 0) {
		if (ret == 2)
			perf_usage(stderr);
		keel_free(p);
		return ret;
	}
	ret = perf_setup(p);
	if (ret) {
		fprintf(stderr, "keelctl perf: %s\n", strerror(-ret));
		ret = 1;
		goto out_free;
	}
	uv_loop_init(&p->loop);
	uv_timer_init(&p->loop, &p->timeout_timer);
	uv_timer_init(&p->loop, &p->drain_timer);
	p->timeout_timer.data = p;
	p->drain_timer.data = p;
	uv_timer_start(&p->timeout_timer, on_timeout, p->timeout_s * 1000, 0);
	ret = perf_connect_all(p);
	if (ret)
		perf_finish(p, 1, "cannot start clients: %s", strerror(-ret));
	/* Runs until perf_finish closed every client. */
	while (!p->finishing || p->peers_open > 0)
		uv_run(&p->loop, UV_RUN_ONCE);
	uv_close((uv_handle_t *)&p->timeout_timer, NULL);
	uv_close((uv_handle_t *)&p->drain_timer, NULL);
	uv_run(&p->loop, UV_RUN_DEFAULT);
	if (uv_loop_close(&p->loop))
		fprintf(stderr, "keelctl perf: loop still busy at exit\n");

	if (p->error[0])
		fprintf(stderr, "keelctl perf: %s\n", p->error);
	if (p->started)
		report(p);
	ret = p->failed || p->dup || p->bad || (p->consumers && p->unique != p->expected) ? 1 : 0;
out_free:
	keel_free(p->peers);
	keel_free(p->base);
	keel_free(p->seen);
	keel_free(p->lat_us);
	keel_free(p->body);
	keel_free(p);
	return ret;
}
