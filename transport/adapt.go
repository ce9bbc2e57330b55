package transport

import (
	"context"
	"sync"
)

// Adapters that build the operations a transport does not do natively
// from its Send and Recv (Caps says which are native). A transport
// implements the method with the adapter, for example
//
//	func (t *T) PostRecv(ctx context.Context, peer int, tag transport.Tag, buf []byte, opts ...transport.RecvOpt) transport.PostedRecv {
//		return transport.LazyRecv(t, ctx, peer, tag, buf, opts...)
//	}

// SendEach sends bufs to peer on tag with one Send each, in order (a
// SendMulti without Caps.BatchedSend).
func SendEach(t Transport, ctx context.Context, peer int, tag Tag, bufs [][]byte) error {
	for _, b := range bufs {
		if err := t.Send(ctx, peer, tag, b); err != nil {
			return err
		}
	}
	return nil
}

// LazyRecv is a posted receive that runs t.Recv when Wait is called (a
// PostRecv without Caps.PostedRecv). It takes its place in the (peer,
// tag) order at Wait, not at posting, which is the same for a caller that
// waits for its receives of one (peer, tag) in the order it posted them,
// and its sender must not wait for the receive (a transport without
// posted receives buffers what it is sent).
func LazyRecv(t Transport, ctx context.Context, peer int, tag Tag, buf []byte, opts ...RecvOpt) PostedRecv {
	return &lazyRecv{t, ctx, peer, tag, buf, RecvOpts(opts)}
}

type lazyRecv struct {
	t    Transport
	ctx  context.Context
	peer int
	tag  Tag
	buf  []byte
	opt  RecvOpt
}

func (l *lazyRecv) Wait() error { return l.t.Recv(l.ctx, l.peer, l.tag, l.buf, l.opt) }

// StagedChunks is a chunked receive through a staging buffer (a
// PostRecvChunks without Caps.ChunkedRecv): t.PostRecv into a pooled
// n-byte buffer, handed to sink as one chunk when Wait returns.
func StagedChunks(t Transport, ctx context.Context, peer int, tag Tag, n int, sink ChunkSink, opts ...RecvOpt) PostedRecv {
	s := &stagedRecv{sink: sink, buf: getStage(n)}
	s.pr = t.PostRecv(ctx, peer, tag, s.buf, opts...)
	return s
}

type stagedRecv struct {
	pr   PostedRecv
	sink ChunkSink
	buf  []byte
}

func (s *stagedRecv) Wait() error {
	err := s.pr.Wait()
	if err == nil && len(s.buf) > 0 {
		s.sink.Chunk(0, s.buf)
	}
	putStage(s.buf)
	return err
}

// stages recycles staging buffers by power-of-two class.
var stages [48]sync.Pool

func getStage(n int) []byte {
	if n == 0 {
		return nil
	}
	k := 0
	for 1<<k < n {
		k++
	}
	if b, ok := stages[k].Get().(*[]byte); ok {
		return (*b)[:n]
	}
	return make([]byte, n, 1<<k)
}

func putStage(b []byte) {
	c := cap(b)
	if c == 0 || c&(c-1) != 0 {
		return
	}
	k := 0
	for 1<<k < c {
		k++
	}
	b = b[:c]
	stages[k].Put(&b)
}
