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
// Every method is written on a public API, so new ones can be written in any package: NewMethod turns a
// function of *Step (θ, g₁, GradAt, the method's hyperparameters, its state, the phase of Every) into a
// constructor, Register makes it a ParamMethod value, and every option applies to it. Each method has only
// the hyperparameters it declares (Config.Declare, Config.Param): setting another is an error naming the
// method and the parameter. A method draws random numbers from the context's generator with
// Step.RandomNormal and Step.RandomUniform, and declares a perturbation along g₁ with Step.GradAlong (which
// gives the curvature metric). github.com/gradreg/gradreg/optimizers/grcontrib adds GSAM, LookSAM, FriendlySAM,
// WSAM and random weight perturbation (RWP) that way.
//
// Programs configured GoMLX's way call RegisterParams(ctx) before parsing -set, so that every gr_* key is
// known (each key has one meaning for every method that reads it; method-specific keys carry the method's
// name, e.g. gr_gnp_alpha) and a key left unset keeps the chosen method's default; FromContext then builds
// the optimizer named by gr_method, reading only that method's keys, and reads the context again when the
// trainer builds its graph, so a run resumed from a checkpoint trains the checkpoint's method. Params
// returns the effective value of every hyperparameter, to log.
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
// Gradient accumulation (train.Trainer.AccumulateGradients) works with a trainer built by NewTrainer: the
// method runs on each micro-batch (its perturbation from that micro-batch's g₁, its second evaluation on the
// same micro-batch) and the accumulated gradient is the mean of the micro-batches' combined gradients, which
// the base optimizer applies once per cycle. Every(k > 1) cannot be combined with it (an error says so).
//
// See docs/methods.md in the repository for each method's cost, memory and references.
package gr
