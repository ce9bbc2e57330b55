package model

import "fmt"

// Hooks for objectives other than the mean next-token cross-entropy, used
// by fine-tuning (package finetune):
//
//   - loss weights: per-position weights w (B*T) on the LM loss, so the
//     backward computes the gradient of sum_n w[n] * lossScale * loss[n].
//     DPO uses them to turn d(objective)/d(sequence log-prob) into
//     per-token gradients (a sequence's log-prob is minus the sum of its
//     tokens' losses).
//   - a custom head: the caller reads the final hidden states (Hidden,
//     after ln_f), computes its own scalar head (a reward or value) and
//     hands back dL/dHidden; the backward then starts from it instead of
//     the LM loss.

// SetLossWeights sets per-position weights (B*T) on the loss for the
// following backwards on a, or clears them with nil.
func (a *Acts) SetLossWeights(w []float32) {
	if w == nil {
		a.head.weights = nil
		return
	}
	a.head.weights = append(a.head.weights[:0], w...)
}

// Hidden is the last stage's final hidden state (B*T, C) after ln_f from
// the last Forward: the input of the LM head, or of a custom head.
func (a *Acts) Hidden() []float32 {
	if len(a.lnf) == 0 {
		return nil
	}
	return a.lnf[:a.b*a.t*len(a.lnf)/(a.maxB*a.maxT)]
}

// SetHeadGrad makes the next backward on a start from dHidden (B*T, C),
// the gradient of a custom head's loss with respect to Hidden, instead of
// the LM loss (the LM head and the tied embedding get no gradient). nil
// restores the LM loss.
func (a *Acts) SetHeadGrad(dHidden []float32) {
	if dHidden == nil {
		a.head.grad = nil
		return
	}
	a.head.grad = append(a.head.grad[:0], dHidden...)
}

// SetHiddenOnly makes the following forwards on a stop at Hidden on the
// last stage, without the LM logits: a custom head needs only the final
// hidden states, and the LM head is the largest product of a small model
// (gpt2s: 4096 x 384 of its 12M weights). Such a forward takes no targets;
// Logits is not valid after it.
func (a *Acts) SetHiddenOnly(on bool) { a.head.hiddenOnly = on }

// headState holds an Acts' objective hooks.
type headState struct {
	weights    []float32 // (N) loss weights; nil: all 1
	grad       []float32 // (N, C) dL/dHidden from a custom head; nil: LM loss
	hiddenOnly bool      // forward stops after ln_f (SetHiddenOnly)
}

// weightRows scales each row n of dlogits (N, Vl) by the loss weight.
func (h *headState) weightRows(dlogits []float32, N, Vl int) error {
	if h.weights == nil {
		return nil
	}
	if len(h.weights) != N {
		return fmt.Errorf("model: %d loss weights for %d positions", len(h.weights), N)
	}
	for n, w := range h.weights {
		row := dlogits[n*Vl : (n+1)*Vl]
		for i := range row {
			row[i] *= w
		}
	}
	return nil
}

// customHeadBackward starts the last stage's backward from a.head.grad:
// through ln_f into dres (N, C).
func (m *GPT) customHeadBackward(a *Acts, dres []float32) error {
	N, C := a.b*a.t, m.local.C
	if len(a.head.grad) != N*C {
		return fmt.Errorf("model: head gradient of %d values for %d positions x %d", len(a.head.grad), N, C)
	}
	w := &m.w
	clear(dres)
	last := a.input[:N*C]
	if len(a.blocks) > 0 {
		last = a.blocks[len(a.blocks)-1].res3[:N*C]
	}
	m.normBackward(dres, w.dlnfw, w.dlnfb, a.head.grad, last, w.lnfw, a.lnfMean, a.lnfRstd, N)
	m.gradReady(w.headReady)
	return nil
}
