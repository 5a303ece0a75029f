/*
 * replman_drive.c - feeding the HA machine (the bottom of the manager's
 * files): the queue of inputs and the driving loop that feeds them to
 * keel_ha one at a time and hands each action it returns to
 * m->run_action (set once by keel_replman_create in replman.c); also the
 * journal accessor and the fault-point death every file uses.
 * Owns the input queue.  The machine is never re-entered: inputs raised
 * while actions run wait in the queue.  Loop thread only.
 */
#include "replman_int.h"

#include <assert.h>
#include <signal.h>
#include <string.h>

#include "keel/alloc.h"
#include "log.h"

uint64_t replman__now_ms(keel_replman *m)
{
	return uv_now(m->loop);
}

void replman__in_init(keel_replman *m, keel_ha_input *in, keel_ha_input_type t, uint32_t link)
{
	memset(in, 0, sizeof(*in));
	in->type = t;
	in->link = link;
	in->now_ms = replman__now_ms(m);
}

void replman__feed_simple(keel_replman *m, keel_ha_input_type t, uint32_t link)
{
	keel_ha_input in;
	replman__in_init(m, &in, t, link);
	replman__feed(m, &in);
}

void replman__die_now(keel_replman *m, const char *point)
{
	keel_log_warn("fault point %s: dying now", point);
	keel_events_emit(m->events, "error", "{s:s, s:s}", "message", "fault point: dying",
			 "point", point);
	raise(SIGKILL);
}

keel_journal *replman__journal(keel_replman *m)
{
	return m->host.journal(m->host.ud);
}

/* ---- driving the machine --------------------------------------------------- */

void replman__feed(keel_replman *m, keel_ha_input *in)
{
	pending_in *p = keel_malloc(sizeof(*p));
	if (p == NULL) {
		keel_log_error("replication: out of memory: input %s lost",
			       keel_ha_input_name(in->type));
		return;
	}
	p->in = *in;
	p->next = NULL;
	if (m->in_tail)
		m->in_tail->next = p;
	else
		m->in_head = p;
	m->in_tail = p;
}

/* Carry out pending actions, then feed queued inputs, until both are
 * empty or an action pauses the manager. */
void replman__drive(keel_replman *m)
{
	if (m->driving)
		return;
	m->driving = true;
	for (;;) {
		if (m->paused)
			break;
		if (m->pending_next < m->pending_acts.n) {
			keel_ha_action a = m->pending_acts.a[m->pending_next++];
			m->run_action(m, &a);
			continue;
		}
		if (m->in_head == NULL)
			break;
		pending_in *p = m->in_head;
		m->in_head = p->next;
		if (m->in_head == NULL)
			m->in_tail = NULL;
		keel_ha_input in = p->in;
		keel_free(p);
		in.now_ms = replman__now_ms(m);
		/* never re-entered: every action of the last input is done */
		assert(m->pending_next == m->pending_acts.n);
		keel_ha_feed(&m->ha, &in, &m->pending_acts);
		keel_ha_check(&m->ha);
		m->pending_next = 0;
	}
	m->driving = false;
}

void replman__in_clear(keel_replman *m)
{
	while (m->in_head) {
		pending_in *p = m->in_head;
		m->in_head = p->next;
		keel_free(p);
	}
}
