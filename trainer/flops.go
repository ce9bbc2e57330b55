package trainer

import (
	"bufio"
	"os"
	"strconv"
	"strings"

	"golang.org/x/sys/cpu"

	"github.com/strand-ml/strand/model"
)

// FLOPsPerToken estimates the training FLOPs (forward + backward) per token
// as in the PaLM paper: 6 per parameter plus 12*L*C*T for attention
// scores and their weighted sum (the logits head is counted through the
// tied embedding's parameters).
func FLOPsPerToken(cfg model.Config, params int, seq int) float64 {
	return 6*float64(params) + 12*float64(cfg.NLayer)*float64(cfg.NEmbd)*float64(seq)
}

// Peak describes the machine's float32 peak, the denominator of MFU.
type Peak struct {
	FLOPS          float64 // float32 FLOP/s over the threads used
	Threads        int
	GHz            float64
	FLOPsPerCycle  int // per core: lanes * 2 (FMA) * FMA ports
	VectorISA      string
	ClockEstimated bool // true when the clock could not be read
}

// MachinePeak computes the float32 peak from the core clock (read from
// /proc/cpuinfo), the widest vector unit the CPU has and two FMA ports.
func MachinePeak(threads int) Peak {
	p := Peak{Threads: threads}
	switch {
	case cpu.X86.HasAVX512F:
		p.VectorISA, p.FLOPsPerCycle = "avx512", 16*2*2
	case cpu.X86.HasAVX2 && cpu.X86.HasFMA:
		p.VectorISA, p.FLOPsPerCycle = "avx2+fma", 8*2*2
	default:
		p.VectorISA, p.FLOPsPerCycle = "scalar", 4*2
	}
	p.GHz = cpuGHz()
	if p.GHz == 0 {
		p.GHz, p.ClockEstimated = 2.5, true
	}
	p.FLOPS = float64(threads) * p.GHz * 1e9 * float64(p.FLOPsPerCycle)
	return p
}

// cpuGHz reads the first "cpu MHz" line of /proc/cpuinfo (0 if absent).
func cpuGHz() float64 {
	f, err := os.Open("/proc/cpuinfo")
	if err != nil {
		return 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, "cpu MHz") {
			if i := strings.IndexByte(line, ':'); i >= 0 {
				mhz, err := strconv.ParseFloat(strings.TrimSpace(line[i+1:]), 64)
				if err == nil {
					return mhz / 1000
				}
			}
		}
	}
	return 0
}
