package main

// legacy_server.go serves clients of the original Python wperf: a
// WebSocket that offers no wperf.* subprotocol (and is not the echo
// endpoint) is one. They get the same admission as any test (slots,
// --max-duration, the idle timeout, the reverse traceroute's limits) and
// show in the log as "legacy"; --no-legacy refuses them.

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Errors of an old client's first messages.
var (
	errLegacyRefused = errors.New("this server does not serve the original wperf's protocol (--no-legacy): use a wperf.v1 client")
	errLegacyToken   = errors.New("invalid token")
	errLegacyBinary  = errors.New("the token and the request must be text messages")
)

// isLegacyUpgrade tells an old client's handshake: a WebSocket upgrade,
// not for the echo endpoint, that offers no wperf.* subprotocol.
func isLegacyUpgrade(hr *http.Request) bool {
	if !isUpgrade(hr) || strings.HasSuffix(hr.URL.Path, "/echo") {
		return false
	}
	for _, p := range headerTokens(hr.Header, "Sec-WebSocket-Protocol") {
		if strings.HasPrefix(p, "wperf.") {
			return false
		}
	}
	return true
}

// serveLegacy serves one old client's connection. Its token is its first
// message, not a header, so it comes here before the server's
// Authorization check.
func (s *server) serveLegacy(w http.ResponseWriter, hr *http.Request) {
	c, err := upgrade(w, hr, upgradeOptions{connOptions: connOptions{maxMessage: legacyMaxText, readBuffer: 16 << 10}})
	if err != nil {
		return
	}
	peer, _ := s.peerAddr(hr)
	if s.cfg.noLegacy {
		s.logRefusal(peer, statusPolicyViolation, errLegacyRefused)
		c.Close(statusPolicyViolation, shortReason(errLegacyRefused))
		return
	}
	kind, err := s.legacyHello(c)
	var ce *closeError
	switch {
	case errors.Is(err, errLegacyToken) || errors.Is(err, errLegacyBinary):
		s.logRefusal(peer, statusPolicyViolation, fmt.Errorf("legacy client: %w", err))
		c.Close(statusPolicyViolation, err.Error())
		return
	case err != nil && !errors.As(err, &ce):
		c.Abort() // gone, or silent past the idle timeout
		return
	case err != nil:
		return // the engine already closed it
	}
	switch kind {
	case legacyPing:
		s.legacyPing(c, peer)
	case legacyTrace:
		s.legacyTrace(c, peer)
	default:
		s.legacyTest(c, peer, kind)
	}
}

// legacyHello reads the token (when the server has one) and the request.
func (s *server) legacyHello(c *wsConn) (legacyKind, error) {
	msg, err := readLegacyText(c, s.idle)
	if err != nil {
		return 0, err
	}
	if s.cfg.token != "" {
		if !legacyTokenMatches(msg, s.cfg.token) {
			return 0, errLegacyToken
		}
		if msg, err = readLegacyText(c, s.idle); err != nil {
			return 0, err
		}
	}
	return parseLegacyRequest(msg), nil
}

// readLegacyText reads one text message within timeout.
func readLegacyText(c *wsConn, timeout time.Duration) ([]byte, error) {
	c.SetReadDeadline(time.Now().Add(timeout))
	op, msg, err := c.ReadMessage(nil)
	switch {
	case err != nil:
		return nil, err
	case op != opText:
		return nil, errLegacyBinary
	}
	return msg, nil
}

// legacyTokenMatches compares in constant time, over hashes so the
// length does not show either.
func legacyTokenMatches(got []byte, token string) bool {
	a, b := sha256.Sum256(got), sha256.Sum256([]byte(token))
	return subtle.ConstantTimeCompare(a[:], b[:]) == 1
}

// ---- admission ----

// legacyGroups ties an old client's parallel connections into one test:
// the old protocol gives the server no way to tell they belong together,
// so the connections of one mode from one address that arrive within
// streamJoinTimeout of the first share its slot, up to --max-parallel.
// Its zero value is ready to use.
type legacyGroups struct {
	mu   sync.Mutex
	open map[string]*legacyGroup
}

type legacyGroup struct {
	key     string
	sess    *session
	opened  time.Time
	joined  int // connections so far: the next one's number
	running int
}

// legacyJoin admits one old-protocol connection: into its group, or as a
// new test through the server's admission. It returns the connection's
// number in its group.
func (s *server) legacyJoin(kind legacyKind, peer string) (*legacyGroup, int, statusCode, error) {
	host, _ := splitPeer(peer)
	key := host + " " + kind.String()
	gs := &s.legacy
	gs.mu.Lock()
	defer gs.mu.Unlock()
	if g := gs.open[key]; g != nil && g.running > 0 && g.joined < s.cfg.maxParallel && time.Since(g.opened) < streamJoinTimeout {
		g.joined++
		g.running++
		return g, g.joined, 0, nil
	}
	req := s.legacyRequest(kind)
	sess, code, err := s.admit(&req, peer)
	if err != nil {
		return nil, 0, code, err
	}
	g := &legacyGroup{key: key, sess: sess, opened: time.Now(), joined: 1, running: 1}
	if gs.open == nil {
		gs.open = map[string]*legacyGroup{}
	}
	gs.open[key] = g
	return g, 1, 0, nil
}

// legacyLeave ends one connection of a group; the last one frees the
// group's slot.
func (s *server) legacyLeave(g *legacyGroup) {
	gs := &s.legacy
	gs.mu.Lock()
	g.running--
	last := g.running == 0
	if last && gs.open[g.key] == g {
		delete(gs.open, g.key)
	}
	gs.mu.Unlock()
	if last {
		s.release(g.sess)
	}
}

// legacyRequest is an old client's test in wperf.v1's terms, for the
// server's admission and reports: it runs until the client ends it, for
// at most --max-duration.
func (s *server) legacyRequest(kind legacyKind) testRequest {
	req := testRequest{Type: msgTest, Version: protocolVersion, Cookie: newCookie(), Direction: kind.direction(),
		Protocol: "tcp", Time: s.cfg.maxDuration, Length: 64<<10 + legacySeqLen, Parallel: 1, Interval: 1,
		Client: legacyProtocolName}
	if kind == legacyUDP {
		req.Protocol, req.Length, req.UDPTransport = "udp", defaultDatagram, "ws"
	}
	return req
}

// ---- bandwidth tests ----

// legacyTest runs one connection of an old client's test.
func (s *server) legacyTest(c *wsConn, peer string, kind legacyKind) {
	g, id, code, err := s.legacyJoin(kind, peer)
	if err != nil {
		s.logRefusal(peer, statusPolicyViolation, fmt.Errorf("legacy %s: %w", kind, err))
		c.Close(code, shortReason(err))
		return
	}
	s.tests.Add(1)
	defer s.tests.Done()
	defer s.legacyLeave(g)
	req := g.sess.req
	sockOpts{}.applyAccepted(c.NetConn()) // Nagle on, as for every test
	c.SetLimits(legacyMaxMessage, streamReadBuffer(req.Length, 1))
	run := newTestRun(&req, s.idle, req.hardStop(s.idle, seconds2dur(s.cfg.maxDuration)+s.idle))
	run.keepIntervals = s.cfg.json
	tx, rx := legacyServerStreams(kind, id)
	link := newLegacyLink(newLegacyRun(run, false), c, tx, rx)
	link.srv = s
	run.streams = link.streams()
	stop := context.AfterFunc(s.ctx, func() {
		run.stop()
		c.Abort()
	})
	defer stop()
	started := time.Now()
	runErr := run.run(s.ctx)
	v := &testView{req: &req, isServer: true, local: run.results(), localCPU: run.cpu, localCong: run.congestion, started: started}
	v.peerHost, v.peerPort = splitPeer(peer)
	v.conns, v.sockInfo = run.connections()
	if kind == legacyUDP {
		v.transport = "websocket"
	}
	s.logLegacyTest(v, kind, id, runErr)
}

// legacyServerStreams are the server's streams on an old client's
// connection, numbered by the connection's place in its group.
func legacyServerStreams(kind legacyKind, id int) (tx, rx *stream) {
	switch kind {
	case legacyReverse:
		return &stream{id: id, sending: true}, nil
	case legacyBidir:
		return &stream{id: id, sending: true}, &stream{id: id}
	case legacyUDP:
		return nil, &stream{id: id, dgram: newDatagramStream(true)}
	}
	return nil, &stream{id: id}
}

// logLegacyTest is the server's record of one old-protocol connection,
// as logTest writes any test's, marked legacy.
func (s *server) logLegacyTest(v *testView, kind legacyKind, id int, runErr error) {
	if s.cfg.json {
		doc := struct {
			jsonDoc
			Legacy legacyLogInfo `json:"legacy"`
		}{v.document(), legacyLogInfo{Mode: kind.String(), Stream: id}}
		doc.Start.WPerf.Subprotocol, doc.Start.WPerf.ProtocolVersion = "", 0
		if runErr != nil {
			doc.Error = runErr.Error()
		}
		b, _ := json.Marshal(doc)
		s.out.raw(string(b) + "\n")
		return
	}
	bytes, secs := v.localTotals()
	line := fmt.Sprintf("%s %s legacy %s stream %d %.2f sec %s %s",
		v.started.UTC().Format(time.RFC3339), net.JoinHostPort(v.peerHost, strconv.Itoa(v.peerPort)),
		kind, id, secs, formatUnits(float64(bytes), 'A'), formatUnits(rate(bytes, secs), 'a')+"/sec")
	line += v.logUDP()
	if runErr != nil {
		line += " error: " + runErr.Error()
	}
	s.out.println(line)
}

// legacyLogInfo marks an old client's test in the -J log.
type legacyLogInfo struct {
	Mode   string `json:"mode"`
	Stream int    `json:"stream"` // the connection's number among its test's
}
