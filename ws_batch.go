package main

// ws_batch.go is the bulk-data writer: many frames laid back to back and
// handed to the kernel in one writev, with payload that was masked once
// and never again.

import "net"

// frameBatch lays many frames back to back for one writev, the bulk-data
// path: headers (and any masked prefix, such as a sequence number) go in
// the batch's own scratch, payloads are referenced where they lie. Filler
// payload is sent exactly as given: from a client, the random bytes stand
// for the masked form, so no byte of it is XORed. Use it only for content
// whose value does not matter.
type frameBatch struct {
	c       *wsConn
	scratch []byte
	used    int
	vec     net.Buffers // backing array of iovecs, reused
	out     net.Buffers // the slice of vec handed to writev, consumed by it
	flat    []byte      // for connections without writev (TLS): the batch in pieces (writeFlat)
}

// NewBatch makes a batch for up to frames frames, each with a masked
// prefix of at most prefixMax bytes.
func (c *wsConn) NewBatch(frames, prefixMax int) *frameBatch {
	return &frameBatch{
		c:       c,
		scratch: make([]byte, frames*(maxHeaderLen+prefixMax)),
		vec:     make(net.Buffers, 0, 2*frames),
	}
}

// Add appends one frame: prefix (masked when we are a client) then filler.
func (b *frameBatch) Add(op opcode, prefix, filler []byte) {
	c := b.c
	var key uint32
	if c.isClient {
		// The key store is shared with frames written under writeMu,
		// such as the pongs a concurrent reader sends.
		c.writeMu.Lock()
		key = c.nextKey()
		c.writeMu.Unlock()
	}
	h := b.scratch[b.used:]
	n := putFrameHeader(h, true, op, len(prefix)+len(filler), c.isClient, key)
	m := copy(h[n:], prefix)
	if c.isClient {
		mask(key, h[n:n+m])
	}
	b.vec = append(b.vec, h[:n+m:n+m])
	b.used += n + m
	if len(filler) > 0 {
		b.vec = append(b.vec, filler)
	}
}

// Flush sends the batch in one system call (writev), or where the
// connection has no writev in Writes of a flattened copy, a piece at a
// time (writeFlat); and empties it.
func (b *frameBatch) Flush() error {
	c := b.c
	c.writeMu.Lock()
	defer c.writeMu.Unlock()
	defer b.reset()
	if c.closeSent {
		return errConnClosed
	}
	if c.writeVector {
		b.out = b.vec
		_, err := b.out.WriteTo(c.nc)
		return err
	}
	return writeFlat(c.nc, b.vec, &b.flat)
}

func (b *frameBatch) reset() {
	clear(b.vec)
	b.vec = b.vec[:0]
	b.used = 0
}
