/*
 * match.h - address patterns, as broker operators know them.
 *
 * Words are separated by '.'; '*' matches exactly one word, '#' matches
 * zero or more words; anything else matches itself.  Used by address
 * settings and security settings.  Pure functions, any thread.
 */
#ifndef KEEL_MATCH_H
#define KEEL_MATCH_H

#include <stdbool.h>

bool keel_match(const char *pattern, const char *name);

/* Orders patterns that match one name: the larger value is more specific
 * (exact > '*' > '#'; more literal words first). */
int keel_match_specificity(const char *pattern);

/* True when the pattern is well formed ('#' and '*' only as whole words). */
bool keel_match_valid(const char *pattern);

#endif
