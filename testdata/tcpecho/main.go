// Command tcpecho is the floor that wperf --ping is compared with: the
// same request and response over a plain TCP socket, with nothing on top.
//
//	tcpecho -listen 127.0.0.1:9000
//	tcpecho -connect 127.0.0.1:9000 -n 500 -i 10ms -size 64
//
// The client prints the median round trip in milliseconds, as
// `wperf --ping -J` reports end.median_ms.
package main

import (
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"slices"
	"time"
)

func main() {
	listen := flag.String("listen", "", "serve echoes on this address")
	connect := flag.String("connect", "", "send requests to this address")
	n := flag.Int("n", 500, "requests")
	every := flag.Duration("i", 10*time.Millisecond, "time between requests")
	size := flag.Int("size", 64, "request bytes")
	flag.Parse()
	switch {
	case *listen != "":
		serve(*listen)
	case *connect != "":
		fmt.Printf("%.3f\n", median(ping(*connect, *n, *size, *every)))
	default:
		log.Fatal("want -listen or -connect")
	}
}

func serve(addr string) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		log.Fatal(err)
	}
	for {
		c, err := ln.Accept()
		if err != nil {
			log.Fatal(err)
		}
		go func() {
			defer c.Close()
			io.Copy(c, c)
		}()
	}
}

// ping returns n round trips in milliseconds.
func ping(addr string, n, size int, every time.Duration) []float64 {
	c, err := net.Dial("tcp", addr)
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()
	msg := make([]byte, size)
	rtts := make([]float64, 0, n)
	for range n {
		t0 := time.Now()
		c.SetDeadline(t0.Add(5 * time.Second))
		if _, err := c.Write(msg); err != nil {
			log.Fatal(err)
		}
		if _, err := io.ReadFull(c, msg); err != nil {
			log.Fatal(err)
		}
		rtts = append(rtts, float64(time.Since(t0).Microseconds())/1e3)
		time.Sleep(every)
	}
	return rtts
}

func median(v []float64) float64 {
	slices.Sort(v)
	return v[(len(v)-1)/2]
}
