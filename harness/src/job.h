/*
 * job.h - one scenario run (kh_job) and, once done, its result: what the
 * runner schedules and fills in (runner.h) and what the reports format
 * (output.h).  A plain struct, owned by whoever made the job; no code.
 */
#ifndef KH_JOB_H
#define KH_JOB_H

#include <stddef.h>
#include <stdint.h>

/* One scenario run and, once done, its result. */
typedef struct kh_job {
	char *file;             /* absolute path */
	char *name;
	unsigned iteration;
	unsigned attempt;       /* run --deflake: 0, then each retry (same seed) */
	uint64_t seed;
	double timeout_s;       /* scenario timeout, before the multiplier */
	const char *text;       /* the scenario's YAML as it runs (borrowed from the
				   job's maker; recorded, the child runs it) */
	size_t text_len;
	char sha256[65];        /* of text, hex (sha256.h) */
	const char *schedule_db; /* replay: the recording whose chaos schedule the
				   child drives (scenario schedule_id), or NULL */
	int64_t schedule_id;
	/* results */
	int64_t scenario_id;
	const char *outcome;    /* "pass" | "fail" | "timeout" | "crash" */
	char reason[2048];
	double secs;
	char *output;           /* the child's stdout+stderr (keel_malloc) */
	size_t output_len;
} kh_job;

#endif
