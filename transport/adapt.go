package transport

import (
	"context"
	"sync"
)

// Adapters that give any Transport the optional capabilities, so a
// wrapper (a router over several transports, a traffic counter) can offer
// them without knowing what is underneath: each uses the transport's own
// implementation when it has one and an equivalent built from Send and
// Recv otherwise.

// PostRecvOn posts a receive on t: t's own PostRecv, or a receive that
// runs when Wait is called. The latter takes its place in the (peer, tag)
// order at Wait, not at posting, which is the same for a caller that
// waits for its receives of one (peer, tag) in the order it posted them
// (as the collectives do), and its sender must not wait for the receive
// (a transport without RecvPoster buffers what it is sent).
func PostRecvOn(t Transport, ctx context.Context, peer int, tag Tag, buf []byte) PostedRecv {
	if rp, ok := t.(RecvPoster); ok {
		return rp.PostRecv(ctx, peer, tag, buf)
	}
	return lazyRecv{t, ctx, peer, tag, buf}
}

type lazyRecv struct {
	t    Transport
	ctx  context.Context
	peer int
	tag  Tag
	buf  []byte
}

func (l lazyRecv) Wait() error { return l.t.Recv(l.ctx, l.peer, l.tag, l.buf) }

// PostRecvChunksOn posts a chunked receive on t: t's own PostRecvChunks,
// or a posted receive into a staging buffer handed to sink as one chunk
// when Wait returns.
func PostRecvChunksOn(t Transport, ctx context.Context, peer int, tag Tag, n int, sink ChunkSink) PostedRecv {
	if cp, ok := t.(ChunkPoster); ok {
		return cp.PostRecvChunks(ctx, peer, tag, n, sink)
	}
	s := &stagedRecv{sink: sink, buf: getStage(n)}
	s.pr = PostRecvOn(t, ctx, peer, tag, s.buf)
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

// SendMultiOn sends bufs to peer on tag in order: t's own SendMulti, or
// one Send each.
func SendMultiOn(t Transport, ctx context.Context, peer int, tag Tag, bufs [][]byte) error {
	if ms, ok := t.(MultiSender); ok {
		return ms.SendMulti(ctx, peer, tag, bufs)
	}
	for _, b := range bufs {
		if err := t.Send(ctx, peer, tag, b); err != nil {
			return err
		}
	}
	return nil
}
