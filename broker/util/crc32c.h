/*
 * crc32c.h - CRC-32C (Castagnoli, polynomial 0x1EDC6F41 reflected), the
 * checksum of every journal record.
 *
 * Software slicing-by-8, or the SSE4.2 crc32 instruction when the CPU has
 * it (checked once, at first use).  Both give the same values; pure
 * functions, callable from any thread.
 */
#ifndef KEEL_CRC32C_H
#define KEEL_CRC32C_H

#include <stddef.h>
#include <stdint.h>

/* Continue a CRC: start with crc = 0; crc32c(crc32c(0, a), b) equals the
 * CRC of a followed by b.  crc32c(0, "123456789", 9) == 0xE3069283. */
uint32_t keel_crc32c(uint32_t crc, const void *data, size_t len);

/* The software path alone (tests compare the two). */
uint32_t keel_crc32c_sw(uint32_t crc, const void *data, size_t len);

#endif
