/*
 * quorum.c - counting a majority, alone or in a joint configuration.
 *
 * A majority configuration is a set of voter ids. Its committed index is the largest
 * index that a majority has reached; its vote result is won once a majority said yes,
 * lost once that can no longer happen. A joint configuration (incoming + outgoing)
 * needs both halves: the committed index is the smaller of the two, a vote is won
 * only when both halves win and lost when either loses. An empty half never
 * constrains the other (committed = "infinity", vote = won).
 */
#include "raft/raft_int.h"

raft_index rmajority_committed(rmajority c, rindex_fn fn, void *ud)
{
	if (c.n == 0)
		return UINT64_MAX;
	raft_index v[RAFT_MAX_NODES];
	for (size_t i = 0; i < c.n; i++) {
		raft_index x = 0;
		if (!fn(ud, c.ids[i], &x))
			x = 0;
		/* insertion sort, ascending: n is tiny */
		size_t j = i;
		while (j > 0 && v[j - 1] > x) {
			v[j] = v[j - 1];
			j--;
		}
		v[j] = x;
	}
	/* the (n/2+1)-th largest value is reached by a majority */
	return v[c.n - (c.n / 2 + 1)];
}

raft_index rjoint_committed(rmajority in, rmajority out, rindex_fn fn, void *ud)
{
	raft_index a = rmajority_committed(in, fn, ud);
	raft_index b = rmajority_committed(out, fn, ud);
	return a < b ? a : b;
}

rvote_result rmajority_vote(rmajority c, rvote_fn fn, void *ud)
{
	if (c.n == 0)
		return RVOTE_WON;
	size_t yes = 0, missing = 0;
	for (size_t i = 0; i < c.n; i++) {
		int v = fn(ud, c.ids[i]);
		if (v > 0)
			yes++;
		else if (v < 0)
			missing++;
	}
	size_t q = c.n / 2 + 1;
	if (yes >= q)
		return RVOTE_WON;
	if (yes + missing >= q)
		return RVOTE_PENDING;
	return RVOTE_LOST;
}

rvote_result rjoint_vote(rmajority in, rmajority out, rvote_fn fn, void *ud)
{
	rvote_result a = rmajority_vote(in, fn, ud);
	rvote_result b = rmajority_vote(out, fn, ud);
	if (a == b)
		return a;
	if (a == RVOTE_LOST || b == RVOTE_LOST)
		return RVOTE_LOST;
	return RVOTE_PENDING;
}
