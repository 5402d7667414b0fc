// Package grgrad makes GoMLX differentiate matrix products into matrix products.
//
// GoMLX v0.26.0 builds the gradient of y = Dot(x, W) (x: [batch, in], W: [in, out]) and of DotGeneral
// (Einsum) as a broadcast product and a sum over a [batch, in, out] tensor, for each of the two
// gradients (docs/gomlx-notes.md, note 1). Neither backend turns that back into a matrix product: the
// gradients of a dense layer [64, 784]·[784, 128] cost 17× its forward pass on the pure-Go backend and
// over 400× on XLA's CPU plugin, and they are most of every training step, plain SGD's as much as F-GR's,
// SAM's or double backprop's. With Install, an MLP's training step takes 6–8× less CPU on both backends
// (docs/benchmarks.md).
//
// Install replaces, in GoMLX's table of gradients (graph.VJPRegistration), the gradients of Dot and
// DotGeneral by the transposed products JAX uses (_dot_general_transpose_lhs/rhs):
//
//	y = x·W:        ∂x = v·Wᵀ,  ∂W = xᵀ·v           (v = ∂L/∂y)
//	y = DotGeneral:  ∂x = DotGeneral(v, W) contracting v's W-axes with W's free axes, batch axes kept,
//	                 then transposed back to x's axis order; ∂W likewise.
//
// The result is the same gradient (up to float rounding: the sums run in another order), itself built
// from DotGenerals, so second derivatives (double backprop, Hessian-vector products) use it too.
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
	"reflect"
	"slices"
	"sync"

	"github.com/gomlx/gomlx/pkg/core/graph"
	"github.com/gomlx/gomlx/pkg/core/shapes"
	"github.com/pkg/errors"
)

var (
	mu       sync.Mutex
	original map[graph.NodeType]graph.VJP // GoMLX's own gradients while Install is in effect, else nil
)

// Install replaces GoMLX's gradients of Dot and DotGeneral by matrix products (see the package
// comment). It is idempotent. DotGeneral's axes are unexported in GoMLX and read by reflection (tested
// against GoMLX v0.26.0): Install returns an error, changing nothing, when GoMLX's node keeps no inputs
// where they are read; should a later GoMLX rename the axes' fields, the first gradient of a DotGeneral
// panics naming the missing field.
func Install() error {
	mu.Lock()
	defer mu.Unlock()
	if original != nil {
		return nil
	}
	if err := probe(); err != nil {
		return err
	}
	original = map[graph.NodeType]graph.VJP{
		graph.NodeTypeDot:        graph.VJPRegistration[graph.NodeTypeDot],
		graph.NodeTypeDotGeneral: graph.VJPRegistration[graph.NodeTypeDotGeneral],
	}
	graph.VJPRegistration[graph.NodeTypeDot] = dotVJP(original[graph.NodeTypeDot])
	graph.VJPRegistration[graph.NodeTypeDotGeneral] = dotGeneralVJP
	return nil
}

// MustInstall is Install that panics on error.
func MustInstall() {
	if err := Install(); err != nil {
		panic(err)
	}
}

// Uninstall puts GoMLX's own gradients of Dot and DotGeneral back (a no-op when not installed).
func Uninstall() {
	mu.Lock()
	defer mu.Unlock()
	for t, vjp := range original {
		graph.VJPRegistration[t] = vjp
	}
	original = nil
}

// Describe names the gradients of matrix products in effect, for the line a program prints about its
// setup: "gradients of matrix products by grgrad" or "GoMLX's gradients of matrix products".
func Describe() string {
	if Installed() {
		return "gradients of matrix products by grgrad"
	}
	return "GoMLX's gradients of matrix products"
}

// Installed reports whether Install is in effect.
func Installed() bool {
	mu.Lock()
	defer mu.Unlock()
	return original != nil
}

// dotVJP returns the gradient of Dot(x, W): v·Wᵀ and xᵀ·v for two matrices; the vector cases (whose
// gradients are outer products or have the size of an input anyway) keep GoMLX's, gomlx.
func dotVJP(gomlx graph.VJP) graph.VJP {
	return func(node *graph.Node, vjps []*graph.Node, outputShape shapes.Shape) []*graph.Node {
		x, w := node.Inputs()[0], node.Inputs()[1]
		if x.Rank() != 2 || w.Rank() != 2 {
			return gomlx(node, vjps, outputShape)
		}
		v := vjps[0]
		return []*graph.Node{
			graph.DotGeneral(v, []int{1}, nil, w, []int{1}, nil), // [i, k]·[j, k] → [i, j]
			graph.DotGeneral(x, []int{0}, nil, v, []int{0}, nil), // [i, j]·[i, k] → [j, k]
		}
	}
}

// dotAxes are the axes of a DotGeneral node, read from GoMLX's node (they are not exported).
type dotAxes struct {
	lhsContracting, lhsBatch, rhsContracting, rhsBatch []int
}

// readAxes reads the axes of a DotGeneral node.
func readAxes(node *graph.Node) (a dotAxes, err error) {
	in := reflect.ValueOf(node).Elem().FieldByName("inputs")
	if !in.IsValid() || in.Kind() != reflect.Interface || in.IsNil() {
		return a, errors.New("graph.Node has no field \"inputs\"")
	}
	s := in.Elem()
	if s.Kind() == reflect.Pointer {
		s = s.Elem()
	}
	if s.Kind() != reflect.Struct {
		return a, errors.Errorf("DotGeneral's inputs are a %s, not a struct", s.Kind())
	}
	read := func(name string) ([]int, error) {
		f := s.FieldByName(name)
		if !f.IsValid() || f.Kind() != reflect.Slice || f.Type().Elem().Kind() != reflect.Int {
			return nil, errors.Errorf("DotGeneral's inputs have no []int field %q", name)
		}
		out := make([]int, f.Len())
		for i := range out {
			out[i] = int(f.Index(i).Int())
		}
		return out, nil
	}
	for _, f := range []struct {
		name string
		to   *[]int
	}{{"lhsContractingAxes", &a.lhsContracting}, {"lhsBatchAxes", &a.lhsBatch},
		{"rhsContractingAxes", &a.rhsContracting}, {"rhsBatchAxes", &a.rhsBatch}} {
		if *f.to, err = read(f.name); err != nil {
			return a, err
		}
	}
	return a, nil
}

// probe checks that GoMLX's node keeps its inputs where readAxes looks (a DotGeneral node's axes are
// read at the first gradient; the tests check them against GoMLX's own gradient).
func probe() error {
	f, ok := reflect.TypeFor[graph.Node]().FieldByName("inputs")
	if !ok || f.Type.Kind() != reflect.Interface {
		return errors.New("grgrad: this version of GoMLX keeps no \"inputs\" in graph.Node, where the axes of " +
			"DotGeneral are read; GoMLX's own gradients are kept")
	}
	return nil
}

// dotGeneralVJP is the gradient of y = DotGeneral(x, W) as two DotGenerals (see the package comment).
func dotGeneralVJP(node *graph.Node, vjps []*graph.Node, _ shapes.Shape) []*graph.Node {
	a, err := readAxes(node)
	if err != nil {
		panic(errors.Wrap(err, "grgrad: the gradient of DotGeneral"))
	}
	x, w, v := node.Inputs()[0], node.Inputs()[1], vjps[0]
	return []*graph.Node{
		transposeVJP(v, x, a.lhsContracting, a.lhsBatch, w, a.rhsContracting, a.rhsBatch, true),
		transposeVJP(v, w, a.rhsContracting, a.rhsBatch, x, a.lhsContracting, a.lhsBatch, false),
	}
}

// free lists the axes of a rank-r operand that are neither contracting nor batch, in increasing order
// (the order DotGeneral's output keeps them in).
func free(rank int, contracting, batch []int) []int {
	var out []int
	for axis := range rank {
		if !slices.Contains(contracting, axis) && !slices.Contains(batch, axis) {
			out = append(out, axis)
		}
	}
	return out
}

// transposeVJP is the gradient with respect to "this" operand of y = DotGeneral(lhs, rhs), "this" being
// lhs when thisIsLHS. y's axes are [batch…, lhs free…, rhs free…]. The gradient is
// DotGeneral(v, other) contracting v's axes of other's free axes with other's free axes (batch axes
// kept): its axes are [batch…, this free…, other's contracting axes in increasing order], each of which
// pairs with one of this operand's contracting axes; a transpose puts them in this operand's order.
func transposeVJP(v, this *graph.Node, thisContracting, thisBatch []int,
	other *graph.Node, otherContracting, otherBatch []int, thisIsLHS bool) *graph.Node {
	nb := len(thisBatch)
	thisFree := free(this.Rank(), thisContracting, thisBatch)
	otherFree := free(other.Rank(), otherContracting, otherBatch)
	// v's axes of the other operand's free axes, and of this one's.
	vOther := make([]int, len(otherFree))
	for i := range vOther {
		if thisIsLHS {
			vOther[i] = nb + len(thisFree) + i
		} else {
			vOther[i] = nb + i
		}
	}
	vBatch := make([]int, nb)
	for i := range vBatch {
		vBatch[i] = i
	}
	r := graph.DotGeneral(v, vOther, vBatch, other, otherFree, otherBatch)
	// r's axis k holds this operand's axis pos[k]: batch axes, this free axes (in v's order, which is
	// increasing), then the partners of other's remaining (contracting) axes in increasing order.
	pos := make([]int, 0, this.Rank())
	pos = append(pos, thisBatch...) // batch axes pair in the order given, and y keeps that order
	pos = append(pos, thisFree...)
	otherRest := slices.Clone(otherContracting)
	slices.Sort(otherRest)
	for _, oa := range otherRest {
		pos = append(pos, thisContracting[slices.Index(otherContracting, oa)])
	}
	perm := make([]int, this.Rank())
	identity := true
	for k, axis := range pos {
		perm[axis] = k
		if axis != k {
			identity = false
		}
	}
	if identity {
		return r
	}
	return graph.TransposeAllAxes(r, perm...)
}
