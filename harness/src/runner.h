/*
 * runner.h - the parent side of `keel-harness run` and `replay`: schedules
 * scenario children (-j, shards, repeat, until-failure), each in its own
 * session/process group (uv_spawn detached) with its own data directory
 * and loopback slot, under a timeout; kills the group when it ends, decides
 * the outcome (pass, fail, timeout, crash), runs the checks, and reports
 * (console, TAP, JUnit).  Main thread, one libuv loop.
 */
#ifndef KH_RUNNER_H
#define KH_RUNNER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "job.h"
#include "recorder.h"

/* Gives the next job to run (owned by the caller until the end), or NULL
 * when there is none (yet: it is asked again after each job ends). */
typedef kh_job *(*kh_job_next_fn)(void *ud);
typedef void (*kh_job_done_fn)(kh_job *j, void *ud);

typedef struct kh_exec_opts {
	kh_recorder *rec;       /* the run's database (autocommit) */
	const char *db_path;
	int64_t run_id;
	unsigned jobs;          /* parallel children */
	double timeout_multiplier;
	const char *broker;
	const char *self_exe;
	const char *workroot;   /* scenario dirs are created below */
	bool allow_test_steps;
	bool keep_data;
	bool progress;          /* live progress line (a terminal) */
	const char *valgrind;   /* nodes under Valgrind: memcheck|helgrind|drd, or NULL */
	const char *valgrind_supp; /* suppressions file or NULL */
	const char *keel_leaks; /* reads the Valgrind XML (needed with valgrind) */
	kh_job_next_fn next;
	kh_job_done_fn done;
	void *ud;
} kh_exec_opts;

/* Runs jobs until `next` has none and all ended.  0, -EINTR when SIGINT
 * or SIGTERM ended it early (the running jobs killed and done as failed
 * "interrupted: ...", no more started), or another -errno. */
int kh_runner_exec(const kh_exec_opts *o);

/* `keel-harness run ...`: exit code 0 all passed, 1 some failed, 2 usage. */
int kh_cmd_run(int argc, char **argv);
/* `keel-harness lint FILE...`: 0 or 2. */
int kh_cmd_lint(int argc, char **argv);

/* Remove a directory tree (no symlinks followed).  0 or -errno. */
int kh_rm_rf(const char *path);
/* Per-scenario seed from the run's seed, its name and iteration. */
uint64_t kh_scenario_seed(uint64_t run_seed, const char *name, unsigned iteration);

#endif
