/*
 * shrink.h - `keel-harness shrink RUN.db --scenario NAME|ID [-o FILE]`:
 * delta debugging (ddmin) over the fault schedule that a failed
 * scenario's chaos steps recorded, re-running candidates (the scenario
 * with an explicit `schedule:` of a subset, anchored as recorded) until
 * the smallest that still fails the same way; writes it as a plain
 * scenario file and says how many runs it took.  Main thread.
 */
#ifndef KH_SHRINK_H
#define KH_SHRINK_H

/* Exit code: 0 shrunk (the file written), 1 the full schedule did not
 * fail the same way again, 2 usage or input error. */
int kh_cmd_shrink(int argc, char **argv);

#endif
