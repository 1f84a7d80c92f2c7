/*
 * alloc.c - the one pair of allocation hooks every raft allocation goes through,
 * reference-counted blobs (entry payloads, snapshot data), growable arrays and the
 * per-ready arena that keeps the steady-state path free of allocations.
 */
#include <stdlib.h>
#include <string.h>

#include "raft/raft_int.h"

static void *default_realloc(void *ud, void *p, size_t n)
{
	(void)ud;
	return realloc(p, n);
}

static void default_free(void *ud, void *p)
{
	(void)ud;
	free(p);
}

static raft_allocator hooks = {default_realloc, default_free, NULL};

void raft_set_allocator(const raft_allocator *a)
{
	if (a == NULL) {
		hooks.realloc = default_realloc;
		hooks.free = default_free;
		hooks.ud = NULL;
	} else {
		hooks = *a;
	}
}

void *ralloc(size_t n)
{
	return hooks.realloc(hooks.ud, NULL, n ? n : 1);
}

void *rrealloc(void *p, size_t n)
{
	return hooks.realloc(hooks.ud, p, n ? n : 1);
}

void rfree(void *p)
{
	if (p != NULL)
		hooks.free(hooks.ud, p);
}

int rgrow(void **arr, size_t *cap, size_t need, size_t esz)
{
	if (need <= *cap)
		return 0;
	size_t ncap = *cap ? *cap * 2 : 8;
	while (ncap < need)
		ncap *= 2;
	void *p = rrealloc(*arr, ncap * esz);
	if (p == NULL)
		return RAFT_ENOMEM;
	*arr = p;
	*cap = ncap;
	return 0;
}

raft_blob *raft_blob_new(size_t len)
{
	raft_blob *b = ralloc(sizeof(*b) + len);
	if (b == NULL)
		return NULL;
	b->refs = 1;
	b->len = len;
	return b;
}

raft_blob *raft_blob_copy(const void *p, size_t len)
{
	raft_blob *b = raft_blob_new(len);
	if (b != NULL && len > 0)
		memcpy(b->data, p, len);
	return b;
}

raft_blob *raft_blob_ref(raft_blob *b)
{
	if (b != NULL)
		b->refs++;
	return b;
}

void raft_blob_unref(raft_blob *b)
{
	if (b != NULL && --b->refs == 0)
		rfree(b);
}

#define RARENA_CHUNK 16384

void *rarena_alloc(rarena *a, size_t n)
{
	n = (n + 15) & ~(size_t)15;
	if (n == 0)
		n = 16;
	rarena_chunk *c = a->cur;
	while (c != NULL && c->cap - c->used < n) {
		c = c->next;
		if (c != NULL)
			c->used = 0;
	}
	if (c == NULL) {
		size_t cap = n > RARENA_CHUNK ? n : RARENA_CHUNK;
		c = ralloc(sizeof(*c) + cap);
		if (c == NULL)
			return NULL;
		c->cap = cap;
		c->used = 0;
		c->next = NULL;
		/* append at the end of the list so reset reuses it */
		if (a->first == NULL) {
			a->first = c;
		} else {
			rarena_chunk *t = a->cur ? a->cur : a->first;
			while (t->next != NULL)
				t = t->next;
			t->next = c;
		}
	}
	a->cur = c;
	void *p = c->mem + c->used;
	c->used += n;
	return p;
}

void rarena_reset(rarena *a)
{
	a->cur = a->first;
	if (a->cur != NULL)
		a->cur->used = 0;
}

void rarena_free(rarena *a)
{
	rarena_chunk *c = a->first;
	while (c != NULL) {
		rarena_chunk *next = c->next;
		rfree(c);
		c = next;
	}
	a->first = a->cur = NULL;
}
