package shm

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"slices"

	"github.com/strand-ml/strand/transport"
)

// Regions (transport.SharedMemory): besides the pair segments, a group
// of ranks can ask for one region per member that every member maps,
// for collectives that read their peers' data in place. Each member
// creates its region as a memfd (0600, no name in any file system, like
// the segments), sends its pid and descriptor to the others over the
// pairs' rings, maps theirs through /proc, and closes its descriptor once
// every member reports its mappings done: the memory then lives exactly
// as long as the mappings. A region starts with a header page (magic, job,
// rank, size) that the mapping side checks; the caller gets what follows.
const (
	regionMagic  = 0x7374726e_64726731 // "strndrg1"
	regionHeader = 4096
	regOffMagic  = 0
	regOffJob    = 8  // 32 bytes
	regOffRank   = 40 // uint32
	regOffSize   = 48 // uint64
	regOffState  = 64 // uint32: the creator's side state (stateAlive, stateLeft, stateCrashed)
)

var _ transport.SharedMemory = (*Transport)(nil)

// ShareRegions implements transport.SharedMemory.
func (t *Transport) ShareRegions(ctx context.Context, tag transport.Tag, group []int, n int) (*transport.Regions, error) {
	me := t.cfg.Rank
	if !slices.Contains(group, me) {
		return nil, fmt.Errorf("shm rank %d: not in group %v", me, group)
	}
	if n <= 0 {
		return nil, fmt.Errorf("shm rank %d: region of %d bytes", me, n)
	}
	var peers []int
	for _, p := range group {
		if p == me {
			continue
		}
		if p < 0 || p >= len(t.peers) || t.peers[p] == nil {
			return nil, fmt.Errorf("shm rank %d: rank %d is reached by other means: %w", me, p, transport.ErrNoSharedMemory)
		}
		peers = append(peers, p)
	}
	fd, mine, err := newSegment(regionHeader + n)
	if err != nil {
		return nil, fmt.Errorf("shm rank %d: region: %w", me, err)
	}
	defer closeFD(fd)
	h := jobHash(t.cfg.JobID)
	copy(mine[regOffJob:regOffJob+32], h[:])
	binary.LittleEndian.PutUint32(mine[regOffRank:], uint32(me))
	binary.LittleEndian.PutUint64(mine[regOffSize:], uint64(n))
	u64(mine, regOffMagic).Store(regionMagic)

	maps := make([][]byte, len(group)) // whole mappings, header included
	release := func() {
		for _, m := range maps {
			if m != nil {
				unmap(m)
			}
		}
	}
	fail := func(err error) (*transport.Regions, error) {
		release()
		return nil, fmt.Errorf("shm rank %d: sharing regions with %v: %w", me, group, err)
	}
	maps[slices.Index(group, me)] = mine
	var addr [16]byte
	binary.LittleEndian.PutUint64(addr[0:], uint64(os.Getpid()))
	binary.LittleEndian.PutUint64(addr[8:], uint64(fd))
	for _, p := range peers {
		if err := t.Send(ctx, p, tag, addr[:]); err != nil {
			return fail(err)
		}
	}
	// Map every peer's region; a failure is reported to all (status
	// word), so every member reaches the same verdict.
	var mapErr error
	for _, p := range peers {
		var a [16]byte
		if err := t.Recv(ctx, p, tag, a[:]); err != nil {
			return fail(err)
		}
		if mapErr != nil {
			continue
		}
		m, err := openSegment(int(binary.LittleEndian.Uint64(a[0:])), int(binary.LittleEndian.Uint64(a[8:])))
		if err == nil {
			err = checkRegion(m, t.cfg.JobID, p, n)
			if err != nil {
				unmap(m)
			}
		}
		if err != nil {
			mapErr = fmt.Errorf("region of rank %d: %w", p, err)
			continue
		}
		maps[slices.Index(group, p)] = m
	}
	var status [8]byte
	if mapErr != nil {
		status[0] = 1
	}
	for _, p := range peers {
		if err := t.Send(ctx, p, tag, status[:]); err != nil {
			return fail(err)
		}
	}
	var bad []int
	for _, p := range peers {
		var s [8]byte
		if err := t.Recv(ctx, p, tag, s[:]); err != nil {
			return fail(err)
		}
		if s[0] != 0 {
			bad = append(bad, p)
		}
	}
	switch {
	case mapErr != nil:
		return fail(fmt.Errorf("%w: %w", transport.ErrNoSharedMemory, mapErr))
	case len(bad) > 0:
		return fail(fmt.Errorf("%w: rank(s) %v could not map every region", transport.ErrNoSharedMemory, bad))
	}
	regions := make([][]byte, len(group))
	for i, m := range maps {
		regions[i] = m[regionHeader : regionHeader+n : regionHeader+n]
	}
	// Close and Abort write this side's state into the header, where the
	// members waiting on this region's words look (Regions.Gone).
	t.mu.Lock()
	t.myRegions = append(t.myRegions, mine)
	t.mu.Unlock()
	gone := func(i int) error {
		switch u32(maps[i], regOffState).Load() {
		case stateLeft:
			return leftError("shared memory", group[i])
		case stateCrashed:
			return &transport.PeerError{Peer: group[i], Op: "shared memory", Err: errors.New("rank aborted its transport (a crash)")}
		}
		return nil
	}
	return &transport.Regions{Mem: regions, Gone: gone, Release: func() {
		t.mu.Lock()
		t.myRegions = slices.DeleteFunc(t.myRegions, func(m []byte) bool { return &m[0] == &mine[0] })
		t.mu.Unlock()
		release()
	}}, nil
}

// checkRegion checks a mapped region's header: a strand region of this
// job, created by rank, of n bytes.
func checkRegion(m []byte, job string, rank, n int) error {
	if len(m) != regionHeader+n {
		return fmt.Errorf("region has %d bytes, want %d", len(m), regionHeader+n)
	}
	if u64(m, regOffMagic).Load() != regionMagic {
		return errors.New("region has no strand header")
	}
	h := jobHash(job)
	if string(m[regOffJob:regOffJob+32]) != string(h[:]) {
		return errors.New("region belongs to another job")
	}
	if r := binary.LittleEndian.Uint32(m[regOffRank:]); int(r) != rank {
		return fmt.Errorf("region is rank %d's, not rank %d's", r, rank)
	}
	return nil
}
