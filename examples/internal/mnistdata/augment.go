package mnistdata

import (
	"math/rand/v2"

	"github.com/pkg/errors"
)

// streamAugment is the random stream of the augmentation (see the streams in mnistdata.go).
const streamAugment = 1<<40 + 3

// Augment makes the dataset augment every training image it yields, on the host: a random crop of the
// image zero-padded by pad pixels on each side (a shift by dy, dx drawn uniformly from [-pad, pad]) and,
// if flip, a horizontal flip with probability ½. The draws depend only on the seed and the example's
// position in the stream, so a resumed run sees the images an uninterrupted run would, and every method
// of a seed the same images. pad must be in [0, 27]; Augment(0, false) turns it off. It returns ds.
func (ds *TrainDataset) Augment(pad int, flip bool) (*TrainDataset, error) {
	if pad < 0 || pad >= Width {
		return nil, errors.Errorf("augmentation padding must be in [0, %d] pixels, got %d", Width-1, pad)
	}
	ds.pad, ds.flip = pad, flip
	ds.scratch = make([]float32, ImageSize)
	return ds, nil
}

// augmentImage transforms img (28×28, row-major) in place with the draws of stream position pos.
func (ds *TrainDataset) augmentImage(img []float32, pos int) {
	if ds.pad == 0 && !ds.flip {
		return
	}
	rng := rand.New(rand.NewPCG(ds.seed^(uint64(pos)*0x9e3779b97f4a7c15), streamAugment))
	dy, dx := rng.IntN(2*ds.pad+1)-ds.pad, rng.IntN(2*ds.pad+1)-ds.pad
	flip := ds.flip && rng.IntN(2) == 1
	src := ds.scratch
	copy(src, img)
	for y := range Height {
		sy := y + dy
		for x := range Width {
			sx := x
			if flip {
				sx = Width - 1 - x
			}
			sx += dx
			v := float32(0)
			if sy >= 0 && sy < Height && sx >= 0 && sx < Width {
				v = src[sy*Width+sx]
			}
			img[y*Width+x] = v
		}
	}
}
