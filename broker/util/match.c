/*
 * match.c - '.'-separated word patterns with '*' and '#' (see match.h).
 */
#include "match.h"

#include <string.h>

/* Length of the word starting at s (up to '.' or end). */
static size_t word_len(const char *s)
{
	const char *dot = strchr(s, '.');
	return dot ? (size_t)(dot - s) : strlen(s);
}

static bool match_words(const char *p, const char *n)
{
	for (;;) {
		size_t pl = word_len(p);
		if (pl == 1 && p[0] == '#') {
			const char *prest = p[1] == '.' ? p + 2 : NULL;
			if (prest == NULL)
				return true; /* trailing '#' eats the rest */
			/* '#' eats zero or more words of n. */
			for (const char *q = n;;) {
				if (*q && match_words(prest, q))
					return true;
				const char *dot = strchr(q, '.');
				if (dot == NULL)
					return false;
				q = dot + 1;
			}
		}
		if (*n == '\0')
			return false;
		size_t nl = word_len(n);
		if (!(pl == 1 && p[0] == '*') && (pl != nl || memcmp(p, n, pl) != 0))
			return false;
		bool pend = p[pl] == '\0', nend = n[nl] == '\0';
		if (pend || nend) {
			if (pend && nend)
				return true;
			/* pattern left: only "#" words may remain */
			if (nend && strcmp(p + pl, ".#") == 0)
				return true;
			return false;
		}
		p += pl + 1;
		n += nl + 1;
	}
}

bool keel_match(const char *pattern, const char *name)
{
	if (strcmp(pattern, "#") == 0)
		return true;
	return match_words(pattern, name);
}

int keel_match_specificity(const char *pattern)
{
	int score = 0;
	bool wild = false;
	for (const char *w = pattern;;) {
		size_t l = word_len(w);
		if (l == 1 && w[0] == '#') {
			score += 1;
			wild = true;
		} else if (l == 1 && w[0] == '*') {
			score += 10;
			wild = true;
		} else {
			score += 100;
		}
		if (w[l] == '\0')
			break;
		w += l + 1;
	}
	return wild ? score : score + 1000000;
}

bool keel_match_valid(const char *pattern)
{
	if (*pattern == '\0')
		return false;
	for (const char *w = pattern;;) {
		size_t l = word_len(w);
		if (l == 0)
			return false;
		for (size_t i = 0; i < l; i++)
			if ((w[i] == '#' || w[i] == '*') && l != 1)
				return false;
		if (w[l] == '\0')
			return true;
		w += l + 1;
	}
}
