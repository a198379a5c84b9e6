package main

// lab_reach_test.go puts real middleboxes between a wperf client and
// server, each in network namespaces of its own: nginx as a reverse proxy
// (TLS ending at nginx, and TLS end to end), tinyproxy as a CONNECT proxy
// (with and without authentication, and NO_PROXY), a NAT router
// (nft masquerade), and a firewall that lets only TCP 443 through.

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// reachLab is client — middle — server on the links 198.18.20.0/24
// (client .1, middle .2) and 198.18.21.0/24 (middle .1, server .2). The
// middle namespace holds the middlebox; when it routes, the ends have a
// route to each other's link through it.
type reachLab struct {
	*lab
	client, middle, server string
}

const (
	rlClient      = "198.18.20.1"
	rlMiddleLeft  = "198.18.20.2"
	rlMiddleRight = "198.18.21.1"
	rlServer      = "198.18.21.2"
)

func newReachLab(t *testing.T, routed bool) *reachLab {
	l := newLab(t)
	labNeeds(t, "ss")
	rl := &reachLab{lab: l, client: l.addNS("cli"), middle: l.addNS("mid"), server: l.addNS("srv")}
	l.link(rl.client, rl.middle, []string{rlClient + "/24"}, []string{rlMiddleLeft + "/24"})
	l.link(rl.middle, rl.server, []string{rlMiddleRight + "/24"}, []string{rlServer + "/24"})
	if routed {
		rl.route()
	}
	return rl
}

// route makes the middle namespace a router between the two links.
func (rl *reachLab) route() {
	rl.run(rl.middle, "sysctl", "-qw", "net.ipv4.ip_forward=1")
	rl.run(rl.client, "ip", "route", "add", "198.18.21.0/24", "via", rlMiddleLeft)
	rl.run(rl.server, "ip", "route", "add", "198.18.20.0/24", "via", rlMiddleRight)
}

func (rl *reachLab) sub(t testing.TB) *reachLab {
	return &reachLab{lab: rl.lab.sub(t), client: rl.client, middle: rl.middle, server: rl.server}
}

// reachDoc is the part of a client's -J document that the reach labs check.
type reachDoc struct {
	Start struct {
		Connected []struct {
			RemoteHost string `json:"remote_host"`
			RemotePort int    `json:"remote_port"`
		} `json:"connected"`
		WPerf struct {
			Transport string      `json:"transport"`
			TLS       *tlsFacts   `json:"tls"`
			Proxy     *proxyFacts `json:"proxy"`
		} `json:"wperf"`
	} `json:"start"`
	End struct {
		SumReceived struct {
			Bytes int64 `json:"bytes"`
		} `json:"sum_received"`
		SumReceivedBidirReverse *struct {
			Bytes int64 `json:"bytes"`
		} `json:"sum_received_bidir_reverse"`
		Sum *struct {
			Packets int64 `json:"packets"`
		} `json:"sum"`
	} `json:"end"`
	ServerOutputJSON *struct {
		Start struct {
			AcceptedConnection struct {
				Host string `json:"host"`
			} `json:"accepted_connection"`
			WPerf struct {
				TLS   *tlsFacts   `json:"tls"`
				Proxy *proxyFacts `json:"proxy"`
			} `json:"wperf"`
		} `json:"start"`
	} `json:"server_output_json"`
	Error string `json:"error"`
}

// wperfJSON runs a wperf client with -J --get-server-output in the client
// namespace (env: extra environment, as NAME=value) and decodes its
// document; it fails the test unless the run succeeded and moved data.
func (rl *reachLab) wperfJSON(t *testing.T, env []string, args ...string) reachDoc {
	t.Helper()
	doc, out, err := rl.tryJSON(env, args...)
	if err != nil || doc.Error != "" {
		t.Fatalf("wperf %s: exit %v, error %q\n%s", strings.Join(args, " "), err, doc.Error, out)
	}
	if doc.End.SumReceived.Bytes == 0 && (doc.End.Sum == nil || doc.End.Sum.Packets == 0) {
		t.Fatalf("wperf %s: nothing received\n%s", strings.Join(args, " "), out)
	}
	if doc.ServerOutputJSON == nil {
		t.Fatalf("wperf %s: no server output\n%s", strings.Join(args, " "), out)
	}
	return doc
}

func (rl *reachLab) tryJSON(env []string, args ...string) (reachDoc, string, error) {
	cmd := append([]string{"env"}, env...)
	cmd = append(append(cmd, wperfBinary(rl.t), "-J", "--get-server-output", "--connect-timeout", "5s"), args...)
	out, err := rl.try(rl.client, cmd...)
	var doc reachDoc
	if jerr := json.Unmarshal([]byte(out), &doc); jerr != nil && err == nil {
		err = fmt.Errorf("not a JSON document: %v", jerr)
	}
	return doc, out, err
}

// reachShapes are the test kinds every middlebox must pass.
var reachShapes = []struct {
	name string
	args []string
}{
	{"upload", nil},
	{"reverse", []string{"-R"}},
	{"bidir -P 2", []string{"--bidir", "-P", "2"}},
	{"UDP over WebSocket", []string{"-u", "--udp-transport", "ws", "-b", "20M"}},
}

// startServer runs a wperf server in the server namespace and waits until
// it listens on port.
func (rl *reachLab) startServer(t *testing.T, port string, flags ...string) {
	t.Helper()
	// -J: the clients' --get-server-output is then server_output_json.
	rl.start(rl.server, append([]string{wperfBinary(t), "-s", "-J", "-p", port}, flags...)...)
	waitListening(t, rl.lab, rl.server, ":"+port)
}

// labCert makes a self-signed certificate for addr in dir and returns
// the paths of its PEM files and its fingerprint.
func labCert(t *testing.T, dir, name, addr string) (certFile, keyFile, fp string) {
	t.Helper()
	cert, err := makeSelfSigned(addr)
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile = filepath.Join(dir, name+".pem"), filepath.Join(dir, name+".key")
	if err := saveCertificate(cert, dir, certFile, keyFile); err != nil {
		t.Fatal(err)
	}
	return certFile, keyFile, fingerprint(cert.Certificate[0])
}

var labVariants struct {
	sync.Mutex
	paths map[string]string
}

// wperfBinaryWith builds wperf with extra linker flags (-X settings for
// tests), once per flags and test process, next to wperfBinary's.
func wperfBinaryWith(t testing.TB, ldflags string) string {
	t.Helper()
	base := wperfBinary(t)
	labVariants.Lock()
	defer labVariants.Unlock()
	if p, ok := labVariants.paths[ldflags]; ok {
		return p
	}
	path := fmt.Sprintf("%s-%d", base, len(labVariants.paths)+1)
	cmd := exec.Command(goTool(), "build", "-ldflags", ldflags, "-o", path, ".")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build -ldflags %q: %v\n%s", ldflags, err, out)
	}
	if labVariants.paths == nil {
		labVariants.paths = map[string]string{}
	}
	labVariants.paths[ldflags] = path
	return path
}

// ---- nginx ----

// readmeNginx returns README.md's nginx configuration for wperf: its map
// block (for http { }) and its location block (for server { }), with the
// upstream replaced. The lab runs exactly what README shows.
func readmeNginx(t *testing.T, upstream string) (httpPart, location string) {
	t.Helper()
	readme, err := os.ReadFile("README.md")
	if err != nil {
		t.Fatal(err)
	}
	blocks := regexp.MustCompile("(?s)```nginx\n(.*?)```").FindAllStringSubmatch(string(readme), -1)
	for _, b := range blocks {
		switch {
		case strings.Contains(b[1], "map $http_upgrade"):
			httpPart = b[1]
		case strings.Contains(b[1], "location /wperf/"):
			location = b[1]
		}
	}
	if httpPart == "" || location == "" || !strings.Contains(location, "http://127.0.0.1:8765/") {
		t.Fatal("README.md lacks its nginx map and location /wperf/ blocks (with proxy_pass http://127.0.0.1:8765/)")
	}
	return httpPart, strings.ReplaceAll(location, "http://127.0.0.1:8765/", upstream)
}

// startNginx writes an nginx configuration around server (the body of a
// server { } block) and runs nginx in the middle namespace, in the
// foreground, until the lab ends.
func (rl *reachLab) startNginx(t *testing.T, httpPart, server string, ports ...string) {
	t.Helper()
	labNeeds(t, "nginx")
	dir := filepath.Join(rl.dir, "nginx")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	// One process: the lab kills what it started with SIGKILL, which a
	// master process would not pass on to its workers.
	conf := fmt.Sprintf(`user root;
master_process off;
error_log %[1]s/error.log info;
events { worker_connections 256; }
http {
    access_log %[1]s/access.log;
    client_body_temp_path %[1]s/body;
    proxy_temp_path %[1]s/proxy;
    fastcgi_temp_path %[1]s/fastcgi;
    uwsgi_temp_path %[1]s/uwsgi;
    scgi_temp_path %[1]s/scgi;
%[2]s
    server {
%[3]s
    }
}
`, dir, httpPart, server)
	file := filepath.Join(dir, "nginx.conf")
	if err := os.WriteFile(file, []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	rl.start(rl.middle, "nginx", "-c", file, "-g", "daemon off; pid "+filepath.Join(dir, "nginx.pid")+";")
	for i := range ports {
		ports[i] = ":" + ports[i]
	}
	waitListening(t, rl.lab, rl.middle, ports...)
}

// TestLabNginx runs every test shape through nginx as a reverse proxy at
// /wperf/, configured as README.md says: with TLS ending at nginx (wss to
// nginx, ws behind it), and with wss end to end. It also checks that both
// ends report the proxy, that the reverse traceroute behind nginx traces
// the client with --trust-proxy, and that the keep-alive pings carry a
// long test past nginx's proxy_read_timeout.
func TestLabNginx(t *testing.T) {
	rl := newReachLab(t, true)
	certFile, keyFile, nginxFP := labCert(t, rl.dir, "nginx", rlMiddleLeft)
	rl.startServer(t, "8765", "--trust-proxy", "--no-geo")
	rl.startServer(t, "8443", "--tls", "--trust-proxy", "--no-geo")
	httpPart, terminated := readmeNginx(t, "http://"+rlServer+":8765/")
	_, endToEnd := readmeNginx(t, "https://"+rlServer+":8443/")
	setupURL := "wss://" + rlMiddleLeft + ":8443/wperf/"
	tls := fmt.Sprintf("ssl_certificate %s;\n        ssl_certificate_key %s;\n", certFile, keyFile)
	rl.startNginx(t, httpPart, fmt.Sprintf(`
        listen %[1]s:8443 ssl;
        %[2]s
        %[3]s
%[5]s
        location /short/ {
            proxy_pass http://%[4]s:8765/;
            proxy_http_version 1.1;
            proxy_set_header Upgrade $http_upgrade;
            proxy_set_header Connection $connection_upgrade;
            proxy_read_timeout 3s;
            proxy_send_timeout 3s;
        }
`, rlMiddleLeft, tls, terminated, rlServer, strings.Replace(endToEnd, "location /wperf/", "location /e2e/", 1)), "8443")

	// nginx's proxy_read_timeout ends a connection that is quiet for that
	// long; /short/ has 3 s of it. A binary that pings every second gets a
	// 4 s test through; the released one (20 s) loses its control
	// connection, which shows that the timeout is real.
	t.Run("keep-alive outlasts proxy_read_timeout", func(t *testing.T) {
		rl := rl.sub(t)
		pinging := wperfBinaryWith(t, "-X main.keepAlivePeriod=1s")
		for _, extra := range [][]string{nil, {"-R"}, {"--bidir"}} {
			args := append([]string{pinging, "-c", "wss://" + rlMiddleLeft + ":8443/short/", "--ca", certFile, "-t", "4", "-i", "0"}, extra...)
			if out, err := rl.try(rl.client, args...); err != nil {
				t.Errorf("pinging every second %v: %v\n%s", extra, err, out)
			}
		}
		out, err := rl.try(rl.client, wperfBinary(t), "-c", "wss://"+rlMiddleLeft+":8443/short/", "--ca", certFile, "-t", "4", "-i", "0")
		if err == nil || !strings.Contains(out, "lost the server") {
			t.Errorf("pinging every 20 s: want the control connection lost to the 3 s timeout, got %v:\n%s", err, out)
		}
	})

	t.Run("reverse traceroute with --trust-proxy", func(t *testing.T) {
		rl := rl.sub(t)
		out, err := rl.try(rl.client, wperfBinary(t), "-c", setupURL, "--ca", certFile, "--reverse-traceroute", "-J", "--tr-timeout", "1", "--no-geo")
		var r reverseTraceReport
		if jerr := json.Unmarshal([]byte(out), &r); err != nil || jerr != nil {
			t.Fatalf("exit %v, JSON %v:\n%s", err, jerr, out)
		}
		if got := hopAddrs(r.Hops); r.Target != rlClient || !slices.Equal(got, []string{rlMiddleRight, rlClient}) {
			t.Errorf("traced %s through %q; want the client %s through %s", r.Target, got, rlClient, rlMiddleRight)
		}
	})

	setups := []struct {
		name string
		url  string
		tls  []string
	}{
		{"TLS ends at nginx", "wss://" + rlMiddleLeft + ":8443/wperf/", []string{"--ca", certFile}},
		{"TLS end to end", "wss://" + rlMiddleLeft + ":8443/e2e/", []string{"--fingerprint", nginxFP}},
	}
	for _, s := range setups {
		for _, shape := range reachShapes {
			t.Run(s.name+"/"+shape.name, func(t *testing.T) {
				rl := rl.sub(t)
				args := append(append([]string{"-c", s.url, "-t", "1"}, s.tls...), shape.args...)
				doc := rl.wperfJSON(t, nil, args...)
				if p := doc.Start.WPerf.Proxy; p == nil || p.Kind != "reverse" || !strings.Contains(p.Evidence, rlClient) {
					t.Errorf("client's start.wperf.proxy = %+v, want a reverse proxy with X-Forwarded-For %s", p, rlClient)
				}
				srv := doc.ServerOutputJSON.Start
				if srv.WPerf.Proxy == nil || srv.WPerf.Proxy.Kind != "reverse" {
					t.Errorf("server's start.wperf.proxy = %+v, want a reverse proxy", srv.WPerf.Proxy)
				}
				if srv.AcceptedConnection.Host != rlClient {
					t.Errorf("server saw the client as %q, want %s (--trust-proxy)", srv.AcceptedConnection.Host, rlClient)
				}
				if doc.Start.WPerf.TLS == nil || doc.Start.WPerf.TLS.PeerFingerprint != nginxFP {
					t.Errorf("client's start.wperf.tls = %+v, want nginx's certificate %s", doc.Start.WPerf.TLS, nginxFP)
				}
				if e2e := strings.Contains(s.url, "/e2e/"); e2e != (srv.WPerf.TLS != nil) {
					t.Errorf("server's start.wperf.tls = %+v (TLS to the server: %v)", srv.WPerf.TLS, e2e)
				}
			})
		}
		t.Run(s.name+"/ping", func(t *testing.T) {
			rl := rl.sub(t)
			args := append([]string{wperfBinary(t), "-c", s.url, "--ping", "--ping-count", "5", "-i", "0.1", "-J"}, s.tls...)
			out, err := rl.try(rl.client, args...)
			var r struct {
				End struct {
					Transmitted, Received int
					MinMs                 float64 `json:"min_ms"`
					MaxMs                 float64 `json:"max_ms"`
				}
			}
			if jerr := json.Unmarshal([]byte(out), &r); err != nil || jerr != nil {
				t.Fatalf("exit %v, JSON %v:\n%s", err, jerr, out)
			}
			if e := r.End; e.Transmitted != 5 || e.Received != 5 || e.MinMs <= 0 || e.MaxMs > 1000 {
				t.Errorf("through nginx: %+v; want 5 of 5 echoed, each within (0, 1000] ms", e)
			}
		})
	}
}

// ---- a CONNECT proxy ----

// startTinyproxy runs tinyproxy in the middle namespace on port, letting
// the client's link in and CONNECT through to the ports wperf uses.
// tinyproxy allows CONNECT to 443 and 563 only unless told otherwise.
func (rl *reachLab) startTinyproxy(t *testing.T, port string, extra ...string) {
	t.Helper()
	labNeeds(t, "tinyproxy")
	conf := strings.Join(append([]string{
		"Port " + port,
		"Listen " + rlMiddleLeft,
		"Timeout 60",
		"MaxClients 64",
		"LogLevel Info",
		"Allow 198.18.20.0/24",
		"ConnectPort 8765",
		"ConnectPort 8443",
	}, extra...), "\n") + "\n"
	file := filepath.Join(rl.dir, "tinyproxy-"+port+".conf")
	if err := os.WriteFile(file, []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	rl.start(rl.middle, "tinyproxy", "-d", "-c", file)
	waitListening(t, rl.lab, rl.middle, ":"+port)
}

// TestLabConnectProxy runs tests through tinyproxy: the client's
// namespace has no route to the server's, so a test that passes went
// through the proxy. Plain and TLS, with --proxy and from the
// environment, with basic authentication given and wrong, and NO_PROXY
// (once the middle routes) going direct.
func TestLabConnectProxy(t *testing.T) {
	rl := newReachLab(t, false)
	rl.startServer(t, "8765", "--no-geo")
	rl.startServer(t, "8443", "--tls", "--no-geo")
	rl.startTinyproxy(t, "8888")
	rl.startTinyproxy(t, "8889", "BasicAuth wperf s3cret")
	srvFP := rl.fingerprintOf(t, "8443")
	open, locked := "http://"+rlMiddleLeft+":8888", "http://wperf:s3cret@"+rlMiddleLeft+":8889"
	plain, secure := "ws://"+rlServer+":8765/", "wss://"+rlServer+":8443/"

	for _, c := range []struct {
		name string
		env  []string
		args []string
	}{
		{"plain, --proxy, -P 2", nil, []string{"-c", plain, "--proxy", open, "-P", "2"}},
		{"TLS, --proxy, -R", nil, []string{"-c", secure, "--fingerprint", srvFP, "--proxy", open, "-R"}},
		{"plain, authenticated, --bidir", nil, []string{"-c", plain, "--proxy", locked, "--bidir"}},
		{"TLS, authenticated", nil, []string{"-c", secure, "--fingerprint", srvFP, "--proxy", locked}},
		{"TLS, HTTPS_PROXY", []string{"HTTPS_PROXY=" + locked}, []string{"-c", secure, "--fingerprint", srvFP}},
		{"plain, HTTP_PROXY", []string{"HTTP_PROXY=" + open}, []string{"-c", plain}},
	} {
		t.Run(c.name, func(t *testing.T) {
			rl := rl.sub(t)
			doc := rl.wperfJSON(t, c.env, append(c.args, "-t", "1")...)
			if p := doc.Start.WPerf.Proxy; p == nil || p.Kind != "forward" || !strings.HasPrefix(p.Address, rlMiddleLeft+":") {
				t.Errorf("start.wperf.proxy = %+v, want a forward proxy at %s", p, rlMiddleLeft)
			}
			if got := doc.ServerOutputJSON.Start.AcceptedConnection.Host; got != rlMiddleRight {
				t.Errorf("the server saw %s, want the proxy's %s", got, rlMiddleRight)
			}
		})
	}

	t.Run("wrong password", func(t *testing.T) {
		rl := rl.sub(t)
		for _, proxy := range []string{"http://wperf:guess@" + rlMiddleLeft + ":8889", "http://" + rlMiddleLeft + ":8889"} {
			out, err := rl.try(rl.client, wperfBinary(t), "-c", plain, "-t", "1", "--proxy", proxy)
			// tinyproxy answers 401 where RFC 7235 says 407; either way
			// the status line is what the user sees.
			if exit, ok := err.(*exec.ExitError); !ok || exit.ExitCode() != 1 || !regexp.MustCompile(`answered HTTP/1.\d 40[17] `).MatchString(out) {
				t.Errorf("--proxy %s: want exit 1 with the proxy's refusal, got %v:\n%s", proxy, err, out)
			}
		}
	})

	t.Run("NO_PROXY goes direct", func(t *testing.T) {
		rl := rl.sub(t)
		rl.route()
		env := []string{"HTTP_PROXY=" + open, "HTTPS_PROXY=" + open, "NO_PROXY=" + rlServer}
		for _, args := range [][]string{{"-c", plain}, {"-c", secure, "--fingerprint", srvFP}} {
			doc := rl.wperfJSON(t, env, append(args, "-t", "1")...)
			if p := doc.Start.WPerf.Proxy; p != nil {
				t.Errorf("%s: start.wperf.proxy = %+v, want none", args[1], p)
			}
			if got := doc.ServerOutputJSON.Start.AcceptedConnection.Host; got != rlClient {
				t.Errorf("%s: the server saw %s, want the client's %s", args[1], got, rlClient)
			}
		}
	})
}

// fingerprintOf reads the fingerprint that the wperf server on port
// printed when it started (from its log).
func (rl *reachLab) fingerprintOf(t *testing.T, port string) string {
	t.Helper()
	rl.mu.Lock()
	defer rl.mu.Unlock()
	for _, p := range rl.procs {
		if !slices.Contains(p.cmd.Args, port) || !slices.Contains(p.cmd.Args, "-s") {
			continue
		}
		for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
			b, _ := os.ReadFile(p.log)
			if fp := regexp.MustCompile(`sha256:[0-9a-f]{64}`).Find(b); fp != nil {
				return string(fp)
			}
		}
	}
	t.Fatalf("no wperf server on port %s printed a fingerprint", port)
	return ""
}

// ---- NAT ----

// TestLabNAT: the client sits behind a router that masquerades it (nft);
// the server has no route to the client's link. Every direction works,
// the server names the NAT's address as the peer, and the reverse
// traceroute goes to that address.
func TestLabNAT(t *testing.T) {
	labNeeds(t, "nft")
	rl := newReachLab(t, false)
	rl.run(rl.middle, "sysctl", "-qw", "net.ipv4.ip_forward=1")
	rl.run(rl.client, "ip", "route", "add", "198.18.21.0/24", "via", rlMiddleLeft)
	rl.run(rl.middle, "nft", "add table ip nat; add chain ip nat post { type nat hook postrouting priority 100 ; } ; "+
		"add rule ip nat post ip saddr 198.18.20.0/24 ip daddr 198.18.21.0/24 masquerade")
	rl.startServer(t, "8765", "--no-geo")
	for _, shape := range append(reachShapes[:3:3], struct {
		name string
		args []string
	}{"UDP over real UDP, -R", []string{"-u", "--udp-transport", "udp", "-R"}}) {
		t.Run(shape.name, func(t *testing.T) {
			rl := rl.sub(t)
			doc := rl.wperfJSON(t, nil, append([]string{"-c", rlServer, "-t", "1"}, shape.args...)...)
			if got := doc.ServerOutputJSON.Start.AcceptedConnection.Host; got != rlMiddleRight {
				t.Errorf("the server saw %s, want the NAT's %s", got, rlMiddleRight)
			}
		})
	}
	t.Run("reverse traceroute", func(t *testing.T) {
		rl := rl.sub(t)
		out, err := rl.try(rl.client, wperfBinary(t), "-c", rlServer, "--reverse-traceroute", "-J", "--tr-timeout", "1", "--no-geo")
		var r reverseTraceReport
		if jerr := json.Unmarshal([]byte(out), &r); err != nil || jerr != nil {
			t.Fatalf("exit %v, JSON %v:\n%s", err, jerr, out)
		}
		if got := hopAddrs(r.Hops); r.Target != rlMiddleRight || !slices.Equal(got, []string{rlMiddleRight}) {
			t.Errorf("traced %s through %q; want the NAT's %s, one hop", r.Target, got, rlMiddleRight)
		}
	})
}

// ---- a firewall that passes only HTTPS ----

// TestLabFirewall443: between client and server, a router forwards TCP
// to port 443 and nothing else. wss:// on 443 passes (UDP too, over
// WebSocket); ws:// on 8765 cannot connect.
func TestLabFirewall443(t *testing.T) {
	labNeeds(t, "nft")
	rl := newReachLab(t, true)
	rl.run(rl.middle, "nft", "add table inet fw; add chain inet fw forward { type filter hook forward priority 0 ; policy drop ; } ; "+
		"add rule inet fw forward ct state established,related accept; "+
		"add rule inet fw forward ip daddr "+rlServer+" tcp dport 443 accept")
	rl.startServer(t, "443", "--tls", "--no-geo")
	rl.startServer(t, "8765", "--no-geo")
	fp := rl.fingerprintOf(t, "443")
	for _, shape := range reachShapes {
		t.Run("wss on 443/"+shape.name, func(t *testing.T) {
			rl := rl.sub(t)
			rl.wperfJSON(t, nil, append([]string{"-c", "wss://" + rlServer + "/", "--fingerprint", fp, "-t", "1"}, shape.args...)...)
		})
	}
	t.Run("UDP falls back to WebSocket", func(t *testing.T) {
		rl := rl.sub(t)
		doc := rl.wperfJSON(t, nil, "-c", "wss://"+rlServer+"/", "--fingerprint", fp, "-t", "1", "-u")
		if doc.Start.WPerf.Transport != "websocket" {
			t.Errorf("transport %q, want websocket", doc.Start.WPerf.Transport)
		}
	})
	t.Run("ws on 8765 is blocked", func(t *testing.T) {
		rl := rl.sub(t)
		out, err := rl.try(rl.client, wperfBinary(t), "-c", rlServer, "-t", "1", "--connect-timeout", "1s")
		if err == nil || !strings.Contains(out, "unable to connect") {
			t.Errorf("want no connection through the firewall, got %v:\n%s", err, out)
		}
	})
}
