package grgrad

import (
	"slices"

	"github.com/gomlx/gomlx/pkg/core/graph"
	"github.com/gomlx/gomlx/pkg/core/shapes"
	"github.com/pkg/errors"
)

// dotVJP returns the gradient of Dot(x, W): v·Wᵀ and xᵀ·v for two matrices; the vector cases (whose
// gradients are outer products or have the size of an input anyway) keep GoMLX's, gomlx.
func dotVJP(gomlx graph.VJP) graph.VJP {
	return func(node *graph.Node, vjps []*graph.Node, outputShape shapes.Shape) []*graph.Node {
		x, w := node.Inputs()[0], node.Inputs()[1]
		if x.Rank() != 2 || w.Rank() != 2 {
			return gomlx(node, vjps, outputShape)
		}
		v := vjps[0]
		return []*graph.Node{
			graph.DotGeneral(v, []int{1}, nil, w, []int{1}, nil), // [i, k]·[j, k] → [i, j]
			graph.DotGeneral(x, []int{0}, nil, v, []int{0}, nil), // [i, j]·[i, k] → [j, k]
		}
	}
}

// dotAxes are the axes of a DotGeneral node, read from GoMLX's node (they are not exported).
type dotAxes struct {
	lhsContracting, lhsBatch, rhsContracting, rhsBatch []int
}

// readAxes reads the axes of a DotGeneral node (nodeInputsDotGeneral).
func readAxes(node *graph.Node) (dotAxes, error) {
	r := reader{node: node}
	a := dotAxes{r.ints("lhsContractingAxes"), r.ints("lhsBatchAxes"), r.ints("rhsContractingAxes"), r.ints("rhsBatchAxes")}
	return a, r.err
}

// dotGeneralVJP is the gradient of y = DotGeneral(x, W) as two DotGenerals (see the package comment).
func dotGeneralVJP(node *graph.Node, vjps []*graph.Node, _ shapes.Shape) []*graph.Node {
	a, err := readAxes(node)
	if err != nil {
		panic(errors.Wrap(err, "grgrad: the gradient of DotGeneral")) // unreachable: Install checked the fields
	}
	x, w, v := node.Inputs()[0], node.Inputs()[1], vjps[0]
	return []*graph.Node{
		transposeVJP(v, x, a.lhsContracting, a.lhsBatch, w, a.rhsContracting, a.rhsBatch, true),
		transposeVJP(v, w, a.rhsContracting, a.rhsBatch, x, a.lhsContracting, a.lhsBatch, false),
	}
}

// free lists the axes of a rank-r operand that are neither contracting nor batch, in increasing order
// (the order DotGeneral's output keeps them in).
func free(rank int, contracting, batch []int) []int {
	var out []int
	for axis := range rank {
		if !slices.Contains(contracting, axis) && !slices.Contains(batch, axis) {
			out = append(out, axis)
		}
	}
	return out
}

// transposeVJP is the gradient with respect to "this" operand of y = DotGeneral(lhs, rhs), "this" being
// lhs when thisIsLHS. y's axes are [batch…, lhs free…, rhs free…]. The gradient is
// DotGeneral(v, other) contracting v's axes of other's free axes with other's free axes (batch axes
// kept): its axes are [batch…, this free…, other's contracting axes in increasing order], each of which
// pairs with one of this operand's contracting axes; a transpose puts them in this operand's order.
func transposeVJP(v, this *graph.Node, thisContracting, thisBatch []int,
	other *graph.Node, otherContracting, otherBatch []int, thisIsLHS bool) *graph.Node {
	nb := len(thisBatch)
	thisFree := free(this.Rank(), thisContracting, thisBatch)
	otherFree := free(other.Rank(), otherContracting, otherBatch)
	// v's axes of the other operand's free axes, and of this one's.
	vOther := make([]int, len(otherFree))
	for i := range vOther {
		if thisIsLHS {
			vOther[i] = nb + len(thisFree) + i
		} else {
			vOther[i] = nb + i
		}
	}
	vBatch := make([]int, nb)
	for i := range vBatch {
		vBatch[i] = i
	}
	r := graph.DotGeneral(v, vOther, vBatch, other, otherFree, otherBatch)
	// r's axis k holds this operand's axis pos[k]: batch axes, this free axes (in v's order, which is
	// increasing), then the partners of other's remaining (contracting) axes in increasing order.
	pos := make([]int, 0, this.Rank())
	pos = append(pos, thisBatch...) // batch axes pair in the order given, and y keeps that order
	pos = append(pos, thisFree...)
	otherRest := slices.Clone(otherContracting)
	slices.Sort(otherRest)
	for _, oa := range otherRest {
		pos = append(pos, thisContracting[slices.Index(otherContracting, oa)])
	}
	perm := make([]int, this.Rank())
	identity := true
	for k, axis := range pos {
		perm[axis] = k
		if axis != k {
			identity = false
		}
	}
	if identity {
		return r
	}
	return graph.TransposeAllAxes(r, perm...)
}
