package grcontrib

import (
	"math"
	"testing"

	"github.com/gomlx/gomlx/pkg/core/dtypes"
	. "github.com/gomlx/gomlx/pkg/core/graph"
	"github.com/gomlx/gomlx/pkg/core/tensors"
	gr "github.com/gradreg/gradreg/optimizers/gr"
	"github.com/gradreg/gradreg/optimizers/grbackend"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestRWPScale: the scale of RWP's perturbation is the norm of each output unit (last axis) of a matrix,
// broadcast over the unit's weights, and ‖θ‖ + δ for a vector.
func TestRWPScale(t *testing.T) {
	b, err := grbackend.New()
	require.NoError(t, err)
	m := [][]float64{{1, 2, -2}, {2, 0, 1}} // [in=2, out=3]
	got := MustExecOnce(b, func(x *Node) *Node { return rwpScale(x, dtypes.Float64) }, m)
	assert.Equal(t, []int{1, 3}, got.Shape().Dimensions)
	assert.InDeltaSlice(t, []float64{math.Sqrt(5), 2, math.Sqrt(5)}, tensors.MustCopyFlatData[float64](got), 1e-15)
	v := MustExecOnce(b, func(x *Node) *Node { return rwpScale(x, dtypes.Float64) }, []float64{3, 4})
	assert.InDelta(t, 5+gr.NormStabilizer, v.Value().(float64), 1e-15)
}
