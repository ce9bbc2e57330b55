package tokenizer

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"testing"
	"testing/iotest"

	"github.com/strand-ml/strand/tokenizer/tokentest"
)

// TestEncodeStreamMatchesEncode: cutting the input into chunks (tiny ones
// here, so there are hundreds of cuts) never changes the ids.
func TestEncodeStreamMatchesEncode(t *testing.T) {
	tok := gpt2(t)
	var text []byte
	text = append(text, tokentest.Mixed(51, 30_000)...)
	text = append(text, strings.Repeat(" ", 300)+"x"+strings.Repeat("\n", 200)...)
	text = append(text, "it's<|endoftext|>they're<|endoftext|>"...)
	text = append(text, "\xff\xfe invalid \xc3"...)
	text = append(text, strings.Repeat("中", 400)...) // one long letter run: no cut inside
	for _, withSpecial := range []bool{false, true} {
		want := tok.Encode(text)
		if withSpecial {
			want = tok.EncodeWithSpecial(text)
		}
		for _, chunk := range []int{7, 64, 1000, 1 << 20} {
			var got []int
			calls := 0
			err := tok.encodeStream(context.Background(), iotest.HalfReader(bytes.NewReader(text)), withSpecial, chunk, func(ids []int) error {
				calls++
				got = append(got, ids...)
				return nil
			})
			if err != nil {
				t.Fatal(err)
			}
			if !equalInts(got, want) {
				t.Fatalf("special=%v chunk %d: %s", withSpecial, chunk, firstIntDiff(got, want))
			}
			if chunk == 64 && calls < 100 {
				t.Errorf("chunk 64 gave only %d calls: the stream is not being cut", calls)
			}
		}
	}
}

func TestEncodeStreamErrors(t *testing.T) {
	tok := trainSmall(t)
	boom := errors.New("boom")
	err := tok.EncodeStream(context.Background(), iotest.ErrReader(boom), false, func([]int) error { return nil })
	if !errors.Is(err, boom) {
		t.Errorf("read error: %v", err)
	}
	stop := errors.New("stop")
	err = tok.encodeStream(context.Background(), strings.NewReader(strings.Repeat("word ", 100)), false, 16, func([]int) error { return stop })
	if !errors.Is(err, stop) {
		t.Errorf("emit error: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	err = tok.EncodeStream(ctx, strings.NewReader("abc"), false, func([]int) error { return nil })
	if !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled: %v", err)
	}
}
