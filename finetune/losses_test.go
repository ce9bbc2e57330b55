package finetune

import (
	"encoding/json"
	"math"
	"os"
	"testing"
)

type lossFixtures struct {
	BT struct {
		Chosen, Rejected, Dchosen, Drejected []float64
		Loss                                 float64
	}
	DPO struct {
		Beta               float64
		PolicyChosen       []float64 `json:"policy_chosen"`
		PolicyRejected     []float64 `json:"policy_rejected"`
		RefChosen          []float64 `json:"ref_chosen"`
		RefRejected        []float64 `json:"ref_rejected"`
		RewardChosen       []float64 `json:"reward_chosen"`
		RewardRejected     []float64 `json:"reward_rejected"`
		Dchosen, Drejected []float64
		Loss               float64
	}
}

func readLossFixtures(t *testing.T) lossFixtures {
	t.Helper()
	raw, err := os.ReadFile("../model/testdata/finetune.json") // gen_finetune_fixtures.py
	if err != nil {
		t.Fatal(err)
	}
	var fx lossFixtures
	if err := json.Unmarshal(raw, &fx); err != nil {
		t.Fatal(err)
	}
	return fx
}

func near(t *testing.T, what string, got, want []float64) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%s: %d values, want %d", what, len(got), len(want))
	}
	for i := range got {
		if math.Abs(got[i]-want[i]) > 1e-9*(1+math.Abs(want[i])) {
			t.Fatalf("%s[%d] = %.12g, PyTorch %.12g", what, i, got[i], want[i])
		}
	}
}

func TestBradleyTerryMatchesPyTorch(t *testing.T) {
	fx := readLossFixtures(t).BT
	l, err := BradleyTerry(fx.Chosen, fx.Rejected)
	if err != nil {
		t.Fatal(err)
	}
	near(t, "loss", []float64{l.Loss}, []float64{fx.Loss})
	near(t, "dchosen", l.DChosen, fx.Dchosen)
	near(t, "drejected", l.DRejected, fx.Drejected)
	var acc float64
	for i := range fx.Chosen {
		if fx.Chosen[i] > fx.Rejected[i] {
			acc++
		}
	}
	if l.Accuracy != acc/float64(len(fx.Chosen)) {
		t.Fatalf("accuracy %g, want %g", l.Accuracy, acc/float64(len(fx.Chosen)))
	}
	if _, err := BradleyTerry([]float64{1}, nil); err == nil {
		t.Fatal("mismatched lengths accepted")
	}
}

func TestDPOMatchesPyTorch(t *testing.T) {
	fx := readLossFixtures(t).DPO
	l, err := DPO(fx.PolicyChosen, fx.PolicyRejected, fx.RefChosen, fx.RefRejected, fx.Beta)
	if err != nil {
		t.Fatal(err)
	}
	near(t, "loss", []float64{l.Loss}, []float64{fx.Loss})
	near(t, "dchosen", l.DChosen, fx.Dchosen)
	near(t, "drejected", l.DRejected, fx.Drejected)
	near(t, "reward chosen", l.RewardChosen, fx.RewardChosen)
	near(t, "reward rejected", l.RewardRejected, fx.RewardRejected)
	if _, err := DPO(fx.PolicyChosen, fx.PolicyRejected, fx.RefChosen, fx.RefRejected, 0); err == nil {
		t.Fatal("beta 0 accepted")
	}
	// policy == reference: every pair sits at log 2, the margin is zero
	z, _ := DPO([]float64{-3, -4}, []float64{-5, -1}, []float64{-3, -4}, []float64{-5, -1}, 0.5)
	if math.Abs(z.Loss-math.Ln2) > 1e-12 || z.Margin != 0 {
		t.Fatalf("loss %g margin %g at the reference, want ln 2 and 0", z.Loss, z.Margin)
	}
}
