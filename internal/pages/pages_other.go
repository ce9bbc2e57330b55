//go:build !unix

package pages

// Without mmap the buffer is ordinary heap memory and Discard keeps it:
// correct, without the memory saving.
func mmap(n int) ([]byte, error) { return make([]byte, n), nil }

func dontNeed([]byte) error { return nil }
