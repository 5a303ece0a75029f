/*
 * replay.h - `keel-harness replay RUN.db [--scenario NAME]`: runs recorded
 * scenarios again (their file, their seed) against fresh nodes into a
 * scratch recording and compares each node's event sequence with the
 * recorded one (diff.h).  Main thread.
 */
#ifndef KH_REPLAY_H
#define KH_REPLAY_H

/* Exit code: 0 same, 1 a sequence differs (first divergence printed),
 * 2 usage or input error. */
int kh_cmd_replay(int argc, char **argv);

#endif
