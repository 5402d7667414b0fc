// Package model is the vision transformer of the ViT example (examples/vit): a pre-norm ViT on MNIST built
// from GoMLX's layers.MultiHeadAttention and layers.LayerNormalization or layers.RMSNorm, twice
// differentiable on every backend so that gr.DoubleBackprop runs through it. Its tests verify DB's
// Hessian-vector product through a transformer block and one step of each gr method against independent
// computations; notes_test.go reproduces the GoMLX limitations of docs/gomlx-notes.md.
package model

import (
	"fmt"
	"slices"
	"strings"

	"github.com/gomlx/gomlx/pkg/core/dtypes"
	. "github.com/gomlx/gomlx/pkg/core/graph"
	"github.com/gomlx/gomlx/pkg/core/shapes"
	"github.com/gomlx/gomlx/pkg/ml/context"
	"github.com/gomlx/gomlx/pkg/ml/context/initializers"
	"github.com/gomlx/gomlx/pkg/ml/layers"
	"github.com/gomlx/gomlx/pkg/ml/layers/activations"
	"github.com/pkg/errors"
)

// Context hyperparameters of the ViT (defaults in parentheses, set by the flags or -set).
const (
	ParamPatch   = "vit_patch"   // side of a square patch in pixels, a divisor of 28 (7: 16 patches)
	ParamWidth   = "vit_width"   // token width D (16)
	ParamDepth   = "vit_depth"   // number of transformer blocks (1)
	ParamHeads   = "vit_heads"   // attention heads; must divide vit_width (2)
	ParamMLP     = "vit_mlp"     // hidden width of each block's MLP (32)
	ParamNorm    = "vit_norm"    // normalization: layer|rms (layer)
	ParamReadout = "vit_readout" // what the head reads: class|mean (class)
	ParamTokens  = "vit_tokens"  // how the class token joins the patches: onehot|concat (onehot)
	ParamDropout = "vit_dropout" // dropout rate after attention and inside the MLP, training only (0)
)

// imageSide is the side of an MNIST image in pixels; numClasses its number of labels.
const (
	imageSide  = 28
	numClasses = 10
)

// Config is the architecture of the ViT.
type Config struct {
	Patch, Width, Depth, Heads, MLP int
	Norm                            string  // layer|rms
	Readout                         string  // class|mean
	Tokens                          string  // onehot|concat
	Dropout                         float64 // in [0, 1)
}

// DefaultConfig is the default architecture, sized for the pure-Go backend: 7×7 patches (16 tokens and a
// class token), width 16, 1 block of 2 heads, MLP width 32, layer norm, class-token readout, tokens joined
// by one-hot contractions, no dropout (3,514 parameters).
func DefaultConfig() Config {
	return Config{Patch: 7, Width: 16, Depth: 1, Heads: 2, MLP: 32, Norm: "layer", Readout: "class",
		Tokens: "onehot"}
}

// Params returns the context hyperparameters of c.
func (c Config) Params() map[string]any {
	return map[string]any{ParamPatch: c.Patch, ParamWidth: c.Width, ParamDepth: c.Depth, ParamHeads: c.Heads,
		ParamMLP: c.MLP, ParamNorm: c.Norm, ParamReadout: c.Readout, ParamTokens: c.Tokens, ParamDropout: c.Dropout}
}

// ConfigFromContext reads the architecture from the context hyperparameters (DefaultConfig for those not
// set) and validates it.
func ConfigFromContext(ctx *context.Context) (Config, error) {
	d := DefaultConfig()
	c := Config{
		Patch:   context.GetParamOr(ctx, ParamPatch, d.Patch),
		Width:   context.GetParamOr(ctx, ParamWidth, d.Width),
		Depth:   context.GetParamOr(ctx, ParamDepth, d.Depth),
		Heads:   context.GetParamOr(ctx, ParamHeads, d.Heads),
		MLP:     context.GetParamOr(ctx, ParamMLP, d.MLP),
		Norm:    context.GetParamOr(ctx, ParamNorm, d.Norm),
		Readout: context.GetParamOr(ctx, ParamReadout, d.Readout),
		Tokens:  context.GetParamOr(ctx, ParamTokens, d.Tokens),
		Dropout: context.GetParamOr(ctx, ParamDropout, d.Dropout),
	}
	return c, c.Validate()
}

// Validate returns an error naming the first invalid field and its valid range.
func (c Config) Validate() error {
	switch {
	case c.Patch <= 0 || imageSide%c.Patch != 0:
		return errors.Errorf("%s=%d: the patch side must divide %d (1, 2, 4, 7, 14 or 28)", ParamPatch, c.Patch, imageSide)
	case c.Width <= 0:
		return errors.Errorf("%s=%d: the width must be positive", ParamWidth, c.Width)
	case c.Depth < 0:
		return errors.Errorf("%s=%d: the depth must be ≥ 0", ParamDepth, c.Depth)
	case c.Heads <= 0 || c.Width%c.Heads != 0:
		return errors.Errorf("%s=%d: the number of heads must be positive and divide %s=%d", ParamHeads, c.Heads,
			ParamWidth, c.Width)
	case c.MLP <= 0:
		return errors.Errorf("%s=%d: the MLP width must be positive", ParamMLP, c.MLP)
	case !slices.Contains([]string{"layer", "rms"}, c.Norm):
		return errors.Errorf("%s=%q: valid values are layer|rms", ParamNorm, c.Norm)
	case !slices.Contains([]string{"class", "mean"}, c.Readout):
		return errors.Errorf("%s=%q: valid values are class|mean", ParamReadout, c.Readout)
	case !slices.Contains([]string{"onehot", "concat"}, c.Tokens):
		return errors.Errorf("%s=%q: valid values are onehot|concat", ParamTokens, c.Tokens)
	case c.Dropout < 0 || c.Dropout >= 1:
		return errors.Errorf("%s=%g: the dropout rate must be in [0, 1)", ParamDropout, c.Dropout)
	}
	return nil
}

// String describes the architecture in one line.
func (c Config) String() string {
	n := imageSide / c.Patch
	return fmt.Sprintf("ViT: %d×%d patches (%d tokens + class token), width %d, %d block(s) × %d head(s), "+
		"MLP %d, %s norm, %s readout, tokens by %s, dropout %g", c.Patch, c.Patch, n*n, c.Width, c.Depth, c.Heads,
		c.MLP, c.Norm, c.Readout, c.Tokens, c.Dropout)
}

// ModelFn is a pre-norm vision transformer on flat MNIST images [batch, 784] (any float dtype; the
// variables take the input's dtype), returning the logits [batch, 10]:
//
//	tokens = [cls; patches·E] + P                       (patches: [batch, n², patch²], P: learned positions)
//	x ← x + MHA(norm(x))                                (layers.MultiHeadAttention, Depth times, each with
//	x ← x + W₂·dropout(GELU(W₁·norm(x)))                 its own weights)
//	logits = W_head · norm(x)[readout]
//
// norm is layers.LayerNormalization over the features (vit_norm=layer) or layers.RMSNorm (rms). The
// readout is the class token (class) or the mean over tokens (mean).
//
// The class token is put in front of the patches, and read out, by contractions with constant one-hot
// matrices (vit_tokens=onehot), not by graph.Concatenate and graph.Slice: in GoMLX v0.26.0 the gradient of
// Slice is graph.Pad, which has no gradient itself and which the pure-Go backend does not implement, so
// Slice cannot even be differentiated once there, and Concatenate (whose gradient is Slice) not twice.
// vit_tokens=concat uses graph.Concatenate: SGD and the finite-difference methods train it on every
// backend, gr.DoubleBackprop fails on the pure-Go backend with an error naming Pad (docs/gomlx-notes.md).
// Dropout (after attention and in the MLP) applies in training graphs only.
func ModelFn(ctx *context.Context, _ any, inputs []*Node) []*Node {
	c, err := ConfigFromContext(ctx)
	if err != nil {
		panic(err)
	}
	return []*Node{c.Logits(ctx, inputs[0])}
}

// Logits builds the ViT of c on flat images [batch, 784].
func (c Config) Logits(ctx *context.Context, images *Node) *Node {
	g := images.Graph()
	if images.Rank() != 2 || images.Shape().Dim(1) != imageSide*imageSide {
		panic(errors.Errorf("vit: want flat images [batch, %d], got %s", imageSide*imageSide, images.Shape()))
	}
	batch, dtype := images.Shape().Dim(0), images.DType()
	n := imageSide / c.Patch
	// [b, n·p, n·p] → [b, n, p, n, p] → [b, n, n, p, p] → [b, n², p²]: one row per patch, row-major.
	patches := Reshape(images, batch, n, c.Patch, n, c.Patch)
	patches = TransposeAllAxes(patches, 0, 1, 3, 2, 4)
	patches = Reshape(patches, batch, n*n, c.Patch*c.Patch)
	x := layers.Dense(ctx.In("patch_embedding"), patches, true, c.Width)

	small := ctx.In("embeddings").WithInitializer(initializers.RandomNormalFn(ctx, 0.02))
	cls := small.VariableWithShape("class_token", shapes.Make(dtype, 1, 1, c.Width)).ValueGraph(g)
	numTokens := n*n + 1
	// first is the one-hot vector of token 0, the class token.
	first := OneHot(Const(g, int32(0)), numTokens, dtype)
	if c.Tokens == "onehot" {
		// tokens[b,t,:] = first[t]·cls + Σₖ shift[k,t]·x[b,k,:], shift[k,t] = 1 iff t = k+1.
		shift := OneHot(AddScalar(Iota(g, shapes.Make(dtypes.Int32, n*n), 0), 1), numTokens, dtype)
		clsRow := Reshape(Einsum("t,d->td", first, Reshape(cls, c.Width)), 1, numTokens, c.Width)
		x = Add(Einsum("bkd,kt->btd", x, shift), clsRow)
	} else {
		x = Concatenate([]*Node{BroadcastToDims(cls, batch, 1, c.Width), x}, 1)
	}
	pos := small.VariableWithShape("positions", shapes.Make(dtype, 1, numTokens, c.Width)).ValueGraph(g)
	x = Add(x, pos)

	headDim := c.Width / c.Heads
	for i := range c.Depth {
		block := ctx.In(fmt.Sprintf("block_%d", i))
		h := c.norm(block.In("norm_attention"), x)
		h = layers.MultiHeadAttention(block.In("attention"), h, h, h, c.Heads, headDim).Done()
		x = Add(x, c.dropout(block.In("dropout_attention"), h))
		h = c.norm(block.In("norm_mlp"), x)
		h = activations.Gelu(layers.Dense(block.In("mlp_1"), h, true, c.MLP))
		h = c.dropout(block.In("dropout_mlp"), h)
		x = Add(x, layers.Dense(block.In("mlp_2"), h, true, c.Width))
	}
	x = c.norm(ctx.In("norm_final"), x)

	var features *Node
	switch c.Readout {
	case "class":
		// A one-hot contraction over the token axis: twice differentiable, unlike Slice.
		features = Einsum("btd,t->bd", x, first)
	case "mean":
		features = ReduceMean(x, 1)
	default:
		panic(errors.Errorf("%s=%q: valid values are class|mean", ParamReadout, c.Readout))
	}
	return layers.Dense(ctx.In("head"), features, true, numClasses)
}

// norm applies the configured normalization over the feature axis.
func (c Config) norm(ctx *context.Context, x *Node) *Node {
	if strings.EqualFold(c.Norm, "rms") {
		return layers.RMSNorm(ctx, x).Done()
	}
	return layers.LayerNormalization(ctx, x, -1).Done()
}

// dropout applies dropout at the configured rate (a no-op when the rate is 0 or outside training).
func (c Config) dropout(ctx *context.Context, x *Node) *Node {
	if c.Dropout <= 0 {
		return x
	}
	return layers.Dropout(ctx, x, ConstAs(x, c.Dropout))
}
