// Package pages allocates large numeric buffers straight from the
// operating system and hands their memory back page by page while the
// buffer stays mapped.
//
// ZeRO-3 keeps a model's flat parameter and gradient buffers at their full
// length, so every view into them (a layer's weights, a gradient bucket,
// an offset in a checkpoint) stays valid, but only the units being used
// are resident: Discard returns a unit's pages to the kernel after use and
// the next write (an all-gather) faults them back in. The resident set,
// not the address range, is what the memory plan and peak RSS count.
//
// Buffers are never unmapped: a view may outlive whoever allocated it.
// Free discards every page instead, so a finished buffer costs address
// space only.
package pages
