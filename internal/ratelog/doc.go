// Package ratelog logs complaints about remote peers (a wrong job token,
// garbage or a truncated hello on a listening port, an undecryptable
// gossip packet) at most once per interval per peer host and message, so
// that a flood of bad connections is seen but cannot fill the disk. The
// repeats it suppresses are counted and reported on the next line it
// lets through for that key.
package ratelog
