// elect: the server-side Election and Lock gRPC services (v3electionpb,
// v3lockpb) driven through their generated clients, on one endpoint.
//
//	elect -endpoint E -prefix P
//
// Prints one "ok NAME" / "not ok NAME (why)" line per check and exits 1 if any
// failed. The checks:
//
//	campaign      A campaigns (own lease): the answer names the election, a key
//	              under it, A's lease, the key's create revision;
//	leader        Leader names A's key with A's value;
//	observe       an Observe stream's first answer is A's key;
//	blocks        B's Campaign does not return while A leads;
//	proclaim      A proclaims a new value: Leader and Observe see it;
//	resign        A resigns: B's Campaign returns with a later revision, and
//	              Observe and Leader name B;
//	stale         Proclaim with A's old key fails "election: not leader"
//	              (code Unknown); Resign with it succeeds and changes nothing;
//	no-leader     Leader of an empty election fails "election: no leader";
//	give-up       C's Campaign with a short deadline fails DeadlineExceeded and
//	              its key is gone afterwards;
//	lock          Lock answers a key under the name; a second Lock blocks
//	              until Unlock of the first, then answers its own key.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"strings"
	"time"

	"go.etcd.io/etcd/clientv3"
	epb "go.etcd.io/etcd/etcdserver/api/v3election/v3electionpb"
	lpb "go.etcd.io/etcd/etcdserver/api/v3lock/v3lockpb"
	"go.etcd.io/etcd/pkg/logutil"
	"go.uber.org/zap"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

var failed int

func check(name string, ok bool, why string, a ...interface{}) {
	if ok {
		fmt.Printf("ok elect/%s\n", name)
		return
	}
	failed++
	fmt.Printf("not ok elect/%s (%s)\n", name, fmt.Sprintf(why, a...))
}

func ctx() context.Context {
	c, _ := context.WithTimeout(context.Background(), 10*time.Second)
	return c
}

type campaignResult struct {
	resp *epb.CampaignResponse
	err  error
}

// quiet: true if @ch delivers nothing within a second (the call blocks).
func quiet(ch <-chan campaignResult) bool {
	select {
	case <-ch:
		return false
	case <-time.After(time.Second):
		return true
	}
}

func main() {
	ep := flag.String("endpoint", "127.0.0.1:2379", "endpoint")
	pfx := flag.String("prefix", "el", "election / lock name prefix")
	flag.Parse()
	lcfg := logutil.DefaultZapLoggerConfig
	lcfg.Level = zap.NewAtomicLevelAt(zap.FatalLevel)
	cli, err := clientv3.New(clientv3.Config{Endpoints: []string{*ep},
		DialTimeout: 5 * time.Second, LogConfig: &lcfg})
	if err != nil {
		fmt.Printf("not ok elect/connect (%v)\n", err)
		os.Exit(1)
	}
	defer cli.Close()
	ec := epb.NewElectionClient(cli.ActiveConnection())
	lc := lpb.NewLockClient(cli.ActiveConnection())
	name := []byte(*pfx + "/election")

	grant := func() int64 {
		g, err := cli.Grant(ctx(), 30)
		if err != nil {
			fmt.Printf("not ok elect/grant (%v)\n", err)
			os.Exit(1)
		}
		return int64(g.ID)
	}
	la, lb := grant(), grant()

	// campaign
	ca, err := ec.Campaign(ctx(), &epb.CampaignRequest{Name: name, Lease: la, Value: []byte("a")})
	if err != nil {
		check("campaign", false, "%v", err)
		os.Exit(1)
	}
	ka := ca.Leader
	check("campaign", string(ka.Name) == string(name) &&
		strings.HasPrefix(string(ka.Key), string(name)+"/") && ka.Lease == la &&
		ka.Rev == ca.Header.Revision && ka.Rev > 0,
		"leader key %+v, header %+v", ka, ca.Header)

	// leader
	l, err := ec.Leader(ctx(), &epb.LeaderRequest{Name: name})
	check("leader", err == nil && l.Kv != nil && string(l.Kv.Key) == string(ka.Key) &&
		string(l.Kv.Value) == "a" && l.Kv.CreateRevision == ka.Rev, "%v %+v", err, l)

	// observe
	octx, ocancel := context.WithCancel(context.Background())
	defer ocancel()
	obs, err := ec.Observe(octx, &epb.LeaderRequest{Name: name})
	next := func() string {
		if err != nil {
			return "error: " + err.Error()
		}
		r, e := obs.Recv()
		if e != nil {
			return "error: " + e.Error()
		}
		return string(r.Kv.Key) + "=" + string(r.Kv.Value)
	}
	got := next()
	check("observe", got == string(ka.Key)+"=a", "first observed %q", got)

	// blocks
	bch := make(chan campaignResult, 1)
	go func() {
		r, e := ec.Campaign(ctx(), &epb.CampaignRequest{Name: name, Lease: lb, Value: []byte("b")})
		bch <- campaignResult{r, e}
	}()
	check("blocks", quiet(bch), "B's campaign returned while A leads")

	// proclaim
	_, err = ec.Proclaim(ctx(), &epb.ProclaimRequest{Leader: ka, Value: []byte("a2")})
	l, lerr := ec.Leader(ctx(), &epb.LeaderRequest{Name: name})
	got = next()
	check("proclaim", err == nil && lerr == nil && string(l.Kv.Value) == "a2" &&
		got == string(ka.Key)+"=a2", "proclaim %v, leader %v %+v, observed %q", err, lerr, l, got)

	// resign
	_, err = ec.Resign(ctx(), &epb.ResignRequest{Leader: ka})
	var cb campaignResult
	select {
	case cb = <-bch:
	case <-time.After(10 * time.Second):
		cb.err = fmt.Errorf("B's campaign still blocked 10 s after A resigned")
	}
	got = next()
	l, lerr = ec.Leader(ctx(), &epb.LeaderRequest{Name: name})
	ok := err == nil && cb.err == nil && lerr == nil
	if ok {
		kb := cb.resp.Leader
		ok = kb.Rev > ka.Rev && kb.Lease == lb && string(kb.Key) != string(ka.Key) &&
			got == string(kb.Key)+"=b" && string(l.Kv.Key) == string(kb.Key)
	}
	check("resign", ok, "resign %v, B %+v %v, observed %q, leader %v %+v", err, cb.resp, cb.err,
		got, lerr, l)

	// stale
	_, perr := ec.Proclaim(ctx(), &epb.ProclaimRequest{Leader: ka, Value: []byte("x")})
	_, rerr := ec.Resign(ctx(), &epb.ResignRequest{Leader: ka})
	l, lerr = ec.Leader(ctx(), &epb.LeaderRequest{Name: name})
	st, _ := status.FromError(perr)
	check("stale", perr != nil && st.Code() == codes.Unknown &&
		st.Message() == "election: not leader" && rerr == nil && lerr == nil &&
		string(l.Kv.Value) == "b", "proclaim %v, resign %v, leader %v %+v", perr, rerr, lerr, l)

	// no-leader
	_, err = ec.Leader(ctx(), &epb.LeaderRequest{Name: []byte(*pfx + "/nobody")})
	st, _ = status.FromError(err)
	check("no-leader", err != nil && st.Code() == codes.Unknown &&
		st.Message() == "election: no leader", "%v", err)

	// give-up
	lc1 := grant()
	sctx, scancel := context.WithTimeout(context.Background(), 700*time.Millisecond)
	_, err = ec.Campaign(sctx, &epb.CampaignRequest{Name: name, Lease: lc1, Value: []byte("c")})
	scancel()
	st, _ = status.FromError(err)
	gone := false
	for i := 0; i < 50 && !gone; i++ { // the server removes the key after the deadline
		g, gerr := cli.Get(ctx(), string(name)+"/", clientv3.WithPrefix())
		gone = gerr == nil && len(g.Kvs) == 1
		if !gone {
			time.Sleep(100 * time.Millisecond)
		}
	}
	check("give-up", err != nil && st.Code() == codes.DeadlineExceeded && gone,
		"campaign %v, keys left behind", err)

	// lock
	l1, l2 := grant(), grant()
	lname := []byte(*pfx + "/lock")
	r1, err := lc.Lock(ctx(), &lpb.LockRequest{Name: lname, Lease: l1})
	if err != nil {
		check("lock", false, "first lock: %v", err)
	} else {
		lch := make(chan error, 1)
		var r2 *lpb.LockResponse
		go func() {
			var e error
			r2, e = lc.Lock(ctx(), &lpb.LockRequest{Name: lname, Lease: l2})
			lch <- e
		}()
		blocked := false
		select {
		case <-lch:
		case <-time.After(time.Second):
			blocked = true
		}
		_, uerr := lc.Unlock(ctx(), &lpb.UnlockRequest{Key: r1.Key})
		var e2 error
		select {
		case e2 = <-lch:
		case <-time.After(10 * time.Second):
			e2 = fmt.Errorf("second lock still blocked 10 s after unlock")
		}
		ok := blocked && uerr == nil && e2 == nil &&
			strings.HasPrefix(string(r1.Key), string(lname)+"/") &&
			strings.HasPrefix(string(r2.Key), string(lname)+"/") &&
			string(r1.Key) != string(r2.Key) && r2.Header.Revision > r1.Header.Revision
		check("lock", ok, "blocked %v, unlock %v, second %v", blocked, uerr, e2)
	}
	if failed > 0 {
		os.Exit(1)
	}
}
