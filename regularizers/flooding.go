package regularizers

import (
	. "github.com/gomlx/gomlx/pkg/core/graph"
	"github.com/gomlx/gomlx/pkg/ml/train"
)

// Flooding wraps lossFn with flooding (Ishida, Yamane, Sakai, Niu & Sugiyama, "Do We Need Zero Training Loss
// After Achieving Zero Training Loss?", ICML 2020):
//
//	L_flood = |ℓ̄ − b| + b,   ℓ̄ = mean_i ℓ_i (lossFn's output, or its mean if it is not a scalar)
//
// Its gradient is sign(ℓ̄ − b)∇ℓ̄: gradient descent above the flood level b, gradient ascent below it, so the
// training loss floats around b. At ℓ̄ = b exactly the gradient is 0. lossFn may return per-example values or
// their mean (every GoMLX loss qualifies); a boolean mask among labels[1:] is honoured when averaging.
// Terms added with train.AddLoss (e.g. weight decay) are outside the flood. b must be finite; b = 0 with a
// non-negative loss changes nothing. Ishida et al. pick b from a grid by validation (e.g. 0.01 … 0.1 for
// cross-entropy). Cost: none beyond the loss. It panics on an invalid b.
func Flooding(lossFn train.LossFn, b float64) train.LossFn {
	mustNotErr(checkFinite("Flooding", "flood level b", b))
	return func(labels, predictions []*Node) *Node {
		mean := batchMean(lossFn(labels, predictions), labels)
		return AddScalar(Abs(AddScalar(mean, -b)), b)
	}
}
