package mesh

import "fmt"

// Axis names one dimension of the mesh.
type Axis int

// The three parallel axes.
const (
	DataAxis Axis = iota
	TensorAxis
	PipelineAxis
)

func (a Axis) String() string {
	switch a {
	case DataAxis:
		return "dp"
	case TensorAxis:
		return "tp"
	case PipelineAxis:
		return "pp"
	}
	return fmt.Sprintf("axis(%d)", int(a))
}

// Mesh is a DP x TP x PP layout of World() ranks.
type Mesh struct {
	DP, TP, PP int
}

// Coord is a rank's position in the mesh.
type Coord struct {
	DP, TP, PP int
}

func (c Coord) String() string { return fmt.Sprintf("(dp=%d,tp=%d,pp=%d)", c.DP, c.TP, c.PP) }

// New returns a mesh after checking every degree is positive.
func New(dp, tp, pp int) (Mesh, error) {
	m := Mesh{DP: dp, TP: tp, PP: pp}
	return m, m.Validate()
}

// ForWorld builds the mesh for world ranks given TP and PP degrees, deriving
// DP = world/(TP*PP). A dp of 0 means "derive it"; otherwise it must match.
func ForWorld(world, dp, tp, pp int) (Mesh, error) {
	if tp <= 0 {
		tp = 1
	}
	if pp <= 0 {
		pp = 1
	}
	if world <= 0 {
		return Mesh{}, fmt.Errorf("mesh: world size %d must be positive", world)
	}
	if world%(tp*pp) != 0 {
		return Mesh{}, fmt.Errorf("mesh: tp*pp = %d*%d = %d does not divide world size %d", tp, pp, tp*pp, world)
	}
	derived := world / (tp * pp)
	if dp > 0 && dp != derived {
		return Mesh{}, fmt.Errorf("mesh: dp*tp*pp = %d*%d*%d = %d does not equal world size %d", dp, tp, pp, dp*tp*pp, world)
	}
	return New(derived, tp, pp)
}

// Validate reports whether every degree is positive.
func (m Mesh) Validate() error {
	if m.DP <= 0 || m.TP <= 0 || m.PP <= 0 {
		return fmt.Errorf("mesh: degrees must be positive, got dp=%d tp=%d pp=%d", m.DP, m.TP, m.PP)
	}
	return nil
}

// World is the number of ranks in the mesh.
func (m Mesh) World() int { return m.DP * m.TP * m.PP }

func (m Mesh) String() string { return fmt.Sprintf("dp=%d tp=%d pp=%d", m.DP, m.TP, m.PP) }

// Rank returns the global rank at coordinate c.
func (m Mesh) Rank(c Coord) int { return (c.PP*m.DP+c.DP)*m.TP + c.TP }

// Coord returns the coordinates of a global rank. It panics on a rank
// outside [0, World()) because that is a programming error, not input.
func (m Mesh) Coord(rank int) Coord {
	if rank < 0 || rank >= m.World() {
		panic(fmt.Sprintf("mesh: rank %d outside world of %d", rank, m.World()))
	}
	tp := rank % m.TP
	rest := rank / m.TP
	return Coord{DP: rest % m.DP, TP: tp, PP: rest / m.DP}
}

// Degree returns the size of the mesh along an axis.
func (m Mesh) Degree(a Axis) int {
	switch a {
	case DataAxis:
		return m.DP
	case TensorAxis:
		return m.TP
	case PipelineAxis:
		return m.PP
	}
	panic(fmt.Sprintf("mesh: unknown axis %d", int(a)))
}

// Index returns the rank's position within its group along axis a.
func (m Mesh) Index(a Axis, rank int) int {
	c := m.Coord(rank)
	switch a {
	case DataAxis:
		return c.DP
	case TensorAxis:
		return c.TP
	case PipelineAxis:
		return c.PP
	}
	panic(fmt.Sprintf("mesh: unknown axis %d", int(a)))
}

// Group returns the global ranks of the group along axis a that contains
// rank, ordered by their index along a (so Group(a, r)[Index(a, r)] == r).
func (m Mesh) Group(a Axis, rank int) []int {
	c := m.Coord(rank)
	n := m.Degree(a)
	out := make([]int, n)
	for i := 0; i < n; i++ {
		d := c
		switch a {
		case DataAxis:
			d.DP = i
		case TensorAxis:
			d.TP = i
		case PipelineAxis:
			d.PP = i
		}
		out[i] = m.Rank(d)
	}
	return out
}

// Groups returns every group along axis a, each ordered by index along a.
// The groups are listed in order of their lowest rank.
func (m Mesh) Groups(a Axis) [][]int {
	seen := make(map[int]bool)
	var out [][]int
	for r := 0; r < m.World(); r++ {
		if seen[r] {
			continue
		}
		g := m.Group(a, r)
		for _, x := range g {
			seen[x] = true
		}
		out = append(out, g)
	}
	return out
}
