package vec

import (
	"math"
	"math/rand/v2"
	"runtime"
	"strconv"
	"testing"

	"golang.org/x/sys/unix"
)

// BenchmarkPaths times the main kernels on each path this CPU runs (Go,
// AVX2, AVX-512), called directly as the tests call them:
//
//	go test -run '^$' -bench BenchmarkPaths ./vec
//
// Besides ns/op it reports cpu-ns/op, the benchmark goroutine's thread CPU
// time per op (locked to one thread), which a loaded machine disturbs less
// than wall-clock time, and ns/elem. The machine is shared: compare the
// paths of one run, not runs.
func BenchmarkPaths(b *testing.B) {
	type rowPath struct {
		name    string
		geluBwd func(dx, x, dout []float32)
		lnFwd   func(out, x, w, b []float32)
		lnBwd   func(dx, dw, db, dout, x, w []float32, m, s float32)
		adamw   func(p, g, m, v []float32, s *AdamWStep)
		swiglu  func(out, g, u []float32)
		swigluB func(dg, du, g, u, d []float32)
	}
	const eps = 1e-5
	paths := []rowPath{{"go",
		geluTanhBackwardGo,
		func(out, x, w, b []float32) { layerNormRowGo(out, x, w, b, eps) },
		layerNormBackwardRowGo,
		func(p, g, m, v []float32, s *AdamWStep) { adamwGo(p, g, m, v, s, 1) },
		swigluGo, swigluBackwardGo,
	}}
	// an assembly path's rows, as LayerNormRow and LayerNormBackwardRow
	// run them
	asm := func(k simdPath) rowPath {
		return rowPath{k.name,
			func(dx, x, dout []float32) { k.geluTanhBackward(&dx[0], &x[0], &dout[0], len(x)) },
			func(out, x, w, b []float32) {
				n := len(x)
				m := k.sum(&x[0], n) / float32(n)
				v := k.sumSqDev(&x[0], n, m) / float32(n)
				k.normAffine(&out[0], &x[0], &w[0], &b[0], n, m, float32(1/math.Sqrt(float64(v)+eps)))
			},
			func(dx, dw, db, dout, x, w []float32, m, s float32) {
				n := len(x)
				a, c := k.lnBwdDots(&dout[0], &x[0], &w[0], n, m, s)
				k.lnBwdApply(&dx[0], &dw[0], &db[0], &dout[0], &x[0], &w[0], n, m, s, a/float32(n), c/float32(n))
			},
			func(p, g, m, v []float32, s *AdamWStep) { k.adamw(&p[0], &g[0], &m[0], &v[0], len(p), s, 1) },
			nil, nil,
		}
	}
	for _, k := range availableSIMD() {
		p := asm(k)
		switch k.name { // the SwiGLU kernels are not in simdPath
		case "avx512":
			p.swiglu = func(out, g, u []float32) { swigluAVX512(&out[0], &g[0], &u[0], len(g)) }
			p.swigluB = func(dg, du, g, u, d []float32) { swigluBackwardAVX512(&dg[0], &du[0], &g[0], &u[0], &d[0], len(g)) }
		case "avx2":
			p.swiglu = func(out, g, u []float32) { swigluAVX2(&out[0], &g[0], &u[0], len(g)) }
			p.swigluB = func(dg, du, g, u, d []float32) { swigluBackwardAVX2(&dg[0], &du[0], &g[0], &u[0], &d[0], len(g)) }
		}
		paths = append(paths, p)
	}

	r := rand.New(rand.NewPCG(40, 1))
	const rows = 256 // activation rows per op: a micro-batch's tokens
	for _, w := range []int{384, 1536} {
		x, dout, dx := randSlice(r, rows*w, 2), randSlice(r, rows*w, 1), make([]float32, rows*w)
		gamma, beta, dgamma, dbeta := randSlice(r, w, 1), randSlice(r, w, 1), make([]float32, w), make([]float32, w)
		for _, p := range paths {
			benchOp(b, "gelu_bwd_"+strconv.Itoa(w)+"/"+p.name, rows*w, func() {
				p.geluBwd(dx, x, dout)
			})
		}
		for _, p := range paths {
			benchOp(b, "ln_fwd_"+strconv.Itoa(w)+"/"+p.name, rows*w, func() {
				for i := 0; i < rows; i++ {
					p.lnFwd(dx[i*w:(i+1)*w], x[i*w:(i+1)*w], gamma, beta)
				}
			})
		}
		for _, p := range paths {
			benchOp(b, "ln_bwd_"+strconv.Itoa(w)+"/"+p.name, rows*w, func() {
				for i := 0; i < rows; i++ {
					p.lnBwd(dx[i*w:(i+1)*w], dgamma, dbeta, dout[i*w:(i+1)*w], x[i*w:(i+1)*w], gamma, 0.1, 1.2)
				}
			})
		}
	}
	{ // the Llama MLP's SwiGLU over rows of H = 1024 (llama-gpt2s)
		const w = 1024
		g, u, d := randSlice(r, rows*w, 2), randSlice(r, rows*w, 1), randSlice(r, rows*w, 1)
		out, dg, du := make([]float32, rows*w), make([]float32, rows*w), make([]float32, rows*w)
		for _, p := range paths {
			benchOp(b, "swiglu_fwd_1024/"+p.name, rows*w, func() { p.swiglu(out, g, u) })
		}
		for _, p := range paths {
			benchOp(b, "swiglu_bwd_1024/"+p.name, rows*w, func() { p.swigluB(dg, du, g, u, d) })
		}
	}
	const np = 1 << 20
	pp, g, m, v := randSlice(r, np, 1), randSlice(r, np, 0.1), randSlice(r, np, 0.01), make([]float32, np)
	s := &AdamWStep{Beta1: 0.9, OneMinusBeta1: 0.1, Beta2: 0.95, OneMinusBeta2: 0.05, Eps: 1e-8,
		StepSize: 3e-4 / 0.1, InvSqrtBC2: float32(1 / math.Sqrt(0.05)), Decay: 1 - 3e-5}
	for _, p := range paths {
		benchOp(b, "adamw_1M/"+p.name, np, func() { p.adamw(pp, g, m, v, s) })
	}
}

// benchOp runs op as a sub-benchmark, reporting thread CPU time and time
// per element besides ns/op.
func benchOp(b *testing.B, name string, elems int, op func()) {
	b.Run(name, func(b *testing.B) {
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		c0 := threadCPU(b)
		for b.Loop() {
			op()
		}
		cpu := threadCPU(b) - c0
		b.ReportMetric(float64(cpu)/float64(b.N), "cpu-ns/op")
		b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/float64(elems), "ns/elem")
	})
}

func threadCPU(b *testing.B) int64 {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_THREAD_CPUTIME_ID, &ts); err != nil {
		b.Fatalf("thread CPU clock: %v", err)
	}
	return ts.Nano()
}
