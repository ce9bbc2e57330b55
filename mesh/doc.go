// Package mesh maps global ranks onto the DP x TP x PP device mesh.
//
// The order follows Megatron-LM: tensor-parallel peers are adjacent ranks (so
// they share a node), data-parallel varies next and pipeline stages vary
// slowest:
//
//	rank = (pp*DP + dp)*TP + tp
//
// The TP group of a rank is the ranks with equal (pp, dp), the DP group equal
// (pp, tp), and the PP group equal (dp, tp). Every part of strand that needs
// a rank's coordinates (coordinator, transports, checkpoints, traces, logs)
// uses this one pure function.
package mesh
