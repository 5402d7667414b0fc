package grgrad

import (
	"slices"

	"github.com/gomlx/gomlx/backends"
	. "github.com/gomlx/gomlx/pkg/core/graph" //nolint:staticcheck // graph code reads best with GoMLX's ops unqualified
	"github.com/gomlx/gomlx/pkg/core/shapes"
	"github.com/pkg/errors"
)

// convParams are the parameters of a ConvGeneral node, with GoMLX's defaults filled in (strides and
// dilations 1, paddings 0, group counts 1).
type convParams struct {
	axes                       backends.ConvolveAxesConfig
	strides                    []int
	paddings                   [][2]int
	inputDilations             []int
	kernelDilations            []int
	channelGroups, batchGroups int
}

// readConv reads a ConvGeneral node's parameters (nodeInputsConvGeneral).
func readConv(node *Node) (p convParams, err error) {
	if p.axes, err = readConvAxes(node, "axes"); err != nil {
		return p, err
	}
	r := reader{node: node}
	p.strides = r.ints("strides")
	p.paddings = r.pairs("paddings")
	p.inputDilations = r.ints("inputDilations")
	p.kernelDilations = r.ints("kernelDilations")
	p.channelGroups = r.int("channelGroupCount")
	p.batchGroups = r.int("batchGroupCount")
	if r.err != nil {
		return p, r.err
	}
	n := len(p.axes.InputSpatial)
	fill := func(s []int) []int {
		if len(s) == 0 {
			return slices.Repeat([]int{1}, n)
		}
		return s
	}
	p.strides, p.inputDilations, p.kernelDilations = fill(p.strides), fill(p.inputDilations), fill(p.kernelDilations)
	if len(p.paddings) == 0 {
		p.paddings = make([][2]int, n)
	}
	p.channelGroups, p.batchGroups = max(p.channelGroups, 1), max(p.batchGroups, 1)
	if len(p.strides) != n || len(p.inputDilations) != n || len(p.kernelDilations) != n || len(p.paddings) != n {
		return p, errors.Errorf("ConvGeneral node with %d spatial axes has strides %v, paddings %v, input dilations %v, "+
			"kernel dilations %v", n, p.strides, p.paddings, p.inputDilations, p.kernelDilations)
	}
	return p, nil
}

// dilate is the size of an axis of size n with d-1 zeros inserted between its elements.
func dilate(n, d int) int {
	if n == 0 {
		return 0
	}
	return (n-1)*d + 1
}

// reshapeAxisOutOf splits axis into [size, dim/size] (JAX's _reshape_axis_out_of).
func reshapeAxisOutOf(x *Node, axis, size int) *Node {
	dims := slices.Clone(x.Shape().Dimensions)
	dims = slices.Insert(dims, axis+1, dims[axis]/size)
	dims[axis] = size
	return Reshape(x, dims...)
}

// reshapeAxisInto merges axis src into axis dst (dst numbered once src is removed), src's index the
// major one (JAX's _reshape_axis_into).
func reshapeAxisInto(x *Node, src, dst int) *Node {
	perm := make([]int, 0, x.Rank())
	for i := range x.Rank() {
		if i != src {
			perm = append(perm, i)
		}
	}
	perm = slices.Insert(perm, dst, src)
	dims := slices.Delete(slices.Clone(x.Shape().Dimensions), src, src+1)
	dims[dst] *= x.Shape().Dimensions[src]
	return Reshape(TransposeAllAxes(x, perm...), dims...)
}

// convVJP is the gradient of y = ConvGeneral(x, k) with respect to x and k: JAX's
// _conv_general_dilated_transpose_lhs and _conv_general_dilated_transpose_rhs. Both are ConvGenerals
// (with input dilation where y had strides, strides where x had input dilation), so the gradient of a
// gradient goes through this function again.
func convVJP(node, v *Node, _ shapes.Shape) []*Node {
	p, err := readConv(node)
	if err != nil {
		panic(errors.Wrap(err, "grgrad: the gradient of ConvGeneral")) // unreachable: Install checked the fields
	}
	if kg, ok := lookupKernelGradient(node); ok {
		return kernelGradientVJP(kg, node, v)
	}
	x, k := node.Inputs()[0], node.Inputs()[1]
	return []*Node{convTransposeInput(p, x, k, v), convTransposeKernel(p, x, k, v)}
}

// convTransposeInput is ∂x = v·∂y/∂x (JAX's _conv_general_dilated_transpose_lhs).
func convTransposeInput(p convParams, x, k, v *Node) *Node {
	a := p.axes
	groups := 1
	switch {
	case p.channelGroups > 1:
		groups = p.channelGroups
	case p.batchGroups > 1:
		groups = p.batchGroups
	}
	if groups > 1 {
		// Move the group index from the kernel's output channels into its input channels.
		k = reshapeAxisInto(reshapeAxisOutOf(k, a.KernelOutputChannels, groups), a.KernelOutputChannels, a.KernelInputChannels)
	}
	t := backends.ConvolveAxesConfig{
		InputBatch: a.OutputBatch, InputChannels: a.OutputChannels, InputSpatial: a.OutputSpatial,
		KernelInputChannels: a.KernelOutputChannels, KernelOutputChannels: a.KernelInputChannels, KernelSpatial: a.KernelSpatial,
		OutputBatch: a.InputBatch, OutputChannels: a.InputChannels, OutputSpatial: a.InputSpatial,
	}
	paddings := make([][2]int, len(a.InputSpatial))
	for i := range paddings {
		in := dilate(x.Shape().Dimensions[a.InputSpatial[i]], p.inputDilations[i])
		ks := dilate(k.Shape().Dimensions[a.KernelSpatial[i]], p.kernelDilations[i])
		out := dilate(v.Shape().Dimensions[a.OutputSpatial[i]], p.strides[i])
		before := ks - p.paddings[i][0] - 1
		paddings[i] = [2]int{before, in + ks - 1 - out - before}
	}
	dx := convGeneral(v, reverse(k, a.KernelSpatial...), t, p.inputDilations, paddings, p.strides, p.kernelDilations, groups, 1)
	if p.batchGroups > 1 {
		dx = reshapeAxisInto(reshapeAxisOutOf(dx, a.InputChannels, p.batchGroups), a.InputChannels, a.InputBatch)
	}
	return dx
}

// convTransposeKernel is ∂k = v·∂y/∂k (JAX's _conv_general_dilated_transpose_rhs).
func convTransposeKernel(p convParams, x, k, v *Node) *Node {
	a := p.axes
	channelGroups, batchGroups := 1, 1
	switch {
	case p.batchGroups > 1:
		channelGroups = p.batchGroups
	case p.channelGroups > 1:
		batchGroups = p.channelGroups
	}
	t := backends.ConvolveAxesConfig{
		InputBatch: a.InputChannels, InputChannels: a.InputBatch, InputSpatial: a.InputSpatial,
		KernelInputChannels: a.OutputBatch, KernelOutputChannels: a.OutputChannels, KernelSpatial: a.OutputSpatial,
		OutputBatch: a.KernelInputChannels, OutputChannels: a.KernelOutputChannels, OutputSpatial: a.KernelSpatial,
	}
	paddings := make([][2]int, len(a.InputSpatial))
	for i := range paddings {
		in := dilate(x.Shape().Dimensions[a.InputSpatial[i]], p.inputDilations[i])
		ks := dilate(k.Shape().Dimensions[a.KernelSpatial[i]], p.kernelDilations[i])
		out := dilate(v.Shape().Dimensions[a.OutputSpatial[i]], p.strides[i])
		lo := p.paddings[i][0]
		paddings[i] = [2]int{lo, out - in + ks - lo - 1}
	}
	dk := convGeneral(x, v, t, p.kernelDilations, paddings, p.inputDilations, p.strides, channelGroups, batchGroups)
	if dk.Type() == NodeTypeConvGeneral && dk.Inputs()[0] == x && dk.Inputs()[1] == v {
		recordKernelGradient(dk, p) // its gradient: kernelgrad.go
	}
	return dk
}

// convGeneral is graph.ConvGeneral with negative paddings (a crop) done by slicing the input first:
// JAX's transposes produce them (when a strided convolution leaves the last rows of its input unread),
// and not every backend takes them.
func convGeneral(x, k *Node, a backends.ConvolveAxesConfig, strides []int, paddings [][2]int,
	inputDilations, kernelDilations []int, channelGroups, batchGroups int) *Node {
	paddings = slices.Clone(paddings)
	var specs []SliceAxisSpec
	for i, axis := range a.InputSpatial {
		lo, hi := paddings[i][0], paddings[i][1]
		if lo >= 0 && hi >= 0 {
			continue
		}
		if specs == nil {
			specs = make([]SliceAxisSpec, x.Rank())
			for j := range specs {
				specs[j] = AxisRange()
			}
		}
		// Removing c elements of the input removes c·d of its dilated form; pad back the excess.
		d, n := inputDilations[i], x.Shape().Dimensions[axis]
		start, end := 0, n
		if lo < 0 {
			c := (-lo + d - 1) / d
			start, paddings[i][0] = c, lo+c*d
		}
		if hi < 0 {
			c := (-hi + d - 1) / d
			end, paddings[i][1] = n-c, hi+c*d
		}
		specs[axis] = AxisRange(start, end)
	}
	if specs != nil {
		x = Slice(x, specs...)
	}
	return ConvGeneral(x, k, a, strides, paddings, inputDilations, kernelDilations, channelGroups, batchGroups)
}
