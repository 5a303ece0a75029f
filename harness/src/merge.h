/*
 * merge.h - `keel-harness merge OUT.db IN.db...` (merge.c): one recording
 * from several, each row with its origin (the run's host, shard, source
 * file).  Main thread.
 */
#ifndef KH_MERGE_H
#define KH_MERGE_H

#include <sqlite3.h>

/* Exit code: 0 merged, 2 usage or input error (a new OUT is not left
 * behind half written). */
int kh_cmd_merge(int argc, char **argv);

#endif
