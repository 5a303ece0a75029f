/*
 * runner_leaks.h - the runner's leak records of a scenario (runner_leaks.c):
 * what its child's process group left running, and what the child itself
 * leaked (its exit status KH_CHILD_EXIT_LEAKED).  Main thread.
 */
#ifndef KH_RUNNER_LEAKS_H
#define KH_RUNNER_LEAKS_H

#include <stddef.h>

#include "job.h"
#include "recorder.h"

/* After the child (pid child_pid, its process group's id) exited by
 * itself: each process still in its group is a CHILD leak, each listening
 * socket one of them holds on 127.77.<addr>.* a LISTEN leak. */
void kh_runner_group_leaks(kh_recorder *rec, const kh_job *j, unsigned addr, int child_pid);
/* Each LEAKED line of the last leak report block of the child's output is
 * a leak of node keel-harness; the first (without "LEAKED ") into first.
 * Returns how many LEAKED lines there were. */
unsigned kh_runner_child_leaks(kh_recorder *rec, const kh_job *j, char *first, size_t first_len);

#endif
