/*
 * st_latest: the newest-version cache (see st_latest.h).
 *
 * Each slot owns a heap copy of its key, kept between replacements and grown
 * only when a longer key arrives, so a warm cache does not allocate. The hash
 * is FNV-1a with a final mix; the set is its low bits, and the full hash is
 * compared before the key bytes.
 */
#include "storage/st_latest.h"

#include <stdlib.h>
#include <string.h>

struct st_latest_slot {
	uint64_t hash;
	uint8_t *key;
	uint32_t klen, kcap;
	bool used;
	st_latest_rec rec;
};

uint64_t st__key_hash(const uint8_t *key, size_t klen)
{
	uint64_t h = 0xcbf29ce484222325ull;
	for (size_t i = 0; i < klen; i++) {
		h ^= key[i];
		h *= 0x100000001b3ull;
	}
	h ^= h >> 33;
	h *= 0xff51afd7ed558ccdull;
	h ^= h >> 33;
	return h;
}

int st__latest_init(st_latest *c, size_t sets)
{
	memset(c, 0, sizeof(*c));
	if (sets == 0)
		return 0;
	size_t n = 1;
	while (n < sets)
		n <<= 1;
	c->slots = calloc(n * 2, sizeof(*c->slots));
	c->mru = calloc(n, 1);
	if (c->slots == NULL || c->mru == NULL) {
		st__latest_free(c);
		return -1;
	}
	c->sets = n;
	return 0;
}

void st__latest_free(st_latest *c)
{
	if (c->slots != NULL)
		for (size_t i = 0; i < c->sets * 2; i++)
			free(c->slots[i].key);
	free(c->slots);
	free(c->mru);
	memset(c, 0, sizeof(*c));
}

void st__latest_clear(st_latest *c)
{
	for (size_t i = 0; c->slots != NULL && i < c->sets * 2; i++)
		c->slots[i].used = false;
}

/* The slot holding @key (hash @h) in its set, or NULL. */
static st_latest_slot *latest_find(st_latest *c, uint64_t h, const uint8_t *key, size_t klen,
				   size_t *way)
{
	st_latest_slot *set = &c->slots[(h & (c->sets - 1)) * 2];
	for (size_t w = 0; w < 2; w++) {
		st_latest_slot *s = &set[w];
		if (s->used && s->hash == h && s->klen == klen && memcmp(s->key, key, klen) == 0) {
			*way = w;
			return s;
		}
	}
	return NULL;
}

bool st__latest_get(st_latest *c, const uint8_t *key, size_t klen, st_latest_rec *out)
{
	if (c->slots == NULL || klen > ST_LATEST_MAX_KEY)
		return false;
	uint64_t h = st__key_hash(key, klen);
	size_t way;
	st_latest_slot *s = latest_find(c, h, key, klen, &way);
	if (s == NULL) {
		c->misses++;
		return false;
	}
	c->mru[h & (c->sets - 1)] = (uint8_t)way;
	*out = s->rec;
	c->hits++;
	return true;
}

void st__latest_set(st_latest *c, const uint8_t *key, size_t klen, const st_latest_rec *rec)
{
	if (c->slots == NULL || klen > ST_LATEST_MAX_KEY)
		return;
	uint64_t h = st__key_hash(key, klen);
	size_t set = h & (c->sets - 1), way;
	st_latest_slot *s = latest_find(c, h, key, klen, &way);
	if (s == NULL) {
		st_latest_slot *ways = &c->slots[set * 2];
		way = !ways[0].used ? 0 : !ways[1].used ? 1 : (size_t)!c->mru[set];
		s = &ways[way];
		s->used = false;
		if (s->kcap < klen || s->key == NULL) {
			uint8_t *p = realloc(s->key, klen ? klen : 1);
			if (p == NULL)
				return; /* the old entry is already gone */
			s->key = p;
			s->kcap = (uint32_t)(klen ? klen : 1);
		}
		if (klen)
			memcpy(s->key, key, klen);
		s->klen = (uint32_t)klen;
		s->hash = h;
		s->used = true;
	}
	s->rec = *rec;
	c->mru[set] = (uint8_t)way;
}
