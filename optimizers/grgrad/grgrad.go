// Package grgrad completes GoMLX's gradients so that they can be differentiated again, and makes
// GoMLX differentiate matrix products into matrix products.
//
// Double backpropagation (gr.DoubleBackprop), Hessian-vector products and gradreg's curvature metrics
// differentiate a gradient. GoMLX v0.26.0 builds the gradients of a convolution, a max-pooling and a
// batch normalization from ops it cannot differentiate (docs/gomlx-notes.md, notes 3 and 4), so a
// CNN built from layers.Convolution, graph.MaxPool or batchnorm.New fails at graph build. Install
// registers, in GoMLX's table of gradients (graph.VJPRegistration), gradients for:
//
//   - ConvGeneral, in every configuration (strides, input and kernel dilation, padding, channel and
//     batch groups): JAX's transpose rules (_conv_general_dilated_transpose_lhs/rhs), two ConvGenerals
//     whose own gradients are again given by this rule, except that the kernel gradient KG(x, v) of a
//     convolution is differentiated through ⟨w, KG(x, v)⟩ = ⟨v, conv(x, w)⟩, into convolutions with the
//     original small kernel (JAX's rule would make v, as large as the output, a kernel);
//   - SelectAndScatterMax and SelectAndScatterMin (the gradients of MaxPool and MinPool): the source's
//     gradient picks, for every window, the element its maximum (minimum) selects, from strided Slices
//     and Where;
//   - BatchNormForTraining (batchnorm.New in training mode): the gradient written with differentiable
//     ops instead of GoMLX's BatchNormGradient op;
//   - Pad (negative and interior padding too: the gradient of Slice), Slice (GoMLX's, built without Pad
//     on a backend that lacks it), Reverse, Rsqrt, Expm1, Clamp, ReduceProduct (exact where elements are
//     zero: products of the others, never y/x), Sign and the rounding ops Round, Floor and Ceil (zero);
//   - Dot and DotGeneral, as matrix products (below).
//
// GoMLX v0.26.0 builds the gradient of y = Dot(x, W) (x: [batch, in], W: [in, out]) and of DotGeneral
// (Einsum) as a broadcast product and a sum over a [batch, in, out] tensor, for each of the two
// gradients (docs/gomlx-notes.md, note 1). Neither backend turns that back into a matrix product: the
// gradients of a dense layer [64, 784]·[784, 128] cost 17× its forward pass on the pure-Go backend and
// over 400× on XLA's CPU plugin, and they are most of every training step, plain SGD's as much as F-GR's,
// SAM's or double backprop's. With Install, an MLP's training step takes 6–8× less CPU on both backends
// (docs/benchmarks.md). Install replaces them by the transposed products JAX uses
// (_dot_general_transpose_lhs/rhs):
//
//	y = x·W:        ∂x = v·Wᵀ,  ∂W = xᵀ·v           (v = ∂L/∂y)
//	y = DotGeneral:  ∂x = DotGeneral(v, W) contracting v's W-axes with W's free axes, batch axes kept,
//	                 then transposed back to x's axis order; ∂W likewise.
//
// A GoMLX whose own gradients of matrix products already are matrix products (versions after v0.26.0)
// keeps them; Describe says which are in effect.
//
// Every gradient is the same as GoMLX's where GoMLX has one (up to float rounding: sums run in another
// order; BatchNormForTraining's also carries what flows back through the batch mean and variance, which
// GoMLX's drops), and is itself built from differentiable ops. The pure-Go backend has no Pad, Reverse,
// SelectAndScatter or BatchNorm ops: grgrad reverses a convolution's kernel with a product by the
// anti-diagonal matrix there and builds Slice's gradient without Pad, so convolutions, Slice and
// Concatenate are twice differentiable on it; batchnorm.New (training) and MaxPool's gradient fail there
// at graph build with the backend's error naming the op. Use the XLA backend for such CNNs.
//
// Install reads the parameters GoMLX keeps in unexported fields of its nodes (a convolution's strides,
// a Pad's configuration, …) by reflection. It checks every field it reads, on nodes built with known
// parameters, before changing anything: with a GoMLX that renamed one, Install returns an error naming
// it and GoMLX's own gradients stay in effect.
//
// Call Install once at the start of a program, before any graph is built: it changes a global table of
// GoMLX, for every graph of the process, and must not run while graphs are being built. Uninstall puts
// GoMLX's own gradients back.
//
//	func main() {
//		grgrad.MustInstall() // or: if err := grgrad.Install(); err != nil { ... }
//		...
//	}
package grgrad

import (
	"sync"

	"github.com/gomlx/gomlx/pkg/core/graph"
	"github.com/gomlx/gomlx/pkg/core/shapes"
)

var (
	mu       sync.Mutex
	original map[graph.NodeType]graph.VJP // GoMLX's own gradients while Install is in effect, else nil
	// dotKept: Install left GoMLX's gradients of Dot and DotGeneral in place (they are matrix products).
	dotKept bool
)

// gradients returns grgrad's gradients by op; gomlx is GoMLX's table before Install.
func gradients(gomlx map[graph.NodeType]graph.VJP, withDot bool) map[graph.NodeType]graph.VJP {
	single := func(f func(node, v *graph.Node, _ shapes.Shape) []*graph.Node) graph.VJP {
		return func(node *graph.Node, vjps []*graph.Node, s shapes.Shape) []*graph.Node { return f(node, vjps[0], s) }
	}
	m := map[graph.NodeType]graph.VJP{
		graph.NodeTypeConvGeneral:          single(convVJP),
		graph.NodeTypeSelectAndScatterMax:  selectAndScatterVJP(false),
		graph.NodeTypeSelectAndScatterMin:  selectAndScatterVJP(true),
		graph.NodeTypeBatchNormForTraining: batchNormForTrainingVJP,
		graph.NodeTypePad:                  single(padVJP),
		graph.NodeTypeReverse:              single(reverseVJP),
		graph.NodeTypeSlice:                single(sliceVJP),
		graph.NodeTypeRsqrt:                single(rsqrtVJP),
		graph.NodeTypeExpm1:                single(expm1VJP),
		graph.NodeTypeClamp:                single(clampVJP),
		graph.NodeTypeReduceProduct:        single(reduceProductVJP),
		graph.NodeTypeRound:                single(zeroVJP),
		graph.NodeTypeFloor:                single(zeroVJP),
		graph.NodeTypeCeil:                 single(zeroVJP),
		graph.NodeTypeSign:                 single(zeroVJP),
	}
	if withDot {
		m[graph.NodeTypeDot] = dotVJP(gomlx[graph.NodeTypeDot])
		m[graph.NodeTypeDotGeneral] = dotGeneralVJP
	}
	return m
}

// Install registers grgrad's gradients in GoMLX's table (see the package comment). It is idempotent.
// It returns an error, changing nothing, when this GoMLX keeps an op's parameters elsewhere than
// grgrad reads them.
func Install() error {
	mu.Lock()
	defer mu.Unlock()
	if original != nil {
		return nil
	}
	res, err := probe()
	if err != nil {
		return err
	}
	ours := gradients(graph.VJPRegistration, !res.gomlxDotIsMatmul)
	original = make(map[graph.NodeType]graph.VJP, len(ours))
	for t, vjp := range ours {
		original[t] = graph.VJPRegistration[t] // nil where GoMLX has none: Uninstall deletes it again
		graph.VJPRegistration[t] = vjp
	}
	dotKept = res.gomlxDotIsMatmul
	return nil
}

// MustInstall is Install that panics on error.
func MustInstall() {
	if err := Install(); err != nil {
		panic(err)
	}
}

// Uninstall puts GoMLX's own gradients back (a no-op when not installed).
func Uninstall() {
	mu.Lock()
	defer mu.Unlock()
	for t, vjp := range original {
		if vjp == nil {
			delete(graph.VJPRegistration, t)
		} else {
			graph.VJPRegistration[t] = vjp
		}
	}
	original, dotKept = nil, false
}

// Describe names the gradients in effect, for the line a program prints about its setup:
// "gradients by grgrad (matrix products, convolutions, pooling, batch norm)",
// "gradients by grgrad (convolutions, pooling, batch norm; GoMLX's matrix products are already matrix
// products)" or "GoMLX's gradients".
func Describe() string {
	mu.Lock()
	defer mu.Unlock()
	switch {
	case original == nil:
		return "GoMLX's gradients"
	case dotKept:
		return "gradients by grgrad (convolutions, pooling, batch norm; GoMLX's matrix products are already matrix products)"
	default:
		return "gradients by grgrad (matrix products, convolutions, pooling, batch norm)"
	}
}

// Installed reports whether Install is in effect.
func Installed() bool {
	mu.Lock()
	defer mu.Unlock()
	return original != nil
}

// CoversOp reports whether grgrad provides the gradient of the op (a graph.NodeType's name, e.g.
// "ConvGeneral"), or makes the gradient of the op differentiable: GoMLX builds the gradients of
// ReduceWindow (MaxPool, MinPool, MeanPool) and BatchNormForTraining from SelectAndScatter, Pad and
// BatchNormGradient, which have none.
func CoversOp(op string) bool {
	switch op {
	case "ReduceWindow", "BatchNormGradient":
		return true
	}
	for t := range gradients(nil, true) {
		if t.String() == op {
			return true
		}
	}
	return false
}
