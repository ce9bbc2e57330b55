package data_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"

	"github.com/strand-ml/strand/data"
)

// bytesTok is a byte-level tokenizer: id = byte value.
type bytesTok struct{}

func (bytesTok) Encode(b []byte) []int {
	ids := make([]int, len(b))
	for i, c := range b {
		ids[i] = int(c)
	}
	return ids
}
func (bytesTok) VocabSize() int { return 256 }

// The data path of a training loop: load, hold out validation, and give each
// data-parallel rank its rows of every global batch.
func Example() {
	dir, _ := os.MkdirTemp("", "example")
	defer os.RemoveAll(dir)
	os.WriteFile(filepath.Join(dir, "a.txt"), []byte("abcdefghijklmnopqrstuvwxyz"), 0o644)

	corpus, err := data.Load(context.Background(), filepath.Join(dir, "*.txt"), bytesTok{}, data.LoadOptions{})
	if err != nil {
		panic(err)
	}
	train, val := corpus.Split(0.25)
	fmt.Println("train", len(train.Tokens), "val", len(val.Tokens))

	// 2 ranks x 1 row x 4 tokens: rank 1 gets the second row of each global batch.
	loader, err := data.NewLoader(train.Tokens, data.LoaderConfig{Batch: 1, Seq: 4, DPRank: 1, DPSize: 2})
	if err != nil {
		panic(err)
	}
	in, tg := make([]int32, 4), make([]int32, 4)
	for step := 0; step < 2; step++ {
		loader.Next(in, tg)
		fmt.Printf("step %d inputs %q targets %q\n", step, string(runes(in)), string(runes(tg)))
	}
	fmt.Printf("%+v\n", loader.State())
	// Output:
	// train 19 val 7
	// step 0 inputs "efgh" targets "fghi"
	// step 1 inputs "mnop" targets "nopq"
	// {Epoch:1 BatchInEpoch:0 Seq:4 GlobalRows:2 Tokens:19 Shuffle:false Seed:0}
}

func runes(ids []int32) []rune {
	r := make([]rune, len(ids))
	for i, id := range ids {
		r[i] = rune(id)
	}
	return r
}
