package grgrad

import (
	"reflect"

	"github.com/gomlx/gomlx/backends"
	"github.com/gomlx/gomlx/pkg/core/graph"
	"github.com/pkg/errors"
)

// GoMLX keeps the parameters of an operation (a convolution's strides, a Pad's configuration, …) in an
// unexported struct of the node, generated from its backend API (gen_backend_ops.go:
// nodeInputsConvGeneral, nodeInputsPad, …). The gradients need them; the functions below read them by
// reflection, by field name and type. Install checks every one of them against nodes it builds with
// known parameters (probe.go) before it changes anything, so a GoMLX that renamed or retyped a field
// makes Install fail with an error naming the field, never a gradient panic at graph build.

// fields returns the struct of a node's parameters.
func fields(node *graph.Node) (reflect.Value, error) {
	in := reflect.ValueOf(node).Elem().FieldByName("inputs")
	if !in.IsValid() || in.Kind() != reflect.Interface {
		return reflect.Value{}, errors.New("graph.Node has no interface field \"inputs\"")
	}
	if in.IsNil() {
		return reflect.Value{}, errors.Errorf("the %s node keeps no inputs", node.Type())
	}
	s := in.Elem()
	if s.Kind() == reflect.Pointer {
		s = s.Elem()
	}
	if s.Kind() != reflect.Struct {
		return reflect.Value{}, errors.Errorf("the inputs of a %s node are a %s, not a struct", node.Type(), s.Kind())
	}
	return s, nil
}

// misnamed, in tests only, replaces the names of fields read, to play a GoMLX that renamed them.
var misnamed map[string]string

// field returns the named field of a node's parameters, checking its kind.
func field(node *graph.Node, name string, kind reflect.Kind) (reflect.Value, error) {
	if other, ok := misnamed[name]; ok {
		name = other
	}
	s, err := fields(node)
	if err != nil {
		return s, err
	}
	f := s.FieldByName(name)
	if !f.IsValid() {
		return f, errors.Errorf("the inputs of a %s node (%s) have no field %q", node.Type(), s.Type(), name)
	}
	if f.Kind() != kind {
		return f, errors.Errorf("field %q of the inputs of a %s node (%s) is a %s, not a %s", name, node.Type(),
			s.Type(), f.Kind(), kind)
	}
	return f, nil
}

func readInt(node *graph.Node, name string) (int, error) {
	f, err := field(node, name, reflect.Int)
	if err != nil {
		return 0, err
	}
	return int(f.Int()), nil
}

func readFloat32(node *graph.Node, name string) (float64, error) {
	f, err := field(node, name, reflect.Float32)
	if err != nil {
		return 0, err
	}
	return f.Float(), nil
}

// ints converts a reflected []int.
func ints(f reflect.Value, what string) ([]int, error) {
	if f.Kind() != reflect.Slice || f.Type().Elem().Kind() != reflect.Int {
		return nil, errors.Errorf("%s is a %s, not a []int", what, f.Type())
	}
	if f.IsNil() {
		return nil, nil
	}
	out := make([]int, f.Len())
	for i := range out {
		out[i] = int(f.Index(i).Int())
	}
	return out, nil
}

func readInts(node *graph.Node, name string) ([]int, error) {
	f, err := field(node, name, reflect.Slice)
	if err != nil {
		return nil, err
	}
	return ints(f, "field "+name+" of a "+node.Type().String()+" node")
}

// readPairs reads a [][2]int (paddings).
func readPairs(node *graph.Node, name string) ([][2]int, error) {
	f, err := field(node, name, reflect.Slice)
	if err != nil {
		return nil, err
	}
	if e := f.Type().Elem(); e.Kind() != reflect.Array || e.Len() != 2 || e.Elem().Kind() != reflect.Int {
		return nil, errors.Errorf("field %q of a %s node is a %s, not a [][2]int", name, node.Type(), f.Type())
	}
	if f.IsNil() {
		return nil, nil
	}
	out := make([][2]int, f.Len())
	for i := range out {
		out[i] = [2]int{int(f.Index(i).Index(0).Int()), int(f.Index(i).Index(1).Int())}
	}
	return out, nil
}

// structInts reads the named int and []int fields of a struct value into the given pointers.
func structInts(s reflect.Value, what string, scalars map[string]*int, lists map[string]*[]int) error {
	if s.Kind() != reflect.Struct {
		return errors.Errorf("%s is a %s, not a struct", what, s.Type())
	}
	for name, to := range scalars {
		f := s.FieldByName(name)
		if !f.IsValid() || f.Kind() != reflect.Int {
			return errors.Errorf("%s (%s) has no int field %q", what, s.Type(), name)
		}
		*to = int(f.Int())
	}
	for name, to := range lists {
		f := s.FieldByName(name)
		if !f.IsValid() {
			return errors.Errorf("%s (%s) has no field %q", what, s.Type(), name)
		}
		v, err := ints(f, what+"."+name)
		if err != nil {
			return err
		}
		*to = v
	}
	return nil
}

// readPadAxes reads a Pad node's []backends.PadAxis.
func readPadAxes(node *graph.Node, name string) ([]backends.PadAxis, error) {
	f, err := field(node, name, reflect.Slice)
	if err != nil {
		return nil, err
	}
	out := make([]backends.PadAxis, f.Len())
	for i := range out {
		p := &out[i]
		if err := structInts(f.Index(i), "element of field "+name+" of a Pad node",
			map[string]*int{"Start": &p.Start, "End": &p.End, "Interior": &p.Interior}, nil); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// readConvAxes reads a ConvGeneral node's backends.ConvolveAxesConfig.
func readConvAxes(node *graph.Node, name string) (a backends.ConvolveAxesConfig, err error) {
	f, err := field(node, name, reflect.Struct)
	if err != nil {
		return a, err
	}
	err = structInts(f, "field "+name+" of a ConvGeneral node",
		map[string]*int{"InputBatch": &a.InputBatch, "InputChannels": &a.InputChannels,
			"KernelInputChannels": &a.KernelInputChannels, "KernelOutputChannels": &a.KernelOutputChannels,
			"OutputBatch": &a.OutputBatch, "OutputChannels": &a.OutputChannels},
		map[string]*[]int{"InputSpatial": &a.InputSpatial, "KernelSpatial": &a.KernelSpatial,
			"OutputSpatial": &a.OutputSpatial})
	return a, err
}

// reader collects the first error of a sequence of reads.
type reader struct {
	node *graph.Node
	err  error
}

func (r *reader) int(name string) int {
	if r.err != nil {
		return 0
	}
	v, err := readInt(r.node, name)
	r.err = err
	return v
}

func (r *reader) ints(name string) []int {
	if r.err != nil {
		return nil
	}
	v, err := readInts(r.node, name)
	r.err = err
	return v
}

func (r *reader) pairs(name string) [][2]int {
	if r.err != nil {
		return nil
	}
	v, err := readPairs(r.node, name)
	r.err = err
	return v
}

func (r *reader) float32(name string) float64 {
	if r.err != nil {
		return 0
	}
	v, err := readFloat32(r.node, name)
	r.err = err
	return v
}
