package grgrad

import (
	"fmt"
	"reflect"
	"slices"

	"github.com/gomlx/gomlx/backends"
	"github.com/gomlx/gomlx/backends/notimplemented"
	"github.com/gomlx/gomlx/backends/shapeinference"
	"github.com/gomlx/gomlx/pkg/core/dtypes"
	"github.com/gomlx/gomlx/pkg/core/graph"
	"github.com/gomlx/gomlx/pkg/core/shapes"
	"github.com/pkg/errors"
)

// Install checks GoMLX's internals on a graph of a backend that builds nothing: probeBackend's ops
// only record their output shape. It knows just the ops whose nodes grgrad reads, and those a
// gradient of a matrix product built from matrix products needs (DotGeneral, Transpose, Reshape).

type probeBackend struct{ *notimplemented.Backend }

func (probeBackend) Name() string { return "grgrad-probe" }

func (probeBackend) Builder(string) backends.Builder {
	return probeBuilder{notimplemented.Builder{ErrFn: func(op backends.OpType) error {
		return errors.Errorf("op %s is not in grgrad's probe", op)
	}}}
}

type probeBuilder struct{ notimplemented.Builder }

func (probeBuilder) Name() string { return "grgrad-probe" }

func (probeBuilder) OpShape(op backends.Op) (shapes.Shape, error) {
	s, ok := op.(shapes.Shape)
	if !ok {
		return shapes.Invalid(), errors.Errorf("not a probe op: %v", op)
	}
	return s, nil
}

func (probeBuilder) Parameter(_ string, shape shapes.Shape, _ *backends.ShardingSpec) (backends.Op, error) {
	return shape, nil
}

func (probeBuilder) Constant(flat any, dims ...int) (backends.Op, error) {
	return shapes.Make(dtypes.FromGoType(reflect.TypeOf(flat).Elem()), dims...), nil
}

func (probeBuilder) Reshape(x backends.Op, dims ...int) (backends.Op, error) {
	return shapes.Make(x.(shapes.Shape).DType, dims...), nil
}

func (probeBuilder) Transpose(x backends.Op, perm ...int) (backends.Op, error) {
	s := x.(shapes.Shape)
	dims := make([]int, len(perm))
	for i, a := range perm {
		dims[i] = s.Dimensions[a]
	}
	return shapes.Make(s.DType, dims...), nil
}

func (probeBuilder) DotGeneral(lhs backends.Op, lhsContracting, lhsBatch []int, rhs backends.Op, rhsContracting, rhsBatch []int) (backends.Op, error) {
	l, r := lhs.(shapes.Shape), rhs.(shapes.Shape)
	var dims []int
	for _, a := range lhsBatch {
		dims = append(dims, l.Dimensions[a])
	}
	for _, a := range free(l.Rank(), lhsContracting, lhsBatch) {
		dims = append(dims, l.Dimensions[a])
	}
	for _, a := range free(r.Rank(), rhsContracting, rhsBatch) {
		dims = append(dims, r.Dimensions[a])
	}
	return shapes.Make(l.DType, dims...), nil
}

func (b probeBuilder) Dot(lhs, rhs backends.Op) (backends.Op, error) {
	l := lhs.(shapes.Shape)
	return b.DotGeneral(lhs, []int{l.Rank() - 1}, nil, rhs, []int{0}, nil)
}

func (probeBuilder) ConvGeneral(input, _ backends.Op, _ backends.ConvolveAxesConfig, _ []int, _ [][2]int, _, _ []int, _, _ int) (backends.Op, error) {
	return input, nil
}

func (probeBuilder) ReduceWindow(x backends.Op, _ backends.ReduceOpType, window, strides, baseDilations, windowDilations []int, paddings [][2]int) (backends.Op, error) {
	return shapeinference.ReduceWindowOp(x.(shapes.Shape), window, strides, baseDilations, windowDilations, paddings)
}

func (probeBuilder) Slice(x backends.Op, starts, limits, strides []int) (backends.Op, error) {
	return shapeinference.SliceOp(x.(shapes.Shape), starts, limits, strides)
}

func (probeBuilder) Pad(x, _ backends.Op, _ ...backends.PadAxis) (backends.Op, error) { return x, nil }

func (probeBuilder) Reverse(x backends.Op, _ ...int) (backends.Op, error) { return x, nil }

func (probeBuilder) ReduceProduct(x backends.Op, _ ...int) (backends.Op, error) { return x, nil }

func (probeBuilder) SelectAndScatterMax(x, _ backends.Op, _, _ []int, _ [][2]int) (backends.Op, error) {
	return x, nil
}

func (probeBuilder) SelectAndScatterMin(x, _ backends.Op, _, _ []int, _ [][2]int) (backends.Op, error) {
	return x, nil
}

func (probeBuilder) BatchNormForTraining(x, scale, _ backends.Op, _ float32, _ int) (backends.Op, backends.Op, backends.Op, error) {
	return x, scale, scale, nil
}

// probeResult is what Install learned about GoMLX.
type probeResult struct {
	// gomlxDotIsMatmul: GoMLX's own gradients of Dot and DotGeneral already are matrix products.
	gomlxDotIsMatmul bool
}

// probe checks every field of GoMLX's nodes that grgrad reads, on nodes built with known parameters,
// and whether GoMLX's own gradient of a matrix product is made of matrix products.
func probe() (res probeResult, err error) {
	defer func() {
		if r := recover(); r != nil {
			err = errors.Errorf("grgrad: checking GoMLX's internals: %v", r)
		}
	}()
	if f, ok := reflect.TypeFor[graph.Node]().FieldByName("inputs"); !ok || f.Type.Kind() != reflect.Interface {
		return res, errors.New("grgrad: graph.Node has no interface field \"inputs\", where GoMLX keeps the parameters of an op")
	}
	g := graph.NewGraph(probeBackend{&notimplemented.Backend{}}, "grgrad-probe")
	param := func(dims ...int) *graph.Node {
		return graph.Parameter(g, fmt.Sprintf("p%d", g.NumParameters()), shapes.Make(dtypes.Float64, dims...))
	}
	check := func(op string, got, want any, err error) error {
		if err != nil {
			return errors.Wrapf(err, "grgrad: reading %s's parameters", op)
		}
		if !reflect.DeepEqual(got, want) {
			return errors.Errorf("grgrad: %s's parameters read as %+v, built with %+v", op, got, want)
		}
		return nil
	}

	// DotGeneral.
	x, w := param(2, 3, 4, 5), param(5, 4, 6, 2)
	dot := graph.DotGeneral(x, []int{3, 1}, []int{2}, w, []int{0, 3}, []int{1})
	axes, err := readAxes(dot)
	if err := check("DotGeneral", axes, dotAxes{[]int{3, 1}, []int{2}, []int{0, 3}, []int{1}}, err); err != nil {
		return res, err
	}

	// ConvGeneral.
	ca := backends.ConvolveAxesConfig{InputBatch: 0, InputChannels: 3, InputSpatial: []int{1, 2},
		KernelInputChannels: 2, KernelOutputChannels: 3, KernelSpatial: []int{0, 1},
		OutputBatch: 0, OutputChannels: 3, OutputSpatial: []int{1, 2}}
	conv := graph.ConvGeneral(param(2, 5, 6, 4), param(3, 3, 2, 6), ca, []int{2, 1}, [][2]int{{1, 2}, {0, 1}},
		[]int{1, 3}, []int{2, 1}, 2, 1)
	cp, err := readConv(conv)
	if err := check("ConvGeneral", cp, convParams{ca, []int{2, 1}, [][2]int{{1, 2}, {0, 1}}, []int{1, 3}, []int{2, 1}, 2, 1}, err); err != nil {
		return res, err
	}

	// Pad, Reverse, ReduceProduct.
	padConfig := []backends.PadAxis{{Start: 1, End: -1, Interior: 2}, {Start: 0, End: 3, Interior: 0}}
	pad := graph.Pad(param(3, 4), graph.ScalarZero(g, dtypes.Float64), padConfig...)
	pc, err := readPadAxes(pad, "axesConfig")
	if err := check("Pad", pc, padConfig, err); err != nil {
		return res, err
	}
	rev := graph.Reverse(param(3, 4, 5), 0, 2)
	ra, err := readInts(rev, "axes")
	if err := check("Reverse", ra, []int{0, 2}, err); err != nil {
		return res, err
	}
	prod := graph.ReduceMultiply(param(3, 4, 5), 2, 0)
	pa, err := readInts(prod, "axes")
	if err := check("ReduceProduct", pa, []int{0, 2}, err); err != nil {
		return res, err
	}

	// Slice.
	sl := graph.Slice(param(5, 6), graph.AxisRange(1, 5).Stride(2), graph.AxisRange(2, 3))
	r := reader{node: sl}
	got := [][]int{r.ints("starts"), r.ints("limits"), r.ints("strides")}
	if err := check("Slice", got, [][]int{{1, 2}, {5, 3}, {2, 1}}, r.err); err != nil {
		return res, err
	}

	// SelectAndScatterMax/Min, as GoMLX's gradient of MaxPool and MinPool builds them.
	for _, reduce := range []func(*graph.Node) *graph.PoolBuilder{graph.MaxPool, graph.MinPool} {
		in := param(2, 5, 6, 3)
		pooled := reduce(in).WindowPerAxis(2, 3).StridePerAxis(1, 2).PaddingPerDim([][2]int{{1, 0}, {0, 2}}).Done()
		vjp := graph.VJPRegistration[pooled.Type()](pooled, []*graph.Node{param(pooled.Shape().Dimensions...)}, shapes.Make(dtypes.Float64))
		sas := vjp[0]
		if sas.Type() != graph.NodeTypeSelectAndScatterMax && sas.Type() != graph.NodeTypeSelectAndScatterMin {
			return res, errors.Errorf("grgrad: GoMLX's gradient of a pooling is a %s, not a SelectAndScatter", sas.Type())
		}
		r := reader{node: sas}
		got := [][]int{r.ints("windowDimensions"), r.ints("windowStrides")}
		paddings := r.pairs("paddings")
		if err := check(sas.Type().String(), got, [][]int{{1, 2, 3, 1}, {1, 1, 2, 1}}, r.err); err != nil {
			return res, err
		}
		if err := check(sas.Type().String(), paddings, [][2]int{{0, 0}, {1, 0}, {0, 2}, {0, 0}}, nil); err != nil {
			return res, err
		}
	}

	// BatchNormForTraining.
	bn, _, _ := graph.InternalBatchNormForTraining(param(4, 3, 2), param(3), param(3), 0.25, 1)
	bnNode := bn.Inputs()[0] // the split's input: the BatchNormForTraining node itself
	r = reader{node: bnNode}
	gotBN := []float64{r.float32("epsilon"), float64(r.int("featureAxis"))}
	if err := check("BatchNormForTraining", gotBN, []float64{0.25, 1}, r.err); err != nil {
		return res, err
	}

	res.gomlxDotIsMatmul = isMatmulGradient(g, graph.NodeTypeDotGeneral, dot, param) &&
		isMatmulGradient(g, graph.NodeTypeDot, graph.Dot(param(8, 16), param(16, 32)), param)
	return res, nil
}

// isMatmulGradient reports whether GoMLX's own gradient of the matrix product node builds only
// matrix products, transposes and reshapes (GoMLX after v0.26.0; v0.26.0 broadcasts and sums).
func isMatmulGradient(g *graph.Graph, t graph.NodeType, node *graph.Node, param func(dims ...int) *graph.Node) (matmul bool) {
	vjp := graph.VJPRegistration[t]
	if vjp == nil {
		return false
	}
	if original != nil && original[t] != nil {
		vjp = original[t]
	}
	defer func() {
		if recover() != nil { // an op the probe does not build: not a matrix product
			matmul = false
		}
	}()
	before := len(g.Nodes())
	vjp(node, []*graph.Node{param(node.Shape().Dimensions...)}, shapes.Make(dtypes.Float64))
	for _, n := range g.Nodes()[before+1:] {
		if !slices.Contains([]graph.NodeType{graph.NodeTypeDotGeneral, graph.NodeTypeTranspose, graph.NodeTypeReshape}, n.Type()) {
			return false
		}
	}
	return true
}
