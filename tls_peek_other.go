//go:build !unix

package main

import "net"

// peekByte returns a new connection's first byte; without MSG_PEEK the
// byte is read, and the connection handed on replays it.
func peekByte(nc net.Conn) (byte, net.Conn, error) { return peekByteCopy(nc) }
