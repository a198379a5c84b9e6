package main

import (
	"context"
	"errors"
	"io"
)

func runTraceroute(ctx context.Context, cfg *config, w io.Writer) error {
	return errors.New("traceroute: not built yet")
}
