package grgrad

import (
	"fmt"
	"strings"
	"testing"

	"github.com/gomlx/gomlx/pkg/core/graph"
)

// With a GoMLX whose nodes keep a parameter under another name, Install returns an error naming the
// op and the field, and leaves GoMLX's table of gradients as it was.
func TestInstallMismatch(t *testing.T) {
	Uninstall()
	snapshot := func() map[graph.NodeType]string {
		m := make(map[graph.NodeType]string)
		for k, v := range graph.VJPRegistration {
			m[k] = fmt.Sprintf("%p", v)
		}
		return m
	}
	before := snapshot()
	for field, op := range map[string]string{
		"kernelDilations": "ConvGeneral", "axesConfig": "Pad", "windowStrides": "SelectAndScatterMax",
		"epsilon": "BatchNormForTraining", "lhsBatchAxes": "DotGeneral", "starts": "Slice",
	} {
		misnamed = map[string]string{field: field + "Renamed"}
		err := Install()
		misnamed = nil
		if err == nil {
			Uninstall()
			t.Fatalf("Install with %s's field %q renamed: no error", op, field)
		}
		if !strings.Contains(err.Error(), op) || !strings.Contains(err.Error(), field+"Renamed") {
			t.Errorf("Install with %s's field %q renamed: error %q names neither", op, field, err)
		}
		if Installed() {
			t.Fatalf("Installed after a failed Install")
		}
		after := snapshot()
		if len(after) != len(before) {
			t.Fatalf("failed Install changed the number of gradients: %d, was %d", len(after), len(before))
		}
		for k, v := range before {
			if after[k] != v {
				t.Fatalf("failed Install changed the gradient of %s", k)
			}
		}
	}
}

// GoMLX v0.26.0's gradients of matrix products are not matrix products: Install replaces them, and
// Describe says so; a GoMLX whose gradient is built from DotGeneral alone is recognized as such.
func TestDotKept(t *testing.T) {
	Uninstall()
	res, err := probe()
	if err != nil {
		t.Fatal(err)
	}
	if res.gomlxDotIsMatmul {
		t.Fatal("GoMLX v0.26.0's gradient of DotGeneral taken for matrix products")
	}
	MustInstall()
	defer Uninstall()
	if !strings.Contains(Describe(), "matrix products, convolutions") {
		t.Errorf("Describe() = %q", Describe())
	}
	// grgrad's own gradient of a matrix product is matrix products: probing it says so.
	saved := original
	original = nil // probe the table as it is now: grgrad's gradients
	res, err = probe()
	original = saved
	if err != nil {
		t.Fatal(err)
	}
	if !res.gomlxDotIsMatmul {
		t.Error("grgrad's gradient of DotGeneral, built from DotGenerals, not recognized as matrix products")
	}
}
