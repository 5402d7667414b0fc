package gr_test

import (
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"

	"github.com/gomlx/gomlx/backends"
	"github.com/gomlx/gomlx/pkg/core/distributed"
	"github.com/gomlx/gomlx/pkg/core/tensors"
	"github.com/gomlx/gomlx/pkg/ml/context"
	"github.com/gomlx/gomlx/pkg/ml/train"
	"github.com/gomlx/gomlx/pkg/ml/train/optimizers"
	gr "github.com/gradreg/gradreg/optimizers/gr"
	"github.com/gradreg/gradreg/optimizers/grbackend"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// The distributed tests run trainer.DistributedTrainStep with distributed.AutoSharding on XLA's CPU plugin
// started with n = 2 and 4 host devices (grbackend.NewCPUDevices: the client option cpu_device_count), the
// batch sharded along its first axis over a 1-D mesh of the n devices. GoMLX's pure-Go backend has one
// device and refuses shardings: there they skip, saying so; CI runs them in its XLA pass.
//
// Tolerances, float64 throughout: the sharded program computes the same sums in another order (per-device
// partial sums, then an all-reduce). Against the single-device run of the same graph the difference is
// rounding only: relative 1e-12 (measured ≤ 1.1e-16, and ≤ 5e-16 against the formulas; a sum of 8 terms reordered moves by ≲ 8u·κ with
// u = 1.1e-16 and κ the terms' cancellation, and F-GR's (g(θ+εg₁) − g₁)/ε amplifies that by 1/ε = 20).
// Against the closed forms computed independently in float64 (other code, other order): relative 1e-9, as
// the single-device formula tests.

var distributedDevices = []int{2, 4}

var (
	cpuDevicesMu sync.Mutex
	cpuDevices   = map[int]backends.Backend{}
)

// cpuDevicesBackend returns XLA's CPU plugin with n devices (one client per n for the whole test binary),
// or skips on the pure-Go backend.
func cpuDevicesBackend(t *testing.T, n int) backends.Backend {
	if strings.Contains(backend(t).Name(), "SimpleGo") {
		t.Skipf("needs XLA: GoMLX's pure-Go backend has one device and refuses shardings; run with "+
			"GOMLX_BACKEND=xla:cpu (CI's second pass; .ci/install-xla-cpu DIR installs the plugin), backend "+
			"here: %s", backend(t).Name())
	}
	cpuDevicesMu.Lock()
	defer cpuDevicesMu.Unlock()
	if b, ok := cpuDevices[n]; ok {
		return b
	}
	b, err := grbackend.NewCPUDevices(n)
	require.NoError(t, err)
	cpuDevices[n] = b
	return b
}

// batchSharding returns the specs sharding x [batch, in] and t [batch] along the batch over n devices,
// and the device assignment 0…n−1.
func batchSharding(t testing.TB, n int) (xSpec, ySpec *distributed.ShardingSpec, devices []backends.DeviceNum) {
	mesh, err := distributed.NewDeviceMesh([]int{n}, []string{"batch"})
	require.NoError(t, err)
	xSpec, err = distributed.BuildSpec(mesh).S("batch").R().Done()
	require.NoError(t, err)
	ySpec, err = distributed.BuildSpec(mesh).S("batch").Done()
	require.NoError(t, err)
	for i := range n {
		devices = append(devices, backends.DeviceNum(i))
	}
	return
}

// distributedSteps runs steps steps of opt through trainer.DistributedTrainStep(AutoSharding) on n devices
// and returns θ = (W, v) after them.
func (p *problem) distributedSteps(t *testing.T, n int, opt optimizers.Interface, steps int) []float64 {
	b := cpuDevicesBackend(t, n)
	ctx := context.New()
	trainer := gr.NewTrainer(b, ctx, p.modelFn(false), squaredLoss, opt, nil, nil)
	xSpec, ySpec, devices := batchSharding(t, n)
	x, y := p.tensors()
	for range steps {
		xd, err := distributed.ShardTensor(xSpec, x)
		require.NoError(t, err)
		yd, err := distributed.ShardTensor(ySpec, y)
		require.NoError(t, err)
		require.Equal(t, n, xd.NumShards())
		_, err = trainer.DistributedTrainStep(distributed.AutoSharding, devices, nil,
			[]*distributed.Tensor{xd}, []*distributed.Tensor{yd})
		require.NoError(t, err)
	}
	return variableValues(ctx, "W", "v")
}

// TestDistributedTrainStep: F-GR, SAM and DB through DistributedTrainStep on 2 and 4 CPU devices. One step
// with SGD(lr=1) hands the base optimizer the global-batch formula (one g₁ and one perturbation from the
// whole batch, not per device), computed independently in float64; two steps with SGD(0.5) equal the
// single-device TrainStep run.
func TestDistributedTrainStep(t *testing.T) {
	p := newProblem(61, 8, 3, 4, 0.01)
	theta0 := p.theta0()
	const gamma, eps = 0.05, 0.05
	hp := samParams{rho: 0.05}
	for _, method := range []string{"forward", "sam", "db"} {
		for _, n := range distributedDevices {
			t.Run(fmt.Sprintf("%s/devices=%d", method, n), func(t *testing.T) {
				var want []float64
				if method == "sam" {
					want = samReference(p, method, theta0, hp)
				} else {
					want = referenceGradient(p, method, theta0, gamma, eps, false, false)
				}
				theta1 := p.distributedSteps(t, n, groupsConfig(method, sgd(1), gamma, eps, hp).Done(), 1)
				formulaErr := relErr(gradientFromStep(theta0, theta1), want)
				assert.Less(t, formulaErr, 1e-9, "global-batch formula")

				single, _ := p.trainSteps(t, groupsConfig(method, sgd(0.5), gamma, eps, hp).Done(), false, 2)
				dist := p.distributedSteps(t, n, groupsConfig(method, sgd(0.5), gamma, eps, hp).Done(), 2)
				singleErr := relErr(dist, single)
				assert.Less(t, singleErr, 1e-12, "θ after 2 steps vs one device")
				t.Logf("relative difference: %.2g to the float64 formula, %.2g to one device", formulaErr, singleErr)
			})
		}
	}
}

// TestDistributedGroupsPerDevice: Groups(m) with m = the number of devices, the batch sharded contiguously,
// is the per-device m-sharpness of the anchors' implementations: the step equals the mean over the devices'
// shards of each shard's formula (own g₁ᵏ, own perturbation), in float64; it differs from the global-batch
// step of the same method on the same devices.
func TestDistributedGroupsPerDevice(t *testing.T) {
	p := newProblem(63, 8, 3, 4, 0.01)
	theta0 := p.theta0()
	const gamma, eps = 0.07, 0.03
	hp := samParams{rho: 0.1}
	for _, method := range []string{"forward", "sam", "db"} {
		for _, n := range distributedDevices {
			t.Run(fmt.Sprintf("%s/devices=%d", method, n), func(t *testing.T) {
				theta1 := p.distributedSteps(t, n, groupsConfig(method, sgd(1), gamma, eps, hp).Groups(n).Done(), 1)
				want := groupsReference(p, method, n, theta0, gamma, eps, hp)
				assert.Less(t, relErr(gradientFromStep(theta0, theta1), want), 1e-9, "mean of the shards' formulas")
				global := p.distributedSteps(t, n, groupsConfig(method, sgd(1), gamma, eps, hp).Done(), 1)
				assert.Greater(t, relErr(theta1, global), 1e-6, "differs from the global-batch step")
			})
		}
	}
}

// shardedDataset is a train.DistributedDataset yielding the problem's batch sharded over n devices; it
// counts its DistributedYield calls, and its Yield fails, so a loop that does not run it distributed fails.
type shardedDataset struct {
	x, y         *tensors.Tensor
	xSpec, ySpec *distributed.ShardingSpec
	devices      []backends.DeviceNum
	yields       int
}

var errNotDistributed = errors.New("shardedDataset.Yield called: the loop did not run the dataset distributed")

func (d *shardedDataset) Name() string                 { return "sharded" }
func (d *shardedDataset) Reset()                       {}
func (d *shardedDataset) IsOwnershipTransferred() bool { return true }
func (d *shardedDataset) Yield() (any, []*tensors.Tensor, []*tensors.Tensor, error) {
	return nil, nil, nil, errNotDistributed
}
func (d *shardedDataset) Strategy() distributed.Strategy         { return distributed.AutoSharding }
func (d *shardedDataset) DeviceAssignment() []backends.DeviceNum { return d.devices }
func (d *shardedDataset) DistributedYield() (any, []*distributed.Tensor, []*distributed.Tensor, error) {
	d.yields++
	xd, err := distributed.ShardTensor(d.xSpec, d.x)
	if err != nil {
		return nil, nil, nil, err
	}
	yd, err := distributed.ShardTensor(d.ySpec, d.y)
	if err != nil {
		return nil, nil, nil, err
	}
	return nil, []*distributed.Tensor{xd}, []*distributed.Tensor{yd}, nil
}

// TestDistributedEveryDataset: train.Loop over gr.EveryDataset of a real train.DistributedDataset, with
// F-GR Every(3), runs every step through DistributedYield and DistributedTrainStep on 2 CPU devices (the
// wrapped dataset's Yield fails if called) and ends at the θ of the single-device gr.TrainStep run.
func TestDistributedEveryDataset(t *testing.T) {
	const n, steps = 2, 5
	b := cpuDevicesBackend(t, n)
	p := newProblem(64, 8, 3, 4, 0.01)
	opt := func() optimizers.Interface { return buildCfg("forward", sgd(0.3), 0.07, 0.03).Every(3).Done() }
	single := p.run(t, context.New(), opt(), steps, true, nil)

	ctx := context.New()
	trainer := gr.NewTrainer(b, ctx, p.modelFn(false), squaredLoss, opt(), nil, nil)
	x, y := p.tensors()
	ds := &shardedDataset{x: x, y: y}
	ds.xSpec, ds.ySpec, ds.devices = batchSharding(t, n)
	wrapped := gr.EveryDataset(trainer, ds)
	_, isDistributed := wrapped.(train.DistributedDataset)
	require.True(t, isDistributed)
	_, err := train.NewLoop(trainer).RunSteps(wrapped, steps)
	require.NoError(t, err)
	assert.Equal(t, steps, ds.yields, "every step through DistributedYield")
	assert.Less(t, relErr(variableValues(ctx, "W", "v"), single[steps-1]), 1e-12, "θ after %d steps vs one device", steps)
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
// runs it distributed), forwarding Strategy, DeviceAssignment and DistributedYield, with the spec wrapped for
// the step's phase.
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
	assert.NotEqual(t, "spec", spec, "wrapped for the phase of Every(3)")
	assert.Contains(t, fmt.Sprintf("%+v", spec), "spec:spec", "the wrapped spec holds the dataset's")

	_, isDistributed := gr.EveryDataset(trainer, &repeatDataset{}).(train.DistributedDataset)
	assert.False(t, isDistributed)
}

// TestDistributedAccumulationRefusedByGoMLX pins what the package documentation says of accumulation on
// several devices: GoMLX v0.26.0 refuses it (train.Trainer, "not implemented yet"), so it is an error, not
// a silent single-device run. If GoMLX implements it, this test fails: the documentation is then outdated.
func TestDistributedAccumulationRefusedByGoMLX(t *testing.T) {
	const n = 2
	p := newProblem(61, 8, 3, 4, 0.01)
	b := cpuDevicesBackend(t, n)
	trainer := gr.NewTrainer(b, context.New(), p.modelFn(false), squaredLoss,
		groupsConfig("forward", sgd(0.5), 0.05, 0.05, samParams{}).Done(), nil, nil)
	require.NoError(t, trainer.AccumulateGradients(2))
	xSpec, ySpec, devices := batchSharding(t, n)
	x, y := p.tensors()
	xd, err := distributed.ShardTensor(xSpec, x)
	require.NoError(t, err)
	yd, err := distributed.ShardTensor(ySpec, y)
	require.NoError(t, err)
	_, err = trainer.DistributedTrainStep(distributed.AutoSharding, devices, nil,
		[]*distributed.Tensor{xd}, []*distributed.Tensor{yd})
	require.ErrorContains(t, err, "distributed training with gradient accumulation not implemented",
		"GoMLX now accumulates on several devices: update the package documentation (doc.go) and test it")
}
