//go:build !amd64

package kernels

func available() []Micro { return nil }
