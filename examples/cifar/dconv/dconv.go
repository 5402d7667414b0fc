// Package dconv provides a 2D convolution and poolings whose gradients are themselves differentiable in
// GoMLX, so that double backpropagation (gr.DoubleBackprop) runs on convolutional networks, and which run on
// every backend, the pure-Go one included.
//
// GoMLX's own convolution (graph.Convolve) has a gradient built from further convolutions with reversed
// kernels and input dilation, whose gradient GoMLX does not define; the gradient of MaxPool uses
// SelectAndScatter, which has no gradient either; and on the pure-Go backend the convolution gradient
// needs Reverse, and the gradient of Slice needs Pad, which that backend does not implement.
//
// Conv2D here is im2col written with a single Gather plus a DotGeneral: the gradient of Gather is a
// ScatterSum and the gradient of ScatterSum is a Gather, so the gradient of any order is made of Gather,
// ScatterSum, Mul, Transpose and DotGeneral — all differentiable in GoMLX and all implemented by the
// pure-Go backend. Zero padding is a constant 0/1 mask (out-of-range positions gather a clamped pixel and
// are multiplied by 0), so no Pad, Slice or Concatenate is involved.
//
// The cost is memory: the im2col tensor holds kh·kw copies of the input. On XLA (GPU) GoMLX's
// convolution is faster for first-order methods; use Conv2D where second-order gradients are needed or on
// the pure-Go backend.
package dconv

import (
	"fmt"

	"github.com/gomlx/gomlx/pkg/core/graph"
)

// OutputSize is the spatial output size of a convolution over size pixels with the given kernel size,
// stride and symmetric zero padding.
func OutputSize(size, kernelSize, stride, padding int) int {
	return (size+2*padding-kernelSize)/stride + 1
}

// Conv2D convolves x, shaped [batch, height, width, inChannels] (channels last, as GoMLX's default), with
// kernel, shaped [kh, kw, inChannels, outChannels], using the given stride and zero padding on each side.
// It returns [batch, outHeight, outWidth, outChannels], outHeight = OutputSize(height, kh, stride, padding).
//
// It computes exactly what graph.Convolve(x, kernel).StridePerAxis(stride, stride).
// PaddingPerDim([][2]int{{padding, padding}, {padding, padding}}).Done() computes, but its gradient is
// differentiable to any order (see the package documentation). padding = (kh-1)/2 with stride 1 is
// "same" padding.
func Conv2D(x, kernel *graph.Node, stride, padding int) *graph.Node {
	if x.Rank() != 4 || kernel.Rank() != 4 {
		panic(fmt.Sprintf("dconv.Conv2D: x must be [batch, height, width, channels] and kernel "+
			"[kh, kw, inChannels, outChannels], got x %s and kernel %s", x.Shape(), kernel.Shape()))
	}
	if stride < 1 || padding < 0 {
		panic(fmt.Sprintf("dconv.Conv2D: stride must be >= 1 and padding >= 0, got %d and %d", stride, padding))
	}
	h, w, c := x.Shape().Dimensions[1], x.Shape().Dimensions[2], x.Shape().Dimensions[3]
	kh, kw, kc := kernel.Shape().Dimensions[0], kernel.Shape().Dimensions[1], kernel.Shape().Dimensions[2]
	if kc != c {
		panic(fmt.Sprintf("dconv.Conv2D: kernel input channels (%d) differ from x channels (%d): x %s, kernel %s",
			kc, c, x.Shape(), kernel.Shape()))
	}
	oh, ow := OutputSize(h, kh, stride, padding), OutputSize(w, kw, stride, padding)
	if oh < 1 || ow < 1 {
		panic(fmt.Sprintf("dconv.Conv2D: kernel %dx%d with padding %d does not fit in a %dx%d input",
			kh, kw, padding, h, w))
	}
	if kh == 1 && kw == 1 && stride == 1 && padding == 0 {
		// 1x1 convolution: a plain matrix product over the channels.
		k := graph.Reshape(kernel, kc, kernel.Shape().Dimensions[3])
		return graph.DotGeneral(x, []int{3}, nil, k, []int{0}, nil)
	}

	g := x.Graph()
	// indices[i, j, a, b] = (row, col) read for output (i, j) and kernel offset (a, b); mask is 0 where that
	// position falls in the zero padding (the index is then clamped to a valid pixel and the value discarded).
	indices := make([]int32, 0, oh*ow*kh*kw*2)
	mask := make([]float64, 0, oh*ow*kh*kw)
	for i := range oh {
		for j := range ow {
			for a := range kh {
				for b := range kw {
					r, col := i*stride+a-padding, j*stride+b-padding
					valid := r >= 0 && r < h && col >= 0 && col < w
					indices = append(indices, int32(min(max(r, 0), h-1)), int32(min(max(col, 0), w-1)))
					if valid {
						mask = append(mask, 1)
					} else {
						mask = append(mask, 0)
					}
				}
			}
		}
	}
	indicesNode := graph.Reshape(graph.Const(g, indices), oh, ow, kh, kw, 2)
	xt := graph.TransposeAllAxes(x, 1, 2, 0, 3) // [H, W, B, C]
	patches := graph.Gather(xt, indicesNode)    // [oh, ow, kh, kw, B, C]
	if padding > 0 && hasZero(mask) {
		maskNode := graph.Reshape(graph.ConvertDType(graph.Const(g, mask), x.DType()), oh, ow, kh, kw, 1, 1)
		patches = graph.Mul(patches, maskNode)
	}
	// Contract (kh, kw, C) with the kernel's (kh, kw, inChannels): [oh, ow, B, O].
	out := graph.DotGeneral(patches, []int{2, 3, 5}, nil, kernel, []int{0, 1, 2}, nil)
	return graph.TransposeAllAxes(out, 2, 0, 1, 3) // [B, oh, ow, O]
}

func hasZero(values []float64) bool {
	for _, v := range values {
		if v == 0 {
			return true
		}
	}
	return false
}

// Subsample returns x[:, ::stride, ::stride, :] for x shaped [batch, height, width, channels], as a
// Gather (a strided Slice would have a gradient, Pad, without a gradient in GoMLX).
func Subsample(x *graph.Node, stride int) *graph.Node {
	if stride == 1 {
		return x
	}
	h, w := x.Shape().Dimensions[1], x.Shape().Dimensions[2]
	oh, ow := (h+stride-1)/stride, (w+stride-1)/stride
	indices := make([]int32, 0, oh*ow*2)
	for i := range oh {
		for j := range ow {
			indices = append(indices, int32(i*stride), int32(j*stride))
		}
	}
	xt := graph.TransposeAllAxes(x, 1, 2, 0, 3) // [H, W, B, C]
	out := graph.Gather(xt, graph.Reshape(graph.Const(x.Graph(), indices), oh, ow, 2))
	return graph.TransposeAllAxes(out, 2, 0, 1, 3)
}

// PadChannels appends extra zero channels to x, shaped [..., channels], as a product with a constant
// [channels, channels+extra] identity-like matrix (Concatenate's gradient, Slice, has a gradient, Pad,
// without a gradient in GoMLX).
func PadChannels(x *graph.Node, extra int) *graph.Node {
	if extra == 0 {
		return x
	}
	c := x.Shape().Dimensions[x.Rank()-1]
	eye := make([]float64, c*(c+extra))
	for i := range c {
		eye[i*(c+extra)+i] = 1
	}
	m := graph.Reshape(graph.ConvertDType(graph.Const(x.Graph(), eye), x.DType()), c, c+extra)
	return graph.DotGeneral(x, []int{x.Rank() - 1}, nil, m, []int{0}, nil)
}

// poolReshape reshapes x [B, H, W, C] to [B, H/window, window, W/window, window, C]; H and W must be
// multiples of window.
func poolReshape(x *graph.Node, window int, name string) *graph.Node {
	d := x.Shape().Dimensions
	if x.Rank() != 4 || d[1]%window != 0 || d[2]%window != 0 {
		panic(fmt.Sprintf("dconv.%s: x must be [batch, height, width, channels] with height and width "+
			"multiples of the window %d, got %s", name, window, x.Shape()))
	}
	return graph.Reshape(x, d[0], d[1]/window, window, d[2]/window, window, d[3])
}

// AvgPool is average pooling with a window×window window and stride window (non-overlapping), as a
// Reshape and a ReduceMean: differentiable to any order on every backend.
func AvgPool(x *graph.Node, window int) *graph.Node {
	return graph.ReduceMean(poolReshape(x, window, "AvgPool"), 2, 4)
}

// MaxPool is max pooling with a window×window window and stride window (non-overlapping), as a Reshape
// and a ReduceMax, whose gradient (a mask of the maxima times the incoming gradient) is differentiable.
func MaxPool(x *graph.Node, window int) *graph.Node {
	return graph.ReduceMax(poolReshape(x, window, "MaxPool"), 2, 4)
}

// GlobalAvgPool averages x [B, H, W, C] over H and W: [B, C].
func GlobalAvgPool(x *graph.Node) *graph.Node {
	return graph.ReduceMean(x, 1, 2)
}
