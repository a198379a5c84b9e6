package main

import (
	"context"
	"fmt"
	"net/http/httptest"
	"strings"
	"time"
)

// The engine end to end on loopback: an echo server, a client that sends
// a text message and a fragmented binary one, and the close handshake.
func Example_echoRoundTrip() {
	srv := httptest.NewServer(echoHandler(1<<20, 10*time.Second)) // listens on 127.0.0.1
	defer srv.Close()

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := dialWS(ctx, "ws"+strings.TrimPrefix(srv.URL, "http")+"/echo", dialOptions{})
	if err != nil {
		fmt.Println("dial:", err)
		return
	}
	c.SetReadDeadline(time.Now().Add(10 * time.Second))

	c.WriteMessage(opText, []byte("hello, wperf"))
	op, msg, err := c.ReadMessage(nil)
	fmt.Println(op == opText, string(msg), err)

	// A message may be sent in fragments; the echo comes back whole.
	c.WriteFrame(opBinary, false, []byte{1, 2})
	c.WriteFrame(opContinuation, true, []byte{3})
	op, msg, err = c.ReadMessage(msg)
	fmt.Println(op == opBinary, msg, err)

	fmt.Println("close:", c.Close(statusNormal, "done"))
	// Output:
	// true hello, wperf <nil>
	// true [1 2 3] <nil>
	// close: <nil>
}
