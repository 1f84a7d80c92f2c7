/*
 * memstore.c - the in-memory raft_storage used by the raft tests (see memstore.h).
 */
#include <stdlib.h>
#include <string.h>

#include "memstore.h"

static void ensure(memstore *ms, size_t need)
{
	if (need <= ms->cap)
		return;
	size_t c = ms->cap ? ms->cap * 2 : 64;
	while (c < need)
		c *= 2;
	ms->ents = realloc(ms->ents, c * sizeof(raft_entry));
	if (ms->ents == NULL)
		abort();
	ms->cap = c;
}

void ms_init(memstore *ms)
{
	memset(ms, 0, sizeof(*ms));
	ensure(ms, 1);
	ms->ents[0] = (raft_entry){0, 0, RAFT_ENTRY_NORMAL, NULL};
	ms->n = 1;
}

void ms_free(memstore *ms)
{
	for (size_t i = 0; i < ms->n; i++)
		raft_blob_unref(ms->ents[i].data);
	raft_blob_unref(ms->snap.data);
	free(ms->ents);
	memset(ms, 0, sizeof(*ms));
}

raft_index ms_first(const memstore *ms)
{
	return ms->ents[0].index + 1;
}

raft_index ms_last(const memstore *ms)
{
	return ms->ents[0].index + ms->n - 1;
}

void ms_append(memstore *ms, const raft_entry *e, size_t n)
{
	if (n == 0)
		return;
	raft_index first = ms_first(ms);
	raft_index last = e[0].index + n - 1;
	if (last < first)
		return; /* all compacted already */
	if (e[0].index < first) {
		size_t skip = first - e[0].index;
		e += skip;
		n -= skip;
	}
	size_t off = e[0].index - ms->ents[0].index; /* position of e[0] */
	if (off > ms->n)
		abort(); /* a gap: the caller broke the contract */
	for (size_t i = off; i < ms->n; i++)
		raft_blob_unref(ms->ents[i].data);
	ms->n = off;
	ensure(ms, off + n);
	for (size_t i = 0; i < n; i++) {
		ms->ents[off + i] = e[i];
		raft_blob_ref(e[i].data);
	}
	ms->n = off + n;
}

void ms_set_hard_state(memstore *ms, const raft_hard_state *hs)
{
	ms->term = hs->term;
	ms->vote = hs->vote;
	ms->commit = hs->commit;
}

void ms_apply_snapshot(memstore *ms, const raft_snapshot *s)
{
	for (size_t i = 0; i < ms->n; i++)
		raft_blob_unref(ms->ents[i].data);
	ms->ents[0] = (raft_entry){s->term, s->index, RAFT_ENTRY_NORMAL, NULL};
	ms->n = 1;
	raft_blob_unref(ms->snap.data);
	ms->snap = *s;
	raft_blob_ref(ms->snap.data);
	ms->conf = s->conf;
	if (ms->commit < s->index)
		ms->commit = s->index;
}

void ms_snapshot_and_compact(memstore *ms, raft_index index, const raft_conf_state *conf,
                             raft_blob *data, raft_index keep_from)
{
	if (index <= ms->snap.index || index > ms_last(ms))
		return;
	raft_term t = ms->ents[index - ms->ents[0].index].term;
	raft_blob_unref(ms->snap.data);
	ms->snap.index = index;
	ms->snap.term = t;
	ms->snap.conf = *conf;
	ms->snap.data = raft_blob_ref(data);
	ms->conf = *conf;
	if (keep_from > index + 1)
		keep_from = index + 1;
	if (keep_from <= ms_first(ms))
		return;
	size_t drop = keep_from - 1 - ms->ents[0].index; /* new dummy at keep_from-1 */
	for (size_t i = 0; i < drop; i++)
		raft_blob_unref(ms->ents[i].data);
	raft_blob_unref(ms->ents[drop].data);
	ms->ents[drop].data = NULL;
	ms->ents[drop].type = RAFT_ENTRY_NORMAL;
	memmove(ms->ents, ms->ents + drop, (ms->n - drop) * sizeof(raft_entry));
	ms->n -= drop;
}

void ms_bootstrap(memstore *ms, const raft_id *voters, size_t n)
{
	raft_snapshot s;
	memset(&s, 0, sizeof(s));
	s.index = 1;
	s.term = 1;
	for (size_t i = 0; i < n; i++)
		s.conf.voters[i] = voters[i];
	s.conf.n_voters = n;
	ms_apply_snapshot(ms, &s);
	ms->term = 1;
	ms->commit = 1;
}

#define FAIL_HOOK(ms)                                                                  \
	do {                                                                               \
		if ((ms)->fail_next) {                                                         \
			int e_ = (ms)->fail_next;                                                  \
			(ms)->fail_next = 0;                                                       \
			return e_;                                                                 \
		}                                                                              \
	} while (0)

static int st_initial(void *ud, raft_term *term, raft_id *vote, raft_index *commit,
                      raft_conf_state *conf)
{
	memstore *ms = ud;
	FAIL_HOOK(ms);
	*term = ms->term;
	*vote = ms->vote;
	*commit = ms->commit;
	*conf = ms->conf;
	return 0;
}

static int st_first(void *ud, raft_index *out)
{
	memstore *ms = ud;
	FAIL_HOOK(ms);
	*out = ms_first(ms);
	return 0;
}

static int st_last(void *ud, raft_index *out)
{
	memstore *ms = ud;
	FAIL_HOOK(ms);
	*out = ms_last(ms);
	return 0;
}

static int st_term(void *ud, raft_index i, raft_term *out)
{
	memstore *ms = ud;
	FAIL_HOOK(ms);
	if (i < ms->ents[0].index)
		return RAFT_ECOMPACTED;
	if (i > ms_last(ms))
		return RAFT_EUNAVAILABLE;
	*out = ms->ents[i - ms->ents[0].index].term;
	return 0;
}

static int st_entries(void *ud, raft_index lo, raft_index hi, size_t max_bytes, raft_entry *out,
                      size_t cap, size_t *n)
{
	memstore *ms = ud;
	FAIL_HOOK(ms);
	*n = 0;
	if (lo <= ms->ents[0].index)
		return RAFT_ECOMPACTED;
	if (hi > ms_last(ms) + 1)
		return RAFT_EUNAVAILABLE;
	size_t bytes = 0, k = 0;
	for (raft_index i = lo; i < hi && k < cap; i++) {
		const raft_entry *e = &ms->ents[i - ms->ents[0].index];
		size_t sz = raft_entry_size(e);
		if (k > 0 && bytes + sz > max_bytes)
			break;
		bytes += sz;
		out[k] = *e;
		raft_blob_ref(e->data);
		k++;
	}
	*n = k;
	return 0;
}

static int st_snapshot(void *ud, raft_snapshot *out)
{
	memstore *ms = ud;
	FAIL_HOOK(ms);
	*out = ms->snap;
	raft_blob_ref(out->data);
	return 0;
}

raft_storage ms_storage(memstore *ms)
{
	raft_storage s = {st_initial, st_first, st_last, st_term, st_entries, st_snapshot, ms};
	return s;
}
