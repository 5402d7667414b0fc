package gr

import (
	"github.com/gomlx/gomlx/backends"
	"github.com/gomlx/gomlx/pkg/core/distributed"
	"github.com/gomlx/gomlx/pkg/ml/train"
)

// Several devices.
//
// gr.NewTrainer returns a plain *train.Trainer, so trainer.DistributedTrainStep(distributed.AutoSharding, ...)
// and train.Loop with a train.DistributedDataset work with every method (XLA only: GoMLX's pure-Go backend
// refuses shardings; on one machine XLA's CPU plugin makes several devices, grbackend.NewCPUDevices).
// DistributedTrainStep builds the same training graph as TrainStep, as one logical program over the global
// batch that XLA's automatic sharding partitions: the perturbation is computed from the global-batch g₁ (one
// g₁ and one perturbation for the whole batch, as on one device), and the result equals the single-device
// step up to the order of floating-point reductions.
//
// The anchors' per-device m-sharpness (google-research/sam perturbs each device with its own gradient) is
// Groups(m) with m = the number of devices and the batch sharded contiguously along its first axis: the
// groups are then exactly the devices' shards, and the arithmetic is the same — each group's g₁ᵏ and
// perturbation depend only on its own examples. Under AutoSharding XLA decides where each group's
// computation runs; making each device compute its own group without communication needs SPMD
// (distributed.SPMD, experimental in GoMLX), which this package does not drive.
//
// GoMLX refuses distributed training with gradient accumulation ("not implemented yet").

// everyDistributedDataset is EveryDataset of a train.DistributedDataset.
type everyDistributedDataset struct {
	*everyDataset
	dist train.DistributedDataset
}

var _ train.DistributedDataset = (*everyDistributedDataset)(nil)

// Strategy implements train.DistributedDataset as the wrapped dataset does.
func (d *everyDistributedDataset) Strategy() distributed.Strategy { return d.dist.Strategy() }

// DeviceAssignment implements train.DistributedDataset as the wrapped dataset does.
func (d *everyDistributedDataset) DeviceAssignment() []backends.DeviceNum {
	return d.dist.DeviceAssignment()
}

// DistributedYield implements train.DistributedDataset: the wrapped dataset's batch, its spec wrapped as
// TrainStep wraps it.
func (d *everyDistributedDataset) DistributedYield() (spec any, inputs, labels []*distributed.Tensor, err error) {
	spec, inputs, labels, err = d.dist.DistributedYield()
	if err != nil {
		return
	}
	return stepSpec(d.trainer, spec), inputs, labels, nil
}
