package data

// WireBytes is the memory of the buckets' compressed copies: bf16 staging
// (one uint16 per gradient element) or every rank's fp8 slots; 0 when
// buckets go out as float32.
func (b *Bucketer) WireBytes() int64 {
	var n int
	for _, w := range b.wire {
		n += len(w)
	}
	if b.fp8 != nil {
		for _, w := range b.fp8.wire {
			n += len(w)
		}
	}
	return 2 * int64(n)
}
