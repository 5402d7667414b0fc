// Package regularizers wraps a GoMLX loss function (train.LossFn) with the flooding family of loss
// transformations, which make training ascend the loss when it falls below a flood level b:
//
//	Flooding (Ishida et al. 2020):   |ℓ̄ − b| + b,                      ℓ̄ = mean_i ℓ_i
//	IFlood   (Xie et al. 2022):      mean_i (|ℓ_i − b| + b)
//	SoftAD   (Holland & Nakatani 2024): b + σ² mean_i ρ((ℓ_i − b)/σ),  ρ(x) = √(x² + 1) − 1
//
// where ℓ_i are the values the wrapped loss function returns. Use the wrapped function wherever the plain
// one went, e.g. train.NewTrainer(backend, ctx, modelFn, regularizers.Flooding(lossFn, 0.02), ...).
// Every wrapper costs one loss evaluation: nothing is re-evaluated.
//
// # Per-example losses
//
// Flooding acts on the batch mean, so it accepts any loss function: a scalar (already averaged) loss is
// used as it is, and a non-scalar one is averaged first. IFlood and SoftAD transform each example's loss
// before averaging, so they need per-example losses: each element of the wrapped function's output is one
// ℓ_i. Given a loss function that returns a scalar they panic while the graph is built, with an error
// saying so (a scalar of a batch of one is refused too: reshape it to shape [1]).
//
// Which GoMLX losses qualify: in GoMLX v0.26.0 every loss in pkg/ml/train/losses (MeanSquaredError,
// MeanAbsoluteError, BinaryCrossentropy(Logits), (Sparse)CategoricalCrossEntropy(Logits), MakeHuberLoss,
// MakeAdaptivePowerLoss, EuclideanDistance(Square), TripletLoss) returns the (masked) batch mean, a
// scalar, although some doc comments say otherwise. So all of them work with Flooding and none with IFlood
// or SoftAD; for those write the per-example loss, one line, e.g.
//
//	squaredError := func(labels, predictions []*Node) *Node { return Square(Sub(predictions[0], labels[0])) }
//	crossEntropy := func(labels, logits []*Node) *Node {
//		return ReduceSum(Neg(Mul(labels[0], LogSoftmax(logits[0]))), -1) // shape [batch]
//	}
//
// # Masks and weights
//
// The labels, extra tensors included, reach the wrapped loss unchanged, so weights and masks are applied
// by it as it always does (per-example weights multiply ℓ_i before the flood). When the batch mean is
// taken here, a boolean tensor among labels[1:] with exactly the shape of the per-example losses is used
// as the mask (GoMLX's convention): masked-out examples do not count in the mean.
//
// # Flooding performs F-GR
//
// With plain SGD at learning rate η, when L(θ) < b < L(θ + η∇L(θ)) two flooding steps move θ to
// θ − η[∇L(θ + η∇L(θ)) − ∇L(θ)]: the correction term of forward-difference gradient regularization (F-GR,
// optimizers.ForwardDifference) with γ = ε = η, applied without the gradient step itself. See
// docs/methods.md; the test TestFloodingPerformsFGR checks it through the trainer.
package regularizers
