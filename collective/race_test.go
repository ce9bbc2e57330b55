//go:build race

package collective

// raceEnabled: the race detector's runtime changes scheduling and, now and
// then, allocates on paths that make none without it.
const raceEnabled = true
