/*
 * await.h - the await matcher: an event type plus field predicates over a
 * node's JSON event.  Pure (no I/O, no clock); any thread.
 *
 * A predicate is written "FIELD OP VALUE" or just "FIELD" (present):
 *   state == LIVE      port > 0      message ~ ^bind      file != x
 * OPs: == != < <= > >= ~ (POSIX extended regex) !~.  FIELD is a member
 * name, dotted for nested objects ("ha.role").  Numbers compare as numbers
 * when both sides are numbers, else as text; true/false/null as words.
 */
#ifndef KH_AWAIT_H
#define KH_AWAIT_H

#include <jansson.h>
#include <regex.h>
#include <stdbool.h>
#include <stddef.h>

typedef enum kh_pred_op {
	KH_OP_EXISTS,
	KH_OP_EQ,
	KH_OP_NE,
	KH_OP_LT,
	KH_OP_LE,
	KH_OP_GT,
	KH_OP_GE,
	KH_OP_MATCH,
	KH_OP_NOMATCH,
} kh_pred_op;

typedef struct kh_pred {
	char *field;
	kh_pred_op op;
	char *value;            /* NULL for EXISTS */
	bool value_is_num;
	double num;
	bool has_re;
	regex_t re;             /* MATCH / NOMATCH */
	char *text;             /* the predicate as written (messages) */
} kh_pred;

/* Parse `text` into *p.  0, or -EINVAL with a reason in err; -ENOMEM. */
int kh_pred_parse(kh_pred *p, const char *text, char *err, size_t errlen);
void kh_pred_clear(kh_pred *p); /* a zeroed or parsed predicate */

/* The field's value in `ev` (dotted path) or NULL. Borrowed. */
json_t *kh_event_field(json_t *ev, const char *path);
/* One predicate on one event. */
bool kh_pred_match(const kh_pred *p, json_t *ev);
/* `type` (NULL = any) and every predicate. */
bool kh_await_match(const char *type, const kh_pred *preds, size_t n, json_t *ev);

#endif
