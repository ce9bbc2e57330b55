// Package safetensors reads and writes the safetensors file format used by
// Hugging Face for model weights; strand's checkpoints are model.safetensors
// files so that they load in other tools unchanged.
//
// File layout (https://github.com/huggingface/safetensors, "Format"):
//
//	[8 bytes]  N, little-endian uint64: length of the JSON header
//	[N bytes]  JSON object, padded with spaces so 8+N is a multiple of 8:
//	           {"__metadata__": {"k": "v"},
//	            "wte.weight": {"dtype": "F32", "shape": [50257, 768],
//	                           "data_offsets": [begin, end]}, ...}
//	[rest]     the byte buffer; offsets are relative to its start, tensors are
//	           row-major little-endian, contiguous and non-overlapping, and
//	           together cover the buffer exactly.
//
// Read validates all of that before handing out any tensor, so a damaged
// checkpoint gives one error that names the problem (and, for a truncated
// file, the first tensor that is cut) instead of garbage weights or a panic.
// Write always goes through atomicfile, so a crash never leaves a torn file.
package safetensors
