//go:build linux

package main

// browser_test.go runs the browser page (web.go, web/) in a real
// browser: Debian's headless chromium, with a fresh profile and no
// network beyond the test's own addresses, driven over the DevTools
// protocol, which is a WebSocket that our own client (ws.go) speaks.

import (
	"bufio"
	"context"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// browserBinary finds chromium; the test skips without it, except in
// CI, where a missing browser is a broken setup.
func browserBinary(t *testing.T) string {
	t.Helper()
	for _, name := range []string{"chromium", "chromium-headless-shell", "chromium-browser"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	if os.Getenv("CI") != "" {
		t.Fatal("the browser test needs chromium (apt-get install -y --no-install-recommends chromium)")
	}
	t.Skip("the browser test needs chromium (apt-get install -y --no-install-recommends chromium); skipped")
	return ""
}

// browser is one headless chromium and a DevTools session on one page.
type browser struct {
	t       *testing.T
	cmd     *exec.Cmd
	conn    *wsConn
	session string // the page target's session id
	nextID  int
}

var devtoolsURL = regexp.MustCompile(`DevTools listening on (ws://\S+)`)

// startBrowser runs chromium headless with a fresh profile. Its proxy
// is a closed port on loopback and its resolver resolves nothing but
// host (an address), so it reaches only loopback (which Chromium never
// proxies) and the addresses bypass lists. spki, when set, is the one
// self-signed certificate it trusts (the base64 SHA-256 of its key).
func startBrowser(t *testing.T, host, bypass, spki string) *browser {
	t.Helper()
	bin := browserBinary(t)
	profile := t.TempDir()
	args := append([]string{}, bin,
		"--headless", "--no-sandbox", "--disable-gpu", "--user-data-dir="+profile,
		"--remote-debugging-port=0", "--remote-debugging-address=127.0.0.1",
		"--no-first-run", "--no-default-browser-check", "--disable-extensions", "--disable-sync",
		"--disable-background-networking", "--disable-component-update", "--disable-default-apps",
		"--disable-domain-reliability", "--no-pings", "--disable-breakpad", "--metrics-recording-only",
		// Nothing that sends around the proxy: no WebRTC UDP, no mDNS or
		// DIAL discovery of cast devices, no translation or hints fetches.
		"--force-webrtc-ip-handling-policy=disable_non_proxied_udp", "--disable-client-side-phishing-detection",
		"--disable-features=MediaRouter,DialMediaRouteProvider,WebRtcHideLocalIpsWithMdns,OptimizationHints,Translate",
		"--proxy-server=127.0.0.1:9", "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE "+host,
		"--window-size=420,900", "about:blank")
	if bypass != "" {
		args = append(args[:len(args)-1], "--proxy-bypass-list="+bypass, "about:blank")
	}
	if spki != "" {
		args = append(args[:len(args)-1], "--ignore-certificate-errors-spki-list="+spki, "about:blank")
	}
	cmd := exec.Command(args[0], args[1:]...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true} // its helpers go with it
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start chromium: %v", err)
	}
	b := &browser{t: t, cmd: cmd}
	t.Cleanup(b.stop)
	found := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			if m := devtoolsURL.FindStringSubmatch(sc.Text()); m != nil {
				found <- m[1]
				break
			}
		}
		io.Copy(io.Discard, stderr)
	}()
	var url string
	select {
	case url = <-found:
	case <-time.After(30 * time.Second):
		t.Fatal("chromium printed no DevTools address within 30 s")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	b.conn, err = dialWS(ctx, url, dialOptions{connOptions: connOptions{maxMessage: 64 << 20}})
	if err != nil {
		t.Fatalf("DevTools connection: %v", err)
	}
	target := b.call("Target.createTarget", map[string]any{"url": "about:blank"})
	attached := b.call("Target.attachToTarget", map[string]any{"targetId": target["targetId"], "flatten": true})
	b.session, _ = attached["sessionId"].(string)
	return b
}

func (b *browser) stop() {
	if b.conn != nil {
		b.conn.Abort()
	}
	syscall.Kill(-b.cmd.Process.Pid, syscall.SIGKILL)
	b.cmd.Wait()
}

// call sends one DevTools command (to the page's session once there is
// one) and returns its result; events on the way are skipped.
func (b *browser) call(method string, params map[string]any) map[string]any {
	b.t.Helper()
	b.nextID++
	msg := map[string]any{"id": b.nextID, "method": method, "params": params}
	if b.session != "" {
		msg["sessionId"] = b.session
	}
	raw, _ := json.Marshal(msg)
	b.conn.SetWriteDeadline(time.Now().Add(10 * time.Second))
	if err := b.conn.WriteMessage(opText, raw); err != nil {
		b.t.Fatalf("DevTools %s: %v", method, err)
	}
	for {
		b.conn.SetReadDeadline(time.Now().Add(30 * time.Second))
		_, data, err := b.conn.ReadMessage(nil)
		if err != nil {
			b.t.Fatalf("DevTools %s: %v", method, err)
		}
		var reply struct {
			ID     int             `json:"id"`
			Result map[string]any  `json:"result"`
			Error  json.RawMessage `json:"error"`
		}
		if err := json.Unmarshal(data, &reply); err != nil {
			b.t.Fatalf("DevTools %s: %v", method, err)
		}
		if reply.ID != b.nextID {
			continue
		}
		if reply.Error != nil {
			b.t.Fatalf("DevTools %s: %s", method, reply.Error)
		}
		return reply.Result
	}
}

// eval runs a JavaScript expression in the page and returns its value.
func (b *browser) eval(expr string) any {
	b.t.Helper()
	res := b.call("Runtime.evaluate", map[string]any{"expression": expr, "returnByValue": true})
	if ex, ok := res["exceptionDetails"]; ok {
		b.t.Fatalf("page: %s: %v", expr, ex)
	}
	v, _ := res["result"].(map[string]any)
	return v["value"]
}

// screenshot saves the whole page, at the phone width runPage sets, as
// a PNG.
func (b *browser) screenshot(file string) {
	b.t.Helper()
	height, _ := b.eval("Math.ceil(document.querySelector('main').getBoundingClientRect().bottom)").(float64)
	clip := map[string]any{"x": 0, "y": 0, "width": 420, "height": max(height, 100), "scale": 1}
	res := b.call("Page.captureScreenshot", map[string]any{"format": "png", "clip": clip, "captureBeyondViewport": true})
	png, err := base64.StdEncoding.DecodeString(fmt.Sprint(res["data"]))
	if err != nil {
		b.t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Dir(file), 0o755); err != nil {
		b.t.Fatal(err)
	}
	if err := os.WriteFile(file, png, 0o644); err != nil {
		b.t.Fatal(err)
	}
}

// pageResult is the part of the page's JSON result the tests check.
type pageResult struct {
	End struct {
		SumReceived struct {
			BitsPerSecond float64 `json:"bits_per_second"`
		} `json:"sum_received"`
		WPerf struct {
			Latency struct {
				Idle struct {
					Count    int     `json:"count"`
					MedianMs float64 `json:"median_ms"`
					JitterMs float64 `json:"jitter_ms"`
				} `json:"idle"`
				LoadedP90Ms float64 `json:"loaded_p90_ms"`
				RPM         float64 `json:"rpm"`
				Grade       string  `json:"grade"`
			} `json:"latency"`
		} `json:"wperf"`
	} `json:"end"`
	Browser struct {
		Server        string  `json:"server"`
		ClientAddress string  `json:"client_address"`
		Download      float64 `json:"download_bits_per_second"`
		Upload        float64 `json:"upload_bits_per_second"`
	} `json:"browser"`
}

// errPageFailed is a run the page itself reported as failed.
var errPageFailed = errors.New("the page's test failed")

// runPage loads url (which should carry ?autostart=1) and waits for the
// page's result.
func (b *browser) runPage(url string, limit time.Duration) (pageResult, error) {
	b.t.Helper()
	b.load(url)
	return b.result(limit)
}

// load opens url in the page at a phone's size.
func (b *browser) load(url string) {
	b.t.Helper()
	b.call("Emulation.setDeviceMetricsOverride", map[string]any{"width": 420, "height": 900, "deviceScaleFactor": 1, "mobile": true})
	b.call("Page.enable", nil)
	b.call("Page.navigate", map[string]any{"url": url})
}

// waitFor polls a JavaScript condition until it holds or limit passes.
func (b *browser) waitFor(cond string, limit time.Duration) bool {
	b.t.Helper()
	for deadline := time.Now().Add(limit); time.Now().Before(deadline); time.Sleep(200 * time.Millisecond) {
		if b.eval(cond) == true {
			return true
		}
	}
	return false
}

// result waits for the page's test to end and returns its result.
func (b *browser) result(limit time.Duration) (pageResult, error) {
	b.t.Helper()
	if !b.waitFor("['done', 'failed'].includes(document.body && document.body.dataset.state)", limit) {
		return pageResult{}, fmt.Errorf("no result within %v (phase %v)", limit, b.eval("document.getElementById('phase').textContent"))
	}
	if b.eval("document.body.dataset.state") == "failed" {
		return pageResult{}, fmt.Errorf("%w: %v", errPageFailed, b.eval("document.getElementById('error').textContent"))
	}
	var res pageResult
	raw, _ := json.Marshal(b.eval("window.wperfResult()"))
	return res, json.Unmarshal(raw, &res)
}

// cliRate runs wperf -c against url's server as the page does (4
// streams, the same length of time) and returns the receiver's rate.
func cliRate(t *testing.T, args ...string) float64 {
	t.Helper()
	r := e2eRun(append(args, "-P", "4", "-J", "--no-latency")...)
	if r.code != exitOK {
		t.Fatalf("wperf %q: %v", args, r)
	}
	return e2eFloat(t, e2eDecode(t, r.stdout), "end.sum_received.bits_per_second")
}

// checkPage asserts what the page measured: rates within a factor of 2
// of the CLI's, and sane latency figures.
func checkPage(t *testing.T, res pageResult, cliDown, cliUp float64) {
	t.Helper()
	down, up := res.Browser.Download, res.Browser.Upload
	t.Logf("browser/CLI: download %.3g/%.3g bit/s (%.2f), upload %.3g/%.3g bit/s (%.2f)",
		down, cliDown, down/cliDown, up, cliUp, up/cliUp)
	for _, c := range []struct {
		name      string
		page, cli float64
	}{{"download", down, cliDown}, {"upload", up, cliUp}} {
		if !(c.page > c.cli/2 && c.page < c.cli*2) {
			t.Errorf("page's %s %.3g bit/s is not within a factor of 2 of the CLI's %.3g", c.name, c.page, c.cli)
		}
	}
	checkLatency(t, res)
}

// checkLatency asserts the page's latency figures are there and sane.
func checkLatency(t *testing.T, res pageResult) {
	t.Helper()
	lat := res.End.WPerf.Latency
	for _, v := range []struct {
		name string
		ms   float64
	}{{"idle median", lat.Idle.MedianMs}, {"loaded p90", lat.LoadedP90Ms}} {
		if !(v.ms > 0 && v.ms < 1000) {
			t.Errorf("%s latency %.3f ms, want more than 0 and less than 1 s", v.name, v.ms)
		}
	}
	if lat.Idle.Count < 5 || lat.RPM <= 0 || lat.Grade == "" {
		t.Errorf("latency verdict incomplete: %+v", lat)
	}
	if !strings.HasPrefix(res.Browser.Server, "wperf ") || res.Browser.ClientAddress == "" {
		t.Errorf("page names server %q and client %q", res.Browser.Server, res.Browser.ClientAddress)
	}
}

// browserSeconds is each direction's length, for the page and the CLI.
const browserSeconds = "4"

// pageURL is the page at base (a URL ending in /), started on load, with
// the CLI's stream count and test length.
func pageURL(base string) string {
	return base + "?autostart=1&p=4&t=" + browserSeconds
}

// TestBrowserLoopback runs the whole page in chromium against a server
// on loopback, then the CLI against the same server. Unshaped loopback
// is faster than a browser's WebSocket can go, so the rates are only
// logged here; TestLabBrowserShaped compares them.
func TestBrowserLoopback(t *testing.T) {
	b := startBrowser(t, "127.0.0.1", "", "")
	srv := startE2EServer(t)
	res, err := b.runPage(pageURL("http://127.0.0.1:"+srv.port+"/"), 90*time.Second)
	b.screenshot(filepath.Join(".ci", "out", "browser.png"))
	if err != nil {
		t.Fatal(err)
	}
	cliDown := cliRate(t, srv.args("-t", browserSeconds, "-R")...)
	cliUp := cliRate(t, srv.args("-t", browserSeconds)...)
	if res.Browser.Download <= 0 || res.Browser.Upload <= 0 {
		t.Errorf("page measured download %g and upload %g bit/s", res.Browser.Download, res.Browser.Upload)
	}
	checkLatency(t, res)
	t.Logf("unshaped loopback, browser/CLI: download %.3g/%.3g bit/s (%.2f), upload %.3g/%.3g bit/s (%.2f)",
		res.Browser.Download, cliDown, res.Browser.Download/cliDown, res.Browser.Upload, cliUp, res.Browser.Upload/cliUp)
}

// browserShapedRate is what TestLabBrowserShaped leaves of loopback: well
// under what headless chromium moves over a WebSocket on a busy 2-core
// machine (about 300 Mbit/s up, 800 down), so the link, not the
// browser, sets both the page's and the CLI's rate.
const browserShapedRate = "100mbit"

// TestLabBrowserShaped runs the page, its server and the CLI in a
// namespace of their own whose loopback tbf shapes to 100 Mbit/s, and
// asserts that the page's download and upload are within a factor of 2
// of the CLI's.
func TestLabBrowserShaped(t *testing.T) {
	browserBinary(t)
	l := newLab(t)
	ns := l.addNS("web")
	l.run(ns, "tc", "qdisc", "add", "dev", "lo", "root", "tbf", "rate", browserShapedRate, "burst", "128kb", "latency", "20ms")
	bin := wperfBinary(t)
	l.start(ns, bin, "-s")
	waitListening(t, l, ns, ":8765")
	res := runPageIn(t, l, ns, pageURL("http://127.0.0.1:8765/"), "127.0.0.1", "", "")
	cli := func(args ...string) float64 {
		out := l.run(ns, append([]string{bin, "-c", "127.0.0.1", "-t", browserSeconds, "-P", "4", "-J", "--no-latency"}, args...)...)
		return e2eFloat(t, e2eDecode(t, out), "end.sum_received.bits_per_second")
	}
	checkPage(t, res, cli("-R"), cli())
}

// runPageIn runs the page in chromium inside namespace ns: this test
// binary, run again there, drives it (TestBrowserHelper), so the
// DevTools connection stays inside the namespace too.
func runPageIn(t *testing.T, l *lab, ns, url, host, bypass, spki string) pageResult {
	t.Helper()
	out, err := l.try(ns, "env", browserHelperEnv+"="+url, browserHostEnv+"="+host, browserBypassEnv+"="+bypass, browserSPKIEnv+"="+spki,
		os.Args[0], "-test.run=^TestBrowserHelper$", "-test.count=1", "-test.v")
	for _, line := range strings.Split(out, "\n") {
		if rest, ok := strings.CutPrefix(line, "PAGE-RESULT "); ok && err == nil {
			var res pageResult
			if jerr := json.Unmarshal([]byte(rest), &res); jerr != nil {
				t.Fatalf("helper's result: %v", jerr)
			}
			return res
		}
	}
	t.Fatalf("the browser helper failed (%v):\n%s", err, out)
	return pageResult{}
}

// The browser helper's inputs: the page to load, the host its resolver
// may resolve, and its proxy bypass list.
const (
	browserHelperEnv = "WPERF_BROWSER_HELPER"
	browserHostEnv   = "WPERF_BROWSER_HOST"
	browserBypassEnv = "WPERF_BROWSER_BYPASS"
	browserSPKIEnv   = "WPERF_BROWSER_SPKI"
)

// TestBrowserHelper runs the page in chromium for a lab test, in the
// namespace the lab started it in, and prints the page's result on one
// line.
func TestBrowserHelper(t *testing.T) {
	url := os.Getenv(browserHelperEnv)
	if url == "" {
		t.Skip("run by the lab's browser tests")
	}
	b := startBrowser(t, os.Getenv(browserHostEnv), os.Getenv(browserBypassEnv), os.Getenv(browserSPKIEnv))
	res, err := b.runPage(url, 90*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := json.Marshal(res)
	fmt.Printf("\nPAGE-RESULT %s\n", raw)
}

// TestLabBrowserNginx loads the page through nginx at /wperf/ over
// https, configured as README.md says (the reach lab's nginx, TLS ending
// there): relative URLs, wss: under https:, the upgrades through the
// proxy, and the client's address as --trust-proxy has it.
func TestLabBrowserNginx(t *testing.T) {
	browserBinary(t)
	rl := newReachLab(t, true)
	certFile, keyFile, _ := labCert(t, rl.dir, "nginx", rlMiddleLeft)
	rl.startServer(t, "8765", "--trust-proxy", "--no-geo")
	httpPart, location := readmeNginx(t, "http://"+rlServer+":8765/")
	rl.startNginx(t, httpPart, fmt.Sprintf("        listen %s:8443 ssl;\n        ssl_certificate %s;\n        ssl_certificate_key %s;\n%s",
		rlMiddleLeft, certFile, keyFile, location), "8443")
	url := pageURL("https://" + rlMiddleLeft + ":8443/wperf/")
	res := runPageIn(t, rl.lab, rl.client, url, rlMiddleLeft, rlMiddleLeft, certSPKI(t, certFile))
	if res.Browser.Download <= 0 || res.Browser.Upload <= 0 {
		t.Errorf("page measured download %g and upload %g bit/s through nginx", res.Browser.Download, res.Browser.Upload)
	}
	checkLatency(t, res)
	if host, _ := splitPeer(res.Browser.ClientAddress); host != rlClient || !strings.HasPrefix(res.Browser.Server, "wperf ") {
		t.Errorf("page names server %q and client %q; want wperf and %s (--trust-proxy)", res.Browser.Server, res.Browser.ClientAddress, rlClient)
	}
	t.Logf("through nginx: download %.3g bit/s, upload %.3g bit/s, idle %.2f ms, loaded p90 %.2f ms",
		res.Browser.Download, res.Browser.Upload, res.End.WPerf.Latency.Idle.MedianMs, res.End.WPerf.Latency.LoadedP90Ms)
}

// certSPKI is the base64 SHA-256 of a PEM certificate's public key, as
// chromium's --ignore-certificate-errors-spki-list takes it.
func certSPKI(t *testing.T, certFile string) string {
	t.Helper()
	data, err := os.ReadFile(certFile)
	if err != nil {
		t.Fatal(err)
	}
	block, _ := pem.Decode(data)
	if block == nil {
		t.Fatalf("%s holds no PEM block", certFile)
	}
	cert, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(cert.RawSubjectPublicKeyInfo)
	return base64.StdEncoding.EncodeToString(sum[:])
}

// TestBrowserToken: against a server with --token the page does not
// start on its own but asks for the token, and runs with it, sent in the
// subprotocol list; a wrong token fails the page's test.
func TestBrowserToken(t *testing.T) {
	b := startBrowser(t, "127.0.0.1", "", "")
	srv := startE2EServer(t, "--token", "s3cret")
	b.load("http://127.0.0.1:" + srv.port + "/?autostart=1&t=1&p=2")
	if !b.waitFor("document.getElementById('token-row')?.hidden === false", 20*time.Second) {
		t.Fatal("the page shows no token field for a server with --token")
	}
	if state := b.eval("document.body.dataset.state || ''"); state != "" {
		t.Fatalf("the page started without a token (state %q)", state)
	}
	for _, tc := range []struct {
		token string
		ok    bool
	}{{"guess", false}, {"s3cret", true}} {
		b.eval("document.getElementById('token').value = " + strconv.Quote(tc.token) + "; document.getElementById('start').click()")
		res, err := b.result(60 * time.Second)
		switch {
		case tc.ok && err != nil:
			t.Errorf("with the right token: %v", err)
		case tc.ok && (res.Browser.Download <= 0 || res.Browser.Upload <= 0):
			t.Errorf("with the right token: download %g, upload %g bit/s", res.Browser.Download, res.Browser.Upload)
		case !tc.ok && !errors.Is(err, errPageFailed):
			t.Errorf("with a wrong token: want the page's test to fail, got %v", err)
		}
	}
}
