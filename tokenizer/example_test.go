package tokenizer_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/strand-ml/strand/tokenizer"
)

// Train a small tokenizer, save it in both file formats, load it back and
// round-trip text through it.
func Example() {
	corpus := strings.Repeat("the cat sat on the mat. ", 50) + "<|endoftext|>"
	tok, err := tokenizer.Train(context.Background(), strings.NewReader(corpus), 300, tokenizer.DefaultTrainOptions())
	if err != nil {
		fmt.Println(err)
		return
	}
	dir, err := os.MkdirTemp("", "tok")
	if err != nil {
		fmt.Println(err)
		return
	}
	defer os.RemoveAll(dir)
	if err := tok.Save(dir); err != nil { // vocab.json, merges.txt, tokenizer.json
		fmt.Println(err)
		return
	}
	loaded, err := tokenizer.Load(dir)
	if err != nil {
		fmt.Println(err)
		return
	}
	ids := loaded.EncodeWithSpecial([]byte("the cat sat<|endoftext|>"))
	text, _ := loaded.Decode(ids)
	eot, _ := loaded.SpecialID("<|endoftext|>")
	fmt.Println(len(ids), "ids, last is <|endoftext|>:", ids[len(ids)-1] == eot)
	fmt.Printf("%q\n", text)
	// Output:
	// 4 ids, last is <|endoftext|>: true
	// "the cat sat<|endoftext|>"
}

// How a command uses a checkpoint's tokenizer: load it from the checkpoint
// directory (Bytes when it has none), refuse a --tokenizer that differs,
// size the model's vocabulary from it, and save it with the next checkpoint.
func ExampleLoadDir() {
	ckpt := "testdata/spbpe" // a directory with tokenizer.json (Llama 2 layout)
	var tok tokenizer.Tokenizer
	switch t, err := tokenizer.LoadDir(ckpt); {
	case errors.Is(err, tokenizer.ErrNoTokenizer):
		tok = tokenizer.Bytes{}
	case err != nil:
		fmt.Println(err)
		return
	default:
		tok = t
	}
	flag, err := tokenizer.Open("bytes") // what --tokenizer named
	if err != nil {
		fmt.Println(err)
		return
	}
	if !tokenizer.Same(tok, flag) {
		fmt.Println("--tokenizer conflicts with the checkpoint's tokenizer")
	}
	bos, _ := tok.BOS()
	eos, _ := tok.EOS()
	fmt.Println("vocab", tok.VocabSize(), "padded", tokenizer.PaddedVocab(tok.VocabSize(), 64), "bos", bos, "eos", eos)

	next, err := os.MkdirTemp("", "ckpt")
	if err != nil {
		fmt.Println(err)
		return
	}
	defer os.RemoveAll(next)
	if err := tokenizer.SaveDir(next, tok); err != nil {
		fmt.Println(err)
		return
	}
	again, err := tokenizer.LoadDir(next)
	fmt.Println("saved and reloaded the same:", err == nil && tokenizer.Same(tok, again))
	// Output:
	// --tokenizer conflicts with the checkpoint's tokenizer
	// vocab 1000 padded 1024 bos 1 eos 2
	// saved and reloaded the same: true
}
