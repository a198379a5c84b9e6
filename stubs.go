package main

// Placeholders until ws.go, server.go and client.go land; removed then.

import (
	"context"
	"errors"
	"io"
)

const subprotocolV1 = "wperf.v1"

func runServer(ctx context.Context, cfg *config, w io.Writer) error { return errors.New("server: not built yet") }
func runClient(ctx context.Context, cfg *config, w io.Writer) error { return errors.New("client: not built yet") }
