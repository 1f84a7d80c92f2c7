/*
 * log.c - the Raft log as this member sees it: the caller's durable storage (read
 * only, through raft_storage) with the unstable tail on top — entries and possibly a
 * snapshot that raft has accepted but the caller has not yet persisted.
 *
 * Unstable entries are ents[0..n) with ents[i].index == offset + i; everything below
 * offset is in storage. A pending snapshot (usnap) sits just below offset. The log
 * also tracks the commit index and the applied index. Storage failures other than the
 * named compacted/unavailable errors are recorded in l->err and poison the handle.
 */
#include <string.h>

#include "raft/raft_int.h"

#define SLICE_MAX_COUNT 4096

static int st_err(rlog *l, int rc)
{
	if (rc == RAFT_ECOMPACTED || rc == RAFT_EUNAVAILABLE || rc == RAFT_ESNAPTEMPUNAVAILABLE)
		return rc;
	if (rc != 0 && l->err == 0)
		l->err = RAFT_ESTORAGE;
	return rc ? RAFT_ESTORAGE : 0;
}

int rlog_init(rlog *l, const raft_storage *st)
{
	memset(l, 0, sizeof(*l));
	l->st = *st;
	raft_index first = 0, last = 0;
	if (st->first_index(st->ud, &first) != 0 || st->last_index(st->ud, &last) != 0)
		return RAFT_ESTORAGE;
	if (first == 0)
		return RAFT_ESTORAGE;
	l->offset = last + 1;
	l->committed = first - 1;
	l->applied = first - 1;
	return 0;
}

void rlog_free(rlog *l)
{
	for (size_t i = 0; i < l->n; i++)
		raft_blob_unref(l->ents[i].data);
	rfree(l->ents);
	if (l->usnap) {
		raft_blob_unref(l->usnap->data);
		rfree(l->usnap);
	}
	memset(l, 0, sizeof(*l));
}

raft_index rlog_first(rlog *l)
{
	if (l->usnap)
		return l->usnap->index + 1;
	raft_index i = 0;
	if (st_err(l, l->st.first_index(l->st.ud, &i)) != 0)
		return l->offset;
	return i;
}

raft_index rlog_last(rlog *l)
{
	if (l->n > 0)
		return l->offset + l->n - 1;
	if (l->usnap)
		return l->usnap->index;
	raft_index i = 0;
	if (st_err(l, l->st.last_index(l->st.ud, &i)) != 0)
		return l->offset - 1;
	return i;
}

int rlog_term(rlog *l, raft_index i, raft_term *out)
{
	*out = 0;
	raft_index first = rlog_first(l);
	if (i + 1 < first)
		return RAFT_ECOMPACTED;
	if (i > rlog_last(l))
		return RAFT_EUNAVAILABLE;
	if (l->usnap && i == l->usnap->index) {
		*out = l->usnap->term;
		return 0;
	}
	if (l->n > 0 && i >= l->offset) {
		*out = l->ents[i - l->offset].term;
		return 0;
	}
	return st_err(l, l->st.term(l->st.ud, i, out));
}

raft_term rlog_term0(rlog *l, raft_index i)
{
	raft_term t = 0;
	if (rlog_term(l, i, &t) != 0)
		return 0;
	return t;
}

raft_term rlog_last_term(rlog *l)
{
	return rlog_term0(l, rlog_last(l));
}

bool rlog_match_term(rlog *l, raft_index i, raft_term t)
{
	raft_term x = 0;
	if (rlog_term(l, i, &x) != 0)
		return false;
	return x == t;
}

bool rlog_up_to_date(rlog *l, raft_index last, raft_term term)
{
	raft_term lt = rlog_last_term(l);
	return term > lt || (term == lt && last >= rlog_last(l));
}

int rlog_append(rlog *l, const raft_entry *e, size_t n)
{
	if (n == 0)
		return 0;
	raft_index after = e[0].index;
	size_t keep;
	if (after == l->offset + l->n)
		keep = l->n;
	else if (after <= l->offset)
		keep = 0;
	else
		keep = (size_t)(after - l->offset);
	if (rgrow((void **)&l->ents, &l->cap, keep + n, sizeof(raft_entry)) != 0)
		return RAFT_ENOMEM;
	for (size_t i = keep; i < l->n; i++)
		raft_blob_unref(l->ents[i].data);
	if (keep == 0 && after <= l->offset)
		l->offset = after;
	for (size_t i = 0; i < n; i++) {
		l->ents[keep + i] = e[i];
		raft_blob_ref(e[i].data);
	}
	l->n = keep + n;
	return 0;
}

int rlog_maybe_append(rlog *l, raft_index index, raft_term log_term, raft_index commit,
                      const raft_entry *e, size_t n, raft_index *last_new)
{
	if (!rlog_match_term(l, index, log_term))
		return RAFT_EINVAL;
	raft_index ln = index + n;
	size_t ci = n;
	for (size_t k = 0; k < n; k++) {
		if (e[k].index != index + 1 + k)
			return RAFT_EINVAL; /* malformed message: ignore as a reject */
		if (!rlog_match_term(l, e[k].index, e[k].term)) {
			ci = k;
			break;
		}
	}
	if (ci < n) {
		if (e[ci].index <= l->committed)
			return RAFT_ECONFLICT;
		int rc = rlog_append(l, e + ci, n - ci);
		if (rc != 0)
			return rc;
	}
	rlog_commit_to(l, commit < ln ? commit : ln);
	*last_new = ln;
	return 0;
}

void rlog_commit_to(rlog *l, raft_index c)
{
	if (c <= l->committed)
		return;
	if (c > rlog_last(l)) {
		if (l->err == 0)
			l->err = RAFT_ECONFLICT;
		return;
	}
	l->committed = c;
}

bool rlog_maybe_commit(rlog *l, raft_index c, raft_term term)
{
	if (c > l->committed && rlog_term0(l, c) == term) {
		rlog_commit_to(l, c);
		return true;
	}
	return false;
}

raft_index rlog_find_conflict_by_term(rlog *l, raft_index i, raft_term t)
{
	raft_index last = rlog_last(l);
	if (i > last)
		return i;
	for (;;) {
		raft_term x = 0;
		if (rlog_term(l, i, &x) != 0 || x <= t || i == 0)
			return i;
		i--;
	}
}

int rlog_slice(rlog *l, raft_index lo, raft_index hi, size_t max_bytes, rarena *arena,
               raft_entry **out, size_t *n)
{
	*out = NULL;
	*n = 0;
	if (lo >= hi)
		return 0;
	if (lo < rlog_first(l))
		return RAFT_ECOMPACTED;
	if (hi > rlog_last(l) + 1)
		return RAFT_EUNAVAILABLE;
	size_t cap = hi - lo > SLICE_MAX_COUNT ? SLICE_MAX_COUNT : (size_t)(hi - lo);
	raft_entry *arr = rarena_alloc(arena, cap * sizeof(raft_entry));
	if (arr == NULL)
		return RAFT_ENOMEM;
	size_t k = 0, bytes = 0;
	if (lo < l->offset) {
		raft_index shi = hi < l->offset ? hi : l->offset;
		int rc = l->st.entries(l->st.ud, lo, shi, max_bytes, arr, cap, &k);
		if (rc != 0)
			return st_err(l, rc);
		if (k == 0 || k > cap) {
			if (l->err == 0)
				l->err = RAFT_ESTORAGE;
			return RAFT_ESTORAGE;
		}
		for (size_t i = 0; i < k; i++)
			bytes += raft_entry_size(&arr[i]);
		if (lo + k < shi || k == cap) {
			*out = arr;
			*n = k;
			return 0;
		}
	}
	for (raft_index i = lo + k; i < hi && k < cap; i++) {
		const raft_entry *e = &l->ents[i - l->offset];
		size_t sz = raft_entry_size(e);
		if (k > 0 && bytes + sz > max_bytes)
			break;
		bytes += sz;
		arr[k] = *e;
		raft_blob_ref(e->data);
		k++;
	}
	*out = arr;
	*n = k;
	return 0;
}

int rlog_snapshot(rlog *l, raft_snapshot *out)
{
	if (l->usnap) {
		*out = *l->usnap;
		raft_blob_ref(out->data);
		return 0;
	}
	memset(out, 0, sizeof(*out));
	return st_err(l, l->st.snapshot(l->st.ud, out));
}

int rlog_restore(rlog *l, const raft_snapshot *s)
{
	raft_snapshot *ns = l->usnap;
	if (ns == NULL) {
		ns = ralloc(sizeof(*ns));
		if (ns == NULL)
			return RAFT_ENOMEM;
	} else {
		raft_blob_unref(ns->data);
	}
	*ns = *s;
	raft_blob_ref(ns->data);
	l->usnap = ns;
	for (size_t i = 0; i < l->n; i++)
		raft_blob_unref(l->ents[i].data);
	l->n = 0;
	l->offset = s->index + 1;
	l->committed = s->index;
	return 0;
}

void rlog_stable_to(rlog *l, raft_index i, raft_term t)
{
	if (l->n == 0 || i < l->offset || i >= l->offset + l->n)
		return;
	if (l->ents[i - l->offset].term != t)
		return;
	size_t drop = (size_t)(i - l->offset + 1);
	for (size_t k = 0; k < drop; k++)
		raft_blob_unref(l->ents[k].data);
	memmove(l->ents, l->ents + drop, (l->n - drop) * sizeof(raft_entry));
	l->n -= drop;
	l->offset = i + 1;
}

void rlog_stable_snap_to(rlog *l, raft_index i)
{
	if (l->usnap && l->usnap->index == i) {
		raft_blob_unref(l->usnap->data);
		rfree(l->usnap);
		l->usnap = NULL;
	}
}

bool rlog_has_conf(rlog *l, raft_index lo, raft_index hi)
{
	raft_entry buf[64];
	raft_index i = lo;
	while (i <= hi) {
		if (i >= l->offset) {
			if (i - l->offset >= l->n)
				return false;
			if (l->ents[i - l->offset].type == RAFT_ENTRY_CONF_CHANGE)
				return true;
			i++;
			continue;
		}
		raft_index shi = hi + 1 < l->offset ? hi + 1 : l->offset;
		size_t k = 0;
		if (l->st.entries(l->st.ud, i, shi, SIZE_MAX, buf, 64, &k) != 0 || k == 0)
			return true;
		bool found = false;
		for (size_t j = 0; j < k; j++) {
			if (buf[j].type == RAFT_ENTRY_CONF_CHANGE)
				found = true;
			raft_blob_unref(buf[j].data);
		}
		if (found)
			return true;
		i += k;
	}
	return false;
}
