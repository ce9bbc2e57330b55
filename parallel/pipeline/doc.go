// Package pipeline splits a model into stages and runs micro-batches
// through them on a schedule.
//
// A schedule is data: for each stage an ordered list of actions (forward or
// backward of micro-batch m, send or receive of an activation or a
// gradient). Generators (GPipe, 1F1B) build the lists before the run; Check
// runs every stage's list together in memory, with sends that never block
// and receives that wait, and proves that every send meets its receive,
// every micro-batch is forwarded and backwarded exactly once per stage, and
// the program ends — so a schedule that could deadlock is rejected before
// any worker starts. The executor only walks a list.
package pipeline
