package regularizers

import (
	"math"
	"slices"

	"github.com/gomlx/gomlx/pkg/core/dtypes"
	. "github.com/gomlx/gomlx/pkg/core/graph"
	"github.com/pkg/errors"
)

// checkFinite returns an error naming param unless value is finite.
func checkFinite(fn, param string, value float64) error {
	if math.IsNaN(value) || math.IsInf(value, 0) {
		return errors.Errorf("regularizers.%s: %s must be a finite number, got %g", fn, param, value)
	}
	return nil
}

// mustNotErr panics with err, as GoMLX's constructors of loss functions do.
func mustNotErr(err error) {
	if err != nil {
		panic(err)
	}
}

// perExample panics unless loss holds per-example values (is not a scalar).
func perExample(fn string, loss *Node) {
	if loss.IsScalar() {
		panic(errors.Errorf("regularizers.%s needs per-example losses, but the loss function returned a scalar "+
			"(%s): it already averaged the batch. The losses of GoMLX's pkg/ml/train/losses all return the batch "+
			"mean; wrap a loss function that returns one value per example instead, e.g. "+
			"Square(Sub(predictions[0], labels[0])). Flooding accepts a scalar loss", fn, loss.Shape()))
	}
}

// batchMean returns the mean of loss, or loss itself if it is a scalar. A boolean tensor among labels[1:] whose
// shape is a prefix of the shape of loss (e.g. [batch]) is taken as the mask: only the entries where it is true
// count.
func batchMean(loss *Node, labels []*Node) *Node {
	if loss.IsScalar() {
		return loss
	}
	if mask := findMask(loss, labels); mask != nil {
		return MaskedReduceAllMean(loss, mask)
	}
	return ReduceAllMean(loss)
}

// findMask returns the first boolean tensor in labels[1:] whose dimensions are a prefix of those of loss.
func findMask(loss *Node, labels []*Node) *Node {
	for i, extra := range labels {
		if i == 0 || extra == nil || extra.DType() != dtypes.Bool || extra.Rank() > loss.Rank() || extra.Rank() == 0 {
			continue
		}
		if slices.Equal(extra.Shape().Dimensions, loss.Shape().Dimensions[:extra.Rank()]) {
			return extra
		}
	}
	return nil
}
