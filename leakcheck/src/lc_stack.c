/*
 * lc_stack.c - other threads' current stacks through a signal (lc_stack.h).
 * Owns the handler (installed on first use, never removed: a signal that
 * arrives after its deadline finds no request and returns) and the slots,
 * one per thread asked.  A slot's word holds the thread's tid and the
 * state together, so that one compare-and-swap checks both: IDLE ->
 * ASKED (checker) -> WRITING -> DONE (handler) and back to IDLE when the
 * checker collects it or withdraws an ASKED one; a slot left WRITING at
 * the deadline is abandoned until its handler ends it.  The handler takes no
 * lock and allocates nothing.  Checker side: any thread, one at a time.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* REG_RIP */
#endif
#include "lc_stack.h"

#include <errno.h>
#include <execinfo.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <ucontext.h>
#include <unistd.h>

enum { SLOT_IDLE, SLOT_ASKED, SLOT_WRITING, SLOT_DONE };

/* A slot's word: tid << 8 | state. */
#define WORD(tid, st) (((uint64_t)(uint32_t)(tid) << 8) | (uint64_t)(st))
#define WORD_STATE(w) ((int)((w) & 0xff))
#define WORD_TID(w) ((pid_t)((w) >> 8))

typedef struct slot {
	_Atomic uint64_t word;
	bool in_use;                    /* part of the running capture (capture_mu) */
	uintptr_t pc;                   /* the interrupted PC, 0 if unknown */
	int n;
	void *raw[LC_STACK_RAW_FRAMES + 2];
} slot;

/* The handler's compare-and-swap must not take a lock. */
_Static_assert(ATOMIC_LONG_LOCK_FREE == 2 || ATOMIC_LLONG_LOCK_FREE == 2,
	       "64-bit atomics are lock-free");

static slot slots[LC_STACK_SLOTS];
static pthread_mutex_t capture_mu = PTHREAD_MUTEX_INITIALIZER;
static bool installed; /* capture_mu */

int lc_stack_signal(void)
{
	return SIGRTMIN + LC_STACK_SIGNAL_OFFSET;
}

static uintptr_t interrupted_pc(void *uctx)
{
	ucontext_t *uc = uctx;
	if (uc == NULL)
		return 0;
#if defined(__x86_64__)
	return (uintptr_t)uc->uc_mcontext.gregs[REG_RIP];
#elif defined(__i386__)
	return (uintptr_t)uc->uc_mcontext.gregs[REG_EIP];
#elif defined(__aarch64__)
	return (uintptr_t)uc->uc_mcontext.pc;
#else
	return 0;
#endif
}

/* Async-signal context: atomics, gettid, backtrace (see README.md, "The
 * current stack", for why backtrace is safe here) and nothing else. */
static void on_signal(int sig, siginfo_t *si, void *uctx)
{
	int saved = errno;
	pid_t me = (pid_t)syscall(SYS_gettid);
	(void)sig;
	(void)si;
	for (size_t i = 0; i < LC_STACK_SLOTS; i++) {
		slot *s = &slots[i];
		uint64_t want = WORD(me, SLOT_ASKED);
		if (!atomic_compare_exchange_strong(&s->word, &want, WORD(me, SLOT_WRITING)))
			continue;
		s->pc = interrupted_pc(uctx);
		s->n = backtrace(s->raw, LC_STACK_RAW_FRAMES + 2);
		atomic_store(&s->word, WORD(me, SLOT_DONE));
		break;
	}
	errno = saved;
}

/* Caller holds capture_mu.  0, or -EBUSY when another handler owns the
 * signal (before we came, or put there since). */
static int install(void)
{
	struct sigaction sa, old;
	void *warm[2];
	if (sigaction(lc_stack_signal(), NULL, &old) != 0)
		return -errno;
	if (installed)
		return (old.sa_flags & SA_SIGINFO) && old.sa_sigaction == on_signal ? 0 : -EBUSY;
	/* backtrace() loads libgcc_s on its first call (dlopen, malloc):
	 * done here, never for the first time inside the handler. */
	backtrace(warm, 2);
	if ((old.sa_flags & SA_SIGINFO) ? old.sa_sigaction != NULL
					 : (old.sa_handler != SIG_DFL && old.sa_handler != SIG_IGN))
		return -EBUSY;
	memset(&sa, 0, sizeof(sa));
	sa.sa_sigaction = on_signal;
	sa.sa_flags = SA_SIGINFO | SA_RESTART;
	sigfillset(&sa.sa_mask);
	if (sigaction(lc_stack_signal(), &sa, NULL) != 0)
		return -errno;
	installed = true;
	return 0;
}

/* Does thread `tid` block the signal?  (SigBlk of its status.) */
static bool blocks_signal(pid_t tid)
{
	char path[64], line[256];
	bool blocked = false;
	snprintf(path, sizeof(path), "/proc/self/task/%d/status", (int)tid);
	FILE *f = fopen(path, "re");
	if (f == NULL)
		return false;
	while (fgets(line, sizeof(line), f) != NULL) {
		unsigned long long mask;
		if (sscanf(line, "SigBlk: %llx", &mask) == 1) {
			blocked = (mask >> (lc_stack_signal() - 1)) & 1;
			break;
		}
	}
	fclose(f);
	return blocked;
}

static slot *take_slot(void)
{
	for (size_t i = 0; i < LC_STACK_SLOTS; i++) {
		int st = WORD_STATE(atomic_load(&slots[i].word));
		if (!slots[i].in_use && (st == SLOT_IDLE || st == SLOT_DONE)) {
			slots[i].in_use = true;
			return &slots[i];
		}
	}
	return NULL;
}

static int64_t now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* The thread's own frames: from the interrupted PC on (the handler's
 * frame and the signal trampoline before it are not the thread's). */
static void collect(slot *s, lc_stack_req *r)
{
	int from = -1;
	for (int i = 0; i < s->n && s->pc != 0; i++) {
		if ((uintptr_t)s->raw[i] == s->pc) {
			from = i;
			break;
		}
	}
	if (from < 0)
		from = s->n > 2 ? 2 : s->n; /* handler, trampoline */
	r->nframes = 0;
	for (int i = from; i < s->n && r->nframes < LC_STACK_RAW_FRAMES; i++)
		r->frames[r->nframes++] = (uintptr_t)s->raw[i];
	if (r->nframes == 0)
		snprintf(r->note, sizeof(r->note), "empty");
}

size_t lc_stack_capture(lc_stack_req *reqs, size_t n, int wait_ms)
{
	slot *mine[LC_STACK_SLOTS] = { 0 };
	size_t asked = 0, taken = 0;
	pid_t self = (pid_t)syscall(SYS_gettid);
	pthread_mutex_lock(&capture_mu);
	int rc = install();
	for (size_t i = 0; i < n; i++) {
		lc_stack_req *r = &reqs[i];
		r->nframes = 0;
		r->note[0] = '\0';
		slot *s = NULL;
		if (rc != 0)
			snprintf(r->note, sizeof(r->note), "%s",
				 rc == -EBUSY ? "signal-in-use" : "no-handler");
		else if (r->tid == self)
			snprintf(r->note, sizeof(r->note), "self");
		else if (blocks_signal(r->tid))
			snprintf(r->note, sizeof(r->note), "signal-blocked");
		else if ((s = take_slot()) == NULL)
			snprintf(r->note, sizeof(r->note), "too-many");
		if (s == NULL)
			continue;
		s->n = 0;
		s->pc = 0;
		atomic_store(&s->word, WORD(r->tid, SLOT_ASKED));
		if (syscall(SYS_tgkill, getpid(), r->tid, lc_stack_signal()) != 0) {
			uint64_t want = WORD(r->tid, SLOT_ASKED);
			atomic_compare_exchange_strong(&s->word, &want, WORD(0, SLOT_IDLE));
			s->in_use = false;
			snprintf(r->note, sizeof(r->note), "%s",
				 errno == ESRCH ? "thread-gone" : "cannot-signal");
			continue;
		}
		mine[asked] = s;
		asked++;
		r->nframes = -1; /* waiting: matched to its slot below by tid */
	}

	/* Wait for every answer, with a backoff of 1 ms doubling to 16 ms. */
	int64_t deadline = now_ms() + (wait_ms < 0 ? LC_STACK_WAIT_MS_DEFAULT : wait_ms);
	int64_t backoff = 1;
	for (;;) {
		size_t done = 0;
		for (size_t k = 0; k < asked; k++)
			done += WORD_STATE(atomic_load(&mine[k]->word)) == SLOT_DONE;
		int64_t left = deadline - now_ms();
		if (done == asked || left <= 0)
			break;
		struct timespec ts = { 0, (long)(backoff < left ? backoff : left) * 1000000L };
		nanosleep(&ts, NULL);
		backoff = backoff * 2 > 16 ? 16 : backoff * 2;
	}

	for (size_t k = 0; k < asked; k++) {
		slot *s = mine[k];
		uint64_t w = atomic_load(&s->word);
		lc_stack_req *r = NULL;
		for (size_t i = 0; i < n && r == NULL; i++)
			if (reqs[i].nframes == -1 && reqs[i].tid == WORD_TID(w))
				r = &reqs[i];
		if (WORD_STATE(w) == SLOT_DONE) {
			collect(s, r);
			taken += r->nframes > 0;
			atomic_store(&s->word, WORD(0, SLOT_IDLE));
		} else {
			/* ASKED: withdrawn (a late signal finds nothing to do);
			 * WRITING: abandoned until its handler ends it. */
			uint64_t want = WORD(WORD_TID(w), SLOT_ASKED);
			atomic_compare_exchange_strong(&s->word, &want, WORD(0, SLOT_IDLE));
			r->nframes = 0;
			snprintf(r->note, sizeof(r->note), "no-answer-in-%dms",
				 wait_ms < 0 ? LC_STACK_WAIT_MS_DEFAULT : wait_ms);
		}
		s->in_use = false;
	}
	pthread_mutex_unlock(&capture_mu);
	return taken;
}
