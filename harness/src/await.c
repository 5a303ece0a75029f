/*
 * await.c - predicate parsing and matching for `await` steps (await.h).
 * Owns nothing but the strings and regexes inside each kh_pred.  Pure;
 * any thread.
 */
#include "await.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "keel/alloc.h"

static const struct {
	const char *word;
	kh_pred_op op;
} ops[] = {
	/* longest first, so "<=" is not read as "<" */
	{ "==", KH_OP_EQ }, { "!=", KH_OP_NE }, { "<=", KH_OP_LE }, { ">=", KH_OP_GE },
	{ "!~", KH_OP_NOMATCH }, { "<", KH_OP_LT }, { ">", KH_OP_GT }, { "~", KH_OP_MATCH },
};

static bool field_char(char c)
{
	return isalnum((unsigned char)c) || c == '_' || c == '-' || c == '.';
}

static bool parse_num(const char *s, double *out)
{
	char *end;
	if (*s == '\0')
		return false;
	errno = 0;
	double d = strtod(s, &end);
	if (*end != '\0' || errno != 0 || !isfinite(d))
		return false;
	*out = d;
	return true;
}

void kh_pred_clear(kh_pred *p)
{
	if (p == NULL)
		return;
	if (p->has_re)
		regfree(&p->re);
	keel_free(p->field);
	keel_free(p->value);
	keel_free(p->text);
	memset(p, 0, sizeof(*p));
}

int kh_pred_parse(kh_pred *p, const char *text, char *err, size_t errlen)
{
	const char *s = text, *f0, *f1;
	int rc = -EINVAL;

	memset(p, 0, sizeof(*p));
	while (isspace((unsigned char)*s))
		s++;
	f0 = s;
	while (field_char(*s))
		s++;
	f1 = s;
	if (f1 == f0 || *f0 == '.' || f1[-1] == '.') {
		snprintf(err, errlen, "predicate \"%s\": expected FIELD [OP VALUE]", text);
		return -EINVAL;
	}
	p->field = keel_strndup(f0, (size_t)(f1 - f0));
	p->text = keel_strdup(text);
	if (p->field == NULL || p->text == NULL)
		goto nomem;
	while (isspace((unsigned char)*s))
		s++;
	if (*s == '\0') {
		p->op = KH_OP_EXISTS;
		return 0;
	}
	size_t i;
	for (i = 0; i < sizeof(ops) / sizeof(ops[0]); i++) {
		size_t n = strlen(ops[i].word);
		if (strncmp(s, ops[i].word, n) == 0) {
			p->op = ops[i].op;
			s += n;
			break;
		}
	}
	if (i == sizeof(ops) / sizeof(ops[0])) {
		snprintf(err, errlen,
			 "predicate \"%s\": unknown operator (==, !=, <, <=, >, >=, ~, !~)",
			 text);
		goto fail;
	}
	while (isspace((unsigned char)*s))
		s++;
	size_t vlen = strlen(s);
	while (vlen > 0 && isspace((unsigned char)s[vlen - 1]))
		vlen--;
	if (vlen == 0 && p->op != KH_OP_EQ && p->op != KH_OP_NE) {
		snprintf(err, errlen, "predicate \"%s\": missing value", text);
		goto fail;
	}
	/* "quoted" keeps spaces and forces text comparison */
	bool quoted = vlen >= 2 && s[0] == '"' && s[vlen - 1] == '"';
	p->value = quoted ? keel_strndup(s + 1, vlen - 2) : keel_strndup(s, vlen);
	if (p->value == NULL)
		goto nomem;
	p->value_is_num = !quoted && parse_num(p->value, &p->num);
	if ((p->op == KH_OP_LT || p->op == KH_OP_LE || p->op == KH_OP_GT ||
	     p->op == KH_OP_GE) && !p->value_is_num) {
		snprintf(err, errlen, "predicate \"%s\": %s needs a number", text,
			 p->op == KH_OP_LT ? "<" : p->op == KH_OP_LE ? "<=" :
			 p->op == KH_OP_GT ? ">" : ">=");
		goto fail;
	}
	if (p->op == KH_OP_MATCH || p->op == KH_OP_NOMATCH) {
		int r = regcomp(&p->re, p->value, REG_EXTENDED | REG_NOSUB);
		if (r != 0) {
			char why[128];
			regerror(r, &p->re, why, sizeof(why));
			snprintf(err, errlen, "predicate \"%s\": bad regex: %s", text, why);
			goto fail;
		}
		p->has_re = true;
	}
	return 0;

nomem:
	rc = -ENOMEM;
	snprintf(err, errlen, "out of memory");
fail:
	kh_pred_clear(p);
	return rc;
}

json_t *kh_event_field(json_t *ev, const char *path)
{
	char part[256];
	json_t *cur = ev;
	const char *s = path;
	while (cur != NULL && *s) {
		const char *dot = strchr(s, '.');
		size_t n = dot ? (size_t)(dot - s) : strlen(s);
		if (n >= sizeof(part) || (!json_is_object(cur) && !json_is_array(cur)))
			return NULL;
		memcpy(part, s, n);
		part[n] = '\0';
		if (json_is_array(cur)) {
			/* a number indexes a list (manage replies: bridges.0.name) */
			char *end;
			unsigned long idx = strtoul(part, &end, 10);
			cur = part[0] >= '0' && part[0] <= '9' && *end == '\0'
				      ? json_array_get(cur, idx)
				      : NULL;
		} else {
			cur = json_object_get(cur, part);
		}
		s += n;
		if (*s == '.')
			s++;
	}
	return cur;
}

/* The value as text for comparisons: strings as they are, numbers and
 * words as JSON writes them.  Returns false for objects and arrays. */
static bool value_text(json_t *v, char *buf, size_t len)
{
	switch (json_typeof(v)) {
	case JSON_STRING:
		snprintf(buf, len, "%s", json_string_value(v));
		return true;
	case JSON_INTEGER:
		snprintf(buf, len, "%" JSON_INTEGER_FORMAT, json_integer_value(v));
		return true;
	case JSON_REAL:
		snprintf(buf, len, "%.17g", json_real_value(v));
		return true;
	case JSON_TRUE:
		snprintf(buf, len, "true");
		return true;
	case JSON_FALSE:
		snprintf(buf, len, "false");
		return true;
	case JSON_NULL:
		snprintf(buf, len, "null");
		return true;
	default:
		return false;
	}
}

bool kh_pred_match(const kh_pred *p, json_t *ev)
{
	json_t *v = kh_event_field(ev, p->field);
	char text[1024];
	if (p->op == KH_OP_EXISTS)
		return v != NULL;
	if (v == NULL)
		return p->op == KH_OP_NE || p->op == KH_OP_NOMATCH;
	bool vnum = json_is_number(v);
	double d = vnum ? json_number_value(v) : 0;
	if (!vnum && json_is_string(v) && p->value_is_num) {
		/* "7" == 7: an event may carry numbers as text */
		vnum = parse_num(json_string_value(v), &d);
	}
	switch (p->op) {
	case KH_OP_EQ:
	case KH_OP_NE: {
		bool eq;
		if (vnum && p->value_is_num)
			eq = d == p->num;
		else
			eq = value_text(v, text, sizeof(text)) && strcmp(text, p->value) == 0;
		return p->op == KH_OP_EQ ? eq : !eq;
	}
	case KH_OP_LT:
		return vnum && d < p->num;
	case KH_OP_LE:
		return vnum && d <= p->num;
	case KH_OP_GT:
		return vnum && d > p->num;
	case KH_OP_GE:
		return vnum && d >= p->num;
	case KH_OP_MATCH:
	case KH_OP_NOMATCH: {
		bool m = value_text(v, text, sizeof(text)) &&
			 regexec(&p->re, text, 0, NULL, 0) == 0;
		return p->op == KH_OP_MATCH ? m : !m;
	}
	case KH_OP_EXISTS:
		break;
	}
	return false;
}

bool kh_await_match(const char *type, const kh_pred *preds, size_t n, json_t *ev)
{
	if (!json_is_object(ev))
		return false;
	if (type != NULL) {
		const char *t = json_string_value(json_object_get(ev, "type"));
		if (t == NULL || strcmp(t, type) != 0)
			return false;
	}
	for (size_t i = 0; i < n; i++) {
		if (!kh_pred_match(&preds[i], ev))
			return false;
	}
	return true;
}
