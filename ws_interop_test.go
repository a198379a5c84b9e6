package main

// Interoperability with an independent implementation,
// golang.org/x/net/websocket, in both directions: its client against our
// echo server, and our client against its server.

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"golang.org/x/net/websocket"
)

// xnetFrame is one message as x/net/websocket sees it: payload and type.
type xnetFrame struct {
	data []byte
	typ  byte
}

// xnetRaw is a codec that keeps the frame type, so an echo can answer
// text with text and binary with binary.
var xnetRaw = websocket.Codec{
	Marshal: func(v any) ([]byte, byte, error) {
		f := v.(xnetFrame)
		return f.data, f.typ, nil
	},
	Unmarshal: func(data []byte, typ byte, v any) error {
		*v.(*xnetFrame) = xnetFrame{data: data, typ: typ}
		return nil
	},
}

var interopSizes = []int{0, 1, 125, 126, 65535, 65536, 1 << 20}

// TestInteropXNetClientToOurServer: x/net/websocket's client sends text
// and binary messages of every size to echoHandler and gets them back.
func TestInteropXNetClientToOurServer(t *testing.T) {
	srv := httptest.NewServer(echoHandler(4<<20, wtDeadline))
	defer srv.Close()
	cfg, err := websocket.NewConfig("ws"+strings.TrimPrefix(srv.URL, "http")+"/echo", "http://127.0.0.1/")
	if err != nil {
		t.Fatal(err)
	}
	ws, err := websocket.DialConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer ws.Close()
	ws.SetDeadline(time.Now().Add(wtDeadline))
	r := rand.New(rand.NewPCG(11, 12))
	for _, size := range interopSizes {
		for _, typ := range []byte{websocket.TextFrame, websocket.BinaryFrame} {
			data := wtBinary(r, size)
			if typ == websocket.TextFrame {
				data = wtText(r, size)
			}
			if err := xnetRaw.Send(ws, xnetFrame{data: data, typ: typ}); err != nil {
				t.Fatalf("send %d bytes of type %d: %v", size, typ, err)
			}
			var got xnetFrame
			if err := xnetRaw.Receive(ws, &got); err != nil {
				t.Fatalf("receive %d bytes of type %d: %v", size, typ, err)
			}
			if got.typ != typ || !bytes.Equal(got.data, data) {
				t.Fatalf("sent %d bytes of type %d, got %d bytes of type %d", size, typ, len(got.data), got.typ)
			}
		}
	}
}

// TestInteropOurClientToXNetServer: dialWS against x/net/websocket's
// server, which echoes each message with its type.
func TestInteropOurClientToXNetServer(t *testing.T) {
	echoErr := make(chan error, 1)
	srv := httptest.NewServer(websocket.Server{Handler: func(ws *websocket.Conn) {
		ws.SetDeadline(time.Now().Add(wtDeadline))
		for {
			var f xnetFrame
			if err := xnetRaw.Receive(ws, &f); err != nil {
				echoErr <- err
				return
			}
			if err := xnetRaw.Send(ws, f); err != nil {
				echoErr <- err
				return
			}
		}
	}})
	defer srv.Close()
	c, err := dialWS(wtCtx(t), "ws"+strings.TrimPrefix(srv.URL, "http")+"/", dialOptions{})
	if err != nil {
		t.Fatal(err)
	}
	c.SetReadDeadline(time.Now().Add(wtDeadline))
	r := rand.New(rand.NewPCG(13, 14))
	var buf []byte
	for _, size := range interopSizes {
		for _, op := range []opcode{opText, opBinary} {
			name := map[opcode]string{opText: "text", opBinary: "binary"}[op]
			t.Run(fmt.Sprintf("%s/%d", name, size), func(t *testing.T) {
				data := wtBinary(r, size)
				if op == opText {
					data = wtText(r, size)
				}
				if err := c.WriteMessage(op, data); err != nil {
					t.Fatal(err)
				}
				gotOp, got, err := c.ReadMessage(buf)
				if err != nil {
					t.Fatal(err)
				}
				if gotOp != op || !bytes.Equal(got, data) {
					t.Fatalf("sent %d bytes with op %d, got %d bytes with op %d", size, op, len(got), gotOp)
				}
				buf = got
			})
		}
	}
	if err := c.Close(statusNormal, ""); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-echoErr:
		t.Logf("x/net server loop ended with %v", err)
	case <-time.After(wtDeadline):
		t.Fatal("x/net server did not see our close")
	}
}
