package main

// stream_intervals.go is the engine's clock and its counts: it closes
// each interval on schedule, cuts every stream's bytes and TCP_INFO
// samples into it, and turns a run's counts into the results both ends
// report.

import "time"

// maxKeptIntervals bounds the intervals one run keeps for its report
// (about 100 bytes each), whatever -P, -t and -i a client asks for. Past
// it, the report's last interval absorbs the rest; totals are not affected.
const maxKeptIntervals = 250_000

// clock closes intervals on schedule until allDone, then closes the final
// interval. A timed test's last scheduled interval waits briefly for the streams
// to finish, so their last bytes land in it rather than in a sliver of
// an interval of their own.
func (run *testRun) clock(allDone <-chan struct{}) {
	var last time.Duration
	for {
		next, isEnd := run.nextIntervalEnd(last)
		finished := next < 0 || !waitFor(next-time.Since(run.start), allDone) ||
			isEnd && !waitFor(max(run.interval/10, 50*time.Millisecond), allDone)
		if finished {
			<-allDone
			run.closeInterval(time.Since(run.start), true)
			return
		}
		run.closeInterval(next, false)
		last = next
	}
}

// waitFor sleeps for d and reports true, or reports false as soon as
// done closes.
func waitFor(d time.Duration, done <-chan struct{}) bool {
	timer := time.NewTimer(d)
	defer timer.Stop()
	select {
	case <-done:
		return false
	case <-timer.C:
		return true
	}
}

// nextIntervalEnd returns when the interval after last closes, counted from the
// start, and whether that is the scheduled end of a timed test; -1 when
// only the final interval (closed when every stream has ended) is left.
func (run *testRun) nextIntervalEnd(last time.Duration) (time.Duration, bool) {
	end := time.Duration(-1)
	if run.duration > 0 {
		end = run.omit + run.duration
		if last >= end {
			return -1, false
		}
	}
	var next time.Duration
	switch {
	case last < run.omit && run.interval > 0:
		next = min(last+run.interval, run.omit)
	case last < run.omit:
		next = run.omit
	case run.interval > 0:
		next = run.omit + ((last-run.omit)/run.interval+1)*run.interval
	default:
		return -1, false // -i 0: one interval, closed when the streams end
	}
	if end >= 0 && (next < 0 || next >= end) {
		return end, true
	}
	return next, false
}

// closeInterval closes the current interval of every stream at offset at (from
// the start). Intervals in the omitted period count from the start and are
// flagged; later ones count from the end of the omitted period, as iperf3
// shows them.
func (run *testRun) closeInterval(at time.Duration, final bool) {
	if final && run.nothingSinceLastInterval() {
		return
	}
	omitted := run.omit > 0 && at <= run.omit
	if omitted && at == run.omit {
		// Senders wait while the omitted period closes, so each byte
		// lands on exactly one side of it.
		run.acct.Lock()
		defer run.acct.Unlock()
	}
	for _, s := range run.streams {
		run.closeStreamInterval(s, at, final, omitted)
	}
	if omitted && at == run.omit {
		run.omitEnded()
	}
	if run.onIntervalClosed != nil {
		run.onIntervalClosed(final)
	}
}

// nothingSinceLastInterval is true when no stream moved a byte since the last
// interval closed, so a final one would only add an empty sliver of an interval.
func (run *testRun) nothingSinceLastInterval() bool {
	marked := false
	for _, s := range run.streams {
		if s.movedBytes() != s.lastMoved {
			return false
		}
		marked = marked || len(s.intervals) > 0
	}
	return marked
}

// omitEnded restarts the counts: what came before is not measured.
func (run *testRun) omitEnded() {
	for _, s := range run.streams {
		s.baseline = s.lastMoved
		s.tcpBase = s.lastRetr
		s.udpBase = s.lastUDP
	}
	run.omitting = false
}

func (run *testRun) closeStreamInterval(s *stream, at time.Duration, final, omitted bool) {
	moved := s.movedBytes()
	start, end := s.lastAt, at
	if e := time.Duration(s.endAt.Load()); final && e > 0 && e < at {
		end = max(e, start)
	}
	base := run.omit
	if omitted {
		base = 0
	}
	from := s.lastMoved
	if run.omitMarks && !omitted {
		from = s.countFrom(moved)
	}
	iv := interval{
		Start:   (start - base).Seconds(),
		End:     (end - base).Seconds(),
		Bytes:   moved - from,
		Omitted: omitted,
	}
	switch {
	case s.dgram != nil:
		iv.UDP = s.udpInterval()
	case s.sending:
		iv.TCP = s.sampleTCP(omitted)
	}
	s.lastMoved = moved
	s.lastAt = end
	switch {
	case !run.keepIntervals:
		s.intervals = append(s.intervals[:0], iv)
	case len(s.intervals)*len(run.streams) >= maxKeptIntervals:
		// Full: the last interval grows instead, so the list still adds
		// up to the totals.
		last := &s.intervals[len(s.intervals)-1]
		last.End, last.Bytes, last.TCP = iv.End, last.Bytes+iv.Bytes, iv.TCP
		last.UDP = addUDP(last.UDP, iv.UDP)
	default:
		s.intervals = append(s.intervals, iv)
	}
}

// countFrom is where an interval after the omitted period starts
// counting a stream's bytes when the sender marks the omit's end: at the
// mark for the first interval that has it, whichever side of this end's
// own omit boundary it fell; nothing before the mark counts. So the
// measured intervals add up to the measured total.
func (s *stream) countFrom(moved int64) int64 {
	if s.fromMark {
		return s.lastMoved
	}
	m := s.omitMark.Load()
	if m < 0 {
		return moved
	}
	s.fromMark = true
	return m
}

// measuredBytes are the stream's bytes after the omitted period.
func (run *testRun) measuredBytes(s *stream) int64 {
	if !run.omitMarks {
		return s.movedBytes() - s.baseline
	}
	m := s.omitMark.Load()
	if m < 0 {
		return 0
	}
	return s.movedBytes() - m
}

// sampleTCP reads TCP_INFO for an interval's end; nil where unavailable.
func (s *stream) sampleTCP(omitted bool) *tcpSnapshot {
	raw, ok := readTCPInfo(s.conn.NetConn())
	if final := s.finalTCP.Load(); final != nil {
		raw, ok = *final, true
	}
	// A reset socket's counters start again from zero: no sample then.
	if !ok || (s.hasTCP && raw.totalRetrans < s.lastRetr) {
		return nil
	}
	if !s.hasTCP {
		s.lastRetr, s.tcpBase, s.hasTCP = raw.totalRetrans, raw.totalRetrans, true
	}
	snap := &tcpSnapshot{
		Retransmits: raw.totalRetrans - s.lastRetr,
		SndCwnd:     raw.sndCwnd,
		SndWnd:      raw.sndWnd,
		RTT:         raw.rtt,
		RTTVar:      raw.rttVar,
		PMTU:        raw.pmtu,
	}
	s.lastRetr = raw.totalRetrans
	if !omitted {
		s.addTCPSample(raw)
	}
	return snap
}

func (s *stream) addTCPSample(raw tcpRaw) {
	t := &s.totals
	t.MaxSndCwnd = max(t.MaxSndCwnd, raw.sndCwnd)
	t.MaxSndWnd = max(t.MaxSndWnd, raw.sndWnd)
	t.MaxRTT = max(t.MaxRTT, raw.rtt)
	if s.rttCount == 0 || raw.rtt < t.MinRTT {
		t.MinRTT = raw.rtt
	}
	s.rttSum += raw.rtt
	s.rttCount++
	t.MeanRTT = s.rttSum / s.rttCount
	t.Retransmits = raw.totalRetrans - s.tcpBase
}

// summaries are the results without their intervals: what one side
// tells the other, whose reports need only the totals.
func (run *testRun) summaries() []streamResult {
	out := run.results()
	for i := range out {
		out[i].Intervals = nil
	}
	return out
}

// results summarises every stream over the measured (not omitted) time.
func (run *testRun) results() []streamResult {
	out := make([]streamResult, 0, len(run.streams))
	for _, s := range run.streams {
		end := time.Duration(s.endAt.Load()) - run.omit
		res := streamResult{
			ID:        s.id,
			Sender:    s.sending,
			Bytes:     run.measuredBytes(s),
			Seconds:   max(end, 0).Seconds(),
			End:       max(end, 0).Seconds(),
			Intervals: s.intervals,
		}
		if s.hasTCP {
			t := s.totals
			res.TCP = &t
		}
		if s.dgram != nil {
			res.UDP = s.udpTotals()
		}
		out = append(out, res)
	}
	return out
}

// latestIntervals is each stream's most recent interval, for a live
// report.
func (run *testRun) latestIntervals() []streamResult {
	out := make([]streamResult, 0, len(run.streams))
	for _, s := range run.streams {
		iv := s.intervals[len(s.intervals)-1]
		out = append(out, streamResult{ID: s.id, Sender: s.sending, Intervals: []interval{iv}})
	}
	return out
}

// connections are the streams' socket addresses, and the socket facts
// iperf3 reports (socketFacts).
func (run *testRun) connections() ([]connInfo, socketInfo) {
	var conns []connInfo
	for _, s := range run.streams {
		local, remote := s.addrs()
		conns = append(conns, connInfo{id: s.id, local: local, remote: remote})
	}
	return conns, run.socketFacts()
}

// socketFacts are the first stream's MSS and buffer sizes, read once at
// setup, before any data moves, as iperf3 reads them: the kernel grows
// the buffers as data flows, so a later read says more about the run
// than about the setup.
func (run *testRun) socketFacts() socketInfo {
	run.sockOnce.Do(func() {
		if len(run.streams) > 0 && run.streams[0].conn != nil {
			run.sock = socketFacts(run.streams[0].conn.NetConn())
		}
	})
	return run.sock
}

// cpuSince is this process's CPU use since the run started, as a share of
// the wall time.
func (run *testRun) cpuSince() cpuPercent {
	user, sys := processCPU()
	wall := time.Since(run.start)
	if wall <= 0 {
		return cpuPercent{}
	}
	pct := func(d time.Duration) float64 { return 100 * float64(d) / float64(wall) }
	u, s := pct(user-run.cpuUser), pct(sys-run.cpuSys)
	return cpuPercent{Total: u + s, User: u, System: s}
}
