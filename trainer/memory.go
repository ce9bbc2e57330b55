package trainer

import (
	"os"
	"strconv"
	"strings"

	"github.com/strand-ml/strand/memplan"
)

// Memory is this rank's memory by the categories memplan predicts,
// measured from the lengths of the buffers it really holds: parameters
// (with the bf16/fp16 copies), gradients, AdamW's moments, the activation
// slots with the model's backward scratch, and the communication buffers
// (compressed gradient buckets, pipeline send and receive buffers). A head
// objective's parameters, gradients and moments count too. Other (the
// process around the buffers) is not a buffer: it is 0 here, and the peak
// RSS (PeakRSS) is what a run reports beside it.
func (t *Trainer) Memory() memplan.Breakdown {
	m := t.Model
	b := memplan.Breakdown{
		Params:      4*int64(len(m.Params.Data)) + m.PrecisionBytes(),
		Grads:       4 * int64(len(m.Params.Grad)),
		Activations: t.ActivationBytes() + m.ScratchBytes(),
	}
	if t.Opt != nil {
		b.Optimizer = 4 * int64(len(t.Opt.M)+len(t.Opt.V))
	}
	if h := t.head; h != nil {
		b.Params += 4 * int64(len(h.params))
		b.Grads += 4 * int64(len(h.grads))
		b.Activations += 4 * int64(len(h.dHid))
		if h.opt != nil {
			b.Optimizer += 4 * int64(len(h.opt.M)+len(h.opt.V))
		}
	}
	if t.bucketer != nil {
		b.Comm += t.bucketer.WireBytes()
	}
	if z := t.zero; z != nil {
		// ZeRO-2/3: the flat buffers keep their length, but only the
		// owned pieces and the units in use are resident (parallel/zero)
		u := z.Use()
		b.Grads += 4*int64(u.Owned+u.PeakGrads) - 4*int64(len(m.Params.Grad))
		if z.ShardsParams() {
			n := int64(len(m.Params.Data))
			cp := m.PrecisionCopyBytes()
			// the master pieces, and the gathered units as they are held
			// (float32 and the rounded copy, or the copy alone for the
			// weights gathered in the compute precision: GatherBytes)
			b.Params += 4*int64(u.Owned) + int64(u.PeakGathered) - 4*n - cp
		}
	}
	n := len(t.gradIn)
	for i := range t.recvAct {
		n += len(t.recvAct[i])
	}
	for i := range t.sendGrad {
		n += len(t.sendGrad[i])
	}
	if cb := t.chunks; cb != nil {
		for i := range cb.gradIn {
			n += len(cb.gradIn[i])
		}
	}
	b.Comm += 4 * int64(n)
	return b.Sum()
}

// Memory implements MemoryReporter.
func (s *Steps) Memory() memplan.Breakdown { return s.T.Memory() }

// MemoryReporter is a Stepper that reports its rank's memory: the run
// loop records it, maxed over the job's ranks, with the peak RSS on the
// second step's metrics line (the first once both the backward's working set and
// the optimizer's moments were resident) and in the end-of-run summary.
type MemoryReporter interface {
	Memory() memplan.Breakdown
}

// PeakRSS is this process's peak resident set size in bytes: VmHWM from
// /proc/self/status on Linux, getrusage's ru_maxrss elsewhere on Unix, 0
// where neither exists.
func PeakRSS() int64 {
	if raw, err := os.ReadFile("/proc/self/status"); err == nil {
		for _, line := range strings.Split(string(raw), "\n") {
			if rest, ok := strings.CutPrefix(line, "VmHWM:"); ok {
				kb, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(rest), "kB")), 10, 64)
				if err == nil {
					return kb << 10
				}
			}
		}
	}
	return maxRSS()
}
