package hf

import (
	"context"
	"encoding/json"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/strand-ml/strand/gemm"
	"github.com/strand-ml/strand/model"
	"github.com/strand-ml/strand/parallel/tensor/tensortest"
	"github.com/strand-ml/strand/safetensors"
)

// The fixtures in testdata/{llama,qwen2} and their reference.safetensors
// were written by testdata/gen_hf_fixtures.py, a PyTorch implementation of
// the Hugging Face modeling equations in float64.

type reference struct {
	tokens, targets, greedy []int32
	loss                    float64
	f                       *safetensors.File
}

func readReference(t *testing.T, dir string) reference {
	t.Helper()
	f, err := safetensors.Read(filepath.Join(dir, "reference.safetensors"))
	if err != nil {
		t.Fatal(err)
	}
	loss, _, err := f.Float32("loss")
	if err != nil {
		t.Fatal(err)
	}
	return reference{tokens: int32s(t, f, "tokens"), targets: int32s(t, f, "targets"), greedy: int32s(t, f, "greedy"), loss: float64(loss[0]), f: f}
}

func int32s(t *testing.T, f *safetensors.File, name string) []int32 {
	t.Helper()
	tt, ok := f.Tensor(name)
	if !ok || tt.DType != safetensors.I32 {
		t.Fatalf("reference tensor %s missing or not int32", name)
	}
	out := make([]int32, len(tt.Data)/4)
	for i := range out {
		b := tt.Data[4*i:]
		out[i] = int32(uint32(b[0]) | uint32(b[1])<<8 | uint32(b[2])<<16 | uint32(b[3])<<24)
	}
	return out
}

// loadFixture builds the single-process model of dir for batches B x T.
func loadFixture(t *testing.T, dir string, B, T int) *model.GPT {
	t.Helper()
	cfg, _, err := ReadConfig(dir)
	if err != nil {
		t.Fatal(err)
	}
	m, err := model.New(cfg, B, T, gemm.New(2))
	if err != nil {
		t.Fatal(err)
	}
	if err := Load(dir, m); err != nil {
		t.Fatal(err)
	}
	return m
}

func relL2(got, want []float32) float64 {
	var num, den float64
	for i := range want {
		d := float64(got[i]) - float64(want[i])
		num += d * d
		den += float64(want[i]) * float64(want[i])
	}
	return math.Sqrt(num / math.Max(den, 1e-30))
}

func TestMatchesPyTorchOracle(t *testing.T) {
	for _, name := range []string{"llama", "qwen2"} {
		t.Run(name, func(t *testing.T) {
			dir := filepath.Join("testdata", name)
			ref := readReference(t, dir)
			B, T := 2, len(ref.tokens)/2
			m := loadFixture(t, dir, B, T)
			sum, count, err := m.Forward(ref.tokens, ref.targets, B, T)
			if err != nil {
				t.Fatal(err)
			}
			loss := sum / float64(count)
			if e := math.Abs(loss-ref.loss) / ref.loss; e > 1e-5 {
				t.Errorf("loss %.8f, PyTorch %.8f (relative error %.2g)", loss, ref.loss, e)
			}
			m.Params.ZeroGrad()
			m.Backward(float32(1 / float64(count)))
			n := 0
			err = Each(m, m.Params.Grad, func(name string, shape []int, g []float32) error {
				want, _, err := ref.f.Float32("grad." + name)
				if err != nil {
					return err
				}
				if e := relL2(g, want); e > 1e-4 {
					t.Errorf("gradient of %s: relative L2 error %.2g", name, e)
				}
				n++
				return nil
			})
			if err != nil {
				t.Fatal(err)
			}
			if n != len(ref.f.Names())-4 {
				t.Errorf("compared %d gradients, the reference has %d", n, len(ref.f.Names())-4)
			}

			// greedy continuation with the KV cache, token for token
			c, err := m.NewKVCache(len(ref.greedy))
			if err != nil {
				t.Fatal(err)
			}
			prompt := ref.greedy[:5]
			seq := append([]int32(nil), prompt...)
			logits, err := c.Forward(context.Background(), prompt)
			for err == nil && len(seq) < len(ref.greedy) {
				best := 0
				for v, x := range logits {
					if x > logits[best] {
						best = v
					}
				}
				seq = append(seq, int32(best))
				logits, err = c.Forward(context.Background(), seq[len(seq)-1:])
			}
			if err != nil {
				t.Fatal(err)
			}
			for i := range seq {
				if seq[i] != ref.greedy[i] {
					t.Fatalf("greedy continuation %v, PyTorch %v", seq, ref.greedy)
				}
			}
		})
	}
}

func TestReadConfigFamilies(t *testing.T) {
	cfg, meta, err := ReadConfig(filepath.Join("testdata", "llama"))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.KVHeads() != 2 || cfg.NHead != 6 || !cfg.UntiedHead || cfg.QKVBias || cfg.RopeScaling == nil || cfg.RopeScaling.Type != model.ScaleLlama3 {
		t.Errorf("llama config %+v", cfg)
	}
	if meta.ModelType != "llama" || len(meta.EOS) != 2 || meta.EOS[0] != 65 || meta.EOS[1] != 66 {
		t.Errorf("llama meta %+v: eos from generation_config.json should be [65 66]", meta)
	}
	cfg, meta, err = ReadConfig(filepath.Join("testdata", "qwen2"))
	if err != nil {
		t.Fatal(err)
	}
	if !cfg.QKVBias || cfg.UntiedHead || cfg.KVGroup() != 2 || cfg.SlidingWindow != 0 {
		t.Errorf("qwen2 config %+v (use_sliding_window false: no window)", cfg)
	}
	if len(meta.EOS) != 1 || meta.EOS[0] != 52 {
		t.Errorf("qwen2 eos %v, want [52]", meta.EOS)
	}
}

// TestTensorParallelLoad loads the llama fixture (6 query heads over 2 kv
// heads) into two tensor-parallel ranks: each assembles the fused tensors
// and keeps its shard, and together they compute PyTorch's loss.
func TestTensorParallelLoad(t *testing.T) {
	dir := filepath.Join("testdata", "llama")
	ref := readReference(t, dir)
	cfg, _, err := ReadConfig(dir)
	if err != nil {
		t.Fatal(err)
	}
	// the vocabulary-parallel head needs TP to divide the vocabulary (67):
	// load a copy with two zero rows appended to the embedding and head
	if err := model.CheckTP(cfg, 2); err == nil || !strings.Contains(err.Error(), "vocabulary") {
		t.Fatalf("TP 2 over a vocabulary of 67: %v", err)
	}
	tmp := t.TempDir()
	padVocab(t, dir, tmp, 68)
	B, T := 2, len(ref.tokens)/2
	groups := tensortest.Groups(2)
	losses := make([]float64, 2)
	var wg sync.WaitGroup
	for r := range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			cfg, _, err := ReadConfig(tmp)
			if err != nil {
				t.Error(err)
				return
			}
			l := model.Full(cfg)
			l.TP = groups[r]
			m, err := model.NewSharded(cfg, l, B, T, gemm.New(1))
			if err != nil {
				t.Error(err)
				return
			}
			if err := Load(tmp, m); err != nil {
				t.Error(err)
				return
			}
			sum, count, err := m.ForwardActs(context.Background(), m.NewActs(B, T), ref.tokens, nil, ref.targets, B, T)
			if err != nil {
				t.Error(err)
				return
			}
			losses[r] = sum / float64(count)
		}()
	}
	wg.Wait()
	// the padded rows change the softmax: compare with the single-process
	// model of the padded directory
	m := loadFixture(t, tmp, B, T)
	sum, count, err := m.Forward(ref.tokens, ref.targets, B, T)
	if err != nil {
		t.Fatal(err)
	}
	want := sum / float64(count)
	for r, l := range losses {
		if math.Abs(l-want)/want > 1e-5 {
			t.Errorf("TP rank %d: loss %.7f, single process %.7f", r, l, want)
		}
	}
}

// padVocab copies the Hugging Face directory src to dst with the
// vocabulary grown to v rows (zero rows appended to the embedding and the
// head), as one float32 model.safetensors.
func padVocab(t *testing.T, src, dst string, v int) {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join(src, "config.json"))
	if err != nil {
		t.Fatal(err)
	}
	var cfg map[string]any
	if err := json.Unmarshal(raw, &cfg); err != nil {
		t.Fatal(err)
	}
	old := int(cfg["vocab_size"].(float64))
	cfg["vocab_size"] = v
	out, _ := json.Marshal(cfg)
	if err := os.WriteFile(filepath.Join(dst, "config.json"), out, 0o644); err != nil {
		t.Fatal(err)
	}
	readers, where, err := openFiles(src)
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		for _, r := range readers {
			r.Close()
		}
	}()
	var ts []safetensors.Tensor
	for name, r := range where {
		in, _ := r.Info(name)
		data, err := r.Float32(name)
		if err != nil {
			t.Fatal(err)
		}
		shape := in.Shape
		if name == "model.embed_tokens.weight" || name == "lm_head.weight" {
			data = append(data, make([]float32, (v-old)*shape[1])...)
			shape = []int{v, shape[1]}
		}
		ts = append(ts, safetensors.F32Tensor(name, shape, data))
	}
	if err := safetensors.Write(filepath.Join(dst, SingleFile), ts, nil); err != nil {
		t.Fatal(err)
	}
}

func TestExportRoundTrip(t *testing.T) {
	dir := filepath.Join("testdata", "llama")
	m := loadFixture(t, dir, 1, 4)
	_, meta, err := ReadConfig(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, dtype := range []string{"fp32", "bf16"} {
		t.Run(dtype, func(t *testing.T) {
			out := t.TempDir()
			// a limit below the largest tensor: several shards and an index
			if err := Export(out, m, ExportOptions{DType: dtype, MaxShardBytes: 20000, Meta: meta}); err != nil {
				t.Fatal(err)
			}
			if _, err := os.Stat(filepath.Join(out, IndexFile)); err != nil {
				t.Fatalf("no index for a sharded export: %v", err)
			}
			shards, _ := filepath.Glob(filepath.Join(out, "model-*-of-*.safetensors"))
			if len(shards) < 3 {
				t.Errorf("%d shard files, want several", len(shards))
			}
			back := loadFixture(t, out, 1, 4)
			// the fixture is stored in bf16, so both dtypes reload it exactly
			for i, v := range m.Params.Data {
				if back.Params.Data[i] != v {
					t.Fatalf("%s export: parameter value %d is %g, was %g", dtype, i, back.Params.Data[i], v)
				}
			}
			cfg2, meta2, err := ReadConfig(out)
			if err != nil {
				t.Fatal(err)
			}
			if cfg2 != m.Config && !sameConfig(cfg2, m.Config) {
				t.Errorf("config after export %+v, was %+v", cfg2, m.Config)
			}
			if len(meta2.EOS) != 2 {
				t.Errorf("eos after export %v, want %v", meta2.EOS, meta.EOS)
			}
		})
	}
}

func sameConfig(a, b model.Config) bool {
	ra, _ := json.Marshal(a)
	rb, _ := json.Marshal(b)
	return string(ra) == string(rb)
}

// TestExportLoadsInPyTorch: the exported directory, read by the PyTorch
// oracle, gives the reference loss.
func TestExportLoadsInPyTorch(t *testing.T) {
	py := "/usr/bin/python3"
	if _, err := os.Stat(py); err != nil {
		t.Skip("no /usr/bin/python3")
	}
	if testing.Short() {
		t.Skip("-short: skipping the torch cross-check")
	}
	for _, name := range []string{"llama", "qwen2"} {
		dir := filepath.Join("testdata", name)
		ref := readReference(t, dir)
		m := loadFixture(t, dir, 1, 4)
		out := t.TempDir()
		if err := Export(out, m, ExportOptions{MaxShardBytes: 30000}); err != nil {
			t.Fatal(err)
		}
		res, err := exec.Command(py, "testdata/gen_hf_fixtures.py", "--loss", out, filepath.Join(dir, "reference.safetensors")).CombinedOutput()
		if err != nil && strings.Contains(string(res), "No module named 'torch'") {
			t.Skip("python3 has no torch")
		}
		if err != nil {
			t.Fatalf("%s: oracle failed: %v\n%s", name, err, res)
		}
		var got struct{ Loss float64 }
		if err := json.Unmarshal(res, &got); err != nil {
			t.Fatalf("%s: oracle printed %q", name, res)
		}
		if e := math.Abs(got.Loss-ref.loss) / ref.loss; e > 1e-5 {
			t.Errorf("%s: exported checkpoint's PyTorch loss %.8f, reference %.8f", name, got.Loss, ref.loss)
		}
	}
}

// writeDir writes a small Hugging Face directory for error tests.
func writeDir(t *testing.T, cfg map[string]any, tensors []safetensors.Tensor) string {
	t.Helper()
	dir := t.TempDir()
	raw, _ := json.Marshal(cfg)
	if err := os.WriteFile(filepath.Join(dir, "config.json"), raw, 0o644); err != nil {
		t.Fatal(err)
	}
	if tensors != nil {
		if err := safetensors.Write(filepath.Join(dir, SingleFile), tensors, nil); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func tinyConfig() map[string]any {
	return map[string]any{"model_type": "llama", "architectures": []string{"LlamaForCausalLM"}, "vocab_size": 8, "hidden_size": 8,
		"intermediate_size": 12, "num_hidden_layers": 1, "num_attention_heads": 2, "num_key_value_heads": 1,
		"max_position_embeddings": 16, "rms_norm_eps": 1e-5}
}

// tinyTensors are a valid checkpoint of tinyConfig.
func tinyTensors(t *testing.T) []safetensors.Tensor {
	cfg, _, err := ParseConfig(must(json.Marshal(tinyConfig())))
	if err != nil {
		t.Fatal(err)
	}
	var ts []safetensors.Tensor
	for _, e := range entries(cfg) {
		ts = append(ts, safetensors.F32Tensor(e.name, e.shape, make([]float32, model.Numel(e.shape))))
	}
	return ts
}

func must(b []byte, err error) []byte {
	if err != nil {
		panic(err)
	}
	return b
}

func TestBadInputIsOneClearError(t *testing.T) {
	with := func(k string, v any) map[string]any {
		c := tinyConfig()
		c[k] = v
		return c
	}
	configCases := []struct {
		cfg  map[string]any
		want string
	}{
		{with("model_type", "gemma"), `model_type "gemma" is not supported (supported: llama, mistral, qwen2`},
		{with("architectures", []string{"LlamaForSequenceClassification"}), `architecture "LlamaForSequenceClassification" is not supported`},
		{with("rope_scaling", map[string]any{"rope_type": "dynamic", "factor": 2}), `rope_scaling type "dynamic" is not supported`},
		{with("rope_scaling", map[string]any{"rope_type": "linear", "factor": 2, "mscale": 1}), `rope_scaling field "mscale"`},
		{with("hidden_act", "gelu"), `hidden_act "gelu"`},
		{with("attention_bias", true), `attention_bias true`},
		{with("num_key_value_heads", 3), `n_kv_head 3 must divide n_head 2`},
		{with("head_dim", 8), `head_dim 8 is not supported`},
	}
	for _, c := range configCases {
		dir := writeDir(t, c.cfg, nil)
		_, _, err := ReadConfig(dir)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("config %v: error %v, want it to say %q", c.cfg, err, c.want)
		}
	}

	cfg, _, err := ParseConfig(must(json.Marshal(tinyConfig())))
	if err != nil {
		t.Fatal(err)
	}
	load := func(ts []safetensors.Tensor) error {
		dir := writeDir(t, tinyConfig(), ts)
		m, err := model.New(cfg, 1, 4, gemm.New(1))
		if err != nil {
			t.Fatal(err)
		}
		return Load(dir, m)
	}
	if err := load(tinyTensors(t)); err != nil {
		t.Fatalf("valid tiny checkpoint: %v", err)
	}
	ts := tinyTensors(t)
	if err := load(ts[1:]); err == nil || !strings.Contains(err.Error(), "tensor model.embed_tokens.weight is missing") {
		t.Errorf("missing tensor: %v", err)
	}
	ts = append(tinyTensors(t), safetensors.F32Tensor("model.layers.1.mlp.up_proj.weight", []int{1}, []float32{0}))
	if err := load(ts); err == nil || !strings.Contains(err.Error(), "tensor model.layers.1.mlp.up_proj.weight is not a parameter") {
		t.Errorf("extra tensor: %v", err)
	}
	ts = tinyTensors(t)
	ts[0] = safetensors.F32Tensor("model.embed_tokens.weight", []int{8, 7}, make([]float32, 56))
	if err := load(ts); err == nil || !strings.Contains(err.Error(), "model.embed_tokens.weight has shape [8 7], expected [8 8]") {
		t.Errorf("shape mismatch: %v", err)
	}

	// a shard named by the index but absent
	dir := writeDir(t, tinyConfig(), nil)
	idx := index{WeightMap: map[string]string{}}
	for _, n := range Names(cfg) {
		idx.WeightMap[n] = "model-00002-of-00002.safetensors"
	}
	if err := os.WriteFile(filepath.Join(dir, IndexFile), must(json.Marshal(idx)), 0o644); err != nil {
		t.Fatal(err)
	}
	m, _ := model.New(cfg, 1, 4, gemm.New(1))
	if err := Load(dir, m); err == nil || !strings.Contains(err.Error(), "shard model-00002-of-00002.safetensors listed in") || !strings.Contains(err.Error(), "is missing") {
		t.Errorf("missing shard: %v", err)
	}

	// Mistral's sliding window: fine up to the window, refused past it
	mc := with("model_type", "mistral")
	mc["architectures"] = []string{"MistralForCausalLM"}
	mc["sliding_window"] = 8
	mcfg, _, err := ParseConfig(must(json.Marshal(mc)))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := model.New(mcfg, 1, 8, gemm.New(1)); err != nil {
		t.Errorf("sequence length = window: %v", err)
	}
	if _, err := model.New(mcfg, 1, 9, gemm.New(1)); err == nil || !strings.Contains(err.Error(), "sliding window of 8") {
		t.Errorf("sequence length past the window: %v", err)
	}
}

func TestParseSize(t *testing.T) {
	for in, want := range map[string]int64{"5GB": 5e9, "500MiB": 500 << 20, "1234": 1234, "0": 0, "2.5 KB": 2500} {
		got, err := ParseSize(in)
		if err != nil || got != want {
			t.Errorf("ParseSize(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, bad := range []string{"", "GB", "-1MB", "5XB"} {
		if _, err := ParseSize(bad); err == nil {
			t.Errorf("ParseSize(%q) accepted", bad)
		}
	}
}

// TestPEFTAdaptersLoadInPyTorch: adapters trained by strand (random B so
// they matter), saved in PEFT's layout next to the exported base, give
// strand's adapted loss when the PyTorch oracle merges them as PEFT does.
func TestPEFTAdaptersLoadInPyTorch(t *testing.T) {
	py := "/usr/bin/python3"
	if _, err := os.Stat(py); err != nil {
		t.Skip("no /usr/bin/python3")
	}
	if testing.Short() {
		t.Skip("-short: skipping the torch cross-check")
	}
	for _, targets := range [][]string{
		{"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"},
		{"attn.c_attn", "mlp.c_fc", "mlp.c_proj"},
	} {
		dir := filepath.Join("testdata", "llama")
		ref := readReference(t, dir)
		B, T := 2, len(ref.tokens)/2
		m := loadFixture(t, dir, B, T)
		if err := m.EnableLoRA(model.LoRAConfig{Rank: 3, Alpha: 6, Targets: targets}, 1); err != nil {
			t.Fatal(err)
		}
		for i := range m.Params.Data {
			m.Params.Data[i] = 0.05 * float32(math.Sin(float64(i)))
		}
		sum, count, err := m.Forward(ref.tokens, ref.targets, B, T)
		if err != nil {
			t.Fatal(err)
		}
		want := sum / float64(count)
		if math.Abs(want-ref.loss) < 1e-3 {
			t.Fatalf("%v: the adapters do not change the loss", targets)
		}
		base, ad := t.TempDir(), t.TempDir()
		if err := Export(base, m, ExportOptions{}); err != nil {
			t.Fatal(err)
		}
		if err := ExportAdapters(ad, m, "strand/llama-fixture"); err != nil {
			t.Fatal(err)
		}
		raw, err := os.ReadFile(filepath.Join(ad, AdapterConfigFile))
		if err != nil {
			t.Fatal(err)
		}
		var ac struct {
			PeftType      string   `json:"peft_type"`
			R             int      `json:"r"`
			TargetModules []string `json:"target_modules"`
		}
		if err := json.Unmarshal(raw, &ac); err != nil || ac.PeftType != "LORA" || ac.R != 3 || len(ac.TargetModules) < 3 {
			t.Fatalf("adapter_config.json %s: %v", raw, err)
		}
		res, err := exec.Command(py, "testdata/gen_hf_fixtures.py", "--loss", base, filepath.Join(dir, "reference.safetensors"), ad).CombinedOutput()
		if err != nil && strings.Contains(string(res), "No module named 'torch'") {
			t.Skip("python3 has no torch")
		}
		if err != nil {
			t.Fatalf("oracle failed: %v\n%s", err, res)
		}
		var got struct{ Loss float64 }
		if err := json.Unmarshal(res, &got); err != nil {
			t.Fatalf("oracle printed %q", res)
		}
		if e := math.Abs(got.Loss-want) / want; e > 1e-5 {
			t.Errorf("%v: PyTorch + PEFT loss %.8f, strand's adapted loss %.8f", targets, got.Loss, want)
		}
	}
}
