package main

import (
	"context"
	"errors"
	"io"
	"net/http"
	"time"
)

// serveEcho returns every text and binary message unchanged, as one frame,
// until the peer closes or stays silent for idle. The latency test uses it
// too; any WebSocket client reaches it at the path /echo.
func serveEcho(c *wsConn, idle time.Duration) error {
	var buf []byte
	for {
		c.SetReadDeadline(time.Now().Add(idle))
		op, msg, err := c.ReadMessage(buf)
		if err != nil {
			var ce *closeError
			if errors.As(err, &ce) && !ce.Local {
				return nil
			}
			c.Abort()
			return err
		}
		c.SetWriteDeadline(time.Now().Add(idle))
		if err := c.WriteMessage(op, msg); err != nil {
			c.Abort()
			return err
		}
		buf = msg
	}
}

// echoHandler upgrades every request and echoes on it; tests use it to
// meet the engine without the rest of the server.
func echoHandler(maxMessage int64, idle time.Duration) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, err := upgrade(w, r, upgradeOptions{connOptions: connOptions{maxMessage: maxMessage, readBuffer: 64 << 10}})
		if err != nil {
			return
		}
		serveEcho(c, idle)
	})
}

func runServer(ctx context.Context, cfg *config, w io.Writer) error {
	return errors.New("server: not built yet")
}
