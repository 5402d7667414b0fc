package gr_test

import (
	"strings"
	"testing"

	"github.com/gomlx/gomlx/backends"
	"github.com/gomlx/gomlx/pkg/core/distributed"
	"github.com/gomlx/gomlx/pkg/core/tensors"
	"github.com/gomlx/gomlx/pkg/ml/context"
	"github.com/gomlx/gomlx/pkg/ml/train"
	gr "github.com/gradreg/gradreg/optimizers"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestDistributedTrainStep: one step of F-GR, SAM and DB through trainer.DistributedTrainStep with
// AutoSharding on a 1-device mesh gives the weights of the plain step (relative 1e-12 in float64: the same
// graph, reductions possibly reordered). GoMLX's pure-Go backend refuses shardings: there the test checks
// that the refusal is GoMLX's and skips, saying so.
func TestDistributedTrainStep(t *testing.T) {
	p := newProblem(61, 8, 3, 4, 0.01)
	x, y := p.tensors()
	mesh, err := distributed.NewDeviceMesh([]int{1}, []string{"batch"})
	require.NoError(t, err)
	xSpec, err := distributed.BuildSpec(mesh).S("batch").R().Done()
	require.NoError(t, err)
	ySpec, err := distributed.BuildSpec(mesh).S("batch").Done()
	require.NoError(t, err)
	for _, method := range []string{"forward", "sam", "db"} {
		opt := func() *gr.Config { return groupsConfig(method, sgd(0.5), 0.05, 0.05, samParams{rho: 0.05}) }
		want, _ := p.trainSteps(t, opt().Done(), false, 1)

		ctx := context.New()
		trainer := gr.NewTrainer(backend(t), ctx, p.modelFn(false), squaredLoss, opt().Done(), nil, nil)
		xd, err := distributed.NewTensor(xSpec, []*tensors.Tensor{x})
		require.NoError(t, err)
		yd, err := distributed.NewTensor(ySpec, []*tensors.Tensor{y})
		require.NoError(t, err)
		_, err = trainer.DistributedTrainStep(distributed.AutoSharding, []backends.DeviceNum{0}, nil,
			[]*distributed.Tensor{xd}, []*distributed.Tensor{yd})
		if err != nil && strings.Contains(backend(t).Name(), "SimpleGo") && strings.Contains(err.Error(), "not implemented") {
			t.Skipf("GoMLX's pure-Go backend refuses sharded execution (%v); the check runs on XLA, e.g. "+
				"GOMLX_BACKEND=xla:cpu go test ./optimizers, and in examples/cifar/gpu/check.sh", oneLine(err))
		}
		require.NoError(t, err, method)
		assert.Less(t, relErr(variableValues(ctx, "W", "v"), want), 1e-12, method)
	}
}

// oneLine returns the error's message on one line.
func oneLine(err error) string {
	return strings.Join(strings.Fields(err.Error()), " ")
}

// fakeDistributed is a train.DistributedDataset that records its calls (no tensors: only the wrapping is
// tested).
type fakeDistributed struct {
	repeatDataset
	yields int
}

func (d *fakeDistributed) Strategy() distributed.Strategy         { return distributed.AutoSharding }
func (d *fakeDistributed) DeviceAssignment() []backends.DeviceNum { return []backends.DeviceNum{3} }
func (d *fakeDistributed) DistributedYield() (any, []*distributed.Tensor, []*distributed.Tensor, error) {
	d.yields++
	return "spec", nil, nil, nil
}

// TestEveryDatasetForwardsDistributed: EveryDataset of a train.DistributedDataset is one too (so train.Loop
// runs it distributed), forwarding Strategy, DeviceAssignment and DistributedYield, with the spec through
// gr.StepSpec.
func TestEveryDatasetForwardsDistributed(t *testing.T) {
	p := newProblem(62, 8, 3, 4, 0)
	trainer := gr.NewTrainer(backend(t), context.New(), p.modelFn(false), squaredLoss,
		gr.ForwardDifference(sgd(0.1)).Every(3).Done(), nil, nil)
	fake := &fakeDistributed{}
	ds, ok := gr.EveryDataset(trainer, fake).(train.DistributedDataset)
	require.True(t, ok, "EveryDataset must keep the dataset distributed")
	assert.Equal(t, distributed.AutoSharding, ds.Strategy())
	assert.Equal(t, []backends.DeviceNum{3}, ds.DeviceAssignment())
	spec, _, _, err := ds.DistributedYield()
	require.NoError(t, err)
	assert.Equal(t, 1, fake.yields)
	assert.Equal(t, gr.StepSpec(trainer, "spec"), spec)
	assert.NotEqual(t, "spec", spec, "wrapped for the phase of Every(3)")

	_, isDistributed := gr.EveryDataset(trainer, &repeatDataset{}).(train.DistributedDataset)
	assert.False(t, isDistributed)
}
