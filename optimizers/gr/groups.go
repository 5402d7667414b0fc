package gr

import (
	"github.com/gomlx/gomlx/pkg/core/graph"
	"github.com/gradreg/gradreg/optimizers/grvec"
	"github.com/pkg/errors"
)

// ParamGroups is m of Config.Groups, read by FromContext. Default: 1 (the whole batch is one group).
const ParamGroups = "gr_groups"

// Groups splits each training batch into m equal contiguous groups — examples [k·B/m, (k+1)·B/m) form
// group k, for every input and label along their first axis — and runs the method on each group with its
// own g₁ᵏ = ∇Lₖ(θ) and its own perturbation; the gradient handed to the base optimizer is the mean of the
// groups' combined gradients,
//
//	g = (1/m) Σₖ gₖ,   e.g. for F-GR gₖ = (1 − γ/ε)g₁ᵏ + (γ/ε)∇Lₖ(θ + εg₁ᵏ), for SAM gₖ = ∇Lₖ(θ + ρg₁ᵏ/‖g₁ᵏ‖),
//
// "m-sharpness" (Foret et al. 2021: smaller groups generalize better; google-research/sam perturbs per
// device, Keras per num_batch_splits). Valid range [1, +∞); a batch size not divisible by m fails at graph
// build with an error naming both numbers. Default: 1 (exactly the plain method, bit for bit).
//
// Lₖ is the loss on group k with every train.AddLoss term the model adds when evaluated on the group: each
// group's loss includes them and the groups are averaged, so a term that does not depend on the batch
// (e.g. weight decay) counts once per step, not m times. The method's g₁ (the correction of Every, the
// fallback of GuardNonFinite, the metrics) is the mean of the groups' g₁ᵏ; the curvature metric is the mean
// of the groups' estimates. The loss the trainer reports (and the guard tests) is the mean of the groups'
// losses, which equals the whole batch's up to rounding for a mean loss and batch-independent AddLoss terms;
// the trainer's own forward pass over the whole batch is then read by nothing but train metrics that use
// the predictions and the model's non-trainable updates, and the backends prune it otherwise. Inside each
// group's evaluations, batch normalization uses that group's batch statistics (as per device in the
// anchors); the moving statistics the step leaves are those of the trainer's pass over the whole batch.
// Cost: m evaluations of the model on B/m examples replace one on B (about the same arithmetic). Needs
// NewTrainer.
func (c *Config) Groups(m int) *Config {
	if m < 1 {
		c.setErr(errors.Errorf("gr.%s: Groups (m) [%s] must be an integer in [1, +∞), got %d", c.name, ParamGroups, m))
	}
	c.groups = m
	return c
}

func (c *Config) groupsOn() bool { return c.groups > 1 }

// splitGroups builds one Step per group of the batch, each with its own loss and g₁ᵏ, and sets s.allGrad to
// the mean of the g₁ᵏ.
func (s *Step) splitGroups() {
	m := s.cfg.groups
	p := s.pass
	batch := -1
	for _, list := range []struct {
		name  string
		nodes []*Node
	}{{"input", p.inputs}, {"label", p.labels}} {
		for i, x := range list.nodes {
			if x.Rank() == 0 {
				panicf("gr.%s: Groups(%d) splits every input and label along its first (batch) axis, but %s #%d "+
					"is a scalar", s.cfg.name, m, list.name, i)
			}
			b := x.Shape().Dimensions[0]
			if batch == -1 {
				batch = b
			} else if b != batch {
				panicf("gr.%s: Groups(%d) splits every input and label along its first (batch) axis, but %s #%d "+
					"has batch size %d and the first input %d", s.cfg.name, m, list.name, i, b, batch)
			}
		}
	}
	if batch%m != 0 {
		panicf("gr.%s: Groups(%d): the batch size %d is not divisible by the number of groups %d",
			s.cfg.name, m, batch, m)
	}
	size := batch / m
	slice := func(nodes []*Node, k int) []*Node {
		out := make([]*Node, len(nodes))
		for i, x := range nodes {
			out[i] = graph.SliceAxis(x, 0, graph.AxisRange(k*size, (k+1)*size))
		}
		return out
	}
	var sum []*Node
	for k := range m {
		gp := *p
		gp.inputs, gp.labels = slice(p.inputs, k), slice(p.labels, k)
		if k > 0 {
			gp.inputs = after(gp.inputs, sum[0]) // Evaluate the groups one after the other (see after).
		}
		gs := newSubStep(s.stepGraph, &gp, s.evaluate(&gp, s.theta))
		gs.allGrad = widen(graph.Gradient(gs.loss, s.allTheta...))
		gs.grad = s.pick(gs.allGrad)
		s.groups = append(s.groups, gs)
		if sum == nil {
			sum = gs.allGrad
		} else {
			sum = grvec.AddVec(sum, gs.allGrad)
		}
	}
	s.allGrad = s.meanOf(sum)
	total := s.groups[0].loss
	for _, gs := range s.groups[1:] {
		total = graph.Add(total, gs.loss)
	}
	s.groupLoss = graph.Div(total, graph.Scalar(s.g, total.DType(), float64(m)))
}

// stepLoss returns the loss of the step: L(θ), or with Groups the mean of the groups' losses (the trainer's
// own evaluation on the whole batch is then not needed, and the backends prune it when nothing else reads it).
func (s *Step) stepLoss() *Node {
	if s.groupLoss != nil {
		return s.groupLoss
	}
	return s.loss
}

// meanOf returns sum/m for m = len(s.groups).
func (s *Step) meanOf(sum []*Node) []*Node {
	return grvec.ScaleVec(s.Scalar(1/float64(len(s.groups))), sum)
}

// groupsGrad runs the method on each group and returns the mean of the combined gradients (without Groups,
// the method's gradient on the whole batch). Each group
// reads the step's phase and state; the state a group writes (SetState) is averaged over the groups that
// write it, the others counting with the value they read. The curvature metric is the mean of the groups'
// values when every group measured it.
func (s *Step) groupsGrad() []*Node {
	if len(s.groups) == 0 {
		return s.cfg.fn(s)
	}
	var sum []*Node
	var curvature *Node
	curvatureAll := true
	written := map[string][][]*Node{}
	for _, gs := range s.groups {
		gs.phase, gs.pending = s.phase, map[string][]*Node{}
		// The groups' perturbed evaluations one after the other, after the evaluations at θ (see after).
		gp := *gs.pass
		if sum == nil {
			gp.inputs = after(gp.inputs, s.groups[len(s.groups)-1].grad[0])
		} else {
			gp.inputs = after(gp.inputs, sum[0])
		}
		gs.pass = &gp
		for scope, values := range s.pending {
			gs.pending[scope] = values
		}
		gk := s.cfg.fn(gs)
		if sum == nil {
			sum = gk
		} else {
			sum = grvec.AddVec(sum, gk)
		}
		for scope, values := range gs.pending {
			written[scope] = append(written[scope], values)
		}
		curvature, curvatureAll = sumIfAll(curvature, gs.curvature, curvatureAll)
	}
	for scope, list := range written {
		total := list[0]
		for _, values := range list[1:] {
			total = grvec.AddVec(total, values)
		}
		s.pending[scope] = s.meanOf(total)
	}
	if curvatureAll {
		s.curvature = graph.Mul(curvature, s.Scalar(1/float64(len(s.groups))))
	}
	return s.meanOf(sum)
}

// sumIfAll adds x to total while every x seen is non-nil.
func sumIfAll(total, x *Node, all bool) (*Node, bool) {
	if !all || x == nil {
		return nil, false
	}
	if total == nil {
		return x, true
	}
	return graph.Add(total, x), true
}

// after returns x with its first floating-point tensor made to depend on token, without changing any value:
// x₀ + Where(isFinite(t), 0, 0), t an element of token. The groups' evaluations are chained this way so that
// the backend runs them one after the other: GoMLX v0.26.0's pure-Go backend deadlocks when more
// independent matrix products than twice its worker count run at once (each waits, inside a worker, for
// another worker to split its batch), which m parallel groups readily reach on a 2-core machine.
func after(x []*Node, token *Node) []*Node {
	out := append([]*Node(nil), x...)
	for i, xi := range x {
		if !xi.DType().IsFloat() {
			continue
		}
		t := graph.Reshape(graph.Slice(graph.Reshape(token, -1), graph.AxisRange(0, 1)))
		zero := graph.ScalarZero(xi.Graph(), xi.DType())
		out[i] = graph.Add(xi, graph.Where(graph.IsFinite(t), zero, zero))
		break
	}
	return out
}
