// durability: load generator and checker for the kill -9 test.
//
//	durability load  -endpoint H:P[,H:P...] -out ACKS -prefix P [-workers 32] [-txn-every 5] [-keep-going] [-max-time D]
//	durability check -endpoint H:P -prefix P ACKS...
//
// load: WORKERS goroutines write distinct keys under PREFIX (every TXN-EVERY-th op of
// a worker is a Txn putting two keys if the first is absent).  Before sending an op it
// appends "I <op> <key> <value>" lines to ACKS; once the server acknowledges it,
// "A <op> <revision>".  A worker stops at its first error (the server was killed), so
// at most one op per worker is in doubt.  load exits when every worker has stopped.
// With -keep-going (cluster failover) a failed op is left in doubt and the worker goes
// on with its next op until -max-time; -endpoint may list several members.
//
// check (after the restart): for every acknowledged op, each of its keys must be
// present with its value, create_revision == mod_revision == the acknowledged
// revision and version 1; distinct ops must have distinct revisions (the two keys of a
// Txn share one); every key present under the prefixes must have been attempted with
// that value (no phantom data; unacknowledged in-flight ops may or may not be there);
// a new put must get a revision greater than every acknowledged one.
// Prints "ok durability/..." / "not ok durability/... (reason)"; exits 1 on failure.
package main

import (
	"bufio"
	"context"
	"flag"
	"fmt"
	"os"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"go.etcd.io/etcd/clientv3"
	"go.etcd.io/etcd/pkg/logutil"
	"go.uber.org/zap"
)

func client(endpoint string) *clientv3.Client {
	lcfg := logutil.DefaultZapLoggerConfig
	lcfg.Level = zap.NewAtomicLevelAt(zap.FatalLevel)
	cli, err := clientv3.New(clientv3.Config{
		Endpoints:   strings.Split(endpoint, ","),
		DialTimeout: 10 * time.Second,
		LogConfig:   &lcfg,
	})
	if err != nil {
		fmt.Printf("not ok durability/connect (%v)\n", err)
		os.Exit(1)
	}
	return cli
}

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: durability load|check ...")
		os.Exit(2)
	}
	switch os.Args[1] {
	case "load":
		load(os.Args[2:])
	case "check":
		check(os.Args[2:])
	default:
		fmt.Fprintln(os.Stderr, "usage: durability load|check ...")
		os.Exit(2)
	}
}

// ---------------------------------------------------------------- load

func load(args []string) {
	fs := flag.NewFlagSet("load", flag.ExitOnError)
	endpoint := fs.String("endpoint", "127.0.0.1:2379", "client endpoint")
	out := fs.String("out", "", "acks file")
	prefix := fs.String("prefix", "dur/", "key prefix")
	workers := fs.Int("workers", 32, "concurrent writers")
	txnEvery := fs.Int("txn-every", 5, "every Nth op of a worker is a Txn (0: none)")
	maxOps := fs.Int("max-ops", 1000000, "stop a worker after this many ops")
	maxTime := fs.Duration("max-time", 5*time.Minute, "stop after this long (hang guard)")
	keepGoing := fs.Bool("keep-going", false, "on an error, leave the op in doubt and go on with the next one (cluster failover)")
	fs.Parse(args)

	f, err := os.OpenFile(*out, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0644)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	defer f.Close()
	var mu sync.Mutex
	record := func(line string) {
		mu.Lock()
		defer mu.Unlock()
		if _, err := f.WriteString(line); err != nil {
			fmt.Fprintln(os.Stderr, "write acks:", err)
			os.Exit(2)
		}
	}

	cli := client(*endpoint)
	defer cli.Close()
	deadline := time.Now().Add(*maxTime)
	var wg sync.WaitGroup
	var nacks, nerr int64
	var cmu sync.Mutex
	for w := 0; w < *workers; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			for seq := 0; seq < *maxOps && time.Now().Before(deadline); seq++ {
				op := fmt.Sprintf("w%02d-%06d", w, seq)
				k1 := *prefix + op + "/a"
				v1 := "v-" + op + "-a"
				var rev int64
				var err error
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				if *txnEvery > 0 && seq%*txnEvery == *txnEvery-1 {
					k2 := *prefix + op + "/b"
					v2 := "v-" + op + "-b"
					record(fmt.Sprintf("I %s %s %s\nI %s %s %s\n", op, k1, v1, op, k2, v2))
					var t *clientv3.TxnResponse
					t, err = cli.Txn(ctx).
						If(clientv3.Compare(clientv3.Version(k1), "=", 0)).
						Then(clientv3.OpPut(k1, v1), clientv3.OpPut(k2, v2)).
						Commit()
					if err == nil {
						if !t.Succeeded {
							err = fmt.Errorf("txn on fresh key %s did not succeed", k1)
						}
						rev = t.Header.Revision
					}
				} else {
					record(fmt.Sprintf("I %s %s %s\n", op, k1, v1))
					var p *clientv3.PutResponse
					p, err = cli.Put(ctx, k1, v1)
					if err == nil {
						rev = p.Header.Revision
					}
				}
				cancel()
				if err != nil {
					cmu.Lock()
					nerr++
					cmu.Unlock()
					if *keepGoing {
						time.Sleep(50 * time.Millisecond)
						continue
					}
					return
				}
				record(fmt.Sprintf("A %s %d\n", op, rev))
				cmu.Lock()
				nacks++
				cmu.Unlock()
			}
		}(w)
	}
	wg.Wait()
	if *keepGoing {
		fmt.Fprintf(os.Stderr, "durability load: %d acknowledged ops, %d failed (in doubt)\n", nacks, nerr)
	} else {
		fmt.Fprintf(os.Stderr, "durability load: %d acknowledged ops, %d workers stopped by errors\n", nacks, nerr)
	}
}

// ---------------------------------------------------------------- check

type opRec struct {
	keys   []string
	values []string
	rev    int64 // 0 = not acknowledged
}

var failures, checks int

func ok(name string) { checks++; fmt.Printf("ok durability/%s\n", name) }
func notOK(name, reason string, diag ...string) {
	checks++
	failures++
	fmt.Printf("not ok durability/%s (%s)\n", name, reason)
	for i, d := range diag {
		if i == 20 {
			fmt.Printf("#   ... %d more\n", len(diag)-20)
			break
		}
		fmt.Printf("#   %s\n", d)
	}
}

func check(args []string) {
	fs := flag.NewFlagSet("check", flag.ExitOnError)
	endpoint := fs.String("endpoint", "127.0.0.1:2379", "client endpoint")
	label := fs.String("label", "check", "name prefix for the printed checks")
	fs.Parse(args)

	ops := map[string]*opRec{}
	keyVal := map[string]string{}
	prefixes := map[string]bool{}
	for fileNo, path := range fs.Args() {
		ns := fmt.Sprintf("%d:", fileNo) // op ids repeat across rounds' files
		f, err := os.Open(path)
		if err != nil {
			notOK(*label+"/read-acks", err.Error())
			os.Exit(1)
		}
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			fl := strings.Fields(sc.Text())
			switch {
			case len(fl) == 4 && fl[0] == "I":
				o := ops[ns+fl[1]]
				if o == nil {
					o = &opRec{}
					ops[ns+fl[1]] = o
				}
				o.keys = append(o.keys, fl[2])
				o.values = append(o.values, fl[3])
				keyVal[fl[2]] = fl[3]
				// prefix = key without "<op>/a"
				prefixes[strings.TrimSuffix(fl[2], fl[1]+"/a")] = true
			case len(fl) == 3 && fl[0] == "A":
				o := ops[ns+fl[1]]
				rev, err := strconv.ParseInt(fl[2], 10, 64)
				if o == nil || err != nil {
					notOK(*label+"/acks-format", "bad ack line: "+sc.Text())
					os.Exit(1)
				}
				o.rev = rev
			default:
				// a torn last line cannot happen (the loader exits normally), so flag it
				notOK(*label+"/acks-format", "bad line: "+sc.Text())
				os.Exit(1)
			}
		}
		f.Close()
	}

	var acked, maxRev int64
	revOwner := map[int64]string{}
	var dupRevs []string
	for id, o := range ops {
		if o.rev == 0 {
			continue
		}
		acked++
		if o.rev > maxRev {
			maxRev = o.rev
		}
		if other, seen := revOwner[o.rev]; seen {
			dupRevs = append(dupRevs, fmt.Sprintf("revision %d acknowledged for %s and %s", o.rev, other, id))
		}
		revOwner[o.rev] = id
	}
	if acked == 0 {
		notOK(*label+"/acked-some", "no acknowledged writes in the acks file(s)")
		os.Exit(1)
	}
	ok(*label + "/acked-some")
	if len(dupRevs) > 0 {
		sort.Strings(dupRevs)
		notOK(*label+"/distinct-revisions", "two ops acknowledged with one revision", dupRevs...)
	} else {
		ok(*label + "/distinct-revisions")
	}

	cli := client(*endpoint)
	defer cli.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	type kvInfo struct {
		value                string
		create, mod, version int64
	}
	store := map[string]kvInfo{}
	for p := range prefixes {
		g, err := cli.Get(ctx, p, clientv3.WithPrefix())
		if err != nil {
			notOK(*label+"/range", fmt.Sprintf("get --prefix %s: %v", p, err))
			os.Exit(1)
		}
		for _, kv := range g.Kvs {
			store[string(kv.Key)] = kvInfo{string(kv.Value), kv.CreateRevision, kv.ModRevision, kv.Version}
		}
	}

	var missing, wrong []string
	ackedKeys := 0
	for id, o := range ops {
		if o.rev == 0 {
			continue
		}
		for i, k := range o.keys {
			ackedKeys++
			kv, found := store[k]
			if !found {
				missing = append(missing, fmt.Sprintf("%s (op %s, acked at revision %d)", k, id, o.rev))
				continue
			}
			want := fmt.Sprintf("value=%s create=%d mod=%d version=1", o.values[i], o.rev, o.rev)
			got := fmt.Sprintf("value=%s create=%d mod=%d version=%d", kv.value, kv.create, kv.mod, kv.version)
			if want != got {
				wrong = append(wrong, fmt.Sprintf("%s: expected %s, got %s", k, want, got))
			}
		}
	}
	sort.Strings(missing)
	sort.Strings(wrong)
	if len(missing) > 0 {
		notOK(*label+"/acked-present", fmt.Sprintf("%d of %d acknowledged keys lost", len(missing), ackedKeys), missing...)
	} else {
		ok(*label + "/acked-present")
	}
	if len(wrong) > 0 {
		notOK(*label+"/acked-value-and-revision", fmt.Sprintf("%d acknowledged keys differ", len(wrong)), wrong...)
	} else {
		ok(*label + "/acked-value-and-revision")
	}

	// Nothing present that was never attempted, and in-doubt ops are all-or-nothing.
	var phantom []string
	for k, kv := range store {
		v, attempted := keyVal[k]
		if !attempted || v != kv.value {
			phantom = append(phantom, fmt.Sprintf("%s=%s", k, kv.value))
		}
	}
	var torn []string
	inDoubt := 0
	for id, o := range ops {
		if o.rev != 0 {
			continue
		}
		inDoubt++
		n := 0
		for _, k := range o.keys {
			if _, found := store[k]; found {
				n++
			}
		}
		if n != 0 && n != len(o.keys) {
			torn = append(torn, fmt.Sprintf("op %s: %d of %d keys present", id, n, len(o.keys)))
		}
	}
	sort.Strings(phantom)
	if len(phantom) > 0 {
		notOK(*label+"/no-phantom-keys", "keys present that were never written with that value", phantom...)
	} else {
		ok(*label + "/no-phantom-keys")
	}
	if len(torn) > 0 {
		notOK(*label+"/in-doubt-txns-atomic", "partially applied txn", torn...)
	} else {
		ok(*label + "/in-doubt-txns-atomic")
	}
	fmt.Printf("# %s: %d acknowledged ops (%d keys), %d in doubt, max acknowledged revision %d, %d keys stored\n",
		*label, acked, ackedKeys, inDoubt, maxRev, len(store))

	// Revisions continue above everything acknowledged.
	p, err := cli.Put(ctx, "durability-probe/"+*label, "x")
	if err != nil {
		notOK(*label+"/revision-continues", "put: "+err.Error())
	} else if p.Header.Revision <= maxRev {
		notOK(*label+"/revision-continues", fmt.Sprintf("new put got revision %d, max acknowledged %d", p.Header.Revision, maxRev))
	} else {
		ok(*label + "/revision-continues")
	}
	if failures > 0 {
		os.Exit(1)
	}
}
