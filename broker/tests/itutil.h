/*
 * itutil.h - run a real keel-broker process for integration tests.
 *
 * it_broker_start() spawns the broker on 127.0.0.1:0 with a fresh data
 * directory and its events on a pipe, and returns once the broker said
 * `state LIVE` (or the event the options name), with the port from
 * `acceptor.listening`.  Every wait has a
 * deadline (poll(2) on the pipe or a pidfd); nothing sleeps.  The broker
 * dies with the test process (PR_SET_PDEATHSIG).  KEEL_BROKER_WRAPPER
 * ("valgrind --error-exitcode=99 ...") prefixes the broker's command line;
 * with a wrapper, deadlines are scaled (it_ms()).  One thread per it_broker.
 */
#ifndef KEEL_ITUTIL_H
#define KEEL_ITUTIL_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

typedef struct it_broker it_broker;

typedef struct it_broker_opts {
	const char *name;               /* --name; default "it" */
	const char *config_yaml;        /* written to a file, passed as --config */
	const char *const *extra_args;  /* NULL-terminated, after the defaults */
	/* What "started" means (all NULL: `state` LIVE, with the port from an
	 * earlier `acceptor.listening`).  Else the first event of ready_type
	 * whose string field ready_field equals ready_value (field NULL: any);
	 * the port is then that of an `acceptor.listening` before it, or 0.
	 * E.g. a backup, which never says LIVE: "replication.listening". */
	const char *ready_type;
	const char *ready_field;
	const char *ready_value;
	/* Return right after the spawn, waiting for nothing (port 0): for a
	 * broker expected to fail at start (see it_broker_wait_exit). */
	bool no_wait;
} it_broker_opts;

/* A deadline in ms, scaled by KEEL_IT_TIMEOUT_SCALE (default 1, or 20
 * under a KEEL_BROKER_WRAPPER such as valgrind). */
uint32_t it_ms(uint32_t ms);

/* Spawn `exe` and wait (up to timeout_ms) for LIVE.  0 and *out, or
 * -errno (-ETIMEDOUT; -ECHILD when it exited first).  opt may be NULL. */
int it_broker_start(it_broker **out, const char *exe, const it_broker_opts *opt,
		    uint32_t timeout_ms);
uint16_t it_broker_port(const it_broker *b);
pid_t it_broker_pid(const it_broker *b);
const char *it_broker_dir(const it_broker *b); /* the test's temp dir */

/* Events received so far, in order (borrowed, valid until free). */
size_t it_broker_event_count(const it_broker *b);
json_t *it_broker_event(const it_broker *b, size_t i);
/* Index of the first event at or after `from` of `type` whose string
 * field `field` equals `value` (field NULL: any), waiting for more events
 * up to timeout_ms.  -ETIMEDOUT, or -EPIPE when the events pipe closed. */
int it_broker_wait_event(it_broker *b, size_t from, const char *type, const char *field,
			 const char *value, uint32_t timeout_ms);

/* SIGTERM, then wait for exit (and for the events pipe to close) up to
 * timeout_ms; SIGKILL on the deadline.  0 and *wstatus, or -ETIMEDOUT
 * (killed). */
int it_broker_stop(it_broker *b, uint32_t timeout_ms, int *wstatus);
/* Wait up to timeout_ms for the broker to exit by itself (no signal),
 * draining events.  0 and *wstatus, or -ETIMEDOUT (still running). */
int it_broker_wait_exit(it_broker *b, uint32_t timeout_ms, int *wstatus);

/* Kill -9 if still running, reap, remove the temp dir, free.  NULL ok. */
void it_broker_free(it_broker *b);

/* Exit code of a wait status, or 128 + signal. */
int it_exit_code(int wstatus);

/* Can libfiu fault injection be used on a broker started now?  No when
 * fiu-run / fiu-ctrl are missing, in a sanitizer build (fiu-run preloads a
 * library; ASan insists on coming first), or when KEEL_BROKER_WRAPPER is
 * set (fiu-run would wrap valgrind).  Returns NULL when it can, else the
 * reason.  The fault tests run as their own CTest entries, which report
 * SKIP (exit code IT_SKIP) with that reason. */
const char *it_fiu_unavailable(void);
#define IT_SKIP 77

/* A loopback TCP port free right now (bound, read back, closed), or 0. */
uint16_t it_free_port(void);
/* A new directory $TMPDIR/keel-it-TAG-XXXXXX (keel_malloc'd path; free it
 * with it_tmpdir_remove, which removes the tree), or NULL. */
char *it_tmpdir_make(const char *tag);
void it_tmpdir_remove(char *dir);

#endif
