/*
 * deflake.h - `run --deflake N` (deflake.c): a scenario run that did not
 * pass runs again, its seed and iteration pinned, up to N times, until one
 * passes.  Its label: `flaky` when a retry passed, `fail` when every
 * attempt failed; every attempt stays a scenario row (scenarios.attempt)
 * and a line of the output, so no failure turns into a pass unseen.
 * Owns the retries not yet handed to the runner.  Main thread.
 */
#ifndef KH_DEFLAKE_H
#define KH_DEFLAKE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

#include "job.h"

typedef struct kh_deflake {
	unsigned max;           /* retries per failed scenario run (0: off) */
	kh_job **queue;         /* retries to run next, oldest first (owned) */
	size_t nqueue;
	size_t capqueue;
} kh_deflake;

typedef enum kh_deflake_verdict {
	KH_DF_PASS,             /* passed at its first attempt */
	KH_DF_RETRY,            /* did not pass; a retry is queued */
	KH_DF_FLAKY,            /* a retry passed */
	KH_DF_FAIL,             /* did not pass, no retry left (or none asked) */
} kh_deflake_verdict;

/* The next retry to run (the caller owns it now), or NULL. */
kh_job *kh_deflake_next(kh_deflake *d);
/* Decides what an ended job means and queues its retry (a copy of it,
 * attempt + 1) when it failed and retries are left.  -ENOMEM: no retry
 * could be queued (the verdict is then KH_DF_FAIL). */
int kh_deflake_done(kh_deflake *d, const kh_job *j, kh_deflake_verdict *v);
/* The console or TAP lines of an ended job under --deflake; `n` is its
 * TAP number (counted by the caller for every verdict but KH_DF_RETRY). */
void kh_deflake_print(FILE *f, bool tap, unsigned n, const kh_job *j, kh_deflake_verdict v,
		      const kh_deflake *d);
/* Frees the retries never handed out.  NULL-safe on its fields. */
void kh_deflake_free(kh_deflake *d);

#endif
