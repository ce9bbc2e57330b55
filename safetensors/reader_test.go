package safetensors

import (
	"path/filepath"
	"testing"
)

func TestReaderReadsTensorByTensor(t *testing.T) {
	data := []float32{1, -2.5, 3.25, 0.5, 1e-3, 7}
	tensors := []Tensor{
		F32Tensor("a.f32", []int{2, 3}, data),
		BF16Tensor("b.bf16", []int{6}, data),
		F16Tensor("c.f16", []int{3, 2}, data),
		{Name: "d.i32", DType: I32, Shape: []int{1}, Data: []byte{1, 0, 0, 0}},
	}
	path := filepath.Join(t.TempDir(), "x.safetensors")
	if err := Write(path, tensors, nil); err != nil {
		t.Fatal(err)
	}
	whole, err := Read(path)
	if err != nil {
		t.Fatal(err)
	}
	r, err := OpenReader(path)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	if len(r.Infos()) != 4 {
		t.Fatalf("%d infos, want 4", len(r.Infos()))
	}
	for _, name := range []string{"a.f32", "b.bf16", "c.f16"} {
		got, err := r.Float32(name)
		if err != nil {
			t.Fatal(err)
		}
		want, _, _ := whole.Float32(name)
		if len(got) != len(want) {
			t.Fatalf("%s: %d values, want %d", name, len(got), len(want))
		}
		for i := range want {
			if got[i] != want[i] {
				t.Errorf("%s[%d] = %g, want %g", name, i, got[i], want[i])
			}
		}
	}
	if _, err := r.Float32("d.i32"); err == nil {
		t.Error("an int32 tensor decoded as float")
	}
	if _, err := r.Float32("nope"); err == nil {
		t.Error("a missing tensor read")
	}
}
