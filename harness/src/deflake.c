/*
 * deflake.c - retries of failed scenario runs (deflake.h).  A retry is a
 * copy of the failed job (file, name, text borrowed from the run, seed,
 * iteration) with attempt + 1 and its results cleared.  Invariant: a job
 * is in the queue or handed out, never both.  Main thread.
 */
#include "deflake.h"

#include <errno.h>
#include <inttypes.h>
#include <string.h>

#include "keel/alloc.h"
#include "output.h"

kh_job *kh_deflake_next(kh_deflake *d)
{
	if (d->nqueue == 0)
		return NULL;
	kh_job *j = d->queue[0];
	memmove(d->queue, d->queue + 1, (d->nqueue - 1) * sizeof(*d->queue));
	d->nqueue--;
	return j;
}

static int queue_retry(kh_deflake *d, const kh_job *j)
{
	if (d->nqueue == d->capqueue) {
		size_t cap = d->capqueue ? d->capqueue * 2 : 8;
		kh_job **q = keel_realloc(d->queue, cap * sizeof(*q));
		if (q == NULL)
			return -ENOMEM;
		d->queue = q;
		d->capqueue = cap;
	}
	kh_job *r = keel_calloc(1, sizeof(*r));
	if (r == NULL)
		return -ENOMEM;
	r->file = keel_strdup(j->file);
	r->name = keel_strdup(j->name);
	if (r->file == NULL || r->name == NULL) {
		keel_free(r->file);
		keel_free(r->name);
		keel_free(r);
		return -ENOMEM;
	}
	r->iteration = j->iteration;
	r->seed = j->seed;              /* pinned: the same run again */
	r->timeout_s = j->timeout_s;
	r->text = j->text;
	r->text_len = j->text_len;
	memcpy(r->sha256, j->sha256, sizeof(r->sha256));
	r->attempt = j->attempt + 1;
	r->outcome = "pass";
	d->queue[d->nqueue++] = r;
	return 0;
}

int kh_deflake_done(kh_deflake *d, const kh_job *j, kh_deflake_verdict *v)
{
	bool pass = strcmp(j->outcome, "pass") == 0;
	if (pass) {
		*v = j->attempt > 0 ? KH_DF_FLAKY : KH_DF_PASS;
		return 0;
	}
	*v = KH_DF_FAIL;
	if (j->attempt >= d->max)
		return 0;
	int rc = queue_retry(d, j);
	if (rc == 0)
		*v = KH_DF_RETRY;
	return rc;
}

static void title(const kh_job *j, char *buf, size_t len)
{
	if (j->iteration > 0)
		snprintf(buf, len, "%s#%u", j->name, j->iteration);
	else
		snprintf(buf, len, "%s", j->name);
}

void kh_deflake_print(FILE *f, bool tap, unsigned n, const kh_job *j, kh_deflake_verdict v,
		      const kh_deflake *d)
{
	char t[256];
	title(j, t, sizeof(t));
	switch (v) {
	case KH_DF_PASS:
		if (tap)
			kh_out_tap(f, n, j);
		else
			kh_out_console(f, j, true);
		break;
	case KH_DF_RETRY:
		if (tap) {
			fprintf(f, "# %s: attempt %u %s (%.2f s): %.300s\n# retrying with seed %"
				   PRIu64 " pinned (attempt %u of at most %u)\n", t, j->attempt + 1,
				j->outcome, j->secs, j->reason, j->seed, j->attempt + 2, d->max + 1);
			break;
		}
		kh_out_console(f, j, true);
		fprintf(f, "         retrying with seed %" PRIu64 " pinned (attempt %u of at most "
			   "%u)\n", j->seed, j->attempt + 2, d->max + 1);
		break;
	case KH_DF_FLAKY:
		if (tap) {
			fprintf(f, "ok %u - %s (%.2f s) # flaky: failed %u attempt(s) with seed %"
				   PRIu64 ", then passed\n", n, t, j->secs, j->attempt, j->seed);
			break;
		}
		kh_out_console(f, j, false);
		fprintf(f, "FLAKY    %-40s failed %u attempt(s) with seed %" PRIu64 ", then "
			   "passed (attempt %u)\n", t, j->attempt, j->seed, j->attempt + 1);
		break;
	case KH_DF_FAIL:
		if (tap)
			kh_out_tap(f, n, j);
		else
			kh_out_console(f, j, true);
		if (j->attempt > 0)
			fprintf(f, "%s%s failed every attempt (%u) with seed %" PRIu64 "\n",
				tap ? "# " : "FAIL     ", t, j->attempt + 1, j->seed);
		break;
	}
}

void kh_deflake_free(kh_deflake *d)
{
	for (size_t i = 0; i < d->nqueue; i++) {
		keel_free(d->queue[i]->file);
		keel_free(d->queue[i]->name);
		keel_free(d->queue[i]);
	}
	keel_free(d->queue);
	d->queue = NULL;
	d->nqueue = d->capqueue = 0;
}
