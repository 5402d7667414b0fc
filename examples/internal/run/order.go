package run

import "math/rand/v2"

// EpochOrder is the batch order of an example's endless training stream of n examples: position p is
// example perm_e[p mod n] of epoch e = ⌊p/n⌋, with perm_e = rand.NewPCG(seed, e).Perm(n). It depends only
// on (seed, p), so every method of a seed sees the same batches, and a dataset that seeks to step·batch (a
// Seeker) gives a resumed run the batches of an uninterrupted one.
type EpochOrder struct {
	n     int
	seed  uint64
	epoch int
	perm  []int
}

// NewEpochOrder returns the order of n > 0 examples drawn from seed.
func NewEpochOrder(n int, seed int64) *EpochOrder {
	return &EpochOrder{n: n, seed: uint64(seed), epoch: -1}
}

// Example returns the index of the example at position pos ≥ 0 of the stream.
func (o *EpochOrder) Example(pos int) int {
	if e := pos / o.n; e != o.epoch {
		o.perm = rand.New(rand.NewPCG(o.seed, uint64(e))).Perm(o.n)
		o.epoch = e
	}
	return o.perm[pos%o.n]
}
