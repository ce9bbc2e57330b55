package model

import (
	"context"
	"math"
	"slices"
	"testing"

	"github.com/strand-ml/strand/gemm"
)

func TestVocabCuts(t *testing.T) {
	for _, c := range []struct {
		rows, C, target int
		want            []int
	}{
		// gpt2: k blocks of 384 (131 of them, the last 337 rows), chunks of
		// 24 blocks (a block's 7.1M parameters), the partial block alone
		{50257, 768, 7087872, []int{0, 9216, 18432, 27648, 36864, 46080, 49920, 50257}},
		// gpt2s: 11 blocks of 373 rows; two per chunk (at most a quarter
		// of the table), the last block (366 rows) alone
		{4096, 384, 1774464, []int{0, 746, 1492, 2238, 2984, 3730, 4096}},
		// one k block (k <= 384): one chunk, whatever the target
		{256, 128, 100, []int{0, 256}},
		// two blocks of 256: the last alone
		{512, 256, 1 << 30, []int{0, 256, 512}},
		// 1600 rows: blocks of 320, every one its own chunk
		{1600, 32, 12704, []int{0, 320, 640, 960, 1280, 1600}},
	} {
		if got := VocabCuts(c.rows, c.C, c.target); !slices.Equal(got, c.want) {
			t.Errorf("VocabCuts(%d, %d, %d) = %v, want %v", c.rows, c.C, c.target, got, c.want)
		}
	}
}

// denseRows is a Residency that holds everything: it only takes the
// embedding's gradient rows back into Params.Grad, as a single process
// would have accumulated them.
type denseRows struct {
	m     *GPT
	asked []int
}

func (d *denseRows) Need(_ context.Context, u int, _ bool) error {
	d.asked = append(d.asked, u)
	return nil
}

func (d *denseRows) Done(context.Context, int, bool) error { return nil }

func (d *denseRows) AddRows(_ context.Context, units []int, ids []int32, rows []float32, width, _ int) error {
	lo := d.m.Units()[units[0]].Lo
	for i, v := range ids {
		g := d.m.Params.Grad[lo+int(v)*width : lo+int(v+1)*width]
		for j := range g {
			g[j] += rows[i*width+j]
		}
	}
	return nil
}

// The head and embedding computed one vocabulary chunk at a time (as
// ZeRO-2/3 run them) give the whole-table computation's loss and
// gradients bit for bit: chunks cut at the GEMM's k blocks, the tied
// embedding's rows taken out of the head's gradient and added back.
func TestVocabChunksAreBitIdentical(t *testing.T) {
	cfg := Config{VocabSize: 1600, NLayer: 2, NHead: 2, NEmbd: 32, NPositions: 16, LayerNormEps: 1e-5,
		Activation: GELUTanh, Norm: LayerNorm, Position: PosLearned, InitStd: 0.2}
	const B, T = 2, 16
	tokens, targets := make([]int32, B*T), make([]int32, B*T)
	for i := range tokens {
		tokens[i], targets[i] = int32((i*397)%1600), int32((i*211+5)%1600)
	}
	tokens[3] = tokens[20] // a row used twice
	run := func(chunked bool) (float64, []float32, *denseRows) {
		m, err := New(cfg, B, T, gemm.New(1))
		if err != nil {
			t.Fatal(err)
		}
		m.Init(7)
		var r *denseRows
		if chunked {
			m.SetUnitMin(1) // blocks in quarters too
			r = &denseRows{m: m}
			if err := m.SetResidency(r); err != nil {
				t.Fatal(err)
			}
		}
		loss, _, err := m.Forward(tokens, targets, B, T)
		if err != nil {
			t.Fatal(err)
		}
		m.Backward(1 / float32(B*T))
		return loss, slices.Clone(m.Params.Grad), r
	}
	loss, grad, _ := run(false)
	cl, cg, r := run(true)
	if math.Float64bits(cl) != math.Float64bits(loss) {
		t.Errorf("chunked loss %v, whole %v", cl, loss)
	}
	for i := range grad {
		if math.Float32bits(cg[i]) != math.Float32bits(grad[i]) {
			t.Fatalf("gradient %d: chunked %g, whole %g", i, cg[i], grad[i])
		}
	}
	// the five wte chunks were asked for, each once per pass (embedding,
	// head forward, head backward)
	units := r.m.Units()
	n := 0
	for _, u := range r.asked {
		if units[u].Name[0] == 'w' && units[u].Name != "wpe" {
			n++
		}
	}
	if n != 15 {
		t.Errorf("wte chunks asked for %d times, want 15 (5 chunks x embedding, logits, head backward)", n)
	}
}

// InitRanges draws exactly Init's values into the ranges and nothing
// elsewhere, ranges cutting parameters anywhere (mid-row, empty, across
// two parameters).
func TestInitRangesMatchesInit(t *testing.T) {
	cfg := Config{VocabSize: 100, NLayer: 2, NHead: 2, NEmbd: 16, NPositions: 8, LayerNormEps: 1e-5,
		Activation: GELUTanh, Norm: LayerNorm, Position: PosLearned, InitStd: 0.2}
	m, err := New(cfg, 1, 8, gemm.New(1))
	if err != nil {
		t.Fatal(err)
	}
	m.Init(11)
	n := len(m.Params.Data)
	wte, _ := m.Params.Lookup("wte.weight")
	ranges := [][2]int{{3, 40}, {40, 40}, {500, 1700}, {wte.Offset + 17, wte.Offset + 600}, {n - 5, n}}
	dst := make([]float32, n)
	m.Params.InitRanges(11, dst, ranges)
	in := func(f int) bool {
		for _, r := range ranges {
			if f >= r[0] && f < r[1] {
				return true
			}
		}
		return false
	}
	for f := range dst {
		want := float32(0)
		if in(f) {
			want = m.Params.Data[f]
		}
		if math.Float32bits(dst[f]) != math.Float32bits(want) {
			t.Fatalf("element %d: %g, want %g", f, dst[f], want)
		}
	}
}
