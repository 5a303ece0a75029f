/*
 * cmd_opts.h - what the commands that run scenarios (run, replay, shrink)
 * share on their command line: the timeout multiplier, which keel-broker,
 * the recording they read, and where their own recording goes by default.
 * Each says what is wrong on stderr ("keel-harness: ...") and returns -1;
 * the command then exits 2 (usage or input error).
 */
#ifndef KH_CMD_OPTS_H
#define KH_CMD_OPTS_H

#include <stdbool.h>
#include <stddef.h>
#include <sqlite3.h>

/* The keel-broker next to this keel-harness (build tree or install), into
 * buf (PATH_MAX); false when none is found. */
bool kh_default_broker(const char *self_exe, char *buf, size_t len);
/* keel-leaks next to this keel-harness (build tree or install), into buf
 * (PATH_MAX); false when none is found. */
bool kh_default_keel_leaks(const char *self_exe, char *buf, size_t len);

/* --timeout-multiplier F: 0 < F <= KH_MAX_TIMEOUT_MULTIPLIER.  0 or -1. */
int kh_opt_multiplier(const char *arg, double *out);

/* This keel-harness (/proc/self/exe) into self, and the keel-broker the
 * command runs into broker (both PATH_MAX): --broker's (an executable),
 * else the one built or installed next to this.  0 or -1. */
int kh_opt_broker(const char *broker_opt, char *self, char *broker);

/* A recording opened read-only (a busy timeout of a minute: a run may
 * still be writing it).  0 or -1 (*db NULL or to be closed). */
int kh_open_recording(const char *path, sqlite3 **db);

/* runs/KIND-<local time>-<pid>.db (kind NULL: runs/<local time>-<pid>.db)
 * into buf, runs/ created.  0 or -1. */
int kh_default_db(const char *kind, char *buf, size_t len);

#endif
