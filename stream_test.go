package main

import (
	"testing"
	"time"
)

// TestNextIntervalEndSchedule: nextIntervalEnd's grid of interval ends,
// with and without -i, -O and a set duration.
func TestNextIntervalEndSchedule(t *testing.T) {
	const s = time.Second
	tests := []struct {
		name                     string
		interval, omit, duration time.Duration
		want                     []time.Duration // interval ends in order; the last is the scheduled end when timed
	}{
		{"timed, whole intervals", s, 0, 3 * s, []time.Duration{s, 2 * s, 3 * s}},
		{"timed, partial last interval", s, 0, 2500 * time.Millisecond, []time.Duration{s, 2 * s, 2500 * time.Millisecond}},
		{"half-second intervals", s / 2, 0, 1200 * time.Millisecond, []time.Duration{s / 2, s, 1200 * time.Millisecond}},
		{"omit restarts the grid", s, 1500 * time.Millisecond, 2 * s, []time.Duration{s, 1500 * time.Millisecond, 2500 * time.Millisecond, 3500 * time.Millisecond}},
		{"no interval reports: omit only, then the final interval", 0, s, 2 * s, []time.Duration{s}},
		{"no interval, no omit: the final interval only", 0, 0, 2 * s, nil},
		{"sized test: grid without an end", s, 0, 0, []time.Duration{s, 2 * s, 3 * s, 4 * s}},
		{"sized test, no interval: final interval only", 0, 0, 0, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			run := &testRun{interval: tc.interval, omit: tc.omit, duration: tc.duration}
			var got []time.Duration
			last := time.Duration(0)
			for len(got) < len(tc.want)+2 {
				next, isEnd := run.nextIntervalEnd(last)
				if next < 0 {
					break
				}
				if next <= last && len(got) > 0 {
					t.Fatalf("interval end %v does not advance past %v: the clock would spin", next, last)
				}
				wantEnd := tc.duration > 0 && next == tc.omit+tc.duration
				if isEnd != wantEnd {
					t.Errorf("interval end %v: isEnd = %v, want %v", next, isEnd, wantEnd)
				}
				got = append(got, next)
				last = next
				if tc.duration == 0 && len(got) == len(tc.want) {
					break // a sized test's grid goes on until the streams end
				}
			}
			if len(got) != len(tc.want) {
				t.Fatalf("interval ends %v, want %v", got, tc.want)
			}
			for i := range got {
				if got[i] != tc.want[i] {
					t.Fatalf("interval ends %v, want %v", got, tc.want)
				}
			}
		})
	}
}

func TestPoolReaderStaysInsidePool(t *testing.T) {
	for _, length := range []int{1, 4093, 64 << 10, 1 << 20, 16 << 20} {
		p := newPoolReader(length)
		for i := 0; i < 1000; i++ {
			n := length - i%2 // full and one-short messages
			if n < 1 {
				n = 1
			}
			b := p.next(n)
			if len(b) != n {
				t.Fatalf("length %d: got %d bytes, want %d", length, len(b), n)
			}
		}
	}
}

func TestPoolIsNotCompressible(t *testing.T) {
	p := poolFor(64 << 10)
	var counts [256]int
	for _, b := range p[:1<<20] {
		counts[b]++
	}
	// Random bytes: each value near 1/256 of the total; zeros or a
	// repeated pattern would pile up on a few values.
	for v, c := range counts {
		if c < 3000 || c > 5200 {
			t.Fatalf("byte %#x appears %d times in 1 MiB; the pool is not uniform random", v, c)
		}
	}
}

// TestOmitReceiverNeverExceedsSender runs -O tests in every direction
// and checks what the sender's in-band mark promises: no stream's
// receiver counts more than its sender (before the mark, bytes still in
// flight at the sender's omit boundary could land after the receiver's),
// nor does any sum; and each side's measured intervals add up to its
// totals.
func TestOmitReceiverNeverExceedsSender(t *testing.T) {
	srv := startE2EServer(t)
	for _, tc := range []struct {
		name  string
		extra []string
	}{
		{"upload", nil},
		{"reverse", []string{"-R"}},
		{"bidir", []string{"--bidir"}},
		{"parallel", []string{"-P", "2"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			args := append([]string{"-t", "1", "-O", "0.5", "-i", "0.25", "-J", "--no-latency"}, tc.extra...)
			doc := e2eDecode(t, srv.mustRun(t, args...).stdout)
			for i, s := range e2eList(t, doc, "end.streams") {
				snd, rcv := e2eInt(t, s, "sender.bytes"), e2eInt(t, s, "receiver.bytes")
				if snd == 0 || rcv > snd {
					t.Errorf("stream %d: sender %d bytes, receiver %d: want 0 < receiver ≤ sender", i, snd, rcv)
				}
			}
			for _, sum := range []string{"", "_bidir_reverse"} {
				if _, ok := e2eGet(doc, "end.sum_sent"+sum); !ok {
					continue
				}
				snd, rcv := e2eInt(t, doc, "end.sum_sent"+sum+".bytes"), e2eInt(t, doc, "end.sum_received"+sum+".bytes")
				if rcv > snd {
					t.Errorf("sum%s: sender %d bytes, receiver %d: want receiver ≤ sender", sum, snd, rcv)
				}
			}
			omitIntervalsAddUp(t, doc)
		})
	}
}

// omitIntervalsAddUp checks that each local stream's measured (not
// omitted) intervals add up to its end total.
func omitIntervalsAddUp(t *testing.T, doc map[string]any) {
	t.Helper()
	sums := map[int64]int64{}
	for _, iv := range e2eList(t, doc, "intervals") {
		for _, s := range e2eList(t, iv, "streams") {
			if !e2eBool(t, s, "omitted") {
				sums[e2eInt(t, s, "socket")] += e2eInt(t, s, "bytes")
			}
		}
	}
	for _, s := range e2eList(t, doc, "end.streams") {
		side := "receiver"
		if e2eBool(t, s, "sender.sender") {
			side = "sender"
		}
		id, total := e2eInt(t, s, side+".socket"), e2eInt(t, s, side+".bytes")
		if sums[id] != total {
			t.Errorf("stream %d: measured intervals add up to %d bytes, its %s total is %d", id, sums[id], side, total)
		}
	}
}
