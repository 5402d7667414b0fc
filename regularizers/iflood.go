package regularizers

import (
	. "github.com/gomlx/gomlx/pkg/core/graph"
	"github.com/gomlx/gomlx/pkg/ml/train"
)

// IFlood wraps lossFn with individual flooding, iFlood (Xie, Wang, Liu, Sun, Chen & Wang, "iFlood: A Stable
// and Effective Regularizer", ICLR 2022): the flood is applied to each example's loss before averaging,
//
//	L_iflood = mean_i (|ℓ_i − b| + b)
//
// with gradient mean_i sign(ℓ_i − b)∇ℓ_i: examples below b are ascended, the others descended. lossFn must
// return per-example losses (see the package documentation: none of GoMLX v0.26.0's losses does); given a
// scalar it panics while the graph is built, saying so. A boolean mask among labels[1:] is honoured in the
// mean. b must be finite. Cost: none beyond the loss. It panics on an invalid b.
func IFlood(lossFn train.LossFn, b float64) train.LossFn {
	mustNotErr(checkFinite("IFlood", "flood level b", b))
	return func(labels, predictions []*Node) *Node {
		loss := lossFn(labels, predictions)
		perExample("IFlood", loss)
		return batchMean(AddScalar(Abs(AddScalar(loss, -b)), b), labels)
	}
}
