package trainer

import (
	"fmt"

	"github.com/strand-ml/strand/parallel/pipeline"
)

// chunkBufs are the buffers of a stage holding several model chunks
// (virtual pipeline stages, interleaved 1F1B). Each chunk has its own
// activation slots (t.acts[base[c] : base[c]+count[c]]: the chunks' Acts
// differ in blocks and head); received activations and gradients go into
// pools taken at the receive and given back at the compute that reads
// them (pipeline.Schedule.Pending sizes them), so no receive can land in
// a buffer an earlier micro-batch still needs, whatever order the program
// places its receives in.
type chunkBufs struct {
	base, count []int          // per chunk: first slot in t.acts, number of slots
	slot        map[[2]int]int // training program: {micro, chunk} -> slot within the chunk's
	// lastMicro[c] is the micro-batch of chunk c's last backward, where its
	// gradients become final; nil when the chunks do not finish in the
	// flat gradient buffer's order (then the reduction starts after the
	// last backward)
	lastMicro []int
	// receive pools: buffers (t.recvAct and gradIn), free lists, and the
	// buffer holding each received {micro, chunk}
	gradIn            [][]float32
	freeAct, freeGrad []int
	heldAct, heldGrad map[[2]int]int
	fwdProg           *pipeline.Schedule // Forward passes: the forward half of the program
}

// allocChunks makes the activation slots and transfer buffers of this
// stage's chunks for the training program and for Forward passes.
func (t *Trainer) allocChunks(hidden int) error {
	p, st := t.Pipe, t.Comms.Coord.PP
	cb := &chunkBufs{heldAct: map[[2]int]int{}, heldGrad: map[[2]int]int{}}
	cb.slot, cb.count = p.ChunkSlots(st)
	// the forward half keeps the full program's forwards and activation
	// transfers in their order, without the backwards and the gradient
	// transfers (both ends of each): a complete run of the full program,
	// which Check proved, is one of the half with those actions left out,
	// and programs of blocking receives and free sends finish in any
	// order once they finish in one
	fwd, _ := pipeline.Halves(p)
	cb.fwdProg = fwd
	// passes reuse a chunk's slots micro mod count: at least one each
	for c := range cb.count {
		cb.count[c] = max(cb.count[c], 1)
	}
	cb.base = make([]int, len(cb.count))
	for c, n := range cb.count {
		cb.base[c] = len(t.acts)
		for i := 0; i < n; i++ {
			a, err := t.Model.NewChunkActs(c, t.micro, t.Opts.Seq, t.Opts.Recompute)
			if err != nil {
				return err
			}
			t.acts = append(t.acts, a)
			var g []float32
			if p.Global(st, c) > 0 {
				g = make([]float32, hidden)
			}
			t.sendGrad = append(t.sendGrad, g)
		}
	}
	nAct := max(p.Pending(st, pipeline.RecvAct), fwd.Pending(st, pipeline.RecvAct))
	for i := 0; i < nAct; i++ {
		t.recvAct = append(t.recvAct, make([]float32, hidden))
	}
	for i := 0; i < p.Pending(st, pipeline.RecvGrad); i++ {
		cb.gradIn = append(cb.gradIn, make([]float32, hidden))
	}
	cb.reset(len(t.recvAct))
	// the chunks' gradients are final in the flat buffer's order (last
	// layers first) when chunk V-1's last backward comes first, then V-2's,
	// ...: interleaved 1F1B's order
	done := p.WeightGradDone(st)
	cb.lastMicro = make([]int, len(done))
	for c, i := range done {
		if i < 0 || c > 0 && done[c-1] < i {
			cb.lastMicro = nil
			break
		}
		cb.lastMicro[c] = p.Steps[st][i].Micro
	}
	t.chunks = cb
	return nil
}

// reset makes every receive buffer free (a program that failed may have
// left some taken), nAct of them for activations.
func (cb *chunkBufs) reset(nAct int) {
	clear(cb.heldAct)
	clear(cb.heldGrad)
	cb.freeAct, cb.freeGrad = cb.freeAct[:0], cb.freeGrad[:0]
	for i := 0; i < nAct; i++ {
		cb.freeAct = append(cb.freeAct, i)
	}
	for i := range cb.gradIn {
		cb.freeGrad = append(cb.freeGrad, i)
	}
}

// slotOf is the activation slot (index into t.acts) of micro-batch micro
// on chunk chunk: the training program's, or for a pass (which keeps no
// activations for a backward) micro mod the chunk's slots.
func (cb *chunkBufs) slotOf(micro, chunk int, pass bool) int {
	if pass {
		return cb.base[chunk] + micro%cb.count[chunk]
	}
	return cb.base[chunk] + cb.slot[[2]int{micro, chunk}]
}

// take gives a free buffer of a pool to {micro, chunk}.
func take(free *[]int, held map[[2]int]int, micro, chunk int, what string) (int, error) {
	if len(*free) == 0 {
		return 0, fmt.Errorf("%s of micro-batch %d chunk %d: no free receive buffer (the program holds more receives than it was sized for)", what, micro, chunk)
	}
	i := (*free)[len(*free)-1]
	*free = (*free)[:len(*free)-1]
	held[[2]int{micro, chunk}] = i
	return i, nil
}

// give returns {micro, chunk}'s buffer to its pool: the buffer index, or
// -1 if it holds none.
func give(free *[]int, held map[[2]int]int, micro, chunk int) int {
	k := [2]int{micro, chunk}
	i, ok := held[k]
	if !ok {
		return -1
	}
	delete(held, k)
	*free = append(*free, i)
	return i
}
