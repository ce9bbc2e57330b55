//go:build !amd64

package kernels

func available() []Micro { return nil }

func availableBF16() *MicroBF16 { return nil }
