package main

// report_text.go is iperf3's text layout, built from a testView: the
// interval rows, the sender and receiver summary, and the sums; for UDP
// also wperf's notes on transport, drops and rate, apart from iperf3's
// rows.

import (
	"fmt"
	"slices"
	"strings"
)

const separator = "- - - - - - - - - - - - - - - - - - - - - - - - -"

// textRows holds the text renderer's choices for one test.
type textRows struct {
	v       *testView
	unit    byte // -f
	verbose bool // -V
}

// The column headers of UDP's rows: a sender's intervals count what it
// sent; every other UDP row has the receiver's columns.
const (
	udpSentColumns = "         Total Datagrams"
	udpLossColumns = "         Jitter    Lost/Total Datagrams"
)

// header is the column header for rows of the given columns.
func (t textRows) header(columns string) string {
	role := ""
	if t.v.bidir() {
		role = "[Role]"
	}
	return "[ ID]" + role + " Interval           Transfer     Bitrate" + columns
}

// intervalHeader is the column header above interval rows.
func (t textRows) intervalHeader() string {
	switch {
	case t.v.req.udp() && t.onlySends():
		return t.header(udpSentColumns)
	case t.v.req.udp():
		return t.header(udpLossColumns)
	case t.hasTCPColumns():
		return t.header("         Retr  Cwnd")
	}
	return t.header("")
}

// onlySends tells whether this side sends on every stream.
func (t textRows) onlySends() bool {
	for _, s := range t.v.local {
		if !s.Sender {
			return false
		}
	}
	return true
}

// hasTCPColumns: Retr and Cwnd appear where this side sends and knows
// them (TCP_INFO), as iperf3 shows them only where it has them.
func (t textRows) hasTCPColumns() bool {
	for _, s := range t.v.local {
		for _, iv := range s.Intervals {
			if s.Sender && iv.TCP != nil {
				return true
			}
		}
	}
	return false
}

func (t textRows) lead(id string, sending bool) string {
	return "[" + id + "]" + t.v.roleTag(sending)
}

func idLabel(id int) string { return fmt.Sprintf("%3d", id) }

func span(start, end float64) string { return fmt.Sprintf("%6.2f-%-6.2f sec", start, end) }

// traffic is the start of every row: who, when, how much, how fast.
func (t textRows) traffic(id string, sending bool, start, end, secs float64, bytes int64) string {
	return fmt.Sprintf("%s %s  %s  %s", t.lead(id, sending), span(start, end),
		formatUnits(float64(bytes), 'A'), formatUnits(rate(bytes, secs), t.unit)+"/sec")
}

// intervalRow is one stream's (or a sum's) line for one interval, with
// the protocol's columns after the bitrate. The columns end with
// iperf3's padding, so (omitted) lands in iperf3's column.
func (t textRows) intervalRow(id string, sending bool, iv interval, columns string) string {
	row := t.traffic(id, sending, iv.Start, iv.End, iv.End-iv.Start, iv.Bytes) + columns
	if iv.Omitted {
		row += "(omitted)"
	}
	return strings.TrimRight(row, " ")
}

// tcpColumns are an interval row's Retr and Cwnd (a sum's Retr), or the
// blanks iperf3 prints where a row has neither, padded as iperf3 pads
// them.
func tcpColumns(retr *int64, cwnd int64, showCwnd bool) string {
	switch {
	case retr != nil && showCwnd:
		return fmt.Sprintf("  %3d   %s       ", *retr, formatUnits(float64(cwnd), 'A'))
	case retr != nil:
		return fmt.Sprintf("  %3d             ", *retr)
	}
	return blankColumns
}

// udpColumns are a sender interval's datagram count, or a receiver's
// jitter and loss; iperf3 prints the loss percentage with %.2g.
func udpColumns(d *jsonDatagrams) string {
	if d.JitterMs == nil {
		return fmt.Sprintf("  %d", d.Packets)
	}
	return fmt.Sprintf("  %5.3f ms  %d/%d (%.2g%%)", *d.JitterMs, *d.LostPackets, d.Packets, *d.LostPercent)
}

// entryColumns are the protocol's columns of one stream's interval.
func (t textRows) entryColumns(e intervalEntry) string {
	if d := e.udpJSON(); d != nil {
		return udpColumns(d) + "  "
	}
	if e.iv.TCP == nil {
		return tcpColumns(nil, 0, true)
	}
	return tcpColumns(&e.iv.TCP.Retransmits, e.iv.TCP.SndCwnd, true)
}

// intervalSumColumns are the protocol's columns of an interval's sum.
func (t textRows) intervalSumColumns(s *jsonSum) string {
	if s.jsonDatagrams != nil {
		return udpColumns(s.jsonDatagrams) + "  "
	}
	return tcpColumns(s.Retransmits, 0, false)
}

// intervalBlock is the rows of one interval: each direction's streams,
// then their sum when there are several streams (the test's main
// direction first, as iperf3 orders --bidir's rows). Blocks of several
// rows are set apart by a separator line before all but the first.
func (t textRows) intervalBlock(entries []intervalEntry, first bool) []string {
	var lines []string
	if t.v.req.Parallel > 1 && !first {
		lines = append(lines, separator)
	}
	var main, rev []intervalEntry
	for _, e := range entries {
		if t.v.primary(e.sending) {
			main = append(main, e)
		} else {
			rev = append(rev, e)
		}
	}
	for _, dir := range [][]intervalEntry{main, rev} {
		for _, e := range dir {
			lines = append(lines, t.intervalRow(idLabel(e.id), e.sending, e.iv, t.entryColumns(e)))
		}
		if s := sumIntervals(dir); s != nil && t.v.req.Parallel > 1 {
			iv := interval{Start: s.Start, End: s.End, Bytes: s.Bytes, Omitted: *s.Omitted}
			lines = append(lines, t.intervalRow("SUM", dir[0].sending, iv, t.intervalSumColumns(s)))
		}
	}
	return lines
}

// summary is the block after the last interval: the summary's rows,
// then the latency report.
func (t textRows) summary() []string {
	return append(t.summaryRows(), t.v.latencyLines()...)
}

// summaryRows are sender and receiver rows per stream, then their sum,
// one direction after the other (the test's main direction first, as
// iperf3 orders --bidir's), then wperf's own notes on a UDP test. A
// server's report, like iperf3's server, has only its own side's rows.
// -V adds iperf3's heading.
func (t textRows) summaryRows() []string {
	v := t.v
	pairs := v.pairs()
	lines := []string{separator}
	if t.verbose {
		lines = append(lines, "Test Complete. Summary Results:")
	}
	lines = append(lines, t.header(t.summaryColumns(pairs)))
	main, rev := v.splitPairs(pairs)
	for _, dir := range [][]endPair{main, rev} {
		for _, p := range dir {
			lines = append(lines, t.pairRows(p)...)
		}
		if v.req.Parallel > 1 {
			lines = append(lines, t.sumRows(dir)...)
		}
	}
	if v.req.udp() {
		lines = append(lines, t.udpNotes(pairs)...)
	}
	return lines
}

// pairRows are one stream's summary rows: the sender's, and the
// receiver's once known; a server's own side's alone.
func (t textRows) pairRows(p endPair) []string {
	switch {
	case t.v.isServer && p.sending:
		return []string{t.endRow(p, true)}
	case t.v.isServer:
		return append([]string{t.endRow(p, false)}, t.outOfOrder(p)...)
	case p.hasPeer || !p.sending:
		return append([]string{t.endRow(p, true), t.endRow(p, false)}, t.outOfOrder(p)...)
	}
	return []string{t.endRow(p, true)}
}

// summaryColumns names the summary's columns after the bitrate: Retr
// only where a sender row with retransmits is printed, as in iperf3
// (a server prints its own rows only: no Retr where it only receives).
func (t textRows) summaryColumns(pairs []endPair) string {
	if t.v.req.udp() {
		return udpLossColumns
	}
	if t.v.isServer {
		pairs = slices.DeleteFunc(slices.Clone(pairs), func(p endPair) bool { return !p.sending })
	}
	if sendersKnowRetransmits(pairs) {
		return "         Retr"
	}
	return ""
}

// sendersKnowRetransmits tells whether any of the streams' senders read
// its retransmits (TCP_INFO).
func sendersKnowRetransmits(ps []endPair) bool {
	for _, p := range ps {
		if p.sender.TCP != nil {
			return true
		}
	}
	return false
}

func (t textRows) sumRows(ps []endPair) []string {
	_, s, r := t.v.endSums(ps)
	if s == nil {
		return nil
	}
	if !t.v.req.udp() && !sendersKnowRetransmits(ps) {
		s.Retransmits = nil
	}
	sending := ps[0].sending
	sent := t.endRowValues("SUM", sending, s.Seconds, s.Bytes, sumColumns(s), "sender")
	received := t.endRowValues("SUM", sending, r.Seconds, r.Bytes, sumColumns(r), "receiver")
	switch {
	case !t.v.isServer:
		return []string{sent, received}
	case sending:
		return []string{sent}
	}
	return []string{received}
}

// endRow is a stream's sender or receiver summary row. A UDP sender row
// counts what went out; its receiver row, what was lost of all the
// sender numbered. A TCP sender row has Retr where it is known.
func (t textRows) endRow(p endPair, isSender bool) string {
	res, columns := p.receiver, blankColumns
	switch {
	case t.v.req.udp() && isSender:
		res, columns = p.sender, udpColumns(p.datagrams().sentJSON())+"  "
	case t.v.req.udp():
		columns = udpColumns(p.datagrams().receivedJSON()) + "  "
	case isSender:
		res = p.sender
		if res.TCP != nil {
			columns = retrColumn(res.TCP.Retransmits)
		}
	}
	role := "receiver"
	if isSender {
		role = "sender"
	}
	return t.endRowValues(idLabel(p.id), p.sending, res.Seconds, res.Bytes, columns, role)
}

// blankColumns stand for a TCP summary row's Retr where it has none.
const blankColumns = "                  "

func retrColumn(retr int64) string { return fmt.Sprintf("  %3d             ", retr) }

// sumColumns are a sum's columns after the bitrate: the UDP counts, a
// TCP sender's Retr, or blanks.
func sumColumns(s *jsonSum) string {
	switch {
	case s.jsonDatagrams != nil:
		return udpColumns(s.jsonDatagrams) + "  "
	case s.Retransmits != nil:
		return retrColumn(*s.Retransmits)
	}
	return blankColumns
}

func (t textRows) endRowValues(id string, localSends bool, secs float64, bytes int64, columns, role string) string {
	return t.traffic(id, localSends, 0, secs, secs, bytes) + columns + role
}

// outOfOrder is iperf3's line for a UDP stream whose datagrams arrived
// out of order, in iperf3's words and time format.
func (t textRows) outOfOrder(p endPair) []string {
	n := p.datagrams().outOfOrder
	if n <= 0 {
		return nil
	}
	return []string{fmt.Sprintf("%s %4.1f-%4.1f sec  %d datagrams received out-of-order",
		t.lead(idLabel(p.id), p.sending), 0.0, p.receiver.Seconds, n)}
}

// udpNotes are wperf's lines after a UDP summary, apart from iperf3's
// rows so that parsers of those are not upset: the datagrams a WebSocket
// sender dropped, and the rate it reached against the target.
func (t textRows) udpNotes(pairs []endPair) []string {
	var lines []string
	for _, p := range pairs {
		if n := p.datagrams().dropped; n > 0 {
			lines = append(lines, fmt.Sprintf("%s %d datagrams dropped by the sender: the WebSocket connection backed up",
				t.lead(idLabel(p.id), p.sending), n))
		}
	}
	main, rev := t.v.splitPairs(pairs)
	for _, ps := range [][]endPair{main, rev} {
		if l := t.rateNote(ps); l != "" {
			lines = append(lines, l)
		}
	}
	return lines
}

// rateNote compares one direction's send rate, per stream, with the
// target; it is empty while the sender's results are missing.
func (t textRows) rateNote(ps []endPair) string {
	if len(ps) == 0 || !ps[0].senderKnown() {
		return ""
	}
	var perStream float64
	for _, p := range ps {
		perStream += rate(p.sender.Bytes, p.sender.Seconds) / float64(len(ps))
	}
	note := "No target rate (unpaced)"
	if r := t.v.req.Rate; r > 0 {
		note = "Target rate " + t.bitrate(r/8) + " per stream"
	}
	note += "; sent at " + t.bitrate(perStream)
	if len(ps) > 1 {
		note += " per stream on average"
	}
	if role := t.v.roleTag(ps[0].sending); role != "" {
		note = role + " " + note
	}
	return note
}

// bitrate is bytesPerSec in -f's unit, without the column padding.
func (t textRows) bitrate(bytesPerSec float64) string {
	return strings.TrimSpace(formatUnits(bytesPerSec, t.unit)) + "/sec"
}

// transportLine says how a UDP test's datagrams travel; empty for TCP.
func (v *testView) transportLine() string {
	switch {
	case !v.req.udp() || v.transport == "":
		return ""
	case v.transport == "udp":
		return "UDP over real UDP"
	case v.transportReason == "":
		return "UDP over WebSocket"
	case v.req.UDPTransport == "auto":
		return "UDP over WebSocket (auto fell back: " + cleanText(v.transportReason, 200) + ")"
	}
	return "UDP over WebSocket (" + cleanText(v.transportReason, 200) + ")"
}

// logUDP is what the server's log line adds for a UDP test: the
// transport, and loss and jitter over the streams whose receiver
// reported; empty for TCP.
func (v *testView) logUDP() string {
	if !v.req.udp() {
		return ""
	}
	var ds []datagrams
	for _, p := range v.pairs() {
		if p.hasPeer || !p.sending {
			ds = append(ds, p.datagrams())
		}
	}
	d := sumDatagrams(ds)
	return fmt.Sprintf(" transport=%s lost=%d/%d (%.2g%%) jitter=%.3f ms", v.transportName(), d.lost, d.total, d.lostPercent(), d.jitterMs)
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
	if v.unit != 0 {
		t.unit = v.unit
	}
	lines := []string{fmt.Sprintf("Accepted connection from %s, port %d", v.peerHost, v.peerPort)}
	lines = append(lines, v.connectLines()...)
	lines = append(lines, v.reach.lines()...)
	if l := v.transportLine(); l != "" {
		lines = append(lines, l)
	}
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
