package gr

import (
	"github.com/gomlx/gomlx/pkg/core/dtypes"
	"github.com/gomlx/gomlx/pkg/core/graph"
	"github.com/gradreg/gradreg/optimizers/grvec"
)

// Node is an alias for graph.Node, the type of every value here.
type Node = graph.Node

// castTo returns s converted to x's dtype.
func castTo(s, x *Node) *Node {
	if s.DType() == x.DType() {
		return s
	}
	return graph.ConvertDType(s, x.DType())
}

// computeDType is the dtype of reductions and scalars for tensors of dtype dt (grvec.ComputeDType).
func computeDType(dt dtypes.DType) dtypes.DType { return grvec.ComputeDType(dt) }
