// Package collbench is the driver behind `strand bench collective`: it
// starts N local processes (one rank each, meeting through a dirstore in a
// temporary directory, talking TCP), runs one collective over a range of
// sizes, and prints an nccl-tests style table or JSON lines.
//
// Reported per size (rank 0 prints; times are the slowest rank's median):
//
//	time_us     median time of one call, in microseconds
//	algbw_gbps  size_bytes / time, in GB/s (1e9 bytes)
//	busbw_gbps  algbw times the nccl-tests factor, comparable across rank counts:
//	            allreduce 2(n-1)/n, allgather and reducescatter (n-1)/n,
//	            broadcast and sendrecv 1
//	ok          the first call's result matched the expected values exactly
//
// size_bytes is the whole buffer (nccl-tests' convention for allgather and
// reducescatter: the gathered / scattered-from size).
package collbench
