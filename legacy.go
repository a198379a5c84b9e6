package main

// legacy.go speaks the protocol of the original Python wperf (0.2), which
// came before wperf.v1: one WebSocket per stream and no subprotocol; the
// token, then the test's mode, as the first text messages; binary data
// with a sequence number in front; a text marker at the end of each
// side's sending. This file holds what both ends share: the messages and
// the request parser. legacy_link.go runs a connection's data inside a
// testRun, so that intervals, totals and reports are the engine's own;
// legacy_server.go serves old clients, legacy_client.go tests old servers,
// legacy_probes.go has ping and the reverse traceroute.

import (
	"encoding/json"
	"errors"
)

// The old protocol's fixed strings and sizes.
const (
	legacyEOTClient = "EOT_C" // the client's last message of its sending
	legacyEOTServer = "EOT_S" // the server's
	legacySeqLen    = 8       // the sequence number in front of each data message
	// legacyMaxText bounds every text message either end reads: tokens,
	// requests, pings, markers and reports are all small.
	legacyMaxText = 64 << 10
	// legacyMaxMessage is the largest data message wperf takes from an
	// old peer.
	legacyMaxMessage = maxLength + legacySeqLen
	// legacyPeerMaxMessage is what an old peer takes (its WebSocket
	// library's default), so wperf's messages to it stay within it.
	legacyPeerMaxMessage = 1 << 20
)

// legacyProtocolName is how reports and logs name the old protocol.
const legacyProtocolName = "wperf 0.2 (no subprotocol)"

// legacyKind is what an old client asked for.
type legacyKind int

const (
	legacyUpload legacyKind = iota
	legacyReverse
	legacyBidir
	legacyUDP
	legacyPing
	legacyTrace
)

func (k legacyKind) String() string {
	return [...]string{"upload", "reverse", "bidir", "udp", "ping", "reverse-traceroute"}[k]
}

// direction is the kind as a wperf.v1 direction, for reports.
func (k legacyKind) direction() string {
	switch k {
	case legacyReverse:
		return dirDownload
	case legacyBidir:
		return dirBidir
	}
	return dirUpload
}

// parseLegacyRequest reads an old client's test request. Old servers
// never refused one: JSON with a "mode" (the newer clients), JSON with a
// "command" (ping, reverse traceroute), or a bare word (the older
// clients); anything they did not know meant an upload.
func parseLegacyRequest(msg []byte) legacyKind {
	var obj map[string]json.RawMessage
	if err := json.Unmarshal(msg, &obj); err != nil {
		if json.Valid(msg) {
			return legacyUpload // JSON, but not an object
		}
		return legacyMode(string(msg))
	}
	if mode, ok := obj["mode"]; ok {
		return legacyMode(jsonText(mode))
	}
	switch jsonText(obj["command"]) {
	case "ping":
		return legacyPing
	case "reverse_traceroute":
		return legacyTrace
	}
	return legacyUpload
}

// legacyMode maps a mode word, in either of the cases old clients used.
func legacyMode(s string) legacyKind {
	switch s {
	case "UDP":
		return legacyUDP
	case "reverse", "REVERSE":
		return legacyReverse
	case "bidir", "BIDIR":
		return legacyBidir
	}
	return legacyUpload
}

// jsonText is a JSON string's value, or "" for anything else.
func jsonText(raw json.RawMessage) string {
	var s string
	if json.Unmarshal(raw, &s) != nil {
		return ""
	}
	return s
}

// legacyUDPReport is the old server's answer to a UDP test: what it
// received, the loss it saw in the sequence numbers, and the jitter.
type legacyUDPReport struct {
	JitterMs     float64 `json:"jitter_ms"`
	LostPackets  int64   `json:"lost_packets"`
	TotalPackets int64   `json:"total_packets"` // datagrams received
	LossPercent  float64 `json:"loss_percent"`  // lost / (highest sequence + 1) × 100
}

// Errors of an old-protocol test.
var (
	errLegacyEarlyReport = errors.New("the server sent its UDP report before the test ended: old wperf servers end UDP tests at their own -t plus 2 s, so use -t 10 or less")
	errLegacyTextTooLong = errors.New("text message too long")
)
