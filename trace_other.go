//go:build !linux

package main

import "fmt"

// openFallbackProber is used when raw sockets fail. Outside Linux there is
// no unprivileged way to see the ICMP errors that a trace lives on, so the
// answer is to run with privileges.
func openFallbackProber(s *probeSpec, _ chan<- reply, rawErr error) (prober, error) {
	return nil, fmt.Errorf("%s probes need raw sockets, which need privileges: "+
		"run wperf with sudo (as Administrator on Windows): %w", s.proto, rawErr)
}
