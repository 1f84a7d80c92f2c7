package main

// The linearizability check: a per-key register model searched with the
// Wing & Gong algorithm, Lowe's memoization of (linearized set, model state), and
// P-compositionality (every op touches one key, so each key's sub-history is
// checked on its own), as described in the Porcupine paper.

import (
	"fmt"
	"sort"
	"strings"
)

// absent is how a missing key / "expect missing" is written in histories.
const absent = "_"

// Op is one client operation of a history.
//
//	Kind 'p' put(V1)
//	Kind 'g' get -> OutVal ("_" = key absent)
//	Kind 'c' compare-and-swap: if value == V1 ("_": key absent) then put V2;
//	         OK = succeeded; on failure OutVal = the value the txn's else-branch read
// Known=false: the call failed or timed out; it may or may not have taken effect at
// any moment after Call (its return is treated as +infinity and its output as unknown).
type Op struct {
	ID     int
	Client int
	Key    string
	Kind   byte
	V1, V2 string
	OK     bool
	OutVal string
	Call   int64
	Ret    int64
	Known  bool
	Rev    int64 // header revision of an acknowledged write (0 if none)
}

func (o *Op) String() string {
	ret := "unknown"
	if o.Known {
		ret = fmt.Sprintf("%.3fms", float64(o.Ret)/1e6)
	}
	var what string
	switch o.Kind {
	case 'p':
		what = fmt.Sprintf("put(%s)", o.V1)
		if !o.Known {
			what += " -> ?"
		} else {
			what += " -> ok"
		}
	case 'g':
		what = "get()"
		if o.Known {
			what += " -> " + o.OutVal
		} else {
			what += " -> ?"
		}
	case 'c':
		what = fmt.Sprintf("cas(%s->%s)", o.V1, o.V2)
		switch {
		case !o.Known:
			what += " -> ?"
		case o.OK:
			what += " -> succeeded"
		default:
			what += " -> failed, value " + o.OutVal
		}
	}
	return fmt.Sprintf("op#%d client %d key %s %s  [%.3fms .. %s]", o.ID, o.Client, o.Key, what, float64(o.Call)/1e6, ret)
}

// step applies o to register value s; ok=false if o's observed output is impossible.
func step(s string, o *Op) (string, bool) {
	switch o.Kind {
	case 'p':
		return o.V1, true
	case 'g':
		if !o.Known {
			return s, true
		}
		return s, o.OutVal == s
	case 'c':
		match := s == o.V1
		if !o.Known {
			if match {
				return o.V2, true
			}
			return s, true
		}
		if o.OK {
			if !match {
				return s, false
			}
			return o.V2, true
		}
		return s, !match && o.OutVal == s
	}
	return s, false
}

type node struct {
	op         *Op
	call       bool
	match      *node // a call's return node (nil for unknown-outcome ops)
	prev, next *node
}

type bitset []uint64

func (b bitset) set(i int)   { b[i/64] |= 1 << (uint(i) % 64) }
func (b bitset) clear(i int) { b[i/64] &^= 1 << (uint(i) % 64) }
func (b bitset) key(state string) string {
	var sb strings.Builder
	sb.Grow(len(b)*8 + len(state) + 1)
	for _, w := range b {
		for j := 0; j < 8; j++ {
			sb.WriteByte(byte(w >> (8 * uint(j))))
		}
	}
	sb.WriteByte(0)
	sb.WriteString(state)
	return sb.String()
}

// Result of checking one key.
type Result struct {
	Key       string
	OK        bool
	Aborted   bool // search budget exhausted (neither proven nor refuted)
	Ops       int
	Unknown   int
	Steps     int
	Report    []string
}

// checkKey searches for a linearization of ops (all on one key, initial value absent).
func checkKey(key string, ops []*Op, maxSteps int) Result {
	res := Result{Key: key, Ops: len(ops)}
	// Unknown-outcome reads have no effect and no observable output: leave them out.
	var used []*Op
	for _, o := range ops {
		if o.Kind == 'g' && !o.Known {
			continue
		}
		if !o.Known {
			res.Unknown++
		}
		used = append(used, o)
	}
	// local ids 0..n-1
	n := len(used)
	type ev struct {
		t    int64
		call bool
		n    *node
	}
	evs := make([]ev, 0, 2*n)
	idx := map[*Op]int{}
	for i, o := range used {
		idx[o] = i
		c := &node{op: o, call: true}
		evs = append(evs, ev{o.Call, true, c})
		if o.Known {
			r := &node{op: o}
			c.match = r
			evs = append(evs, ev{o.Ret, false, r})
		}
	}
	// by time; at equal times calls first (the more permissive order)
	sort.SliceStable(evs, func(i, j int) bool {
		if evs[i].t != evs[j].t {
			return evs[i].t < evs[j].t
		}
		return evs[i].call && !evs[j].call
	})
	head := &node{}
	p := head
	for _, e := range evs {
		p.next = e.n
		e.n.prev = p
		p = e.n
	}

	lift := func(c *node) {
		c.prev.next = c.next
		if c.next != nil {
			c.next.prev = c.prev
		}
		if r := c.match; r != nil {
			r.prev.next = r.next
			if r.next != nil {
				r.next.prev = r.prev
			}
		}
	}
	unlift := func(c *node) {
		if r := c.match; r != nil {
			r.prev.next = r
			if r.next != nil {
				r.next.prev = r
			}
		}
		c.prev.next = c
		if c.next != nil {
			c.next.prev = c
		}
	}

	type frame struct {
		n    *node
		prev string
	}
	lin := make(bitset, (n+63)/64)
	cache := map[string]struct{}{}
	var stack []frame
	state := absent
	known := 0
	bestKnown := -1
	var best []*Op
	var bestState string
	e := head.next
	for {
		res.Steps++
		if maxSteps > 0 && res.Steps > maxSteps {
			res.Aborted = true
			res.Report = []string{fmt.Sprintf("key %s: search gave up after %d steps (%d ops, %d unknown)", key, maxSteps, n, res.Unknown)}
			return res
		}
		if e == nil {
			// Everything left is an unknown-outcome op that need not take effect.
			res.OK = true
			return res
		}
		if e.call {
			ns, ok := step(state, e.op)
			if ok {
				i := idx[e.op]
				lin.set(i)
				k := lin.key(ns)
				if _, seen := cache[k]; !seen {
					cache[k] = struct{}{}
					stack = append(stack, frame{e, state})
					state = ns
					lift(e)
					if e.op.Known {
						known++
					}
					if known > bestKnown {
						bestKnown = known
						best = best[:0]
						for _, f := range stack {
							best = append(best, f.n.op)
						}
						bestState = state
					}
					e = head.next
					continue
				}
				lin.clear(i)
			}
			e = e.next
			continue
		}
		// a return whose call could not be linearized: backtrack
		if len(stack) == 0 {
			break
		}
		f := stack[len(stack)-1]
		stack = stack[:len(stack)-1]
		state = f.prev
		lin.clear(idx[f.n.op])
		if f.n.op.Known {
			known--
		}
		unlift(f.n)
		e = f.n.next
	}

	// Not linearizable: explain with the longest partial linearization found.
	in := map[*Op]bool{}
	for _, o := range best {
		in[o] = true
	}
	var stuck *Op
	for _, o := range used {
		if o.Known && !in[o] && (stuck == nil || o.Ret < stuck.Ret) {
			stuck = o
		}
	}
	r := []string{fmt.Sprintf("key %s: NOT linearizable (%d ops, %d with unknown outcome)", key, n, res.Unknown)}
	r = append(r, fmt.Sprintf("longest linearizable prefix: %d ops, ending in value %s; last ones in linearization order:", len(best), bestState))
	from := len(best) - 8
	if from < 0 {
		from = 0
	}
	for _, o := range best[from:] {
		r = append(r, "  "+o.String())
	}
	if stuck != nil {
		r = append(r, "no order places this op (earliest-returning op outside that prefix):")
		r = append(r, "  "+stuck.String())
		r = append(r, "ops overlapping it in real time:")
		cnt := 0
		for _, o := range used {
			if o == stuck {
				continue
			}
			oret := o.Ret
			if !o.Known {
				oret = 1 << 62
			}
			if o.Call < stuck.Ret && oret > stuck.Call {
				if cnt == 16 {
					r = append(r, "  ...")
					break
				}
				r = append(r, "  "+o.String())
				cnt++
			}
		}
	}
	res.Report = r
	return res
}

// CheckHistory splits ops by key and checks each key.
func CheckHistory(ops []*Op, maxSteps int) []Result {
	by := map[string][]*Op{}
	var keys []string
	for _, o := range ops {
		if _, ok := by[o.Key]; !ok {
			keys = append(keys, o.Key)
		}
		by[o.Key] = append(by[o.Key], o)
	}
	sort.Strings(keys)
	var out []Result
	for _, k := range keys {
		out = append(out, checkKey(k, by[k], maxSteps))
	}
	return out
}
