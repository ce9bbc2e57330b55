//go:build unix && !linux

package pages

func huge([]byte)    {}
func notHuge([]byte) {}
