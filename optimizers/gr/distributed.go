package gr

import (
	"github.com/gomlx/gomlx/backends"
	"github.com/gomlx/gomlx/pkg/core/distributed"
	"github.com/gomlx/gomlx/pkg/ml/train"
)

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
