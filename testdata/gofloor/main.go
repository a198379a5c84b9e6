// Command gofloor is the Go TCP floor for bench.sh: a plain Go sender
// and receiver, 1 MiB writes and reads and nothing else, so that the
// share of a wperf result that is the Go runtime's own stays visible.
//
//	gofloor -s -p 8798                     # receive, until killed
//	gofloor -c 127.0.0.1 -p 8798 -t 5      # send for 5 s, print the result
//
// The client prints the receiver's count and rate in iperf3 -J's shape
// (end.sum_received.bytes and bits_per_second), so bench.sh reads every
// tool alike.
package main

import (
	"encoding/binary"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"time"
)

func main() {
	server := flag.Bool("s", false, "receive")
	host := flag.String("c", "", "send to this host")
	port := flag.Int("p", 8798, "port")
	secs := flag.Float64("t", 5, "seconds to send")
	length := flag.Int("l", 1<<20, "bytes per write and read")
	flag.Parse()
	var err error
	if *server {
		err = serve(*port, *length)
	} else {
		err = send(net.JoinHostPort(*host, fmt.Sprint(*port)), *length, time.Duration(*secs*float64(time.Second)))
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "gofloor:", err)
		os.Exit(1)
	}
}

// serve receives one connection at a time: it reads until the sender
// shuts down, then answers with the byte count and the nanoseconds from
// the first byte to the last.
func serve(port, length int) error {
	ln, err := net.Listen("tcp", fmt.Sprintf(":%d", port))
	if err != nil {
		return err
	}
	buf := make([]byte, length)
	for {
		c, err := ln.Accept()
		if err != nil {
			return err
		}
		var total int64
		var first, last time.Time
		for {
			n, err := c.Read(buf)
			if n > 0 {
				if total == 0 {
					first = time.Now()
				}
				total += int64(n)
				last = time.Now()
			}
			if err != nil {
				break
			}
		}
		var answer [16]byte
		binary.BigEndian.PutUint64(answer[:], uint64(total))
		binary.BigEndian.PutUint64(answer[8:], uint64(last.Sub(first)))
		c.Write(answer[:])
		c.Close()
	}
}

// send writes random bytes for d, then reads the receiver's answer and
// prints it.
func send(addr string, length int, d time.Duration) error {
	c, err := net.Dial("tcp", addr)
	if err != nil {
		return err
	}
	defer c.Close()
	buf := make([]byte, length)
	rand.NewChaCha8([32]byte{}).Read(buf)
	for end := time.Now().Add(d); time.Now().Before(end); {
		if _, err := c.Write(buf); err != nil {
			return err
		}
	}
	c.(*net.TCPConn).CloseWrite()
	var answer [16]byte
	if _, err := io.ReadFull(c, answer[:]); err != nil {
		return err
	}
	total := int64(binary.BigEndian.Uint64(answer[:]))
	took := time.Duration(binary.BigEndian.Uint64(answer[8:]))
	sum := map[string]any{"bytes": total, "bits_per_second": float64(total) * 8 / took.Seconds()}
	return json.NewEncoder(os.Stdout).Encode(map[string]any{"end": map[string]any{"sum_received": sum}})
}
