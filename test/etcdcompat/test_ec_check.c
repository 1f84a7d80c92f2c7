/*
 * Unit tests for the stateless request checks (etcd's v3rpc/key.go rules:
 * empty keys, ignore_* flags, txn op limits with nested budgets, duplicate and
 * overlapping keys) and for the error table.
 */
#include <criterion/criterion.h>

#include "etcdcompat/ec_errors.h"
#include "etcdcompat/ec_kv.h"
#include "test/etcdcompat/kv_testutil.h"

Test(errors, table_rows_and_out_of_range)
{
	cr_assert_str_eq(ec_strerror(EC_OK), "ok");
	cr_assert_str_eq(ec_strerror(EC_COMPACTED),
			 "etcdserver: mvcc: required revision has been compacted");
	cr_assert_eq(ec_grpc_code(EC_COMPACTED), EC_GRPC_OUT_OF_RANGE);
	cr_assert_str_eq(ec_strerror(EC_FUTURE_REV),
			 "etcdserver: mvcc: required revision is a future revision");
	cr_assert_str_eq(ec_strerror(EC_DUPLICATE_KEY), "etcdserver: duplicate key given in txn request");
	cr_assert_eq(ec_grpc_code(EC_DUPLICATE_KEY), EC_GRPC_INVALID_ARGUMENT);
	cr_assert_str_eq(ec_strerror(EC_LEASE_NOT_FOUND), "etcdserver: requested lease not found");
	cr_assert_eq(ec_grpc_code(EC_LEASE_NOT_FOUND), EC_GRPC_NOT_FOUND);
	cr_assert_eq(ec_grpc_code(EC_OK), EC_GRPC_OK);
	cr_assert_str_eq(ec_strerror(-1), "etcdserver: unknown error");
	cr_assert_str_eq(ec_strerror(EC__COUNT), "etcdserver: unknown error");
	cr_assert_eq(ec_grpc_code(-5), EC_GRPC_UNKNOWN);
	cr_assert_eq(ec_grpc_code(EC__COUNT), EC_GRPC_UNKNOWN);
}

/* An inner call's error, passed on as etcd's v3election/v3lock do: same text,
 * code Unknown; a text no row has is an internal error. */
Test(errors, passed_on_as_unknown)
{
	static const char denied[] = "etcdserver: permission denied";
	int e = ec_err_passed_on(EC_GRPC_PERMISSION_DENIED, denied, sizeof denied - 1);
	cr_assert_eq(e, EC_PERMISSION_DENIED | EC_AS_UNKNOWN);
	cr_assert_str_eq(ec_strerror(e), denied);
	cr_assert_eq(ec_grpc_code(e), EC_GRPC_UNKNOWN);
	cr_assert_eq(ec_grpc_code(EC_COMPACTED | EC_AS_UNKNOWN), EC_GRPC_UNKNOWN);
	cr_assert_eq(ec_err_passed_on(EC_GRPC_UNAVAILABLE, "no such text", 12), EC_INTERNAL);
	cr_assert_eq(ec_err_passed_on(EC_GRPC_OK, "", 0), EC_INTERNAL);
	/* the length counts: a prefix of a message is not that message */
	cr_assert_eq(ec_err_passed_on(EC_GRPC_PERMISSION_DENIED, denied, 10), EC_INTERNAL);
	cr_assert_str_eq(ec_strerror(EC_ELECTION_NO_LEADER), "election: no leader");
	cr_assert_eq(ec_grpc_code(EC_ELECTION_NOT_LEADER), EC_GRPC_UNKNOWN);
}

Test(check, simple_requests)
{
	Etcdserverpb__RangeRequest *r = tb_range("", NULL);
	cr_assert_eq(ec_check_range(r), EC_EMPTY_KEY);
	ec_msg_free(r);
	r = tb_range("a", NULL);
	cr_assert_eq(ec_check_range(r), EC_OK);
	r->sort_target = 9;
	cr_assert_eq(ec_check_range(r), EC_BAD_REQUEST);
	ec_msg_free(r);

	Etcdserverpb__PutRequest *p = tb_put("", "v");
	cr_assert_eq(ec_check_put(p), EC_EMPTY_KEY);
	ec_msg_free(p);
	p = tb_put("k", "v");
	cr_assert_eq(ec_check_put(p), EC_OK);
	p->ignore_value = true;
	cr_assert_eq(ec_check_put(p), EC_VALUE_PROVIDED);
	free(p->value.data);
	p->value.data = NULL;
	p->value.len = 0;
	cr_assert_eq(ec_check_put(p), EC_OK);
	p->ignore_lease = true;
	p->lease = 5;
	cr_assert_eq(ec_check_put(p), EC_LEASE_PROVIDED);
	ec_msg_free(p);

	Etcdserverpb__DeleteRangeRequest *d = tb_del("", NULL);
	cr_assert_eq(ec_check_delete(d), EC_EMPTY_KEY);
	ec_msg_free(d);
	Etcdserverpb__CompactionRequest *c = tb_compact(0);
	cr_assert_eq(ec_check_compact(c), EC_OK);
	ec_msg_free(c);
}

static int check(Etcdserverpb__TxnRequest *t, int64_t max)
{
	ec_kv_config cfg = {.max_txn_ops = max};
	int e = ec_check_txn(t, &cfg);
	ec_msg_free(t);
	return e;
}

Test(check, txn_limits_and_empty_parts)
{
	cr_assert_eq(check(tb_txn(0, 0, 0), 0), EC_OK);
	cr_assert_eq(check(tb_txn(0, 3, 0, tb_op_put(tb_put("a", "")), tb_op_put(tb_put("b", "")),
				  tb_op_put(tb_put("c", ""))),
			   2),
		     EC_TOO_MANY_OPS);
	cr_assert_eq(check(tb_txn(3, 0, 0, tb_cmp(TB_VERSION, TB_EQ, "a", NULL, 0),
				  tb_cmp(TB_VERSION, TB_EQ, "b", NULL, 0),
				  tb_cmp(TB_VERSION, TB_EQ, "c", NULL, 0)),
			   2),
		     EC_TOO_MANY_OPS);
	/* default 128 */
	Etcdserverpb__TxnRequest *big = tb_txn(0, 0, 0);
	big->n_failure = 129;
	big->failure = malloc(129 * sizeof(*big->failure));
	for (int i = 0; i < 129; i++) {
		char k[16];
		snprintf(k, sizeof(k), "k%d", i);
		big->failure[i] = tb_op_put(tb_put(k, "v"));
	}
	cr_assert_eq(ec_check_txn(big, NULL), EC_TOO_MANY_OPS);
	big->n_failure = 128;
	cr_assert_eq(ec_check_txn(big, NULL), EC_OK);
	big->n_failure = 129;
	ec_msg_free(big);
	/* nested txns get the budget minus the outer level's size */
	cr_assert_eq(check(tb_txn(0, 2, 0, tb_op_put(tb_put("a", "")),
				  tb_op_txn(tb_txn(0, 2, 0, tb_op_put(tb_put("b", "")),
						   tb_op_put(tb_put("c", ""))))),
			   3),
		     EC_TOO_MANY_OPS);
	cr_assert_eq(check(tb_txn(0, 2, 0, tb_op_put(tb_put("a", "")),
				  tb_op_txn(tb_txn(0, 2, 0, tb_op_put(tb_put("b", "")),
						   tb_op_put(tb_put("c", ""))))),
			   4),
		     EC_OK);
	cr_assert_eq(check(tb_txn(1, 0, 0, tb_cmp(TB_VERSION, TB_EQ, "", NULL, 0)), 0), EC_EMPTY_KEY);
	cr_assert_eq(check(tb_txn(0, 1, 0, tb_op_empty()), 0), EC_KEY_NOT_FOUND);
	cr_assert_eq(check(tb_txn(0, 0, 1, tb_op_range(tb_range("", NULL))), 0), EC_EMPTY_KEY);
	cr_assert_eq(check(tb_txn(0, 0, 1, tb_op_txn(tb_txn(0, 1, 0, tb_op_del(tb_del("", NULL))))), 0),
		     EC_EMPTY_KEY);
}

Test(check, txn_duplicate_keys)
{
	/* two puts of one key */
	cr_assert_eq(check(tb_txn(0, 2, 0, tb_op_put(tb_put("a", "1")), tb_op_put(tb_put("a", "2"))), 0),
		     EC_DUPLICATE_KEY);
	/* the same key in success and failure is fine */
	cr_assert_eq(check(tb_txn(0, 1, 1, tb_op_put(tb_put("a", "1")), tb_op_put(tb_put("a", "2"))), 0),
		     EC_OK);
	/* put inside a deleted range, either order */
	cr_assert_eq(check(tb_txn(0, 2, 0, tb_op_del(tb_del("a", "c")), tb_op_put(tb_put("b", ""))), 0),
		     EC_DUPLICATE_KEY);
	cr_assert_eq(check(tb_txn(0, 2, 0, tb_op_put(tb_put("b", "")), tb_op_del(tb_del("a", "c"))), 0),
		     EC_DUPLICATE_KEY);
	/* put of the deleted single key; and just outside the range */
	cr_assert_eq(check(tb_txn(0, 2, 0, tb_op_del(tb_del("a", NULL)), tb_op_put(tb_put("a", ""))), 0),
		     EC_DUPLICATE_KEY);
	cr_assert_eq(check(tb_txn(0, 2, 0, tb_op_del(tb_del("a", "c")), tb_op_put(tb_put("c", ""))), 0),
		     EC_OK);
	cr_assert_eq(check(tb_txn(0, 2, 0, tb_op_del(tb_del("a", NULL)), tb_op_put(tb_put("a\x01", ""))),
			   0),
		     EC_OK);
	/* two deletes may overlap */
	cr_assert_eq(check(tb_txn(0, 2, 0, tb_op_del(tb_del("a", "c")), tb_op_del(tb_del("b", "d"))), 0),
		     EC_OK);
	/* etcd 3.4 quirk kept: a "from key to the end" delete ("\0" end) is an
	 * empty interval to the overlap check, so it conflicts with nothing */
	cr_assert_eq(check(tb_txn(0, 2, 0, tb_op_del(tb_del("a", TB_TO_END)), tb_op_put(tb_put("b", ""))),
			   0),
		     EC_OK);
	/* nested: a nested put against an outer put or delete */
	cr_assert_eq(check(tb_txn(0, 2, 0, tb_op_put(tb_put("a", "")),
				  tb_op_txn(tb_txn(0, 1, 0, tb_op_put(tb_put("a", ""))))),
			   0),
		     EC_DUPLICATE_KEY);
	cr_assert_eq(check(tb_txn(0, 2, 0, tb_op_del(tb_del("a", "z")),
				  tb_op_txn(tb_txn(0, 0, 1, tb_op_put(tb_put("m", ""))))),
			   0),
		     EC_DUPLICATE_KEY);
	/* a nested delete against an outer put */
	cr_assert_eq(check(tb_txn(0, 2, 0, tb_op_put(tb_put("m", "")),
				  tb_op_txn(tb_txn(0, 1, 0, tb_op_del(tb_del("a", "z"))))),
			   0),
		     EC_DUPLICATE_KEY);
	/* nested then/else may both put the key; two nested txns may not */
	cr_assert_eq(check(tb_txn(0, 1, 0, tb_op_txn(tb_txn(0, 1, 1, tb_op_put(tb_put("a", "")),
						      tb_op_put(tb_put("a", ""))))),
			   0),
		     EC_OK);
	cr_assert_eq(check(tb_txn(0, 2, 0, tb_op_txn(tb_txn(0, 1, 0, tb_op_put(tb_put("a", "")))),
				  tb_op_txn(tb_txn(0, 0, 1, tb_op_put(tb_put("a", ""))))),
			   0),
		     EC_DUPLICATE_KEY);
	/* ranges never conflict */
	cr_assert_eq(check(tb_txn(0, 2, 0, tb_op_range(tb_range("a", NULL)), tb_op_put(tb_put("a", ""))),
			   0),
		     EC_OK);
	/* failure branch is checked too */
	cr_assert_eq(check(tb_txn(0, 0, 2, tb_op_put(tb_put("x", "")), tb_op_put(tb_put("x", ""))), 0),
		     EC_DUPLICATE_KEY);
}
