/*
 * fakestomp.h - a fake STOMP server for the client-side unit tests
 * (test_client, test_locator): the transport, not the script.
 *
 * A libuv TCP listener on 127.0.0.1, port 0, on the test's own loop.  Each
 * accepted connection gets its own codec parser; every parser event (frame,
 * heart-beat, streamed head / body chunk / end) goes to the test's
 * on_event callback, which decides what to answer with fake_frame(),
 * fake_receipt(), fake_conn_close()...  What a test's server answers and
 * what it observes stay in the test file.
 *
 * Ownership: the test owns the struct fake_server (embedded in its context)
 * and the ops; the server owns its connections, their parsers and pending
 * writes.  fake_server_stop() closes them all and the listener; one more run
 * of the loop frees everything.  Connections and writes use plain malloc,
 * so a test's keel_alloc_live() balance counts only the parsers (freed at
 * close) besides the code under test.  Failures are cmocka assertions.
 * Thread: the loop's thread only.
 */
#ifndef KEEL_FAKESTOMP_H
#define KEEL_FAKESTOMP_H

#include <stdbool.h>
#include <stddef.h>
#include <uv.h>

#include "stomp.h"

#define FAKE_RBUF 65536 /* the read buffer of one connection */

struct fake_server;
struct fake_conn;

/* Every parser event except KEEL_STOMP_EV_NONE, in order; `f` is valid
 * during the call only.  It may write to fc or close it (then the rest of
 * that read is dropped). */
typedef void (*fake_event_cb)(struct fake_conn *fc, keel_stomp_event_type ev,
			      const keel_stomp_frame *f);
/* Each read of data on fc, before it is parsed. */
typedef void (*fake_read_cb)(struct fake_conn *fc);

struct fake_server_ops {
	fake_event_cb on_event;  /* required */
	fake_read_cb on_read;    /* optional */
	/* 0, or the size of the test's per-connection struct, whose FIRST
	 * member is a struct fake_conn (allocated zeroed). */
	size_t conn_size;
	/* Bodies from this size on are streamed (HEAD / BODY / END events);
	 * 0: the codec's default limits. */
	size_t stream_threshold;
};

struct fake_conn {
	uv_tcp_t tcp;
	struct fake_server *srv;
	keel_stomp_parser *parser;
	struct fake_conn *next;
	bool closing;
	bool paused; /* stop reading after this read; fake_conn_resume() */
	char rbuf[FAKE_RBUF];
};

struct fake_server {
	uv_loop_t *loop;
	uv_tcp_t listener;
	int port;                /* the bound port, once started */
	struct fake_conn *conns; /* live connections, newest first */
	bool paused;             /* stop reading on every connection after its
				  * current read; fake_server_resume() */
	const struct fake_server_ops *ops;
	void *data;              /* the test's */
};

/* Listens on 127.0.0.1:0; `ops` must outlive the server. */
void fake_server_start(struct fake_server *s, uv_loop_t *loop,
		       const struct fake_server_ops *ops, void *data);
/* Closes every connection and the listener (run the loop to free them). */
void fake_server_stop(struct fake_server *s);
/* Closes every connection; the listener stays. */
void fake_drop_all(struct fake_server *s);
/* Clears both pause flags and reads again on every connection. */
void fake_server_resume(struct fake_server *s);
/* Clears fc->paused and reads again on fc. */
void fake_conn_resume(struct fake_conn *fc);
/* Idempotent; fc is freed in the close callback. */
void fake_conn_close(struct fake_conn *fc);

/* Writes n bytes (copied); closes fc once written if close_after. */
void fake_write(struct fake_conn *fc, const void *p, size_t n, bool close_after);
/* A text frame; the terminating NUL of `text` is the frame's NUL. */
void fake_frame(struct fake_conn *fc, const char *text, bool close_after);
/* RECEIPT for receipt_id when it is not NULL; then (or else) closes fc if
 * close_after. */
void fake_receipt(struct fake_conn *fc, const char *receipt_id, bool close_after);

/* A header of f, or NULL. */
const char *fake_hdr(const keel_stomp_frame *f, const char *name);
/* The local port a bound TCP handle has. */
int fake_bound_port(uv_tcp_t *t);

#endif
