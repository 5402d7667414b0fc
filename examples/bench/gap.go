package main

import (
	. "github.com/gomlx/gomlx/pkg/core/graph"
	"github.com/gomlx/gomlx/pkg/core/tensors"
	"github.com/gomlx/gomlx/pkg/ml/context"
	"github.com/gomlx/gomlx/pkg/ml/train"
)

// gapMethods are the rows that split the base row (SGD through GoMLX's train.Trainer) into its parts: the
// same SGD step (forward, gradient, θ − 0.01·g, no weight decay) as one graph run by context.Exec, without
// the trainer, its optimizer's variables (global step, learning rate) and its metrics; with the loss read
// back to the host or not; and with the batch copied from host memory at every step (the other rows reuse
// the batch's device buffers). The base row minus these is what the trainer adds.
func gapMethods() []*method {
	return []*method{
		{name: "SGD as one context.Exec", target: "the step's graph alone; loss not read", run: execSGD(false, false)},
		{name: "SGD as one context.Exec + loss read", target: "+ the loss copied to the host", run: execSGD(true, false)},
		{name: "SGD as one context.Exec + loss read + batch from host", target: "+ the batch copied to the device",
			run: execSGD(true, true)},
	}
}

// execSGD returns the step of a gap row: the SGD step of the model as one context.Exec (built at the first
// step), then the loss read back to the host with read, the batch made anew from host memory with fresh.
func execSGD(read, fresh bool) func(m *method, model train.ModelFn) error {
	return func(m *method, model train.ModelFn) error {
		if m.exec == nil {
			exec, err := context.NewExec(m.backend, m.ctx, func(ctx *context.Context, x, y *Node) *Node {
				g := x.Graph()
				loss := crossEntropy([]*Node{y}, model(ctx, nil, []*Node{x}))
				var vars []*context.Variable
				var theta []*Node
				for v := range ctx.IterVariables() {
					if v.Trainable && v.InUseByGraph(g) {
						vars = append(vars, v)
						theta = append(theta, v.ValueGraph(g))
					}
				}
				for i, grad := range Gradient(loss, theta...) {
					vars[i].SetValueGraph(Sub(theta[i], MulScalar(grad, 0.01)))
				}
				return loss
			})
			if err != nil {
				return err
			}
			m.exec = exec
		}
		x, y := m.x, m.y
		if fresh {
			x = tensors.FromFlatDataAndDimensions(m.xs, m.x.Shape().Dimensions...)
			y = tensors.FromFlatDataAndDimensions(m.ys, m.y.Shape().Dimensions...)
		}
		out, err := m.exec.Exec(x, y)
		if err != nil {
			return err
		}
		if read {
			_ = out[0].Value()
		}
		return nil
	}
}
