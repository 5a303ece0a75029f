/*
 * keel/config.h - what other parts may know of the broker's configuration:
 * that a YAML text is a valid keel-broker config, checked exactly as the
 * broker loads it (the harness lints the `config:` blocks of scenarios
 * with it).  The struct itself is private to the broker (config/config.h).
 */
#ifndef KEEL_PUBLIC_CONFIG_H
#define KEEL_PUBLIC_CONFIG_H

#include <stddef.h>

typedef struct keel_config keel_config;

/* Parse `yaml` (`name` stands for the file in messages).  0 and *out
 * (free with keel_config_free); -errno or -EINVAL with "FILE:LINE: key:
 * problem" in err (always NUL-terminated). */
int keel_config_load_data(const char *name, const char *yaml, size_t len,
			  keel_config **out, char *err, size_t errlen);
void keel_config_free(keel_config *cfg); /* NULL is fine */

#endif
