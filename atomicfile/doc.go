// Package atomicfile writes files so that a reader (or a crash) sees either
// the complete old contents or the complete new contents, never a torn file.
//
// The recipe is the classic one: write to a temporary file in the same
// directory (so the rename cannot cross filesystems), fsync it, rename it over
// the target, then fsync the directory so the rename itself is durable.
// Checkpoints, token shards and anything else that a later run trusts go
// through here.
package atomicfile
