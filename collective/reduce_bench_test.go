package collective

import "testing"

func BenchmarkReduceF32Sum(b *testing.B) {
	d, p := make(F32, 1<<20), make(F32, 1<<20)
	db, pb := d.bytes(), p.bytes()
	b.SetBytes(int64(len(db)))
	for i := 0; i < b.N; i++ {
		reduceInto(Float32, Sum, db, pb, true, false, 2)
	}
}

func BenchmarkReduceBF16Sum(b *testing.B) {
	d, p := make(BF16, 1<<20), make(BF16, 1<<20)
	db, pb := d.bytes(), p.bytes()
	b.SetBytes(int64(len(db)))
	for i := 0; i < b.N; i++ {
		reduceInto(BFloat16, Sum, db, pb, true, false, 2)
	}
}

func BenchmarkReduceF16Sum(b *testing.B) {
	d, p := make(F16, 1<<20), make(F16, 1<<20)
	db, pb := d.bytes(), p.bytes()
	b.SetBytes(int64(len(db)))
	for i := 0; i < b.N; i++ {
		reduceInto(Float16, Sum, db, pb, true, false, 2)
	}
}
