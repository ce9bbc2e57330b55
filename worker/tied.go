package worker

import "github.com/strand-ml/strand/collective"

// TiedEmbedding returns the communicator that joins the first and the last
// pipeline stage of this rank's (dp, tp) position: with tied input and
// output embeddings both stages hold the matrix and sum its gradient over
// it, as Megatron does. It returns nil when PP is 1 or this rank is on a
// middle stage. The first- and last-stage ranks call it together, once.
func (r *Runtime) TiedEmbedding() (*collective.Comm, error) {
	last := r.Mesh.PP - 1
	if r.Mesh.PP == 1 || (r.Coord.PP != 0 && r.Coord.PP != last) {
		return nil, nil
	}
	first, end := r.Coord, r.Coord
	first.PP, end.PP = 0, last
	ranks := []int{r.Mesh.Rank(first), r.Mesh.Rank(end)}
	return collective.New(r.Transport, ranks, collective.Options{Name: "tied-embedding", Flight: r.Flight})
}
