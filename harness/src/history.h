/*
 * history.h - the history of scenario runs across runs and machines
 * (history.c): one small SQLite file (default runs/history.db) with a row
 * per scenario run (scenario, outcome, duration, seed, iteration, attempt,
 * commit, host, shard, time, reason, first finding), appended by every
 * `run` and by `history add RUN.db...`; read by `flaky` (flaky.c) and by
 * `run --balance history`.  A row is keyed by its run's uid, so adding a
 * recording twice adds nothing.  Main thread.
 */
#ifndef KH_HISTORY_H
#define KH_HISTORY_H

#include <sqlite3.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define KH_HISTORY_DEFAULT "runs/history.db"

/* Opens (with `create`: creates, and its directory runs/ when it is the
 * default) the history at `path`.  0, -ENOENT (absent, !create) or -EIO
 * (said on stderr). */
int kh_history_open(const char *path, bool create, sqlite3 **out);

/* Appends every finished scenario run of run `run_id` of recording `rec`
 * (every run when run_id < 0) to history `h`; rows already there are
 * skipped.  *added: how many were new.  0 or -EIO. */
int kh_history_add(sqlite3 *h, sqlite3 *rec, int64_t run_id, unsigned *added);

/* What `run` does at its end: opens `path` (created), appends the run,
 * says so on stderr.  Failure is a warning (the run's result stands). */
void kh_history_record(const char *path, sqlite3 *rec, int64_t run_id);

/* The commit the suite runs: $KEEL_GIT_REV, $GITHUB_SHA, $CI_COMMIT_SHA,
 * else `git rev-parse HEAD` in the current directory; "" when none. */
void kh_history_commit(char *buf, size_t len);

/* Expected durations (s) of `names` from history `path`: the mean of each
 * one's last KH_BALANCE_LAST_RUNS rows; an unknown one gets the median of
 * the known ones (KH_BALANCE_DEFAULT_S when none is).  Returns how many
 * were known (0 also when there is no history file), or -EIO. */
int kh_history_expected(const char *path, const char *const *names, size_t n, double *secs);

/* Longest first onto the least loaded of `nshards` shards (ties: the
 * lower shard; equal durations: names in order), into shard[i] (0-based).
 * Pure: every shard process computes the same plan from the same
 * history.  load (nshards entries, may be NULL) gets each shard's sum. */
void kh_balance_assign(const char *const *names, const double *secs, size_t n,
		       unsigned nshards, unsigned *shard, double *load);

/* `keel-harness history add [--history FILE] RUN.db...`: 0, 2. */
int kh_cmd_history(int argc, char **argv);
/* `keel-harness flaky [--history FILE] [--since WHEN] [--commit REV]`
 * (flaky.c): 0, 2. */
int kh_cmd_flaky(int argc, char **argv);

#endif
