// lincheck: a linearizability checker for an etcd-compatible cluster.
//
//	lincheck run -endpoints H:P,H:P,... [-clients 6] [-keys 4] [-duration 25s]
//	             [-prefix P] [-history FILE] [-op-timeout 3s]
//	lincheck check FILE        check a history file written by run -history
//	lincheck selftest          known histories: non-linearizable ones must be rejected,
//	                           linearizable ones accepted
//
// run: CLIENTS goroutines, each with its own clientv3 client over every endpoint, do
// random put / get (linearizable) / compare-and-swap txns on KEYS keys for DURATION
// while the calling scenario kills leaders and cuts the network.  Every op records
// its invoke and completion times (one monotonic clock); a failed or timed-out call is
// an "unknown outcome" op (it may or may not have taken effect).  Put values are
// unique ("c<client>-<seq>").  After the load one linearizable get per key (retried)
// closes the history.  Then:
//   - the history is checked per key against a register model (check.go);
//   - every acknowledged write (put, successful cas) must be in every member's MVCC
//     history: a serializable get at its acknowledged revision, on each endpoint
//     after a linearizable get there, returns its value with mod_revision == that
//     revision.
//
// Prints "ok lincheck/..." / "not ok lincheck/... (reason)" and "#" diagnostics;
// exits 1 on any failure.
package main

import (
	"bufio"
	"context"
	"flag"
	"fmt"
	"math/rand"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"go.etcd.io/etcd/clientv3"
	"go.etcd.io/etcd/pkg/logutil"
	"go.uber.org/zap"
)

var failures int

func ok(name string) { fmt.Printf("ok lincheck/%s\n", name) }
func notOK(name, reason string, diag ...string) {
	failures++
	fmt.Printf("not ok lincheck/%s (%s)\n", name, reason)
	for _, d := range diag {
		fmt.Printf("#   %s\n", d)
	}
}

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: lincheck run|check|selftest ...")
		os.Exit(2)
	}
	switch os.Args[1] {
	case "run":
		run(os.Args[2:])
	case "check":
		if len(os.Args) != 3 {
			fmt.Fprintln(os.Stderr, "usage: lincheck check FILE")
			os.Exit(2)
		}
		ops, err := readHistory(os.Args[2])
		if err != nil {
			notOK("read-history", err.Error())
			os.Exit(1)
		}
		report(ops, 0)
	case "selftest":
		selftest()
	default:
		fmt.Fprintln(os.Stderr, "usage: lincheck run|check|selftest ...")
		os.Exit(2)
	}
	if failures > 0 {
		os.Exit(1)
	}
}

func newClient(endpoints []string) (*clientv3.Client, error) {
	lcfg := logutil.DefaultZapLoggerConfig
	lcfg.Level = zap.NewAtomicLevelAt(zap.FatalLevel)
	return clientv3.New(clientv3.Config{
		Endpoints:   endpoints,
		DialTimeout: 5 * time.Second,
		LogConfig:   &lcfg,
	})
}

// report checks ops and prints the verdict; returns true if linearizable.
func report(ops []*Op, maxSteps int) bool {
	res := CheckHistory(ops, maxSteps)
	good := true
	var diag []string
	total, unknown := 0, 0
	for _, r := range res {
		total += r.Ops
		unknown += r.Unknown
		if !r.OK {
			good = false
			diag = append(diag, r.Report...)
		}
	}
	if good {
		ok("linearizable")
		fmt.Printf("# %d ops on %d keys (%d writes with unknown outcome) have a linearization\n", total, len(res), unknown)
	} else {
		notOK("linearizable", "history is not linearizable", diag...)
	}
	return good
}

// ---------------------------------------------------------------- run

func run(args []string) {
	fs := flag.NewFlagSet("run", flag.ExitOnError)
	eps := fs.String("endpoints", "127.0.0.1:2379", "comma-separated client endpoints")
	nclients := fs.Int("clients", 6, "concurrent clients")
	nkeys := fs.Int("keys", 4, "keys")
	duration := fs.Duration("duration", 25*time.Second, "load duration")
	prefix := fs.String("prefix", fmt.Sprintf("lin-%d/", time.Now().UnixNano()), "key prefix")
	histPath := fs.String("history", "", "write the history here")
	opTimeout := fs.Duration("op-timeout", 3*time.Second, "per-op timeout")
	pause := fs.Duration("pause", 10*time.Millisecond, "max random pause between a client's ops")
	maxSteps := fs.Int("max-steps", 50000000, "search budget per key (0: none)")
	fs.Parse(args)
	endpoints := strings.Split(*eps, ",")

	start := time.Now()
	now := func() int64 { return int64(time.Since(start)) }
	keys := make([]string, *nkeys)
	for i := range keys {
		keys[i] = fmt.Sprintf("%sk%d", *prefix, i)
	}

	var mu sync.Mutex
	var ops []*Op
	add := func(o *Op) {
		mu.Lock()
		o.ID = len(ops)
		ops = append(ops, o)
		mu.Unlock()
	}
	deadline := start.Add(*duration)
	var wg sync.WaitGroup
	for c := 0; c < *nclients; c++ {
		cli, err := newClient(endpoints)
		if err != nil {
			notOK("connect", err.Error())
			os.Exit(1)
		}
		defer cli.Close()
		wg.Add(1)
		go func(c int, cli *clientv3.Client) {
			defer wg.Done()
			rnd := rand.New(rand.NewSource(int64(c)*7919 + time.Now().UnixNano()))
			last := map[string]string{}
			for seq := 0; time.Now().Before(deadline); seq++ {
				k := keys[rnd.Intn(len(keys))]
				o := &Op{Client: c, Key: k}
				ctx, cancel := context.WithTimeout(context.Background(), *opTimeout)
				r := rnd.Intn(10)
				switch {
				case r < 4:
					o.Kind = 'p'
					o.V1 = fmt.Sprintf("c%d-%d", c, seq)
					o.Call = now()
					p, err := cli.Put(ctx, k, o.V1)
					o.Ret = now()
					if err == nil {
						o.Known, o.OK, o.Rev = true, true, p.Header.Revision
						last[k] = o.V1
					}
				case r < 8:
					o.Kind = 'g'
					o.Call = now()
					g, err := cli.Get(ctx, k)
					o.Ret = now()
					if err == nil {
						o.Known = true
						o.OutVal = absent
						if len(g.Kvs) > 0 {
							o.OutVal = string(g.Kvs[0].Value)
						}
						last[k] = o.OutVal
					}
				default:
					o.Kind = 'c'
					o.V1 = absent
					if v, seen := last[k]; seen {
						o.V1 = v
					}
					o.V2 = fmt.Sprintf("c%d-%d", c, seq)
					var cmp clientv3.Cmp
					if o.V1 == absent {
						cmp = clientv3.Compare(clientv3.CreateRevision(k), "=", 0)
					} else {
						cmp = clientv3.Compare(clientv3.Value(k), "=", o.V1)
					}
					o.Call = now()
					t, err := cli.Txn(ctx).If(cmp).Then(clientv3.OpPut(k, o.V2)).Else(clientv3.OpGet(k)).Commit()
					o.Ret = now()
					if err == nil {
						o.Known, o.OK = true, t.Succeeded
						if t.Succeeded {
							o.Rev = t.Header.Revision
							last[k] = o.V2
						} else {
							o.OutVal = absent
							if rr := t.Responses[0].GetResponseRange(); rr != nil && len(rr.Kvs) > 0 {
								o.OutVal = string(rr.Kvs[0].Value)
							}
							last[k] = o.OutVal
						}
					}
				}
				cancel()
				add(o)
				if !o.Known {
					time.Sleep(100 * time.Millisecond) // back off while the cluster recovers
				} else if *pause > 0 {
					time.Sleep(time.Duration(rnd.Int63n(int64(*pause))))
				}
			}
		}(c, cli)
	}
	wg.Wait()
	loadEnd := time.Since(start)

	// Close the history: one linearizable get per key (retried; the scenario healed).
	fin, err := newClient(endpoints)
	if err != nil {
		notOK("connect", err.Error())
		os.Exit(1)
	}
	defer fin.Close()
	for _, k := range keys {
		var got *Op
		for try := 0; try < 30 && got == nil; try++ {
			o := &Op{Client: -1, Key: k, Kind: 'g'}
			ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
			o.Call = now()
			g, err := fin.Get(ctx, k)
			o.Ret = now()
			cancel()
			if err != nil {
				add(o) // a failed read is an unknown-outcome read (no effect)
				time.Sleep(500 * time.Millisecond)
				continue
			}
			o.Known = true
			o.OutVal = absent
			if len(g.Kvs) > 0 {
				o.OutVal = string(g.Kvs[0].Value)
			}
			add(o)
			got = o
		}
		if got == nil {
			notOK("final-read", "no successful final read of "+k+" in 30 tries")
		}
	}

	var nPut, nGet, nCas, nUnknown, nCasOK int
	for _, o := range ops {
		switch o.Kind {
		case 'p':
			nPut++
		case 'g':
			nGet++
		case 'c':
			nCas++
			if o.Known && o.OK {
				nCasOK++
			}
		}
		if !o.Known {
			nUnknown++
		}
	}
	fmt.Printf("# lincheck: %d ops in %.1fs (%d put, %d get, %d cas of which %d succeeded), %d unknown outcome, %d clients, %d keys, %d endpoints\n",
		len(ops), loadEnd.Seconds(), nPut, nGet, nCas, nCasOK, nUnknown, *nclients, *nkeys, len(endpoints))
	if *histPath != "" {
		if err := writeHistory(*histPath, ops); err != nil {
			notOK("write-history", err.Error())
		}
	}
	if len(ops)-nUnknown < 50 {
		notOK("enough-ops", fmt.Sprintf("only %d ops completed", len(ops)-nUnknown))
	} else {
		ok("enough-ops")
	}
	report(ops, *maxSteps)
	ackedPresent(endpoints, ops)
}

// ackedPresent: every acknowledged write is in every member's history at its revision.
func ackedPresent(endpoints []string, ops []*Op) {
	for _, ep := range endpoints {
		name := "acked-writes-present/" + ep
		cli, err := newClient([]string{ep})
		if err != nil {
			notOK(name, err.Error())
			continue
		}
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		// a linearizable read first: afterwards this member has applied every acked write
		var lerr error
		for try := 0; try < 20; try++ {
			c2, cancel2 := context.WithTimeout(ctx, 3*time.Second)
			_, lerr = cli.Get(c2, "lincheck-sync-probe")
			cancel2()
			if lerr == nil {
				break
			}
			time.Sleep(500 * time.Millisecond)
		}
		if lerr != nil {
			notOK(name, "linearizable get on this member keeps failing: "+lerr.Error())
			cancel()
			cli.Close()
			continue
		}
		var bad []string
		checked := 0
		for _, o := range ops {
			if !o.Known || o.Rev == 0 {
				continue
			}
			want := o.V1
			if o.Kind == 'c' {
				want = o.V2
			}
			checked++
			g, err := cli.Get(ctx, o.Key, clientv3.WithRev(o.Rev), clientv3.WithSerializable())
			switch {
			case err != nil:
				bad = append(bad, fmt.Sprintf("%s: get at revision %d: %v", o, o.Rev, err))
			case len(g.Kvs) == 0:
				bad = append(bad, fmt.Sprintf("%s: acknowledged at revision %d, key absent there", o, o.Rev))
			case string(g.Kvs[0].Value) != want || g.Kvs[0].ModRevision != o.Rev:
				bad = append(bad, fmt.Sprintf("%s: acknowledged at revision %d, member has %s at mod_revision %d",
					o, o.Rev, g.Kvs[0].Value, g.Kvs[0].ModRevision))
			}
			if len(bad) >= 20 {
				bad = append(bad, "...")
				break
			}
		}
		cancel()
		cli.Close()
		if len(bad) > 0 {
			notOK(name, fmt.Sprintf("acknowledged writes missing or different (of %d checked)", checked), bad...)
		} else {
			ok(name)
			fmt.Printf("# %s: %d acknowledged writes present at their revisions\n", ep, checked)
		}
	}
}

// ---------------------------------------------------------------- history files
// One op per line: id client key kind v1 v2 ok outval call ret known rev

func writeHistory(path string, ops []*Op) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	w := bufio.NewWriter(f)
	for _, o := range ops {
		v1, v2, out := o.V1, o.V2, o.OutVal
		if v1 == "" {
			v1 = "-"
		}
		if v2 == "" {
			v2 = "-"
		}
		if out == "" {
			out = "-"
		}
		fmt.Fprintf(w, "%d %d %s %c %s %s %t %s %d %d %t %d\n", o.ID, o.Client, o.Key, o.Kind, v1, v2, o.OK, out, o.Call, o.Ret, o.Known, o.Rev)
	}
	if err := w.Flush(); err != nil {
		return err
	}
	return f.Close()
}

func readHistory(path string) ([]*Op, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var ops []*Op
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fl := strings.Fields(sc.Text())
		if len(fl) != 12 || len(fl[3]) != 1 {
			return nil, fmt.Errorf("bad history line: %q", sc.Text())
		}
		o := &Op{Key: fl[2], Kind: fl[3][0], V1: fl[4], V2: fl[5], OutVal: fl[7]}
		o.ID, _ = strconv.Atoi(fl[0])
		o.Client, _ = strconv.Atoi(fl[1])
		o.OK = fl[6] == "true"
		o.Call, _ = strconv.ParseInt(fl[8], 10, 64)
		o.Ret, _ = strconv.ParseInt(fl[9], 10, 64)
		o.Known = fl[10] == "true"
		o.Rev, _ = strconv.ParseInt(fl[11], 10, 64)
		ops = append(ops, o)
	}
	return ops, sc.Err()
}
