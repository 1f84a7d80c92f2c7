// kvcheck: drives every field of etcd's KV service (Range, Put, DeleteRange, Txn,
// Compact) through the Go clientv3 SDK (and its raw etcdserverpb.KVClient where an
// exact request or the raw gRPC status is needed) against a FRESH server (revision 1),
// and checks every response — kvs, count, more, prev_kv, deleted, succeeded, sub-op
// responses and every header (revision by arithmetic, cluster_id/member_id non-zero
// and the same everywhere).  Errors are compared by exact message and gRPC code.
//
// Prints "ok kvcheck/NAME" or "not ok kvcheck/NAME (reason)" per check; exits 1 if
// any check failed.
//
// Build (offline, Debian's etcd 3.4 sources):
//
//	GO111MODULE=off GOPATH=/usr/share/gocode go build -o kvcheck .
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"reflect"
	"strings"
	"time"

	"go.etcd.io/etcd/clientv3"
	"go.etcd.io/etcd/etcdserver/api/v3rpc/rpctypes"
	pb "go.etcd.io/etcd/etcdserver/etcdserverpb"
	"go.etcd.io/etcd/mvcc/mvccpb"
	"go.etcd.io/etcd/pkg/logutil"
	"go.uber.org/zap"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

var (
	prefix    = "kvcheck/"
	failures  int
	checks    int
	clusterID uint64
	memberID  uint64
	raftTerm  uint64
	rev       int64 // expected current revision of the store
)

func ok(name string) {
	checks++
	fmt.Printf("ok %s%s\n", prefix, name)
}

func notOK(name, reason string, diag ...string) {
	checks++
	failures++
	fmt.Printf("not ok %s%s (%s)\n", prefix, name, reason)
	for _, d := range diag {
		for _, l := range strings.Split(d, "\n") {
			fmt.Printf("#   %s\n", l)
		}
	}
}

// eq compares with reflect.DeepEqual and prints both values on mismatch.
func eq(name string, want, got interface{}) bool {
	if reflect.DeepEqual(want, got) {
		ok(name)
		return true
	}
	notOK(name, "value mismatch", fmt.Sprintf("expected: %#v", want), fmt.Sprintf("actual:   %#v", got))
	return false
}

func noErr(name string, err error) bool {
	if err != nil {
		notOK(name, "unexpected error: "+err.Error())
		return false
	}
	return true
}

// header checks one top-level response header: revision == want, ids non-zero and
// equal to the first ones seen, raft_term non-zero and equal.
func header(name string, h *pb.ResponseHeader, want int64) {
	if h == nil {
		notOK(name+"/header", "nil header")
		return
	}
	if clusterID == 0 {
		clusterID, memberID, raftTerm = h.ClusterId, h.MemberId, h.RaftTerm
		if clusterID == 0 || memberID == 0 || raftTerm == 0 {
			notOK(name+"/header-ids", "zero id", fmt.Sprintf("header: %+v", h))
		} else {
			ok(name + "/header-ids")
		}
	}
	got := fmt.Sprintf("rev=%d cluster=%x member=%x term=%d", h.Revision, h.ClusterId, h.MemberId, h.RaftTerm)
	exp := fmt.Sprintf("rev=%d cluster=%x member=%x term=%d", want, clusterID, memberID, raftTerm)
	eq(name+"/header", exp, got)
}

// expectErr checks an error from the raw KV client: gRPC code and exact message.
func expectErr(name string, err error, code codes.Code, msg string) {
	if err == nil {
		notOK(name, "expected error, got success", fmt.Sprintf("expected: code=%s msg=%q", code, msg))
		return
	}
	st, isStatus := status.FromError(err)
	if !isStatus {
		notOK(name, "not a gRPC status error: "+err.Error())
		return
	}
	eq(name, fmt.Sprintf("code=%s msg=%q", code, msg), fmt.Sprintf("code=%s msg=%q", st.Code(), st.Message()))
}

// expectClientErr checks an error returned by the clientv3 API: it must be the
// rpctypes error value clients compare against (err == rpctypes.ErrX), with its code.
func expectClientErr(name string, err error, want error) {
	if err == nil {
		notOK(name, "expected error, got success", "expected: "+want.Error())
		return
	}
	got := fmt.Sprintf("%v %q code=%s", err == want, err.Error(), errCode(err))
	exp := fmt.Sprintf("%v %q code=%s", true, want.Error(), errCode(want))
	eq(name, exp, got)
}

func errCode(err error) codes.Code {
	if ee, isEE := err.(rpctypes.EtcdError); isEE {
		return ee.Code()
	}
	return status.Code(err)
}

// kvs renders key-value pairs compactly: key=value@create/mod/version[/lease]
func kvs(list []*mvccpb.KeyValue) string {
	parts := make([]string, 0, len(list))
	for _, kv := range list {
		s := fmt.Sprintf("%s=%s@%d/%d/%d", kv.Key, kv.Value, kv.CreateRevision, kv.ModRevision, kv.Version)
		if kv.Lease != 0 {
			s += fmt.Sprintf("/L%x", kv.Lease)
		}
		parts = append(parts, s)
	}
	return strings.Join(parts, " ")
}

func keys(list []*mvccpb.KeyValue) string {
	parts := make([]string, 0, len(list))
	for _, kv := range list {
		parts = append(parts, string(kv.Key))
	}
	return strings.Join(parts, " ")
}

// rangeSummary: "kvs | count=N more=B"
func rangeSummary(r *pb.RangeResponse) string {
	return fmt.Sprintf("%s | count=%d more=%v", kvs(r.Kvs), r.Count, r.More)
}

func main() {
	endpoint := flag.String("endpoint", "127.0.0.1:2379", "client endpoint host:port")
	flag.Parse()

	// Quiet the client's retry-interceptor warnings (every expected error logs one).
	lcfg := logutil.DefaultZapLoggerConfig
	lcfg.Level = zap.NewAtomicLevelAt(zap.ErrorLevel)
	cli, err := clientv3.New(clientv3.Config{
		Endpoints:   []string{*endpoint},
		DialTimeout: 10 * time.Second,
		LogConfig:   &lcfg,
	})
	if err != nil {
		notOK("connect", err.Error())
		os.Exit(1)
	}
	defer cli.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	raw := pb.NewKVClient(cli.ActiveConnection())

	run(ctx, cli, raw)

	if checks == 0 {
		notOK("no-checks", "no checks ran")
	}
	if failures > 0 {
		os.Exit(1)
	}
}

func run(ctx context.Context, cli *clientv3.Client, raw pb.KVClient) {
	// ---------------------------------------------------------------- fresh store
	rev = 1
	g, err := cli.Get(ctx, "a")
	if noErr("empty/get", err) {
		header("empty/get", g.Header, 1)
		eq("empty/get/result", " | count=0 more=false", rangeSummary((*pb.RangeResponse)(g)))
	}
	if clusterID == 0 {
		notOK("fresh", "no header ids; cannot continue")
		return
	}

	// ---------------------------------------------------------------- puts
	put := func(name, k, v string, opts ...clientv3.OpOption) *clientv3.PutResponse {
		p, err := cli.Put(ctx, k, v, opts...)
		if !noErr(name, err) {
			return nil
		}
		rev++
		header(name, p.Header, rev)
		return p
	}
	if p := put("put/a-new-prevkv", "a", "1", clientv3.WithPrevKV()); p != nil {
		eq("put/a-new-prevkv/no-prev", (*mvccpb.KeyValue)(nil), p.PrevKv)
	}
	put("put/b", "b", "2")
	put("put/c", "c", "3")
	if p := put("put/a-overwrite-prevkv", "a", "11", clientv3.WithPrevKV()); p != nil {
		if p.PrevKv == nil {
			notOK("put/a-overwrite-prevkv/prev", "prev_kv missing")
		} else {
			eq("put/a-overwrite-prevkv/prev", "a=1@2/2/1", kvs([]*mvccpb.KeyValue{p.PrevKv}))
		}
	}
	put("put/d1", "d/1", "x")
	put("put/d2", "d/2", "y")
	put("put/d3", "d/3", "z")
	put("put/e-empty-value", "e", "")
	// store: a(11,2,5,2) b(2,3,3,1) c(3,4,4,1) d/1(6) d/2(7) d/3(8) e(""@9)
	all := "a=11@2/5/2 b=2@3/3/1 c=3@4/4/1 d/1=x@6/6/1 d/2=y@7/7/1 d/3=z@8/8/1 e=@9/9/1"

	// ---------------------------------------------------------------- range
	rng := func(name, k string, want string, opts ...clientv3.OpOption) *clientv3.GetResponse {
		g, err := cli.Get(ctx, k, opts...)
		if !noErr(name, err) {
			return nil
		}
		header(name, g.Header, rev)
		eq(name+"/result", want, rangeSummary((*pb.RangeResponse)(g)))
		return g
	}
	rng("range/exact", "a", "a=11@2/5/2 | count=1 more=false")
	rng("range/missing", "zz", " | count=0 more=false")
	rng("range/empty-value", "e", "e=@9/9/1 | count=1 more=false")
	rng("range/prefix", "d/", "d/1=x@6/6/1 d/2=y@7/7/1 d/3=z@8/8/1 | count=3 more=false", clientv3.WithPrefix())
	rng("range/from-key", "c", "c=3@4/4/1 d/1=x@6/6/1 d/2=y@7/7/1 d/3=z@8/8/1 e=@9/9/1 | count=5 more=false", clientv3.WithFromKey())
	rng("range/all-from-key", "", all+" | count=7 more=false", clientv3.WithFromKey())
	rng("range/all-prefix-empty", "", all+" | count=7 more=false", clientv3.WithPrefix())
	rng("range/range-end", "a", "a=11@2/5/2 b=2@3/3/1 | count=2 more=false", clientv3.WithRange("c"))
	rng("range/range-end-empty-interval", "c", " | count=0 more=false", clientv3.WithRange("c"))
	rng("range/limit-more", "", "a=11@2/5/2 b=2@3/3/1 | count=7 more=true", clientv3.WithPrefix(), clientv3.WithLimit(2))
	rng("range/limit-equal-count", "", all+" | count=7 more=false", clientv3.WithPrefix(), clientv3.WithLimit(7))
	rng("range/limit-above-count", "", all+" | count=7 more=false", clientv3.WithPrefix(), clientv3.WithLimit(100))
	rng("range/rev-2", "a", "a=1@2/2/1 | count=1 more=false", clientv3.WithRev(2))
	rng("range/rev-4-all", "", "a=1@2/2/1 b=2@3/3/1 c=3@4/4/1 | count=3 more=false", clientv3.WithPrefix(), clientv3.WithRev(4))
	rng("range/rev-1-empty", "", " | count=0 more=false", clientv3.WithPrefix(), clientv3.WithRev(1))
	rng("range/rev-current", "d/3", "d/3=z@8/8/1 | count=1 more=false", clientv3.WithRev(rev))
	rng("range/rev-limit", "", "a=1@2/2/1 | count=3 more=true", clientv3.WithPrefix(), clientv3.WithRev(4), clientv3.WithLimit(1))
	rng("range/serializable", "", all+" | count=7 more=false", clientv3.WithPrefix(), clientv3.WithSerializable())
	rng("range/keys-only", "d/", "d/1=@6/6/1 d/2=@7/7/1 d/3=@8/8/1 | count=3 more=false", clientv3.WithPrefix(), clientv3.WithKeysOnly())
	rng("range/count-only", "", " | count=7 more=false", clientv3.WithPrefix(), clientv3.WithCountOnly())
	rng("range/count-only-limit", "", " | count=7 more=false", clientv3.WithPrefix(), clientv3.WithCountOnly(), clientv3.WithLimit(2))
	rng("range/count-only-rev", "", " | count=3 more=false", clientv3.WithPrefix(), clientv3.WithCountOnly(), clientv3.WithRev(4))
	rng("range/count-only-missing", "zz", " | count=0 more=false", clientv3.WithCountOnly())
	// min/max filters prune kvs AFTER the range is counted: count stays the range size.
	rng("range/min-mod-rev", "", "d/1=x@6/6/1 d/2=y@7/7/1 d/3=z@8/8/1 e=@9/9/1 | count=7 more=false", clientv3.WithPrefix(), clientv3.WithMinModRev(6))
	rng("range/max-mod-rev", "", "b=2@3/3/1 c=3@4/4/1 | count=7 more=false", clientv3.WithPrefix(), clientv3.WithMaxModRev(4))
	rng("range/min-max-mod-rev", "", "a=11@2/5/2 d/1=x@6/6/1 | count=7 more=false", clientv3.WithPrefix(), clientv3.WithMinModRev(5), clientv3.WithMaxModRev(6))
	rng("range/min-create-rev", "", "d/3=z@8/8/1 e=@9/9/1 | count=7 more=false", clientv3.WithPrefix(), clientv3.WithMinCreateRev(8))
	rng("range/max-create-rev", "", "a=11@2/5/2 b=2@3/3/1 | count=7 more=false", clientv3.WithPrefix(), clientv3.WithMaxCreateRev(3))
	rng("range/min-max-create-rev", "", "b=2@3/3/1 c=3@4/4/1 d/1=x@6/6/1 | count=7 more=false", clientv3.WithPrefix(), clientv3.WithMinCreateRev(3), clientv3.WithMaxCreateRev(6))
	rng("range/min-mod-rev-limit", "", "d/1=x@6/6/1 d/2=y@7/7/1 | count=7 more=true", clientv3.WithPrefix(), clientv3.WithMinModRev(6), clientv3.WithLimit(2))
	rng("range/min-mod-rev-none-match", "", " | count=7 more=false", clientv3.WithPrefix(), clientv3.WithMinModRev(100))

	// ---------------------------------------------------------------- sort
	// creates s/c s/a s/d s/b; updates b a a b a d => every target a distinct order.
	for i, kv := range [][2]string{{"s/c", "4"}, {"s/a", "v"}, {"s/d", "v"}, {"s/b", "v"}, {"s/b", "v"},
		{"s/a", "v"}, {"s/a", "v"}, {"s/b", "1"}, {"s/a", "3"}, {"s/d", "2"}} {
		put(fmt.Sprintf("sort/setup-%d", i), kv[0], kv[1])
	}
	eq("sort/setup-revision", int64(19), rev)
	type sortCase struct {
		target pb.RangeRequest_SortTarget
		order  pb.RangeRequest_SortOrder
		want   string
	}
	sortCases := []sortCase{
		{pb.RangeRequest_KEY, pb.RangeRequest_NONE, "s/a s/b s/c s/d"},
		{pb.RangeRequest_KEY, pb.RangeRequest_ASCEND, "s/a s/b s/c s/d"},
		{pb.RangeRequest_KEY, pb.RangeRequest_DESCEND, "s/d s/c s/b s/a"},
		{pb.RangeRequest_VERSION, pb.RangeRequest_NONE, "s/c s/d s/b s/a"},
		{pb.RangeRequest_VERSION, pb.RangeRequest_ASCEND, "s/c s/d s/b s/a"},
		{pb.RangeRequest_VERSION, pb.RangeRequest_DESCEND, "s/a s/b s/d s/c"},
		{pb.RangeRequest_CREATE, pb.RangeRequest_NONE, "s/c s/a s/d s/b"},
		{pb.RangeRequest_CREATE, pb.RangeRequest_ASCEND, "s/c s/a s/d s/b"},
		{pb.RangeRequest_CREATE, pb.RangeRequest_DESCEND, "s/b s/d s/a s/c"},
		{pb.RangeRequest_MOD, pb.RangeRequest_NONE, "s/c s/b s/a s/d"},
		{pb.RangeRequest_MOD, pb.RangeRequest_ASCEND, "s/c s/b s/a s/d"},
		{pb.RangeRequest_MOD, pb.RangeRequest_DESCEND, "s/d s/a s/b s/c"},
		{pb.RangeRequest_VALUE, pb.RangeRequest_NONE, "s/b s/d s/a s/c"},
		{pb.RangeRequest_VALUE, pb.RangeRequest_ASCEND, "s/b s/d s/a s/c"},
		{pb.RangeRequest_VALUE, pb.RangeRequest_DESCEND, "s/c s/a s/d s/b"},
	}
	for _, sc := range sortCases {
		name := fmt.Sprintf("sort/%s-%s", sc.target, sc.order)
		r, err := raw.Range(ctx, &pb.RangeRequest{Key: []byte("s/"), RangeEnd: []byte("s0"), SortTarget: sc.target, SortOrder: sc.order})
		if noErr(name, err) {
			header(name, r.Header, rev)
			eq(name+"/keys", sc.want+" count=4", keys(r.Kvs)+fmt.Sprintf(" count=%d", r.Count))
		}
	}
	// sort applies before limit; clientv3 helpers built on it.
	rng("sort/value-desc-limit", "s/", "s/c=4@10/10/1 s/a=3@11/18/4 | count=4 more=true",
		clientv3.WithPrefix(), clientv3.WithSort(clientv3.SortByValue, clientv3.SortDescend), clientv3.WithLimit(2))
	rng("sort/first-create", "s/", "s/c=4@10/10/1 | count=4 more=true", clientv3.WithFirstCreate()...)
	rng("sort/last-rev", "s/", "s/d=2@12/19/2 | count=4 more=true", clientv3.WithLastRev()...)
	rng("sort/last-key", "s/", "s/d=2@12/19/2 | count=4 more=true", clientv3.WithLastKey()...)
	rng("sort/mod-asc-min-create", "s/", "s/d=2@12/19/2 s/b=1@13/17/3 | count=4 more=false",
		clientv3.WithPrefix(), clientv3.WithSort(clientv3.SortByModRevision, clientv3.SortDescend), clientv3.WithMinCreateRev(12))

	// ---------------------------------------------------------------- put options
	if p := put("put/ignore-value", "s/c", "", clientv3.WithIgnoreValue(), clientv3.WithPrevKV()); p != nil { // 20
		eq("put/ignore-value/prev", "s/c=4@10/10/1", kvs([]*mvccpb.KeyValue{p.PrevKv}))
	}
	rng("put/ignore-value/kept", "s/c", "s/c=4@10/20/2 | count=1 more=false")
	_, err = raw.Put(ctx, &pb.PutRequest{Key: []byte("s/c"), Value: []byte("x"), IgnoreValue: true})
	expectErr("put/ignore-value-with-value", err, codes.InvalidArgument, "etcdserver: value is provided")
	_, err = raw.Put(ctx, &pb.PutRequest{Key: []byte("nokey"), IgnoreValue: true})
	expectErr("put/ignore-value-missing-key", err, codes.InvalidArgument, "etcdserver: key not found")
	_, err = cli.Put(ctx, "nokey", "", clientv3.WithIgnoreValue())
	expectClientErr("put/ignore-value-missing-key-clientv3", err, rpctypes.ErrKeyNotFound)
	_, err = raw.Put(ctx, &pb.PutRequest{Key: []byte(""), Value: []byte("x")})
	expectErr("put/empty-key", err, codes.InvalidArgument, "etcdserver: key is not provided")
	_, err = cli.Put(ctx, "", "x")
	expectClientErr("put/empty-key-clientv3", err, rpctypes.ErrEmptyKey)
	_, err = raw.Range(ctx, &pb.RangeRequest{Key: []byte("")})
	expectErr("range/empty-key", err, codes.InvalidArgument, "etcdserver: key is not provided")
	_, err = raw.DeleteRange(ctx, &pb.DeleteRangeRequest{Key: []byte("")})
	expectErr("delete/empty-key", err, codes.InvalidArgument, "etcdserver: key is not provided")

	// leases
	lg, err := cli.Grant(ctx, 600)
	var lid clientv3.LeaseID
	if noErr("lease/grant", err) {
		header("lease/grant", lg.ResponseHeader, rev) // a grant adds no revision
		lid = lg.ID
		if lid == 0 || lg.TTL != 600 {
			notOK("lease/grant/fields", fmt.Sprintf("id=%x ttl=%d", lg.ID, lg.TTL))
		} else {
			ok("lease/grant/fields")
		}
	}
	lh := fmt.Sprintf("/L%x", int64(lid))
	put("put/with-lease", "l1", "v1", clientv3.WithLease(lid)) // 21
	rng("put/with-lease/get", "l1", "l1=v1@21/21/1"+lh+" | count=1 more=false")
	put("put/ignore-lease", "l1", "v2", clientv3.WithIgnoreLease()) // 22
	rng("put/ignore-lease/kept", "l1", "l1=v2@21/22/2"+lh+" | count=1 more=false")
	put("put/ignore-lease-and-value", "l1", "", clientv3.WithIgnoreLease(), clientv3.WithIgnoreValue()) // 23
	rng("put/ignore-lease-and-value/kept", "l1", "l1=v2@21/23/3"+lh+" | count=1 more=false")
	_, err = raw.Put(ctx, &pb.PutRequest{Key: []byte("l1"), Value: []byte("x"), Lease: int64(lid), IgnoreLease: true})
	expectErr("put/ignore-lease-with-lease", err, codes.InvalidArgument, "etcdserver: lease is provided")
	_, err = raw.Put(ctx, &pb.PutRequest{Key: []byte("nokey"), Value: []byte("x"), IgnoreLease: true})
	expectErr("put/ignore-lease-missing-key", err, codes.InvalidArgument, "etcdserver: key not found")
	_, err = raw.Put(ctx, &pb.PutRequest{Key: []byte("l2"), Value: []byte("x"), Lease: 0x1234})
	expectErr("put/unknown-lease", err, codes.NotFound, "etcdserver: requested lease not found")
	_, err = cli.Put(ctx, "l2", "x", clientv3.WithLease(0x1234))
	expectClientErr("put/unknown-lease-clientv3", err, rpctypes.ErrLeaseNotFound)
	rng("put/errors-changed-nothing", "", "a=11@2/5/2 | count=12 more=true", clientv3.WithPrefix(), clientv3.WithLimit(1))

	// ---------------------------------------------------------------- delete
	del := func(name, k string, wantDeleted int64, wantPrev string, opts ...clientv3.OpOption) {
		d, err := cli.Delete(ctx, k, opts...)
		if !noErr(name, err) {
			return
		}
		if wantDeleted > 0 {
			rev++
		}
		header(name, d.Header, rev)
		eq(name+"/result", fmt.Sprintf("deleted=%d prev=[%s]", wantDeleted, wantPrev), fmt.Sprintf("deleted=%d prev=[%s]", d.Deleted, kvs(d.PrevKvs)))
	}
	del("delete/missing", "zz", 0, "")
	del("delete/missing-prevkv", "zz", 0, "", clientv3.WithPrevKV())
	del("delete/one-no-prevkv", "c", 1, "")                                                                                   // 24
	del("delete/prefix-prevkv", "d/", 3, "d/1=x@6/6/1 d/2=y@7/7/1 d/3=z@8/8/1", clientv3.WithPrefix(), clientv3.WithPrevKV()) // 25
	del("delete/range-prevkv", "s/a", 2, "s/a=3@11/18/4 s/b=1@13/17/3", clientv3.WithRange("s/c"), clientv3.WithPrevKV())     // 26
	del("delete/from-key-prevkv", "s/d", 1, "s/d=2@12/19/2", clientv3.WithFromKey(), clientv3.WithPrevKV())                   // 27
	rng("delete/remaining", "", "a=11@2/5/2 b=2@3/3/1 e=@9/9/1 l1=v2@21/23/3"+lh+" s/c=4@10/20/2 | count=5 more=false", clientv3.WithPrefix())
	rng("delete/history-kept", "d/2", "d/2=y@7/7/1 | count=1 more=false", clientv3.WithRev(24))
	put("delete/recreate", "c", "new") // 28
	rng("delete/recreate/version-reset", "c", "c=new@28/28/1 | count=1 more=false")
	eq("delete/revision", int64(28), rev)

	// ---------------------------------------------------------------- txn
	txn := func(name string, cmps []clientv3.Cmp, thenOps, elseOps []clientv3.Op, wantSucceeded bool, writes bool) *clientv3.TxnResponse {
		t, err := cli.Txn(ctx).If(cmps...).Then(thenOps...).Else(elseOps...).Commit()
		if !noErr(name, err) {
			return nil
		}
		if writes {
			rev++
		}
		header(name, t.Header, rev)
		eq(name+"/succeeded", wantSucceeded, t.Succeeded)
		return t
	}
	cmpCase := func(name string, c clientv3.Cmp, want bool) {
		txn("txn/cmp/"+name, []clientv3.Cmp{c}, nil, nil, want, false)
	}
	// a: value 11, create 2, mod 5, version 2, no lease; l1: lease lid
	cmpCase("version-eq", clientv3.Compare(clientv3.Version("a"), "=", 2), true)
	cmpCase("version-eq-false", clientv3.Compare(clientv3.Version("a"), "=", 3), false)
	cmpCase("version-ne", clientv3.Compare(clientv3.Version("a"), "!=", 3), true)
	cmpCase("version-gt", clientv3.Compare(clientv3.Version("a"), ">", 1), true)
	cmpCase("version-gt-false", clientv3.Compare(clientv3.Version("a"), ">", 2), false)
	cmpCase("version-lt", clientv3.Compare(clientv3.Version("a"), "<", 3), true)
	cmpCase("version-lt-false", clientv3.Compare(clientv3.Version("a"), "<", 2), false)
	cmpCase("create-eq", clientv3.Compare(clientv3.CreateRevision("a"), "=", 2), true)
	cmpCase("create-gt-false", clientv3.Compare(clientv3.CreateRevision("a"), ">", 2), false)
	cmpCase("create-lt", clientv3.Compare(clientv3.CreateRevision("a"), "<", 3), true)
	cmpCase("create-ne-false", clientv3.Compare(clientv3.CreateRevision("a"), "!=", 2), false)
	cmpCase("mod-eq", clientv3.Compare(clientv3.ModRevision("a"), "=", 5), true)
	cmpCase("mod-gt", clientv3.Compare(clientv3.ModRevision("a"), ">", 4), true)
	cmpCase("mod-lt-false", clientv3.Compare(clientv3.ModRevision("a"), "<", 5), false)
	cmpCase("mod-ne", clientv3.Compare(clientv3.ModRevision("a"), "!=", 4), true)
	cmpCase("value-eq", clientv3.Compare(clientv3.Value("a"), "=", "11"), true)
	cmpCase("value-eq-false", clientv3.Compare(clientv3.Value("a"), "=", "1"), false)
	cmpCase("value-ne", clientv3.Compare(clientv3.Value("a"), "!=", "1"), true)
	cmpCase("value-gt-bytewise", clientv3.Compare(clientv3.Value("a"), ">", "1"), true)
	cmpCase("value-lt-bytewise", clientv3.Compare(clientv3.Value("a"), "<", "2"), true)
	cmpCase("value-lt-false", clientv3.Compare(clientv3.Value("a"), "<", "11"), false)
	cmpCase("value-empty-eq", clientv3.Compare(clientv3.Value("e"), "=", ""), true)
	cmpCase("lease-eq", clientv3.Compare(clientv3.LeaseValue("l1"), "=", lid), true)
	cmpCase("lease-ne-false", clientv3.Compare(clientv3.LeaseValue("l1"), "!=", lid), false)
	cmpCase("lease-none-eq-0", clientv3.Compare(clientv3.LeaseValue("a"), "=", clientv3.LeaseID(0)), true)
	cmpCase("lease-gt", clientv3.Compare(clientv3.LeaseValue("l1"), ">", clientv3.LeaseID(0)), true)
	// missing key: version/create/mod/lease compare against 0; value compares always fail.
	cmpCase("missing-version-eq-0", clientv3.Compare(clientv3.Version("zz"), "=", 0), true)
	cmpCase("missing-create-eq-0", clientv3.Compare(clientv3.CreateRevision("zz"), "=", 0), true)
	cmpCase("missing-mod-lt-1", clientv3.Compare(clientv3.ModRevision("zz"), "<", 1), true)
	cmpCase("missing-lease-eq-0", clientv3.Compare(clientv3.LeaseValue("zz"), "=", clientv3.LeaseID(0)), true)
	cmpCase("missing-value-eq-empty-false", clientv3.Compare(clientv3.Value("zz"), "=", ""), false)
	cmpCase("missing-value-ne-false", clientv3.Compare(clientv3.Value("zz"), "!=", "x"), false)
	// range compares: every key in the range must satisfy the compare.
	// keys a(v2,m5) b(v1,m3) c(v1,m28) e(v1,m9)
	cmpCase("range-version-gt0", clientv3.Compare(clientv3.Version("a").WithRange("f"), ">", 0), true)
	cmpCase("range-version-eq1-false", clientv3.Compare(clientv3.Version("a").WithRange("f"), "=", 1), false)
	cmpCase("range-version-eq1", clientv3.Compare(clientv3.Version("b").WithRange("f"), "=", 1), true)
	cmpCase("range-mod-lt", clientv3.Compare(clientv3.ModRevision("a").WithRange("c"), "<", 6), true)
	cmpCase("range-mod-lt-false", clientv3.Compare(clientv3.ModRevision("a").WithRange("d"), "<", 6), false)
	cmpCase("range-create-prefix", clientv3.Compare(clientv3.CreateRevision("s/").WithPrefix(), "=", 10), true)
	cmpCase("range-value-prefix", clientv3.Compare(clientv3.Value("s/").WithPrefix(), "=", "4"), true)
	cmpCase("range-empty-value-false", clientv3.Compare(clientv3.Value("x/").WithPrefix(), "=", "4"), false)
	cmpCase("range-empty-version-eq-0", clientv3.Compare(clientv3.Version("x/").WithPrefix(), "=", 0), true)
	cmpCase("range-from-key-version", clientv3.Compare(clientv3.Version("l").WithRange("\x00"), "<", 4), true)
	// several compares: all must hold
	txn("txn/cmp/all-must-hold", []clientv3.Cmp{
		clientv3.Compare(clientv3.Value("a"), "=", "11"),
		clientv3.Compare(clientv3.Version("b"), "=", 2)}, nil, nil, false, false)
	txn("txn/cmp/no-compares-succeeds", nil, nil, nil, true, false)
	eq("txn/cmp/no-revision-used", int64(28), rev)

	// success branch with sub-op responses: Range before any write reports the txn's
	// starting revision, sub-ops after the first write report the txn's revision.
	t := txn("txn/success-ops", []clientv3.Cmp{clientv3.Compare(clientv3.Value("a"), "=", "11")},
		[]clientv3.Op{
			clientv3.OpGet("a"),
			clientv3.OpPut("t/1", "one", clientv3.WithPrevKV()),
			clientv3.OpPut("a", "12", clientv3.WithPrevKV()),
			clientv3.OpGet("a"),
			clientv3.OpDelete("b", clientv3.WithPrevKV()),
			clientv3.OpDelete("zz"),
			clientv3.OpGet("t/", clientv3.WithPrefix(), clientv3.WithCountOnly()),
		},
		[]clientv3.Op{clientv3.OpPut("never", "x")}, true, true) // 29
	if t != nil && eq("txn/success-ops/count", 7, len(t.Responses)) {
		r := t.Responses
		eq("txn/success-ops/0-range", fmt.Sprintf("rev=28 a=11@2/5/2 | count=1 more=false"),
			fmt.Sprintf("rev=%d %s", r[0].GetResponseRange().Header.Revision, rangeSummary(r[0].GetResponseRange())))
		eq("txn/success-ops/1-put", "rev=29 prev=<nil>",
			fmt.Sprintf("rev=%d prev=%v", r[1].GetResponsePut().Header.Revision, r[1].GetResponsePut().PrevKv))
		eq("txn/success-ops/2-put-prev", "rev=29 prev=a=11@2/5/2",
			fmt.Sprintf("rev=%d prev=%s", r[2].GetResponsePut().Header.Revision, kvs([]*mvccpb.KeyValue{r[2].GetResponsePut().PrevKv})))
		eq("txn/success-ops/3-range-after-write", "rev=29 a=12@2/29/3 | count=1 more=false",
			fmt.Sprintf("rev=%d %s", r[3].GetResponseRange().Header.Revision, rangeSummary(r[3].GetResponseRange())))
		eq("txn/success-ops/4-delete", "rev=29 deleted=1 prev=b=2@3/3/1",
			fmt.Sprintf("rev=%d deleted=%d prev=%s", r[4].GetResponseDeleteRange().Header.Revision, r[4].GetResponseDeleteRange().Deleted, kvs(r[4].GetResponseDeleteRange().PrevKvs)))
		eq("txn/success-ops/5-delete-nothing", "rev=29 deleted=0",
			fmt.Sprintf("rev=%d deleted=%d", r[5].GetResponseDeleteRange().Header.Revision, r[5].GetResponseDeleteRange().Deleted))
		eq("txn/success-ops/6-count", "rev=29 count=1 kvs=0",
			fmt.Sprintf("rev=%d count=%d kvs=%d", r[6].GetResponseRange().Header.Revision, r[6].GetResponseRange().Count, len(r[6].GetResponseRange().Kvs)))
		// etcd fills cluster_id/member_id/raft_term only in the top-level header.
		h := r[1].GetResponsePut().Header
		eq("txn/success-ops/sub-header-only-revision", "cluster=0 member=0 term=0",
			fmt.Sprintf("cluster=%d member=%d term=%d", h.ClusterId, h.MemberId, h.RaftTerm))
	}
	rng("txn/success-ops/one-revision", "", "a=12@2/29/3 t/1=one@29/29/1 | count=6 more=false", clientv3.WithPrefix(), clientv3.WithMinModRev(29))
	rng("txn/success-ops/never-not-written", "never", " | count=0 more=false")

	// failure branch
	t = txn("txn/failure-ops", []clientv3.Cmp{clientv3.Compare(clientv3.Version("a"), "=", 1)},
		[]clientv3.Op{clientv3.OpPut("never", "x")},
		[]clientv3.Op{clientv3.OpPut("t/2", "two"), clientv3.OpGet("t/2")}, false, true) // 30
	if t != nil && eq("txn/failure-ops/count", 2, len(t.Responses)) {
		eq("txn/failure-ops/responses", "put:30 range:30:t/2=two@30/30/1",
			fmt.Sprintf("put:%d range:%d:%s", t.Responses[0].GetResponsePut().Header.Revision,
				t.Responses[1].GetResponseRange().Header.Revision, kvs(t.Responses[1].GetResponseRange().Kvs)))
	}
	// read-only txn and a txn whose only write deletes nothing: no new revision
	t = txn("txn/read-only", nil, []clientv3.Op{clientv3.OpGet("a"), clientv3.OpGet("t/", clientv3.WithPrefix(), clientv3.WithKeysOnly())}, nil, true, false)
	if t != nil && eq("txn/read-only/count", 2, len(t.Responses)) {
		eq("txn/read-only/range", "rev=30 t/1=@29/29/1 t/2=@30/30/1 | count=2 more=false",
			fmt.Sprintf("rev=%d %s", t.Responses[1].GetResponseRange().Header.Revision, rangeSummary(t.Responses[1].GetResponseRange())))
	}
	t = txn("txn/delete-nothing", nil, []clientv3.Op{clientv3.OpDelete("zz", clientv3.WithPrefix())}, nil, true, false)
	if t != nil && eq("txn/delete-nothing/count", 1, len(t.Responses)) {
		eq("txn/delete-nothing/resp", "rev=30 deleted=0", fmt.Sprintf("rev=%d deleted=%d",
			t.Responses[0].GetResponseDeleteRange().Header.Revision, t.Responses[0].GetResponseDeleteRange().Deleted))
	}
	// a txn that puts with a lease and one that ranges at an old revision
	txn("txn/put-with-lease", nil, []clientv3.Op{clientv3.OpPut("t/3", "three", clientv3.WithLease(lid))}, nil, true, true) // 31
	rng("txn/put-with-lease/get", "t/3", "t/3=three@31/31/1"+lh+" | count=1 more=false")
	t = txn("txn/range-at-rev", nil, []clientv3.Op{clientv3.OpGet("a", clientv3.WithRev(2))}, nil, true, false)
	if t != nil && eq("txn/range-at-rev/count", 1, len(t.Responses)) {
		eq("txn/range-at-rev/kvs", "a=1@2/2/1", kvs(t.Responses[0].GetResponseRange().Kvs))
	}

	// nested txn: the whole tree is one revision; inner branches chosen independently.
	// etcd leaves a nested ResponseTxn's header EMPTY (revision 0), while the ops inside
	// it carry the revision like any other sub-op.
	t = txn("txn/nested", []clientv3.Cmp{clientv3.Compare(clientv3.Version("t/1"), "=", 1)},
		[]clientv3.Op{
			clientv3.OpPut("n/outer", "o"),
			clientv3.OpTxn([]clientv3.Cmp{clientv3.Compare(clientv3.Value("a"), "=", "nope")},
				[]clientv3.Op{clientv3.OpPut("n/never", "x")},
				[]clientv3.Op{clientv3.OpPut("n/inner-else", "e"), clientv3.OpGet("n/", clientv3.WithPrefix())}),
			clientv3.OpTxn([]clientv3.Cmp{clientv3.Compare(clientv3.Value("a"), "=", "12")},
				[]clientv3.Op{clientv3.OpDelete("t/1", clientv3.WithPrevKV()),
					clientv3.OpTxn(nil, []clientv3.Op{clientv3.OpPut("n/deep", "d")}, nil)},
				nil),
		}, nil, true, true) // 32
	if t != nil && eq("txn/nested/count", 3, len(t.Responses)) {
		in1 := t.Responses[1].GetResponseTxn()
		in2 := t.Responses[2].GetResponseTxn()
		if in1 == nil || in2 == nil || len(in1.Responses) != 2 || len(in2.Responses) != 2 {
			notOK("txn/nested/shape", fmt.Sprintf("inner responses: %v / %v", in1, in2))
		} else {
			ok("txn/nested/shape")
			eq("txn/nested/inner1", "succeeded=false rev=0 put=32 range=n/inner-else=e@32/32/1 n/outer=o@32/32/1",
				fmt.Sprintf("succeeded=%v rev=%d put=%d range=%s", in1.Succeeded, in1.Header.Revision,
					in1.Responses[0].GetResponsePut().Header.Revision, kvs(in1.Responses[1].GetResponseRange().Kvs)))
			deep := in2.Responses[1].GetResponseTxn()
			eq("txn/nested/inner2", "succeeded=true rev=0 deleted=1 prev=t/1=one@29/29/1 deep=true/1",
				fmt.Sprintf("succeeded=%v rev=%d deleted=%d prev=%s deep=%v/%d", in2.Succeeded, in2.Header.Revision,
					in2.Responses[0].GetResponseDeleteRange().Deleted, kvs(in2.Responses[0].GetResponseDeleteRange().PrevKvs),
					deep != nil && deep.Succeeded, len(deep.GetResponses())))
		}
	}
	rng("txn/nested/one-revision", "", "n/deep=d@32/32/1 n/inner-else=e@32/32/1 n/outer=o@32/32/1 | count=10 more=false",
		clientv3.WithPrefix(), clientv3.WithMinModRev(32))
	rng("txn/nested/deleted", "t/1", " | count=0 more=false")

	// txn errors: nothing applied, no revision
	ops129 := make([]clientv3.Op, 129)
	for i := range ops129 {
		ops129[i] = clientv3.OpPut(fmt.Sprintf("many/%03d", i), "v")
	}
	_, err = cli.Txn(ctx).Then(ops129...).Commit()
	expectClientErr("txn/too-many-ops-clientv3", err, rpctypes.ErrTooManyOps)
	rawOps := func(n int, key func(i int) string) []*pb.RequestOp {
		ops := make([]*pb.RequestOp, n)
		for i := range ops {
			ops[i] = &pb.RequestOp{Request: &pb.RequestOp_RequestPut{RequestPut: &pb.PutRequest{Key: []byte(key(i)), Value: []byte("v")}}}
		}
		return ops
	}
	_, err = raw.Txn(ctx, &pb.TxnRequest{Failure: rawOps(129, func(i int) string { return fmt.Sprintf("many/%03d", i) })})
	expectErr("txn/too-many-ops-failure-branch", err, codes.InvalidArgument, "etcdserver: too many operations in txn request")
	_, err = raw.Txn(ctx, &pb.TxnRequest{Success: rawOps(2, func(int) string { return "dup" })})
	expectErr("txn/duplicate-put", err, codes.InvalidArgument, "etcdserver: duplicate key given in txn request")
	_, err = cli.Txn(ctx).Then(clientv3.OpPut("dup/a", "1"), clientv3.OpDelete("dup/", clientv3.WithPrefix())).Commit()
	expectClientErr("txn/duplicate-put-delete-range", err, rpctypes.ErrDuplicateKey)
	_, err = cli.Txn(ctx).Then(clientv3.OpPut("x1", "1"), clientv3.OpPut("x2", "2", clientv3.WithLease(0x1234))).Commit()
	expectClientErr("txn/unknown-lease", err, rpctypes.ErrLeaseNotFound)
	_, err = raw.Txn(ctx, &pb.TxnRequest{Success: []*pb.RequestOp{{Request: &pb.RequestOp_RequestPut{RequestPut: &pb.PutRequest{Key: []byte(""), Value: []byte("v")}}}}})
	expectErr("txn/empty-key", err, codes.InvalidArgument, "etcdserver: key is not provided")
	_, err = raw.Txn(ctx, &pb.TxnRequest{Success: []*pb.RequestOp{{Request: &pb.RequestOp_RequestRange{RequestRange: &pb.RangeRequest{Key: []byte("a"), Revision: rev + 1}}}}})
	expectErr("txn/future-rev-range", err, codes.OutOfRange, "etcdserver: mvcc: required revision is a future revision")
	_, err = cli.Txn(ctx).Then(clientv3.OpPut("x1", "1"), clientv3.OpPut("x2", "", clientv3.WithIgnoreValue())).Commit()
	expectClientErr("txn/ignore-value-missing-key", err, rpctypes.ErrKeyNotFound)
	rng("txn/errors-changed-nothing", "", " | count=10 more=false", clientv3.WithPrefix(), clientv3.WithMinModRev(33))
	rng("txn/errors-no-keys", "x1", " | count=0 more=false")
	// exactly 128 ops is allowed, one revision
	t = txn("txn/128-ops", nil, ops129[:128], nil, true, true) // 33
	if t != nil {
		eq("txn/128-ops/responses", 128, len(t.Responses))
	}
	rng("txn/128-ops/count", "many/", " | count=128 more=false", clientv3.WithPrefix(), clientv3.WithCountOnly(), clientv3.WithMinModRev(33))

	// ---------------------------------------------------------------- compaction
	_, err = cli.Get(ctx, "a", clientv3.WithRev(rev+1))
	expectClientErr("compact/future-rev-get-clientv3", err, rpctypes.ErrFutureRev)
	_, err = raw.Range(ctx, &pb.RangeRequest{Key: []byte("a"), Revision: rev + 1})
	expectErr("compact/future-rev-get", err, codes.OutOfRange, "etcdserver: mvcc: required revision is a future revision")
	_, err = cli.Compact(ctx, rev+1)
	expectClientErr("compact/future-rev-clientv3", err, rpctypes.ErrFutureRev)
	_, err = raw.Compact(ctx, &pb.CompactionRequest{Revision: rev + 5})
	expectErr("compact/future-rev", err, codes.OutOfRange, "etcdserver: mvcc: required revision is a future revision")

	c, err := cli.Compact(ctx, 29, clientv3.WithCompactPhysical())
	if noErr("compact/29-physical", err) {
		header("compact/29-physical", c.Header, rev) // no new revision
	}
	_, err = cli.Get(ctx, "a", clientv3.WithRev(28))
	expectClientErr("compact/get-below-clientv3", err, rpctypes.ErrCompacted)
	_, err = raw.Range(ctx, &pb.RangeRequest{Key: []byte("a"), Revision: 28})
	expectErr("compact/get-below", err, codes.OutOfRange, "etcdserver: mvcc: required revision has been compacted")
	_, err = raw.Range(ctx, &pb.RangeRequest{Key: []byte("a"), Revision: 1, CountOnly: true})
	expectErr("compact/count-below", err, codes.OutOfRange, "etcdserver: mvcc: required revision has been compacted")
	_, err = raw.Txn(ctx, &pb.TxnRequest{Success: []*pb.RequestOp{{Request: &pb.RequestOp_RequestRange{RequestRange: &pb.RangeRequest{Key: []byte("a"), Revision: 5}}}}})
	expectErr("compact/txn-range-below", err, codes.OutOfRange, "etcdserver: mvcc: required revision has been compacted")
	rng("compact/get-at", "a", "a=12@2/29/3 | count=1 more=false", clientv3.WithRev(29))
	rng("compact/get-at-deleted-later", "t/1", "t/1=one@29/29/1 | count=1 more=false", clientv3.WithRev(29))
	rng("compact/get-latest", "a", "a=12@2/29/3 | count=1 more=false")
	_, err = cli.Compact(ctx, 29)
	expectClientErr("compact/again-clientv3", err, rpctypes.ErrCompacted)
	_, err = raw.Compact(ctx, &pb.CompactionRequest{Revision: 10})
	expectErr("compact/below", err, codes.OutOfRange, "etcdserver: mvcc: required revision has been compacted")
	c, err = cli.Compact(ctx, 31) // logical only
	if noErr("compact/31", err) {
		header("compact/31", c.Header, rev)
	}
	_, err = cli.Get(ctx, "a", clientv3.WithRev(30))
	expectClientErr("compact/31-get-below", err, rpctypes.ErrCompacted)
	rng("compact/31-get-at", "t/2", "t/2=two@30/30/1 | count=1 more=false", clientv3.WithRev(31))
	put("compact/writes-continue", "after", "compaction") // 34
	eq("compact/final-revision", int64(34), rev)
}
