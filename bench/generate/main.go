// Command generate measures generation with the KV cache against
// recomputing the whole prefix for every new token, on the same model and
// prompt, greedy (so both paths must produce the same tokens):
//
//	go run ./bench/generate -models tiny,small,gpt2s -tokens 256
//
// Models are the presets (their own vocabulary sizes) with random weights
// (speed does not depend on the values) and n_positions raised to fit
// prompt + tokens. Times are the median of -reps runs. It prints a
// Markdown table for bench/RESULTS.md.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/strand-ml/strand/gemm"
	"github.com/strand-ml/strand/generate"
	"github.com/strand-ml/strand/model"
	"github.com/strand-ml/strand/tokenizer"
)

func main() {
	models := flag.String("models", "tiny,small,gpt2s", "comma-separated model presets")
	tokens := flag.Int("tokens", 256, "tokens to generate")
	promptLen := flag.Int("prompt", 16, "prompt tokens")
	pos := flag.String("pos", model.PosLearned, "position encoding: learned, rope or alibi")
	threads := flag.Int("threads", 1, "compute goroutines")
	reps := flag.Int("reps", 3, "runs per measurement (the median is reported)")
	flag.Parse()
	if err := run(strings.Split(*models, ","), *tokens, *promptLen, *pos, *threads, max(1, *reps)); err != nil {
		fmt.Fprintln(os.Stderr, "bench generate:", err)
		os.Exit(1)
	}
}

func run(presets []string, tokens, promptLen int, pos string, threads, reps int) error {
	ctx := context.Background()
	fmt.Printf("| model | pos | threads | prompt + new tokens | KV cache wall | recompute wall | speedup (wall) | KV cache CPU | recompute CPU | speedup (CPU) |\n|---|---|---:|---:|---:|---:|---:|---:|---:|---:|\n")
	for _, name := range presets {
		cfg, err := model.Preset(name)
		if err != nil {
			return err
		}
		cfg.Position = pos
		cfg.NPositions = max(cfg.NPositions, promptLen+tokens)
		n := promptLen + tokens
		m, err := model.New(cfg, 1, n, gemm.New(threads))
		if err != nil {
			return err
		}
		m.Init(1)
		g := generate.New(m, idTokenizer{v: cfg.VocabSize})
		prompt := strings.Repeat("x", promptLen)
		opts := generate.Options{MaxTokens: tokens, Sampling: generate.Sampling{TopP: 1}, Context: n}
		// Cached and recomputed runs alternate, so both see the same machine
		// load (the machine is shared); each reports the median of reps.
		// CPU time (of the whole process, which runs nothing else) is the
		// steadier figure when other jobs share the cores.
		var tcs, trs, ccs, crs []time.Duration
		var rc, rr generate.Result
		for range reps {
			for _, recompute := range []bool{false, true} {
				o := opts
				o.Recompute = recompute
				start, cpu0 := time.Now(), cpuTime()
				r, err := g.Generate(ctx, prompt, o)
				if err != nil {
					return err
				}
				wall, cpu := time.Since(start), cpuTime()-cpu0
				if recompute {
					trs, crs, rr = append(trs, wall), append(crs, cpu), r
				} else {
					tcs, ccs, rc = append(tcs, wall), append(ccs, cpu), r
				}
			}
		}
		tc, tr, cc, cr := median(tcs), median(trs), median(ccs), median(crs)
		if !slices.Equal(rc.Tokens, rr.Tokens) || len(rc.Tokens) != tokens {
			return fmt.Errorf("%s: cached and recomputed generations differ (%d and %d tokens)", name, len(rc.Tokens), len(rr.Tokens))
		}
		fmt.Printf("| %s | %s | %d | %d + %d | %.0f ms (%.0f tok/s) | %.0f ms (%.0f tok/s) | %.1fx | %.0f ms | %.0f ms | %.1fx |\n", name, pos, threads, promptLen, tokens,
			ms(tc), float64(tokens)/tc.Seconds(), ms(tr), float64(tokens)/tr.Seconds(), tr.Seconds()/tc.Seconds(),
			ms(cc), ms(cr), cr.Seconds()/cc.Seconds())
	}
	return nil
}

// cpuTime is the process's user + system CPU time so far.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func median(ds []time.Duration) time.Duration {
	slices.Sort(ds)
	return ds[len(ds)/2]
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// idTokenizer stands in for a tokenizer of the preset's vocabulary: the
// prompt is bytes, and token id i decodes to byte i%256 (the text is not the
// point here, the model's cost per token is).
type idTokenizer struct {
	tokenizer.NoSpecials
	v int
}

func (t idTokenizer) Encode(b []byte) []int {
	ids := make([]int, len(b))
	for i, c := range b {
		ids[i] = int(c) % t.v
	}
	return ids
}

func (t idTokenizer) Decode(ids []int) ([]byte, error) {
	out := make([]byte, len(ids))
	for i, id := range ids {
		if id < 0 || id >= t.v {
			return nil, fmt.Errorf("token id %d outside [0, %d)", id, t.v)
		}
		out[i] = byte(id % 256)
	}
	return out, nil
}

func (t idTokenizer) VocabSize() int { return t.v }
