package memplan

import (
	"fmt"
	"strings"
	"testing"

	"github.com/strand-ml/strand/mesh"
	"github.com/strand-ml/strand/model"
	"github.com/strand-ml/strand/parallel/zero"
)

func TestUnits(t *testing.T) {
	cfg, err := model.Preset("tiny")
	if err != nil {
		t.Fatal(err)
	}
	bounds, _ := model.StageBounds(cfg.NLayer, 2, nil)
	C, V, P := cfg.NEmbd, cfg.VocabSize, cfg.NPositions
	type unit struct {
		name string
		n    int
	}
	// a GPT-2 block in four parts, in layout order: mlp c_proj 4C²+C;
	// ln_2 2C and c_fc 4C²+4C; attn c_proj C²+C; ln_1 2C and c_attn 3C²+3C
	block := func(b int) []unit {
		h := fmt.Sprintf("h.%d.", b)
		return []unit{{h + "mlp.out", 4*C*C + C}, {h + "mlp.in", 4*C*C + 6*C}, {h + "attn.out", C*C + C}, {h + "attn.in", 3*C*C + 5*C}}
	}
	for s, want := range [][]unit{
		// (a table smaller than the largest part is one chunk)
		append(block(0), unit{"wpe", P * C}, unit{"wte[0]", V * C}),
		append(append([]unit{{"head", 2 * C}}, block(1)...), unit{"tied[0]", V * C}),
	} {
		l := model.Stage(sizeGroup(1), bounds, s)
		shapes, err := model.ParamShapes(cfg, l)
		if err != nil {
			t.Fatal(err)
		}
		got := model.ShapeUnits(shapes, 1)
		if len(got) != len(want) {
			t.Fatalf("stage %d: units %v, want %v", s, got, want)
		}
		for i := range got {
			if got[i].Name != want[i].name || got[i].Size() != want[i].n {
				t.Errorf("stage %d: unit %d is %s of %d, want %s of %d", s, i, got[i].Name, got[i].Size(), want[i].name, want[i].n)
			}
		}
		// by default parts below model.DefaultUnitMin merge: tiny's
		// blocks (under 200K parameters) are one unit each
		merged := model.ShapeUnits(shapes, 0)
		if h := merged[len(merged)-3]; s == 0 && (h.Name != "h.0" || h.Size() != 12*C*C+13*C) {
			t.Errorf("stage 0 merged: %v, want h.0 whole", merged)
		}
		// with the MLP's two parts as the threshold: they merge, and the
		// attention's two parts are the block's rest
		if s == 0 {
			byMin := model.ShapeUnits(shapes, 4*C*C+C+4*C*C+6*C)
			var names []string
			for _, u := range byMin {
				names = append(names, u.Name)
			}
			if want := "h.0.mlp h.0.attn wpe wte[0]"; strings.Join(names, " ") != want {
				t.Errorf("stage 0 with min unit %d: %v, want %s", 8*C*C+7*C, names, want)
			}
		}
	}
}

func TestZeRO1Share(t *testing.T) {
	for _, c := range []struct{ P, per, dp, want int64 }{
		{10, 4, 3, 5},   // buckets 4, 4, 2: rank 0 holds 2 + 2 + 1
		{12, 100, 4, 3}, // one bucket
		{7, 7, 1, 7},
	} {
		if got := zero1Share(c.P, c.per, c.dp); got != c.want {
			t.Errorf("zero1Share(%d, %d, %d) = %d, want %d", c.P, c.per, c.dp, got, c.want)
		}
	}
}

// TestZeroStages checks each stage shrinks what it shards, by the amounts
// the design gives.
func TestZeroStages(t *testing.T) {
	cfg, err := model.Preset("small")
	if err != nil {
		t.Fatal(err)
	}
	base := Config{Model: cfg, Mesh: mesh.Mesh{DP: 4, TP: 1, PP: 1}, Batch: 8, Seq: 128, ReshardAfterForward: true}
	plans := make([]Breakdown, 4)
	for z := range plans {
		c := base
		c.Zero = z
		st, err := Plan(c)
		if err != nil {
			t.Fatal(err)
		}
		plans[z] = st[0].Breakdown
	}
	st, _ := Plan(base)
	P := st[0].Elements
	l := model.Full(cfg)
	shapes, _ := model.ParamShapes(cfg, l)
	units := model.ShapeUnits(shapes, 0)
	var shard int64
	size := make([]int, len(units))
	for i, u := range units {
		shard += int64(u.Size()+3) / 4
		size[i] = u.Size()
	}
	f, g := model.PassGroups(units, l, cfg, model.Pass{}), model.PassGroups(units, l, cfg, model.Pass{Backward: true})
	_, grads2 := zero.Peaks(size, size, f, g, false, false)
	params3, grads3 := zero.Peaks(size, size, f, g, true, false)
	if plans[0].Optimizer != 8*P || plans[1].Optimizer != 8*zero1Share(P, (25<<20)/4, 4) {
		t.Errorf("optimizer: ZeRO-0 %d (want %d), ZeRO-1 %d", plans[0].Optimizer, 8*P, plans[1].Optimizer)
	}
	if plans[2].Grads != 4*shard+4*int64(grads2) || plans[3].Grads != 4*shard+4*int64(grads3) || plans[2].Optimizer != 8*shard {
		t.Errorf("ZeRO-2: gradients %d, optimizer %d (shard %d elements)", plans[2].Grads, plans[2].Optimizer, shard)
	}
	if plans[2].Params != 4*P || plans[3].Params != 4*shard+4*int64(params3) {
		t.Errorf("parameters: ZeRO-2 %d, ZeRO-3 %d", plans[2].Params, plans[3].Params)
	}
	for z := 1; z < 4; z++ {
		if plans[z].Total >= plans[z-1].Total {
			t.Errorf("ZeRO-%d total %d is not below ZeRO-%d's %d", z, plans[z].Total, z-1, plans[z-1].Total)
		}
	}
	keep := base
	keep.Zero, keep.ReshardAfterForward = 3, false
	st, _ = Plan(keep)
	if st[0].Params != 4*shard+4*P {
		t.Errorf("ZeRO-3 without resharding: parameters %d, want shard + everything gathered %d", st[0].Params, 4*shard+4*P)
	}
}

func TestCheckLimit(t *testing.T) {
	cfg, _ := model.Preset("gpt2")
	c := Config{Model: cfg, Mesh: mesh.Mesh{DP: 1, TP: 1, PP: 1}, Batch: 8, Seq: 1024}
	st, err := Plan(c)
	if err != nil {
		t.Fatal(err)
	}
	if err := CheckLimit(c, st, st[0].Total); err != nil {
		t.Errorf("a plan exactly at the limit was refused: %v", err)
	}
	err = CheckLimit(c, st, 1<<30)
	if err == nil {
		t.Fatal("gpt2 with a batch of 8 x 1024 fits in 1 GiB?")
	}
	for _, want := range []string{Bytes(st[0].Total), "1.0 GiB", "activations", "--recompute full"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not name %q", err, want)
		}
	}
}

func TestParseBytes(t *testing.T) {
	for in, want := range map[string]int64{"12GiB": 12 << 30, "800MB": 800e6, "1.5 GiB": 3 << 29, "4096": 4096} {
		got, err := ParseBytes(in)
		if err != nil || got != want {
			t.Errorf("ParseBytes(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, in := range []string{"", "lots", "0", "-5GB"} {
		if _, err := ParseBytes(in); err == nil {
			t.Errorf("ParseBytes(%q) accepted", in)
		}
	}
}

func TestPlanRefusesBadInput(t *testing.T) {
	cfg, _ := model.Preset("tiny")
	ok := Config{Model: cfg, Mesh: mesh.Mesh{DP: 2, TP: 1, PP: 1}, Batch: 8, Seq: 64}
	for name, mut := range map[string]func(*Config){
		"zero 4":        func(c *Config) { c.Zero = 4 },
		"shard group 3": func(c *Config) { c.Zero, c.ShardGroup = 2, 3 },
		"batch split":   func(c *Config) { c.Batch = 3 },
		"precision":     func(c *Config) { c.Precision = "fp8" },
		"recompute":     func(c *Config) { c.Recompute = "most" },
		"tp":            func(c *Config) { c.Mesh.TP = 3 },
		"pp":            func(c *Config) { c.Mesh.PP = 3 },
	} {
		c := ok
		mut(&c)
		if _, err := Plan(c); err == nil {
			t.Errorf("%s: planned", name)
		}
	}
	if _, err := Plan(ok); err != nil {
		t.Fatal(err)
	}
}
