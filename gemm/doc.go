// Package gemm multiplies float32 matrices: C = alpha*op(A)*op(B) + beta*C,
// row-major, where op(X) is X or its transpose. Every layer of the model
// calls this one function, so kernels (the portable pure-Go path here, SIMD
// kernels chosen by CPU feature detection later) can be swapped behind it.
//
// Parallelism splits the rows of C between goroutines and never the K
// dimension, so each element of C is computed by one goroutine in a fixed
// order: results are bit-identical whatever the thread count.
package gemm
