// Package gr implements gradient regularization (GR) for GoMLX: optimizers that minimize
//
//	L(θ) + (γ/2)‖∇L(θ)‖²
//
// as in Karakida et al., "Understanding Gradient Regularization in Deep Learning" (ICML 2023), and the
// SAM family of methods that share their perturb → re-evaluate → combine structure. Docs import it as gr:
//
//	import gr "github.com/gradreg/gradreg/optimizers/gr"
//
// Each method wraps a base GoMLX optimizer (SGD, Adam, ...). It computes a combined gradient g and hands it
// to the base optimizer exactly as a plain gradient would be handed (UpdateGraphWithGradients). With
// g₁ = ∇L(θ), where L is the loss the trainer minimizes (the mean of lossFn's output plus every term added
// with train.AddLoss):
//
//	DoubleBackprop:     g = ∇[L + (γ/2)‖∇L‖²] = g₁ + γHg₁
//	ForwardDifference:  g = (1 − γ/ε)g₁ + (γ/ε)∇L(θ + εg₁)      (F-GR, "ascent first")
//	BackwardDifference: g = (1 + γ/ε)g₁ − (γ/ε)∇L(θ − εg₁)      (B-GR, "descent first")
//	CentralDifference:  g = g₁ + (γ/2ε)[∇L(θ + εg₁) − ∇L(θ − εg₁)]
//
// and the SAM family, which shares their perturb → re-evaluate → combine mechanism (δ = NormStabilizer):
//
//	SAM:  g = ∇L(θ + ρg₁/(‖g₁‖ + δ))                      (Foret et al. 2021)
//	USAM: g = ∇L(θ + ρg₁)                                 (= ForwardDifference with γ = ε = ρ)
//	GNP:  g = (1 − α)g₁ + α∇L(θ + ρg₁/(‖g₁‖ + δ))          (Zhao et al. 2022)
//	ASAM: g = ∇L(θ + ρT²g₁/(‖Tg₁‖ + δ)), T = |θ| + η       (Kwon et al. 2021)
//
// Cheaper and safer variants: Config.Every(k) runs the extra evaluation on every k-th step only and reuses
// the last correction in between; Config.WarmUp and Config.ZeroWarmUp ramp the regularization in; Metrics
// reports ‖g₁‖, the penalty and the curvature g₁ᵀHg₁ as train metrics. The flooding family (an implicit
// F-GR) lives in package github.com/gradreg/gradreg/regularizers.
//
// Every method is written on a public API, so new ones can be written in any package; see "Writing a
// method" below. github.com/gradreg/gradreg/optimizers/grcontrib adds GSAM, LookSAM, FriendlySAM, WSAM,
// random weight perturbation (RWP) and ESAM's stochastic weight perturbation that way.
//
// The finite-difference methods re-evaluate the model at a perturbed θ, so they need the model and loss
// functions: build the trainer with NewTrainer, which has the signature of train.NewTrainer and returns a
// plain *train.Trainer. Switching a program to GR is one statement:
//
//	trainer := gr.NewTrainer(backend, ctx, modelFn, lossFn,
//		gr.ForwardDifference(optimizers.StochasticGradientDescent().Done()).Gamma(0.05).Epsilon(0.05).Done(),
//		trainMetrics, evalMetrics)
//
// The second evaluation is clean: it starts every non-trainable variable (batch-norm moving statistics,
// the context's random-number state, ...) from its value at the start of the step, so dropout draws the
// same mask in both passes, and the first pass's updates of those variables are the ones kept. The loss
// the trainer reports is L(θ); variables are back at θ when the base optimizer updates them.
//
// A method acts on every trainable variable unless Config.Mask or Config.Exclude (context key gr_exclude, a
// regular expression on the variable's ScopeAndName) leaves some to the base optimizer alone: those are not
// perturbed, do not count in the method's norms, and get their plain gradient — e.g. SAM sparing biases and
// normalization parameters, -set="gr_method=sam;gr_exclude=bias|gain|offset|scale".
//
// # Context keys
//
// Programs configured GoMLX's way call RegisterParams(ctx) before parsing -set, so that every gr_* key is
// known (each key has one meaning for every method that reads it; method-specific keys carry the method's
// name, e.g. gr_gnp_alpha) and a key left unset keeps the chosen method's default; FromContext then builds
// the optimizer named by gr_method, reading only that method's keys (a key of another method that is set draws
// one warning on stderr naming the method that ignores it). The optimizer reads the context again when a
// trainer builds a training graph — once per graph: the resolved configuration is kept with the graph's Step —
// so a run resumed from a checkpoint trains the checkpoint's method. Regularized.Params returns the effective
// value of every hyperparameter, option and schedule: log it after the checkpoint loaded.
//
// # Writing a method
//
// NewMethod turns a function of *Step into a constructor, Register makes it a ParamMethod value, and every
// option applies to it. The Step gives θ (Theta), g₁ (Grad), the variables they belong to (Variables, in the
// same order), the gradient at perturbed weights (GradAt, GradAlong), the method's hyperparameters (Param,
// ParamFloat, ParamInt, ParamBool, ParamString), its state across steps (State, SetState), random draws from
// the context's generator (RandomNormal, RandomUniform), the global step and the learning rate. Each method has
// only the hyperparameters it declares (Config.Declare, with a Hyperparameter per key): setting another is an
// error naming the method and the parameter. Package github.com/gradreg/gradreg/optimizers/grvec has the
// helpers on vectors of one tensor per variable (inner products, norms, a·x + b·y, ...).
//
// # How the options compose
//
// One training step builds, in this order:
//
//  1. Groups: the batch is split into m groups; each group gets its own sub-step with its own loss Lₖ and
//     g₁ᵏ = ∇Lₖ(θ), and the step's g₁ is the mean of the g₁ᵏ. Without Groups the step is its own single group.
//     Mask and Exclude then choose the variables the method acts on (Step.Variables); the others keep g₁.
//  2. The method: its combined gradient, run on each group and averaged. Its state writes and curvature are
//     averaged likewise.
//  3. Fallback (GuardNonFinite): where the method's gradient is not finite while L and g₁ are, g = g₁, and
//     the step counts one MetricFallbacks. It sits right after the method, so that everything after it
//     (the correction Every stores, the warm-up) sees a finite gradient.
//  4. Every(k): on full steps the method's gradient, and its correction c = g − g₁ is stored; on reuse steps
//     g = g₁ + c_stored (or the method's Reuse). The graph that does not know the step's phase builds both
//     and selects with t mod k = 0; the state each phase writes is committed for the selected phase only.
//  5. WarmUp/ZeroWarmUp: g = g₁ + w_t·c with c = g − g₁ of the previous stage, so the ramp scales the
//     correction whichever of full or reuse produced it. The metrics are published here (the penalty
//     scaled by w_t).
//  6. Guard (GuardNonFinite): ok = L and g finite; the gradient is rounded to each variable's dtype and
//     handed to the base optimizer, and where ok is false every variable the step changed keeps its
//     pre-step value (UpdateGraph, or UpdateGraphWithGradients under accumulation).
//
// Groups is outermost in data (each group runs the method) but the fallback, Every and WarmUp act on the
// mean over the groups: a group cannot fall back alone, and Every stores one correction for the step.
//
// # Hyperparameters in variables
//
// Each float64 hyperparameter a method reads (Step.Param) is written, on every
// step that reads it, to a non-trainable scalar variable of the compute dtype under
// Config.Scope + "/hyperparameters", named by its key (e.g. /gradreg/hyperparameters/gr_rho): checkpoints
// save the value the last step used and any graph code can read it (HyperparameterVar). With WarmUp or
// ZeroWarmUp the weight w_t of the correction is written likewise, as "warmup_weight". A constant hyperparameter
// is a graph constant as before (the variable is only written), so results are bit for bit those of the
// constant; with a schedule the value is computed in the graph from the global step (or the learning rate),
// so one compiled graph serves every step and a resumed run recomputes the same values.
//
// # Gradient accumulation
//
// Trainer.AccumulateGradients(n) works with a trainer built by NewTrainer.
// GoMLX's accumulation graphs call the loss function, differentiate the loss themselves, add the gradient
// to an accumulator and, on every n-th call, hand the mean of the n accumulated gradients to the optimizer's
// UpdateGraphWithGradients. NewTrainer's loss function computes the method's combined gradient gⱼ of
// micro-batch j (its own g₁ and its own perturbation) and returns a surrogate whose value is the loss and
// whose gradient is gⱼ (see NewTrainer), so the base optimizer steps once per n micro-batches with
//
//	g = (1/n) Σⱼ gⱼ
//
// which is Groups(n) on the concatenation of the n micro-batches (up to rounding). Every(k > 1) is refused
// with accumulation (graph-build error). Distributed training with accumulation is refused by GoMLX itself.
//
// GuardNonFinite under accumulation: a micro-batch whose loss or gradient is not finite adds zero to the
// accumulator and marks the cycle; the optimizer step that ends a marked cycle (or whose mean gradient is
// not finite) writes nothing — the whole cycle is dropped and counted once in MetricSkipped. The loss the
// trainer reports for that micro-batch is left as it is.
//
// Checkpoints: GoMLX keeps the position in the cycle in a Go field that checkpoints do not save, while the
// accumulated sums are variables that they do save. A checkpoint written at a cycle boundary (after a step
// count that is a multiple of n, e.g. with train.Loop and checkpoints every multiple of n steps) resumes
// exactly. Resuming from a checkpoint written mid-cycle restarts the count at 0 with the partial sum of the
// interrupted cycle still in the accumulator: the next optimizer step then applies the sum of more than n
// micro-batch gradients divided by n.
//
// # Low-precision variables
//
// For low-precision trainable variables (bfloat16, float16): GoMLX's binary ops need equal dtypes, so the
// perturbed weights θ + o of GradAt are stored in the variable's dtype; everything else is computed in
// float32: g₁ and the perturbed gradients are widened to float32 as soon as they are computed, so that the
// differences ∇L(θ + o) − g₁, the combination of the method and the norms (with a float32 loss) are
// float32 operations, and the offset is added to θ in float32 and rounded once. The gradient handed to the
// base optimizer is rounded back to the variable's dtype.
//
// What remains is the rounding of θ + o itself (an offset below half a unit in the last place of θ is lost)
// and the rounding of the model's own arithmetic in the perturbed pass; PrecisionMetrics measures the first.
//
// # Several devices
//
// gr.NewTrainer returns a plain *train.Trainer, so trainer.DistributedTrainStep(distributed.AutoSharding, ...)
// and train.Loop with a train.DistributedDataset work with every method (XLA only: GoMLX's pure-Go backend
// refuses shardings; on one machine XLA's CPU plugin makes several devices, grbackend.NewCPUDevices).
// DistributedTrainStep builds the same training graph as TrainStep, as one logical program over the global
// batch that XLA's automatic sharding partitions: the perturbation is computed from the global-batch g₁ (one
// g₁ and one perturbation for the whole batch, as on one device), and the result equals the single-device
// step up to the order of floating-point reductions.
//
// The anchors' per-device m-sharpness (google-research/sam perturbs each device with its own gradient) is
// Groups(m) with m = the number of devices and the batch sharded contiguously along its first axis: the
// groups are then exactly the devices' shards, and the arithmetic is the same — each group's g₁ᵏ and
// perturbation depend only on its own examples. Under AutoSharding XLA decides where each group's
// computation runs; making each device compute its own group without communication needs SPMD
// (distributed.SPMD, experimental in GoMLX), which this package does not drive.
//
// GoMLX refuses distributed training with gradient accumulation ("not implemented yet").
//
// See docs/methods.md in the repository for each method's cost, memory and references.
package gr
