/*
 * broker.h - the broker object: loop, config, core, security, events and
 * the STOMP acceptor, with the server states of DESIGN.md.
 *
 * States: STARTING -> LIVE -> STOPPING -> STOPPED, each emitted as a
 * `state` event; `acceptor.listening` comes before LIVE.  SIGTERM and
 * SIGINT stop it gracefully.  Loop thread only (the thread that calls
 * keel_broker_run).
 */
#ifndef KEEL_BROKER_H
#define KEEL_BROKER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <uv.h>

#include "config.h"

typedef struct keel_broker keel_broker;

typedef enum keel_broker_state {
	KEEL_BROKER_STARTING = 0,
	KEEL_BROKER_LIVE,
	KEEL_BROKER_STOPPING,
	KEEL_BROKER_STOPPED,
} keel_broker_state;

const char *keel_broker_state_name(keel_broker_state st);

/*
 * Everything --check-config checks, without listening: the config's
 * listen address, security (users, hashes, settings), the security
 * posture (no users only on a loopback address), and that the addresses
 * and queues can be created.  0, -EINVAL or -EPERM (posture) with a
 * message in err.
 */
int keel_broker_check_config(const keel_config *cfg, char *err, size_t errlen);

/*
 * Open the events sink (emitting `state` STARTING), build security and the
 * core from cfg, listen (emitting `acceptor.listening`).  Borrows cfg,
 * which must outlive the broker.  On failure returns -errno with a message
 * in err: -EINVAL / -EPERM for configuration problems (refused before
 * listening), other codes (-EADDRINUSE...) for the world's; when events
 * were open an `error` event and `state` STOPPED were emitted.
 */
int keel_broker_create(keel_broker **out, const keel_config *cfg, char *err, size_t errlen);

/* Emit `state` LIVE and run the loop until stopped.  Returns 0 after a
 * clean stop (`state` STOPPED emitted), -errno otherwise. */
int keel_broker_run(keel_broker *b);

/* Graceful stop, as on SIGTERM (ignored unless LIVE or STARTING). */
void keel_broker_stop(keel_broker *b);

keel_broker_state keel_broker_get_state(const keel_broker *b);
/* The acceptor's bound port (the real one when 0 was asked); 0 if none. */
uint16_t keel_broker_port(const keel_broker *b);
uv_loop_t *keel_broker_loop(keel_broker *b);

/*
 * The leak check on the broker itself (leakcheck/lc_check.h), after
 * keel_broker_run() returned (every broker thread joined) and before
 * keel_broker_free() (the events sink is still open): threads alive now
 * that were not in `before` (taken at start) and are not allowlisted.
 * `passed`: the run ended cleanly, so a thread still ending gets the
 * grace period.  Prints the report on stdout (with each thread's current
 * and creation stacks), logs each LEAKED line on stderr and emits a
 * `thread.leak` event per leaked thread.  Returns the number of leaks, or
 * -errno.
 */
struct lc_snapshot;
int keel_broker_check_leaks(keel_broker *b, const struct lc_snapshot *before, bool passed);

/* Closes every handle left, closes the loop, frees.  NULL is fine. */
void keel_broker_free(keel_broker *b);

#endif
