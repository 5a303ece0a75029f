/*
 * itraw.h - a raw STOMP socket for integration tests: exact bytes out,
 * frames in, for what the client library would not send (bad input,
 * heart-beats, trickled frames, abrupt disconnects).
 *
 * Every read waits with a deadline (poll); a failed expectation fails the
 * cmocka test.  Server frames read here must have no NUL in their bodies.
 * One owner thread per raw.
 */
#ifndef KEEL_ITRAW_H
#define KEEL_ITRAW_H

#include <stddef.h>
#include <stdint.h>

typedef struct raw {
	int fd;
	size_t len;              /* bytes read, not yet taken */
	char buf[256 * 1024];
} raw;

/* Milliseconds of CLOCK_MONOTONIC (raw_fill's deadlines). */
int64_t raw_mono_ms(void);

/* Connect to 127.0.0.1:port (fails the test when it cannot). */
raw *raw_open(uint16_t port);
void raw_close(raw *r); /* NULL ok */
/* Write everything; a peer that closed early is not an error here (the
 * reads that follow say what happened). */
void raw_write(raw *r, const void *p, size_t n);
/* s and the frame's NUL after it. */
void raw_puts(raw *r, const char *s);
/* Read more into r->buf.  1 bytes came, 0 EOF/reset, -ETIMEDOUT. */
int raw_fill(raw *r, int64_t deadline_mono_ms);
/* Next frame (heart-beat EOLs before it skipped) as a NUL-terminated
 * string "COMMAND\nheaders\n\nbody" the caller frees (keel_free); NULL on
 * EOF or timeout (*why: -EPIPE or -ETIMEDOUT). */
char *raw_frame(raw *r, uint32_t timeout_ms, int *why);
/* A header's value in a raw frame (copied into out), or NULL. */
const char *raw_hdr(const char *frame, const char *name, char *out, size_t outlen);
/* The next frame, which must be `command` (5 s, scaled). */
char *raw_expect(raw *r, const char *command);
/* Wait until the server closes; frames before that are discarded.
 * 0 on close, -ETIMEDOUT. */
int raw_wait_eof(raw *r, uint32_t timeout_ms);
/* CONNECT (version "1.0" sends no accept-version; `extra` header lines,
 * each ending in LF, or NULL) and expect CONNECTED, returned. */
char *raw_connect_as(raw *r, const char *version, const char *extra);
void raw_connect(raw *r, const char *version);
/* An ERROR with a `message` (and `receipt-id` receipt_id unless NULL),
 * then the connection closes. */
void expect_error_close(raw *r, const char *receipt_id);

#endif
