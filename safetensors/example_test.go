package safetensors_test

import (
	"fmt"
	"os"
	"path/filepath"

	"github.com/strand-ml/strand/safetensors"
)

// Save two tensors, load them back, and check one against what a model
// expects before copying it.
func Example() {
	dir, _ := os.MkdirTemp("", "example")
	defer os.RemoveAll(dir)
	path := filepath.Join(dir, "model.safetensors")

	err := safetensors.Write(path, []safetensors.Tensor{
		safetensors.F32Tensor("h.0.ln_1.weight", []int{4}, []float32{1, 1, 1, 1}),
		safetensors.BF16Tensor("wte.weight", []int{2, 2}, []float32{0.5, -1, 2, 3.14159}),
	}, map[string]string{"format": "pt"})
	if err != nil {
		panic(err)
	}

	f, err := safetensors.Read(path)
	if err != nil {
		panic(err)
	}
	fmt.Println(f.Names(), f.Metadata())
	w, shape, _ := f.Float32("wte.weight") // BF16 widened to float32
	fmt.Println(shape, w)
	fmt.Println(f.Check("wte.weight", safetensors.F32, []int{2, 2}))
	// Output:
	// [h.0.ln_1.weight wte.weight] map[format:pt]
	// [2 2] [0.5 -1 2 3.140625]
	// safetensors: tensor "wte.weight" has dtype BF16, want F32
}
