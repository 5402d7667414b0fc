package grgrad

import (
	. "github.com/gomlx/gomlx/pkg/core/graph" //nolint:staticcheck // graph code reads best with GoMLX's ops unqualified
	"github.com/gomlx/gomlx/pkg/core/shapes"
	"github.com/pkg/errors"
)

// reverseVJP is the gradient of y = Reverse(x, axes…): ∂x = Reverse(v, axes…).
func reverseVJP(node, v *Node, _ shapes.Shape) []*Node {
	axes, err := readInts(node, "axes")
	if err != nil {
		panic(errors.Wrap(err, "grgrad: the gradient of Reverse")) // unreachable: Install checked the fields
	}
	return []*Node{reverse(v, axes...)}
}
