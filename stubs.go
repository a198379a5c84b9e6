package main

// Placeholders until client.go lands; removed then.

import (
	"context"
	"errors"
	"io"
)

const subprotocolV1 = "wperf.v1"

func runClient(ctx context.Context, cfg *config, w io.Writer) error {
	return errors.New("client: not built yet")
}
