/*
 * keel/exit.h - the exit codes of every Keel program, in one place.
 *
 * 0, 1 and 2 are the shared design's contract (DESIGN.md "Names"); 3 and
 * 4 say that a process passed or failed but left a thread (fd, child)
 * behind, so a leak is never reported as a plain pass.  77 is CTest's
 * SKIP_RETURN_CODE for tests that cannot run here (and say why).
 */
#ifndef KEEL_EXIT_H
#define KEEL_EXIT_H

#define KEEL_EXIT_OK 0          /* success */
#define KEEL_EXIT_FAIL 1        /* a check or test failed */
#define KEEL_EXIT_USAGE 2       /* usage, config or input error */
#define KEEL_EXIT_LEAKED 3      /* keel-broker: stopped, but the leak check found leaks */
#define KEEL_EXIT_CHILD_LEAKED 4 /* keel-harness scenario child: leaked a thread, fd or child */
#define KEEL_EXIT_SKIP 77       /* a test that cannot run here (CTest SKIP) */

#endif
