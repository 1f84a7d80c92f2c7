/*
 * kv_testutil: build etcd KV requests for the ec_kv tests. Every pointer field
 * is its own malloc allocation so a whole request tree is freed with
 * ec_msg_free, exactly like the responses.
 */
#ifndef METASTORE_KV_TESTUTIL_H
#define METASTORE_KV_TESTUTIL_H

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "etcdcompat/ec_kv.h"

static inline ProtobufCBinaryData tb_binn(const void *p, size_t n)
{
	ProtobufCBinaryData b = {0, NULL};
	if (n > 0) {
		b.data = malloc(n);
		memcpy(b.data, p, n);
		b.len = n;
	}
	return b;
}

static inline ProtobufCBinaryData tb_bin(const char *s)
{
	return s ? tb_binn(s, strlen(s)) : tb_binn(NULL, 0);
}

/* The one-byte range end "\0" (from key to the end of the keyspace). */
#define TB_TO_END ((const char *)-1)

static inline ProtobufCBinaryData tb_end(const char *s)
{
	return s == TB_TO_END ? tb_binn("", 1) : tb_bin(s);
}

static inline Etcdserverpb__PutRequest *tb_put(const char *k, const char *v)
{
	Etcdserverpb__PutRequest *r = malloc(sizeof(*r));
	etcdserverpb__put_request__init(r);
	r->key = tb_bin(k);
	r->value = tb_bin(v);
	return r;
}

static inline Etcdserverpb__DeleteRangeRequest *tb_del(const char *k, const char *end)
{
	Etcdserverpb__DeleteRangeRequest *r = malloc(sizeof(*r));
	etcdserverpb__delete_range_request__init(r);
	r->key = tb_bin(k);
	r->range_end = tb_end(end);
	return r;
}

static inline Etcdserverpb__RangeRequest *tb_range(const char *k, const char *end)
{
	Etcdserverpb__RangeRequest *r = malloc(sizeof(*r));
	etcdserverpb__range_request__init(r);
	r->key = k == TB_TO_END ? tb_binn("", 1) : tb_bin(k);
	r->range_end = tb_end(end);
	return r;
}

static inline Etcdserverpb__RequestOp *tb_op_put(Etcdserverpb__PutRequest *p)
{
	Etcdserverpb__RequestOp *o = malloc(sizeof(*o));
	etcdserverpb__request_op__init(o);
	o->request_case = ETCDSERVERPB__REQUEST_OP__REQUEST_REQUEST_PUT;
	o->request_put = p;
	return o;
}

static inline Etcdserverpb__RequestOp *tb_op_del(Etcdserverpb__DeleteRangeRequest *d)
{
	Etcdserverpb__RequestOp *o = malloc(sizeof(*o));
	etcdserverpb__request_op__init(o);
	o->request_case = ETCDSERVERPB__REQUEST_OP__REQUEST_REQUEST_DELETE_RANGE;
	o->request_delete_range = d;
	return o;
}

static inline Etcdserverpb__RequestOp *tb_op_range(Etcdserverpb__RangeRequest *r)
{
	Etcdserverpb__RequestOp *o = malloc(sizeof(*o));
	etcdserverpb__request_op__init(o);
	o->request_case = ETCDSERVERPB__REQUEST_OP__REQUEST_REQUEST_RANGE;
	o->request_range = r;
	return o;
}

static inline Etcdserverpb__RequestOp *tb_op_txn(Etcdserverpb__TxnRequest *t)
{
	Etcdserverpb__RequestOp *o = malloc(sizeof(*o));
	etcdserverpb__request_op__init(o);
	o->request_case = ETCDSERVERPB__REQUEST_OP__REQUEST_REQUEST_TXN;
	o->request_txn = t;
	return o;
}

static inline Etcdserverpb__RequestOp *tb_op_empty(void)
{
	Etcdserverpb__RequestOp *o = malloc(sizeof(*o));
	etcdserverpb__request_op__init(o);
	return o;
}

/* A compare on an integer target (VERSION/CREATE/MOD/LEASE). */
static inline Etcdserverpb__Compare *tb_cmp(int target, int result, const char *k, const char *end,
					    int64_t n)
{
	Etcdserverpb__Compare *c = malloc(sizeof(*c));
	etcdserverpb__compare__init(c);
	c->target = target;
	c->result = result;
	c->key = tb_bin(k);
	c->range_end = tb_end(end);
	switch (target) {
	case ETCDSERVERPB__COMPARE__COMPARE_TARGET__VERSION:
		c->target_union_case = ETCDSERVERPB__COMPARE__TARGET_UNION_VERSION;
		c->version = n;
		break;
	case ETCDSERVERPB__COMPARE__COMPARE_TARGET__CREATE:
		c->target_union_case = ETCDSERVERPB__COMPARE__TARGET_UNION_CREATE_REVISION;
		c->create_revision = n;
		break;
	case ETCDSERVERPB__COMPARE__COMPARE_TARGET__MOD:
		c->target_union_case = ETCDSERVERPB__COMPARE__TARGET_UNION_MOD_REVISION;
		c->mod_revision = n;
		break;
	case ETCDSERVERPB__COMPARE__COMPARE_TARGET__LEASE:
		c->target_union_case = ETCDSERVERPB__COMPARE__TARGET_UNION_LEASE;
		c->lease = n;
		break;
	}
	return c;
}

static inline Etcdserverpb__Compare *tb_cmp_val(int result, const char *k, const char *end,
						const char *v)
{
	Etcdserverpb__Compare *c = malloc(sizeof(*c));
	etcdserverpb__compare__init(c);
	c->target = ETCDSERVERPB__COMPARE__COMPARE_TARGET__VALUE;
	c->result = result;
	c->key = tb_bin(k);
	c->range_end = tb_end(end);
	c->target_union_case = ETCDSERVERPB__COMPARE__TARGET_UNION_VALUE;
	c->value = tb_bin(v);
	return c;
}

/* tb_txn(ncmp, nsucc, nfail, cmp..., succ ops..., fail ops...) */
static inline Etcdserverpb__TxnRequest *tb_txn(size_t nc, size_t ns, size_t nf, ...)
{
	Etcdserverpb__TxnRequest *t = malloc(sizeof(*t));
	etcdserverpb__txn_request__init(t);
	va_list ap;
	va_start(ap, nf);
	t->n_compare = nc;
	t->compare = nc ? malloc(nc * sizeof(*t->compare)) : NULL;
	for (size_t i = 0; i < nc; i++)
		t->compare[i] = va_arg(ap, Etcdserverpb__Compare *);
	t->n_success = ns;
	t->success = ns ? malloc(ns * sizeof(*t->success)) : NULL;
	for (size_t i = 0; i < ns; i++)
		t->success[i] = va_arg(ap, Etcdserverpb__RequestOp *);
	t->n_failure = nf;
	t->failure = nf ? malloc(nf * sizeof(*t->failure)) : NULL;
	for (size_t i = 0; i < nf; i++)
		t->failure[i] = va_arg(ap, Etcdserverpb__RequestOp *);
	va_end(ap);
	return t;
}

static inline Metastore__InternalRequest *tb_ir(int kind, void *msg)
{
	Metastore__InternalRequest *r = malloc(sizeof(*r));
	metastore__internal_request__init(r);
	r->request_case = kind;
	switch (kind) {
	case METASTORE__INTERNAL_REQUEST__REQUEST_PUT:
		r->put = msg;
		break;
	case METASTORE__INTERNAL_REQUEST__REQUEST_DELETE_RANGE:
		r->delete_range = msg;
		break;
	case METASTORE__INTERNAL_REQUEST__REQUEST_TXN:
		r->txn = msg;
		break;
	case METASTORE__INTERNAL_REQUEST__REQUEST_COMPACTION:
		r->compaction = msg;
		break;
	}
	return r;
}

static inline Etcdserverpb__CompactionRequest *tb_compact(int64_t rev)
{
	Etcdserverpb__CompactionRequest *c = malloc(sizeof(*c));
	etcdserverpb__compaction_request__init(c);
	c->revision = rev;
	return c;
}

#define TB_EQ ETCDSERVERPB__COMPARE__COMPARE_RESULT__EQUAL
#define TB_GT ETCDSERVERPB__COMPARE__COMPARE_RESULT__GREATER
#define TB_LT ETCDSERVERPB__COMPARE__COMPARE_RESULT__LESS
#define TB_NE ETCDSERVERPB__COMPARE__COMPARE_RESULT__NOT_EQUAL
#define TB_VERSION ETCDSERVERPB__COMPARE__COMPARE_TARGET__VERSION
#define TB_CREATE ETCDSERVERPB__COMPARE__COMPARE_TARGET__CREATE
#define TB_MOD ETCDSERVERPB__COMPARE__COMPARE_TARGET__MOD
#define TB_LEASE ETCDSERVERPB__COMPARE__COMPARE_TARGET__LEASE

#endif
