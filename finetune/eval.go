package finetune

import (
	"context"
	"fmt"

	"github.com/strand-ml/strand/model"
)

// ExactMatch is the fraction of examples whose every trained token is the
// model's most likely next token given the true prefix. For a response
// ended by EOS this is exactly "greedy decoding from the prompt reproduces
// the response and stops". m must hold the whole model (one process, no
// tensor or pipeline split) with activations for at least one row of each
// example's length (longer examples are cut to m.MaxT).
func ExactMatch(ctx context.Context, m *model.GPT, examples []Example) (float64, error) {
	if !m.Layout.First || !m.Layout.Last {
		return 0, fmt.Errorf("exact match needs the whole model on one rank")
	}
	if len(examples) == 0 {
		return 0, fmt.Errorf("exact match: no examples")
	}
	V := m.Config.VocabSize
	a := m.NewActs(1, m.MaxT)
	in, tg := make([]int32, m.MaxT), make([]int32, m.MaxT)
	hits := 0
	for _, ex := range examples {
		if err := ctx.Err(); err != nil {
			return 0, err
		}
		n := min(ex.Len(), m.MaxT)
		ex.Inputs(in[:n], tg[:n])
		if _, _, err := m.ForwardActs(ctx, a, in[:n], nil, nil, 1, n); err != nil {
			return 0, fmt.Errorf("line %d: %w", ex.Line, err)
		}
		logits := a.Logits()
		if len(logits) != n*V {
			return 0, fmt.Errorf("exact match needs the full vocabulary's logits (tensor parallelism 1)")
		}
		ok := true
		for i := 0; i < n && ok; i++ {
			if tg[i] == ignoreIndex {
				continue
			}
			ok = argmax(logits[i*V:(i+1)*V]) == int(tg[i])
		}
		if ok {
			hits++
		}
	}
	return float64(hits) / float64(len(examples)), nil
}

func argmax(x []float32) int {
	best := 0
	for i, v := range x {
		if v > x[best] {
			best = i
		}
	}
	return best
}
