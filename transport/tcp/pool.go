package tcp

import (
	"math/bits"
	"sync"
)

// bufPool recycles buffers for messages that arrive before their Recv, in
// power-of-two size classes, so a steady stream of early arrivals does not
// allocate. Each Transport owns one (no package-level state).
type bufPool struct {
	classes [48]sync.Pool // class k holds *[]byte with cap 1<<k
}

func (p *bufPool) get(n int) []byte {
	if n == 0 {
		return nil
	}
	k := bits.Len(uint(n - 1))
	if k >= len(p.classes) {
		return make([]byte, n)
	}
	if b, ok := p.classes[k].Get().(*[]byte); ok {
		return (*b)[:n]
	}
	return make([]byte, n, 1<<k)
}

func (p *bufPool) put(b []byte) {
	c := cap(b)
	if c == 0 || c&(c-1) != 0 {
		return // not one of ours
	}
	k := bits.Len(uint(c - 1))
	if k >= len(p.classes) {
		return
	}
	b = b[:c]
	p.classes[k].Put(&b)
}
