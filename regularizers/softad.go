package regularizers

import (
	"math"

	. "github.com/gomlx/gomlx/pkg/core/graph"
	"github.com/gomlx/gomlx/pkg/ml/train"
	"github.com/pkg/errors"
)

// DefaultSoftADSigma is SoftAD's default scale σ, 1: the value the authors use in all their experiments.
const DefaultSoftADSigma = 1.0

// SoftAD wraps lossFn with soft ascent-descent (Holland & Nakatani, "Soft ascent-descent as a stable and
// flexible alternative to flooding", NeurIPS 2024), a per-example flood with a smooth switch:
//
//	L_softad = b + σ² mean_i ρ((ℓ_i − b)/σ),   ρ(x) = √(x² + 1) − 1
//
// Its gradient is σ mean_i φ((ℓ_i − b)/σ)∇ℓ_i with φ(x) = ρ'(x) = x/√(x² + 1) ∈ (−1, 1): each example is
// descended when its loss is above the threshold b and ascended below it, with a weight that goes smoothly
// through 0 at ℓ_i = b instead of jumping from −1 to 1 as in IFlood. Far from b (|ℓ_i − b| ≫ σ) the
// gradient tends to σ times IFlood's; near b (|ℓ_i − b| ≪ σ) the loss tends to b + mean_i (ℓ_i − b)²/2.
//
// This is the objective of the authors' code (github.com/feedbackward/bdd-flood, setup/losses.py,
// Loss_SoftAD: η·θ + σ²·mean ρ((ℓ − θ)/σ), ρ from setup/sunhuber.py, with θ = b and η = 1, their setting in
// every experiment). The paper's text itself could not be checked here: its constant term and the name of
// its parameters are taken from that code; the constant does not change the gradient.
//
// lossFn must return per-example losses (see the package documentation: none of GoMLX v0.26.0's losses
// does); given a scalar it panics while the graph is built, saying so. A boolean mask among labels[1:] is
// honoured in the mean. b must be finite and σ finite and > 0 (DefaultSoftADSigma = 1).
// Cost: none beyond the loss. It panics on invalid b or σ.
func SoftAD(lossFn train.LossFn, b, sigma float64) train.LossFn {
	mustNotErr(checkSoftAD(b, sigma))
	return func(labels, predictions []*Node) *Node {
		loss := lossFn(labels, predictions)
		perExample("SoftAD", loss)
		x := DivScalar(AddScalar(loss, -b), sigma)
		rho := AddScalar(Sqrt(OnePlus(Square(x))), -1) // ρ(x) = √(x² + 1) − 1
		return AddScalar(MulScalar(batchMean(rho, labels), sigma*sigma), b)
	}
}

func checkSoftAD(b, sigma float64) error {
	if err := checkFinite("SoftAD", "threshold b", b); err != nil {
		return err
	}
	if math.IsNaN(sigma) || math.IsInf(sigma, 0) || sigma <= 0 {
		return errors.Errorf("regularizers.SoftAD: scale σ (sigma) must be a finite number in (0, +∞), got %g", sigma)
	}
	return nil
}
