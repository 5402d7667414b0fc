package main

import (
	"io"
	"slices"

	"github.com/gomlx/gomlx/pkg/core/tensors"
	"github.com/gomlx/gomlx/pkg/ml/datasets"
	"github.com/pkg/errors"

	"github.com/gradreg/gradreg/examples/internal/run"
)

// seededBatches yields an endless stream of training batches from host copies of the images and labels, in
// the runner's EpochOrder: the batch of step t depends only on (seed, t) — the same for every method of a
// seed — and Seek restarts it at any step, which makes a resumed run see the batches an uninterrupted run
// would. (GoMLX v0.26.0's InMemoryDataset.Shuffle draws from math/rand's global source whatever WithRand
// gives it: docs/gomlx-notes.md, note 14.)
type seededBatches struct {
	images []float32 // n examples of size values
	labels []int64   // n
	dims   []int     // one example's dimensions
	size   int       // values per example
	batch  int
	pos    int // position in the stream of examples
	order  *run.EpochOrder
}

// newSeededBatches returns the batches of n examples drawn from seed: images holds n examples of the
// dimensions dims (e.g. 32, 32, 3) one after the other, labels their n labels. It keeps the slices.
func newSeededBatches(images []float32, dims []int, labels []int64, batch int, seed int64) (*seededBatches, error) {
	n, size := len(labels), 1
	for _, d := range dims {
		size *= d
	}
	if n == 0 || len(images) != n*size {
		return nil, errors.Errorf("%d image values for %d labels of examples of dimensions %v", len(images), n, dims)
	}
	if batch < 1 || batch > n {
		return nil, errors.Errorf("batch %d must be in [1, %d] (the number of training examples)", batch, n)
	}
	return &seededBatches{images: images, labels: labels, dims: dims, size: size, batch: batch,
		order: run.NewEpochOrder(n, seed)}, nil
}

// hostCopy reads every example of a finite, unshuffled dataset of images (float32) and labels (int64) into
// host slices, and returns one example's dimensions.
func hostCopy(ds *datasets.InMemoryDataset) (images []float32, dims []int, labels []int64, err error) {
	n := ds.NumExamples()
	ds.BatchSize(min(n, 1000), false)
	ds.Reset()
	for {
		_, in, lab, err := ds.Yield()
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, nil, nil, err
		}
		if images == nil {
			dims = slices.Clone(in[0].Shape().Dimensions[1:])
			images = make([]float32, 0, n*in[0].Shape().Size()/in[0].Shape().Dimensions[0])
			labels = make([]int64, 0, n)
		}
		images = append(images, tensors.MustCopyFlatData[float32](in[0])...)
		labels = append(labels, tensors.MustCopyFlatData[int64](lab[0])...)
		in[0].FinalizeAll()
		lab[0].FinalizeAll()
	}
	if len(labels) != n {
		return nil, nil, nil, errors.Errorf("read %d of the %d examples of %q", len(labels), n, ds.Name())
	}
	return images, dims, labels, nil
}

func (ds *seededBatches) Name() string { return "train" }

// Reset restarts at step 0.
func (ds *seededBatches) Reset() { ds.Seek(0) }

// Seek places the stream at the batch of the given step.
func (ds *seededBatches) Seek(step int) { ds.pos = step * ds.batch }

func (ds *seededBatches) Yield() (spec any, inputs, labels []*tensors.Tensor, err error) {
	x := make([]float32, ds.batch*ds.size)
	y := make([]int64, ds.batch)
	for i := range ds.batch {
		idx := ds.order.Example(ds.pos)
		copy(x[i*ds.size:(i+1)*ds.size], ds.images[idx*ds.size:(idx+1)*ds.size])
		y[i] = ds.labels[idx]
		ds.pos++
	}
	return nil, []*tensors.Tensor{tensors.FromFlatDataAndDimensions(x, append([]int{ds.batch}, ds.dims...)...)},
		[]*tensors.Tensor{tensors.FromFlatDataAndDimensions(y, ds.batch, 1)}, nil
}
