package tokenizerbench

import (
	"os"
	"path/filepath"
	"runtime"
	"sync"
	"syscall"
	"testing"
	"time"
	"unicode/utf8"

	tiktoken "github.com/pkoukk/tiktoken-go"
	"github.com/strand-ml/strand/tokenizer"
	"github.com/strand-ml/strand/tokenizer/tokentest"
)

var (
	setupOnce sync.Once
	strand    *tokenizer.BPE
	oracle    *tiktoken.Tiktoken
	texts     map[string][]byte
	setupErr  error

	// cl100k_base: strand from a Llama-3-layout tokenizer.json (hand-written
	// splitter), the same with the pattern run by regexp2, and tiktoken-go.
	cl100k, cl100kRegexp2 *tokenizer.BPE
	cl100kOracle          *tiktoken.Tiktoken
)

// setup loads GPT-2 for strand (from vocab.json + merges.txt derived from
// r50k) and for tiktoken-go, cl100k_base likewise (from tokenizer.json), and
// builds the benchmark texts: 1 MB of the
// mixed corpus (prose, code, CJK, emoji, whitespace) and 1 MB of Go source
// from GOROOT.
func setup(tb testing.TB) {
	tb.Helper()
	setupOnce.Do(func() {
		dir, err := os.MkdirTemp("", "gpt2-bench")
		if err != nil {
			setupErr = err
			return
		}
		defer os.RemoveAll(dir)
		if setupErr = tokentest.WriteGPT2Files(dir); setupErr != nil {
			return
		}
		if strand, setupErr = tokenizer.Load(dir); setupErr != nil {
			return
		}
		if oracle, setupErr = tokentest.R50K(); setupErr != nil {
			return
		}
		for _, v := range []struct {
			tok     **tokenizer.BPE
			pattern string
		}{{&cl100k, tokentest.CL100KPattern}, {&cl100kRegexp2, "(?:" + tokentest.CL100KPattern + ")"}} {
			path := filepath.Join(dir, "tokenizer.json")
			if setupErr = tokentest.WriteCL100KTokenizerJSONPattern(path, v.pattern); setupErr != nil {
				return
			}
			if *v.tok, setupErr = tokenizer.LoadHF(path); setupErr != nil {
				return
			}
		}
		if cl100kOracle, setupErr = tokentest.CL100K(); setupErr != nil {
			return
		}
		texts = map[string][]byte{"mixed": tokentest.Mixed(99, 1<<20), "gosrc": goSource(1 << 20)}
	})
	if setupErr != nil {
		tb.Fatal(setupErr)
	}
}

// goSource concatenates Go files from GOROOT/src/net/http up to n bytes.
func goSource(n int) []byte {
	var out []byte
	root := filepath.Join(runtime.GOROOT(), "src", "net", "http")
	filepath.WalkDir(root, func(path string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() || filepath.Ext(path) != ".go" || len(out) >= n {
			return nil
		}
		b, err := os.ReadFile(path)
		if err == nil {
			out = append(out, b...)
		}
		return nil
	})
	if len(out) > n {
		out = out[:n]
	}
	return out
}

// TestSameTokens guards the comparison: strand and tiktoken-go give the same
// ids on the benchmark texts (their first 256 kB for GPT-2, 64 kB for the
// two cl100k variants: tiktoken-go is slow under -race; package tokenizer's
// own tests cover equality in depth).
func TestSameTokens(t *testing.T) {
	setup(t)
	for name, text := range texts {
		if len(text) < 1<<19 {
			t.Fatalf("%s text is only %d bytes", name, len(text))
		}
		text = text[:256<<10]
		for len(text) > 0 && !utf8.Valid(text) { // do not cut a character in two
			text = text[:len(text)-1]
		}
		short := text[:64<<10] // cl100k: package tokenizer compares it in depth
		for len(short) > 0 && !utf8.Valid(short) {
			short = short[:len(short)-1]
		}
		for _, c := range []struct {
			name string
			got  []int
			want []int
		}{
			{"gpt2", strand.Encode(text), oracle.EncodeOrdinary(string(text))},
			{"cl100k", cl100k.Encode(short), cl100kOracle.EncodeOrdinary(string(short))},
			{"cl100k-regexp2", cl100kRegexp2.Encode(short), cl100kOracle.EncodeOrdinary(string(short))},
		} {
			if len(c.got) != len(c.want) {
				t.Fatalf("%s %s: %d vs %d tokens", c.name, name, len(c.got), len(c.want))
			}
			for i := range c.got {
				if c.got[i] != c.want[i] {
					t.Fatalf("%s %s: token %d differs", c.name, name, i)
				}
			}
		}
	}
}

func BenchmarkEncode(b *testing.B) {
	setup(b)
	for _, name := range []string{"mixed", "gosrc"} {
		text := texts[name]
		b.Run(name+"/strand", func(b *testing.B) {
			b.SetBytes(int64(len(text)))
			cpu := cpuTime()
			for b.Loop() {
				strand.Encode(text)
			}
			reportCPURate(b, len(text), cpu)
		})
		b.Run(name+"/tiktoken-go", func(b *testing.B) {
			s := string(text)
			b.SetBytes(int64(len(text)))
			cpu := cpuTime()
			for b.Loop() {
				oracle.EncodeOrdinary(s)
			}
			reportCPURate(b, len(text), cpu)
		})
	}
}

// BenchmarkEncodeCL100K: cl100k_base (Llama 3's pre-tokenizer) through the
// hand-written splitter, through regexp2, and in tiktoken-go.
func BenchmarkEncodeCL100K(b *testing.B) {
	setup(b)
	for _, name := range []string{"mixed", "gosrc"} {
		text := texts[name]
		for _, v := range []struct {
			impl string
			tok  *tokenizer.BPE
		}{{"strand", cl100k}, {"strand-regexp2", cl100kRegexp2}} {
			b.Run(name+"/"+v.impl, func(b *testing.B) {
				b.SetBytes(int64(len(text)))
				cpu := cpuTime()
				for b.Loop() {
					v.tok.Encode(text)
				}
				reportCPURate(b, len(text), cpu)
			})
		}
		b.Run(name+"/tiktoken-go", func(b *testing.B) {
			s := string(text)
			b.SetBytes(int64(len(text)))
			cpu := cpuTime()
			for b.Loop() {
				cl100kOracle.EncodeOrdinary(s)
			}
			reportCPURate(b, len(text), cpu)
		})
	}
}

// cpuTime is the process's user+system CPU time. On a shared machine the
// wall-clock MB/s swings with the neighbours' load; MB per CPU-second is the
// steadier "per core" figure (GC work included, as it is process-wide).
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// reportCPURate adds an "MB/cpu-s" metric: bytes encoded per CPU-second.
func reportCPURate(b *testing.B, n int, start time.Duration) {
	if used := cpuTime() - start; used > 0 {
		b.ReportMetric(float64(n)*float64(b.N)/1e6/used.Seconds(), "MB/cpu-s")
	}
}

// BenchmarkEncodeSentencePiece: the SentencePiece-BPE fixture (Llama 2's
// layout, no pre-tokenizer: each text between added tokens is one BPE word,
// merged by the heap) on the same texts; BenchmarkEncode's strand GPT-2
// figures are the anchor.
func BenchmarkEncodeSentencePiece(b *testing.B) {
	setup(b)
	sp, err := tokenizer.LoadDir(filepath.Join("..", "..", "tokenizer", "testdata", "spbpe"))
	if err != nil {
		b.Fatal(err)
	}
	for _, name := range []string{"mixed", "gosrc"} {
		text := texts[name]
		b.Run(name+"/strand", func(b *testing.B) {
			b.SetBytes(int64(len(text)))
			cpu := cpuTime()
			for b.Loop() {
				sp.Encode(text)
			}
			reportCPURate(b, len(text), cpu)
		})
	}
}
