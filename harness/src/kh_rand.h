/*
 * kh_rand.h - the harness's seeded pseudo-random numbers: splitmix64 to
 * derive a stream's seed from the scenario's seed and a few labels, and
 * xoshiro256** for the stream itself.  A stream is a value (no global
 * state): the same seed and labels give the same draws, whatever else
 * draws meanwhile.  Pure; any thread (each stream owned by one).
 */
#ifndef KH_RAND_H
#define KH_RAND_H

#include <stdint.h>

typedef struct kh_rand {
	uint64_t s[4];
} kh_rand;

static inline uint64_t kh_rand_mix(uint64_t *x)
{
	uint64_t z = (*x += 0x9e3779b97f4a7c15ULL);
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
	return z ^ (z >> 31);
}

/* A stream for `seed` and labels a, b, c (e.g. a link's endpoints and a
 * connection's number): distinct labels give unrelated streams. */
static inline void kh_rand_init(kh_rand *r, uint64_t seed, uint64_t a, uint64_t b, uint64_t c)
{
	uint64_t x = seed;
	x ^= kh_rand_mix(&x) ^ a;
	x ^= kh_rand_mix(&x) ^ b;
	x ^= kh_rand_mix(&x) ^ c;
	for (int i = 0; i < 4; i++)
		r->s[i] = kh_rand_mix(&x);
}

static inline uint64_t kh_rand_rotl(uint64_t v, int k)
{
	return (v << k) | (v >> (64 - k));
}

static inline uint64_t kh_rand_next(kh_rand *r)
{
	uint64_t *s = r->s;
	uint64_t out = kh_rand_rotl(s[1] * 5, 7) * 9;
	uint64_t t = s[1] << 17;
	s[2] ^= s[0];
	s[3] ^= s[1];
	s[1] ^= s[2];
	s[0] ^= s[3];
	s[2] ^= t;
	s[3] = kh_rand_rotl(s[3], 45);
	return out;
}

/* Uniform in [0, 1). */
static inline double kh_rand_unit(kh_rand *r)
{
	return (double)(kh_rand_next(r) >> 11) * (1.0 / 9007199254740992.0);
}

/* Uniform in [0, n) (n > 0; the modulo bias is below 2^-32 for n < 2^32). */
static inline uint64_t kh_rand_below(kh_rand *r, uint64_t n)
{
	return kh_rand_next(r) % n;
}

#endif
