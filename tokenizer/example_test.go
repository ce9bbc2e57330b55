package tokenizer_test

import (
	"context"
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
