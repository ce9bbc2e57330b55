package rdma

import (
	"errors"
	"fmt"
	"time"

	"github.com/strand-ml/strand/rendezvous"
	"github.com/strand-ml/strand/transport/rdma/softverbs"
	"github.com/strand-ml/strand/transport/rdma/verbs"
)

// Config configures Dial. Rank, Size and Store are required.
type Config struct {
	Rank, Size int
	// Store carries QP addresses between ranks. Use rendezvous.Prefixed to
	// separate groups or job epochs sharing one store.
	Store rendezvous.Store
	// Provider is the verbs implementation. nil means the hardware
	// provider (libibverbs), which exists only in binaries built with
	// `-tags rdma`; see ProviderByName.
	Provider verbs.Provider
	// Device is the device name ("mlx5_0"); "" takes the first device.
	Device string
	// Port is the 1-based physical port; 0 means 1.
	Port int
	// GIDIndex selects the GID for RoCE (the IPv4-mapped RoCE v2 GID is
	// often index 3); InfiniBand ignores it.
	GIDIndex int
	// EagerLimit is the largest message sent eagerly through receive
	// slots; larger ones use the RDMA WRITE rendezvous. Default 16 KiB.
	EagerLimit int
	// RecvSlots is the number of receive work requests kept posted per
	// peer (the credit window); at least 4. Default 32.
	RecvSlots int
	// SendSlots is the number of registered eager send buffers per peer.
	// Default 16.
	SendSlots int
	// RegCacheBytes bounds the bytes kept registered by the registration
	// cache once idle. Default 1 GiB.
	RegCacheBytes int64
	// ParkBytes bounds, per peer, the bytes of large messages accepted
	// before their Recv is posted (into temporary registered buffers, then
	// copied), so that a Send never waits for the application on the other
	// side, as with TCP. Beyond it a rendezvous waits for the Recv. 0 means
	// 64 MiB; negative disables parking.
	ParkBytes int64
	// AbandonGrace is how long a cancelled Send or Recv that is already
	// committed to an RDMA write (its memory handed to the NIC) waits for
	// that write to finish before the connection is failed instead.
	// Default 1 s.
	AbandonGrace time.Duration
	// Linger is how long Close keeps the queue pairs alive so the peers'
	// last sends are acknowledged (default 100 ms; negative: none).
	Linger time.Duration
	// LinkTimeout is how long a peer's link may stay silent (a request
	// unacknowledged, or no credit and nothing received) before the peer
	// is failed with "link rank A <-> rank B lost"; idle queue pairs send
	// a heartbeat every LinkTimeout/4 so a dead path is noticed even when
	// nothing is being sent (link.go). Default DefaultLinkTimeout (4 s,
	// as TCP's); < 0 turns the watch off.
	LinkTimeout time.Duration
	// Logf, if set, receives one line per connected peer.
	Logf func(format string, args ...any)
}

func (c *Config) setDefaults() error {
	if c.Size < 1 || c.Rank < 0 || c.Rank >= c.Size {
		return fmt.Errorf("rdma: rank %d is not in a group of size %d", c.Rank, c.Size)
	}
	if c.Size > 1<<16 {
		return fmt.Errorf("rdma: group size %d exceeds %d", c.Size, 1<<16)
	}
	if c.Store == nil {
		return errors.New("rdma: Config.Store is required to exchange queue pair addresses")
	}
	if c.Port == 0 {
		c.Port = 1
	}
	if c.EagerLimit == 0 {
		c.EagerLimit = 16 << 10
	}
	if c.RecvSlots == 0 {
		c.RecvSlots = 32
	}
	if c.SendSlots == 0 {
		c.SendSlots = 16
	}
	if c.Linger == 0 {
		c.Linger = 100 * time.Millisecond
	}
	if c.LinkTimeout == 0 {
		c.LinkTimeout = DefaultLinkTimeout
	}
	if c.AbandonGrace <= 0 {
		c.AbandonGrace = time.Second
	}
	if c.ParkBytes == 0 {
		c.ParkBytes = 64 << 20
	}
	if c.RegCacheBytes == 0 {
		c.RegCacheBytes = 1 << 30
	}
	switch {
	case c.EagerLimit < 0 || c.EagerLimit > 1<<20:
		return fmt.Errorf("rdma: EagerLimit %d must be in [0, 1 MiB]", c.EagerLimit)
	case c.RecvSlots < 4 || c.RecvSlots > 4096:
		return fmt.Errorf("rdma: RecvSlots %d must be in [4, 4096]", c.RecvSlots)
	case c.SendSlots < 1 || c.SendSlots > 4096:
		return fmt.Errorf("rdma: SendSlots %d must be in [1, 4096]", c.SendSlots)
	}
	if c.Provider == nil {
		p, err := ProviderByName("ibverbs")
		if err != nil {
			return fmt.Errorf("rdma: %w", err)
		}
		c.Provider = p
	}
	return nil
}

// EnvProvider names the environment variable through which a launcher can
// choose the verbs provider at run time without a new flag: "ibverbs" (or
// unset) for hardware, "soft" to run `--transport rdma` over the software
// provider (CI, machines without RDMA). Pass its value to Available,
// MissingDevices and ProviderByName alike.
const EnvProvider = "STRAND_RDMA_PROVIDER"

// ProviderByName returns a verbs provider: "soft" (the pure-Go software
// provider, always present) or "ibverbs" / "" (libibverbs; present only in
// binaries built with `-tags rdma`, otherwise an error wrapping
// verbs.ErrNoDevice).
func ProviderByName(name string) (verbs.Provider, error) {
	switch name {
	case "soft":
		return softverbs.New(softverbs.Options{}), nil
	case "", "ibverbs":
		p := hardwareProvider()
		if p == nil {
			return nil, fmt.Errorf("%w: this strand binary was built without libibverbs support (rebuild with -tags rdma)", verbs.ErrNoDevice)
		}
		return p, nil
	}
	return nil, fmt.Errorf("unknown verbs provider %q (want soft or ibverbs)", name)
}

// Available reports whether provider can be used: nil, or an error that
// wraps verbs.ErrNoDevice saying why not ("no RDMA device ..."). For
// "ibverbs" (or "") it opens the first device and checks that port 1 is
// active. The software provider is always available; `--transport auto`
// should ask about "ibverbs", so that it never picks the software
// provider over TCP.
func Available(provider string) error {
	p, err := ProviderByName(provider)
	if err != nil {
		return err
	}
	names, err := p.Devices()
	if err != nil {
		return err
	}
	if len(names) == 0 {
		return fmt.Errorf("%w: provider %s lists no devices", verbs.ErrNoDevice, p.Name())
	}
	dev, err := p.Open(names[0])
	if err != nil {
		return fmt.Errorf("%w: open %s: %v", verbs.ErrNoDevice, names[0], err)
	}
	defer dev.Close()
	attr, err := dev.QueryPort(1)
	if err != nil {
		return fmt.Errorf("%w: %s: %v", verbs.ErrNoDevice, names[0], err)
	}
	if attr.State != verbs.PortActive {
		return fmt.Errorf("%w: %s port 1 is not active (state %d)", verbs.ErrNoDevice, names[0], attr.State)
	}
	return nil
}
