/*
 * sha256.h - SHA-256 (FIPS 180-4) of a buffer, as lowercase hex: the
 * recording keeps each scenario text's hash (scenarios.text_sha256), the
 * same string `sha256sum FILE` prints, so a person can compare a file on
 * disk with what ran.  Pure; any thread.
 */
#ifndef KH_SHA256_H
#define KH_SHA256_H

#include <stddef.h>

/* 64 hex digits and a NUL. */
#define KH_SHA256_HEX_LEN 65

/* The SHA-256 of `len` bytes at `data` into hex (KH_SHA256_HEX_LEN). */
void kh_sha256_hex(const void *data, size_t len, char hex[KH_SHA256_HEX_LEN]);

#endif
