/*
 * itraw.c - a raw STOMP socket for integration tests (see itraw.h).
 *
 * Owns each raw's socket and read buffer.  Every wait is a poll(2) with
 * a deadline.  Test thread only.
 */
#include "itraw.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "itutil.h"
#include "keel/alloc.h"

#define RAW_T_MS it_ms(5000)

int64_t raw_mono_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

raw *raw_open(uint16_t port)
{
	raw *r = keel_calloc(1, sizeof(*r));
	assert_non_null(r);
	r->fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	assert_true(r->fd >= 0);
	struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons(port) };
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (connect(r->fd, (struct sockaddr *)&sa, sizeof(sa)) != 0)
		fail_msg("raw connect: %s", strerror(errno));
	return r;
}

void raw_close(raw *r)
{
	if (r == NULL)
		return;
	close(r->fd);
	keel_free(r);
}

/* Write everything; a peer that closed early is not an error here (the
 * reads that follow say what happened). */
void raw_write(raw *r, const void *p, size_t n)
{
	const char *c = p;
	while (n > 0) {
		ssize_t w = send(r->fd, c, n, MSG_NOSIGNAL);
		if (w < 0) {
			if (errno == EINTR)
				continue;
			return;
		}
		c += w;
		n -= (size_t)w;
	}
}

void raw_puts(raw *r, const char *s)
{
	raw_write(r, s, strlen(s) + 1); /* with the frame's NUL */
}

/* Read more into r->buf.  1 bytes came, 0 EOF/reset, -ETIMEDOUT. */
int raw_fill(raw *r, int64_t deadline)
{
	int left = (int)(deadline - raw_mono_ms());
	if (left < 0)
		left = 0;
	struct pollfd pfd = { .fd = r->fd, .events = POLLIN };
	int n = poll(&pfd, 1, left);
	if (n == 0)
		return -ETIMEDOUT;
	if (n < 0)
		return errno == EINTR ? 1 : -errno;
	if (r->len == sizeof(r->buf))
		fail_msg("raw buffer full");
	ssize_t got = recv(r->fd, r->buf + r->len, sizeof(r->buf) - r->len, 0);
	if (got <= 0)
		return 0;
	r->len += (size_t)got;
	return 1;
}

/*
 * Next frame (heart-beat EOLs before it skipped) as a NUL-terminated
 * string "COMMAND\nheaders\n\nbody" the caller frees; NULL on EOF or
 * timeout (*why says which).  Server frames here have no NUL in bodies.
 */
char *raw_frame(raw *r, uint32_t timeout_ms, int *why)
{
	int64_t deadline = raw_mono_ms() + timeout_ms;
	for (;;) {
		size_t skip = 0;
		while (skip < r->len && (r->buf[skip] == '\n' || r->buf[skip] == '\r'))
			skip++;
		memmove(r->buf, r->buf + skip, r->len - skip);
		r->len -= skip;
		char *nul = memchr(r->buf, '\0', r->len);
		if (nul != NULL) {
			size_t n = (size_t)(nul - r->buf);
			char *f = keel_strndup(r->buf, n);
			assert_non_null(f);
			memmove(r->buf, nul + 1, r->len - n - 1);
			r->len -= n + 1;
			return f;
		}
		int rc = raw_fill(r, deadline);
		if (rc <= 0) {
			if (why != NULL)
				*why = rc == 0 ? -EPIPE : rc;
			return NULL;
		}
	}
}

/* A header's value in a raw frame (copied into out), or NULL. */
const char *raw_hdr(const char *frame, const char *name, char *out, size_t outlen)
{
	size_t nl = strlen(name);
	const char *p = strchr(frame, '\n');
	while (p != NULL && p[1] != '\n' && p[1] != '\0') {
		p++;
		const char *eol = strchr(p, '\n');
		size_t linelen = eol ? (size_t)(eol - p) : strlen(p);
		if (linelen > nl && strncmp(p, name, nl) == 0 && p[nl] == ':') {
			size_t vl = linelen - nl - 1;
			if (vl > 0 && p[nl + 1 + vl - 1] == '\r')
				vl--;
			snprintf(out, outlen, "%.*s", (int)vl, p + nl + 1);
			return out;
		}
		p = eol;
	}
	return NULL;
}

char *raw_expect(raw *r, const char *command)
{
	int why = 0;
	char *f = raw_frame(r, RAW_T_MS, &why);
	if (f == NULL)
		fail_msg("expected %s, got %s", command, why == -EPIPE ? "EOF" : "nothing (timeout)");
	size_t n = strlen(command);
	if (strncmp(f, command, n) != 0 || f[n] != '\n')
		fail_msg("expected %s, got: %.200s", command, f);
	return f;
}

/* Wait until the server closes; frames before that are discarded.
 * 0 on close, -ETIMEDOUT. */
int raw_wait_eof(raw *r, uint32_t timeout_ms)
{
	int64_t deadline = raw_mono_ms() + timeout_ms;
	for (;;) {
		r->len = 0;
		int rc = raw_fill(r, deadline);
		if (rc == 0)
			return 0;
		if (rc < 0)
			return rc;
	}
}

/* CONNECT (version "1.0" sends no accept-version) and expect CONNECTED. */
char *raw_connect_as(raw *r, const char *version, const char *extra)
{
	char f[1024];
	if (strcmp(version, "1.0") == 0)
		snprintf(f, sizeof(f), "CONNECT\n%s\n", extra ? extra : "");
	else
		snprintf(f, sizeof(f), "CONNECT\naccept-version:%s\nhost:localhost\n%s\n", version,
			 extra ? extra : "");
	raw_puts(r, f);
	return raw_expect(r, "CONNECTED");
}

void raw_connect(raw *r, const char *version)
{
	keel_free(raw_connect_as(r, version, NULL));
}

/* An ERROR with a `message`, then the connection closes. */
void expect_error_close(raw *r, const char *receipt_id)
{
	char v[512];
	char *f = raw_expect(r, "ERROR");
	if (raw_hdr(f, "message", v, sizeof(v)) == NULL || v[0] == '\0')
		fail_msg("ERROR without a message header: %.200s", f);
	if (receipt_id != NULL) {
		if (raw_hdr(f, "receipt-id", v, sizeof(v)) == NULL || strcmp(v, receipt_id) != 0)
			fail_msg("ERROR without receipt-id:%s: %.200s", receipt_id, f);
	}
	keel_free(f);
	if (raw_wait_eof(r, RAW_T_MS) != 0)
		fail_msg("connection not closed after ERROR");
}

