package main

// report_text.go is iperf3's text layout, built from a testView: the
// interval rows, the sender and receiver summary, and the sums.

import (
	"fmt"
	"strings"
)

const separator = "- - - - - - - - - - - - - - - - - - - - - - - - -"

// textRows holds the text renderer's choices for one test.
type textRows struct {
	v    *testView
	unit byte // -f
}

// intervalHeader is the column header above interval rows.
func (t textRows) intervalHeader() string {
	role := ""
	if t.v.bidir() {
		role = "[Role]"
	}
	h := "[ ID]" + role + " Interval           Transfer     Bitrate"
	if t.hasTCPColumns() {
		h += "         Retr  Cwnd"
	}
	return h
}

// hasTCPColumns: Retr and Cwnd appear where this side sends and knows them.
func (t textRows) hasTCPColumns() bool {
	for _, s := range t.v.local {
		if s.Sender {
			return tcpInfoAvailable
		}
	}
	return false
}

func (t textRows) lead(id string, sending bool) string {
	return "[" + id + "]" + t.v.roleTag(sending)
}

func idLabel(id int) string { return fmt.Sprintf("%3d", id) }

func span(start, end float64) string { return fmt.Sprintf("%6.2f-%-6.2f sec", start, end) }

// intervalRow is one stream's (or a sum's) line for one interval.
func (t textRows) intervalRow(id string, sending bool, iv interval, retr *int64, cwnd int64, showCwnd bool) string {
	secs := iv.End - iv.Start
	row := fmt.Sprintf("%s %s  %s  %s", t.lead(id, sending), span(iv.Start, iv.End),
		formatUnits(float64(iv.Bytes), 'A'), formatUnits(rate(iv.Bytes, secs), t.unit)+"/sec")
	switch {
	case retr != nil && showCwnd:
		row += fmt.Sprintf("  %3d   %s       ", *retr, formatUnits(float64(cwnd), 'A'))
	case retr != nil:
		row += fmt.Sprintf("  %3d", *retr)
	case t.hasTCPColumns():
		row += "                  "
	}
	if iv.Omitted {
		row += "  (omitted)"
	}
	return strings.TrimRight(row, " ")
}

// intervalBlock is the rows of one interval: each stream, then the sums
// when there are several streams. Blocks of several rows are set apart
// by a separator line before all but the first.
func (t textRows) intervalBlock(entries []intervalEntry, first bool) []string {
	var lines []string
	if t.v.req.Parallel > 1 && !first {
		lines = append(lines, separator)
	}
	var main, rev []intervalEntry
	for _, e := range entries {
		var retr *int64
		var cwnd int64
		if e.iv.TCP != nil {
			retr, cwnd = &e.iv.TCP.Retransmits, e.iv.TCP.SndCwnd
		}
		lines = append(lines, t.intervalRow(idLabel(e.id), e.sending, e.iv, retr, cwnd, true))
		if t.v.primary(e.sending) {
			main = append(main, e)
		} else {
			rev = append(rev, e)
		}
	}
	if t.v.req.Parallel == 1 {
		return lines
	}
	for _, dir := range [][]intervalEntry{main, rev} {
		if s := sumIntervals(dir); s != nil {
			iv := interval{Start: s.Start, End: s.End, Bytes: s.Bytes, Omitted: *s.Omitted}
			lines = append(lines, t.intervalRow("SUM", dir[0].sending, iv, s.Retransmits, 0, false))
		}
	}
	return lines
}

// summary is the block after the last interval: sender and receiver rows
// per stream, then the sums.
func (t textRows) summary() []string {
	v := t.v
	pairs := v.pairs()
	lines := []string{separator}
	role := ""
	if v.bidir() {
		role = "[Role]"
	}
	lines = append(lines, "[ ID]"+role+" Interval           Transfer     Bitrate         Retr")
	var sent, recv, sentRev, recvRev []streamResult
	var mainSends, revSends bool
	for _, p := range pairs {
		lines = append(lines, t.endRow(idLabel(p.id), p.sending, p.sender, true))
		if p.hasPeer || !p.sending {
			lines = append(lines, t.endRow(idLabel(p.id), p.sending, p.receiver, false))
		}
		if v.primary(p.sending) {
			sent, recv, mainSends = append(sent, p.sender), append(recv, p.receiver), p.sending
		} else {
			sentRev, recvRev, revSends = append(sentRev, p.sender), append(recvRev, p.receiver), p.sending
		}
	}
	if v.req.Parallel > 1 {
		lines = append(lines, t.sumRows(sent, recv, mainSends)...)
		lines = append(lines, t.sumRows(sentRev, recvRev, revSends)...)
	}
	return lines
}

func (t textRows) sumRows(sent, recv []streamResult, localSends bool) []string {
	if len(sent) == 0 {
		return nil
	}
	s, r := sumEnd(sent, localSends, true), sumEnd(recv, localSends, false)
	return []string{
		t.endRowValues("SUM", localSends, s.Seconds, s.Bytes, s.Retransmits, "sender"),
		t.endRowValues("SUM", localSends, r.Seconds, r.Bytes, nil, "receiver"),
	}
}

func (t textRows) endRow(id string, localSends bool, res streamResult, isSender bool) string {
	if isSender {
		var retr int64
		if res.TCP != nil {
			retr = res.TCP.Retransmits
		}
		return t.endRowValues(id, localSends, res.Seconds, res.Bytes, &retr, "sender")
	}
	return t.endRowValues(id, localSends, res.Seconds, res.Bytes, nil, "receiver")
}

func (t textRows) endRowValues(id string, localSends bool, secs float64, bytes int64, retr *int64, role string) string {
	row := fmt.Sprintf("%s %s  %s  %s", t.lead(id, localSends), span(0, secs),
		formatUnits(float64(bytes), 'A'), formatUnits(rate(bytes, secs), t.unit)+"/sec")
	if retr != nil {
		return row + fmt.Sprintf("  %3d             %s", *retr, role)
	}
	return row + "                  " + role
}

// connectLines are the "[  5] local ... connected to ..." lines.
func (v *testView) connectLines() []string {
	var lines []string
	for _, c := range v.conns {
		lh, lp := hostPort(c.local)
		rh, rp := hostPort(c.remote)
		lines = append(lines, fmt.Sprintf("[%3d] local %s port %d connected to %s port %d", c.id, lh, lp, rh, rp))
	}
	return lines
}

// text is the whole report as text, as the server's --get-server-output
// gives it.
func (v *testView) text() string {
	t := textRows{v: v, unit: 'a'}
	lines := []string{fmt.Sprintf("Accepted connection from %s, port %d", v.peerHost, v.peerPort)}
	lines = append(lines, v.connectLines()...)
	lines = append(lines, t.intervalHeader())
	for k := range v.intervalCount() {
		var entries []intervalEntry
		for _, s := range v.local {
			if k < len(s.Intervals) {
				entries = append(entries, intervalEntry{id: s.ID, sending: s.Sender, iv: s.Intervals[k]})
			}
		}
		lines = append(lines, t.intervalBlock(entries, k == 0)...)
	}
	lines = append(lines, t.summary()...)
	return strings.Join(lines, "\n") + "\n"
}
