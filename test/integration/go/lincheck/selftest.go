package main

import (
	"fmt"
	"strings"
)

// A tiny history notation for the self-test, one op per entry:
//
//	"C KEY put V CALL RET"        RET "?" = unknown outcome
//	"C KEY get V CALL RET"        V "_" = absent
//	"C KEY cas OLD NEW ok|fail[:V] CALL RET"
//
// C is the client number, times are in ms.
func parseHist(lines []string) []*Op {
	var ops []*Op
	for i, l := range lines {
		f := strings.Fields(l)
		o := &Op{ID: i, Key: f[1]}
		fmt.Sscan(f[0], &o.Client)
		var call, ret string
		switch f[2] {
		case "put":
			o.Kind, o.V1, call, ret = 'p', f[3], f[4], f[5]
			o.OK = true
		case "get":
			o.Kind, o.OutVal, call, ret = 'g', f[3], f[4], f[5]
		case "cas":
			o.Kind, o.V1, o.V2, call, ret = 'c', f[3], f[4], f[6], f[7]
			if f[5] == "ok" {
				o.OK = true
			} else {
				o.OutVal = strings.TrimPrefix(f[5], "fail:")
			}
		default:
			panic("bad self-test op " + l)
		}
		var c, r int64
		fmt.Sscan(call, &c)
		o.Call = c * 1e6
		if ret == "?" {
			o.Known = false
		} else {
			fmt.Sscan(ret, &r)
			o.Ret, o.Known = r*1e6, true
		}
		ops = append(ops, o)
	}
	return ops
}

type selfCase struct {
	name string
	lin  bool
	hist []string
}

var selfCases = []selfCase{
	{"sequential-put-get", true, []string{
		"0 k put a 0 10",
		"1 k get a 20 30",
		"0 k put b 40 50",
		"1 k get b 60 70",
	}},
	{"read-concurrent-with-put-may-see-either", true, []string{
		"0 k put a 0 10",
		"0 k put b 20 100",
		"1 k get a 30 40",
		"2 k get b 50 60",
		"1 k get b 110 120",
	}},
	{"initially-absent", true, []string{
		"1 k get _ 0 5",
		"0 k put a 10 20",
		"1 k get a 30 40",
	}},
	{"stale-read-after-acknowledged-write", false, []string{
		"0 k put a 0 10",
		"0 k put b 20 30",
		"1 k get a 40 50",
	}},
	{"read-absent-after-acknowledged-write", false, []string{
		"0 k put a 0 10",
		"1 k get _ 20 30",
	}},
	{"read-of-value-never-written", false, []string{
		"0 k put a 0 10",
		"1 k get z 20 30",
	}},
	{"reads-go-back-in-time-during-a-write", false, []string{
		"0 k put a 0 10",
		"0 k put b 20 200",
		"1 k get b 30 40",
		"2 k get a 50 60",
	}},
	{"unknown-write-may-take-effect-late", true, []string{
		"0 k put a 0 10",
		"0 k put b 20 ?",
		"1 k get a 30 40",
		"1 k get a 500 510",
		"2 k get b 900 910",
	}},
	{"unknown-write-may-never-take-effect", true, []string{
		"0 k put a 0 10",
		"0 k put b 20 ?",
		"1 k get a 900 910",
	}},
	{"unknown-write-seen-then-unseen", false, []string{
		"0 k put a 0 10",
		"0 k put b 20 ?",
		"1 k get b 30 40",
		"1 k get a 50 60",
	}},
	{"cas-sequence", true, []string{
		"0 k cas _ a ok 0 10",
		"1 k cas a b ok 20 30",
		"2 k cas a c fail:b 40 50",
		"0 k get b 60 70",
	}},
	{"two-cas-from-same-value-both-succeed", false, []string{
		"0 k put a 0 10",
		"1 k cas a b ok 20 30",
		"2 k cas a c ok 40 50",
	}},
	{"concurrent-cas-both-succeed", false, []string{
		"0 k put a 0 10",
		"1 k cas a b ok 20 60",
		"2 k cas a c ok 30 70",
		"0 k get c 80 90",
	}},
	{"failed-cas-reports-wrong-value", false, []string{
		"0 k put a 0 10",
		"1 k cas x y fail:q 20 30",
	}},
	{"cas-fails-although-value-matched", false, []string{
		"0 k put a 0 10",
		"1 k cas a b fail:a 20 30",
	}},
	{"independent-keys-each-fine", true, []string{
		"0 k put a 0 10",
		"1 j put x 0 10",
		"0 j get x 20 30",
		"1 k get a 20 30",
	}},
	{"one-key-of-two-stale", false, []string{
		"0 k put a 0 10",
		"1 j put x 0 10",
		"1 j put y 15 18",
		"0 j get x 20 30",
		"1 k get a 20 30",
	}},
}

func selftest() {
	for _, c := range selfCases {
		ops := parseHist(c.hist)
		res := CheckHistory(ops, 1000000)
		got := true
		var rep []string
		for _, r := range res {
			if r.Aborted {
				notOK("selftest/"+c.name, "search aborted", r.Report...)
				continue
			}
			if !r.OK {
				got = false
				rep = append(rep, r.Report...)
			}
		}
		want := "accepted"
		if !c.lin {
			want = "rejected"
		}
		if got == c.lin {
			ok("selftest/" + c.name + "-" + want)
			if !c.lin {
				// show that the report names the problem (first lines only)
				for i, l := range rep {
					if i == 0 || (i > 0 && strings.HasPrefix(rep[i-1], "no order places")) {
						fmt.Printf("#   %s\n", l)
					}
				}
			}
		} else {
			notOK("selftest/"+c.name+"-"+want, fmt.Sprintf("expected %s, checker said the opposite", want), c.hist...)
		}
	}
	// A longer generated linearizable history (sequential with overlap) must pass
	// quickly; a single stale read injected into it must be caught.
	var long []string
	t := 0
	for i := 0; i < 400; i++ {
		long = append(long, fmt.Sprintf("%d k put v%d %d %d", i%5, i, t, t+15))
		long = append(long, fmt.Sprintf("%d k get v%d %d %d", (i+1)%5, i, t+20, t+30))
		t += 40
	}
	res := CheckHistory(parseHist(long), 1000000)
	if res[0].OK {
		ok("selftest/long-history-accepted")
	} else {
		notOK("selftest/long-history-accepted", "rejected", res[0].Report...)
	}
	long = append(long, fmt.Sprintf("3 k get v%d %d %d", 200, t+10, t+20))
	res = CheckHistory(parseHist(long), 1000000)
	if !res[0].OK && !res[0].Aborted {
		ok("selftest/long-history-with-stale-read-rejected")
	} else {
		notOK("selftest/long-history-with-stale-read-rejected", "accepted or aborted")
	}
}
