package main

// web_test.go covers the browser page's HTTP side (web.go): its files,
// types and security headers, the page under a prefix, --no-web, the
// token in the subprotocol list, the Origin check and --allow-origin,
// the progress messages the page reads, and the script's syntax.

import (
	"bufio"
	"encoding/base64"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"testing"
	"time"
)

// webGet sends one plain request and returns the response and its body.
func webGet(t *testing.T, port, method, path string) (*http.Response, string) {
	t.Helper()
	req, err := http.NewRequest(method, "http://127.0.0.1:"+port+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp, string(body)
}

// TestWebPageFiles: the page's files come with their content types and
// the security headers, at / and under any prefix; other paths do not.
func TestWebPageFiles(t *testing.T) {
	t.Parallel()
	srv := startE2EServer(t)
	for _, tc := range []struct {
		method, path, ctype, contains string
	}{
		{"GET", "/", "text/html; charset=utf-8", `<script src="app.js"`},
		{"GET", "/wperf/", "text/html; charset=utf-8", `<link rel="stylesheet" href="style.css">`},
		{"GET", "/app.js", "text/javascript; charset=utf-8", "wperf.v1"},
		{"GET", "/wperf/app.js", "text/javascript; charset=utf-8", "wperf.v1"},
		{"GET", "/a/b/style.css", "text/css; charset=utf-8", "prefers-color-scheme"},
		{"HEAD", "/", "text/html; charset=utf-8", ""},
		{"GET", "/nothing.txt", "", ""},
		{"GET", "/echo", "", ""},
		{"POST", "/", "", ""},
	} {
		t.Run(tc.method+" "+tc.path, func(t *testing.T) {
			resp, body := webGet(t, srv.port, tc.method, tc.path)
			if tc.ctype == "" {
				if resp.StatusCode != http.StatusNotFound {
					t.Errorf("status %d, want 404", resp.StatusCode)
				}
				return
			}
			h := resp.Header
			csp := h.Get("Content-Security-Policy")
			switch {
			case resp.StatusCode != http.StatusOK:
				t.Errorf("status %d, want 200", resp.StatusCode)
			case h.Get("Content-Type") != tc.ctype:
				t.Errorf("Content-Type %q, want %q", h.Get("Content-Type"), tc.ctype)
			case h.Get("X-Content-Type-Options") != "nosniff":
				t.Errorf("X-Content-Type-Options %q, want nosniff", h.Get("X-Content-Type-Options"))
			case !strings.Contains(csp, "script-src 'self'") || !strings.Contains(csp, "default-src 'none'") ||
				!strings.Contains(csp, "connect-src 'self'") || strings.Contains(csp, "unsafe") || strings.Contains(csp, "http"):
				t.Errorf("Content-Security-Policy %q: want own scripts and connections only, nothing inline, no other origins", csp)
			case h.Get("Set-Cookie") != "" || h.Get("X-Wperf-Token") != "":
				t.Errorf("a server without --token sets %q / says token %q", h.Get("Set-Cookie"), h.Get("X-Wperf-Token"))
			case !strings.Contains(body, tc.contains):
				t.Errorf("body lacks %q", tc.contains)
			}
		})
	}
}

// TestWebNoWeb: --no-web serves no page; / says what the server is.
func TestWebNoWeb(t *testing.T) {
	t.Parallel()
	srv := startE2EServer(t, "--no-web")
	if resp, body := webGet(t, srv.port, "GET", "/"); resp.StatusCode != http.StatusOK || strings.Contains(body, "<html") ||
		!strings.Contains(body, "wperf -c") {
		t.Errorf("GET / with --no-web: %d %q, want the one-line notice", resp.StatusCode, body)
	}
	if resp, _ := webGet(t, srv.port, "GET", "/app.js"); resp.StatusCode != http.StatusNotFound {
		t.Errorf("GET /app.js with --no-web: status %d, want 404", resp.StatusCode)
	}
}

// TestWebPageAssets: the page has no inline script, style or event
// handler (the CSP would block them), refers to its files by relative
// URLs only (so it works under a proxy's prefix), and stays small.
func TestWebPageAssets(t *testing.T) {
	t.Parallel()
	html, err := webAssets.ReadFile("web/index.html")
	if err != nil {
		t.Fatal(err)
	}
	for _, bad := range []*regexp.Regexp{
		regexp.MustCompile(`<script(?:\s[^>]*)?>[^<]`),        // a script with a body
		regexp.MustCompile(`<script(?:\s(?:[^s>]|s[^r])*)?>`), // a script without src
		regexp.MustCompile(`<style|\sstyle=`),
		regexp.MustCompile(`\son[a-z]+=`),
		regexp.MustCompile(`(?:src|href)="(?:/|[a-z]+:)`),
	} {
		if m := bad.Find(html); m != nil {
			t.Errorf("index.html has %q (pattern %s)", m, bad)
		}
	}
	total := 0
	for _, f := range webTypes {
		b, err := webAssets.ReadFile(f.file)
		if err != nil {
			t.Fatal(err)
		}
		total += len(b)
	}
	if total > webBudget {
		t.Errorf("the page's files take %d bytes, over their %d-byte budget", total, webBudget)
	}
	t.Logf("the page's files: %d bytes", total)
}

// webBudget is what the page's files may weigh together.
const webBudget = 40 << 10

// TestWebJavaScriptSyntax checks app.js with node --check. It skips
// without node, except in CI.
func TestWebJavaScriptSyntax(t *testing.T) {
	t.Parallel()
	node, err := exec.LookPath("node")
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal("CI needs node for the page's syntax check")
		}
		t.Skip("node is missing: the page's syntax is not checked")
	}
	if out, err := exec.Command(node, "--check", "web/app.js").CombinedOutput(); err != nil {
		t.Fatalf("node --check web/app.js: %v\n%s", err, out)
	}
}

// webUpgrade sends an opening handshake for wperf.v1 with extra header
// lines and returns the response and everything the server sent.
func webUpgrade(t *testing.T, port, path string, extra ...string) (*http.Response, string) {
	t.Helper()
	nc, err := net.DialTimeout("tcp", "127.0.0.1:"+port, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	nc.SetDeadline(time.Now().Add(5 * time.Second))
	req := "GET " + path + " HTTP/1.1\r\nHost: 127.0.0.1:" + port + "\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
		"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
	for _, h := range extra {
		req += h + "\r\n"
	}
	if _, err := io.WriteString(nc, req+"\r\n"); err != nil {
		t.Fatal(err)
	}
	var raw strings.Builder
	resp, err := http.ReadResponse(bufio.NewReader(io.TeeReader(nc, &raw)), nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp, raw.String()
}

// TestWebTokenInSubprotocol: a browser's token, in the subprotocol list,
// is accepted like the header's; the server selects only wperf.v1, so
// the token never comes back, and it never reaches the log.
func TestWebTokenInSubprotocol(t *testing.T) {
	t.Parallel()
	const token = "s3cret>>>???" // its base64 differs from its base64url
	srv := startE2EServer(t, "--token", token)
	enc := base64.RawURLEncoding.EncodeToString([]byte(token))
	for _, tc := range []struct {
		name, protocols string
		status          int
	}{
		{"token entry", "wperf.v1, wperf.token." + enc, http.StatusSwitchingProtocols},
		{"token entry first", "wperf.token." + enc + ", wperf.v1", http.StatusSwitchingProtocols},
		{"padded base64url", "wperf.v1, wperf.token." + base64.URLEncoding.EncodeToString([]byte(token)), http.StatusSwitchingProtocols},
		{"wrong token", "wperf.v1, wperf.token." + base64.RawURLEncoding.EncodeToString([]byte("guess")), http.StatusUnauthorized},
		{"not base64url", "wperf.v1, wperf.token.s3cret!", http.StatusUnauthorized},
		{"standard base64", "wperf.v1, wperf.token." + base64.StdEncoding.EncodeToString([]byte(token)), http.StatusUnauthorized},
		{"no token", "wperf.v1", http.StatusUnauthorized},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resp, raw := webUpgrade(t, srv.port, "/", "Sec-WebSocket-Protocol: "+tc.protocols)
			if resp.StatusCode != tc.status {
				t.Fatalf("status %d, want %d", resp.StatusCode, tc.status)
			}
			if tc.status == http.StatusSwitchingProtocols && resp.Header.Get("Sec-WebSocket-Protocol") != subprotocolV1 {
				t.Errorf("server selected %q, want %q alone", resp.Header.Get("Sec-WebSocket-Protocol"), subprotocolV1)
			}
			if strings.Contains(raw, "token") || strings.Contains(raw, enc) {
				t.Errorf("the response echoes the token entry:\n%s", raw)
			}
		})
	}
	// The page itself needs no token, and tells the script it needs one.
	if resp, _ := webGet(t, srv.port, "GET", "/"); resp.StatusCode != http.StatusOK || resp.Header.Get("X-Wperf-Token") != "required" {
		t.Errorf("page with --token: status %d, X-Wperf-Token %q; want 200 and required", resp.StatusCode, resp.Header.Get("X-Wperf-Token"))
	}
	if log := srv.out.String(); strings.Contains(log, token) || strings.Contains(log, enc) {
		t.Errorf("the server's log carries the token:\n%s", log)
	}
}

// TestWebOrigin: upgrades without Origin (wperf, scripts) and from the
// server's own host pass; other sites' pages are refused before the
// upgrade, unless --allow-origin names them.
func TestWebOrigin(t *testing.T) {
	t.Parallel()
	plain := startE2EServer(t)
	listed := startE2EServer(t, "--allow-origin", "https://speed.example.com, http://198.18.0.1:8080/")
	anyone := startE2EServer(t, "--allow-origin", "*")
	for _, tc := range []struct {
		name   string
		srv    *e2eServer
		path   string
		origin string // "": none; PORT stands for the server's port
		status int
	}{
		{"no Origin", plain, "/", "", http.StatusSwitchingProtocols},
		{"own origin", plain, "/", "http://127.0.0.1:PORT", http.StatusSwitchingProtocols},
		{"own host behind a proxy's port", plain, "/wperf/", "https://127.0.0.1", http.StatusSwitchingProtocols},
		{"another site", plain, "/", "http://evil.example", http.StatusForbidden},
		{"another site, echo", plain, "/echo", "http://evil.example", http.StatusForbidden},
		{"another site, host as a prefix", plain, "/", "http://127.0.0.1.evil.example:PORT", http.StatusForbidden},
		{"opaque origin", plain, "/", "null", http.StatusForbidden},
		{"listed", listed, "/", "https://speed.example.com", http.StatusSwitchingProtocols},
		{"listed with port", listed, "/", "http://198.18.0.1:8080", http.StatusSwitchingProtocols},
		{"listed host, other scheme", listed, "/", "http://speed.example.com", http.StatusForbidden},
		{"own origin with a list", listed, "/", "http://127.0.0.1:PORT", http.StatusSwitchingProtocols},
		{"any", anyone, "/", "http://evil.example", http.StatusSwitchingProtocols},
	} {
		t.Run(tc.name, func(t *testing.T) {
			extra := []string{"Sec-WebSocket-Protocol: " + subprotocolV1}
			if tc.origin != "" {
				extra = append(extra, "Origin: "+strings.ReplaceAll(tc.origin, "PORT", tc.srv.port))
			}
			if resp, _ := webUpgrade(t, tc.srv.port, tc.path, extra...); resp.StatusCode != tc.status {
				t.Errorf("status %d, want %d", resp.StatusCode, tc.status)
			}
		})
	}
}

// TestWebAllowOriginFlag: --allow-origin takes "*" or origins, and says
// which value is bad otherwise.
func TestWebAllowOriginFlag(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		value string
		want  []string // nil: a usage error
	}{
		{"https://a.example", []string{"https://a.example"}},
		{"HTTPS://A.example:8443/, http://b.example", []string{"https://a.example:8443", "http://b.example"}},
		{"*", []string{"*"}},
		{"a.example", nil},
		{"ftp://a.example", nil},
		{"https://a.example/path", nil},
		{"https://user@a.example", nil},
		{"", nil},
	} {
		cfg, err := parseArgs([]string{"-s", "--allow-origin", tc.value})
		switch {
		case tc.want == nil && err == nil:
			t.Errorf("--allow-origin %q accepted as %q", tc.value, cfg.allowOrigins)
		case tc.want != nil && err != nil:
			t.Errorf("--allow-origin %q: %v", tc.value, err)
		case tc.want != nil && strings.Join(cfg.allowOrigins, " ") != strings.Join(tc.want, " "):
			t.Errorf("--allow-origin %q gave %q, want %q", tc.value, cfg.allowOrigins, tc.want)
		}
	}
	if _, err := parseArgs([]string{"-c", "127.0.0.1", "--allow-origin", "*"}); err == nil {
		t.Error("--allow-origin accepted on a client")
	}
}

// TestWebProgress: a request with "progress" gets the server's count of
// each interval on the control connection, before the results, adding
// up to the results' total; and the accept names the client's address.
// A request without it gets none.
func TestWebProgress(t *testing.T) {
	t.Parallel()
	for _, progress := range []bool{true, false} {
		srv := startE2EServer(t)
		req := testRequest{Type: msgTest, Version: protocolVersion, Cookie: "webprogress" + strings.Repeat("x", 16), Direction: dirUpload,
			Protocol: "tcp", Time: 1, Length: 64 << 10, Parallel: 2, Interval: 0.2, Progress: progress}
		accept, intervals, results := webRawUpload(t, srv.port, req)
		var received, total int64
		for _, m := range intervals {
			received += m.Received
		}
		for _, s := range results.Streams {
			total += s.Bytes
		}
		switch {
		case !progress && (len(intervals) > 0 || accept.Client != ""):
			t.Errorf("without progress: %d interval messages, client %q", len(intervals), accept.Client)
		case !progress:
		case len(intervals) < 4:
			t.Errorf("a 1 s test at 0.2 s intervals sent %d interval messages", len(intervals))
		case received != total || total == 0:
			t.Errorf("interval messages add up to %d bytes received, results say %d", received, total)
		case !strings.HasPrefix(accept.Client, "127.0.0.1:"):
			t.Errorf("accept names the client %q, want 127.0.0.1:PORT", accept.Client)
		}
	}
}

// webRawUpload runs an upload as the page does, over the wire protocol,
// and returns the accept, the interval messages and the server's results.
func webRawUpload(t *testing.T, port string, req testRequest) (acceptMsg, []intervalMsg, resultsMsg) {
	t.Helper()
	rt := &e2eRawTest{}
	t.Cleanup(rt.drop)
	dial := func() *wsConn { return e2eRawDial(t, port) }
	rt.ctrl = dial()
	read := func(v any) string {
		rt.ctrl.SetReadDeadline(time.Now().Add(5 * time.Second))
		_, msg, err := rt.ctrl.ReadMessage(nil)
		if err != nil {
			t.Fatal(err)
		}
		kind, _ := messageType(msg)
		if err := json.Unmarshal(msg, v); err != nil {
			t.Fatal(err)
		}
		return kind
	}
	if err := sendJSON(rt.ctrl, req); err != nil {
		t.Fatal(err)
	}
	var accept struct {
		acceptMsg
		Error string `json:"error"`
	}
	if kind := read(&accept); kind != msgAccept {
		t.Fatalf("got %q (%s), want accept", kind, accept.Error)
	}
	for i := range req.Parallel {
		c := dial()
		rt.streams = append(rt.streams, c)
		sendJSON(c, streamHello{Type: msgStream, Cookie: req.Cookie, ID: i + 1, Direction: streamUp})
	}
	var start startMsg
	if kind := read(&start); kind != msgStart {
		t.Fatalf("got %q, want start", kind)
	}
	payload := make([]byte, req.Length)
	for end := time.Now().Add(seconds2dur(req.Time)); time.Now().Before(end); {
		for _, c := range rt.streams {
			c.WriteMessage(opBinary, payload)
		}
	}
	for _, c := range rt.streams {
		c.Close(statusNormal, "")
	}
	sendJSON(rt.ctrl, resultsMsg{Type: msgResults})
	var intervals []intervalMsg
	for {
		var raw json.RawMessage
		switch kind := read(&raw); kind {
		case msgInterval:
			var m intervalMsg
			json.Unmarshal(raw, &m)
			intervals = append(intervals, m)
		case msgResults:
			var res resultsMsg
			json.Unmarshal(raw, &res)
			return accept.acceptMsg, intervals, res
		default:
			t.Fatalf("unexpected %s", raw)
		}
	}
}
