package main

// `strand tokenizer train` and `strand tokenize`: thin layers over package
// tokenizer. The second writes llm.c token shards while streaming, so a file
// larger than memory can be tokenized.

import (
	"context"
	"fmt"
	"io"
	"os"
	"strings"
	"sync/atomic"
	"time"

	"github.com/strand-ml/strand/data"
	"github.com/strand-ml/strand/tokenizer"
)

func runTokenizerTrain(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("tokenizer train", stderr)
	data := fs.String("data", "", "training text: a file, directory or glob as strand train --data takes them (required; - for stdin)")
	vocab := fs.Int("vocab", 0, "vocabulary size including the 256 bytes and special tokens (required)")
	out := fs.String("out", "", "directory to write vocab.json, merges.txt and tokenizer.json (required; new or empty)")
	overwrite := fs.Bool("overwrite", false, "write into a non-empty --out, replacing its tokenizer files")
	special := fs.String("special", "<|endoftext|>", "comma-separated special tokens, given the last ids")
	minCount := fs.Int("min-count", 2, "stop when the best pair occurs fewer times than this")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	switch {
	case *data == "":
		return usageError{"--data is required"}
	case *out == "":
		return usageError{"--out is required"}
	case *vocab <= 0:
		return usageError{"--vocab is required and must be positive"}
	case *minCount < 1:
		return usageError{"--min-count must be at least 1"}
	}
	opts := tokenizer.TrainOptions{MinPairCount: *minCount}
	if *special != "" {
		opts.SpecialTokens = strings.Split(*special, ",")
	}
	if *vocab < 256+len(opts.SpecialTokens) {
		return usageError{fmt.Sprintf("--vocab %d is below 256 bytes + %d special tokens", *vocab, len(opts.SpecialTokens))}
	}
	if err := checkOutDir(*out, *overwrite); err != nil {
		return err
	}
	in, size, closeIn, err := openTextSpec(*data, stderr)
	if err != nil {
		return err
	}
	defer closeIn()
	start := time.Now()
	bar := newByteBar(stderr, "read", size)
	counted := &countingReader{r: in, n: bar.count}
	lastReport := time.Time{}
	opts.Progress = func(done, want int) {
		if done == 0 {
			bar.finish()
		}
		if now := time.Now(); now.Sub(lastReport) >= 2*time.Second || done == want {
			lastReport = now
			fmt.Fprintf(stderr, "merges %d/%d (%.1fs)\n", done, want, time.Since(start).Seconds())
		}
	}
	tok, err := tokenizer.Train(ctx, counted, *vocab, opts)
	bar.finish()
	if err != nil {
		return err
	}
	if err := tok.Save(*out); err != nil {
		return err
	}
	secs := time.Since(start).Seconds()
	_, err = fmt.Fprintf(stdout, "trained %d tokens (%d merges, %d special) on %.1f MB in %.1fs (%.2f MB/s); wrote %s\n",
		tok.VocabSize(), tok.NumMerges(), len(opts.SpecialTokens), float64(counted.n.Load())/1e6, secs,
		float64(counted.n.Load())/1e6/secs, *out)
	return err
}

func runTokenize(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("tokenize", stderr)
	tokDir := fs.String("tokenizer", "", "tokenizer directory (vocab.json+merges.txt or tokenizer.json) (required)")
	data := fs.String("data", "", "text file to tokenize (required; - for stdin)")
	out := fs.String("out", "", "llm.c token shard to write, e.g. train.bin (required)")
	special := fs.Bool("special", true, "turn special-token text such as <|endoftext|> in the data into its id")
	eot := fs.Bool("eot", false, "start the shard with <|endoftext|> (llm.c's document separator)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	switch {
	case *tokDir == "":
		return usageError{"--tokenizer is required"}
	case *data == "":
		return usageError{"--data is required"}
	case *out == "":
		return usageError{"--out is required"}
	}
	tok, err := tokenizer.Load(*tokDir)
	if err != nil {
		return err
	}
	if tok.VocabSize() > 65535 {
		return fmt.Errorf("vocabulary of %d ids does not fit llm.c's uint16 shards (at most 65535)", tok.VocabSize())
	}
	var prefix []int
	if *eot {
		id, ok := tok.SpecialID("<|endoftext|>")
		if !ok {
			return usageError{"--eot: the tokenizer has no <|endoftext|> token"}
		}
		prefix = []int{id}
	}
	in, size, closeIn, err := openInput(*data)
	if err != nil {
		return err
	}
	defer closeIn()
	start := time.Now()
	bar := newByteBar(stderr, "tokenize", size)
	counted := &countingReader{r: in, n: bar.count}
	n, err := writeShard(*out, prefix, func(emit func([]int) error) error {
		return tok.EncodeStream(ctx, counted, *special, func(ids []int) error {
			bar.tokens.Add(int64(len(ids)))
			return emit(ids)
		})
	})
	bar.finish()
	if err != nil {
		return fmt.Errorf("tokenize %s: %w", *data, err)
	}
	secs := time.Since(start).Seconds()
	mb := float64(counted.n.Load()) / 1e6
	_, err = fmt.Fprintf(stdout, "wrote %d tokens from %.1f MB to %s in %.1fs (%.2f MB/s, %.2f bytes/token)\n",
		n, mb, *out, secs, mb/secs, float64(counted.n.Load())/float64(max(n, 1)))
	return err
}

// openInput opens path ("-" is stdin) and returns its size when known (-1
// otherwise).
func openInput(path string) (io.Reader, int64, func(), error) {
	if path == "-" {
		return os.Stdin, -1, func() {}, nil
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, 0, nil, err
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, 0, nil, err
	}
	if fi.IsDir() {
		f.Close()
		return nil, 0, nil, usageError{fmt.Sprintf("--data %s is a directory; give a text file (concatenate shards first)", path)}
	}
	return f, fi.Size(), func() { f.Close() }, nil
}

// writeShard writes an llm.c shard to path (data.ShardWriter: it appears
// under its name only when complete) from prefix and then the ids produce
// emits; it returns the number of tokens.
func writeShard(path string, prefix []int, produce func(emit func([]int) error) error) (int64, error) {
	w, err := data.CreateShard(path)
	if err != nil {
		return 0, err
	}
	defer w.Abort()
	if err := w.WriteInts(prefix); err != nil {
		return 0, err
	}
	if err := produce(w.WriteInts); err != nil {
		return 0, err
	}
	return w.Count(), w.Close()
}

// countingReader counts the bytes read through it.
type countingReader struct {
	r io.Reader
	n *atomic.Int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n.Add(int64(n))
	return n, err
}

// byteBar draws a progress bar for a byte stream on w, redrawn in place on
// a terminal and as an occasional plain line otherwise. It polls the
// counters from its own goroutine, so the hot loop only does atomic adds.
type byteBar struct {
	count  *atomic.Int64
	tokens atomic.Int64
	done   chan struct{}
	exited chan struct{}
	closed atomic.Bool
}

func newByteBar(w io.Writer, label string, total int64) *byteBar {
	b := &byteBar{count: new(atomic.Int64), done: make(chan struct{}), exited: make(chan struct{})}
	tty := false
	if f, ok := w.(*os.File); ok {
		if fi, err := f.Stat(); err == nil && fi.Mode()&os.ModeCharDevice != 0 {
			tty = true
		}
	}
	start := time.Now()
	period := 5 * time.Second
	if tty {
		period = 200 * time.Millisecond
	}
	go func() {
		defer close(b.exited)
		tick := time.NewTicker(period)
		defer tick.Stop()
		drawn, lastDone := false, int64(-1)
		for {
			select {
			case <-b.done:
				// Close the in-place line on a terminal; in a log, add the
				// final state unless the last line already showed it.
				if done := b.count.Load(); drawn && (tty || done != lastDone) {
					line := renderBar(label, done, total, b.tokens.Load(), time.Since(start))
					if tty {
						line = "\r" + line
					}
					fmt.Fprintln(w, line)
				}
				return
			case <-tick.C:
				lastDone = b.count.Load()
				line := renderBar(label, lastDone, total, b.tokens.Load(), time.Since(start))
				if tty {
					fmt.Fprint(w, "\r"+line)
				} else {
					fmt.Fprintln(w, line)
				}
				drawn = true
			}
		}
	}()
	return b
}

// finish stops the bar (idempotent), leaving a final line if one was drawn.
func (b *byteBar) finish() {
	if b.closed.CompareAndSwap(false, true) {
		close(b.done)
		<-b.exited
	}
}

// renderBar formats "label [#####.....]  42% 12.0/28.6 MB 9.1 MB/s 3.1M tokens".
func renderBar(label string, done, total, tokens int64, elapsed time.Duration) string {
	rate := float64(done) / 1e6 / max(elapsed.Seconds(), 1e-9)
	tail := fmt.Sprintf("%.1f MB/s", rate)
	if tokens > 0 {
		tail += fmt.Sprintf(" %.2fM tokens", float64(tokens)/1e6)
	}
	if total <= 0 {
		return fmt.Sprintf("%s %.1f MB %s", label, float64(done)/1e6, tail)
	}
	frac := min(float64(done)/float64(total), 1)
	const width = 30
	filled := int(frac * width)
	return fmt.Sprintf("%s [%s%s] %3.0f%% %.1f/%.1f MB %s", label, strings.Repeat("#", filled), strings.Repeat(".", width-filled),
		frac*100, float64(done)/1e6, float64(total)/1e6, tail)
}
