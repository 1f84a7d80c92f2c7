// concur: clientv3/concurrency (Mutex, Election) against a cluster.
//
//	concur mutex    -endpoints E -id N -n INCR -prefix P
//	concur election -endpoints E -id N -duration D -prefix P
//	concur check-election FILE...
//
// mutex: INCR times: Lock, read the counter P+"counter", write counter+1 in a txn
// guarded by the lock (If(mutex.IsOwner())), Unlock.  A call with unknown outcome
// (leader killed mid-call) is resolved by reading the counter back while still
// holding the lock: it must be c (retry) or c+1 (done); any other value means someone
// wrote it while we held the lock.  Prints "# mutex N: INCR increments" and exits 0;
// exits 1 with "not ok concur/mutex-N (...)" otherwise.  The scenario checks the final
// counter == the sum of all increments.
//
// election: until DURATION: Campaign(id) on P, then while leader check e.Leader()
// names us and write P+"holder" in a txn guarded by our election key, hold ~300 ms,
// Resign.  Prints one line per term: "L <id> <start-unix-ns> <end-unix-ns> <observed>".
// check-election: terms of different ids never overlap, every term observed itself as
// leader, at least two different ids led.
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
	"time"

	"go.etcd.io/etcd/clientv3"
	"go.etcd.io/etcd/clientv3/concurrency"
	"go.etcd.io/etcd/pkg/logutil"
	"go.uber.org/zap"
)

func newClient(eps string) *clientv3.Client {
	lcfg := logutil.DefaultZapLoggerConfig
	lcfg.Level = zap.NewAtomicLevelAt(zap.FatalLevel)
	cli, err := clientv3.New(clientv3.Config{
		Endpoints:   strings.Split(eps, ","),
		DialTimeout: 5 * time.Second,
		LogConfig:   &lcfg,
	})
	if err != nil {
		fmt.Printf("not ok concur/connect (%v)\n", err)
		os.Exit(1)
	}
	return cli
}

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: concur mutex|election|check-election ...")
		os.Exit(2)
	}
	switch os.Args[1] {
	case "mutex":
		mutex(os.Args[2:])
	case "election":
		election(os.Args[2:])
	case "check-election":
		checkElection(os.Args[2:])
	default:
		fmt.Fprintln(os.Stderr, "usage: concur mutex|election|check-election ...")
		os.Exit(2)
	}
}

func logf(format string, a ...interface{}) {
	fmt.Fprintf(os.Stderr, time.Now().Format("15:04:05.000")+" "+format+"\n", a...)
}

func mutex(args []string) {
	fs := flag.NewFlagSet("mutex", flag.ExitOnError)
	eps := fs.String("endpoints", "127.0.0.1:2379", "endpoints")
	id := fs.Int("id", 0, "process id")
	n := fs.Int("n", 20, "increments")
	prefix := fs.String("prefix", "mutex/", "prefix")
	maxTime := fs.Duration("max-time", 3*time.Minute, "hang guard")
	fs.Parse(args)
	cli := newClient(*eps)
	defer cli.Close()
	counter := *prefix + "counter"
	deadline := time.Now().Add(*maxTime)
	fail := func(why string) {
		fmt.Printf("not ok concur/mutex-%d (%s)\n", *id, why)
		os.Exit(1)
	}

	var sess *concurrency.Session
	var m *concurrency.Mutex
	done := 0
	for done < *n {
		if time.Now().After(deadline) {
			fail(fmt.Sprintf("only %d of %d increments before the hang guard", done, *n))
		}
		if sess == nil {
			s, err := concurrency.NewSession(cli, concurrency.WithTTL(15))
			if err != nil {
				logf("session: %v", err)
				time.Sleep(300 * time.Millisecond)
				continue
			}
			sess, m = s, concurrency.NewMutex(s, *prefix+"lock")
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		if err := m.Lock(ctx); err != nil {
			cancel()
			logf("lock: %v", err)
			select {
			case <-sess.Done():
				sess = nil
			default:
			}
			time.Sleep(200 * time.Millisecond)
			continue
		}
		cancel()
		// holding the lock
		var c int
		var rerr error
		for try := 0; try < 20; try++ {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			g, err := cli.Get(ctx, counter)
			cancel()
			if rerr = err; err == nil {
				if len(g.Kvs) > 0 {
					c, _ = strconv.Atoi(string(g.Kvs[0].Value))
				}
				break
			}
			time.Sleep(200 * time.Millisecond)
		}
		if rerr != nil {
			fail("cannot read the counter: " + rerr.Error())
		}
		incremented := false
		for try := 0; try < 20 && !incremented; try++ {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			t, err := cli.Txn(ctx).If(m.IsOwner()).Then(clientv3.OpPut(counter, strconv.Itoa(c+1))).Commit()
			cancel()
			if err == nil {
				if !t.Succeeded {
					logf("lost the lock before writing (session ended?)")
					break
				}
				incremented = true
				break
			}
			logf("increment %d->%d: %v (outcome unknown; reading back)", c, c+1, err)
			time.Sleep(300 * time.Millisecond)
			ctx, cancel = context.WithTimeout(context.Background(), 5*time.Second)
			g, gerr := cli.Get(ctx, counter)
			cancel()
			if gerr != nil {
				continue
			}
			v := 0
			if len(g.Kvs) > 0 {
				v, _ = strconv.Atoi(string(g.Kvs[0].Value))
			}
			switch v {
			case c + 1:
				incremented = true
			case c:
			default:
				fail(fmt.Sprintf("counter changed from %d to %d while this process held the lock", c, v))
			}
		}
		if incremented {
			done++
		}
		for try := 0; try < 20; try++ {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			err := m.Unlock(ctx)
			cancel()
			if err == nil {
				break
			}
			logf("unlock: %v", err)
			time.Sleep(200 * time.Millisecond)
		}
	}
	if sess != nil {
		sess.Close()
	}
	fmt.Printf("# mutex %d: %d increments\n", *id, done)
}

func election(args []string) {
	fs := flag.NewFlagSet("election", flag.ExitOnError)
	eps := fs.String("endpoints", "127.0.0.1:2379", "endpoints")
	id := fs.Int("id", 0, "process id")
	dur := fs.Duration("duration", 15*time.Second, "campaign for this long")
	prefix := fs.String("prefix", "election/", "prefix")
	fs.Parse(args)
	cli := newClient(*eps)
	defer cli.Close()
	me := fmt.Sprintf("p%d", *id)
	deadline := time.Now().Add(*dur)
	var sess *concurrency.Session
	for time.Now().Before(deadline) {
		if sess == nil {
			s, err := concurrency.NewSession(cli, concurrency.WithTTL(15))
			if err != nil {
				logf("session: %v", err)
				time.Sleep(300 * time.Millisecond)
				continue
			}
			sess = s
		}
		e := concurrency.NewElection(sess, *prefix)
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		err := e.Campaign(ctx, me)
		cancel()
		if err != nil {
			logf("campaign: %v", err)
			sess.Close() // revoke: our candidate key goes with the lease
			sess = nil
			time.Sleep(200 * time.Millisecond)
			continue
		}
		start := time.Now().UnixNano()
		observed := "self"
		ctx, cancel = context.WithTimeout(context.Background(), 5*time.Second)
		if l, err := e.Leader(ctx); err != nil {
			observed = "error:" + strings.ReplaceAll(err.Error(), " ", "_")
		} else if string(l.Kvs[0].Value) != me {
			observed = "other:" + string(l.Kvs[0].Value)
		}
		cancel()
		ctx, cancel = context.WithTimeout(context.Background(), 5*time.Second)
		t, err := cli.Txn(ctx).If(clientv3.Compare(clientv3.CreateRevision(e.Key()), "=", e.Rev())).
			Then(clientv3.OpPut(*prefix+"holder", me)).Commit()
		cancel()
		if err == nil && !t.Succeeded {
			observed = "not-owner"
		}
		time.Sleep(300 * time.Millisecond)
		end := time.Now().UnixNano()
		fmt.Printf("L %s %d %d %s\n", me, start, end, observed)
		resigned := false
		for try := 0; try < 10; try++ {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			err := e.Resign(ctx)
			cancel()
			if err == nil {
				resigned = true
				break
			}
			logf("resign: %v", err)
			time.Sleep(200 * time.Millisecond)
		}
		if !resigned {
			sess.Close()
			sess = nil
		}
	}
	if sess != nil {
		sess.Close()
	}
}

func checkElection(files []string) {
	type term struct {
		id         string
		start, end int64
		obs        string
	}
	var terms []term
	for _, f := range files {
		fh, err := os.Open(f)
		if err != nil {
			fmt.Printf("not ok concur/election-read (%v)\n", err)
			os.Exit(1)
		}
		sc := bufio.NewScanner(fh)
		for sc.Scan() {
			fl := strings.Fields(sc.Text())
			if len(fl) != 5 || fl[0] != "L" {
				continue
			}
			s, _ := strconv.ParseInt(fl[2], 10, 64)
			e, _ := strconv.ParseInt(fl[3], 10, 64)
			terms = append(terms, term{fl[1], s, e, fl[4]})
		}
		fh.Close()
	}
	sort.Slice(terms, func(i, j int) bool { return terms[i].start < terms[j].start })
	bad := 0
	var overlaps, notSelf []string
	ids := map[string]int{}
	for i, t := range terms {
		ids[t.id]++
		if t.obs != "self" {
			notSelf = append(notSelf, fmt.Sprintf("%s term at %d observed %s", t.id, t.start, t.obs))
		}
		for j := i + 1; j < len(terms) && terms[j].start < t.end; j++ {
			overlaps = append(overlaps, fmt.Sprintf("%s [%d,%d] overlaps %s [%d,%d]", t.id, t.start, t.end, terms[j].id, terms[j].start, terms[j].end))
		}
	}
	if len(overlaps) > 0 {
		bad++
		fmt.Printf("not ok concur/election-one-leader-at-a-time (%d overlapping terms)\n", len(overlaps))
		for _, o := range overlaps {
			fmt.Printf("#   %s\n", o)
		}
	} else {
		fmt.Printf("ok concur/election-one-leader-at-a-time\n")
	}
	if len(notSelf) > 0 {
		bad++
		fmt.Printf("not ok concur/election-leader-observed (a leader saw another leader)\n")
		for _, o := range notSelf {
			fmt.Printf("#   %s\n", o)
		}
	} else {
		fmt.Printf("ok concur/election-leader-observed\n")
	}
	if len(ids) >= 2 {
		fmt.Printf("ok concur/election-leadership-moved\n")
	} else {
		bad++
		fmt.Printf("not ok concur/election-leadership-moved (terms by %v)\n", ids)
	}
	fmt.Printf("# election: %d terms, per id %v\n", len(terms), ids)
	if bad > 0 {
		os.Exit(1)
	}
}
