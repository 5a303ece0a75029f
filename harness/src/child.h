/*
 * child.h - one scenario, run inside the runner's child process (its own
 * process group): a libuv loop, the scenario's nodes, its steps in order,
 * awaits on node events, produce/consume with the async keel_client, and
 * the recording of all of it.  Writes the scenario's outcome (pass/fail
 * and reason); the runner decides timeout and crash.  Main thread.
 */
#ifndef KH_CHILD_H
#define KH_CHILD_H

#include <stdbool.h>
#include <stdint.h>

#include "keel/exit.h"

typedef struct kh_child_opts {
	const char *db_path;
	int64_t scenario_id;    /* row written by the runner */
	const char *file;       /* the scenario file */
	uint64_t seed;
	unsigned slot;          /* nodes listen on 127.77.<slot>.<n> */
	const char *workdir;    /* data directories go below (exists) */
	const char *broker;     /* keel-broker */
	const char *self_exe;   /* keel-harness, for exec-node */
	double timeout_multiplier; /* already scaled for Valgrind by the runner */
	bool allow_test_steps;
	const char *valgrind;   /* memcheck | helgrind | drd, or NULL */
	const char *valgrind_supp; /* suppressions file or NULL */
	const char *keel_leaks; /* keel-leaks (reads the Valgrind XML) */
	const char *schedule_db; /* replay: chaos steps drive the faults recorded in
				   this recording for scenario schedule_id, or NULL */
	int64_t schedule_id;
} kh_child_opts;

/* The child's exit status when it leaked a thread, fd or child process of
 * its own (its leak report is the last block of its stdout). */
#define KH_CHILD_EXIT_LEAKED KEEL_EXIT_CHILD_LEAKED

/* Run it.  Returns the process exit code: 0 pass, 1 fail, 2 cannot run,
 * KH_CHILD_EXIT_LEAKED when it passed or failed but left a thread, fd or
 * child process of its own behind: it takes a leak snapshot first thing
 * (after starting libuv's pool) and checks after everything is closed. */
int kh_child_run(const kh_child_opts *o);

/* `keel-harness scenario-child ...` (hidden): parses the options the
 * runner passes and calls kh_child_run. */
int kh_child_main(int argc, char **argv);

#endif
