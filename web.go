package main

// web.go is the browser page: the embedded speed test that `wperf -s`
// serves on a plain GET (web/), its security headers, the Origin check
// that keeps other sites' pages off the WebSocket endpoint, and the
// token a page may carry in Sec-WebSocket-Protocol, since browsers
// cannot set Authorization on a WebSocket.

import (
	"crypto/sha256"
	"crypto/subtle"
	"embed"
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"path"
	"strings"
)

// webAssets is the page: plain HTML, CSS and JavaScript, no build step.
//
//go:embed web/index.html web/app.js web/style.css
var webAssets embed.FS

// webTypes are the page's files by the last element of the request's
// path, with their content types; "" is the directory itself, so the
// page works at "/" and under any prefix a reverse proxy mounts it at.
var webTypes = map[string]struct{ file, ctype string }{
	"":          {"web/index.html", "text/html; charset=utf-8"},
	"app.js":    {"web/app.js", "text/javascript; charset=utf-8"},
	"style.css": {"web/style.css", "text/css; charset=utf-8"},
}

// webCSP lets the page load only its own files and talk only to its own
// origin ('self' covers ws: and wss: to the same host, CSP Level 3
// §6.7.2.8); no inline script or style, no frames, no forms.
const webCSP = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; " +
	"connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"

// servePage answers a plain GET or HEAD for one of the page's files and
// reports whether it did. Nothing in the page is secret, so it needs no
// token; a header tells the page when the server wants one, so that it
// asks for it.
func servePage(w http.ResponseWriter, hr *http.Request, tokenRequired bool) bool {
	if hr.Method != http.MethodGet && hr.Method != http.MethodHead {
		return false
	}
	dir, name := path.Split(hr.URL.Path)
	f, ok := webTypes[name]
	if !ok || !strings.HasPrefix(dir, "/") {
		return false
	}
	body, err := webAssets.ReadFile(f.file)
	if err != nil {
		return false
	}
	h := w.Header()
	h.Set("Content-Type", f.ctype)
	h.Set("Content-Security-Policy", webCSP)
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "no-referrer")
	h.Set("Cache-Control", "no-cache")
	h.Set("Content-Length", fmt.Sprint(len(body)))
	if tokenRequired {
		h.Set("X-Wperf-Token", "required")
	}
	if hr.Method == http.MethodGet {
		w.Write(body)
	}
	return true
}

// tokenProtocolPrefix starts the Sec-WebSocket-Protocol entry that
// carries a token: "wperf.token." and the token in unpadded base64url
// (RFC 4648 §5), whose alphabet fits a header token (RFC 7230 §3.2.6).
// The server never selects it, so it is never sent back.
const tokenProtocolPrefix = "wperf.token."

// subprotocolToken is the token a request carries in its subprotocol
// list, and whether it carries one.
func subprotocolToken(h http.Header) (string, bool) {
	for _, p := range headerTokens(h, "Sec-WebSocket-Protocol") {
		if enc, ok := strings.CutPrefix(p, tokenProtocolPrefix); ok {
			raw, err := base64.RawURLEncoding.DecodeString(strings.TrimRight(enc, "="))
			return string(raw), err == nil
		}
	}
	return "", false
}

// requestTokenMatches accepts the token from the Authorization header
// or, for browsers, from the subprotocol list.
func requestTokenMatches(hr *http.Request, token string) bool {
	if tokenMatches(hr.Header.Get("Authorization"), token) {
		return true
	}
	got, ok := subprotocolToken(hr.Header)
	return ok && secretEqual(got, token)
}

// secretEqual compares two secrets in constant time. Hashing both sides
// first keeps the comparison's length fixed too.
func secretEqual(got, want string) bool {
	a, b := sha256.Sum256([]byte(got)), sha256.Sum256([]byte(want))
	return subtle.ConstantTimeCompare(a[:], b[:]) == 1
}

// errCrossOrigin refuses a browser's upgrade from another site's page.
var errCrossOrigin = errors.New("cross-origin WebSocket refused (see --allow-origin)")

// originAllowed tells whether a WebSocket upgrade may proceed. A request
// without Origin is not from a browser page (wperf, scripts) and may. A
// browser's Origin (RFC 6454 §7) must name the host the request was sent
// to, ports aside (a reverse proxy may rewrite the Host header's port),
// or be one of the origins --allow-origin lists ("*": any).
func originAllowed(hr *http.Request, allowed []string) bool {
	origin := hr.Header.Get("Origin")
	if origin == "" {
		return true
	}
	o := strings.ToLower(strings.TrimRight(origin, "/"))
	for _, a := range allowed {
		if a == "*" || a == o {
			return true
		}
	}
	u, err := url.Parse(o)
	if err != nil || u.Host == "" {
		return false
	}
	return strings.EqualFold(u.Hostname(), hostName(hr.Host))
}

// hostName is a Host header's name without its port.
func hostName(host string) string {
	if u, err := url.Parse("http://" + host); err == nil {
		return u.Hostname()
	}
	return host
}

// parseOrigins reads --allow-origin's comma-separated list: "*", or
// origins as browsers send them, scheme://host[:port] without a path.
func parseOrigins(v string) ([]string, error) {
	var out []string
	for _, o := range strings.Split(v, ",") {
		o = strings.ToLower(strings.TrimRight(strings.TrimSpace(o), "/"))
		if o == "*" {
			out = append(out, o)
			continue
		}
		u, err := url.Parse(o)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.Path != "" || u.RawQuery != "" || u.User != nil {
			return nil, fmt.Errorf("bad --allow-origin %q: want *, or origins like https://speed.example.com[:PORT], comma-separated", o)
		}
		out = append(out, o)
	}
	return out, nil
}

// intervalMsg is the server's count of one interval, sent when the
// request asks for progress: bytes its receiving streams received and
// its sending streams sent, all streams together.
type intervalMsg struct {
	Type     string  `json:"type"`
	Start    float64 `json:"start"`
	End      float64 `json:"end"`
	Received int64   `json:"received"`
	Sent     int64   `json:"sent"`
	Omitted  bool    `json:"omitted,omitempty"`
	Final    bool    `json:"final,omitempty"`
}

// progressBacklog is how many interval messages may wait for a slow
// control connection; later ones are dropped rather than stall the clock.
const progressBacklog = 8

// reportProgress sends an interval message on the control connection each
// time the run closes an interval. The clock only hands messages over; a
// goroutine of their own writes them, so a client that reads slowly loses
// progress messages, never the test's timing. The returned function ends
// that goroutine once the run is over.
func (t *serverTest) reportProgress(run *testRun) (wait func()) {
	msgs := make(chan intervalMsg, progressBacklog)
	done := make(chan struct{})
	go func() {
		defer close(done)
		// Once a write fails (the client read nothing for closeWait), the
		// rest are dropped, so the results wait for one such bound at most.
		failed := false
		for m := range msgs {
			if !failed {
				failed = sendJSON(t.ctrl, m) != nil
			}
		}
	}()
	run.onIntervalClosed = func(final bool) {
		select {
		case msgs <- progressOf(run.latestIntervals(), final):
		default:
		}
	}
	return func() {
		close(msgs)
		<-done
	}
}

// progressOf sums the streams' latest intervals.
func progressOf(latest []streamResult, final bool) intervalMsg {
	m := intervalMsg{Type: msgInterval, Final: final}
	for _, r := range latest {
		iv := r.Intervals[0]
		m.Start, m.End, m.Omitted = iv.Start, max(m.End, iv.End), iv.Omitted
		if r.Sender {
			m.Sent += iv.Bytes
		} else {
			m.Received += iv.Bytes
		}
	}
	return m
}
