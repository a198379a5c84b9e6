package main

// proto_test.go covers the wire protocol's own bounds on a test request
// (testRequest.check, which the server applies before its configured
// caps; server_test.go tests those caps) and what a request implies: the
// bytes per direction, the streams, and when a run must end. The bounds
// of a reverse traceroute request are reverse_trace_test.go's.

import (
	"math"
	"strings"
	"testing"
	"time"
)

// validRequest is a request every bound admits: 10 s upload, one stream.
func validRequest() testRequest {
	return testRequest{
		Type: msgTest, Version: protocolVersion, Cookie: strings.Repeat("c", 32),
		Direction: dirUpload, Protocol: "tcp", Time: 10, Length: 128 << 10, Parallel: 1, Interval: 1,
	}
}

func TestRequestBounds(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name   string
		change func(r *testRequest)
		err    string // a part of the error; "" when the request is fine
	}{
		{"valid", func(r *testRequest) {}, ""},
		{"download", func(r *testRequest) { r.Direction = dirDownload }, ""},
		{"bidir", func(r *testRequest) { r.Direction = dirBidir }, ""},
		{"bytes instead of time", func(r *testRequest) { r.Time, r.Bytes = 0, 1 }, ""},
		{"blocks instead of time", func(r *testRequest) { r.Time, r.Blocks = 0, 1 }, ""},
		{"shortest cookie", func(r *testRequest) { r.Cookie = strings.Repeat("c", 16) }, ""},
		{"longest cookie", func(r *testRequest) { r.Cookie = strings.Repeat("c", 64) }, ""},
		{"smallest message", func(r *testRequest) { r.Length = 1 }, ""},
		{"largest message", func(r *testRequest) { r.Length = maxLength }, ""},
		{"most streams", func(r *testRequest) { r.Parallel = maxParallel }, ""},
		{"no interval reports", func(r *testRequest) { r.Interval = 0 }, ""},
		{"shortest interval", func(r *testRequest) { r.Interval = minInterval }, ""},
		{"server output text", func(r *testRequest) { r.ServerOutput = "text" }, ""},
		{"server output json", func(r *testRequest) { r.ServerOutput = "json" }, ""},
		{"longest time", func(r *testRequest) { r.Time, r.Omit = 1e9, 1e9 }, ""},

		{"another version", func(r *testRequest) { r.Version = protocolVersion + 1 }, "protocol version 2"},
		{"cookie too short", func(r *testRequest) { r.Cookie = strings.Repeat("c", 15) }, "cookie"},
		{"cookie too long", func(r *testRequest) { r.Cookie = strings.Repeat("c", 65) }, "cookie"},
		{"unknown direction", func(r *testRequest) { r.Direction = "sideways" }, `direction "sideways"`},
		{"sctp", func(r *testRequest) { r.Protocol = "sctp" }, `protocol "sctp"`},
		{"udp", func(r *testRequest) { r.Protocol, r.Length, r.UDPTransport = "udp", 1400, "auto" }, ""},
		{"udp datagram too big", func(r *testRequest) { r.Protocol, r.UDPTransport = "udp", "auto" }, "UDP datagram of 131072 bytes"},
		{"udp datagram too small", func(r *testRequest) { r.Protocol, r.Length, r.UDPTransport = "udp", 15, "ws" }, "UDP datagram of 15 bytes"},
		{"udp transport", func(r *testRequest) { r.Protocol, r.Length, r.UDPTransport = "udp", 1400, "tcp" }, `udp_transport "tcp"`},
		{"negative rate", func(r *testRequest) { r.Rate = -1 }, "rate -1"},
		{"rate too high", func(r *testRequest) { r.Rate = 2 * maxRate }, "rate 2e+11"},
		{"empty message", func(r *testRequest) { r.Length = 0 }, "length 0"},
		{"message too large", func(r *testRequest) { r.Length = maxLength + 1 }, "length"},
		{"no streams", func(r *testRequest) { r.Parallel = 0 }, "parallel 0"},
		{"too many streams", func(r *testRequest) { r.Parallel = maxParallel + 1 }, "parallel"},
		{"negative bytes", func(r *testRequest) { r.Bytes = -1 }, "negative"},
		{"negative blocks", func(r *testRequest) { r.Blocks = -1 }, "negative"},
		{"negative omit", func(r *testRequest) { r.Omit = -1 }, "negative"},
		{"negative interval", func(r *testRequest) { r.Interval = -1 }, "negative"},
		{"negative window", func(r *testRequest) { r.Window = -1 }, "negative"},
		{"negative mss", func(r *testRequest) { r.MSS = -1 }, "negative"},
		{"blocks overflow", func(r *testRequest) { r.Blocks = math.MaxInt64/int64(r.Length) + 1 }, "overflows"},
		{"interval too short", func(r *testRequest) { r.Interval = minInterval / 2 }, "below"},
		{"nothing to measure", func(r *testRequest) { r.Time = 0 }, "needs a time"},
		{"time NaN", func(r *testRequest) { r.Time = math.NaN() }, "needs a time"},
		{"time too long", func(r *testRequest) { r.Time = 1e9 + 1 }, "time out of range"},
		{"omit too long", func(r *testRequest) { r.Omit = 1e9 + 1 }, "time out of range"},
		{"unknown server output", func(r *testRequest) { r.ServerOutput = "xml" }, `server_output "xml"`},
	}
	for _, tc := range cases {
		req := validRequest()
		tc.change(&req)
		err := req.check()
		switch {
		case tc.err == "" && err != nil:
			t.Errorf("%s: refused: %v", tc.name, err)
		case tc.err != "" && err == nil:
			t.Errorf("%s: accepted, want an error about %q", tc.name, tc.err)
		case tc.err != "" && !strings.Contains(err.Error(), tc.err):
			t.Errorf("%s: error %q, want it to mention %q", tc.name, err, tc.err)
		}
	}
}

// TestRequestPlan: what a request implies for a run.
func TestRequestPlan(t *testing.T) {
	t.Parallel()
	const idle, limit = 30 * time.Second, time.Hour
	cases := []struct {
		name     string
		change   func(r *testRequest)
		target   int64
		streams  int
		planned  float64
		hardStop time.Duration
	}{
		{"timed", func(r *testRequest) {}, 0, 1, 10, 40 * time.Second},
		{"timed, omit", func(r *testRequest) { r.Omit = 2 }, 0, 1, 12, 42 * time.Second},
		{"timed past the limit", func(r *testRequest) { r.Time = 7200 }, 0, 1, 7200, limit},
		{"bytes", func(r *testRequest) { r.Time, r.Bytes, r.Omit = 0, 5<<20, 1 }, 5 << 20, 1, 1, limit},
		{"blocks", func(r *testRequest) { r.Time, r.Blocks, r.Length = 0, 300, 16<<10 }, 300 * 16 << 10, 1, 0, limit},
		{"blocks win over bytes", func(r *testRequest) { r.Bytes, r.Blocks, r.Length = 1, 2, 10 }, 20, 1, 0, limit},
		{"parallel", func(r *testRequest) { r.Parallel = 4 }, 0, 4, 10, 40 * time.Second},
		{"bidir, parallel", func(r *testRequest) { r.Direction, r.Parallel = dirBidir, 4 }, 0, 8, 10, 40 * time.Second},
	}
	for _, tc := range cases {
		req := validRequest()
		tc.change(&req)
		if got := req.byteTarget(); got != tc.target {
			t.Errorf("%s: byteTarget = %d, want %d", tc.name, got, tc.target)
		}
		if got := req.streamCount(); got != tc.streams {
			t.Errorf("%s: streamCount = %d, want %d", tc.name, got, tc.streams)
		}
		if got := req.plannedSeconds(); got != tc.planned {
			t.Errorf("%s: plannedSeconds = %g, want %g", tc.name, got, tc.planned)
		}
		if got := req.hardStop(idle, limit); got != tc.hardStop {
			t.Errorf("%s: hardStop = %v, want %v", tc.name, got, tc.hardStop)
		}
	}
}
