package grgrad

import (
	"sync"
	"weak"

	. "github.com/gomlx/gomlx/pkg/core/graph" //nolint:staticcheck // graph code reads best with GoMLX's ops unqualified
)

// The kernel gradient of y = conv(x, k), ∂k = KG(x, v), is a ConvGeneral whose "kernel" is v, as large as
// y. JAX's transpose rules applied to it give convolutions with that large kernel — correct, but XLA's CPU
// compiler computes them densely: a DB step through a ResNet then cost 6× an SGD step. KG is bilinear with
// ⟨w, KG(x, v)⟩ = ⟨v, conv(x, w)⟩, so its gradient with respect to x and v, for an incoming w shaped like k,
// is the input gradient of conv(x, w) and conv(x, w) itself, both convolutions with k's small kernel.
// convTransposeKernel records the kernel gradients it builds here, and convVJP uses this rule for them.

// kernelGradient is what the gradient of a kernel-gradient node needs: the forward convolution's
// parameters (the node's inputs are x and v).
type kernelGradient struct {
	params convParams
}

var (
	kernelGradsMu sync.Mutex
	// kernelGrads maps a graph (weakly: a graph no longer used is not kept) to its kernel-gradient nodes.
	kernelGrads = map[weak.Pointer[Graph]]map[NodeId]kernelGradient{}
)

// recordKernelGradient notes that node is the kernel gradient of the convolution with parameters p.
func recordKernelGradient(node *Node, p convParams) {
	kernelGradsMu.Lock()
	defer kernelGradsMu.Unlock()
	for g := range kernelGrads {
		if g.Value() == nil {
			delete(kernelGrads, g)
		}
	}
	key := weak.Make(node.Graph())
	if kernelGrads[key] == nil {
		kernelGrads[key] = map[NodeId]kernelGradient{}
	}
	kernelGrads[key][node.Id()] = kernelGradient{p}
}

// lookupKernelGradient returns what recordKernelGradient noted about node.
func lookupKernelGradient(node *Node) (kernelGradient, bool) {
	kernelGradsMu.Lock()
	defer kernelGradsMu.Unlock()
	kg, ok := kernelGrads[weak.Make(node.Graph())][node.Id()]
	return kg, ok
}

// kernelGradientVJP is the gradient of ∂k = KG(x, v) for an incoming w: ∂x = the input gradient of
// conv(x, w) for v, ∂v = conv(x, w).
func kernelGradientVJP(kg kernelGradient, node, w *Node) []*Node {
	x, v := node.Inputs()[0], node.Inputs()[1]
	p := kg.params
	return []*Node{
		convTransposeInput(p, x, w, v),
		ConvGeneral(x, w, p.axes, p.strides, p.paddings, p.inputDilations, p.kernelDilations, p.channelGroups, p.batchGroups),
	}
}
