/*
 * core_settings.c - what every file of the core looks up: name and routing
 * checks, routing and full-policy names, the clock (opt.now_ms), and the
 * address settings (patterns in the order added; resolved per address and
 * cached until the settings change).  Owns core->settings.  The bottom of
 * the core: calls no other file of it.  Loop thread only.
 */
#include <errno.h>
#include <stdint.h>
#include <string.h>

#include "core_int.h"
#include "match.h"

/* ---- small helpers ----------------------------------------------------- */

bool core__name_valid(const char *s)
{
	if (s == NULL || *s == '\0')
		return false;
	size_t n = 0;
	for (; s[n]; n++)
		if ((unsigned char)s[n] < 0x20 || n >= KEEL_MAX_NAME_LEN)
			return false;
	return true;
}

bool core__routing_valid(keel_routing rt)
{
	return rt == KEEL_ANYCAST || rt == KEEL_MULTICAST;
}

const char *keel_routing_name(keel_routing rt)
{
	switch (rt) {
	case KEEL_ANYCAST:
		return "ANYCAST";
	case KEEL_MULTICAST:
		return "MULTICAST";
	}
	return "?";
}

keel_routing keel_routing_parse(const char *s)
{
	if (s && strcmp(s, "ANYCAST") == 0)
		return KEEL_ANYCAST;
	if (s && strcmp(s, "MULTICAST") == 0)
		return KEEL_MULTICAST;
	return (keel_routing)0;
}

int64_t core__now(const keel_core *core)
{
	return core->opt.now_ms(core->opt.now_ud);
}

/* ---- flow-control policy names ----------------------------------------- */

const char *keel_full_policy_name(keel_full_policy p)
{
	switch (p) {
	case KEEL_FULL_BLOCK:
		return "BLOCK";
	case KEEL_FULL_FAIL:
		return "FAIL";
	case KEEL_FULL_DROP:
		return "DROP";
	case KEEL_FULL_PAGE:
		return "PAGE";
	}
	return "?";
}

int keel_full_policy_parse(const char *s)
{
	if (s && strcmp(s, "BLOCK") == 0)
		return KEEL_FULL_BLOCK;
	if (s && strcmp(s, "FAIL") == 0)
		return KEEL_FULL_FAIL;
	if (s && strcmp(s, "DROP") == 0)
		return KEEL_FULL_DROP;
	if (s && strcmp(s, "PAGE") == 0)
		return KEEL_FULL_PAGE;
	return -1;
}

/* ---- settings ---------------------------------------------------------- */

/* Field `field` of *out comes from s when s sets it (`is_set`) and its
 * pattern is at least as specific as the one that set it so far. */
#define SETTINGS_PICK(i, is_set, field)                                 \
	do {                                                            \
		if ((is_set) && sp >= best[i]) {                        \
			best[i] = sp;                                   \
			out->field = s->field;                          \
		}                                                       \
	} while (0)

void keel_core_resolve_settings(const keel_core *core, const char *address,
				keel_address_settings *out)
{
	int best[8] = { -1, -1, -1, -1, -1, -1, -1, -1 }; /* specificity is >= 0 */
	*out = (keel_address_settings){
		.has_auto_create_addresses = true,
		.auto_create_addresses = true,
		.has_auto_create_queues = true,
		.auto_create_queues = true,
		.has_auto_delete_queues = true,
		.auto_delete_queues = true,
		.has_max_delivery_attempts = true,
		.max_delivery_attempts = KEEL_DEFAULT_MAX_DELIVERY_ATTEMPTS,
		.dead_letter_address = "DLA",
		.expiry_address = "ExpiryQueue",
		.has_max_size_bytes = true,
		.max_size_bytes = -1,
		.has_address_full_policy = true,
		.address_full_policy = KEEL_FULL_PAGE,
	};
	for (size_t i = 0; i < core->settings_count; i++) {
		const settings_entry *e = &core->settings[i];
		const keel_address_settings *s = &e->s;
		int sp = e->specificity;
		if (!keel_match(e->pattern, address))
			continue;
		/* >=: of two equally specific patterns the later one wins */
		SETTINGS_PICK(0, s->has_auto_create_addresses, auto_create_addresses);
		SETTINGS_PICK(1, s->has_auto_create_queues, auto_create_queues);
		SETTINGS_PICK(2, s->has_auto_delete_queues, auto_delete_queues);
		SETTINGS_PICK(3, s->has_max_delivery_attempts, max_delivery_attempts);
		SETTINGS_PICK(4, s->dead_letter_address, dead_letter_address);
		SETTINGS_PICK(5, s->expiry_address, expiry_address);
		SETTINGS_PICK(6, s->has_max_size_bytes, max_size_bytes);
		SETTINGS_PICK(7, s->has_address_full_policy, address_full_policy);
	}
}

#undef SETTINGS_PICK

const keel_address_settings *core__address_settings(keel_address *a)
{
	keel_core *core = a->core;
	if (a->settings_gen != core->settings_gen) {
		keel_core_resolve_settings(core, a->name, &a->settings);
		a->settings_gen = core->settings_gen;
	}
	return &a->settings;
}

int keel_core_add_address_settings(keel_core *core, const char *pattern,
				   const keel_address_settings *s)
{
	if (core == NULL || s == NULL || pattern == NULL || !keel_match_valid(pattern))
		return -EINVAL;
	if (core->settings_count == core->settings_cap) {
		size_t cap = core->settings_cap ? core->settings_cap * 2 : 8;
		settings_entry *n = keel_realloc(core->settings, cap * sizeof(*n));
		if (n == NULL)
			return -ENOMEM;
		core->settings = n;
		core->settings_cap = cap;
	}
	settings_entry e = { .specificity = keel_match_specificity(pattern), .s = *s };
	e.pattern = keel_strdup(pattern);
	e.s.dead_letter_address = s->dead_letter_address ? keel_strdup(s->dead_letter_address) : NULL;
	e.s.expiry_address = s->expiry_address ? keel_strdup(s->expiry_address) : NULL;
	if (e.pattern == NULL || (s->dead_letter_address && !e.s.dead_letter_address) ||
	    (s->expiry_address && !e.s.expiry_address))
		goto out_nomem;
	core->settings[core->settings_count++] = e;
	core->settings_gen++;
	return 0;

out_nomem:
	keel_free(e.pattern);
	keel_free((char *)e.s.dead_letter_address);
	keel_free((char *)e.s.expiry_address);
	return -ENOMEM;
}
