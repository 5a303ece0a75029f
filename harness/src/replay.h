/*
 * replay.h - `keel-harness replay RUN.db [--scenario NAME|ID] ...`: runs
 * recorded scenarios again (their recorded text, their seed) against
 * fresh nodes into a recording of its own (runs/replay-*.db, kept) and
 * compares each with its recording (diff.h: per node the state
 * transitions and protocol milestones with the step they follow, message
 * outcomes, error findings; identities mapped one to one).  Main thread.
 */
#ifndef KH_REPLAY_H
#define KH_REPLAY_H

/* Exit code: 0 every scenario the same, 1 a divergence (each printed, up
 * to --max-divergences per scenario), 2 usage or input error. */
int kh_cmd_replay(int argc, char **argv);

#endif
