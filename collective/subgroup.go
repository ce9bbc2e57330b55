package collective

import "fmt"

// Subgroups splits c's ranks into consecutive blocks of n (group order)
// and returns this rank's block and the group across blocks: the ranks
// at this rank's position in every block. Hybrid sharding uses them as
// shard group and replica group (parallel/zero). Every member must call it
// with the same n and name; creating them does not communicate. A nil c
// (a group of one) gives two nil communicators.
func (c *Comm) Subgroups(n int, name string) (block, across *Comm, err error) {
	size := c.Size()
	if n <= 0 || size%n != 0 {
		return nil, nil, fmt.Errorf("collective: blocks of %d do not divide a group of %d", n, size)
	}
	if c == nil {
		return nil, nil, nil
	}
	me := c.Rank()
	first := me / n * n
	var inner, outer []int
	var innerNodes, outerNodes []string
	for i := 0; i < size; i++ {
		in, out := i >= first && i < first+n, i%n == me%n
		if in {
			inner = append(inner, c.ranks[i])
		}
		if out {
			outer = append(outer, c.ranks[i])
		}
		if c.opts.Nodes != nil {
			if in {
				innerNodes = append(innerNodes, c.opts.Nodes[i])
			}
			if out {
				outerNodes = append(outerNodes, c.opts.Nodes[i])
			}
		}
	}
	o := c.opts
	o.Name, o.Nodes = c.opts.Name+"/"+name+"-block", innerNodes
	if block, err = New(c.t, inner, o); err != nil {
		return nil, nil, err
	}
	o.Name, o.Nodes = c.opts.Name+"/"+name+"-across", outerNodes
	if across, err = New(c.t, outer, o); err != nil {
		return nil, nil, err
	}
	return block, across, nil
}
