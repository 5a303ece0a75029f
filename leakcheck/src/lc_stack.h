/*
 * lc_stack.h - the current stack of another thread of this process: where
 * a leaked thread is blocked at the time of the check.  The checking
 * thread sends each thread a dedicated real-time signal (lc_stack_signal,
 * with tgkill); a handler installed once and never removed takes
 * backtrace() into the thread's slot; the checker waits for every answer
 * up to a deadline.  Design and safety: leakcheck/README.md, "The current
 * stack".  lc_stack_capture() may be called from any thread (one capture
 * at a time; others wait), never from a signal handler.
 */
#ifndef LC_STACK_H
#define LC_STACK_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

/* The signal: SIGRTMIN + this (glibc keeps two real-time signals below
 * SIGRTMIN for itself; libuv and the project use none). */
#define LC_STACK_SIGNAL_OFFSET 7
/* Raw frames a handler takes (the handler's own and the signal frame
 * are then dropped: up to 8 of the thread's own remain). */
#define LC_STACK_RAW_FRAMES 12
/* Threads asked at once; more leaked threads than this get no stack. */
#define LC_STACK_SLOTS 64
/* How long the check waits for the answers, unless told otherwise: a
 * thread answers within microseconds unless it cannot run (stopped,
 * uninterruptible sleep, a debugger). */
#define LC_STACK_WAIT_MS_DEFAULT 1000

int lc_stack_signal(void); /* SIGRTMIN + LC_STACK_SIGNAL_OFFSET */

typedef struct lc_stack_req {
	pid_t tid;                          /* in: the thread (a task of this process) */
	int nframes;                        /* out: frames[0] is the PC it was stopped at */
	uintptr_t frames[LC_STACK_RAW_FRAMES];
	char note[48];                      /* out: why nframes is 0, "" otherwise */
} lc_stack_req;

/*
 * Asks every thread of reqs[0..n) for its stack and waits up to wait_ms
 * for all of them.  Each request ends with frames or with a note:
 * "signal-in-use" (another handler owns lc_stack_signal), "signal-blocked"
 * (the thread blocks it), "thread-gone", "no-answer-in-Nms", "too-many"
 * (more than LC_STACK_SLOTS), "self" (the calling thread).  Returns the
 * number of stacks taken.
 */
size_t lc_stack_capture(lc_stack_req *reqs, size_t n, int wait_ms);

#endif
