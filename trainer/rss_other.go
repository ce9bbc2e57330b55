//go:build !unix

package trainer

// maxRSS is unknown without getrusage.
func maxRSS() int64 { return 0 }
