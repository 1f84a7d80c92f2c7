// watchcheck: etcd's Watch API through the Go clientv3 SDK (and, where the wire
// matters — watch ids, cancel responses, fragments, a reader that stops reading — the
// raw etcdserverpb.WatchClient), checked against the behaviour of etcd 3.4.
//
//	watchcheck reflector -endpoints E   Kubernetes reflector: paged list pinned to one
//	                                    revision, watch from rev+1 (prefix, prev_kv,
//	                                    progress notify) under concurrent writers, every
//	                                    event once and in order, RequestProgress,
//	                                    compaction (ErrCompacted), relist + rewatch
//	watchcheck many -endpoints E        200 watches on one client / one stream, cancel
//	                                    half; raw stream: ids, cancel, progress, errors
//	watchcheck stall -endpoints E       readers that stop reading while writes continue
//	watchcheck progress -endpoints E    server --experimental-watch-progress-notify-interval=1s
//	watchcheck fragment -endpoints E    server --max-request-bytes 65536 (-max-request-bytes)
//	watchcheck compare -endpoints A -endpoints2 B
//	                                    two members of one cluster: the same events
//	watchcheck failover -endpoints F -all E1,E2,E3 -status FILE -stop FILE
//	                                    watcher on F (WithRequireLeader, re-watching from
//	                                    its last revision + 1 when its channel closes)
//	                                    while writers run until FILE -stop exists; every
//	                                    acknowledged write seen exactly once
//
// Prints "ok watchcheck/SUB/NAME" or "not ok watchcheck/SUB/NAME (reason)" per check
// plus "#" diagnostics; exits 1 if any check failed.  Timeouts only bound hangs.
//
// Build (offline, Debian's etcd 3.4 sources):
//
//	GO111MODULE=off GOPATH=/usr/share/gocode go build -o watchcheck .
package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"hash/crc32"
	"math"
	"math/rand"
	"os"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"go.etcd.io/etcd/clientv3"
	"go.etcd.io/etcd/etcdserver/api/v3rpc/rpctypes"
	pb "go.etcd.io/etcd/etcdserver/etcdserverpb"
	"go.etcd.io/etcd/mvcc/mvccpb"
	"go.etcd.io/etcd/pkg/logutil"
	"go.uber.org/zap"
	"google.golang.org/grpc"
)

// ------------------------------------------------------------------ reporting

var (
	sub      string
	failures int
	outMu    sync.Mutex
)

func say(format string, a ...interface{}) {
	outMu.Lock()
	fmt.Printf(format+"\n", a...)
	outMu.Unlock()
}

func note(format string, a ...interface{}) { say("# "+format, a...) }

func ok(name string) { say("ok watchcheck/%s/%s", sub, name) }

func notOK(name, reason string, diag ...string) {
	failures++
	say("not ok watchcheck/%s/%s (%s)", sub, name, reason)
	for _, d := range diag {
		lines := strings.Split(d, "\n")
		if len(lines) > 40 {
			lines = append(lines[:40], fmt.Sprintf("... (%d lines)", len(lines)))
		}
		for _, l := range lines {
			say("#   %s", l)
		}
	}
}

func check(name string, cond bool, reason string, diag ...string) bool {
	if cond {
		ok(name)
	} else {
		notOK(name, reason, diag...)
	}
	return cond
}

// eqLines compares two line lists; on mismatch shows the first difference.
func eqLines(name string, want, got []string) bool {
	if len(want) == len(got) {
		same := true
		for i := range want {
			if want[i] != got[i] {
				same = false
				break
			}
		}
		if same {
			ok(name)
			return true
		}
	}
	i := 0
	for i < len(want) && i < len(got) && want[i] == got[i] {
		i++
	}
	show := func(l []string) string {
		lo, hi := i-2, i+3
		if lo < 0 {
			lo = 0
		}
		if hi > len(l) {
			hi = len(l)
		}
		var b strings.Builder
		for j := lo; j < hi; j++ {
			fmt.Fprintf(&b, "[%d] %s\n", j, l[j])
		}
		return strings.TrimSuffix(b.String(), "\n")
	}
	notOK(name, fmt.Sprintf("differs at line %d (expected %d lines, got %d)", i, len(want), len(got)),
		"expected:\n"+show(want), "actual:\n"+show(got))
	return false
}

func eqStr(name, want, got string) bool {
	return check(name, want == got, "value mismatch", "expected: "+want, "actual:   "+got)
}

// die reports a check that makes the rest of the subcommand meaningless and exits.
func die(name, format string, a ...interface{}) {
	notOK(name, fmt.Sprintf(format, a...))
	os.Exit(1)
}

func must(name string, err error) {
	if err != nil {
		die(name, "unexpected error: %v", err)
	}
}

func done() {
	if failures > 0 {
		note("%d check(s) failed", failures)
		os.Exit(1)
	}
	os.Exit(0)
}

// ------------------------------------------------------------------ clients

func newClient(eps string) *clientv3.Client {
	lcfg := logutil.DefaultZapLoggerConfig
	lcfg.Level = zap.NewAtomicLevelAt(zap.FatalLevel)
	cli, err := clientv3.New(clientv3.Config{
		Endpoints:   strings.Split(eps, ","),
		DialTimeout: 5 * time.Second,
		LogConfig:   &lcfg,
	})
	if err != nil {
		die("connect", "%v", err)
	}
	return cli
}

func tctx(d time.Duration) (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), d)
}

func curRev(cli *clientv3.Client) int64 {
	ctx, cancel := tctx(30 * time.Second)
	defer cancel()
	r, err := cli.Get(ctx, "__watchcheck_rev_probe__")
	must("current-revision", err)
	return r.Header.Revision
}

func put(cli *clientv3.Client, key, val string) int64 {
	ctx, cancel := tctx(30 * time.Second)
	defer cancel()
	r, err := cli.Put(ctx, key, val)
	must("put "+key, err)
	return r.Header.Revision
}

// rawStream opens a raw gRPC Watch stream on the client's connection.
func rawStream(cli *clientv3.Client, ctx context.Context) pb.Watch_WatchClient {
	st, err := pb.NewWatchClient(cli.ActiveConnection()).Watch(ctx, grpc.MaxCallRecvMsgSize(math.MaxInt32))
	must("raw-stream-open", err)
	return st
}

func rawCreate(st pb.Watch_WatchClient, cr *pb.WatchCreateRequest) {
	must("raw-send-create", st.Send(&pb.WatchRequest{RequestUnion: &pb.WatchRequest_CreateRequest{CreateRequest: cr}}))
}

func rawCancel(st pb.Watch_WatchClient, id int64) {
	must("raw-send-cancel", st.Send(&pb.WatchRequest{RequestUnion: &pb.WatchRequest_CancelRequest{
		CancelRequest: &pb.WatchCancelRequest{WatchId: id}}}))
}

func rawProgress(st pb.Watch_WatchClient) {
	must("raw-send-progress", st.Send(&pb.WatchRequest{RequestUnion: &pb.WatchRequest_ProgressRequest{
		ProgressRequest: &pb.WatchProgressRequest{}}}))
}

// rawRecvE receives one response, waiting at most d.
func rawRecvE(st pb.Watch_WatchClient, d time.Duration) (*pb.WatchResponse, error) {
	type res struct {
		r   *pb.WatchResponse
		err error
	}
	ch := make(chan res, 1)
	go func() {
		r, err := st.Recv()
		ch <- res{r, err}
	}()
	select {
	case x := <-ch:
		if x.err != nil {
			return nil, fmt.Errorf("raw Recv failed: %v", x.err)
		}
		return x.r, nil
	case <-time.After(d):
		return nil, fmt.Errorf("no watch response within %v", d)
	}
}

// rawRecv is rawRecvE that ends the subcommand on an error.
func rawRecv(name string, st pb.Watch_WatchClient, d time.Duration) *pb.WatchResponse {
	r, err := rawRecvE(st, d)
	if err != nil {
		die(name, "%v", err)
	}
	return r
}

// ------------------------------------------------------------------ formatting

func shortVal(v []byte) string {
	if len(v) <= 24 {
		return strconv.Quote(string(v))
	}
	return fmt.Sprintf("%q..(%dB crc %08x)", v[:8], len(v), crc32.ChecksumIEEE(v))
}

func kvStr(kv *mvccpb.KeyValue) string {
	if kv == nil {
		return "nil"
	}
	return fmt.Sprintf("%s cr=%d mod=%d ver=%d val=%s lease=%d", kv.Key, kv.CreateRevision,
		kv.ModRevision, kv.Version, shortVal(kv.Value), kv.Lease)
}

// evStr: every field of an event (prev_kv included).
func evStr(e *mvccpb.Event) string {
	return fmt.Sprintf("%s %s prev(%s)", e.Type, kvStr(e.Kv), kvStr(e.PrevKv))
}

// evShort: "REV TYPE key[ value]" — what a writer knows about its own write.
func evShort(e *mvccpb.Event) string {
	if e.Type == mvccpb.DELETE {
		return fmt.Sprintf("%d DELETE %s", e.Kv.ModRevision, e.Kv.Key)
	}
	return fmt.Sprintf("%d PUT %s %s", e.Kv.ModRevision, e.Kv.Key, shortVal(e.Kv.Value))
}

func expPut(rev int64, key, val string) string {
	return fmt.Sprintf("%d PUT %s %s", rev, key, shortVal([]byte(val)))
}
func expDel(rev int64, key string) string { return fmt.Sprintf("%d DELETE %s", rev, key) }

func toPB(evs []*clientv3.Event) []*mvccpb.Event {
	out := make([]*mvccpb.Event, len(evs))
	for i, e := range evs {
		out[i] = (*mvccpb.Event)(e)
	}
	return out
}

// ------------------------------------------------------------------ collector

// collector drains a clientv3 WatchChan in the background.
type collector struct {
	mu       sync.Mutex
	resps    []clientv3.WatchResponse
	events   []*mvccpb.Event
	progress []int64 // header revisions of progress notifications
	errs     []error
	closed   bool
	poke     chan struct{}
}

func collect(wch clientv3.WatchChan) *collector {
	c := &collector{poke: make(chan struct{}, 1)}
	go func() {
		for r := range wch {
			c.mu.Lock()
			c.resps = append(c.resps, r)
			c.events = append(c.events, toPB(r.Events)...)
			if r.IsProgressNotify() {
				c.progress = append(c.progress, r.Header.Revision)
			}
			if err := r.Err(); err != nil {
				c.errs = append(c.errs, err)
			}
			c.mu.Unlock()
			c.wake()
		}
		c.mu.Lock()
		c.closed = true
		c.mu.Unlock()
		c.wake()
	}()
	return c
}

func (c *collector) wake() {
	select {
	case c.poke <- struct{}{}:
	default:
	}
}

// wait polls cond (under the lock) until true or d passes; returns cond's last value.
func (c *collector) wait(d time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(d)
	for {
		c.mu.Lock()
		r := cond()
		c.mu.Unlock()
		if r || time.Now().After(deadline) {
			return r
		}
		select {
		case <-c.poke:
		case <-time.After(50 * time.Millisecond):
		}
	}
}

func (c *collector) lastRev() int64 {
	if len(c.events) == 0 {
		return 0
	}
	return c.events[len(c.events)-1].Kv.ModRevision
}

func (c *collector) shorts() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make([]string, len(c.events))
	for i, e := range c.events {
		out[i] = evShort(e)
	}
	return out
}

// ------------------------------------------------------------------ event-stream checks

// kvModel is a reflector's cache: key -> current KeyValue.
type kvModel map[string]*mvccpb.KeyValue

func kvEqual(a, b *mvccpb.KeyValue) bool {
	if a == nil || b == nil {
		return a == nil && b == nil
	}
	return bytes.Equal(a.Key, b.Key) && bytes.Equal(a.Value, b.Value) && a.CreateRevision == b.CreateRevision &&
		a.ModRevision == b.ModRevision && a.Version == b.Version && a.Lease == b.Lease
}

// applyEvents replays events over the model, checking each event's kv fields and
// prev_kv (when withPrev) against it.  Returns the problems found (at most a few).
func applyEvents(m kvModel, evs []*mvccpb.Event, withPrev bool) []string {
	var bad []string
	add := func(format string, a ...interface{}) {
		if len(bad) < 10 {
			bad = append(bad, fmt.Sprintf(format, a...))
		}
	}
	for _, e := range evs {
		k := string(e.Kv.Key)
		cur := m[k]
		rev := e.Kv.ModRevision
		if withPrev && !kvEqual(e.PrevKv, cur) {
			add("rev %d %s %s: prev_kv %s, cache has %s", rev, e.Type, k, kvStr(e.PrevKv), kvStr(cur))
		}
		if !withPrev && e.PrevKv != nil {
			add("rev %d %s %s: prev_kv present without WithPrevKV", rev, e.Type, k)
		}
		switch e.Type {
		case mvccpb.PUT:
			wantCreate, wantVer := rev, int64(1)
			if cur != nil {
				wantCreate, wantVer = cur.CreateRevision, cur.Version+1
			}
			if e.Kv.CreateRevision != wantCreate || e.Kv.Version != wantVer {
				add("rev %d PUT %s: create %d version %d, expected create %d version %d", rev, k,
					e.Kv.CreateRevision, e.Kv.Version, wantCreate, wantVer)
			}
			c := *e.Kv
			c.Key = append([]byte(nil), e.Kv.Key...)
			m[k] = &c
		case mvccpb.DELETE:
			if cur == nil {
				add("rev %d DELETE %s of a key the cache does not have", rev, k)
			}
			if e.Kv.CreateRevision != 0 || e.Kv.Version != 0 || len(e.Kv.Value) != 0 || e.Kv.Lease != 0 {
				add("rev %d DELETE %s: kv carries more than key+mod_revision: %s", rev, k, kvStr(e.Kv))
			}
			delete(m, k)
		}
	}
	return bad
}

// orderProblems: revisions must never go back; a revision's events must be contiguous.
func orderProblems(evs []*mvccpb.Event) []string {
	var bad []string
	seen := map[int64]bool{}
	var last int64
	for i, e := range evs {
		r := e.Kv.ModRevision
		if r < last {
			bad = append(bad, fmt.Sprintf("event %d: revision %d after %d", i, r, last))
		} else if r > last && seen[r] {
			bad = append(bad, fmt.Sprintf("event %d: revision %d seen again", i, r))
		}
		seen[r] = true
		last = r
		if len(bad) >= 10 {
			break
		}
	}
	return bad
}

func modelLines(m kvModel) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	out := make([]string, len(keys))
	for i, k := range keys {
		out[i] = kvStr(m[k])
	}
	return out
}

func kvsLines(kvs []*mvccpb.KeyValue) []string {
	out := make([]string, len(kvs))
	for i, kv := range kvs {
		out[i] = kvStr(kv)
	}
	return out
}

// ------------------------------------------------------------------ writers

// wop is one acknowledged write: its revision and the events it must produce, in order.
type wop struct {
	rev int64
	evs []string
}

type opLog struct {
	mu  sync.Mutex
	ops []wop
}

func (l *opLog) add(rev int64, evs []string) {
	if len(evs) == 0 {
		return // wrote nothing: no revision, no event
	}
	l.mu.Lock()
	l.ops = append(l.ops, wop{rev, evs})
	l.mu.Unlock()
}

// expected: the acknowledged ops with revision > after, as event lines in revision order.
func (l *opLog) expected(after int64) []string {
	l.mu.Lock()
	ops := append([]wop(nil), l.ops...)
	l.mu.Unlock()
	sort.Slice(ops, func(i, j int) bool { return ops[i].rev < ops[j].rev })
	var out []string
	for _, o := range ops {
		if o.rev > after {
			out = append(out, o.evs...)
		}
	}
	return out
}

func (l *opLog) maxRev() int64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	var m int64
	for _, o := range l.ops {
		if o.rev > m {
			m = o.rev
		}
	}
	return m
}

// revsDistinct: no two acknowledged ops share a revision.
func (l *opLog) revsDistinct() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	seen := map[int64]bool{}
	for _, o := range l.ops {
		if seen[o.rev] {
			return false
		}
		seen[o.rev] = true
	}
	return true
}

// mixedWriter: puts, deletes, delete-ranges and multi-op txns under prefix; shared
// keys prefix+"key-NNNN" (0..shared-1) and own keys prefix+"wID/NNNN".
func mixedWriter(cli *clientv3.Client, prefix string, id, nops, shared int, log *opLog, started *int64) error {
	rng := rand.New(rand.NewSource(int64(id)*7919 + 1))
	sk := func() string { return fmt.Sprintf("%skey-%04d", prefix, rng.Intn(shared)) }
	own := func(i int) string { return fmt.Sprintf("%sw%d/%04d", prefix, id, i) }
	for i := 0; i < nops; i++ {
		atomic.AddInt64(started, 1)
		ctx, cancel := tctx(30 * time.Second)
		val := fmt.Sprintf("w%d-%d", id, i)
		var err error
		switch r := rng.Intn(20); {
		case r < 7:
			k := sk()
			var resp *clientv3.PutResponse
			if resp, err = cli.Put(ctx, k, val); err == nil {
				log.add(resp.Header.Revision, []string{expPut(resp.Header.Revision, k, val)})
			}
		case r < 10:
			k := own(i)
			var resp *clientv3.PutResponse
			if resp, err = cli.Put(ctx, k, val); err == nil {
				log.add(resp.Header.Revision, []string{expPut(resp.Header.Revision, k, val)})
			}
		case r < 13:
			k := sk()
			var resp *clientv3.DeleteResponse
			if resp, err = cli.Delete(ctx, k); err == nil && resp.Deleted == 1 {
				log.add(resp.Header.Revision, []string{expDel(resp.Header.Revision, k)})
			}
		case r < 15:
			// delete a range of this writer's own keys (key order, one revision)
			var resp *clientv3.DeleteResponse
			if resp, err = cli.Delete(ctx, fmt.Sprintf("%sw%d/", prefix, id), clientv3.WithPrefix(), clientv3.WithPrevKV()); err == nil {
				var evs []string
				for _, kv := range resp.PrevKvs {
					evs = append(evs, expDel(resp.Header.Revision, string(kv.Key)))
				}
				if int64(len(resp.PrevKvs)) != resp.Deleted {
					err = fmt.Errorf("delete-range: deleted %d but %d prev kvs", resp.Deleted, len(resp.PrevKvs))
				}
				log.add(resp.Header.Revision, evs)
			}
		default:
			// txn: two puts and a delete on three distinct keys (op order = event order)
			ks := map[string]bool{}
			var keys []string
			for len(keys) < 3 {
				k := sk()
				if rng.Intn(3) == 0 {
					k = own(rng.Intn(i + 1))
				}
				if !ks[k] {
					ks[k] = true
					keys = append(keys, k)
				}
			}
			var resp *clientv3.TxnResponse
			resp, err = cli.Txn(ctx).Then(
				clientv3.OpPut(keys[0], val+"a"),
				clientv3.OpPut(keys[1], val+"b"),
				clientv3.OpDelete(keys[2]),
			).Commit()
			if err == nil {
				rev := resp.Header.Revision
				evs := []string{expPut(rev, keys[0], val+"a"), expPut(rev, keys[1], val+"b")}
				if resp.Responses[2].GetResponseDeleteRange().Deleted == 1 {
					evs = append(evs, expDel(rev, keys[2]))
				}
				log.add(rev, evs)
			}
		}
		cancel()
		if err != nil {
			return fmt.Errorf("writer %d op %d: %v", id, i, err)
		}
	}
	return nil
}

func runWriters(n int, f func(id int) error) error {
	var wg sync.WaitGroup
	errc := make(chan error, n)
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func(id int) {
			defer wg.Done()
			if err := f(id); err != nil {
				errc <- err
			}
		}(i)
	}
	wg.Wait()
	close(errc)
	return <-errc
}

// ------------------------------------------------------------------ reflector

func pagedList(name string, cli *clientv3.Client, prefix string, limit int64) ([]*mvccpb.KeyValue, int64, int) {
	end := clientv3.GetPrefixRangeEnd(prefix)
	key := prefix
	var kvs []*mvccpb.KeyValue
	var rev int64
	pages := 0
	for {
		opts := []clientv3.OpOption{clientv3.WithRange(end), clientv3.WithLimit(limit)}
		if rev != 0 {
			opts = append(opts, clientv3.WithRev(rev))
		}
		ctx, cancel := tctx(30 * time.Second)
		resp, err := cli.Get(ctx, key, opts...)
		cancel()
		must(name+"/page", err)
		if rev == 0 {
			rev = resp.Header.Revision
		} else if resp.Header.Revision < rev {
			notOK(name+"/page-header", fmt.Sprintf("page header revision %d below the pinned %d", resp.Header.Revision, rev))
		}
		pages++
		if int64(len(resp.Kvs)) > limit || resp.More != (resp.Count > int64(len(resp.Kvs))) {
			notOK(name+"/page-more", fmt.Sprintf("page %d: %d kvs, limit %d, count %d, more %v", pages,
				len(resp.Kvs), limit, resp.Count, resp.More))
		}
		kvs = append(kvs, resp.Kvs...)
		if !resp.More || len(resp.Kvs) == 0 {
			break
		}
		key = string(resp.Kvs[len(resp.Kvs)-1].Key) + "\x00"
	}
	return kvs, rev, pages
}

func reflector(args []string) {
	fs := flag.NewFlagSet("reflector", flag.ExitOnError)
	eps := fs.String("endpoints", "127.0.0.1:2379", "endpoints")
	nkeys := fs.Int("keys", 300, "initial keys")
	nwriters := fs.Int("writers", 4, "concurrent writers")
	nops := fs.Int("ops", 120, "ops per writer and phase")
	fs.Parse(args)
	const prefix = "refl/"
	cli := newClient(*eps)
	defer cli.Close()

	// initial objects, and keys on both sides of the prefix
	put(cli, "refl", "outside-before")
	put(cli, "refl0", "outside-after")
	for i := 0; i < *nkeys; i++ {
		put(cli, fmt.Sprintf("%skey-%04d", prefix, i), fmt.Sprintf("init-%d", i))
	}

	// phase-1 writers start before the list, so it is taken under concurrent writes;
	// phase-2 writers start once the watch exists, so events also arrive live
	log := &opLog{}
	var started int64
	werr := make(chan error, 2)
	writers := func(phase int) {
		werr <- runWriters(*nwriters, func(id int) error {
			return mixedWriter(cli, prefix, phase*100+id, *nops, *nkeys+40, log, &started)
		})
	}
	go writers(1)
	for t0 := time.Now(); atomic.LoadInt64(&started) < 20 && time.Since(t0) < 30*time.Second; {
		time.Sleep(5 * time.Millisecond)
	}

	// paged list pinned to the first page's revision
	kvs, R, pages := pagedList("list", cli, prefix, 70)
	note("listed %d keys in %d pages at revision %d", len(kvs), pages, R)
	ctx, cancel := tctx(30 * time.Second)
	full, err := cli.Get(ctx, prefix, clientv3.WithPrefix(), clientv3.WithRev(R))
	cancel()
	must("list-unpaged", err)
	eqLines("paged-list-equals-snapshot", kvsLines(full.Kvs), kvsLines(kvs))
	check("list-pages", pages >= 2, fmt.Sprintf("only %d page(s)", pages))
	// the same list continued with WithFromKey (it runs past the prefix: "refl0")
	var fk []*mvccpb.KeyValue
	key := prefix
	for {
		ctx, cancel := tctx(30 * time.Second)
		resp, err := cli.Get(ctx, key, clientv3.WithFromKey(), clientv3.WithLimit(70), clientv3.WithRev(R))
		cancel()
		must("list-fromkey", err)
		fk = append(fk, resp.Kvs...)
		if !resp.More {
			break
		}
		key = string(resp.Kvs[len(resp.Kvs)-1].Key) + "\x00"
	}
	var fkIn []*mvccpb.KeyValue
	var fkOut []string
	for _, kv := range fk {
		if strings.HasPrefix(string(kv.Key), prefix) {
			fkIn = append(fkIn, kv)
		} else {
			fkOut = append(fkOut, string(kv.Key))
		}
	}
	eqLines("fromkey-list-equals-snapshot", kvsLines(full.Kvs), kvsLines(fkIn))
	eqStr("fromkey-list-beyond-prefix", "refl0", strings.Join(fkOut, ","))

	// watch from R+1 (prefix, prev_kv, progress notify), as a reflector does
	wctx, wcancel := context.WithCancel(clientv3.WithRequireLeader(context.Background()))
	defer wcancel()
	w := collect(cli.Watch(wctx, prefix, clientv3.WithPrefix(), clientv3.WithRev(R+1),
		clientv3.WithPrevKV(), clientv3.WithProgressNotify()))
	go writers(2)
	for i := 0; i < 2; i++ {
		if err := <-werr; err != nil {
			die("writers", "%v", err)
		}
	}
	ok("writers")
	check("acked-revisions-distinct", log.revsDistinct(), "two acknowledged writes share a revision")
	last := log.maxRev()
	exp := log.expected(R)
	note("%d writes acknowledged (list at revision %d), last revision %d, %d events expected after the list", len(log.ops), R, last, len(exp))
	if !w.wait(120*time.Second, func() bool { return w.lastRev() >= last || w.closed }) {
		w.mu.Lock()
		notOK("watch-caught-up", fmt.Sprintf("watch reached revision %d of %d (closed %v, errors %v)",
			w.lastRev(), last, w.closed, w.errs))
		w.mu.Unlock()
	} else {
		ok("watch-caught-up")
	}
	w.mu.Lock()
	evs := append([]*mvccpb.Event(nil), w.events...)
	resps := append([]clientv3.WatchResponse(nil), w.resps...)
	w.mu.Unlock()
	got := make([]string, len(evs))
	for i, e := range evs {
		got[i] = evShort(e)
	}
	eqLines("every-acked-write-once-in-order", exp, got)
	bad := orderProblems(evs)
	check("revision-order", len(bad) == 0, "events out of order", bad...)
	var hbad []string
	for i, r := range resps {
		if len(r.Events) > 0 && r.Header.Revision < r.Events[len(r.Events)-1].Kv.ModRevision {
			hbad = append(hbad, fmt.Sprintf("response %d: header revision %d below its last event %d", i,
				r.Header.Revision, r.Events[len(r.Events)-1].Kv.ModRevision))
		}
		if r.Canceled || r.CompactRevision != 0 || r.Created {
			hbad = append(hbad, fmt.Sprintf("response %d: canceled=%v compact=%d created=%v", i, r.Canceled, r.CompactRevision, r.Created))
		}
	}
	check("response-headers", len(hbad) == 0, "bad responses", hbad...)
	cache := kvModel{}
	for _, kv := range kvs {
		c := *kv
		cache[string(kv.Key)] = &c
	}
	bad = applyEvents(cache, evs, true)
	check("prev-kv-and-versions", len(bad) == 0, "events disagree with the cache", bad...)
	ctx, cancel = tctx(30 * time.Second)
	now, err := cli.Get(ctx, prefix, clientv3.WithPrefix())
	cancel()
	must("get-now", err)
	eqLines("cache-equals-store", kvsLines(now.Kvs), modelLines(cache))

	// RequestProgress on the watch's stream (same ctx metadata): a progress response
	// carrying the current revision (nothing is written now)
	cur := curRev(cli)
	w.mu.Lock()
	np := len(w.progress)
	w.mu.Unlock()
	must("request-progress", cli.RequestProgress(clientv3.WithRequireLeader(context.Background())))
	if w.wait(30*time.Second, func() bool { return len(w.progress) > np }) {
		w.mu.Lock()
		p := w.progress[np]
		w.mu.Unlock()
		check("request-progress-revision", p == cur && p >= w.lastRev(),
			fmt.Sprintf("progress revision %d, current %d, last event %d", p, cur, w.lastRev()))
	} else {
		notOK("request-progress-revision", "no progress notification within 30 s")
	}

	// compact at the current revision; the live watch is unaffected; a watch from an
	// old revision fails with ErrCompacted; from the compact revision it works
	F := put(cli, prefix+"final", "f")
	w.wait(30*time.Second, func() bool { return w.lastRev() >= F })
	ctx, cancel = tctx(30 * time.Second)
	_, err = cli.Compact(ctx, F)
	cancel()
	must("compact", err)
	octx, ocancel := context.WithCancel(clientv3.WithRequireLeader(context.Background()))
	old := collect(cli.Watch(octx, prefix, clientv3.WithPrefix(), clientv3.WithRev(R+1)))
	if old.wait(30*time.Second, func() bool { return old.closed }) {
		old.mu.Lock()
		desc := fmt.Sprintf("%d responses, %d events", len(old.resps), len(old.events))
		good := len(old.resps) == 1 && len(old.events) == 0
		if len(old.resps) > 0 {
			r := old.resps[0]
			desc += fmt.Sprintf("; first: compact=%d canceled=%v err=%v", r.CompactRevision, r.Canceled, r.Err())
			good = good && r.CompactRevision == F && r.Canceled && r.Err() == rpctypes.ErrCompacted
		}
		old.mu.Unlock()
		check("watch-compacted-revision-fails", good, desc,
			fmt.Sprintf("expected one response: CompactRevision=%d Canceled=true Err()=%v, then a closed channel", F, rpctypes.ErrCompacted))
	} else {
		notOK("watch-compacted-revision-fails", "channel not closed within 30 s")
	}
	ocancel()
	// on the wire: "created" first (not canceled), then the watch's own id with
	// compact_revision set, canceled, no cancel_reason, no events, header revision 0
	cctx, ccancel := context.WithCancel(context.Background())
	st := rawStream(cli, cctx)
	rawCreate(st, &pb.WatchCreateRequest{Key: []byte(prefix), RangeEnd: []byte(clientv3.GetPrefixRangeEnd(prefix)), StartRevision: R + 1})
	r1 := rawRecv("raw-compacted-created", st, 30*time.Second)
	r2 := rawRecv("raw-compacted-canceled", st, 30*time.Second)
	eqStr("raw-compacted-responses",
		fmt.Sprintf("created id=0 canceled=false compact=0 | id=0 created=false canceled=true compact=%d reason=\"\" events=0 header-rev=0", F),
		fmt.Sprintf("created id=%d canceled=%v compact=%d | id=%d created=%v canceled=%v compact=%d reason=%q events=%d header-rev=%d",
			r1.WatchId, r1.Canceled, r1.CompactRevision, r2.WatchId, r2.Created, r2.Canceled, r2.CompactRevision, r2.CancelReason,
			len(r2.Events), r2.Header.Revision))
	ccancel()
	actx, acancel := context.WithCancel(context.Background())
	defer acancel()
	at := collect(cli.Watch(actx, prefix, clientv3.WithPrefix(), clientv3.WithRev(F)))
	A := put(cli, prefix+"after", "a")
	at.wait(30*time.Second, func() bool { return at.lastRev() >= A })
	eqLines("watch-from-compact-revision", []string{expPut(F, prefix+"final", "f"), expPut(A, prefix+"after", "a")}, at.shorts())
	w.wait(30*time.Second, func() bool { return w.lastRev() >= A })
	w.mu.Lock()
	tail := []string{}
	for _, e := range w.events[len(evs):] {
		tail = append(tail, evShort(e))
	}
	closed := w.closed
	w.mu.Unlock()
	eqLines("live-watch-survives-compaction", []string{expPut(F, prefix+"final", "f"), expPut(A, prefix+"after", "a")}, tail)
	check("live-watch-open", !closed, "the original watch channel closed")

	// relist and rewatch
	kvs2, L, _ := pagedList("relist", cli, prefix, 70)
	w.mu.Lock()
	bad = applyEvents(cache, w.events[len(evs):], true)
	w.mu.Unlock()
	check("cache-after-compaction", len(bad) == 0, "events disagree with the cache", bad...)
	eqLines("relist-equals-cache", kvsLines(kvs2), modelLines(cache))
	rctx, rcancel := context.WithCancel(clientv3.WithRequireLeader(context.Background()))
	defer rcancel()
	rw := collect(cli.Watch(rctx, prefix, clientv3.WithPrefix(), clientv3.WithRev(L+1), clientv3.WithPrevKV()))
	B := put(cli, prefix+"key-0000", "rewatched")
	ctx, cancel = tctx(30 * time.Second)
	dresp, err := cli.Delete(ctx, prefix+"after")
	cancel()
	must("delete-after", err)
	D := dresp.Header.Revision
	rw.wait(30*time.Second, func() bool { return rw.lastRev() >= D })
	eqLines("rewatch-after-relist", []string{expPut(B, prefix+"key-0000", "rewatched"), expDel(D, prefix+"after")}, rw.shorts())
	rw.mu.Lock()
	bad = applyEvents(cache, rw.events, true)
	rw.mu.Unlock()
	check("rewatch-prev-kv", len(bad) == 0, "events disagree with the cache", bad...)
	done()
}

// ------------------------------------------------------------------ many

type wspec struct {
	name     string
	key, end string // end "" = single key
}

func (s wspec) matches(k string) bool {
	if s.end == "" {
		return k == s.key
	}
	return k >= s.key && k < s.end
}

func many(args []string) {
	fs := flag.NewFlagSet("many", flag.ExitOnError)
	eps := fs.String("endpoints", "127.0.0.1:2379", "endpoints")
	fs.Parse(args)
	cli := newClient(*eps)
	defer cli.Close()
	key := func(i int) string { return fmt.Sprintf("many/k%03d", i) }

	// 150 single keys, 17 overlapping prefixes, 33 overlapping ranges = 200 watches
	var specs []wspec
	for i := 0; i < 150; i++ {
		specs = append(specs, wspec{"key-" + key(i), key(i), ""})
	}
	for _, p := range []string{"0", "1", "00", "01", "02", "03", "04", "05", "06", "07", "08", "09", "10", "11", "12", "13", "14"} {
		pk := "many/k" + p
		specs = append(specs, wspec{"prefix-" + pk, pk, clientv3.GetPrefixRangeEnd(pk)})
	}
	for i := 0; i < 33; i++ {
		specs = append(specs, wspec{fmt.Sprintf("range-%d", i), key(3 * i), key(3*i + 10)})
	}

	R := curRev(cli)
	base := context.Background() // one ctx metadata => one gRPC stream for all
	cols := make([]*collector, len(specs))
	cancels := make([]context.CancelFunc, len(specs))
	for i, s := range specs {
		ctx, cancel := context.WithCancel(base)
		cancels[i] = cancel
		opts := []clientv3.OpOption{clientv3.WithRev(R + 1)}
		if s.end != "" {
			opts = append(opts, clientv3.WithRange(s.end))
		}
		cols[i] = collect(cli.Watch(ctx, s.key, opts...))
	}
	defer func() {
		for _, c := range cancels {
			c()
		}
	}()

	type w struct {
		rev  int64
		typ  string
		k, v string
	}
	var writes []w
	doPut := func(k, v string) { writes = append(writes, w{put(cli, k, v), "PUT", k, v}) }
	for i := 0; i < 150; i++ {
		doPut(key(i), fmt.Sprintf("r1-%d", i))
	}
	for i := 0; i < 150; i += 7 {
		ctx, cancel := tctx(30 * time.Second)
		r, err := cli.Delete(ctx, key(i))
		cancel()
		must("delete", err)
		writes = append(writes, w{r.Header.Revision, "DELETE", key(i), ""})
	}
	ctx, cancel := tctx(30 * time.Second)
	tr, err := cli.Txn(ctx).Then(clientv3.OpPut(key(10), "t"), clientv3.OpPut(key(140), "t"),
		clientv3.OpDelete(key(11)), clientv3.OpPut(key(20), "t")).Commit()
	cancel()
	must("txn", err)
	for _, x := range []w{{0, "PUT", key(10), "t"}, {0, "PUT", key(140), "t"}, {0, "DELETE", key(11), ""}, {0, "PUT", key(20), "t"}} {
		x.rev = tr.Header.Revision
		writes = append(writes, x)
	}
	doPut("many/k", "outside")
	doPut("many/k150", "outside")
	doPut("many/x", "outside")

	expFor := func(s wspec, ws []w) []string {
		var out []string
		for _, x := range ws {
			if s.matches(x.k) {
				if x.typ == "PUT" {
					out = append(out, expPut(x.rev, x.k, x.v))
				} else {
					out = append(out, expDel(x.rev, x.k))
				}
			}
		}
		return out
	}
	verify := func(label string, idx []int, ws []w, prior map[int]int) {
		var bad []string
		for _, i := range idx {
			want := expFor(specs[i], ws)
			c := cols[i]
			n := len(want) + prior[i]
			if !c.wait(60*time.Second, func() bool { return len(c.events) >= n || c.closed }) {
				bad = append(bad, fmt.Sprintf("%s: %d of %d events within 60 s", specs[i].name, len(c.events)-prior[i], len(want)))
				continue
			}
			got := c.shorts()[prior[i]:]
			if strings.Join(got, "\n") != strings.Join(want, "\n") {
				bad = append(bad, fmt.Sprintf("%s: expected %q, got %q", specs[i].name, want, got))
			}
		}
		check(label, len(bad) == 0, fmt.Sprintf("%d watch(es) wrong", len(bad)), bad...)
	}
	all := make([]int, len(specs))
	for i := range all {
		all[i] = i
	}
	note("%d watches on one client, %d writes", len(specs), len(writes))
	verify("each-watch-exactly-its-events", all, writes, map[int]int{})

	// cancel every even watch; their channels close, the odd ones keep going
	var even, odd []int
	for i := range specs {
		if i%2 == 0 {
			even = append(even, i)
			cancels[i]()
		} else {
			odd = append(odd, i)
		}
	}
	var bad []string
	for _, i := range even {
		c := cols[i]
		if !c.wait(30*time.Second, func() bool { return c.closed }) {
			bad = append(bad, specs[i].name+": channel still open 30 s after cancel")
		}
	}
	check("canceled-channels-closed", len(bad) == 0, "open channels", bad...)
	prior := map[int]int{}
	for i, c := range cols {
		c.mu.Lock()
		prior[i] = len(c.events)
		c.mu.Unlock()
	}
	var writes2 []w
	for i := 0; i < 150; i++ {
		writes2 = append(writes2, w{put(cli, key(i), fmt.Sprintf("r2-%d", i)), "PUT", key(i), fmt.Sprintf("r2-%d", i)})
	}
	verify("uncanceled-watches-keep-receiving", odd, writes2, prior)
	bad = nil
	for _, i := range even {
		c := cols[i]
		c.mu.Lock()
		if len(c.events) != prior[i] {
			bad = append(bad, fmt.Sprintf("%s: %d events after its cancel", specs[i].name, len(c.events)-prior[i]))
		}
		c.mu.Unlock()
	}
	check("canceled-watches-get-nothing", len(bad) == 0, "events after cancel", bad...)

	// ---- filters: NOPUT / NODELETE (one more stream: another ctx metadata)
	fctx, fcancel := context.WithCancel(clientv3.WithRequireLeader(context.Background()))
	defer fcancel()
	noPut := collect(cli.Watch(fctx, "many/f", clientv3.WithPrefix(), clientv3.WithFilterPut()))
	noDel := collect(cli.Watch(fctx, "many/f", clientv3.WithPrefix(), clientv3.WithFilterDelete()))
	p1 := put(cli, "many/f1", "a")
	ctx, cancel = tctx(30 * time.Second)
	fr, err := cli.Txn(ctx).Then(clientv3.OpPut("many/f2", "b"), clientv3.OpDelete("many/f1")).Commit()
	cancel()
	must("filter-txn", err)
	ctx, cancel = tctx(30 * time.Second)
	fd, err := cli.Delete(ctx, "many/f2")
	cancel()
	must("filter-delete", err)
	p3 := put(cli, "many/f3", "c")
	T, D := fr.Header.Revision, fd.Header.Revision
	noPut.wait(30*time.Second, func() bool { return noPut.lastRev() >= D })
	noDel.wait(30*time.Second, func() bool { return noDel.lastRev() >= p3 })
	eqLines("filter-noput", []string{expDel(T, "many/f1"), expDel(D, "many/f2")}, noPut.shorts())
	eqLines("filter-nodelete", []string{expPut(p1, "many/f1", "a"), expPut(T, "many/f2", "b"), expPut(p3, "many/f3", "c")}, noDel.shorts())
	noPut.mu.Lock()
	np := len(noPut.resps)
	noPut.mu.Unlock()
	check("filter-noput-no-empty-responses", np == 2, fmt.Sprintf("%d responses for 2 revisions with deletes", np))

	// ---- raw stream: watch ids, cancel, progress, bad range
	rctx, rcancel := context.WithCancel(context.Background())
	defer rcancel()
	st := rawStream(cli, rctx)
	cur := curRev(cli)
	var ids []int64
	for i, cr := range []*pb.WatchCreateRequest{
		{Key: []byte("raw/a")},
		{Key: []byte("raw/b")},
		{Key: []byte("raw/"), RangeEnd: []byte("raw0")},
	} {
		rawCreate(st, cr)
		r := rawRecv("raw-created", st, 30*time.Second)
		eqStr(fmt.Sprintf("raw-created-%d", i),
			fmt.Sprintf("created=true canceled=false id=%d rev=%d events=0 reason=\"\" compact=0 fragment=false", i, cur),
			fmt.Sprintf("created=%v canceled=%v id=%d rev=%d events=%d reason=%q compact=%d fragment=%v", r.Created, r.Canceled,
				r.WatchId, r.Header.Revision, len(r.Events), r.CancelReason, r.CompactRevision, r.Fragment))
		ids = append(ids, r.WatchId)
	}
	a1 := put(cli, "raw/a", "1")
	got := map[int64]string{}
	for i := 0; i < 2; i++ {
		r := rawRecv("raw-event", st, 30*time.Second)
		got[r.WatchId] = fmt.Sprintf("rev=%d %s", r.Header.Revision, strings.Join(evShortsPB(r.Events), ","))
	}
	eqStr("raw-one-response-per-watch", fmt.Sprintf("map[0:rev=%d %s 2:rev=%d %s]", a1, expPut(a1, "raw/a", "1"), a1, expPut(a1, "raw/a", "1")),
		fmt.Sprint(got))
	rawCancel(st, ids[0])
	r := rawRecv("raw-cancel", st, 30*time.Second)
	eqStr("raw-cancel-response", fmt.Sprintf("created=false canceled=true id=0 rev=%d events=0 reason=\"\"", a1),
		fmt.Sprintf("created=%v canceled=%v id=%d rev=%d events=%d reason=%q", r.Created, r.Canceled, r.WatchId,
			r.Header.Revision, len(r.Events), r.CancelReason))
	a2 := put(cli, "raw/a", "2")
	b1 := put(cli, "raw/b", "1")
	var seq []string
	for len(seq) < 3 {
		r := rawRecv("raw-after-cancel", st, 30*time.Second)
		seq = append(seq, fmt.Sprintf("id=%d rev=%d %s", r.WatchId, r.Header.Revision, strings.Join(evShortsPB(r.Events), ",")))
	}
	// the two responses for b1 may come in either order; a2 (watch 2) comes first
	want1 := []string{
		fmt.Sprintf("id=2 rev=%d %s", a2, expPut(a2, "raw/a", "2")),
		fmt.Sprintf("id=1 rev=%d %s", b1, expPut(b1, "raw/b", "1")),
		fmt.Sprintf("id=2 rev=%d %s", b1, expPut(b1, "raw/b", "1")),
	}
	if len(seq) == 3 && seq[1] > seq[2] {
		seq[1], seq[2] = seq[2], seq[1]
	}
	eqLines("raw-canceled-watch-gets-nothing", want1, seq)
	rawCancel(st, 99) // unknown id: no response at all
	rawProgress(st)
	r = rawRecv("raw-progress", st, 30*time.Second)
	eqStr("raw-unknown-cancel-ignored-then-progress",
		fmt.Sprintf("id=-1 rev=%d events=0 created=false canceled=false", b1),
		fmt.Sprintf("id=%d rev=%d events=%d created=%v canceled=%v", r.WatchId, r.Header.Revision, len(r.Events), r.Created, r.Canceled))
	rawCreate(st, &pb.WatchCreateRequest{Key: []byte("raw/z"), RangeEnd: []byte("raw/a")})
	r = rawRecv("raw-empty-range", st, 30*time.Second)
	eqStr("raw-empty-range", fmt.Sprintf("created=true canceled=true id=-1 rev=%d reason=%q", b1, "mvcc: watcher range is empty"),
		fmt.Sprintf("created=%v canceled=%v id=%d rev=%d reason=%q", r.Created, r.Canceled, r.WatchId, r.Header.Revision, r.CancelReason))
	// the stream is still usable: the next created watch gets the next id
	rawCreate(st, &pb.WatchCreateRequest{Key: []byte("raw/c")})
	r = rawRecv("raw-next-id", st, 30*time.Second)
	eqStr("raw-next-id-after-failed-create", "created=true id=3", fmt.Sprintf("created=%v id=%d", r.Created, r.WatchId))
	st.CloseSend()
	done()
}

func evShortsPB(evs []*mvccpb.Event) []string {
	out := make([]string, len(evs))
	for i, e := range evs {
		out[i] = evShort(e)
	}
	return out
}

// ------------------------------------------------------------------ stall

func stall(args []string) {
	fs := flag.NewFlagSet("stall", flag.ExitOnError)
	eps := fs.String("endpoints", "127.0.0.1:2379", "endpoints")
	n := fs.Int("n", 20000, "puts")
	size := fs.Int("size", 1024, "value bytes")
	nw := fs.Int("writers", 16, "concurrent writers")
	fs.Parse(args)
	const prefix = "stall/"
	cliW := newClient(*eps)
	cliLive := newClient(*eps)
	cliStall := newClient(*eps)
	cliRaw := newClient(*eps)
	defer cliW.Close()
	defer cliLive.Close()
	defer cliStall.Close()
	defer cliRaw.Close()

	R := curRev(cliW)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	// stalled clientv3 watch: its channel is not read until the writes are done
	stalled := cliStall.Watch(ctx, prefix, clientv3.WithPrefix(), clientv3.WithRev(R+1))
	// stalled raw stream on its own connection: after "created", Recv is not called,
	// so the server's sends block once the gRPC flow-control window is full
	st := rawStream(cliRaw, ctx)
	rawCreate(st, &pb.WatchCreateRequest{Key: []byte(prefix), RangeEnd: []byte(clientv3.GetPrefixRangeEnd(prefix)), StartRevision: R + 1})
	cr := rawRecv("raw-created", st, 30*time.Second)
	check("raw-created", cr.Created && !cr.Canceled, fmt.Sprintf("created=%v canceled=%v", cr.Created, cr.Canceled))
	live := collect(cliLive.Watch(ctx, prefix, clientv3.WithPrefix(), clientv3.WithRev(R+1)))

	key := func(i int) string { return fmt.Sprintf("%s%05d", prefix, i) }
	val := func(i int) string {
		s := fmt.Sprintf("%05d-", i)
		return s + strings.Repeat(string(rune('a'+i%26)), *size-len(s))
	}
	acks := make([]int64, *n)
	var next int64 = -1
	err := runWriters(*nw, func(id int) error {
		for {
			i := int(atomic.AddInt64(&next, 1))
			if i >= *n {
				return nil
			}
			c, cc := tctx(60 * time.Second)
			resp, err := cliW.Put(c, key(i), val(i))
			cc()
			if err != nil {
				return fmt.Errorf("put %d: %v", i, err)
			}
			acks[i] = resp.Header.Revision
		}
	})
	if err != nil {
		die("writes", "%v", err)
	}
	ok("writes")
	byRev := make(map[int64]int, *n)
	var last int64
	for i, r := range acks {
		byRev[r] = i
		if r > last {
			last = r
		}
	}
	check("acked-revisions-distinct", len(byRev) == *n, fmt.Sprintf("%d distinct revisions for %d puts", len(byRev), *n))
	// expected stream: every put in revision order
	order := make([]int, 0, *n)
	for r := R + 1; r <= last; r++ {
		if i, ok := byRev[r]; ok {
			order = append(order, i)
		}
	}
	verifyEvs := func(name string, evs []*mvccpb.Event) {
		var bad []string
		if len(evs) != len(order) {
			bad = append(bad, fmt.Sprintf("%d events, expected %d", len(evs), len(order)))
		}
		for j := 0; j < len(evs) && j < len(order) && len(bad) < 5; j++ {
			i := order[j]
			e := evs[j]
			if e.Type != mvccpb.PUT || string(e.Kv.Key) != key(i) || e.Kv.ModRevision != acks[i] || string(e.Kv.Value) != val(i) {
				bad = append(bad, fmt.Sprintf("event %d: %s, expected %s", j, evShort(e), expPut(acks[i], key(i), val(i))))
			}
		}
		check(name, len(bad) == 0, "wrong event stream", bad...)
	}

	// the live watcher sees everything while the other two are still stalled
	if !live.wait(180*time.Second, func() bool { return live.lastRev() >= last || live.closed }) {
		notOK("live-watcher-caught-up", fmt.Sprintf("live watcher at revision %d of %d", live.lastRev(), last))
	} else {
		ok("live-watcher-caught-up")
	}
	live.mu.Lock()
	verifyEvs("live-watcher-every-event-once-in-order", live.events)
	live.mu.Unlock()

	// resume the stalled clientv3 reader
	var sev []*mvccpb.Event
	var serr error
	deadline := time.After(180 * time.Second)
drain:
	for len(sev) < len(order) {
		select {
		case r, open := <-stalled:
			if !open {
				serr = errors.New("channel closed")
				break drain
			}
			if r.Err() != nil {
				serr = r.Err()
				break drain
			}
			sev = append(sev, toPB(r.Events)...)
		case <-deadline:
			serr = fmt.Errorf("timeout with %d of %d events", len(sev), len(order))
			break drain
		}
	}
	check("stalled-clientv3-reader-resumes", serr == nil, fmt.Sprint(serr))
	verifyEvs("stalled-clientv3-reader-every-event-once-in-order", sev)

	// resume the stalled raw reader
	var rev []*mvccpb.Event
	var rbad []string
	nresp := 0
	for len(rev) < len(order) && len(rbad) == 0 {
		r := rawRecv("raw-resume", st, 180*time.Second)
		nresp++
		if r.WatchId != cr.WatchId || r.Canceled || r.Created || r.Fragment || r.CompactRevision != 0 {
			rbad = append(rbad, fmt.Sprintf("response %d: id=%d canceled=%v created=%v fragment=%v compact=%d reason=%q",
				nresp, r.WatchId, r.Canceled, r.Created, r.Fragment, r.CompactRevision, r.CancelReason))
		}
		if len(r.Events) > 0 && r.Header.Revision < r.Events[len(r.Events)-1].Kv.ModRevision {
			rbad = append(rbad, fmt.Sprintf("response %d: header revision %d below its last event %d", nresp,
				r.Header.Revision, r.Events[len(r.Events)-1].Kv.ModRevision))
		}
		rev = append(rev, r.Events...)
	}
	check("stalled-raw-reader-responses", len(rbad) == 0, "bad response", rbad...)
	verifyEvs("stalled-raw-reader-every-event-once-in-order", rev)
	note("stalled raw reader got %d events in %d responses", len(rev), nresp)
	done()
}

// ------------------------------------------------------------------ progress

func progress(args []string) {
	fs := flag.NewFlagSet("progress", flag.ExitOnError)
	eps := fs.String("endpoints", "127.0.0.1:2379", "endpoints")
	fs.Parse(args)
	cli := newClient(*eps)
	defer cli.Close()
	put(cli, "prog/other", "1")
	P := put(cli, "prog/other", "2")

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	pw := collect(cli.Watch(ctx, "prog/idle", clientv3.WithProgressNotify()))
	quiet := collect(cli.Watch(ctx, "prog/idle2")) // same stream, no progress_notify
	if !pw.wait(60*time.Second, func() bool { return len(pw.resps) > 0 }) {
		die("first-notification", "no response within 60 s on an idle watch with progress_notify")
	}
	pw.mu.Lock()
	r := pw.resps[0]
	pw.mu.Unlock()
	eqStr("first-notification", fmt.Sprintf("progress=true rev=%d events=0", P),
		fmt.Sprintf("progress=%v rev=%d events=%d", r.IsProgressNotify(), r.Header.Revision, len(r.Events)))

	// a write elsewhere: a later notification carries the new revision
	P2 := put(cli, "prog/other", "3")
	if !pw.wait(60*time.Second, func() bool {
		return len(pw.progress) > 0 && pw.progress[len(pw.progress)-1] >= P2
	}) {
		notOK("notification-after-write", fmt.Sprintf("no progress notification with revision %d within 60 s", P2))
	} else {
		pw.mu.Lock()
		var bad []string
		for i, p := range pw.progress {
			if p != P && p != P2 {
				bad = append(bad, fmt.Sprintf("notification %d: revision %d (expected %d or %d)", i, p, P, P2))
			}
			if i > 0 && p < pw.progress[i-1] {
				bad = append(bad, fmt.Sprintf("notification %d: revision %d after %d", i, p, pw.progress[i-1]))
			}
		}
		if len(pw.events) != 0 || len(pw.progress) != len(pw.resps) {
			bad = append(bad, fmt.Sprintf("%d events, %d of %d responses are progress notifications",
				len(pw.events), len(pw.progress), len(pw.resps)))
		}
		pw.mu.Unlock()
		check("notification-after-write", len(bad) == 0, "bad notifications", bad...)
	}
	quiet.mu.Lock()
	nq := len(quiet.resps)
	quiet.mu.Unlock()
	check("no-notification-without-progress-notify", nq == 0, fmt.Sprintf("%d responses on the watch without progress_notify", nq))

	// raw: the periodic notification carries the watch's own id (RequestProgress's
	// carries -1), an empty event list and the current revision.  On its own
	// connection; a connection lost under it (gRPC Unavailable, not a watch answer)
	// is retried once on a new connection, with a note.
	for attempt := 1; ; attempt++ {
		rcli := newClient(*eps)
		rctx, rcancel := context.WithCancel(context.Background())
		st := rawStream(rcli, rctx)
		rawCreate(st, &pb.WatchCreateRequest{Key: []byte("prog/raw-a")})
		c0, err := rawRecvE(st, 30*time.Second)
		var c1, r1 *pb.WatchResponse
		if err == nil {
			rawCreate(st, &pb.WatchCreateRequest{Key: []byte("prog/raw-b"), ProgressNotify: true})
			c1, err = rawRecvE(st, 30*time.Second)
		}
		if err == nil {
			r1, err = rawRecvE(st, 60*time.Second)
		}
		rcancel()
		rcli.Close()
		if err != nil {
			if attempt == 1 && strings.Contains(err.Error(), "code = Unavailable") {
				note("raw stream lost (%v); retrying once on a new connection", err)
				continue
			}
			die("raw-notification", "%v", err)
		}
		eqStr("raw-created-ids", "0 1", fmt.Sprintf("%d %d", c0.WatchId, c1.WatchId))
		eqStr("raw-notification", fmt.Sprintf("id=1 rev=%d events=0 created=false canceled=false compact=0", P2),
			fmt.Sprintf("id=%d rev=%d events=%d created=%v canceled=%v compact=%d", r1.WatchId, r1.Header.Revision,
				len(r1.Events), r1.Created, r1.Canceled, r1.CompactRevision))
		break
	}
	done()
}

// ------------------------------------------------------------------ fragment

// fragment: etcd splits a watch response of a watch created with fragment=true when
// the response's encoded size is >= max-request-bytes + 512 KiB (v3rpc's
// grpcOverheadBytes is 512*1024, not 512) and it holds at least 2 events: greedy
// messages each under that size (a single event may be larger), Fragment=true on
// all but the last, the same header and watch id on all.  Without fragment=true the
// response goes out whole.  Workload: a Txn of 128 puts sized to ~95% of
// max-request-bytes overwriting existing keys, then one DeleteRange of every key
// (1000 keys of 1000 bytes + the 128).  Which of them must be fragmented follows from
// the size of the whole response, computed from the events received.
func fragment(args []string) {
	fs := flag.NewFlagSet("fragment", flag.ExitOnError)
	eps := fs.String("endpoints", "127.0.0.1:2379", "endpoints")
	mrb := fs.Int("max-request-bytes", 65536, "the server's --max-request-bytes")
	fs.Parse(args)
	sub = fmt.Sprintf("fragment-%d", *mrb) // two runs, distinct check names
	limit := *mrb + 512*1024
	cli := newClient(*eps)
	defer cli.Close()
	const nk, nt = 1000, 128
	kkey := func(i int) string { return fmt.Sprintf("frag/k%04d", i) }
	tkey := func(i int) string { return fmt.Sprintf("frag/t%03d", i) }
	tsize := *mrb*95/100/nt - 24
	val := func(tag string, i, size int) string {
		s := fmt.Sprintf("%s-%04d-", tag, i)
		return s + strings.Repeat("v", size-len(s))
	}
	// setup in txns that each stay under max-request-bytes
	batch := func(ops []clientv3.Op) {
		ctx, cancel := tctx(30 * time.Second)
		_, err := cli.Txn(ctx).Then(ops...).Commit()
		cancel()
		must("setup-txn", err)
	}
	var ops []clientv3.Op
	size := 0
	flush := func() {
		if len(ops) > 0 {
			batch(ops)
		}
		ops, size = nil, 0
	}
	add := func(k, v string) {
		if len(ops) == nt || size+len(k)+len(v)+32 > *mrb*8/10 {
			flush()
		}
		ops = append(ops, clientv3.OpPut(k, v))
		size += len(k) + len(v) + 32
	}
	for i := 0; i < nk; i++ {
		add(kkey(i), val("init", i, 1000))
	}
	for i := 0; i < nt; i++ {
		add(tkey(i), val("init", i, tsize))
	}
	flush()
	ctx, cancel := tctx(30 * time.Second)
	g, err := cli.Get(ctx, "frag/", clientv3.WithPrefix())
	cancel()
	must("get", err)
	model := kvModel{}
	for _, kv := range g.Kvs {
		c := *kv
		model[string(kv.Key)] = &c
	}
	R := g.Header.Revision

	wctx, wcancel := context.WithCancel(context.Background())
	defer wcancel()
	opts := []clientv3.OpOption{clientv3.WithPrefix(), clientv3.WithRev(R + 1)}
	wFragPrev := collect(cli.Watch(wctx, "frag/", append(opts, clientv3.WithFragment(), clientv3.WithPrevKV())...))
	wPrev := collect(cli.Watch(wctx, "frag/", append(opts, clientv3.WithPrevKV())...))
	wFrag := collect(cli.Watch(wctx, "frag/", append(opts, clientv3.WithFragment())...))
	type rawW struct {
		name       string
		st         pb.Watch_WatchClient
		id         int64
		frag, prev bool
	}
	var raws []*rawW
	for _, x := range []rawW{{name: "raw-fragment-prev-kv", frag: true, prev: true},
		{name: "raw-fragment-no-prev-kv", frag: true}, {name: "raw-no-fragment-prev-kv", prev: true}} {
		x := x
		x.st = rawStream(cli, wctx)
		rawCreate(x.st, &pb.WatchCreateRequest{Key: []byte("frag/"), RangeEnd: []byte("frag0"), StartRevision: R + 1,
			PrevKv: x.prev, Fragment: x.frag})
		c := rawRecv(x.name+"/created", x.st, 30*time.Second)
		x.id = c.WatchId
		raws = append(raws, &x)
	}

	ops = nil
	reqBytes := 0
	for i := 0; i < nt; i++ {
		v := val("txn", i, tsize)
		ops = append(ops, clientv3.OpPut(tkey(i), v))
		reqBytes += len(tkey(i)) + len(v)
	}
	ctx, cancel = tctx(30 * time.Second)
	tr, err := cli.Txn(ctx).Then(ops...).Commit()
	cancel()
	must(fmt.Sprintf("txn-%d-puts", nt), err)
	T := tr.Header.Revision
	ctx, cancel = tctx(30 * time.Second)
	dr, err := cli.Delete(ctx, "frag/", clientv3.WithPrefix())
	cancel()
	must("delete-range", err)
	D := dr.Header.Revision
	check("one-revision-each", D == T+1 && dr.Deleted == nk+nt, fmt.Sprintf("txn %d, delete %d deleted %d", T, D, dr.Deleted))
	note("max-request-bytes %d: fragment limit %d bytes; txn of %d puts carries %d key+value bytes", *mrb, limit, nt, reqBytes)

	var exp []string
	for i := 0; i < nt; i++ {
		exp = append(exp, expPut(T, tkey(i), val("txn", i, tsize)))
	}
	for i := 0; i < nk; i++ {
		exp = append(exp, expDel(D, kkey(i)))
	}
	for i := 0; i < nt; i++ {
		exp = append(exp, expDel(D, tkey(i)))
	}
	for _, x := range []struct {
		name string
		c    *collector
		prev bool
	}{{"fragment-prev-kv", wFragPrev, true}, {"no-fragment-prev-kv", wPrev, true}, {"fragment-no-prev-kv", wFrag, false}} {
		c := x.c
		if !c.wait(60*time.Second, func() bool { return c.lastRev() >= D || c.closed }) {
			notOK(x.name+"/all-events", fmt.Sprintf("reached revision %d of %d", c.lastRev(), D))
			continue
		}
		eqLines(x.name+"/all-events", exp, c.shorts())
		c.mu.Lock()
		m := kvModel{}
		for k, v := range model {
			m[k] = v
		}
		bad := applyEvents(m, c.events, x.prev)
		var shape []string
		for _, r := range c.resps {
			revs := map[int64]bool{}
			for _, e := range r.Events {
				revs[e.Kv.ModRevision] = true
			}
			shape = append(shape, fmt.Sprintf("rev=%d events=%d revisions=%d", r.Header.Revision, len(r.Events), len(revs)))
		}
		c.mu.Unlock()
		check(x.name+"/prev-kv", len(bad) == 0, "events disagree with the store", bad...)
		// clientv3 hands over one (reassembled) response per revision
		eqLines(x.name+"/one-response-per-revision", []string{
			fmt.Sprintf("rev=%d events=%d revisions=1", T, nt), fmt.Sprintf("rev=%d events=%d revisions=1", D, nk+nt)}, shape)
	}

	for _, x := range raws {
		for j, rv := range []int64{T, D} {
			var evs []*mvccpb.Event
			var msgs []*pb.WatchResponse
			var bad []string
			for {
				r := rawRecv(x.name, x.st, 60*time.Second)
				msgs = append(msgs, r)
				if r.WatchId != x.id || r.Header.Revision != rv || r.Canceled || r.Created {
					bad = append(bad, fmt.Sprintf("message %d: id %d rev %d canceled %v created %v (expected id %d rev %d)",
						len(msgs), r.WatchId, r.Header.Revision, r.Canceled, r.Created, x.id, rv))
				}
				evs = append(evs, r.Events...)
				if !r.Fragment || len(bad) > 0 || len(evs) >= len(exp) {
					break
				}
			}
			name := fmt.Sprintf("%s/rev-%d", x.name, j)
			good := true
			for _, e := range evs {
				good = good && e.Kv.ModRevision == rv && (e.PrevKv != nil) == x.prev
			}
			want := nt
			if j == 1 {
				want = nk + nt
			}
			check(name+"-events", good && len(evs) == want, fmt.Sprintf("%d events (expected %d at revision %d, prev_kv %v)", len(evs), want, rv, x.prev))
			whole := pb.WatchResponse{Header: msgs[0].Header, WatchId: msgs[0].WatchId, Events: evs}
			wsz := whole.Size()
			mustSplit := x.frag && wsz >= limit && len(evs) >= 2
			var shape []string
			for _, m := range msgs {
				shape = append(shape, fmt.Sprintf("fragment=%v events=%d bytes=%d", m.Fragment, len(m.Events), m.Size()))
			}
			if !mustSplit {
				check(name+"-one-message", len(msgs) == 1 && !msgs[0].Fragment && len(bad) == 0,
					fmt.Sprintf("whole response %d bytes (limit %d, fragment %v) must be one message", wsz, limit, x.frag),
					append(bad, shape...)...)
				continue
			}
			for i, m := range msgs {
				last := i == len(msgs)-1
				if m.Fragment == last {
					bad = append(bad, fmt.Sprintf("message %d of %d: fragment=%v", i+1, len(msgs), m.Fragment))
				}
				if len(m.Events) == 0 || (len(m.Events) > 1 && m.Size() >= limit) {
					bad = append(bad, fmt.Sprintf("message %d: %d events, %d bytes (limit %d)", i+1, len(m.Events), m.Size(), limit))
				}
			}
			check(name+"-fragmented", len(msgs) >= 2 && len(bad) == 0,
				fmt.Sprintf("whole response %d bytes >= limit %d: expected fragments", wsz, limit), append(bad, shape...)...)
			// etcd fills each fragment greedily: one more event would reach the limit
			var gbad []string
			idx := 0
			for i, m := range msgs {
				idx += len(m.Events)
				if i < len(msgs)-1 && idx < len(evs) {
					more := *m
					more.Events = append(append([]*mvccpb.Event(nil), m.Events...), evs[idx])
					if more.Size() < limit {
						gbad = append(gbad, fmt.Sprintf("message %d: %d bytes, the next event would still fit (%d)", i+1, m.Size(), more.Size()))
					}
				}
			}
			check(name+"-greedy-fragments", len(gbad) == 0, "fragment not filled", append(gbad, shape...)...)
			note("%s: %d bytes in %d fragments %v", name, wsz, len(msgs), shape)
		}
	}
	done()
}

// ------------------------------------------------------------------ compare (cluster)

func compare(args []string) {
	fs := flag.NewFlagSet("compare", flag.ExitOnError)
	epA := fs.String("endpoints", "", "member A")
	epB := fs.String("endpoints2", "", "member B")
	nops := fs.Int("ops", 150, "ops per writer")
	fs.Parse(args)
	cliA := newClient(*epA)
	cliB := newClient(*epB)
	defer cliA.Close()
	defer cliB.Close()
	ctx, cancel := tctx(30 * time.Second)
	sa, err := cliA.Status(ctx, *epA)
	must("status-a", err)
	sb, err := cliB.Status(ctx, *epB)
	must("status-b", err)
	cancel()
	const prefix = "cmp/"
	for i := 0; i < 40; i++ {
		put(cliA, fmt.Sprintf("%skey-%04d", prefix, i), "init")
	}
	R := curRev(cliA)
	wctx, wcancel := context.WithCancel(clientv3.WithRequireLeader(context.Background()))
	defer wcancel()
	wa := collect(cliA.Watch(wctx, prefix, clientv3.WithPrefix(), clientv3.WithRev(R+1), clientv3.WithPrevKV()))
	wb := collect(cliB.Watch(wctx, prefix, clientv3.WithPrefix(), clientv3.WithRev(R+1), clientv3.WithPrevKV()))
	log := &opLog{}
	var started int64
	err = runWriters(4, func(id int) error {
		c := cliA
		if id%2 == 1 {
			c = cliB
		}
		return mixedWriter(c, prefix, id, *nops, 60, log, &started)
	})
	if err != nil {
		die("writers", "%v", err)
	}
	ok("writers")
	last := log.maxRev()
	exp := log.expected(R)
	for _, x := range []struct {
		name string
		c    *collector
		mid  uint64
	}{{"a", wa, sa.Header.MemberId}, {"b", wb, sb.Header.MemberId}} {
		c := x.c
		if !c.wait(60*time.Second, func() bool { return c.lastRev() >= last || c.closed }) {
			notOK("watch-"+x.name+"-caught-up", fmt.Sprintf("at revision %d of %d", c.lastRev(), last))
			continue
		}
		eqLines("watch-"+x.name+"-every-acked-write-once-in-order", exp, c.shorts())
		c.mu.Lock()
		var bad []string
		for i, r := range c.resps {
			if r.Header.MemberId != x.mid || r.Header.ClusterId != sa.Header.ClusterId {
				bad = append(bad, fmt.Sprintf("response %d: member %x cluster %x (expected %x %x)", i,
					r.Header.MemberId, r.Header.ClusterId, x.mid, sa.Header.ClusterId))
				break
			}
		}
		c.mu.Unlock()
		check("watch-"+x.name+"-header-ids", len(bad) == 0, "wrong header", bad...)
	}
	check("members-differ", sa.Header.MemberId != sb.Header.MemberId, "both endpoints are the same member")
	full := func(c *collector) []string {
		c.mu.Lock()
		defer c.mu.Unlock()
		out := make([]string, len(c.events))
		for i, e := range c.events {
			out[i] = evStr(e)
		}
		return out
	}
	eqLines("same-events-on-both-members", full(wa), full(wb))
	done()
}

// ------------------------------------------------------------------ failover (cluster)

func failover(args []string) {
	fs := flag.NewFlagSet("failover", flag.ExitOnError)
	ep := fs.String("endpoints", "", "the member the watcher talks to")
	all := fs.String("all", "", "all members (writers)")
	statusPath := fs.String("status", "", "status file (appended)")
	stopPath := fs.String("stop", "", "writers stop once this file exists")
	nw := fs.Int("writers", 4, "writers")
	fs.Parse(args)
	sf, err := os.OpenFile(*statusPath, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0644)
	must("status-file", err)
	var sfMu sync.Mutex
	status := func(format string, a ...interface{}) {
		sfMu.Lock()
		fmt.Fprintf(sf, format+"\n", a...)
		sf.Sync()
		sfMu.Unlock()
	}
	const prefix = "fo/"
	wcli := newClient(*ep)
	cli := newClient(*all)
	defer wcli.Close()
	defer cli.Close()
	R := curRev(wcli)

	// watcher: WithRequireLeader; when the channel closes, re-watch from last + 1
	var wmu sync.Mutex
	var evs []*mvccpb.Event
	var closes []string
	next := R + 1
	stopWatch := make(chan struct{})
	watchDone := make(chan struct{})
	go func() {
		defer close(watchDone)
		for {
			ctx, cancel := context.WithCancel(clientv3.WithRequireLeader(context.Background()))
			wmu.Lock()
			from := next
			wmu.Unlock()
			wch := wcli.Watch(ctx, prefix, clientv3.WithPrefix(), clientv3.WithRev(from))
			var cerr error
		recv:
			for {
				select {
				case r, open := <-wch:
					if !open {
						break recv
					}
					if err := r.Err(); err != nil {
						cerr = err
						continue
					}
					wmu.Lock()
					for _, e := range r.Events {
						evs = append(evs, (*mvccpb.Event)(e))
						next = e.Kv.ModRevision + 1
					}
					wmu.Unlock()
				case <-stopWatch:
					cancel()
					return
				}
			}
			cancel()
			wmu.Lock()
			closes = append(closes, fmt.Sprint(cerr))
			n := next
			wmu.Unlock()
			status("closed from=%d next=%d err=%v", from, n, cerr)
			select {
			case <-stopWatch:
				return
			case <-time.After(200 * time.Millisecond):
			}
		}
	}()

	// writers: distinct keys, until the stop file appears
	var amu sync.Mutex
	acked := map[string]int64{}
	doubt := map[string]bool{}
	var nacks, nfail int64
	stopped := func() bool {
		_, err := os.Stat(*stopPath)
		return err == nil
	}
	runWriters(*nw, func(id int) error {
		for i := 0; !stopped(); i++ {
			k := fmt.Sprintf("%s%d-%06d", prefix, id, i)
			ctx, cancel := tctx(3 * time.Second)
			resp, err := cli.Put(ctx, k, k)
			cancel()
			amu.Lock()
			if err == nil {
				acked[k] = resp.Header.Revision
			} else {
				doubt[k] = true
			}
			amu.Unlock()
			if err == nil {
				if n := atomic.AddInt64(&nacks, 1); n%50 == 0 {
					status("acks %d", n)
				}
			} else {
				atomic.AddInt64(&nfail, 1)
				time.Sleep(100 * time.Millisecond)
			}
		}
		return nil
	})
	var last int64
	for _, r := range acked {
		if r > last {
			last = r
		}
	}
	status("writers stopped: %d acked, %d in doubt, last acked revision %d", len(acked), len(doubt), last)
	note("%d acked writes, %d failed (in doubt), last acked revision %d", len(acked), len(doubt), last)
	deadline := time.Now().Add(90 * time.Second)
	for {
		wmu.Lock()
		n := next
		wmu.Unlock()
		if n > last || time.Now().After(deadline) {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	close(stopWatch)
	<-watchDone
	wmu.Lock()
	defer wmu.Unlock()
	note("watch channel closed %d time(s): %s", len(closes), summarize(closes))
	check("watcher-caught-up", next > last, fmt.Sprintf("watcher at revision %d, last acked %d", next-1, last))
	seen := map[string]int64{}
	var bad []string
	var lastRev int64
	for _, e := range evs {
		k := string(e.Kv.Key)
		if e.Type != mvccpb.PUT || string(e.Kv.Value) != k {
			bad = append(bad, "unexpected event "+evShort(e))
		} else if _, dup := seen[k]; dup {
			bad = append(bad, "seen twice: "+evShort(e))
		} else if _, a := acked[k]; !a && !doubt[k] {
			bad = append(bad, "never written: "+evShort(e))
		} else if a && acked[k] != e.Kv.ModRevision {
			bad = append(bad, fmt.Sprintf("%s: acked at revision %d", evShort(e), acked[k]))
		}
		if e.Kv.ModRevision <= lastRev {
			bad = append(bad, fmt.Sprintf("revision %d after %d", e.Kv.ModRevision, lastRev))
		}
		lastRev = e.Kv.ModRevision
		seen[k] = e.Kv.ModRevision
		if len(bad) >= 10 {
			break
		}
	}
	check("events-once-in-order-and-written", len(bad) == 0, "bad events", bad...)
	var missing []string
	for k, r := range acked {
		if _, ok := seen[k]; !ok && len(missing) < 10 {
			missing = append(missing, fmt.Sprintf("%s (revision %d)", k, r))
		}
	}
	check("every-acked-write-seen", len(missing) == 0, fmt.Sprintf("acked writes missing from the watch"), missing...)
	check("writes-acked", len(acked) > 0, "no write acknowledged")
	indoubtSeen := 0
	for k := range doubt {
		if _, ok := seen[k]; ok {
			indoubtSeen++
		}
	}
	note("%d in-doubt writes seen by the watcher", indoubtSeen)
	done()
}

func summarize(xs []string) string {
	cnt := map[string]int{}
	var order []string
	for _, x := range xs {
		if cnt[x] == 0 {
			order = append(order, x)
		}
		cnt[x]++
	}
	var parts []string
	for _, x := range order {
		parts = append(parts, fmt.Sprintf("%dx %q", cnt[x], x))
	}
	return strings.Join(parts, ", ")
}

// ------------------------------------------------------------------ main

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: watchcheck reflector|many|stall|progress|fragment|compare|failover -endpoints E ...")
		os.Exit(2)
	}
	sub = os.Args[1]
	cmds := map[string]func([]string){
		"reflector": reflector, "many": many, "stall": stall, "progress": progress,
		"fragment": fragment, "compare": compare, "failover": failover,
	}
	f, found := cmds[sub]
	if !found {
		fmt.Fprintln(os.Stderr, "watchcheck: unknown subcommand", sub)
		os.Exit(2)
	}
	f(os.Args[2:])
}
