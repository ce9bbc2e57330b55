package tcp

import (
	"math/bits"
	"sync"
)

// bufPool recycles buffers for messages that arrive before their Recv, in
// power-of-two size classes. Unlike a sync.Pool it survives garbage
// collections: a fresh multi-megabyte buffer costs a page fault per 4 KiB
// when first written, which made early arrivals several times slower than
// the copy itself. It keeps at most maxKeep bytes. Each Transport owns one.
type bufPool struct {
	mu      sync.Mutex
	classes [48][][]byte // class k holds buffers with cap 1<<k
	kept    int          // bytes held
}

const maxKeep = 128 << 20

func (p *bufPool) get(n int) []byte {
	if n == 0 {
		return nil
	}
	k := bits.Len(uint(n - 1))
	if k >= len(p.classes) {
		return make([]byte, n)
	}
	p.mu.Lock()
	if m := len(p.classes[k]); m > 0 {
		b := p.classes[k][m-1]
		p.classes[k] = p.classes[k][:m-1]
		p.kept -= cap(b)
		p.mu.Unlock()
		return b[:n]
	}
	p.mu.Unlock()
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
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.kept+c > maxKeep {
		return // let the garbage collector have it
	}
	p.classes[k] = append(p.classes[k], b[:c])
	p.kept += c
}
